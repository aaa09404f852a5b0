import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX

/// One tunnel's runtime on a loop of the tunnels' group (shared with other
/// tunnels, one loop per core). The supervisor talks to it only through
/// `loop.execute`; it reports back through the supervisor loop's `execute`.
final class TunnelHost: @unchecked Sendable {
    let name: String
    let configPath: String
    let profile: Profile
    /// The agent and home it authenticates with; a reload keeps them, and
    /// a `tunnel up` that retries a tunnel not up brings its own agent.
    var options: Connector.Options
    /// Set for a tunnel no profile describes: a reload leaves it alone.
    var adHoc: AdHocTunnel?
    let loop: EventLoop
    let group: EventLoopGroup
    let runtime: TunnelRuntime
    /// Fired on the supervisor's loop once the runtime has closed everything.
    private let exited: LoopCallback<TunnelHost>

    // Touched only on the supervisor's loop:
    var status = TunnelStatus()
    var waiters: [(attempts: Int, resolve: (TunnelStatus) -> Void)] = []
    var isStopping = false

    private init(name: String, configPath: String, profile: Profile, options: Connector.Options, loop: EventLoop, group: EventLoopGroup,
                 runtime: TunnelRuntime, exited: LoopCallback<TunnelHost>) {
        self.name = name
        self.configPath = configPath
        self.profile = profile
        self.options = options
        self.loop = loop
        self.group = group
        self.runtime = runtime
        self.exited = exited
    }

    /// Places the tunnel on `group`'s least-loaded loop, binds the listeners
    /// there and reports the result on `supervisorLoop` (the caller's).
    /// `onStatus` receives every status change, also there. The closures stay
    /// on that loop: the tunnel's loop only fires callbacks into it.
    /// `profile` as tunnels.toml says (what a reload compares), `resolved`
    /// with ssh_config applied (what the tunnel runs).
    static func start(profile: Profile, resolved: Profile, configPath: String, options: Connector.Options, preferredPorts: PreferredPorts?,
                      logger: Logger,
                      group: EventLoopGroup, supervisorLoop: EventLoop,
                      onStatus: @escaping (TunnelHost, TunnelStatus) -> Void,
                      onExit: @escaping (TunnelHost) -> Void,
                      completion: @escaping (Result<TunnelHost, BindFailure>) -> Void) {
        let loop: EventLoop
        do {
            loop = try group.acquire()
        } catch {
            completion(.failure(BindFailure(address: "", errno: error.errno, message: "cannot start an event loop: \(error)")))
            return
        }
        let runtime = TunnelRuntime(profile: resolved, loop: loop, group: group, options: options, logger: logger.tagged(tunnel: profile.name))
        if let preferredPorts { runtime.preferredPorts = preferredPorts }
        var statusChanged: LoopCallback<TunnelStatus>?
        let exited = supervisorLoop.callback { (host: TunnelHost) in
            statusChanged?.cancel()
            onExit(host)
        }
        let host = TunnelHost(name: profile.name, configPath: configPath, profile: profile, options: options, loop: loop, group: group,
                              runtime: runtime, exited: exited)
        let changed = supervisorLoop.callback(repeats: true) { (status: TunnelStatus) in onStatus(host, status) }
        statusChanged = changed
        let started = supervisorLoop.callback(completion)
        runtime.onStatusChange = { status in changed(status) }
        loop.execute {
            do throws(BindFailure) {
                try runtime.start()
                started(.success(host))
            } catch {
                runtime.onStatusChange = nil
                group.release(loop)
                started(.failure(error))
                exited(host)
            }
        }
    }

    /// Stops the runtime; `onExit` follows once every lane has closed what it held.
    func stop(graceful: Bool) {
        guard !isStopping else { return }
        isStopping = true
        let runtime = self.runtime, loop = self.loop, group = self.group, exited = self.exited
        loop.execute { [self] in
            runtime.stop(graceful: graceful) {
                // The status callback holds this host: let both go.
                runtime.onStatusChange = nil
                group.release(loop)
                exited(self)
            }
        }
    }

    func retryNow(with newOptions: Connector.Options? = nil) {
        let runtime = self.runtime
        loop.execute { runtime.retryNow(with: newOptions) }
    }
}

extension Logger {
    /// Lines about one tunnel carry its name (`[NAME]`), the engine's and
    /// the supervisor's alike, so `tunnel logs NAME` shows them all.
    func tagged(tunnel name: String) -> Logger {
        var tagged = self
        tagged[metadataKey: "tunnel"] = "\(name)"
        return tagged
    }
}
