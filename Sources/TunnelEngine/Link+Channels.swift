import Glibc
import Logging
import TunnelPOSIX
import TunnelSSH

/// A link's ping channel (the keepalive) and its channel opens: one open may
/// be in flight per session, the ping channel first.
extension Link {
    // MARK: liveness

    func scheduleLiveness(keepalive: Int, count: Int) {
        guard keepalive > 0 else { return }
        let idle = Instant.now().seconds(since: session.lastReceive)
        let interval = Double(keepalive)
        let deadline = interval * Double(count)
        if idle >= deadline && ping != .unavailable {
            die("no data from the server for \(Int(idle)) s (keepalive \(keepalive) s × \(count))")
            return
        }
        if idle >= interval && ping == .idle {
            startPing()
        } else if ping == .unavailable {
            session.sendKeepalive()
        }
        // Next look: when the next ping falls due, or at the deadline.
        let untilPing = interval - idle.truncatingRemainder(dividingBy: interval)
        let next = ping == .unavailable ? interval : min(untilPing, max(0.05, deadline - idle))
        livenessTimer = loop.schedule(after: max(0.05, next)) { [weak self] in
            self?.scheduleLiveness(keepalive: keepalive, count: count)
        }
    }

    func stepPing() {
        guard ping == .inFlight, let channel = pingChannel else { return }
        do {
            if try channel.ping() {
                ping = .idle
                if let sent = pingSentAt { onRoundTrip(Instant.now().seconds(since: sent)) }
                pingSentAt = nil
            }
        } catch {
            die("keepalive failed: \(error.message)")
        }
    }

    /// The ping channel runs no command, so nothing should arrive on it; if a
    /// server sends something anyway, drop it rather than let it queue forever.
    func discardPingChannelData() {
        guard let channel = pingChannel, channel.readAvailable > 0 else { return }
        while case .data? = try? channel.read(into: pump.scratch, capacity: pump.scratchSize) {}
    }

    // MARK: channel opens

    /// How long a channel open may wait for the server before the clients
    /// queued behind it (libssh2 1.10 keeps one open in flight per session)
    /// go to another SSH connection: a target whose connect hangs (a
    /// firewall that drops packets) takes up to libssh2's 60 s.
    static let openStallSeconds = 2.0
    static let openStallProbeDeadline = 5.0

    private func watchOpen() {
        loop.cancel(openStallTimer)
        let received = session.bytesReceived
        openStallTimer = loop.schedule(after: Self.openStallSeconds) { [weak self] in
            guard let self, !self.isDead, self.opening != nil else { return }
            self.openStallTimer = nil
            self.isOpenStalled = true
            self.onOpenStalled(true)
            // Not a byte from the server since: it may be gone (frozen, its
            // network cut) rather than slow to reach the target. A probe
            // tells within hold_timeout (10 s), so this client moves on; its
            // deadline is longer than a network change's, because a server
            // busy with thousands of channels can be silent for seconds.
            if self.session.bytesReceived == received {
                self.probe(after: "a channel open unanswered for \(Int(Self.openStallSeconds)) s", deadline: Self.openStallProbeDeadline)
            }
        }
    }

    private func openEnded() {
        loop.cancel(openStallTimer)
        openStallTimer = nil
        guard isOpenStalled else { return }
        isOpenStalled = false
        onOpenStalled(false)
    }

    /// One channel open may be in flight per session; it is retried with the
    /// same arguments until the server answers. The ping channel goes first.
    func stepOpens() {
        while !isDead {
            if ping == .opening {
                do {
                    guard case .done(let channel) = try session.openSessionChannel() else { return }
                    pingChannel = channel
                    session.dataFreeChannel = channel
                    // A first ping at once, so the round trip is known from the start.
                    ping = .inFlight
                    pingSentAt = Instant.now()
                } catch {
                    if error.isTransportFailure { return die(session.lossReason(error)) }
                    ping = .unavailable
                    logger.warning("the server refused a session channel (\(error.message)); dead links are detected by TCP timeouts only")
                }
                continue
            }
            let c: Connection
            if let current = opening {
                c = current
            } else {
                guard let next = nextClient() else { return }
                c = next
                opening = c
                watchOpen()
            }
            let target = c.target
            let result: IOResult<SSHChannel>
            do {
                result = try session.openDirectTCPIP(host: target.host, port: target.port,
                                                     originHost: c.peer?.family == AF_UNIX ? "127.0.0.1" : c.peer?.host ?? "127.0.0.1",
                                                     originPort: c.peer?.port ?? 0)
            } catch {
                opening = nil
                openEnded()
                let unanswered = error.isUnansweredRequest && session.connectionLoss == nil
                if error.isTransportFailure && !unanswered { return die(session.lossReason(error)) }
                // The target refused, the server prohibits forwarding, or it never
                // answered (its connect there hangs): this client is closed at
                // once; the tunnel stays up.
                let why = unanswered ? "the server did not answer within 60 s (its connection to the target hangs?)" : error.message
                lastRefusal = why
                lastRefusalKind = unanswered ? nil : error.refusal
                if target.isHop {
                    logger.debug("channel to \(target.local) \(unanswered ? "failed" : "refused"): \(why)")
                } else {
                    logger.warning("channel to \(target.description) \(unanswered ? "failed" : "refused"): \(why); closing that client", metadata: ["local": "\(target.local)"])
                }
                if var socks = c.socks {
                    // The SOCKS client hears why, in its own protocol's terms.
                    for case .send(let reply) in socks.channelFailed(SocksFailure(error.refusal)) {
                        _ = reply.withUnsafeBytes { try? c.socket.send($0.baseAddress!, count: $0.count) }
                    }
                    c.socks = nil
                }
                c.phase = .pumping
                finish(c, .closed)
                continue
            }
            guard case .done(let channel) = result else { return }
            opening = nil
            openEnded()
            c.channel = channel
            c.phase = .pumping
            if var socks = c.socks {
                // The success reply goes before anything the target sends.
                for case .send(let reply) in socks.channelOpened() {
                    reply.withUnsafeBytes { c.downPending.append($0.baseAddress!, count: $0.count) }
                }
                c.socks = nil
            }
            track(c)
        }
    }

}
