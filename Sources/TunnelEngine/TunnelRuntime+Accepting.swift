import TunnelPOSIX

/// Accepting clients and handing them to lanes: the accept gate's actions.
extension TunnelRuntime {
    func perform(_ actions: [AcceptGate.Action]) {
        for action in actions {
            switch action {
            case .watchListeners(let on):
                for listener in listeners {
                    for registration in listener.registrations { loop.setInterest(registration, on ? .readable : []) }
                }
            case .scheduleHoldTick(let after):
                loop.cancel(holdTimer)
                holdTimer = loop.schedule(after: after) { [unowned self] in
                    self.holdTimer = nil
                    self.holdTick()
                }
            case .scheduleAcceptRetry(let after):
                loop.schedule(after: after) { [weak self] in
                    guard let self else { return }
                    self.perform(self.gate.descriptorPauseOver())
                }
            }
        }
    }

    /// Accepts a batch of clients from one of a listener's sockets and hands
    /// them to the lanes.
    func acceptClients(from index: Int, socket which: Int) {
        let listener = listeners[index]
        guard let (listening, address) = which == 0 ? (listener.socket, listener.address) : listener.companion else { return }
        if pool.isAsleep { return wake(for: listener.address.description) }
        var accepted: [Connection] = []
        defer { if !accepted.isEmpty { assign(accepted) } }
        for _ in 0..<256 {
            let (may, actions) = gate.mayAccept(pending: pending.value + accepted.count)
            if !actions.isEmpty {
                pending.pauseAccepts()
                perform(actions)
            }
            guard may else { return }
            let result: IOResult<(Socket, SocketAddress?)>
            do {
                result = try listening.accept()
            } catch {
                if error.errno == .tooManyFiles || error.errno == .tooManyFilesSystem {
                    // Out of descriptors: leave clients in the kernel queue for a moment.
                    logger.error("accept on \(address): \(error.errno); pausing accepts for \(Int(AcceptGate.descriptorPauseSeconds * 1000)) ms")
                    perform(gate.outOfDescriptors())
                } else {
                    logger.warning("accept on \(address): \(error)")
                }
                return
            }
            guard case .done(let (socket, peer)) = result else { return }
            try? socket.setNoDelay()
            listener.stats.total.add(1, ordering: .relaxed)
            listener.stats.active.add(1, ordering: .relaxed)
            if listener.spec.kind == .dynamic {
                negotiate(socket, peer: peer, listener: listener)
            } else {
                accepted.append(Connection(socket: socket, peer: peer, target: listener.target, acceptedAt: Instant.now()))
            }
        }
    }

    /// Reads a `-D` client's SOCKS request on this loop; the client goes to a
    /// lane once it has said where to.
    private func negotiate(_ socket: Socket, peer: SocketAddress?, listener: Listener) {
        guard negotiations.count < SocksNegotiation.maxConcurrent else {
            socket.close()
            listener.stats.active.subtract(1, ordering: .relaxed)
            logger.warning("\(SocksNegotiation.maxConcurrent) SOCKS clients are still sending their requests; closing a new one from \(peer?.description ?? "?")")
            return
        }
        let negotiation = SocksNegotiation(socket: socket, peer: peer, listener: listener, loop: loop, logger: logger) { [unowned self] negotiation, connection in
            self.negotiations.removeValue(forKey: ObjectIdentifier(negotiation))
            if let connection { self.assign([connection]) }
        }
        negotiations[ObjectIdentifier(negotiation)] = negotiation
        negotiation.start()
    }

    /// Hands clients to the least-loaded lanes that are up, or holds them
    /// until one is; adds a lane when every lane up is busy (the clients
    /// beyond wait a moment for it) or many clients wait for channels.
    func assign(_ connections: [Connection]) {
        guard !isStopped else { return connections.forEach { $0.closeUnserved() } }
        if pool.isAsleep { wake(for: "\(connections.count) client(s)") }
        defer { perform(pool.growIfBackedUp(pending: pending.value, now: Instant.now())) }
        let up = pool.upLanes.compactMap { lanes[$0] }
        let stalled = up.map { $0.isStalled.load(ordering: .relaxed) }
        let loads = up.map { $0.load.load(ordering: .relaxed) }
        // A lane whose channel open hangs takes nobody while another will:
        // it counts as full for growth, and as far more loaded for the choice.
        let roomLoads = zip(loads, stalled).map { $1 ? max($0, pool.busyPerLane) : $0 }
        let choiceLoads = zip(loads, stalled).map { $1 ? $0 + Self.stalledLaneWeight : $0 }
        var connections = connections
        if !up.isEmpty {
            // Every connection busy: some clients wait for an extra one.
            let (admitted, actions) = pool.admit(count: connections.count, loads: roomLoads, stalled: stalled.filter { $0 }.count, now: Instant.now())
            if admitted < connections.count {
                heldForGrowth.append(contentsOf: connections[admitted...])
                connections.removeLast(connections.count - admitted)
            }
            perform(actions)
            if connections.isEmpty { return }
        }
        let choice = pool.assign(count: connections.count, loads: choiceLoads)
        guard choice.count == connections.count else {
            held.append(contentsOf: connections)
            perform(gate.linkDown())
            return
        }
        var batches: [Int: [Connection]] = [:]
        for (c, index) in zip(connections, choice) { batches[index, default: []].append(c) }
        for (index, batch) in batches {
            guard let lane = lanes[index] else { continue }
            lane.load.add(batch.count, ordering: .relaxed)
            pending.add(batch.count)
            lane.send(.clients(batch))
        }
    }

    /// What a stalled lane's load counts as more than it is when choosing a lane.
    static let stalledLaneWeight = 1 << 20

    /// The clients kept back for an extra SSH connection go to the lanes.
    func releaseHeldForGrowth() {
        loop.cancel(growthHoldTimer)
        growthHoldTimer = nil
        let waiting = heldForGrowth
        heldForGrowth.removeAll()
        if !waiting.isEmpty { assign(waiting) }
    }

    /// While no lane is up, closes clients that have waited out hold_timeout,
    /// in our queue and in the kernel's.
    private func holdTick() {
        let now = Instant.now()
        held.removeAll { c in
            guard gate.isExpired(since: c.acceptedAt, now: now) else { return false }
            c.closeUnserved()
            return true
        }
        var queues: [Int: Int?] = [:]
        for (index, listener) in listeners.enumerated() { queues[index] = listener.acceptQueueLength() }
        let expiry = gate.holdTick(now: now, kernelQueue: queues)
        for (index, count) in expiry.acceptAndClose {
            let listener = listeners[index]
            var left = count
            // The oldest clients are not told apart across the two sockets;
            // the count is what the gate has seen expire.
            for socket in listener.sockets {
                while left > 0, case .done(let (client, _)) = (try? socket.accept()) ?? .wouldBlock {
                    listener.stats.total.add(1, ordering: .relaxed)
                    client.close()
                    left -= 1
                }
            }
        }
        perform(expiry.actions)
    }
}
