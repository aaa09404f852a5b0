import TunnelPOSIX

/// One ssh-agent exchange: a request and its length-prefixed reply.
///
/// tunnel speaks the agent protocol itself instead of through libssh2's agent
/// calls: those do blocking I/O inside the session's thread, so an agent that
/// waits for a confirmation nobody gives (or is stopped) would stall every
/// tunnel on that loop. The Authenticator hands a query to its driver, which
/// runs it on a thread of its own and passes the answer back. Written here
/// because no package on hand speaks it (swift-nio-ssh has no agent client),
/// and the three messages it takes are small.
public struct AgentQuery: Sendable {
    public enum Purpose: Sendable, Equatable {
        case listKeys
        case sign
    }

    public let socketPath: String
    public let purpose: Purpose
    /// Length-prefixed, ready to send.
    let request: [UInt8]
    let deadline: Instant

    init(socketPath: String, purpose: Purpose, body: [UInt8], deadline: Instant) {
        self.socketPath = socketPath
        self.purpose = purpose
        var framed: [UInt8] = []
        framed.appendUInt32(UInt32(body.count))
        framed += body
        self.request = framed
        self.deadline = deadline
    }

    /// Blocking, bounded by the query's deadline: never call it on a loop thread.
    public func run() -> AgentAnswer {
        let address = SocketAddress.unix(path: socketPath)
        guard address.fitsSockaddr else {
            return .failed("not reachable (the path is longer than the \(SocketAddress.maxUnixPathBytes) bytes a socket address holds)")
        }
        let socket: Socket
        do { socket = try Socket.unix() } catch { return .failed("\(error.errno)") }
        defer { socket.close() }
        do {
            guard case .done = try socket.connect(address, until: deadline) else { return .silent }
        } catch {
            if let kind = Files.nonSocketKind(socketPath) { return .failed("not reachable: it is \(kind), not a socket") }
            return .failed("not reachable (\(error.errno))")
        }
        do {
            guard case .done = try socket.sendAll(request, until: deadline) else { return .silent }
            switch try socket.receive(exactly: 4, until: deadline) {
            case .timedOut: return .silent
            case .closed: return .failed("it closed the connection without answering")
            case .done(let header):
                var reader = SSHReader(header)
                let length = Int(reader.uint32() ?? 0)
                guard length > 0 && length <= AgentQuery.replyLimit else { return .failed("it announced a reply of \(length) bytes") }
                switch try socket.receive(exactly: length, until: deadline) {
                case .timedOut: return .silent
                case .closed: return .failed("it closed the connection mid-reply")
                case .done(let reply): return .reply(reply)
                }
            }
        } catch {
            return .failed("\(error.errno) during the request")
        }
    }

    /// OpenSSH's agent refuses messages over 256 KiB; so does tunnel.
    static let replyLimit = 256 * 1024
}

public enum AgentAnswer: Sendable, Equatable {
    case reply([UInt8])
    /// Nothing by the deadline.
    case silent
    /// Not reachable, hung up, or nonsense; why.
    case failed(String)
}

/// The messages of the agent protocol tunnel uses (draft-miller-ssh-agent).
enum AgentProtocol {
    static let failure: UInt8 = 5
    static let requestIdentities: UInt8 = 11, identitiesAnswer: UInt8 = 12
    static let signRequest: UInt8 = 13, signResponse: UInt8 = 14

    struct Identity: Equatable {
        let blob: [UInt8]
        let comment: String
    }

    static func listRequest() -> [UInt8] { [requestIdentities] }

    /// nil: not an identities answer, or malformed.
    static func identities(from reply: [UInt8]) -> [Identity]? {
        guard reply.first == identitiesAnswer else { return nil }
        var reader = SSHReader(Array(reply.dropFirst()))
        guard let count = reader.uint32(), Int(count) <= reader.remaining / 8 else { return nil }
        var found: [Identity] = []
        for _ in 0..<count {
            guard let blob = reader.string(), let comment = reader.string() else { return nil }
            found.append(Identity(blob: blob, comment: String(decoding: comment, as: UTF8.self)))
        }
        return found
    }

    static func signRequest(keyBlob: [UInt8], data: [UInt8], flags: UInt32) -> [UInt8] {
        var body: [UInt8] = [signRequest]
        body.appendSSHBytes(keyBlob)
        body.appendSSHBytes(data)
        body.appendUInt32(flags)
        return body
    }

    enum SignatureError: Error, Equatable {
        case refused
        case malformed
        /// The agent signed with another algorithm than the one asked for.
        case algorithm(String)
    }

    /// The raw signature inside the agent's reply (what libssh2's sign
    /// callback returns), checked to be `algorithm` when one is given.
    static func signature(from reply: [UInt8], algorithm: String?) throws(SignatureError) -> [UInt8] {
        guard reply.first == signResponse else { throw .refused }
        var reader = SSHReader(Array(reply.dropFirst()))
        guard let blob = reader.string() else { throw .malformed }
        var signature = SSHReader(blob)
        guard let nameBytes = signature.string(), let raw = signature.string() else { throw .malformed }
        let name = String(decoding: nameBytes, as: UTF8.self)
        if let algorithm, name != algorithm { throw .algorithm(name) }
        return raw
    }
}
