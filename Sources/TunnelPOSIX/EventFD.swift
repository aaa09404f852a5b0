import Glibc
import CLinuxShim

/// An eventfd: the one way another thread wakes an event loop.
public final class EventFD: @unchecked Sendable {
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.raw }

    public init() throws(SystemError) {
        let fd = try checked("eventfd") { eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK)) }
        descriptor = FileDescriptor(owning: fd)
    }

    public func signal() {
        var one: UInt64 = 1
        // EAGAIN means the counter is already non-zero: the loop will wake anyway.
        _ = Glibc.write(fd, &one, 8)
    }

    public func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }

    public func close() { descriptor.close() }
}
