import Glibc
import TunnelPOSIX
import TunnelConfig

/// The CLI's side of the control socket. Starts the supervisor on first use.
public struct ControlClient {
    public let dir: RuntimeDirectory

    public init(dir: RuntimeDirectory) { self.dir = dir }

    /// "1", "0.5": a wait as the user wrote it.
    public static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))" : "\((value * 10).rounded() / 10)"
    }

    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        /// The supervisor took the request and gave no reply by the deadline.
        public var noReplyInTime = false
        public var description: String { message }
        init(message: String, noReplyInTime: Bool = false) {
            self.message = message
            self.noReplyInTime = noReplyInTime
        }
    }

    /// Connects to a running supervisor; nil when none is listening.
    /// Throws when one is there but refuses us.
    public func connect() throws(Failure) -> Socket? {
        if let problem = dir.socketPathProblem { throw Failure(message: problem.message) }
        if let status = Files.status(dir.path), status.uid != ProcessControl.uid {
            throw Failure(message: "permission denied: runtime directory \(dir.path) belongs to uid \(status.uid), not to you (uid \(ProcessControl.uid)); use --runtime-dir")
        }
        guard Files.exists(dir.socketPath) else { return nil }
        let socket: Socket
        do { socket = try Socket.unix() } catch { throw Failure(message: "\(error)") }
        do {
            guard case .done = try socket.connect(.unix(path: dir.socketPath), until: Instant.now().adding(seconds: 2)) else {
                socket.close()
                return nil
            }
            return socket
        } catch {
            socket.close()
            switch error.errno {
            case .connectionRefused, .noEntry:
                return nil // stale socket: nobody listens
            case .accessDenied:
                throw Failure(message: "permission denied on \(dir.socketPath): the supervisor there belongs to another user; use --runtime-dir")
            default:
                throw Failure(message: "cannot reach the supervisor at \(dir.socketPath): \(error.errno)")
            }
        }
    }

    /// Sends one request and waits up to `timeout` for the reply.
    public func send(_ request: ControlRequest, over socket: Socket, timeout: Double) throws(Failure) -> ControlResponse {
        defer { socket.close() }
        var request = request
        request.clientVersion = tunnelVersion
        let line = JSONLine.encode(request)
        var offset = 0
        let deadline = Instant.now().adding(seconds: timeout)
        sending: while offset < line.count {
            let left = deadline.seconds(since: Instant.now())
            guard left > 0 else { throw Failure(message: "the supervisor did not accept the request within \(Int(timeout)) s") }
            let result = line.withUnsafeBytes { try? socket.send($0.baseAddress! + offset, count: $0.count - offset) }
            switch result {
            case .done(let n)?: offset += n
            case .wouldBlock?: _ = Poll.wait(fd: socket.fd, writable: true, timeout: left)
            case nil: break sending // it may have replied (a refusal) before closing: read it
            }
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !reply.contains(UInt8(ascii: "\n")) {
            let left = deadline.seconds(since: Instant.now())
            guard left > 0 else {
                let pid = dir.recordedPID().map { " (pid \($0))" } ?? ""
                throw Failure(message: "no reply from the supervisor\(pid) within \(ControlClient.seconds(timeout)) s; it has the request and may still carry it out",
                              noReplyInTime: true)
            }
            let result = buffer.withUnsafeMutableBytes { try? socket.recv(into: $0.baseAddress!, count: $0.count) }
            switch result {
            case .done(0)?: 
                if reply.isEmpty { throw Failure(message: "the supervisor closed the connection without replying") }
                reply.append(UInt8(ascii: "\n"))
            case .done(let n)?: reply += buffer[0..<n]
            case .wouldBlock?: _ = Poll.wait(fd: socket.fd, writable: false, timeout: left)
            case nil: throw Failure(message: "the connection to the supervisor failed")
            }
        }
        let body = Array(reply[..<reply.firstIndex(of: UInt8(ascii: "\n"))!])
        if let version = JSONLine.version(of: body), version != ControlProtocol.version {
            let theirs = JSONLine.decode(ControlResponse.self, body)?.supervisorVersion ?? "?"
            throw Failure(message: "the running supervisor (tunnel \(theirs)) speaks control protocol v\(version), this CLI (tunnel \(tunnelVersion)) v\(ControlProtocol.version); stop it with `tunnel daemon stop` and run the command again")
        }
        guard let response = JSONLine.decode(ControlResponse.self, body) else {
            throw Failure(message: "unreadable reply from the supervisor")
        }
        return response
    }

    /// Sends a request to the running supervisor; nil when none is running.
    public func request(_ request: ControlRequest, timeout: Double = 30) throws(Failure) -> ControlResponse? {
        guard let socket = try connect() else { return nil }
        return try send(request, over: socket, timeout: timeout)
    }

    /// Connects, starting a supervisor (detached, its own session and log)
    /// when none is running. A stale socket or pid file is replaced.
    /// `configPath`: the profiles file whose `[daemon]` table a started supervisor follows.
    /// A connection to the supervisor, starting one if none runs; `started`
    /// says whether this call started it.
    public func connectStarting(executable: String, environment: [String: String],
                                configPath: String? = nil) throws(Failure) -> (socket: Socket, started: Bool) {
        do { try dir.prepare() } catch { throw Failure(message: error.message) }
        if let socket = try connect() { return (socket, false) }
        // A supervisor refuses to start on a bad [daemon] table: say why here, with file:line, not "see the log".
        if let configPath {
            do throws(DaemonSettingsError) { _ = try Config.daemonSettings(path: configPath, environment: environment) } catch {
                throw Failure(message: error.description)
            }
        }
        let logStart = Files.size(dir.logPath) ?? 0
        let pid: pid_t
        do {
            let config = configPath.map { ["--config", $0] } ?? []
            pid = try ProcessControl.spawnDetached(executable, ["daemon", "--runtime-dir", dir.path, "--detached"] + config, environment: environment)
        } catch {
            throw Failure(message: "cannot start the supervisor: \(error)")
        }
        let deadline = Instant.now().adding(seconds: 10)
        while Instant.now() < deadline {
            if let socket = try connect() { return (socket, true) }
            if let status = ProcessControl.reap(pid) {
                // It exited: another CLI may have started one meanwhile.
                if let socket = try connect() { return (socket, false) }
                let why = startFailure(loggedFrom: logStart).map { ": \($0)" } ?? ""
                throw Failure(message: "the supervisor exited at start (status \(status))\(why); see \(dir.logPath)")
            }
            usleep(10_000)
        }
        throw Failure(message: "the supervisor did not start within 10 s; see \(dir.logPath)")
    }

    /// The last error the supervisor logged from `offset` on, without its
    /// timestamp: why it exited at start (a metrics port taken, ...).
    private func startFailure(loggedFrom offset: Int) -> String? {
        guard let bytes = (try? Files.read(dir.logPath, from: offset)) ?? nil else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard let line = lines.last(where: { $0.contains(" critical: ") || $0.contains(" error: ") }) else { return nil }
        // "2026-12-04 13:00:00 critical: ..." : the level and message.
        let fields = line.split(separator: " ", maxSplits: 2)
        return fields.count == 3 ? String(fields[2]) : String(line)
    }
}

