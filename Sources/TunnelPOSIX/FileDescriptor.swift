import Glibc

/// Owns one file descriptor and closes it exactly once.
public final class FileDescriptor: @unchecked Sendable {
    public private(set) var raw: Int32

    public init(owning raw: Int32) {
        precondition(raw >= 0, "FileDescriptor needs an open descriptor")
        self.raw = raw
    }

    public var isOpen: Bool { raw >= 0 }

    /// Closes the descriptor. A second call does nothing. close() is never
    /// retried: on Linux the descriptor is gone even when it reports EINTR.
    public func close() {
        guard raw >= 0 else { return }
        _ = Glibc.close(raw)
        raw = -1
    }

    deinit {
        assert(raw < 0, "file descriptor \(raw) was not closed by its owner")
        if raw >= 0 { _ = Glibc.close(raw) }
    }
}
