import Glibc
import Logging
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// TCP connect (or a ProxyCommand), SSH handshake, host-key check and
/// authentication, all non-blocking on the tunnel's loop thread, within
/// `connect_timeout`. Name resolution, which has no non-blocking API, and
/// reading known_hosts (a home on a stalled network mount must not stall the
/// loop's other tunnels) run on a short-lived thread.
public final class Connector {
    public struct Options: Sendable {
        public var agentSocket: String?
        public var home: String
        /// For `tunnel check`: verify the host key but never write known_hosts.
        public var readOnlyKnownHosts = false
        public init(agentSocket: String?, home: String) {
            self.agentSocket = agentSocket
            self.home = home
        }
    }

    enum Phase {
        case idle
        case resolving
        /// TCP connects under way (`tcp`).
        case connecting
        /// Connected (or over a channel or proxy command); known_hosts is being read.
        case readingKnownHosts(peer: String, socket: Socket)
        case handshaking(peer: String, session: SSHSession, registration: EventLoop.Registration)
        case authenticating(peer: String, session: SSHSession, registration: EventLoop.Registration, auth: Authenticator, learned: String?, fingerprint: String)
        case finished
    }

    private let loop: EventLoop
    let profile: Profile
    private let options: Options
    private let logger: Logger
    var phase: Phase = .idle
    var timeout: EventLoop.TimerID?
    /// Each address tried, with why it failed.
    var tcpErrors: [(address: SocketAddress, errno: Errno)] = []
    /// The TCP attempts while `phase` is `.connecting`.
    private var tcp: RacingConnect?
    /// Read once per attempt, off the loop, before the handshake (it orders the host-key algorithms).
    private var knownHostsRead: Result<HostKeyVerifier.Lookup, HostKeyFailure>?
    private var knownHosts: HostKeyVerifier.Lookup?
    /// The proxy command this attempt runs over; ended unless the attempt succeeds.
    var proxy: ProxyCommand?
    private var completion: ((Result<ConnectedSession, ConnectFailure>) -> Void)?
    public var onProgress: ((ConnectProgress) -> Void)?

    public init(loop: EventLoop, profile: Profile, options: Options, logger: Logger) {
        self.loop = loop
        self.profile = profile
        self.options = options
        self.logger = logger
    }

    /// Connects over `socket` (a channel of the previous jump host, through
    /// a socketpair) instead of TCP; `peer` names it in messages.
    public func start(over socket: Socket, peer: String, _ completion: @escaping (Result<ConnectedSession, ConnectFailure>) -> Void) {
        self.completion = completion
        timeout = loop.schedule(after: Double(profile.connectTimeout)) { [weak self] in self?.timedOut() }
        startHandshake(socket: socket, peer: peer)
    }

    public func start(_ completion: @escaping (Result<ConnectedSession, ConnectFailure>) -> Void) {
        self.completion = completion
        timeout = loop.schedule(after: Double(profile.connectTimeout)) { [weak self] in self?.timedOut() }
        if let template = profile.proxyCommand { return startProxy(template) }
        phase = .resolving
        let host = profile.host, port = profile.port
        let readKnownHosts = knownHostsReader()
        let resolved = loop.callback { [weak self] (result: (Result<[SocketAddress], ResolveError>, Result<HostKeyVerifier.Lookup, HostKeyFailure>?)) in
            self?.knownHostsRead = result.1
            self?.resolved(result.0)
        }
        do {
            try startThread(name: "resolve") {
                let addresses: Result<[SocketAddress], ResolveError>
                do throws(ResolveError) { addresses = .success(try resolveTCP(host: host, port: port)) } catch { addresses = .failure(error) }
                resolved((addresses, readKnownHosts()))
            }
        } catch {
            resolved((.failure(ResolveError(host: host, kind: .other, message: "\(error)")), nil))
        }
    }

    private func startProxy(_ template: String) {
        let command = ProxyCommand.expand(template, host: profile.host, port: profile.port, user: profile.user, original: profile.host)
        let socket: Socket
        do {
            let (started, transport) = try ProxyCommand.start(command, loop: loop, logger: logger)
            proxy = started
            socket = transport
        } catch {
            return fail(ConnectFailure(kind: .network, message: "cannot start the proxy command `\(command)`: \(error)", isPermanent: false))
        }
        onProgress?(.proxyStarted(command: command))
        startHandshake(socket: socket, peer: "proxy command (pid \(proxy!.pid))")
    }

    /// Abandons the attempt and releases everything; no completion is called.
    public func cancel() {
        completion = nil
        teardown()
    }

    var target: String {
        profile.host.contains(":") ? "[\(profile.host)]:\(profile.port)" : "\(profile.host):\(profile.port)"
    }

