import Glibc
import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX

/// The background daemon: runs every tunnel (each on its own thread), serves
/// the control socket, saves the desired state, drains on SIGTERM.
public final class Supervisor {
    private let dir: RuntimeDirectory
    private let loop: EventLoop
    /// Where the tunnels run: one loop per core, apart from this loop.
    private let group: EventLoopGroup
    private let logger: Logger
    private let environment: [String: String]
    private var tunnels: [String: TunnelHost] = [:]
    /// Tunnels being restarted by a reload: the new profile starts once the old one has closed everything.
    private var onExit: [String: () -> Void] = [:]
    /// Names whose tunnel is starting, with what to do once it has.
    /// Names being started, with what to run once the start is settled (the
    /// reason when it failed).
    private var starting: [String: [(String?) -> Void]] = [:]
    private var desired = DesiredState()
    private let store: StateStore
    private var control: ControlServer?
    private var signals: SignalFD?
    private var signalRegistration: EventLoop.Registration?
    /// Address and route changes, and resumes from suspend.
    private var network: NetworkWatch?
    /// READY/RELOADING/STOPPING/WATCHDOG for systemd (Supervisor+Systemd.swift).
    private var systemd: SystemdService?
    private var shuttingDown = false
    private var exitCode: Int32 = 0
    /// The Prometheus endpoint and carried counters (Supervisor+Metrics.swift).
    var metrics: SupervisorMetrics?

    private init(dir: RuntimeDirectory, loop: EventLoop, logger: Logger, environment: [String: String]) {
        self.dir = dir
        self.loop = loop
        self.group = EventLoopGroup(size: Supervisor.loopCount(environment))
        self.logger = logger
        self.environment = environment
        self.store = StateStore(path: dir.statePath)
    }

    /// Runs a supervisor until it is stopped. `alsoStderr`: log to stderr too
    /// (`tunnel daemon` in the foreground). Under systemd, with
    /// `$JOURNAL_STREAM` naming stderr, it logs there for the journal instead
    /// of to its file. `configPath`: the profiles file whose `[daemon]` table it follows.
    public static func run(dir: RuntimeDirectory, alsoStderr: Bool, environment: [String: String], configPath: String? = nil) -> Int32 {
        ProcessControl.ignoreSIGPIPE()
        ProcessControl.raiseFileLimit()
        let journal = SystemdEnvironment.journalStreamMatches(environment)
        func writeLine(_ fd: Int32, _ line: String) { TunnelPOSIX.writeLine(fd, journal ? "<3>" + line : line) }
        do { try dir.prepare() } catch {
            writeLine(2, "tunnel: \(error)")
            return 1
        }
        let lock: FileLock
        do {
            guard let held = try FileLock(path: dir.lockPath) else {
                let pid = dir.recordedPID().map { " (pid \($0))" } ?? ""
                writeLine(2, "tunnel: a supervisor is already running for \(dir.path)\(pid)")
                return 1
            }
            lock = held
        } catch {
            writeLine(2, "tunnel: cannot lock \(dir.lockPath): \(error)")
            return 1
        }
        defer { lock.release() }
        let level: Logger.Level = environment["TUNNEL_DEBUG"] != nil ? .debug : .info
        let sink: LogSink
        if journal {
            sink = LogSink(journal: 2, minimumLevel: level)
            // What `tunnel logs` passes to journalctl.
            let unit = SystemdEnvironment.unit() ?? (name: "tunnel.service", user: true)
            try? Files.replace(dir.journalPath, with: (unit.user ? "--user -u " : "-u ") + unit.name + "\n")
        } else {
            Files.remove(dir.journalPath)
            let logFile: RotatingLogFile
            do { logFile = try RotatingLogFile(path: dir.logPath) } catch {
                writeLine(2, "tunnel: cannot open the log \(dir.logPath): \(error.errno)")
                return 1
            }
            sink = LogSink(fds: alsoStderr ? [2] : [], file: logFile, minimumLevel: level)
        }
        let logger = Logger(label: "tunnel") { LineLogHandler(label: $0, sink: sink) }
        guard let daemonSettings = daemonSettings(configPath: configPath, environment: environment, logger: logger) else { return 1 }

        let loop: EventLoop
        let signals: SignalFD
        do {
            // Blocked before any tunnel thread starts, so only the signalfd sees them.
            signals = try SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
            loop = try EventLoop()
        } catch {
            logger.critical("cannot start: \(error)")
            writeLine(2, "tunnel: cannot start the supervisor: \(error)")
            return 1
        }
        let supervisor = Supervisor(dir: dir, loop: loop, logger: logger, environment: environment)
        supervisor.signals = signals
        do {
            // First: a port in use must not leave a control socket behind.
            supervisor.metrics = try SupervisorMetrics(configPath: configPath, settings: daemonSettings, loop: loop, logger: logger,
                                                       environment: environment) { [unowned supervisor] in Array(supervisor.tunnels.values) }
            // We hold the lock, so any socket file left here is stale.
            Files.remove(dir.socketPath)
            supervisor.control = try ControlServer(path: dir.socketPath, loop: loop, logger: logger) { [unowned supervisor] request, reply in
                supervisor.handle(request, reply: reply)
            }
            try Files.replace(dir.pidPath, with: "\(ProcessControl.pid)\n")
            supervisor.signalRegistration = try loop.register(fd: signals.fd, events: .readable) { [unowned supervisor] _ in
                supervisor.signalled()
            }
        } catch {
            // Each descriptor closed by its owner, also on this path.
            supervisor.metrics?.close()
            supervisor.control?.close()
            if let registration = supervisor.signalRegistration { loop.deregister(registration) }
            signals.close()
            logger.critical("cannot start: \(error)")
            writeLine(2, "tunnel: cannot start the supervisor: \(error)")
            return 1
        }
        supervisor.network = NetworkWatch(loop: loop, logger: logger) { [unowned supervisor] change in
            for host in supervisor.tunnels.values where !host.isStopping { host.networkChanged(change) }
        }
        logger.info("supervisor \(tunnelVersion) started (pid \(ProcessControl.pid), runtime directory \(dir.path))")
        supervisor.systemd = SystemdService(environment: environment, loop: loop, logger: logger)
        // First thing once the loop runs (this thread is the loop's).
        loop.schedule(after: 0) { supervisor.restoreDesiredState() }
        loop.run()
        supervisor.systemd?.close()
        supervisor.network?.close()
        supervisor.metrics?.close()
        supervisor.control?.close()
        if let registration = supervisor.signalRegistration { loop.deregister(registration) }
        signals.close()
        Files.remove(dir.socketPath)
        Files.remove(dir.pidPath)
        if journal { Files.remove(dir.journalPath) }
        logger.info("supervisor stopped")
        return supervisor.exitCode
    }

