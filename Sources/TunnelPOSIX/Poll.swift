import Glibc

/// poll(2), for the few blocking waits outside an event loop.
public enum Poll {
    public static func wait(fd: Int32, writable: Bool, timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        let ms = Int32(max(0, min(timeout * 1000, Double(Int32.max))))
        return poll(&p, 1, ms) > 0
    }

    /// The descriptors of `fds` that became writable (or failed) within
    /// `timeout` seconds; empty when none did.
    public static func writable(_ fds: [Int32], timeout: Double) -> [Int32] {
        var set = fds.map { pollfd(fd: $0, events: Int16(POLLOUT), revents: 0) }
        let deadline = Instant.now().adding(seconds: timeout)
        while true {
            let left = deadline.seconds(since: Instant.now())
            let ms = Int32(max(0, min(left * 1000, Double(Int32.max))))
            let rc = poll(&set, nfds_t(set.count), ms)
            if rc > 0 { return set.filter { $0.revents != 0 }.map(\.fd) }
            if rc == 0 || errno != EINTR { return [] }
        }
    }
}
