import Glibc
import CLinuxShim

/// A command run through `/bin/sh -c` whose stdin and stdout are one end of a
/// socketpair (the caller gets the other end as a Socket) and whose stderr
/// is a pipe the caller reads: a ProxyCommand, whose stdio carries an SSH
/// session.
public final class ChildProcess {
    public let pid: pid_t
    /// The read end of the command's stderr (non-blocking, close-on-exec).
    public let stderr: FileDescriptor
    public private(set) var exitStatus: Int32?

    private init(pid: pid_t, stderr: FileDescriptor) {
        self.pid = pid
        self.stderr = stderr
    }

    /// Starts `/bin/sh -c command`; returns it and the socket to talk to it through.
    public static func spawnShell(_ command: String, environment: [String: String]) throws(SystemError) -> (ChildProcess, Socket) {
        var pair: [Int32] = [-1, -1]
        _ = try checked("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) }
        var errPipe: [Int32] = [-1, -1]
        do {
            _ = try checked("pipe2") { pipe2(&errPipe, O_CLOEXEC) }
        } catch {
            _ = close(pair[0]); _ = close(pair[1])
            throw error
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copies the child keeps.
        posix_spawn_file_actions_adddup2(&actions, pair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, pair[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(); sigemptyset(&none)
        var all = sigset_t(); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        // Its own session: a Ctrl-C meant for a foreground tunnel does not reach it first.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | TUNNEL_POSIX_SPAWN_SETSID))
        let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", command].map { (arg: String) in strdup(arg) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/bin/sh", &actions, &attr, argv, envp)
        _ = close(pair[1])
        _ = close(errPipe[1])
        guard rc == 0 else {
            _ = close(pair[0]); _ = close(errPipe[0])
            throw SystemError("posix_spawn(/bin/sh -c \(command))", Errno(rc))
        }
        _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(errPipe[0], F_SETFL, fcntl(errPipe[0], F_GETFL) | O_NONBLOCK)
        return (ChildProcess(pid: child, stderr: FileDescriptor(owning: errPipe[0])), Socket(owning: pair[0]))
    }

    /// What stderr holds now (nil at its end).
    public func readStderr() -> IOResult<[UInt8]>? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(stderr.raw, &buffer, buffer.count)
            if n > 0 { return .done(Array(buffer[0..<n])) }
            if n == 0 { return nil }
            if errno == EINTR { continue }
            return errno == EAGAIN ? .wouldBlock : nil
        }
    }

    /// Signals its process group (it leads one: spawned with setsid), so
    /// whatever it started goes too.
    public func signal(_ signo: Int32) {
        _ = kill(-pid, signo)
    }

    /// Ends it whatever becomes of the caller's loop: SIGTERM to its process
    /// group now, SIGKILL after `grace` seconds, and reaped either way, on a
    /// short-lived thread of its own.
    public func terminate(grace: Double = 1) {
        guard exitStatus == nil else { return }
        let pid = self.pid
        signal(SIGTERM)
        startThread(name: "reap \(pid)") {
            let deadline = Instant.now().adding(seconds: grace)
            var status: Int32 = 0
            while waitpid(pid, &status, WNOHANG) == 0 {
                guard Instant.now() < deadline else {
                    _ = kill(-pid, SIGKILL)
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    return
                }
                usleep(20_000)
            }
        }
    }

    /// Reaps the process if it has exited; true once it has.
    @discardableResult
    public func reap() -> Bool {
        if exitStatus != nil { return true }
        exitStatus = ProcessControl.reap(pid)
        return exitStatus != nil
    }
}