    // MARK: signals and shutdown

    private func signalled() {
        while let signo = signals?.next() {
            switch signo {
            case SIGHUP:
                logger.info("SIGHUP: reloading profiles")
                reload { outcomes in
                    for o in outcomes { self.logger.info("reload: \(o.name): \(o.result.rawValue)\(o.message.map { " (\($0))" } ?? "")") }
                }
            default:
                if shuttingDown {
                    logger.warning("second signal: exiting now")
                    ProcessControl.exitNow(1)
                }
                logger.info("signal \(signo): stopping every tunnel")
                shutdown()
            }
        }
    }

    /// Stops every tunnel (keeping the desired state for the next start) and
    /// ends the loop within 2 s.
    private func shutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        systemd?.stopping()
        control?.close()
        control = nil
        Files.remove(dir.socketPath)
        if tunnels.isEmpty { return loop.stop() }
        for host in tunnels.values { host.stop(graceful: true) }
        loop.schedule(after: 2) { [weak self] in
            guard let self, !self.tunnels.isEmpty else { return }
            self.logger.warning("\(self.tunnels.count) tunnel(s) did not stop within 2 s; exiting anyway")
            self.loop.stop()
        }
    }

    // MARK: requests

    private func handle(_ request: ControlRequest, reply: @escaping (ControlResponse) -> Void) {
        switch request.command {
        case .hello:
            reply(ControlResponse(ok: true))
        case .list:
            var response = ControlResponse(ok: true)
            response.tunnels = tunnels.keys.sorted().compactMap { tunnels[$0].map(info) }
            reply(response)
        case .up:
            up(request) { outcomes in
                var response = ControlResponse(ok: true)
                response.outcomes = outcomes
                reply(response)
            }
        case .down:
            down(names: request.all ? Array(tunnels.keys).sorted() : request.names) { outcomes in
                var response = ControlResponse(ok: true)
                response.outcomes = outcomes
                reply(response)
            }
        case .reload:
            reload(alsoListing: request.config) { outcomes in
                var response = ControlResponse(ok: true)
                response.outcomes = outcomes
                reply(response)
            }
        case .status:
            guard let name = request.names.first, let host = tunnels[name] else {
                let name = request.names.first ?? ""
                let known = tunnels.keys.sorted()
                return reply(ControlResponse(ok: false, error: "\(name) is not in the supervisor" + (known.isEmpty ? "" : " (it has: \(known.joined(separator: ", ")))")))
            }
            var response = ControlResponse(ok: true)
            response.detail = detail(host)
            reply(response)
        case .stop:
            reply(ControlResponse(ok: true))
            // Let the reply leave before the socket closes.
            loop.schedule(after: 0.05) { [weak self] in self?.shutdown() }
        }
    }

    /// Collects one outcome per name, then calls `done` once.
    private final class Gather {
        private var outcomes: [String: TunnelOutcome] = [:]
        private let order: [String]
        private let done: ([TunnelOutcome]) -> Void
        init(_ order: [String], _ done: @escaping ([TunnelOutcome]) -> Void) {
            // One outcome per name: a name given twice must not leave it waiting for a second.
            var seen = Set<String>()
            self.order = order.filter { seen.insert($0).inserted }
            self.done = done
            if order.isEmpty { done([]) }
        }
        func add(_ o: TunnelOutcome) {
            guard outcomes[o.name] == nil else { return }
            outcomes[o.name] = o
            if outcomes.count == order.count { done(order.compactMap { outcomes[$0] }) }
        }
    }

    private func options(_ request: ControlRequest?) -> Connector.Options {
        let agent = request?.agentSocket ?? environment["SSH_AUTH_SOCK"]
        return Connector.Options(agentSocket: agent?.isEmpty == true ? nil : agent,
                                 home: request?.home ?? homeDirectory(environment))
    }

    private func up(_ request: ControlRequest, done: @escaping ([TunnelOutcome]) -> Void) {
        if let adHoc = request.adHoc { return upAdHoc(adHoc, request: request, done: done) }
        // In order, without repeats; a Set, as a request may name very many.
        var seen = Set<String>()
        let names = request.names.filter { seen.insert($0).inserted }
        let gather = Gather(names, done)
        guard let configPath = request.config else {
            for n in names { gather.add(TunnelOutcome(name: n, result: .failed, message: "no profiles file given")) }
            return
        }
        let config: Config
        do {
            config = try Config.load(path: configPath, environment: environment)
        } catch {
            for n in names { gather.add(TunnelOutcome(name: n, result: .failed, message: error.description)) }
            return
        }
        for name in names {
            if starting[name] != nil {
                // A second request while the first still binds: answer it like an existing tunnel.
                starting[name]!.append { [unowned self] reason in
                    if let host = self.tunnels[name] { self.bringUpExisting(host, gather: gather, asking: self.options(request)) }
                    else { gather.add(TunnelOutcome(name: name, result: .failed, message: reason ?? "\(name) failed to start")) }
                }
                continue
            }
            if let host = tunnels[name] {
                let current = try? config.profile(named: name)
                let stale = current != nil && current != host.profile
                bringUpExisting(host, gather: gather, asking: options(request),
                                note: stale ? "its profile changed since it started; `tunnel reload` applies the change" : nil)
                continue
            }
            let profile: Profile
            do { profile = try config.profile(named: name) } catch {
                gather.add(TunnelOutcome(name: name, result: .failed, message: error.description))
                continue
            }
            start(profile, configPath: configPath, options: options(request)) { outcome in gather.add(outcome) }
        }
    }

    /// `tunnel up -L ... DESTINATION`, or an ssh_config alias with LocalForward.
    private func upAdHoc(_ adHoc: AdHocTunnel, request: ControlRequest, done: @escaping ([TunnelOutcome]) -> Void) {
        let gather = Gather([adHoc.name], done)
        if let host = tunnels[adHoc.name] {
            guard host.adHoc == adHoc else {
                // What was asked for is not there: a failure, naming what runs under that name.
                let running = outcome(host, host.status)
                let routes = (running.routes ?? []) + (running.remote ?? []).map { "remote \($0)" }
                return gather.add(TunnelOutcome(name: adHoc.name, result: .failed,
                                                message: "already up with other settings (\(routes.isEmpty ? "no forward in place" : routes.joined(separator: ", ")) via \(host.runtime.profile.via)); `tunnel down \(adHoc.name)` first, or give another --name"))
            }
            return bringUpExisting(host, gather: gather, asking: options(request))
        }
        if starting[adHoc.name] != nil {
            // Being restored, or asked for twice at once: answered as it comes up.
            starting[adHoc.name]!.append { [unowned self] reason in
                if let host = self.tunnels[adHoc.name], host.adHoc == adHoc { self.bringUpExisting(host, gather: gather, asking: self.options(request)) }
                else { gather.add(TunnelOutcome(name: adHoc.name, result: .failed, message: reason ?? "\(adHoc.name) failed to start")) }
            }
            return
        }
        let options = options(request)
        let profile: Profile
        do { profile = try adHoc.profile(home: options.home, environment: environment) } catch {
            return gather.add(TunnelOutcome(name: adHoc.name, result: .failed, message: error.message))
        }
        start(profile, configPath: "", options: options, adHoc: adHoc) { gather.add($0) }
    }

    /// `asking`: the options of the `up` that asks; a tunnel not up takes
    /// its ssh-agent from then on (the one it had may be what failed).
    private func bringUpExisting(_ host: TunnelHost, gather: Gather, asking: Connector.Options, note: String? = nil) {
        if host.isStopping {
            return gather.add(TunnelOutcome(name: host.name, result: .failed, message: "\(host.name) is stopping; try again"))
        }
        var newOptions: Connector.Options?
        if host.status.phase != .up && host.status.phase != .idle && asking.agentSocket != host.options.agentSocket {
            logger.tagged(tunnel: host.name).info("using the ssh-agent of this `tunnel up` from now on: \(asking.agentSocket ?? "none")")
            host.options.agentSocket = asking.agentSocket
            newOptions = host.options
            remember(host.name, configPath: host.configPath, options: host.options, adHoc: host.adHoc)
        }
        switch host.status.phase {
        case .up:
            // The running tunnel's own routes and chain: the request may describe another.
            var already = outcome(host, host.status)
            already.result = .alreadyUp
            already.message = note
            gather.add(already)
        case .idle:
            var idle = outcome(host, host.status)
            idle.message = note
            gather.add(idle)
        case .failed:
            // Asked again: retry now instead of waiting out the 5-minute pause.
            wait(host) { gather.add(self.outcome(host, $0)) }
            host.retryNow(with: newOptions)
        default:
            wait(host) { gather.add(self.outcome(host, $0)) }
            if newOptions != nil { host.retryNow(with: newOptions) }
        }
    }

    /// Calls `resolve` after the tunnel's next connection attempt (or at once if up).
    private func wait(_ host: TunnelHost, _ resolve: @escaping (TunnelStatus) -> Void) {
        // A lazy tunnel makes no attempt until a client arrives: idle is its answer.
        if host.status.phase == .idle { return resolve(host.status) }
        host.waiters.append((host.status.attempts, resolve))
    }

    private func outcome(_ host: TunnelHost, _ status: TunnelStatus) -> TunnelOutcome {
        let resolved = host.runtime.profile
        var outcome = TunnelOutcome(name: host.name, result: .retrying, message: status.lastError, local: status.boundAddresses,
                                    routes: zip(resolved.forwards, status.boundAddresses).map { "\($1) -> \($0.remoteDescription)" },
                                    via: resolved.via)
        switch status.phase {
        case .up:
            outcome.result = .up
            outcome.message = status.sessionsUp < status.sessions
                ? "\(status.sessionsUp) of \(status.sessions) SSH connections up: \(status.lastError ?? "the others are not connected")"
                : nil
            // Asked to be lazy, but not: say why where the user looks, not only in the log.
            if host.profile.lazy && !TunnelRuntime.isLazy(resolved) && outcome.message == nil {
                outcome.message = "lazy = true is ignored: ssh_config adds remote forwards, which need the SSH connection up"
            }
            let remote = remoteRoutes(host, status)
            outcome.remote = remote.routes
            outcome.remoteProblems = remote.problems
        case .failed:
            outcome.result = .failed
        case .idle:
            outcome.result = .idle
            outcome.message = nil
        case .stopped:
            // `tunnel down`, or a reload that removed it, while this `up` waited.
            outcome.result = .failed
            outcome.message = "stopped before it came up (`tunnel down`, or a reload that removed it)"
        default:
            break
        }
        return outcome
    }

    /// The remote forwards the server listens on, as `tunnel up` prints them,
    /// and why the others are not listening; nil without remote forwards.
    private func remoteRoutes(_ host: TunnelHost, _ status: TunnelStatus) -> (routes: [String]?, problems: [String]?) {
        let specs = host.runtime.profile.remoteForwards
        guard !specs.isEmpty else { return (nil, nil) }
        var routes: [String] = []
        var problems: [String] = []
        for (spec, listener) in zip(specs, status.remoteListeners) {
            if let port = listener.boundPort {
                routes.append("\(spec.listenDescription(boundPort: port)) -> \(spec.targetDescription)")
            } else {
                problems.append(listener.problem ?? "remote \(spec.listenDescription()): not listening yet")
            }
        }
        return (routes, problems)
    }

    /// Binds and starts one tunnel; `done` gets its first result.
    /// `preferredPorts`: what a restored tunnel picked before (`PreferredPorts`).
    private func start(_ profile: Profile, configPath: String, options: Connector.Options, adHoc: AdHocTunnel? = nil,
                       preferredPorts: PreferredPorts? = nil, done: @escaping (TunnelOutcome) -> Void) {
        if let clash = clash(with: profile) {
            return done(TunnelOutcome(name: profile.name, result: .failed, message: clash))
        }
        // Reserve the name while ssh_config is read and the thread starts, so a second request waits.
        starting[profile.name] = []
        // What ssh_config adds: `ssh -G` for the host and each jump host, a
        // few ms each but up to 5 s when ssh hangs, so off the supervisor's loop.
        let applied = loop.callback { [weak self] (result: Result<Profile, SSHConfigError>) in
            guard let self else { return }
            switch result {
            case .success(let resolved):
                self.launch(profile, resolved: resolved, configPath: configPath, options: options, adHoc: adHoc,
                            preferredPorts: preferredPorts, done: done)
            case .failure(let error):
                let queued = self.starting.removeValue(forKey: profile.name) ?? []
                done(TunnelOutcome(name: profile.name, result: .failed, message: "\(error)"))
                queued.forEach { $0("\(error)") }
            }
        }
        let logger = logger.tagged(tunnel: profile.name)
        do {
            try startThread(name: "ssh -G") {
                do throws(SSHConfigError) {
                    let (resolved, notes) = try profile.applyingSSHConfig(profile.sshConfig, home: options.home)
                    for note in notes { logger.info("\(note)") }
                    applied(.success(resolved))
                } catch {
                    applied(.failure(error))
                }
            }
        } catch {
            applied(.failure(SSHConfigError(message: "cannot read ssh_config: \(error)")))
        }
    }

    private func launch(_ profile: Profile, resolved: Profile, configPath: String, options: Connector.Options, adHoc: AdHocTunnel?,
                        preferredPorts: PreferredPorts?, done: @escaping (TunnelOutcome) -> Void) {
        TunnelHost.start(profile: profile, resolved: resolved, configPath: configPath, options: options, preferredPorts: preferredPorts,
                         logger: logger,
                         group: group, supervisorLoop: loop,
                         onStatus: { [weak self] host, status in self?.statusChanged(host, status) },
                         onExit: { [weak self] host in self?.hostExited(host) },
                         completion: { [weak self] result in
            guard let self else { return }
            let queued = self.starting.removeValue(forKey: profile.name) ?? []
            var reason: String?
            defer { queued.forEach { $0(reason) } }
            switch result {
            case .failure(let failure):
                var message = failure.message
                if failure.errno == .addressInUse, let holder = self.holder(of: failure.address) {
                    message += " by tunnel \(holder) (running in this supervisor)"
                }
                reason = message
                done(TunnelOutcome(name: profile.name, result: .failed, message: message))
            case .success(let host):
                host.adHoc = adHoc
                self.tunnels[profile.name] = host
                self.remember(profile.name, configPath: configPath, options: options, adHoc: adHoc)
                self.wait(host) { done(self.outcome(host, $0)) }
            }
        })
    }

    /// Another running tunnel already listening where this profile wants to.
    private func clash(with profile: Profile) -> String? {
        for (name, host) in tunnels where name != profile.name {
            for mine in profile.forwards {
                if let theirs = host.profile.forwards.first(where: { $0.collides(with: mine) }) {
                    return "\(mine.localDescription) is already used by tunnel \(name) (\(theirs.localDescription)); tunnels \(name) and \(profile.name) claim the same local address"
                }
            }
        }
        return nil
    }

    private func holder(of address: String) -> String? {
        tunnels.first { $0.value.status.boundAddresses.contains(address) || $0.value.status.companionAddresses.contains(address) }?.key
    }

    private func statusChanged(_ host: TunnelHost, _ status: TunnelStatus) {
        host.status = status
        rememberPorts(host, status)
        guard !host.waiters.isEmpty else { return }
        var still: [(attempts: Int, resolve: (TunnelStatus) -> Void)] = []
        for waiter in host.waiters {
            let settled: Bool
            switch status.phase {
            // Up once every lane has answered its first attempt (each is bounded by connect_timeout).
            // Remote forwards: once the server answered each request.
            case .up: settled = status.sessionsConnecting == 0 && status.remoteListeners.allSatisfy(\.settled)
            case .failed, .stopped, .idle: settled = true
            default: settled = status.attempts > waiter.attempts
            }
            if settled { waiter.resolve(status) } else { still.append(waiter) }
        }
        host.waiters = still
    }

    /// One loop per core; `TUNNEL_LOOPS` (1–256) sets another count, for tests and the bench.
    static func loopCount(_ environment: [String: String]) -> Int {
        if let text = environment["TUNNEL_LOOPS"], let count = Int(text), (1...256).contains(count) { return count }
        return ProcessControl.onlineCores
    }

    private func hostExited(_ host: TunnelHost) {
        guard tunnels[host.name] === host else { return }
        tunnels.removeValue(forKey: host.name)
        metrics?.hostExited(host)
        for waiter in host.waiters {
            var status = host.status
            status.phase = .stopped
            waiter.resolve(status)
        }
        host.waiters = []
        // Its buffers are gone: give their memory back.
        Allocator.releaseFreeMemory()
        if let next = onExit.removeValue(forKey: host.name) { next() }
        if shuttingDown && tunnels.isEmpty { loop.stop() }
    }

    private func down(names: [String], done: @escaping ([TunnelOutcome]) -> Void) {
        let gather = Gather(names, done)
        for name in names {
            forget(name)
            guard let host = tunnels[name] else {
                gather.add(TunnelOutcome(name: name, result: .notUp, message: "\(name) is not up"))
                continue
            }
            stop(host) { gather.add(TunnelOutcome(name: name, result: .down)) }
        }
    }

    /// Stops a host; `then` runs once its listeners are closed.
    private func stop(_ host: TunnelHost, then: @escaping () -> Void) {
        let previous = onExit[host.name]
        onExit[host.name] = { previous?(); then() }
        host.stop(graceful: true)
    }

    // MARK: reload

    /// `alsoListing`: a profiles file whose profiles that are not up the
    /// reply names too (the `--config` of `tunnel reload`).
    private func reload(alsoListing extra: String? = nil, done reloaded: @escaping ([TunnelOutcome]) -> Void) {
        systemd?.reloading()
        let daemonOutcomes = metrics?.reload() ?? []
        let done = { [weak self] (outcomes: [TunnelOutcome]) in
            self?.systemd?.reloaded()
            reloaded(daemonOutcomes + outcomes)
        }
        let names = tunnels.keys.sorted()
        var configs: [String: Result<Config, ConfigErrors>] = [:]
        for host in tunnels.values where host.adHoc == nil && configs[host.configPath] == nil {
            let path = host.configPath
            do throws(ConfigErrors) { configs[path] = .success(try Config.load(path: path, environment: environment)) } catch { configs[path] = .failure(error) }
        }
        let daemonReported = daemonOutcomes.contains { $0.isFailure }
        let notRunning = profilesNotUp(in: configs, running: Set(names), daemonReported: daemonReported, alsoListing: extra)
        let gather = Gather(names) { done($0 + notRunning) }
        var unchangedText: [(TunnelHost, Profile)] = []
        for name in names {
            guard let host = tunnels[name] else { continue }
            if host.adHoc != nil {
                gather.add(TunnelOutcome(name: name, result: .unchanged, message: "\(host.adHoc!.origin.fromWhere), not a profile"))
                continue
            }
            let path = host.configPath
            let profile: Profile
            switch configs[path]! {
            case .failure(let errors):
                gather.add(TunnelOutcome(name: name, result: .failed, message: "kept running: \(errors.description)"))
                continue
            case .success(let config):
                guard config.profileNames.contains(name) || config.stoppedEarly else {
                    forget(name)
                    stop(host) { gather.add(TunnelOutcome(name: name, result: .removed, message: "no longer in \(path)")) }
                    continue
                }
                do { profile = try config.profile(named: name) } catch {
                    // Errors only in `[daemon]`, which its own outcome above has listed: not once more per tunnel.
                    let onlyDaemon = daemonReported && path == metrics?.configPath && !config.daemonErrors.isEmpty
                        && error.errors == config.daemonErrors
                    let reason = onlyDaemon ? "\(path) has errors in [daemon] (above)" : error.description
                    gather.add(TunnelOutcome(name: name, result: .failed, message: "kept running: \(reason)"))
                    continue
                }
            }
            if profile == host.profile {
                // The same profile may stand for another server now: ssh_config is read again below.
                if profile.sshConfig != .none { unchangedText.append((host, profile)) } else { gather.add(TunnelOutcome(name: name, result: .unchanged)) }
                continue
            }
            restart(host, as: profile, path: path, because: "changed", gather: gather)
        }
        recheckSSHConfig(unchangedText, gather: gather)
    }

    /// The tunnels whose profile text did not change: restarted if what
    /// ssh_config now says of their hosts (`ssh -G`, off the loop) resolves
    /// them differently from what they run.
    private func recheckSSHConfig(_ hosts: [(TunnelHost, Profile)], gather: Gather) {
        guard !hosts.isEmpty else { return }
        let resolved = loop.callback { [weak self] (results: [Result<Profile, SSHConfigError>]) in
            guard let self else { return }
            for ((host, profile), result) in zip(hosts, results) {
                guard self.tunnels[host.name] === host else {
                    gather.add(TunnelOutcome(name: host.name, result: .unchanged))
                    continue
                }
                switch result {
                case .success(let now) where now == host.runtime.profile:
                    gather.add(TunnelOutcome(name: host.name, result: .unchanged))
                case .success:
                    self.restart(host, as: profile, path: host.configPath, because: "changed in ssh_config", gather: gather)
                case .failure(let error):
                    gather.add(TunnelOutcome(name: host.name, result: .failed, message: "kept running: \(error)"))
                }
            }
        }
        let work = hosts.map { (host, profile) in (profile, host.options.home) }
        do {
            try startThread(name: "ssh -G") {
                resolved(work.map { profile, home in
                    Result { () throws(SSHConfigError) in try profile.applyingSSHConfig(profile.sshConfig, home: home).profile }
                })
            }
        } catch {
            resolved(work.map { _ in .failure(SSHConfigError(message: "cannot read ssh_config: \(error)")) })
        }
    }

    /// Stops `host` and starts it again as `profile` (the reload's answer
    /// for it goes to `gather`); if the new version cannot start, the
    /// previous one is started again.
    private func restart(_ host: TunnelHost, as profile: Profile, path: String, because why: String, gather: Gather) {
        let name = host.name
        logger.info("reload: \(name) \(why); restarting it")
        // Its own agent and home, as it was brought up with, while that agent is still there.
        let options = checkedOptions(name, host.options)
        let previous = host.profile
        // A `tunnel up` waiting on this tunnel waits on its new version:
        // the restart is not its answer.
        let carried = host.waiters
        host.waiters = []
        var stopped = host.status
        stopped.phase = .stopped
        let settleCarried = { [weak self, stopped] in
            let status = self?.tunnels[name]?.status ?? stopped
            carried.forEach { $0.resolve(status) }
        }
        let ports = PreferredPorts(profile: host.runtime.profile, status: host.status).carried(to: profile, from: host.runtime.profile)
        stop(host) { [weak self] in
            self?.start(profile, configPath: path, options: options, preferredPorts: ports) { [weak self] outcome in
                var o = outcome
                if !o.isFailure && o.result != .failed { o.result = .restarted }
                guard o.result == .failed, let self, self.tunnels[name] == nil else {
                    settleCarried()
                    return gather.add(o)
                }
                // The new version could not even start (its port is taken, ssh_config
                // fails): bring the running version back rather than drop the tunnel.
                let reason = o.message ?? "failed"
                self.logger.error("reload: \(name): the changed profile cannot start (\(reason)); starting the previous version again")
                self.start(previous, configPath: path, options: options) { [weak self] back in
                    let kept = back.result != .failed || self?.tunnels[name] != nil
                    let message = kept ? "\(reason); started the previous version again (its open connections were cut)"
                                       : "\(reason); the previous version could not start again either: \(back.message ?? "failed")"
                    if !kept { self?.logger.error("reload: \(name): \(message)") }
                    settleCarried()
                    gather.add(TunnelOutcome(name: name, result: .failed, message: message))
                }
            }
        }
    }

    /// What a reload reply says of the profiles in the files it read (the
    /// running tunnels' and the supervisor's own) that are not up: each by
    /// name, and a profile with errors as failed, so a broken edit is seen
    /// at once rather than at its next `tunnel up`.
    /// A file whose errors break all its profiles is named once: by the
    /// outcomes of the running tunnels from it, else by the `[daemon]` one,
    /// else by a `[profiles]` outcome.
    private func profilesNotUp(in loaded: [String: Result<Config, ConfigErrors>], running: Set<String>,
                               daemonReported: Bool, alsoListing extra: String?) -> [TunnelOutcome] {
        var configs = loaded
        for path in [metrics?.configPath, extra].compactMap({ $0 }) where configs[path] == nil {
            // Missing or unreadable: only ad-hoc tunnels may be in use, which need no file.
            if let config = try? Config.load(path: path, environment: environment) { configs[path] = .success(config) }
        }
        var outcomes: [TunnelOutcome] = []
        var seen = running
        for path in configs.keys.sorted() {
            guard case .success(let config) = configs[path]! else { continue }
            if !config.fileErrors.isEmpty {
                if loaded[path] == nil && !daemonReported {
                    outcomes.append(TunnelOutcome(name: Self.profilesOutcomeName, result: .failed,
                                                  message: "none can be used: \(ConfigErrors(config.fileErrors).description)"))
                }
                continue
            }
            for name in config.profileNames where seen.insert(name).inserted {
                do {
                    _ = try config.profile(named: name)
                    outcomes.append(TunnelOutcome(name: name, result: .notUp, message: "in \(path); tunnel up \(name) starts it"))
                } catch {
                    outcomes.append(TunnelOutcome(name: name, result: .failed, message: "not up, and its profile has errors: \(error.description)"))
                }
            }
        }
        return outcomes
    }

    /// The name a reload reply gives a profiles file that fails as a whole (no profile can have brackets).
    static let profilesOutcomeName = "[profiles]"

    // MARK: desired state

    private func remember(_ name: String, configPath: String, options: Connector.Options, adHoc: AdHocTunnel?) {
        let ports = desired.tunnels.first { $0.name == name }?.ports
        desired.tunnels.removeAll { $0.name == name }
        desired.tunnels.append(.init(name: name, config: configPath, agentSocket: options.agentSocket, home: options.home, adHoc: adHoc, ports: ports))
        saveDesired()
    }

    /// How a saved tunnel authenticates again: its own agent while that
    /// socket still exists and is still this user's, else the supervisor's.
    private func restoredOptions(_ entry: DesiredState.Entry) -> Connector.Options {
        var saved = options(nil)
        if let home = entry.home { saved.home = home }
        guard let agent = entry.agentSocket else { return saved }
        saved.agentSocket = agent
        return checkedOptions(entry.name, saved)
    }

    /// `options` with its agent socket kept while it is still this user's
    /// agent, else the supervisor's own, and the log says why.
    private func checkedOptions(_ name: String, _ options: Connector.Options) -> Connector.Options {
        guard let agent = options.agentSocket else { return options }
        var checked = options
        checked.agentSocket = self.options(nil).agentSocket
        if let problem = AgentSocket.problem(agent, uid: ProcessControl.uid) {
            logger.tagged(tunnel: name).warning("not using its saved ssh-agent socket (\(problem)); using \(checked.agentSocket ?? "no agent")")
        } else {
            checked.agentSocket = agent
        }
        return checked
    }

    /// Saves the ports a tunnel picked (auto local ports, port-0 remote
    /// forwards) when they change, for the next supervisor to ask for.
    private func rememberPorts(_ host: TunnelHost, _ status: TunnelStatus) {
        guard let index = desired.tunnels.firstIndex(where: { $0.name == host.name }) else { return }
        let saved = desired.tunnels[index].ports ?? PreferredPorts()
        // A remote port not granted for the moment (a reconnect) is not forgotten.
        let merged = PreferredPorts(profile: host.runtime.profile, status: status).filling(from: saved)
        guard merged != saved, !merged.isEmpty else { return }
        desired.tunnels[index].ports = merged
        saveDesired()
    }

    private func forget(_ name: String) {
        let before = desired.tunnels.count
        desired.tunnels.removeAll { $0.name == name }
        if desired.tunnels.count != before { saveDesired() }
    }

    private func saveDesired() {
        do { try store.save(desired) } catch { logger.error("cannot save the desired state to \(dir.statePath): \(error)") }
    }

    /// Starts the saved tunnels; systemd hears READY=1 once each has answered
    /// its start (up, idle or failed after its first attempt, as `tunnel up`
    /// returns) or could not be restored.
    private func restoreDesiredState() {
        let (saved, problem) = store.loadReporting()
        if let problem { logger.warning("no tunnels restored: \(problem)") }
        desired = saved
        let restored = Gather(saved.tunnels.map(\.name)) { [weak self] _ in self?.systemd?.ready() }
        for entry in saved.tunnels {
            let skip = TunnelOutcome(name: entry.name, result: .failed)
            let profile: Profile
            let options = restoredOptions(entry)
            if let adHoc = entry.adHoc {
                do { profile = try adHoc.profile(home: options.home, environment: environment) } catch {
                    logger.error("cannot restore \(entry.name) \(adHoc.origin.fromWhere): \(error.message)")
                    restored.add(skip)
                    continue
                }
            } else {
                do {
                    profile = try Config.load(path: entry.config, environment: environment).profile(named: entry.name)
                } catch {
                    logger.error("cannot restore \(entry.name) from \(entry.config): \(error.description)")
                    restored.add(skip)
                    continue
                }
            }
            logger.info("restoring \(entry.name) (was up before the supervisor restarted)")
            // The same profile as saved: the ports it picked are asked for again.
            let ports = entry.ports.flatMap { $0.local.count == profile.forwards.count ? $0 : nil }
            start(profile, configPath: entry.config, options: options, adHoc: entry.adHoc, preferredPorts: ports) { [weak self] outcome in
                restored.add(outcome)
                if outcome.result == .failed && self?.tunnels[entry.name] == nil {
                    self?.logger.error("cannot restore \(entry.name): \(outcome.message ?? "failed")")
                }
            }
        }
    }

    // MARK: listing

    private func detail(_ host: TunnelHost) -> TunnelDetail {
        let status = host.status, profile = host.runtime.profile
        let connections = status.connections.map { c in
            ConnectionInfo(number: c.index + 1, extra: c.isExtra, state: c.phase.rawValue, up_since: c.upSince.map(iso8601),
                           peer: c.peer, auth: c.authMethod, algorithms: c.algorithms, host_key: c.hostKeyFingerprint,
                           rtt_ms: c.phase == .up ? milliseconds(c.rttSeconds) : nil)
        }
        return TunnelDetail(tunnel: info(host), connections: connections,
                            history: status.history.map { HistoryEntry(time: iso8601($0.time), state: $0.phase.rawValue, reason: $0.reason) },
                            lazy: profile.lazy, idle_timeout: profile.lazy ? profile.idleTimeout : nil,
                            keepalive: profile.keepalive, keepalive_count: profile.keepaliveCount)
    }

    private func info(_ host: TunnelHost) -> TunnelInfo {
        let status = host.status
        var forwards: [ForwardInfo] = []
        for (index, spec) in host.runtime.profile.forwards.enumerated() {
            let stats = host.runtime.forwardStats[index].snapshot()
            let local = index < status.boundAddresses.count ? status.boundAddresses[index] : spec.localDescription
            let companion = index < status.companionAddresses.count ? status.companionAddresses[index] : nil
            forwards.append(ForwardInfo(kind: spec.kind.rawValue, local: local, remote: spec.remoteDescription, active: stats.active, total: stats.total,
                                        bytes_in: stats.bytesIn, bytes_out: stats.bytesOut, public: spec.isPublic, also_local: companion))
        }
        // Remote forwards as the tunnel runs them (ssh_config may have added some).
        for (index, spec) in host.runtime.profile.remoteForwards.enumerated() {
            let stats = host.runtime.remoteStats[index].snapshot()
            let listener = index < status.remoteListeners.count ? status.remoteListeners[index] : nil
            forwards.append(ForwardInfo(kind: "remote", local: spec.targetDescription, remote: spec.listenDescription(boundPort: listener?.boundPort),
                                        active: stats.active, total: stats.total, bytes_in: stats.bytesIn, bytes_out: stats.bytesOut,
                                        public: spec.isPublic, problem: listener?.boundPort == nil ? listener?.problem : nil))
        }
        let phase = MetricsExposition.stateName(status.phase)
        return TunnelInfo(name: host.name, state: phase, via: host.runtime.profile.via, since: iso8601(status.since),
                          restarts: status.restarts, last_error: status.lastError, last_error_at: status.lastErrorAt.map(iso8601),
                          forwards: forwards,
                          sessions: status.sessions, sessions_up: status.sessionsUp,
                          sessions_extra: status.extraSessionsUp,
                          hops: host.runtime.profile.jump.isEmpty ? nil : host.runtime.profile.hops.map(\.description),
                          origin: host.adHoc.map(\.origin.rawValue) ?? "profile \(host.profile.location.file):\(host.profile.location.line)",
                          rtt_ms: status.phase == .up ? milliseconds(status.rttSeconds) : nil)
    }
}
