import Glibc

/// poll(2) on one descriptor.
public enum Poll {
    public static func wait(fd: Int32, writable: Bool, timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        let ms = Int32(max(0, min(timeout * 1000, Double(Int32.max))))
        return poll(&p, 1, ms) > 0
    }
}
