import Logging
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// The jump hosts in front of one SSH connection (`jump` in the profile).
/// Hop 1 is reached over TCP (or the proxy command); each later hop's
/// session runs over a direct-tcpip channel of the hop before it: the outer
/// hop's link pumps one end of a socketpair into that channel, exactly like a
/// forwarded client, and the inner session reads and writes the other end.
/// One socket per session is what libssh2 1.10 wants, and it keeps every hop
/// on the tunnel's loop with the same pump, backpressure and keepalive.
/// Each hop's host key is checked under its own name, and each hop
/// authenticates as its own user, before anything is sent through it.
final class HopChain {
    private let loop: EventLoop
    private let profile: Profile
    private let options: Connector.Options
    private let logger: Logger
    private let scratch: Scratch
    private let hops: [JumpHop]
    /// The outer hops' links, first hop first.
    private(set) var links: [Link] = []
    private var connector: Connector?
    /// The socketpair ends the outer links carry; closed with the chain
    /// whether or not a link took them.
    private var carriers: [Connection] = []
    private var closed = false
    /// An outer hop's link died (after `connect` succeeded, or during it).
    var onDeath: (String) -> Void = { _ in }
    /// Each hop's progress, for `tunnel check`.
    var onProgress: ((Int, ConnectProgress) -> Void)?

    init(loop: EventLoop, profile: Profile, options: Connector.Options, logger: Logger, scratch: Scratch = Scratch(size: 256 * 1024)) {
        self.loop = loop
        self.profile = profile
        self.options = options
        self.logger = logger
        self.scratch = scratch
        self.hops = profile.hops
    }

    /// "hop 1 of 2 (ops@bastion:22)"
    func name(ofHop index: Int) -> String { "hop \(index + 1) of \(hops.count) (\(hops[index]))" }

    /// Connects hop by hop; `completion` gets the target's session (the last hop).
    func connect(_ completion: @escaping (Result<ConnectedSession, ConnectFailure>) -> Void) {
        connectHop(0, over: nil, completion)
    }

    private func connectHop(_ index: Int, over socket: (Socket, String)?, _ completion: @escaping (Result<ConnectedSession, ConnectFailure>) -> Void) {
        var hopLogger = logger
        hopLogger[metadataKey: "hop"] = "\(index + 1)/\(hops.count)"
        let connector = Connector(loop: loop, profile: profile.hop(index), options: options, logger: hopLogger)
        if let onProgress { connector.onProgress = { onProgress(index, $0) } }
        self.connector = connector
        let next: (Result<ConnectedSession, ConnectFailure>) -> Void = { [weak self] result in
            guard let self, !self.closed else {
                if case .success(let connected) = result { connected.session.close(graceful: false) }
                return
            }
            self.connector = nil
            switch result {
            case .failure(let failure):
                completion(.failure(self.hopFailure(failure, index: index)))
            case .success(let connected) where index == self.hops.count - 1:
                completion(.success(connected))
            case .success(let connected):
                do {
                    let inner = try self.carry(connected, hop: index)
                    self.connectHop(index + 1, over: (inner, "\(self.hops[index + 1]) through \(self.hops[index])"), completion)
                } catch {
                    completion(.failure(ConnectFailure(kind: .network, message: "\(self.name(ofHop: index)): cannot carry the next hop: \(error)", isPermanent: false)))
                }
            }
        }
        if let (socket, peer) = socket { connector.start(over: socket, peer: peer, next) } else { connector.start(next) }
    }

    /// Puts hop `index`'s session to work as a link whose one client is the
    /// socketpair end that carries hop `index + 1`; returns the other end.
    private func carry(_ connected: ConnectedSession, hop index: Int) throws(SystemError) -> Socket {
        let nextHop = hops[index + 1]
        var hopLogger = logger
        hopLogger[metadataKey: "hop"] = "\(index + 1)/\(hops.count)"
        let link = Link(session: connected.session, loop: loop, logger: hopLogger, scratch: scratch)
        link.proxy = connected.proxy
        links.append(link)
        try link.start(keepalive: profile.keepalive, keepaliveCount: profile.keepaliveCount)
        let (outer, inner) = try Socket.pair()
        let target = ChannelTarget(host: nextHop.host, port: nextHop.port, description: "\(nextHop.host):\(nextHop.port)",
                                   local: name(ofHop: index + 1), stats: ForwardStats(), isHop: true)
        let carrier = Connection(socket: outer, peer: nil, target: target, acceptedAt: Instant.now())
        carriers.append(carrier)
        var pending: Connection? = carrier
        link.nextClient = {
            defer { pending = nil }
            return pending
        }
        link.onDeath = { [weak self] _, reason in
            guard let self else { return }
            self.onDeath("\(self.name(ofHop: index)): \(reason)")
        }
        logger.info("\(name(ofHop: index)) up via \(connected.peer), \(connected.authMethod)")
        return inner
    }

    private func hopFailure(_ failure: ConnectFailure, index: Int) -> ConnectFailure {
        guard hops.count > 1 else { return failure }
        var message = "\(name(ofHop: index)): \(failure.message)"
        var isPermanent = failure.isPermanent
        // The hop before this one carries the connection to it: a refusal is that hop's, named first.
        if index > 0, let refusal = links[index - 1].lastRefusal {
            let prohibited = links[index - 1].lastRefusalKind == .administrativelyProhibited
            message = "\(name(ofHop: index - 1)): " + (prohibited ? "does not forward to" : "could not open a channel to")
                + " hop \(index + 1) (\(hops[index].host):\(hops[index].port)): \(refusal)"
                + (prohibited ? " (AllowTcpForwarding or PermitOpen in that hop's sshd_config)" : "")
            // Its configuration, not the network: asking again will not help.
            if prohibited { isPermanent = true }
        }
        return ConnectFailure(kind: failure.kind, message: message, isPermanent: isPermanent,
                              hostKeyProblem: failure.hostKeyProblem, authFindings: failure.authFindings)
    }

    /// Runs every outer hop's session for this loop pass.
    func serviceSessions() {
        for link in links { link.serviceSession() }
    }

    /// Ends the attempt and every outer hop, innermost first.
    func close() {
        guard !closed else { return }
        closed = true
        connector?.cancel()
        connector = nil
        for link in links.reversed() { _ = link.close(graceful: false) }
        links.removeAll()
        for carrier in carriers { carrier.socket.close() }
        carriers.removeAll()
    }
}
