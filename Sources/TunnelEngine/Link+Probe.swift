import TunnelPOSIX

/// After a network change the link asks the server for an answer at once
/// instead of waiting keepalive × count seconds to notice it is dead.
extension Link {
    /// How long a probed link may stay silent.
    static let probeDeadline = 2.0

    func startPing() {
        ping = .inFlight
        pingSentAt = Instant.now()
        stepPing()
    }

    /// Sends a ping now; the link dies unless something arrives from the
    /// server within `probeDeadline`. A probe already running covers this one.
    func probe(after change: String, deadline: Double = Link.probeDeadline) {
        guard !isDead, probeTimer == nil else { return }
        switch ping {
        case .idle: startPing()
        // The answer to the ping in flight, or to the ping channel's open, will do.
        case .inFlight, .opening: break
        // Nothing we can send is sure to be answered; TCP timeouts will tell.
        case .unavailable: return
        }
        let before = session.bytesReceived
        logger.info("probing the SSH connection after \(change)")
        probeTimer = loop.schedule(after: deadline) { [weak self] in
            guard let self else { return }
            self.probeTimer = nil
            if self.session.bytesReceived == before {
                self.die("no answer within \(Int(deadline)) s after \(change)")
            }
        }
    }
}
