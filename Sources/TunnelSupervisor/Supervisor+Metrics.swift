import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX

/// The supervisor's metrics: the endpoint `[daemon]` asks for, and the
/// totals of tunnel runtimes that ended. A reload that restarts a tunnel, or
/// `down` then `up`, makes a new runtime with fresh atomics; adding the old
/// one's final values keeps every exported counter growing while the
/// supervisor runs. Lives on the supervisor's loop.
final class SupervisorMetrics {
    /// What ended runtimes of one tunnel name added up to.
    struct Carried: Equatable {
        var restarts: UInt64 = 0
        var connectDurations = MetricsSnapshot.Histogram()
        /// By forward label.
        var forwards: [String: MetricsSnapshot.Forward] = [:]
    }

    /// Why the endpoint could not be opened at start.
    struct StartError: Error, CustomStringConvertible {
        let address: MetricsAddress
        let error: SystemError
        var description: String { "metrics endpoint \(address): \(error)" }
    }

    /// The profiles file whose `[daemon]` table it follows.
    let configPath: String?
    private let environment: [String: String]
    private let logger: Logger
    private let hosts: () -> [TunnelHost]
    private var server: MetricsServer!
    private(set) var settings: DaemonSettings
    private(set) var carried: [String: Carried] = [:]

    /// Opens the endpoint `settings` asks for (none when metrics is off).
    /// `hosts`: the running tunnels, read at each scrape.
    init(configPath: String?, settings: DaemonSettings, loop: EventLoop, logger: Logger, environment: [String: String],
         hosts: @escaping () -> [TunnelHost]) throws(StartError) {
        self.configPath = configPath
        self.settings = settings
        self.logger = logger
        self.environment = environment
        self.hosts = hosts
        server = MetricsServer(loop: loop, logger: logger) { [unowned self] in MetricsExposition.render(self.snapshot()) }
        if let address = settings.metrics {
            do { try server.listen(on: address) } catch { throw StartError(address: address, error: error) }
            logger.info("metrics at http://\(address)/metrics")
        }
    }

    func close() { server.close() }

    // MARK: hooks

    /// A tunnel's runtime ended: its final counts join the carried totals.
    func hostExited(_ host: TunnelHost) {
        let ended = Self.current(host)
        var carry = carried[host.name] ?? Carried()
        carry.restarts += ended.restarts
        carry.connectDurations = carry.connectDurations + ended.connectDurations
        for forward in ended.forwards {
            var total = carry.forwards[forward.label] ?? MetricsSnapshot.Forward(label: forward.label)
            total.total += forward.total
            total.bytesIn += forward.bytesIn
            total.bytesOut += forward.bytesOut
            carry.forwards[forward.label] = total
        }
        carried[host.name] = carry
    }

    /// `tunnel reload` / SIGHUP: reads `[daemon]` again and moves the
    /// endpoint if its address changed. A bad table or a failed bind keeps
    /// the endpoint as it was. Returns an outcome for the reply when
    /// something changed or failed.
    func reload() -> [TunnelOutcome] {
        guard let configPath else { return [] }
        let fresh: DaemonSettings
        do throws(DaemonSettingsError) { fresh = try Config.daemonSettings(path: configPath, environment: environment, missingIsDefault: false) } catch {
            let message = "\(keptMessage): \(error.errors.errors.map(\.description).joined(separator: "; "))"
            // Off, with a file that cannot be read at all: nothing was kept, and each tunnel's outcome already says why.
            if server.address == nil && !error.inTable {
                logger.warning("reload: \(message)")
                return []
            }
            logger.error("reload: \(message)")
            return [TunnelOutcome(name: Self.outcomeName, result: .failed, message: message)]
        }
        guard fresh.metrics != server.address else {
            settings = fresh
            return []
        }
        guard let address = fresh.metrics else {
            server.stopListening()
            settings = fresh
            logger.info("reload: metrics endpoint closed")
            return [TunnelOutcome(name: Self.outcomeName, result: .restarted, message: "metrics endpoint closed")]
        }
        do throws(SystemError) { try server.listen(on: address) } catch {
            let message = "\(keptMessage): cannot listen on \(address): \(error)"
            logger.error("reload: \(message)")
            return [TunnelOutcome(name: Self.outcomeName, result: .failed, message: message)]
        }
        settings = fresh
        logger.info("reload: metrics at http://\(address)/metrics")
        return [TunnelOutcome(name: Self.outcomeName, result: .restarted, message: "metrics at http://\(address)/metrics")]
    }

