import Logging
import TunnelEngine
import TunnelPOSIX

/// The supervisor as a `Type=notify` service: READY=1 once the saved tunnels
/// have answered their start, RELOADING=1 and READY=1 around a reload,
/// STOPPING=1 when it stops, and WATCHDOG=1 from a timer on the supervisor's
/// own loop, so a loop that hangs stops the pings and systemd restarts it.
/// Does nothing without `$NOTIFY_SOCKET` (and no watchdog without
/// `$WATCHDOG_USEC`). Used on the supervisor's loop only.
final class SystemdService {
    /// READY=1 goes out at the latest this long after the start, even if a
    /// saved tunnel is still making its first attempt (systemd's start
    /// timeout is 90 s by default).
    static let readyDeadline = 30.0

    private let notifier: SystemdNotifier?
    private let loop: EventLoop
    private let logger: Logger
    private let watchdogInterval: Double?
    private var watchdogTimer: EventLoop.TimerID?
    private var deadlineTimer: EventLoop.TimerID?
    private(set) var isReady = false
    private var reportedFailure = false

    init(environment: [String: String], loop: EventLoop, logger: Logger) {
        self.loop = loop
        self.logger = logger
        var notifier: SystemdNotifier?
        do { notifier = try SystemdNotifier(environment: environment) } catch {
            logger.warning("cannot notify systemd at \(environment["NOTIFY_SOCKET"] ?? ""): \(error)")
        }
        self.notifier = notifier
        watchdogInterval = notifier == nil ? nil : SystemdEnvironment.watchdogInterval(environment)
        guard let notifier else { return }
        logger.debug("notifying systemd at \(notifier.address)\(watchdogInterval.map { ", watchdog every \($0) s" } ?? "")")
        if watchdogInterval != nil { scheduleWatchdog() }
        deadlineTimer = loop.schedule(after: Self.readyDeadline) { [weak self] in
            guard let self, !self.isReady else { return }
            self.logger.warning("telling systemd the supervisor is ready although a saved tunnel is still starting")
            self.ready()
        }
    }

    /// The saved tunnels have answered their start (or the deadline passed).
    func ready() {
        guard notifier != nil, !isReady else { return }
        isReady = true
        loop.cancel(deadlineTimer)
        send("READY=1\nSTATUS=running")
    }

    /// A reload begins; `reloaded()` follows once every tunnel has answered.
    /// Before the first READY=1 systemd is still starting us: nothing to say.
    func reloading() {
        guard isReady else { return }
        send("RELOADING=1\nMONOTONIC_USEC=\(SystemdEnvironment.monotonicMicroseconds())")
    }

    func reloaded() {
        guard isReady else { return }
        send("READY=1")
    }

    func stopping() { send("STOPPING=1") }

    /// Stops the pings and closes the socket; at the end of `Supervisor.run`.
    func close() {
        loop.cancel(watchdogTimer)
        loop.cancel(deadlineTimer)
        watchdogTimer = nil
        notifier?.close()
    }

    private func scheduleWatchdog() {
        guard let interval = watchdogInterval else { return }
        send("WATCHDOG=1")
        watchdogTimer = loop.schedule(after: interval) { [weak self] in self?.scheduleWatchdog() }
    }

    private func send(_ state: String) {
        guard let notifier else { return }
        do {
            if case .wouldBlock = try notifier.send(state) { logger.debug("systemd's notify socket is full; dropped \(state)") }
        } catch {
            // Once: the watchdog would repeat it every few seconds.
            if !reportedFailure { logger.warning("cannot notify systemd (\(state.split(separator: "\n")[0])): \(error)") }
            reportedFailure = true
        }
    }
}
