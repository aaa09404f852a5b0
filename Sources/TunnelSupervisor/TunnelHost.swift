import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX

/// One tunnel's runtime on its own event-loop thread, so tunnels use every
/// core. The supervisor talks to it only through `loop.execute`; it reports
/// back through the supervisor loop's `execute`.
final class TunnelHost: @unchecked Sendable {
    let name: String
    let configPath: String
    let profile: Profile
    /// The agent and home it authenticates with; a reload keeps them.
    let options: Connector.Options
    /// Set for a tunnel no profile describes: a reload leaves it alone.
    var adHoc: AdHocTunnel?
    let loop: EventLoop
    let runtime: TunnelRuntime

    // Touched only on the supervisor's loop:
    var status = TunnelStatus()
    var waiters: [(attempts: Int, resolve: (TunnelStatus) -> Void)] = []
    var isStopping = false

    private init(name: String, configPath: String, profile: Profile, options: Connector.Options, loop: EventLoop, runtime: TunnelRuntime) {
        self.name = name
        self.configPath = configPath
        self.profile = profile
        self.options = options
        self.loop = loop
        self.runtime = runtime
    }

    /// Starts the thread, binds the listeners there and reports the result on
    /// `supervisorLoop` (the caller's). `onStatus` receives every status
    /// change, also there. The closures stay on that loop: the tunnel's
    /// thread only fires callbacks into it.
    /// `profile` as tunnels.toml says (what a reload compares), `resolved`
    /// with ssh_config applied (what the tunnel runs).
    static func start(profile: Profile, resolved: Profile, configPath: String, options: Connector.Options, logger: Logger,
                      supervisorLoop: EventLoop,
                      onStatus: @escaping (TunnelHost, TunnelStatus) -> Void,
                      onExit: @escaping (TunnelHost) -> Void,
                      completion: @escaping (Result<TunnelHost, BindFailure>) -> Void) {
        let loop: EventLoop
        do {
            loop = try EventLoop()
        } catch {
            completion(.failure(BindFailure(address: "", errno: error.errno, message: "cannot start an event loop: \(error)")))
            return
        }
        var tunnelLogger = logger
        tunnelLogger[metadataKey: "tunnel"] = "\(profile.name)"
        let runtime = TunnelRuntime(profile: resolved, loop: loop, options: options, logger: tunnelLogger)
        let host = TunnelHost(name: profile.name, configPath: configPath, profile: profile, options: options, loop: loop, runtime: runtime)
        let statusChanged = supervisorLoop.callback(repeats: true) { (status: TunnelStatus) in onStatus(host, status) }
        let started = supervisorLoop.callback(completion)
        let exited = supervisorLoop.callback { (host: TunnelHost) in
            statusChanged.cancel()
            onExit(host)
        }
        runtime.onStatusChange = { status in statusChanged(status) }
        startThread(name: "tunnel-\(profile.name)") {
            loop.execute {
                do throws(BindFailure) {
                    try runtime.start()
                    started(.success(host))
                } catch {
                    runtime.onStatusChange = nil
                    loop.stop()
                    started(.failure(error))
                }
            }
            loop.run()
            exited(host)
        }
    }

    /// Stops the runtime and ends the thread once every lane has closed what
    /// it held; `onExit` follows.
    func stop(graceful: Bool) {
        guard !isStopping else { return }
        isStopping = true
        let runtime = self.runtime, loop = self.loop
        loop.execute {
            runtime.stop(graceful: graceful) {
                // The status callback holds this host: let both go.
                runtime.onStatusChange = nil
                loop.stop()
            }
        }
    }

    func retryNow() {
        let runtime = self.runtime
        loop.execute { runtime.retryNow() }
    }
}