    private func resolved(_ result: Result<[SocketAddress], ResolveError>) {
        guard case .resolving = phase else { return }
        switch result {
        case .failure(let error):
            let kind: ConnectFailure.Kind = error.kind == .doesNotResolve ? .doesNotResolve : .network
            var what = error.kind == .doesNotResolve ? "host \(profile.host) does not resolve (\(error.message))" : error.description
            if error.kind == .doesNotResolve {
                let why = SSHConfigAlias.Unresolved(source: profile.sshConfig)
                if let hint = SSHConfigAlias.find(host: profile.host, home: options.home)?.hint(for: profile.host, why) ?? SSHConfigAlias.hint(unresolved: why) {
                    what += "; " + hint
                }
            }
            fail(ConnectFailure(kind: kind, message: "cannot connect to \(target): \(what)", isPermanent: false))
        case .success(let resolved):
            let family = profile.login.addressFamily
            let addresses = family.admitted(resolved)
            guard !addresses.isEmpty else {
                return fail(ConnectFailure(kind: .doesNotResolve, message: "cannot connect to \(target): \(family.leftNone(of: resolved, host: profile.host))", isPermanent: false))
            }
            connect(addresses)
        }
    }

    private func connect(_ addresses: [SocketAddress]) {
        let racing = RacingConnect(loop: loop, addresses: addresses)
        tcp = racing
        phase = .connecting
        racing.start { [weak self] outcome in
            guard let self, case .connecting = self.phase else { return }
            self.tcp = nil
            switch outcome {
            case .success(let won):
                self.onProgress?(.tcpConnected(won.address))
                self.startHandshake(socket: won.socket, peer: won.address.description)
            case .failure(let failed):
                self.tcpErrors = failed.failures
                self.failTCP()
            }
        }
    }

    /// The addresses still being tried, for a timeout's message.
    var addressesInFlight: [SocketAddress] { tcp?.addressesInFlight ?? [] }

    /// Those that already failed, with why.
    var addressesFailed: [(address: SocketAddress, errno: Errno)] { tcp?.failures ?? tcpErrors }

    /// Reads this profile's known_hosts; runs on any thread.
    private func knownHostsReader() -> @Sendable () -> Result<HostKeyVerifier.Lookup, HostKeyFailure> {
        let login = profile.login, host = profile.host, port = profile.port
        return {
            do throws(HostKeyFailure) {
                return .success(try HostKeyVerifier.Lookup.load(paths: login.knownHosts, host: host, port: port,
                                                                alias: login.hostKeyAlias, hashed: login.hashKnownHosts))
            } catch {
                return .failure(error)
            }
        }
    }

    private func startHandshake(socket: Socket, peer: String) {
        guard let read = knownHostsRead else {
            // Over a jump host's channel or a proxy command: nothing read it yet.
            phase = .readingKnownHosts(peer: peer, socket: socket)
            let readKnownHosts = knownHostsReader()
            let done = loop.callback { [weak self] (result: Result<HostKeyVerifier.Lookup, HostKeyFailure>?) in
                guard let self, case .readingKnownHosts(let peer, let socket) = self.phase else { return }
                guard let result else {
                    return self.fail(ConnectFailure(kind: .network, message: "cannot read known_hosts: no thread to read it with", isPermanent: false))
                }
                self.knownHostsRead = result
                self.startHandshake(socket: socket, peer: peer)
            }
            do {
                try startThread(name: "known_hosts") { done(readKnownHosts()) }
            } catch {
                logger.error("cannot read known_hosts: \(error)")
                done(nil)
            }
            return
        }
        let login = profile.login
        let knownHosts: HostKeyVerifier.Lookup
        switch read {
        case .success(let lookup):
            knownHosts = lookup
        case .failure(let error):
            socket.close()
            phase = .idle
            fail(ConnectFailure(kind: .hostKey, message: error.message, isPermanent: true, hostKeyProblem: error.kind))
            return
        }
        let ciphers = SSHAlgorithms.chosen(login.ciphers, from: SSHAlgorithms.ciphers)
        let macs = SSHAlgorithms.chosen(login.macs, from: SSHAlgorithms.macs)
        for (keyword, wanted, chosen, ours) in [("Ciphers", login.ciphers, ciphers, SSHAlgorithms.ciphers), ("MACs", login.macs, macs, SSHAlgorithms.macs)]
        where chosen?.isEmpty == true {
            socket.close()
            let message = "ssh_config's \(keyword) \(wanted?.joined(separator: ",") ?? "") for \(profile.host) leaves nothing tunnel's libssh2 can use, which is \(ours)"
            fail(ConnectFailure(kind: .ssh, message: message, isPermanent: true))
            return
        }
        let session: SSHSession
        do {
            session = try SSHSession(socket: socket)
            try session.preferAlgorithms(hostKeys: HostKeyVerifier.preferredAlgorithms(knownHosts), ciphers: ciphers, macs: macs)
        } catch {
            socket.close()
            fail(ConnectFailure(kind: .ssh, message: "cannot start an SSH session: \(error)", isPermanent: false))
            return
        }
        do {
            let registration = try loop.register(fd: session.socketFD, events: .readable) { [weak self] events in
                self?.sessionEvent(events)
            }
            phase = .handshaking(peer: peer, session: session, registration: registration)
            self.knownHosts = knownHosts
            advance()
        } catch {
            session.close(graceful: false)
            fail(ConnectFailure(kind: .network, message: "\(error)", isPermanent: false))
        }
    }

