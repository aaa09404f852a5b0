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

/// Signals delivered as readable events instead of handlers.
public final class SignalFD {
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.raw }

    /// Blocks `signals` for the calling thread (and threads it starts later)
    /// and reads them from a descriptor.
    public init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        _ = pthread_sigmask(SIG_BLOCK, &set, nil)
        let fd = try checked("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)) }
        descriptor = FileDescriptor(owning: fd)
    }

    /// The next pending signal number, or nil.
    public func next() -> Int32? {
        var info = signalfd_siginfo()
        let n = Glibc.read(fd, &info, MemoryLayout<signalfd_siginfo>.size)
        guard n == MemoryLayout<signalfd_siginfo>.size else { return nil }
        return Int32(info.ssi_signo)
    }

    public func close() { descriptor.close() }
}

/// Blocks the given signals in the calling thread, so threads it starts do not
/// receive them either (only the owner's signalfd sees them).
public func blockSignals(_ signals: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    _ = pthread_sigmask(SIG_BLOCK, &set, nil)
}

public func unblockSignals(_ signals: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    _ = pthread_sigmask(SIG_UNBLOCK, &set, nil)
}
