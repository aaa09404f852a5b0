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

    /// util-linux's setpriv, which sets PR_SET_PDEATHSIG before it runs the
    /// shell: posix_spawn cannot, and a command such as `nc` that does not
    /// exit when its input closes would otherwise outlive a supervisor killed
    /// outright (SIGKILL, the OOM killer) and hold its connection open.
    /// Without it (util-linux is essential on Debian) the shell runs directly.
    private static let setpriv: String? = access("/usr/bin/setpriv", X_OK) == 0 ? "/usr/bin/setpriv" : nil

    /// Starts `/bin/sh -c command`, which gets SIGTERM when the thread that
    /// started it ends (the caller's loop thread, which lives as long as the
    /// process); returns it and the socket to talk to it through.
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
        let child: pid_t
        do {
            let (program, arguments) = setpriv.map { ($0, ["--pdeathsig", "TERM", "/bin/sh", "-c", command]) } ?? ("/bin/sh", ["-c", command])
            child = try ProcessControl.spawn(program, arguments, environment: environment,
                                             stdin: .descriptor(pair[1]), stdout: .descriptor(pair[1]), stderr: .descriptor(errPipe[1]))
        } catch {
            _ = close(pair[0]); _ = close(pair[1]); _ = close(errPipe[0]); _ = close(errPipe[1])
            throw SystemError("posix_spawn(/bin/sh -c \(command))", error.errno)
        }
        _ = close(pair[1])
        _ = close(errPipe[1])
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
        do {
            try startThread(name: "reap \(pid)") {
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
        } catch {
            // No thread to wait out the grace period: no grace, but no zombie.
            _ = kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
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