    private func sessionEvent(_ events: IOEvents) {
        switch phase {
        case .handshaking(_, let session, _), .authenticating(_, let session, _, _, _, _):
            session.socketEvents(events)
            advance()
        default:
            break
        }
    }

    /// Runs steps until one would block.
    private func advance() {
        switch phase {
        case .handshaking(let peer, let session, let registration):
            do {
                guard try session.handshake() else { return waitOn(session, registration) }
            } catch {
                return fail(handshakeFailure(error, peer: peer, session: session))
            }
            logger.debug("handshake done", metadata: ["algorithms": "\(session.negotiatedAlgorithms)", "server": "\(session.serverBanner)"])
            guard let key = session.hostKey(), let knownHosts else {
                return fail(ConnectFailure(kind: .hostKey, message: "\(target) presented no host key", isPermanent: true, hostKeyProblem: .noKey))
            }
            let learned: String?
            do {
                let outcome = try HostKeyVerifier.verify(key, knownHosts, acceptNew: profile.hostKey == .acceptNew,
                                                         record: !options.readOnlyKnownHosts)
                if case .learned(let line) = outcome {
                    learned = line
                    if !options.readOnlyKnownHosts {
                        logger.notice("learned host key (accept-new)", metadata: ["line": "\(line)", "file": "\(profile.knownHosts)"])
                    }
                } else {
                    learned = nil
                }
            } catch {
                return fail(ConnectFailure(kind: .hostKey, message: error.message, isPermanent: true, hostKeyProblem: error.kind))
            }
            onProgress?(.hostKeyVerified(fingerprint: key.fingerprint, learnedLine: learned))
            let login = profile.login
            let agentSocket: String? = switch login.agent {
            case .inherited: options.agentSocket
            case .none: nil
            case .socket(let path): path
            }
            let auth = Authenticator(session: session, user: profile.user, identities: login.identities.map { ($0, display($0)) },
                                     identitiesOnly: login.identitiesOnly, certificates: login.certificates.map { ($0, display($0)) },
                                     defaults: ["id_ed25519", "id_ecdsa", "id_rsa"].map { let p = options.home + "/.ssh/" + $0; return (p, display(p)) },
                                     agentSocket: agentSocket, agentTimeout: Double(profile.connectTimeout))
            phase = .authenticating(peer: peer, session: session, registration: registration, auth: auth, learned: learned, fingerprint: key.fingerprint)
            advance()
        case .authenticating(let peer, let session, let registration, let auth, let learned, let fingerprint):
            do {
                switch try auth.step() {
                case .authenticated: break
                case .wouldBlock: return waitOn(session, registration)
                case .askAgent(let query):
                    waitOn(session, registration)
                    return askAgent(query)
                }
            } catch {
                return fail(authenticationFailure(error))
            }
            let method = auth.succeededWith ?? "publickey"
            onProgress?(.authenticated(method: method))
            loop.deregister(registration)
            phase = .finished
            loop.cancel(timeout)
            let done = completion
            completion = nil
            let carrier = proxy
            proxy = nil
            done?(.success(ConnectedSession(session: session, peer: peer, proxy: carrier, authMethod: method, learnedHostKey: learned, hostKeyFingerprint: fingerprint)))
        default:
            break
        }
    }

    private func waitOn(_ session: SSHSession, _ registration: EventLoop.Registration) {
        loop.setInterest(registration, session.endPass())
    }

    /// ssh-agent may be stopped or wait for a confirmation: its query runs
    /// on a thread of its own, so the loop's other tunnels keep moving.
    private func askAgent(_ query: AgentQuery) {
        let answered = loop.callback { [weak self] (answer: AgentAnswer) in self?.agentAnswered(answer) }
        do {
            try startThread(name: "agent-query") { answered(query.run()) }
        } catch {
            answered(.failed("not asked: \(error)"))
        }
    }

    private func agentAnswered(_ answer: AgentAnswer) {
        guard case .authenticating(_, _, _, let auth, _, _) = phase else { return }
        auth.agentAnswered(answer)
        advance()
    }

    func authenticationFailure(_ error: AuthFailure) -> ConnectFailure {
        ConnectFailure(kind: .authentication, message: "\(error.message) [\(profile.via)]", isPermanent: error.isPermanent, authFindings: error.findings)
    }


    private func display(_ path: String) -> String {
        path.hasPrefix(options.home + "/") ? "~" + path.dropFirst(options.home.count) : path
    }


    private func teardown() {
        loop.cancel(timeout)
        timeout = nil
        switch phase {
        case .connecting:
            tcp?.cancel()
            tcp = nil
        case .readingKnownHosts(_, let socket):
            socket.close()
        case .handshaking(_, let session, let registration):
            loop.deregister(registration)
            session.close(graceful: false)
        case .authenticating(_, let session, let registration, _, _, _):
            loop.deregister(registration)
            session.close(graceful: false)
        default:
            break
        }
        phase = .finished
        proxy?.terminate()
        proxy = nil
    }

    func fail(_ failure: ConnectFailure) {
        teardown()
        let done = completion
        completion = nil
        done?(.failure(failure))
    }
}
