import Glibc
import Logging
import TunnelConfig
import TunnelPOSIX
import TunnelSSH

/// One line of `tunnel check`.
public struct CheckStep: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable { case ok, fail, skipped }
    public let step: String
    public let outcome: Outcome
    public let detail: String
    public let fix: String?

    public init(_ step: String, _ outcome: Outcome, _ detail: String, fix: String? = nil) {
        self.step = step
        self.outcome = outcome
        self.detail = detail
        self.fix = fix
    }
}

/// `tunnel check`: each step an engineer would run by hand (`ss -tlnp`, `id`,
/// `nc -zv host 22`, `ssh -v`, a test connection to the target), reported as
/// passed or failed with the reason and the fix. Changes nothing: no
/// known_hosts write, no listener left bound.
public enum Preflight {
    public struct Context {
        public var options: Connector.Options
        /// This user's supervisor, to recognise ports it holds.
        public var supervisorPID: pid_t?
        /// This profile's state in that supervisor ("up", "retrying",
        /// "failed", "idle"...), nil when it does not run it. In every state
        /// the supervisor holds the tunnel's listeners.
        public var runningState: String?
        /// The supervisor's other tunnels by the local addresses they listen
        /// on ("127.0.0.1:5433" → "db"), so a port one of them holds is
        /// named by that tunnel rather than by the supervisor's pid.
        public var otherTunnels: [String: String]
        public init(options: Connector.Options, supervisorPID: pid_t?, runningState: String?, otherTunnels: [String: String] = [:]) {
            self.options = options
            self.supervisorPID = supervisorPID
            self.runningState = runningState
            self.otherTunnels = otherTunnels
        }
    }

    /// Steps 2–7 (step 1, the profile itself, is the caller's).
    public static func run(_ profile: Profile, context: Context) -> [CheckStep] {
        var steps = localAddressSteps(profile, context)
        steps.append(privilegeStep(profile))
        // Through jump hosts, the first hop is what this machine reaches.
        let first = profile.jump.isEmpty ? profile : profile.hop(0)
        let reach = first.proxyCommand.map { template in
            let command = ProxyCommand.expand(template, host: first.host, port: first.port, user: first.user, original: first.host)
            return CheckStep("reach \(first.host):\(first.port)", .ok, "through the proxy command `\(command)`: checked by the steps below")
        } ?? tcpStep(first, home: context.options.home)
        steps.append(reach)
        if reach.outcome == .ok {
            steps += sshSteps(profile, context)
        } else {
            for name in ["host key", "authentication"] + profile.forwards.map({ "remote \($0.remoteDescription)" }) {
                steps.append(CheckStep(name, .skipped, "not checked: the server is not reachable"))
            }
        }
        return steps
    }

    // MARK: 2. local addresses

    /// The IPv6 address the forward also listens on, or who holds it (the
    /// forward then stays on IPv4 alone, as `up` logs).
    private static func companionNote(_ spec: ForwardSpec, _ context: Context) -> String {
        guard let bind = spec.ipv6Companion else { return "" }
        let found = PortOwners.owners(ofPort: spec.localPort, ipv6: true)
        guard found.listenerExists, !found.owners.contains(where: { $0.pid == context.supervisorPID }) else {
            return "; also listens on \(bind):\(spec.localPort)"
        }
        let who = BindDiagnosis.ownerSuffix(port: spec.localPort, ipv6: true, supervisorPID: context.supervisorPID)
        return "; \(bind):\(spec.localPort) is taken\(who), so clients that try IPv6 first reach that instead"
    }

