import TunnelConfig

/// The listeners a tunnel's remote forwards (`ssh -R`) ask its server for,
/// across the links of its first SSH connection (only that one asks, so
/// extra connections never ask twice). Each is asked for once a link is up;
/// a refusal or a failed request is asked again with backoff while the link
/// stays up: after a reconnect the server may still hold the old session's
/// port until it notices that session is gone. A port the server picked
/// (port 0) is asked for again after a reconnect, so it stays the same, until
/// the server refuses it `stickyRefusals` times; then any port will do.
///
/// A value whose transitions return actions; the lane performs them.
struct RemoteListeners {
    enum State: Equatable {
        /// No link.
        case down
        /// Asked for `port` on the current link; no answer yet.
        case requested(port: UInt16)
        case listening(port: UInt16)
        /// Refused or failed; asked again when the retry is due.
        case waiting
    }

    enum LogLevel: Equatable { case debug, info, warning, error }

    enum Action: Equatable {
        /// Ask the link's server to listen on forward `index`'s address and `port`.
        case request(index: Int, port: UInt16)
        /// Call `retryDue(index)` after this many seconds.
        case scheduleRetry(index: Int, after: Double)
        /// The forward's status changed (`tunnel ls`, `tunnel up`, the last error).
        case publish(index: Int, RemoteListenerStatus)
        case log(LogLevel, String)
    }

    struct Entry: Equatable {
        let spec: RemoteForwardSpec
        var state = State.down
        /// The server listened for it on some link of this tunnel: a refusal
        /// after a reconnect is then most likely the old session holding it.
        var everListened = false
        /// The port the server picked for a port-0 forward, asked for again.
        var sticky: UInt16?
        /// Refusals since the last time the server listened.
        var streak = 0
        var backoff = Backoff(initial: 1, cap: 30)
    }

    /// Refusals of a port the server had picked before another one is asked for.
    static let stickyRefusals = 3

    private(set) var entries: [Entry]

    /// `preferredPorts`: for port-0 forwards, the ports a server picked
    /// before (a restored tunnel), asked for first, as after a reconnect.
    init(forwards: [RemoteForwardSpec], preferredPorts: [UInt16] = []) {
        entries = forwards.map { Entry(spec: $0) }
        for (i, port) in preferredPorts.enumerated() where i < entries.count && port != 0 && entries[i].spec.port == 0 {
            entries[i].sticky = port
        }
    }

    /// "remote 127.0.0.1:8080", "remote 127.0.0.1:auto".
    static func name(_ spec: RemoteForwardSpec, port: UInt16) -> String {
        "remote \(spec.listenDescription(boundPort: port == 0 ? nil : port))"
    }

    // MARK: transitions

    /// A link came up: every listener is asked for.
    mutating func linkUp() -> [Action] {
        var actions: [Action] = []
        for i in entries.indices {
            let port = entries[i].sticky ?? entries[i].spec.port
            entries[i].state = .requested(port: port)
            actions.append(.publish(index: i, RemoteListenerStatus()))
            actions.append(.request(index: i, port: port))
        }
        return actions
    }

    /// The link is gone, and with it every listener and pending request.
    mutating func linkDown() -> [Action] {
        var actions: [Action] = []
        for i in entries.indices where entries[i].state != .down {
            entries[i].state = .down
            actions.append(.publish(index: i, RemoteListenerStatus()))
        }
        return actions
    }

    /// The SSH connection that asks for the listeners failed to come up:
    /// nothing is asked for until it does, and `tunnel up` need not wait.
    mutating func linkFailed() -> [Action] {
        var actions: [Action] = []
        for i in entries.indices {
            entries[i].state = .down
            let name = Self.name(entries[i].spec, port: entries[i].sticky ?? entries[i].spec.port)
            actions.append(.publish(index: i, RemoteListenerStatus(problem: "\(name): not listening until the SSH connection is up", settled: true)))
        }
        return actions
    }

    /// The server listens on `port` for forward `index`.
    mutating func granted(_ index: Int, port: UInt16) -> [Action] {
        guard case .requested = entries[index].state else { return [] }
        var entry = entries[index]
        let again = entry.streak > 0
        entry.state = .listening(port: port)
        entry.everListened = true
        if entry.spec.port == 0 { entry.sticky = port }
        entry.streak = 0
        entry.backoff.reset()
        entries[index] = entry
        let route = "remote \(entry.spec.listenDescription(boundPort: port)) -> \(entry.spec.targetDescription)"
        return [
            .publish(index: index, RemoteListenerStatus(boundPort: port, settled: true)),
            .log(.info, again ? "\(route): the server listens again" : "\(route): the server listens"),
        ]
    }

    /// The server answered the request for forward `index` with a refusal.
    mutating func refused(_ index: Int) -> [Action] {
        guard case .requested(let port) = entries[index].state else { return [] }
        let name = Self.name(entries[index].spec, port: port)
        let reason = entries[index].everListened
            ? "server refused the listener (still held by the old session?)"
            : "the server refused the listener (remote forwarding is off there by AllowTcpForwarding or DisableForwarding, "
                + "PermitListen leaves this address out, or the port is in use on the server)"
        return retry(index, problem: "\(name): \(reason)")
    }

    /// The request for forward `index` failed some other way (not a refusal;
    /// a dead link is reported as `linkDown` instead).
    mutating func failed(_ index: Int, _ message: String) -> [Action] {
        guard case .requested(let port) = entries[index].state else { return [] }
        return retry(index, problem: "\(Self.name(entries[index].spec, port: port)): the listen request failed: \(message)")
    }

    /// A retry scheduled by `refused` or `failed` is due.
    mutating func retryDue(_ index: Int) -> [Action] {
        guard entries[index].state == .waiting else { return [] }
        let port = entries[index].sticky ?? entries[index].spec.port
        entries[index].state = .requested(port: port)
        return [.request(index: index, port: port)]
    }

    private mutating func retry(_ index: Int, problem: String) -> [Action] {
        var entry = entries[index]
        entry.state = .waiting
        entry.streak += 1
        var actions: [Action] = []
        if entry.sticky != nil && entry.streak >= Self.stickyRefusals {
            actions.append(.log(.info, "\(Self.name(entry.spec, port: entry.sticky!)): asking the server for any free port instead"))
            entry.sticky = nil
        }
        // Nominal delays (no jitter): one tunnel's forwards, not many tunnels in step.
        let delay = entry.backoff.nextDelay(random: 1)
        let message = "\(problem); retrying in \(Int(delay.rounded())) s"
        // One line per run of refusals; the rest are debug lines (the last error says each).
        let level: LogLevel = entry.streak > 1 ? .debug : entry.everListened ? .warning : .error
        entries[index] = entry
        actions.insert(.log(level, message), at: 0)
        actions.append(.publish(index: index, RemoteListenerStatus(problem: message, settled: true)))
        actions.append(.scheduleRetry(index: index, after: delay))
        return actions
    }
}
