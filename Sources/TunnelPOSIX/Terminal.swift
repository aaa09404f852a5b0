import CLinuxShim
import Glibc

/// The terminal on a descriptor, for output drawn to fit it.
public enum Terminal {
    /// Rows and columns; nil when `fd` is not a terminal or reports no size.
    public static func size(_ fd: Int32) -> (rows: Int, columns: Int)? {
        var rows: UInt16 = 0, columns: UInt16 = 0
        guard tunnel_window_size(fd, &rows, &columns) == 0, rows > 0, columns > 0 else { return nil }
        return (Int(rows), Int(columns))
    }
}
