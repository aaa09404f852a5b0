import Glibc
import CLinuxShim

/// Readiness bits, as epoll reports them.
public struct IOEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = IOEvents(rawValue: EPOLLIN.rawValue)
    public static let writable = IOEvents(rawValue: EPOLLOUT.rawValue)
    public static let readHangup = IOEvents(rawValue: EPOLLRDHUP.rawValue)
    public static let hangup = IOEvents(rawValue: EPOLLHUP.rawValue)
    public static let error = IOEvents(rawValue: EPOLLERR.rawValue)
}

/// Owns an epoll instance. Level-triggered. Each registration is tagged with
/// a caller-chosen 64-bit id so events for a descriptor that was closed and
/// reused within one batch can be recognised as stale.
public final class Selector {
    private let epoll: FileDescriptor
    private var buffer: UnsafeMutableRawPointer
    private let capacity: Int32

    public init(capacity: Int32 = 512) throws(SystemError) {
        let fd = try checked("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        epoll = FileDescriptor(owning: fd)
        self.capacity = capacity
        buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(capacity) * tunnel_epoll_event_size(), alignment: 8)
    }

    deinit { buffer.deallocate() }

    public func close() { epoll.close() }

    public func add(fd: Int32, events: IOEvents, id: UInt64) throws(SystemError) {
        _ = try checked("epoll_ctl(ADD)") { tunnel_epoll_ctl(epoll.raw, EPOLL_CTL_ADD, fd, events.rawValue, id) }
    }

    public func modify(fd: Int32, events: IOEvents, id: UInt64) throws(SystemError) {
        _ = try checked("epoll_ctl(MOD)") { tunnel_epoll_ctl(epoll.raw, EPOLL_CTL_MOD, fd, events.rawValue, id) }
    }

    public func remove(fd: Int32) {
        // ENOENT/EBADF here mean the fd is already gone from the set: nothing to undo.
        _ = tunnel_epoll_ctl(epoll.raw, EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1 forever) and calls `body` for each event.
    public func wait(timeoutMilliseconds: Int32, _ body: (UInt64, IOEvents) -> Void) throws(SystemError) {
        let n: Int32
        while true {
            let rc = tunnel_epoll_wait(epoll.raw, buffer, capacity, timeoutMilliseconds)
            if rc >= 0 { n = rc; break }
            if errno == EINTR { n = 0; break }
            throw SystemError("epoll_wait", .current)
        }
        var events: UInt32 = 0
        var data: UInt64 = 0
        for i in 0..<n {
            tunnel_epoll_event_at(buffer, i, &events, &data)
            body(data, IOEvents(rawValue: events))
        }
    }
}