    static func localAddressSteps(_ profile: Profile, _ context: Context) -> [CheckStep] {
        profile.forwards.map { spec in
            let name = "local \(spec.localDescription)"
            if let path = spec.localPath {
                do throws(BindFailure) {
                    _ = try Listener.checkUnixPath(path)
                    return CheckStep(name, .ok, "a Unix socket, made when the tunnel starts (a stale socket file there is replaced)")
                } catch {
                    if let state = context.runningState, error.errno == .addressInUse {
                        return CheckStep(name, .ok, "held by this tunnel: \(profile.name) is \(state)")
                    }
                    return CheckStep(name, .fail, error.message, fix: "choose another path, or remove what is there")
                }
            }
            guard spec.localPort != 0 else { return CheckStep(name, .ok, "the kernel picks a free port when the tunnel starts") }
            guard let address = SocketAddress(ip: spec.bind.host, port: spec.localPort) else {
                return CheckStep(name, .fail, "\(spec.bind) is not an IP address", fix: "use an IP address, localhost or * as the bind address")
            }
            let found = PortOwners.owners(ofPort: spec.localPort, ipv6: spec.bind.isIPv6)
            if found.listenerExists {
                if let state = context.runningState, let sup = context.supervisorPID, found.owners.contains(where: { $0.pid == sup }) {
                    return CheckStep(name, .ok, "held by this tunnel's own supervisor (pid \(sup)): \(profile.name) is \(state)")
                }
                if let sup = context.supervisorPID, found.owners.contains(where: { $0.pid == sup }),
                   let other = context.otherTunnels.first(where: { spec.collides(withListeningAddress: $0.key) })?.value {
                    return CheckStep(name, .fail, "\(address) is already in use by tunnel \(other) (this user's supervisor, pid \(sup))",
                                     fix: "`tunnel down \(other)`, or choose another local port (or 0/auto)")
                }
                let who = BindDiagnosis.ownerSuffix(port: spec.localPort, ipv6: spec.bind.isIPv6, supervisorPID: context.supervisorPID)
                return CheckStep(name, .fail, "\(address) is already in use\(who)",
                                 fix: "stop that process, or choose another local port (or 0/auto)")
            }
            if BindDiagnosis.privilegeProblem(address) != nil {
                return CheckStep(name, .ok, "nothing listens on port \(spec.localPort) (binding it is checked below)")
            }
            // Nothing listens; a trial bind also catches an address this machine does not have.
            do throws(SystemError) {
                let socket = try Socket.tcp(family: address.family)
                defer { socket.close() }
                try socket.setReuseAddress()
                if address.family == AF_INET6 { try socket.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY") }
                try socket.bind(address)
            } catch {
                return CheckStep(name, .fail, BindDiagnosis.describe(address, error.errno, supervisorPID: context.supervisorPID),
                                 fix: "choose another bind address or port")
            }
            return CheckStep(name, .ok, "free" + companionNote(spec, context)
                             + (spec.isPublic ? " (non-loopback: the service will be reachable from the network; protect it with a firewall)" : ""))
        }
    }

    // MARK: 3. privileged ports

    static func privilegeStep(_ profile: Profile) -> CheckStep {
        let start = Privileges.unprivilegedPortStart
        let low = profile.forwards.filter { $0.localPort != 0 && Int($0.localPort) < start }
        guard !low.isEmpty else { return CheckStep("privileged ports", .ok, "no local port below \(start)") }
        let ports = low.map { String($0.localPort) }.joined(separator: ", ")
        if Privileges.isRoot { return CheckStep("privileged ports", .ok, "port \(ports) is below \(start); running as root") }
        if Privileges.hasNetBindService { return CheckStep("privileged ports", .ok, "port \(ports) is below \(start); this process has CAP_NET_BIND_SERVICE") }
        return CheckStep("privileged ports", .fail,
                         "port \(ports) is below \(start): binding it needs root or CAP_NET_BIND_SERVICE, and this process (uid \(getuid())) has neither",
                         fix: "use a local port of \(start) or more, or allow the binary: sudo setcap cap_net_bind_service=+ep \(ProcessControl.executablePath)")
    }

    // MARK: 4. TCP reachability

    /// What `nc -zv -w TIMEOUT host port` tells: resolves? refused? timed out? no route?
    static func tcpStep(_ profile: Profile, home: String) -> CheckStep {
        let target = profile.host.contains(":") ? "[\(profile.host)]:\(profile.port)" : "\(profile.host):\(profile.port)"
        let name = "reach \(target)"
        let resolved: [SocketAddress]
        do { resolved = try resolveTCP(host: profile.host, port: profile.port) } catch {
            if error.kind == .doesNotResolve {
                let why = SSHConfigAlias.Unresolved(source: profile.sshConfig)
                let fix = SSHConfigAlias.find(host: profile.host, home: home)?.hint(for: profile.host, why)
                    ?? SSHConfigAlias.hint(unresolved: why).map { "check the host name; " + $0 } ?? "check the host name, or use its IP address"
                return CheckStep(name, .fail, "name does not resolve: \(profile.host) (\(error.message))", fix: fix)
            }
            return CheckStep(name, .fail, error.description, fix: "check DNS (/etc/resolv.conf)")
        }
        let family = profile.login.addressFamily
        let addresses = family.admitted(resolved)
        guard !addresses.isEmpty else {
            return CheckStep(name, .fail, family.leftNone(of: resolved, host: profile.host), fix: "change or remove AddressFamily \(family.rawValue) for \(profile.host) in ssh_config")
        }
        var failures: [(SocketAddress, String, String, rank: Int)] = []
        func failed(_ address: SocketAddress, _ errno: Errno) {
            switch errno {
            case .connectionRefused:
                failures.append((address, "connection refused", "nothing listens on \(address): is sshd running on port \(profile.port)?", 0))
            case .hostUnreachable, .networkUnreachable:
                failures.append((address, "no route to host (\(errno))", "check the network route to \(address.host) (VPN down?)", 1))
            case .timedOut:
                failures.append((address, "timed out", "a firewall drops the packets, or the address is wrong", 2))
            default:
                failures.append((address, "\(errno)", "check the address and the network", 2))
            }
        }
        // Every address at once, as the connection itself races them: one
        // that drops packets must not use up the others' time.
        let started = Instant.now()
        let deadline = started.adding(seconds: Double(profile.connectTimeout))
        var pending: [(address: SocketAddress, socket: Socket)] = []
        defer { for attempt in pending { attempt.socket.close() } }
        func connected(_ address: SocketAddress) -> CheckStep {
            CheckStep(name, .ok, "TCP connect to \(address) in \(format1(Instant.now().seconds(since: started) * 1000)) ms")
        }
        for address in addresses {
            let socket: Socket
            do throws(SystemError) { socket = try Socket.tcp(family: address.family) } catch {
                failed(address, error.errno)
                continue
            }
            do throws(SystemError) {
                if case .done = try socket.connect(address) {
                    socket.close()
                    return connected(address)
                }
                pending.append((address, socket))
            } catch {
                socket.close()
                failed(address, error.errno)
            }
        }
        while !pending.isEmpty {
            let left = deadline.seconds(since: Instant.now())
            let ready = left > 0 ? Poll.writable(pending.map(\.socket.fd), timeout: left) : []
            if ready.isEmpty { break }
            for fd in ready {
                guard let i = pending.firstIndex(where: { $0.socket.fd == fd }) else { continue }
                let attempt = pending.remove(at: i)
                let error = attempt.socket.pendingError()
                attempt.socket.close()
                guard let error else { return connected(attempt.address) }
                failed(attempt.address, error)
            }
        }
        for attempt in pending {
            failures.append((attempt.address, "timed out after \(profile.connectTimeout) s", "a firewall drops the packets, or the address is wrong", 2))
        }
        let detail = failures.map { "\($0.0): \($0.1)" }.joined(separator: "; ")
        // As the connection's own error ranks them: a refusal, then no route, then the rest.
        return CheckStep(name, .fail, detail, fix: failures.min { $0.rank < $1.rank }?.2)
    }

    // MARK: 5–7. host key, authentication, remote targets

    static func sshSteps(_ profile: Profile, _ context: Context) -> [CheckStep] {
        guard let loop = try? EventLoop() else {
            return [CheckStep("host key", .fail, "cannot start an event loop")]
        }
        var options = context.options
        options.readOnlyKnownHosts = true
        let logger = Logger(label: "check") { _ in SwiftLogNoOpLogHandler() }
        var steps: [CheckStep] = []
        var hostKeyDone = false, authDone = false
        let hops = profile.hops
        // Through jump hosts, each hop is its own steps; `hop` is the one under way.
        var hop = 0
        func named(_ step: String) -> String { profile.jump.isEmpty ? step : "hop \(hop + 1) of \(hops.count) (\(hops[hop])): \(step)" }
        let progress: (Int, ConnectProgress) -> Void = { index, progress in
            hop = index
            switch progress {
            case .tcpConnected, .proxyStarted:
                break
            case .hostKeyVerified(let fingerprint, let learned):
                hostKeyDone = true
                if let learned {
                    steps.append(CheckStep(named("host key"), .ok, "\(fingerprint) is not in \(profile.knownHosts) yet; host_key = \"accept-new\" will add: \(learned)"))
                } else {
                    steps.append(CheckStep(named("host key"), .ok, "\(fingerprint) matches \(profile.knownHosts)"))
                }
            case .authenticated(let method):
                steps.append(CheckStep(named("authentication"), .ok, "as \(hops[index].user ?? profile.user): \(method)"))
                if index == hops.count - 1 { authDone = true } else { hostKeyDone = false; hop = index + 1 }
            }
        }
        let chain = profile.jump.isEmpty ? nil : HopChain(loop: loop, profile: profile, options: options, logger: logger)
        let connector = Connector(loop: loop, profile: profile, options: options, logger: logger)
        connector.onProgress = { progress(0, $0) }
        chain?.onProgress = progress
        let hook = loop.addIterationHook { chain?.serviceSessions() }
        defer {
            loop.removeIterationHook(hook)
            chain?.close()
        }
        var session: SSHSession?
        var proxy: ProxyCommand?
        // The loop is this thread's: start before running it.
        let finished: (Result<ConnectedSession, ConnectFailure>) -> Void = { result in
            switch result {
            case .success(let connected):
                session = connected.session
                proxy = connected.proxy
                steps.append(CheckStep("encryption", .ok, connected.session.negotiatedAlgorithms))
            case .failure(let failure):
                switch failure.kind {
                case .hostKey:
                    steps.append(CheckStep(named("host key"), .fail, failure.message, fix: hostKeyFix(failure.hostKeyProblem, profile)))
                    steps.append(CheckStep(named("authentication"), .skipped, "not checked: the host key was not accepted"))
                case .authentication:
                    steps.append(CheckStep(named("authentication"), .fail, failure.message, fix: authFix(failure.authFindings)))
                default:
                    if hostKeyDone {
                        steps.append(CheckStep(named("authentication"), .fail, failure.message))
                    } else {
                        // Before any host key was seen: the handshake itself (not SSH, no common algorithms).
                        steps.append(CheckStep(named("handshake"), .fail, failure.message))
                        steps.append(CheckStep(named("host key"), .skipped, "not checked: no SSH handshake"))
                        steps.append(CheckStep(named("authentication"), .skipped, "not checked"))
                    }
                }
            }
            loop.stop()
        }
        if let chain { chain.connect(finished) } else { connector.start(finished) }
        loop.run()
        guard let session, authDone else {
            for spec in profile.forwards { steps.append(CheckStep("remote \(spec.remoteDescription)", .skipped, "not checked: no SSH session")) }
            return steps
        }
        for spec in profile.forwards {
            guard spec.kind != .dynamic else {
                // A SOCKS client names its own target: nothing to open now.
                steps.append(CheckStep("remote \(spec.remoteDescription)", .ok, "SOCKS: each client names its target, reached through this session"))
                continue
            }
            steps.append(remoteStep(spec, session: session, loop: loop, timeout: Double(profile.connectTimeout)))
        }
        session.close(graceful: true)
        proxy?.terminate()
        return steps
    }

    /// Opens a direct-tcpip channel to the target and closes it again,
    /// driven by `loop` like a tunnel's channel opens.
    static func remoteStep(_ spec: ForwardSpec, session: SSHSession, loop: EventLoop, timeout: Double) -> CheckStep {
        let name = "remote \(spec.remoteDescription)"
        var outcome: CheckStep?
        func step() {
            do {
                guard case .done(let channel) = try session.openDirectTCPIP(host: spec.remoteHost, port: spec.remotePort, originHost: "127.0.0.1", originPort: 0) else { return }
                _ = try? channel.close()
                channel.free()
                outcome = CheckStep(name, .ok, "the server connects to \(spec.remoteHost):\(spec.remotePort)")
            } catch {
                outcome = refusedStep(name, spec, error)
            }
        }
        let registration: EventLoop.Registration
        do {
            registration = try loop.register(fd: session.socketFD, events: .readable) { events in
                session.socketEvents(events)
                step()
            }
        } catch {
            return CheckStep(name, .fail, "cannot watch the SSH socket: \(error)")
        }
        defer { loop.deregister(registration) }
        let hook = loop.addIterationHook {
            if outcome != nil { return loop.stop() }
            loop.setInterest(registration, session.endPass())
        }
        defer { loop.removeIterationHook(hook) }
        let timer = loop.schedule(after: timeout) {
            outcome = CheckStep(name, .fail, "no answer from the server within \(Int(timeout)) s")
        }
        defer { loop.cancel(timer) }
        step()
        if outcome == nil { loop.run() }
        return outcome!
    }

    private static func refusedStep(_ name: String, _ spec: ForwardSpec, _ error: SSHError) -> CheckStep {
        switch error.refusal {
        case .administrativelyProhibited?:
            return CheckStep(name, .fail, "forwarding prohibited by the server (\(error.message))",
                             fix: "the server's sshd_config has AllowTcpForwarding no, DisableForwarding yes or a PermitOpen that excludes this target; ask its admin")
        case .connectFailed?:
            return CheckStep(name, .fail, "refused by the target: the server could not connect to \(spec.remoteHost):\(spec.remotePort) (\(error.message))",
                             fix: "is the service running and listening on that address, as seen from the SSH server?")
        default:
            return CheckStep(name, .fail, error.message)
        }
    }

    static func hostKeyFix(_ problem: HostKeyFailure.Kind?, _ profile: Profile) -> String {
        switch problem {
        case .changed?: return "if the server was reinstalled, remove the old line from \(profile.knownHosts); otherwise do not connect"
        case .unknown?: return "add the line above to \(profile.knownHosts) after confirming the fingerprint, or set host_key = \"accept-new\""
        default: return "check \(profile.knownHosts)"
        }
    }

    static func authFix(_ findings: Set<AuthFinding>) -> String {
        for case .agentSilent(let socket) in findings {
            return "ssh-agent at \(socket) did not answer: is it stopped (kill -CONT it), or waiting for a confirmation of a key added with ssh-add -c?"
        }
        if findings.contains(.serverEndedLogin) {
            return "the server ended the login before the right key (sshd stops after MaxAuthTries keys, 6 by default): offer fewer keys, e.g. identity = the right key and IdentitiesOnly yes in ssh_config"
        }
        if findings.contains(.encryptedKey) { return "ssh-add the key (tunnel never asks for passphrases)" }
        if findings.contains(.sha1Signature) { return "use an ed25519 key: ssh-keygen -t ed25519, then add its .pub to the server's authorized_keys" }
        let missing = findings.compactMap { if case .missingKey(let path) = $0 { path } else { nil } }.sorted()
        if !missing.isEmpty { return "\(missing.joined(separator: ", ")) does not exist: point identity (or ssh_config's IdentityFile) at your private key" }
        return "add your public key to ~/.ssh/authorized_keys on the server, or set identity = to the right key"
    }
}
