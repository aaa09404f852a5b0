import Glibc
import CLinuxShim

/// sd_notify(3) without libsystemd: one datagram of `KEY=VALUE` lines to the
/// AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an
/// abstract socket). The only owner of its socket.
public final class SystemdNotifier {
    public let address: String
    private let descriptor: FileDescriptor

    /// Nil when `$NOTIFY_SOCKET` is unset or names neither a path nor an
    /// abstract socket (sd_notify ignores such values too).
    public init?(environment: [String: String]) throws(SystemError) {
        guard let address = environment["NOTIFY_SOCKET"], SystemdNotifier.socketAddress(address) != nil else { return nil }
        self.address = address
        let fd = try checked("socket(AF_UNIX, SOCK_DGRAM)") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        descriptor = FileDescriptor(owning: fd)
    }

    /// Sends `state` ("READY=1", "WATCHDOG=1", ...; several separated by
    /// newlines) as one datagram. A full receive queue is reported as
    /// `.wouldBlock`: the message is dropped, as sd_notify would block instead.
    @discardableResult
    public func send(_ state: String) throws(SystemError) -> IOResult<Int> {
        guard descriptor.isOpen, let (storage, length) = SystemdNotifier.socketAddress(address) else {
            throw SystemError("sendto(\(address))", Errno(EBADF))
        }
        var sun = storage
        let bytes = Array(state.utf8)
        return try retrying("sendto(\(address))") {
            withUnsafePointer(to: &sun) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { addr in
                    bytes.withUnsafeBytes { Glibc.sendto(descriptor.raw, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), addr, length) }
                }
            }
        }
    }

    public func close() { descriptor.close() }

    /// The socket address for `$NOTIFY_SOCKET`: `/path`, or `@name` with the
    /// `@` made a NUL (Linux's abstract namespace, no trailing NUL counted).
    static func socketAddress(_ address: String) -> (sockaddr_un, socklen_t)? {
        var bytes = Array(address.utf8)
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "/") || bytes[0] == UInt8(ascii: "@") else { return nil }
        let abstract = bytes[0] == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        // A path needs room for its NUL; an abstract name may fill sun_path.
        guard bytes.count <= (abstract ? capacity : capacity - 1) else { return nil }
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sun.sun_path) { $0.copyBytes(from: bytes) }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        return (sun, socklen_t(pathOffset + bytes.count + (abstract ? 0 : 1)))
    }
}

/// What systemd's environment asks of a service, read once at start.
public enum SystemdEnvironment {
    /// Half of `$WATCHDOG_USEC`, in seconds: how often to send WATCHDOG=1.
    /// Nil when unset, zero or unparsable, or when `$WATCHDOG_PID` names
    /// another process (sd_watchdog_enabled(3)).
    public static func watchdogInterval(_ environment: [String: String]) -> Double? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], !pid.isEmpty, pid_t(pid) != getpid() { return nil }
        return Double(usec) / 2_000_000
    }

    /// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) names what `fd` is connected
    /// to: then the journal reads it and lines may carry `<N>` priorities
    /// (sd-daemon(3)). A descriptor redirected elsewhere does not match.
    public static func journalStreamMatches(_ environment: [String: String], fd: Int32 = 2) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants.
    public static func monotonicMicroseconds() -> UInt64 { Instant.now().nanoseconds / 1000 }

    /// The systemd unit this process runs in (`tunnel.service`), from its
    /// cgroup, and whether a user's manager runs it (under `user@UID.service`);
    /// nil outside a service.
    public static func unit() -> (name: String, user: Bool)? {
        guard let text = try? Files.readText("/proc/self/cgroup") else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "/")
            for part in parts.reversed() where part.hasSuffix(".service") {
                return (String(part), parts.contains { $0.hasPrefix("user@") && $0 != part })
            }
        }
        return nil
    }
}

extension ProcessControl {
    /// Replaces this process with `path args` (execv); returns only on failure.
    public static func exec(_ path: String, _ args: [String]) -> SystemError {
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        _ = execv(path, argv)
        return SystemError("execv(\(path))", .current)
    }
}
