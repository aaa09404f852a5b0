import Logging
import TunnelEngine
import TunnelPOSIX

/// The supervisor's watch on the network: one netlink socket for address
/// and route changes, and a 1 s look at the clocks for resumes from
/// suspend. Every change goes to every tunnel; each SSH connection decides
/// for itself whether it concerns it. Runs on the supervisor's loop.
public final class NetworkWatch {
    private let loop: EventLoop
    private let logger: Logger
    private let onChange: (NetworkChange) -> Void
    private var socket: NetlinkRouteSocket?
    private var registration: EventLoop.Registration?
    private var clockTimer: EventLoop.TimerID?
    private var suspend = SuspendDetector()
    /// Interfaces seen to stop running and not seen running since.
    private var downLinks: Set<Int> = []
    /// The last change logged, and when: the kernel repeats some (an IPv6
    /// address leaving its tentative state is a second RTM_NEWADDR).
    private var lastLogged: (change: NetworkChange, at: Instant)?

    public init(loop: EventLoop, logger: Logger, onChange: @escaping (NetworkChange) -> Void) {
        self.loop = loop
        self.logger = logger
        self.onChange = onChange
        do {
            let socket = try NetlinkRouteSocket()
            self.socket = socket
            registration = try loop.register(fd: socket.fd, events: .readable) { [unowned self] _ in self.readEvents() }
        } catch {
            logger.warning("not watching network changes (\(error)): a dead link is noticed by its keepalive only")
            closeSocket()
        }
        checkClocks()
    }

    private func readEvents() {
        while let socket {
            let result: IOResult<[NetworkEvent]>
            do { result = try socket.read() } catch {
                logger.warning("no longer watching network changes: \(error)")
                return closeSocket()
            }
            guard case .done(let events) = result else { return }
            for event in events {
                if case .link(let link) = event {
                    linkChanged(link)
                } else if let change = NetworkChange(event) {
                    changed(change)
                }
            }
        }
    }

    /// RTM_NEWLINK repeats for any attribute of an interface: only a running
    /// interface that stops is news.
    private func linkChanged(_ link: LinkState) {
        if link.isRunning {
            downLinks.remove(link.interfaceIndex)
        } else if downLinks.insert(link.interfaceIndex).inserted, let interface = Interfaces.addresses(ofIndex: link.interfaceIndex) {
            changed(.linkDown(interface: interface.name, addresses: interface.addresses))
        }
    }

    private func checkClocks() {
        let clocks = suspendClocks()
        if let slept = suspend.sample(boottime: clocks.boottime, monotonic: clocks.monotonic) {
            changed(.resumed(afterSeconds: slept))
        }
        clockTimer = loop.schedule(after: 1) { [weak self] in self?.checkClocks() }
    }

    private func changed(_ change: NetworkChange) {
        let now = Instant.now()
        if let last = lastLogged, last.change == change, now.seconds(since: last.at) < 1 {
            // Logged a moment ago; the tunnels hear it again (a probe already running absorbs it).
        } else if change.isLinkLocal {
            logger.debug("network: \(change)")
        } else {
            logger.info("network: \(change)")
        }
        lastLogged = (change, now)
        onChange(change)
    }

    private func closeSocket() {
        if let registration { loop.deregister(registration) }
        registration = nil
        socket?.close()
        socket = nil
    }

    /// Ends the watch (the loop has stopped or is stopping).
    public func close() {
        closeSocket()
        loop.cancel(clockTimer)
        clockTimer = nil
    }
}

extension NetworkChange {
    /// About link-local or loopback addresses only: never a path to a server
    /// of ours worth a log line (every new interface brings an fe80:: one).
    var isLinkLocal: Bool {
        switch self {
        case .addressAdded(let ip, _), .addressRemoved(let ip, _): return ip.isLinkLocalOrLoopback
        case .routeAdded(let ip, let length), .routeRemoved(let ip, let length): return length > 0 && ip.isLinkLocalOrLoopback
        case .resumed, .overrun: return false
        // One with no address but link-local ones carries no SSH connection of ours (a container's veth).
        case .linkDown(_, let addresses): return addresses.allSatisfy(\.isLinkLocalOrLoopback)
        }
    }
}

extension TunnelHost {
    /// Hands a network change to the tunnel's thread.
    func networkChanged(_ change: NetworkChange) {
        let runtime = self.runtime
        loop.execute { runtime.networkChanged(change) }
    }
}
