import TunnelPOSIX

/// A lazy tunnel (`lazy = true`): its listeners are bound from the start,
/// its SSH connection opens when the first client arrives and closes again
/// after `idle_timeout` seconds without one.
extension TunnelRuntime {
    /// A client is waiting on a sleeping tunnel: the lanes start connecting
    /// while it (and any that follow) waits in the kernel's accept queue,
    /// up to hold_timeout, so simultaneous clients share one attempt.
    func wake(for address: String) {
        guard pool.isAsleep, !isStopped else { return }
        quietSince = nil
        perform(gate.linkDown())
        gate.firstAttemptStarted()
        let actions = pool.wake()
        logger.info("a client is waiting on \(address): connecting")
        publish(reason: "client waiting on \(address)") { _ in }
        perform(actions)
        watchForIdleness()
    }

    /// Looks for clients every so often while awake.
    func watchForIdleness() {
        guard lazyTimer == nil, !isStopped, !pool.isAsleep else { return }
        let interval = min(1.0, max(0.1, Double(profile.idleTimeout) / 4))
        lazyTimer = loop.schedule(after: interval) { [weak self] in
            guard let self else { return }
            self.lazyTimer = nil
            self.checkIdleness()
        }
    }

    private func checkIdleness() {
        guard !isStopped, !pool.isAsleep else { return }
        let now = Instant.now()
        if hasClients {
            quietSince = nil
        } else if status.sessionsUp == 0 {
            // Nobody waits and nothing is connected (the server is down, say):
            // a lazy tunnel stops trying until the next client, rather than
            // log in again and again for idle_timeout on nobody's behalf.
            return sleep(why: "no client is waiting and no SSH connection is up; not trying again until the next client")
        } else if let since = quietSince {
            if now.seconds(since: since) >= Double(profile.idleTimeout) {
                return sleep(why: "no client for \(profile.idleTimeout) s; SSH connection closed until the next one")
            }
        } else {
            quietSince = now
        }
        watchForIdleness()
    }

    /// Clients served, held, negotiating, queued for a channel, or still in
    /// the kernel's accept queue.
    private var hasClients: Bool {
        forwardStats.contains { $0.active.load(ordering: .relaxed) > 0 } || !held.isEmpty || !negotiations.isEmpty
            || pending.value > 0 || listeners.contains { ($0.acceptQueueLength() ?? 0) > 0 }
    }

    /// Closes the SSH connections and waits for the next client. A failed
    /// tunnel stays failed (`LanePool.sleep`) and keeps looking.
    private func sleep(why: String) {
        let stopping = pool.sleep()
        guard pool.isAsleep else {
            quietSince = nil
            return watchForIdleness()
        }
        for index in stopping { stopLane(index, graceful: true) }
        gate.firstAttemptEnded()
        connectStarted.removeAll()
        quietSince = nil
        logger.info("idle: \(why)")
        perform(gate.linkUp())
        publish(reason: why) { _ in }
    }
}
