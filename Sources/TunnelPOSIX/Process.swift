import Glibc
import CLinuxShim

/// Process-level helpers: pids, locks, spawning the daemon.
public enum ProcessControl {
    public static var pid: pid_t { getpid() }
    /// Cores online (at least 1): the size of the tunnels' event-loop group.
    public static var onlineCores: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
    public static var uid: uid_t { getuid() }

    /// Whether a process with this pid exists (and we may signal it).
    public static func isAlive(_ pid: pid_t) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    public static func signal(_ pid: pid_t, _ signo: Int32) -> Bool { kill(pid, signo) == 0 }

    /// The executable of the running process.
    public static var executablePath: String { Files.readLink("/proc/self/exe") ?? "/proc/self/exe" }

    /// How a spawned child's descriptors 0-2 are set up.
    public enum Stdio {
        case devNull
        /// This descriptor, duplicated onto the child's.
        case descriptor(Int32)
    }

    /// Starts `path args` in a new session (setsid: its own process group,
    /// away from the terminal), with default signal handling and mask.
    /// Returns its pid.
    public static func spawn(_ path: String, _ args: [String], environment: [String: String],
                             stdin: Stdio = .devNull, stdout: Stdio = .devNull, stderr: Stdio = .devNull) throws(SystemError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, stdio) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stdio {
            case .devNull: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            // dup2 clears close-on-exec on the copy the child keeps.
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        // Nothing the caller's process holds without close-on-exec reaches the
        // child: a supervisor that kept a pipe of the shell or CI job that ran
        // `tunnel up` would keep its reader waiting for EOF for ever.
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(); sigemptyset(&none)
        var all = sigset_t(); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | TUNNEL_POSIX_SPAWN_SETSID))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { (arg: String) in strdup(arg) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        if rc != 0 { throw SystemError("posix_spawn(\(path))", Errno(rc)) }
        return child
    }

    /// Starts `path args` detached: a new session, stdio on /dev/null.
    public static func spawnDetached(_ path: String, _ args: [String], environment: [String: String]) throws(SystemError) -> pid_t {
        try spawn(path, args, environment: environment)
    }

    /// Reaps `pid` if it has exited; returns its exit status then.
    public static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        let sig = status & 0x7f
        return sig == 0 ? (status >> 8) & 0xff : 128 + sig
    }

    public static func exitNow(_ code: Int32) -> Never { _exit(code) }

    public static func ignoreSIGPIPE() { _ = Glibc.signal(SIGPIPE, SIG_IGN) }

    /// Raises the soft open-files limit to the hard limit.
    @discardableResult
    public static func raiseFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }
}

/// An exclusive advisory lock on a file, held while the object lives. Only one
/// supervisor per runtime directory can hold it; it vanishes with the process,
/// so a killed supervisor never leaves a stale lock.
public final class FileLock {
    private let descriptor: FileDescriptor

    /// Nil when another process holds the lock.
    public init?(path: String) throws(SystemError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open(\(path))", .current) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            _ = close(fd)
            if err == EWOULDBLOCK { return nil }
            throw SystemError("flock(\(path))", Errno(err))
        }
        descriptor = FileDescriptor(owning: fd)
    }

    public func release() { descriptor.close() }
}

extension ProcessControl {
    /// The first executable `name` in $PATH (or the usual directories).
    public static func which(_ name: String) -> String? {
        let path = currentEnvironment()["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/bin"] {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs `path args` with stdin and stderr on /dev/null and returns its
    /// exit status and stdout; nil when it cannot start or outlives `timeout`
    /// (it is killed then). For short local commands (`ssh -G`).
    /// `withStderr`: stderr goes into the output too (for a failure's own words).
    public static func capture(_ path: String, _ args: [String], timeout: Double, withStderr: Bool = false) -> (status: Int32, output: String)? {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe2(&pipeFDs, O_CLOEXEC) == 0 else { return nil }
        let child: pid_t
        do {
            child = try spawn(path, args, environment: currentEnvironment(), stdout: .descriptor(pipeFDs[1]),
                              stderr: withStderr ? .descriptor(pipeFDs[1]) : .devNull)
        } catch {
            _ = close(pipeFDs[0]); _ = close(pipeFDs[1])
            return nil
        }
        _ = close(pipeFDs[1])
        defer { _ = close(pipeFDs[0]) }
        let deadline = Instant.now().adding(seconds: timeout)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let left = deadline.seconds(since: Instant.now())
            guard left > 0, Poll.wait(fd: pipeFDs[0], writable: false, timeout: left) else {
                _ = kill(child, SIGKILL)
                var status: Int32 = 0
                _ = waitpid(child, &status, 0)
                return nil
            }
            let n = read(pipeFDs[0], &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[0..<n]
            if output.count > 4 << 20 { _ = kill(child, SIGKILL); break }
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: output, as: UTF8.self))
    }
}
