import Glibc
import Logging
import TunnelEngine
import TunnelPOSIX

/// The control socket: a Unix socket, mode 0600, in the 0700 runtime
/// directory. Peers of another uid are refused (SO_PEERCRED). One request and
/// one reply per connection, each a line of JSON. A client that sends more
/// than 1 MiB, hangs up mid-request, or sends nothing whole within 10 s is
/// dropped and logged; everyone else is served meanwhile.
final class ControlServer {
    private final class Client {
        let socket: Socket
        let pid: pid_t
        var registration: EventLoop.Registration?
        var deadline: EventLoop.TimerID?
        var input: [UInt8] = []
        let output = ByteBuffer()
        var replied = false
        init(socket: Socket, pid: pid_t) {
            self.socket = socket
            self.pid = pid
        }
    }

    private let loop: EventLoop
    private let logger: Logger
    private let listener: Socket
    private var registration: EventLoop.Registration?
    private var clients: [ObjectIdentifier: Client] = [:]
    private let handler: (ControlRequest, @escaping (ControlResponse) -> Void) -> Void
    private static let maxRequest = 1 << 20
    /// How long a client may take to send its request (and to read its reply).
    static let requestTimeout = 10.0

    init(path: String, loop: EventLoop, logger: Logger,
         handler: @escaping (ControlRequest, @escaping (ControlResponse) -> Void) -> Void) throws(SystemError) {
        self.loop = loop
        self.logger = logger
        self.handler = handler
        let socket = try Socket.unix()
        do {
            // Only the owner may connect, also while the mode is being set.
            let old = umask(0o177)
            defer { umask(old) }
            try socket.bind(.unix(path: path))
            try socket.listen(backlog: 64)
        } catch {
            socket.close()
            throw error
        }
        listener = socket
        registration = try loop.register(fd: socket.fd, events: .readable) { [unowned self] _ in self.acceptClients() }
    }

    func close() {
        if let registration { loop.deregister(registration) }
        registration = nil
        listener.close()
        for client in clients.values { drop(client, because: nil) }
    }

    private func acceptClients() {
        while true {
            guard case .done(let (socket, _))? = try? listener.accept() else { return }
            do {
                let peer = try socket.peerCredentials()
                let client = Client(socket: socket, pid: peer.pid)
                guard peer.uid == ProcessControl.uid else {
                    logger.warning("refused a control connection from uid \(peer.uid) (pid \(peer.pid))")
                    var refusal = ControlResponse(ok: false, error: "permission denied: this supervisor serves uid \(ProcessControl.uid) only")
                    refusal.pid = ProcessControl.pid
                    let line = JSONLine.encode(refusal)
                    _ = line.withUnsafeBytes { try? socket.send($0.baseAddress!, count: $0.count) }
                    socket.close()
                    continue
                }
                client.registration = try loop.register(fd: socket.fd, events: .readable) { [unowned self, unowned client] events in
                    self.clientEvent(client, events)
                }
                client.deadline = loop.schedule(after: Self.requestTimeout) { [weak self, weak client] in
                    guard let self, let client else { return }
                    client.deadline = nil
                    self.drop(client, because: client.replied ? "did not read its reply within \(Int(Self.requestTimeout)) s" : "sent no whole request within \(Int(Self.requestTimeout)) s")
                }
                clients[ObjectIdentifier(client)] = client
            } catch {
                socket.close()
                continue
            }
        }
    }

    private func clientEvent(_ client: Client, _ events: IOEvents) {
        if events.contains(.writable) || !client.output.isEmpty { flush(client) }
        guard !client.replied, events.contains(.readable) || events.contains(.hangup) else { return }
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let result = buffer.withUnsafeMutableBytes { try? client.socket.recv(into: $0.baseAddress!, count: $0.count) }
            guard let result else { return drop(client, because: "broke the connection") }
            guard case .done(let n) = result else { break }
            if n == 0 {
                // The peer hung up before sending a whole request.
                if !client.input.contains(UInt8(ascii: "\n")) {
                    return drop(client, because: client.input.isEmpty ? nil : "hung up after \(client.input.count) bytes of a request")
                }
                break
            }
            let scanFrom = client.input.count
            client.input += buffer[0..<n]
            if client.input.count > ControlServer.maxRequest {
                return drop(client, because: "sent a request of more than \(ControlServer.maxRequest) bytes")
            }
            if client.input[scanFrom...].contains(UInt8(ascii: "\n")) { break }
        }
        guard let newline = client.input.firstIndex(of: UInt8(ascii: "\n")) else { return }
        let line = Array(client.input[..<newline])
        client.input = []
        client.replied = true
        if let registration = client.registration { loop.setInterest(registration, []) }
        let request: ControlRequest
        switch ControlProtocol.decodeRequest(line) {
        case .malformed:
            logger.warning("control client (pid \(client.pid)) sent a malformed request; refused")
            return reply(client, ControlResponse(ok: false, error: "malformed request"))
        case .otherVersion(let version):
            var r = ControlResponse(ok: false, error: "the CLI speaks control protocol v\(version) but this supervisor (tunnel \(tunnelVersion)) speaks v\(ControlProtocol.version); stop it with `tunnel daemon stop` (or restart the service) so the new version starts")
            r.supervisorVersion = tunnelVersion
            return reply(client, r)
        case .request(let decoded):
            request = decoded
        }
        // Answering may take long (`up` waits for tunnels): no deadline meanwhile.
        loop.cancel(client.deadline)
        client.deadline = nil
        handler(request) { [weak self, weak client] response in
            guard let self, let client else { return }
            self.reply(client, response)
        }
    }

    private func reply(_ client: Client, _ response: ControlResponse) {
        var response = response
        response.supervisorVersion = tunnelVersion
        response.pid = ProcessControl.pid
        let line = JSONLine.encode(response)
        line.withUnsafeBytes { client.output.append($0.baseAddress!, count: $0.count) }
        if client.deadline == nil {
            client.deadline = loop.schedule(after: Self.requestTimeout) { [weak self, weak client] in
                guard let self, let client else { return }
                client.deadline = nil
                self.drop(client, because: "did not read its reply within \(Int(Self.requestTimeout)) s")
            }
        }
        flush(client)
    }

    private func flush(_ client: Client) {
        while let bytes = client.output.readable, !client.output.isEmpty {
            guard let result = try? client.socket.send(bytes, count: client.output.count) else { return drop(client, because: nil) }
            guard case .done(let n) = result else {
                if let registration = client.registration { loop.setInterest(registration, .writable) }
                return
            }
            client.output.consume(n)
        }
        if client.replied && client.output.isEmpty { drop(client, because: nil) }
    }

    /// Closes a client; `reason`, when given, is logged.
    private func drop(_ client: Client, because reason: String?) {
        guard clients[ObjectIdentifier(client)] != nil else { return }
        if let reason { logger.warning("dropped control client (pid \(client.pid)): it \(reason)") }
        loop.cancel(client.deadline)
        client.deadline = nil
        if let registration = client.registration { loop.deregister(registration) }
        client.registration = nil
        client.output.release()
        client.socket.close()
        clients.removeValue(forKey: ObjectIdentifier(client))
    }
}
