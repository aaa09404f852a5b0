import Glibc
import TunnelPOSIX

/// Where one supervisor keeps its control socket, pid file, log and saved
/// state. Two supervisors with different runtime directories never meet.
public struct RuntimeDirectory: Sendable, Equatable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `--runtime-dir`, else $TUNNEL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/tunnel,
    /// else a per-user directory under /tmp.
    public static func resolve(explicit: String?, environment: [String: String]) -> RuntimeDirectory {
        if let explicit, !explicit.isEmpty { return RuntimeDirectory(path: explicit) }
        if let env = environment["TUNNEL_RUNTIME_DIR"], !env.isEmpty { return RuntimeDirectory(path: env) }
        if let xdg = environment["XDG_RUNTIME_DIR"], xdg.hasPrefix("/") { return RuntimeDirectory(path: xdg + "/tunnel") }
        return RuntimeDirectory(path: "/tmp/tunnel-\(getuid())")
    }

    public var socketPath: String { path + "/control.sock" }
    public var pidPath: String { path + "/supervisor.pid" }
    public var lockPath: String { path + "/supervisor.lock" }
    public var logPath: String { path + "/supervisor.log" }
    public var statePath: String { path + "/state.json" }
    /// Present while the supervisor logs to the journal instead of `logPath`;
    /// holds the journalctl options that select its unit (`--user -u tunnel.service`).
    public var journalPath: String { path + "/supervisor.journal" }

    /// Why the directory cannot be used, worded for the user.
    public struct Problem: Error, Equatable, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// The control socket's path does not fit a Unix socket address.
    public var socketPathProblem: Problem? {
        let length = socketPath.utf8.count
        guard length > SocketAddress.maxUnixPathBytes else { return nil }
        return Problem(message: "runtime directory \(path) is too long: its control socket \(socketPath) is \(length) bytes, and a Unix socket path holds at most \(SocketAddress.maxUnixPathBytes); use --runtime-dir or $TUNNEL_RUNTIME_DIR with a shorter path")
    }

    /// Creates the directory (0700) if needed and checks that it is ours,
    /// private and writable: a socket in a directory others can write to
    /// could be replaced by theirs.
    public func prepare() throws(Problem) {
        if let socketPathProblem { throw socketPathProblem }
        if Files.status(path) == nil {
            do { try Files.makeDirectories(path, mode: 0o700) } catch {
                throw Problem(message: "cannot create runtime directory \(path): \(error.errno)")
            }
        }
        guard let status = Files.status(path) else {
            throw Problem(message: "runtime directory \(path) vanished")
        }
        guard status.isDirectory else { throw Problem(message: "runtime directory \(path) is not a directory") }
        guard status.uid == getuid() else {
            throw Problem(message: "runtime directory \(path) belongs to uid \(status.uid), not to you (uid \(getuid())); use --runtime-dir or $TUNNEL_RUNTIME_DIR")
        }
        if status.mode & 0o077 != 0 {
            let mode = String(status.mode & 0o7777, radix: 8)
            // Ours but too open: tighten it, when it is tunnel's alone (empty,
            // or only its own files). A shared directory (/tmp, a project
            // directory) is refused instead: changing its mode would break
            // whatever else lives there.
            let foreign = Files.directoryEntries(path).filter { !isOwnEntry($0) }
            guard status.mode & 0o1000 == 0, foreign.isEmpty else {
                let holds = foreign.isEmpty ? "is shared (sticky)" : "holds files that are not tunnel's (\(foreign.sorted().prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", ..." : ""))"
                throw Problem(message: "runtime directory \(path) is accessible to others (mode \(mode)) and \(holds), so tunnel will not make it private; name a directory of its own (it is created with mode 700) with --runtime-dir or $TUNNEL_RUNTIME_DIR")
            }
            if chmod(path, 0o700) != 0 {
                throw Problem(message: "runtime directory \(path) is accessible to others (mode \(mode)) and cannot be made private")
            }
        }
        guard Files.isWritableDirectory(path) else {
            throw Problem(message: "runtime directory \(path) is not writable")
        }
    }

    /// A file the supervisor keeps here (the log's rotations and a state
    /// file being replaced included).
    private func isOwnEntry(_ name: String) -> Bool {
        let own = [socketPath, pidPath, lockPath, logPath, statePath, journalPath].map { String($0.dropFirst(path.count + 1)) }
        return own.contains { name == $0 || name.hasPrefix($0 + ".") }
    }

    /// The pid recorded by the running (or last) supervisor.
    public func recordedPID() -> pid_t? {
        guard let text = try? Files.readText(pidPath) else { return nil }
        return pid_t(text.split(separator: "\n").first ?? "")
    }
}
