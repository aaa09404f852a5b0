import Glibc

/// Request/response exchanges on a non-blocking socket, bounded by a deadline
/// so a peer that stops answering (a stuck ssh-agent) never hangs the caller.
extension Socket {
    public enum DeadlineResult<T> {
        case done(T)
        case closed
        case timedOut
    }

    /// Connects, waiting until `deadline` for a connect in progress.
    public func connect(_ address: SocketAddress, until deadline: Instant) throws(SystemError) -> DeadlineResult<Void> {
        guard case .wouldBlock = try connect(address) else { return .done(()) }
        guard Poll.wait(fd: fd, writable: true, timeout: deadline.seconds(since: .now())) else { return .timedOut }
        if let error = pendingError() { throw SystemError("connect(\(address))", error) }
        return .done(())
    }

    /// Sends every byte of `bytes` before `deadline`.
    public func sendAll(_ bytes: [UInt8], until deadline: Instant) throws(SystemError) -> DeadlineResult<Void> {
        var offset = 0
        while offset < bytes.count {
            let attempt = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try send(raw.baseAddress! + offset, count: raw.count - offset) }
            }
            switch try attempt.get() {
            case .done(let n): offset += n
            case .wouldBlock:
                guard Poll.wait(fd: fd, writable: true, timeout: deadline.seconds(since: .now())) else { return .timedOut }
            }
        }
        return .done(())
    }

    /// Reads exactly `count` bytes before `deadline`; `.closed` if the peer closes first.
    public func receive(exactly count: Int, until deadline: Instant) throws(SystemError) -> DeadlineResult<[UInt8]> {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let attempt = bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try recv(into: raw.baseAddress! + offset, count: raw.count - offset) }
            }
            switch try attempt.get() {
            case .done(0): return .closed
            case .done(let n): offset += n
            case .wouldBlock:
                guard Poll.wait(fd: fd, writable: false, timeout: deadline.seconds(since: .now())) else { return .timedOut }
            }
        }
        return .done(bytes)
    }
}