    /// The name a reload reply gives the supervisor's own settings (no profile can have brackets).
    static let outcomeName = "[daemon]"

    private var keptMessage: String {
        server.address.map { "kept the metrics endpoint on \($0)" } ?? "kept the metrics endpoint off"
    }

    // MARK: reading

    func snapshot() -> MetricsSnapshot {
        MetricsSnapshot(tunnels: hosts().map { host in
            var tunnel = Self.current(host)
            guard let carry = carried[host.name] else { return tunnel }
            tunnel.restarts += carry.restarts
            tunnel.connectDurations = tunnel.connectDurations + carry.connectDurations
            for i in tunnel.forwards.indices {
                guard let before = carry.forwards[tunnel.forwards[i].label] else { continue }
                tunnel.forwards[i].total += before.total
                tunnel.forwards[i].bytesIn += before.bytesIn
                tunnel.forwards[i].bytesOut += before.bytesOut
            }
            return tunnel
        })
    }

    /// One runtime's own values, nothing carried.
    static func current(_ host: TunnelHost) -> MetricsSnapshot.Tunnel {
        let status = host.status
        let profile = host.runtime.profile
        let labels = forwardLabels(profile)
        var forwards: [MetricsSnapshot.Forward] = []
        let stats = Array(host.runtime.forwardStats.prefix(profile.forwards.count)) + Array(host.runtime.remoteStats.prefix(profile.remoteForwards.count))
        for (label, counters) in zip(labels, stats) {
            let s = counters.snapshot()
            forwards.append(MetricsSnapshot.Forward(label: label, active: s.active, total: UInt64(max(0, s.total)),
                                                    bytesIn: s.bytesIn, bytesOut: s.bytesOut))
        }
        return MetricsSnapshot.Tunnel(name: host.name, phase: status.phase, restarts: UInt64(max(0, status.restarts)),
                                      // Only while a connection is up to measure it, as `tunnel ls` shows it.
                                      rttSeconds: status.phase == .up ? status.rttSeconds : nil, connectDurations: MetricsSnapshot.Histogram(status.connectDurations),
                                      forwards: forwards)
    }

    /// The `forward` label of each forward, local ones then remote ones:
    /// "127.0.0.1:5433->localhost:5432", "127.0.0.1:1080->socks",
    /// "remote 127.0.0.1:8080->localhost:3000". From the profile, not the
    /// bound ports, so a restart keeps them. Made unique within the tunnel.
    static func forwardLabels(_ profile: Profile) -> [String] {
        func hostPort(_ host: String, _ port: UInt16) -> String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
        var labels = profile.forwards.map { spec in
            spec.localDescription + "->" + (spec.kind == .dynamic ? "socks" : hostPort(spec.remoteHost, spec.remotePort))
        }
        labels += profile.remoteForwards.map { "remote \($0.listenDescription())->\(hostPort($0.targetHost, $0.targetPort))" }
        var seen: [String: Int] = [:]
        return labels.map { label in
            let n = (seen[label] ?? 0) + 1
            seen[label] = n
            return n == 1 ? label : "\(label) #\(n)"
        }
    }
}

extension Supervisor {
    /// The `[daemon]` table the supervisor starts with; nil after printing
    /// why it must not start (a bad table, an unreadable file).
    static func daemonSettings(configPath: String?, environment: [String: String], logger: Logger) -> DaemonSettings? {
        guard let configPath else { return DaemonSettings() }
        do throws(DaemonSettingsError) {
            return try Config.daemonSettings(path: configPath, environment: environment)
        } catch {
            for problem in error.errors.errors {
                logger.critical("cannot start: \(problem)")
                writeLine(2, "tunnel: \(problem)")
            }
            return nil
        }
    }
}
