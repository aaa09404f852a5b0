import Logging
import TunnelPOSIX
import TunnelSSH

/// A tcpip-forward request: listen on host:port for remote forward `index`.
struct ListenRequest: Equatable {
    let index: Int
    let host: String
    let port: UInt16
}

/// The server's answer to a tcpip-forward request.
enum ListenAnswer: Equatable {
    case listening(port: UInt16)
    case refused
    case failed(String)
}

/// Remote forwards (`ssh -R`) on a link: the tcpip-forward requests, one in
/// flight per session; the forwarded-tcpip channels the server opens for
/// each listener, each connected to its target here and then pumped like a
/// local client's channel (the local socket is the target's, so half-close,
/// backpressure and the counters work the same way).
extension Link {
    /// Serves remote forwards: `targets[i]` is where forward i's connections go here.
    func serveRemoteForwards(_ targets: [ChannelTarget], connectTimeout: Double) {
        remoteTargets = targets
        dialer = LocalDialer(loop: loop, timeout: connectTimeout)
    }

    /// Queues a tcpip-forward request; the loop pass sends it when its turn comes.
    func requestListener(index: Int, host: String, port: UInt16) {
        listenQueue.append(ListenRequest(index: index, host: host, port: port))
    }

    /// Sends the queued requests one at a time, the one in flight retried
    /// with the same arguments until the server answers.
    func stepListens() {
        while !isDead {
            guard let request = listenInFlight ?? (listenQueue.isEmpty ? nil : listenQueue.removeFirst()) else { return }
            listenInFlight = request
            let result: IOResult<SSHListener>
            do {
                result = try session.listen(host: request.host, port: request.port)
            } catch {
                listenInFlight = nil
                // libssh2 1.10 reports a socket failure while waiting for the
                // answer as a protocol error: the socket's own state tells.
                if let loss = session.connectionLoss { return die(loss.description) }
                switch error {
                case .refused:
                    onListenAnswer(request.index, .refused)
                case .failed(let failure):
                    if failure.isTransportFailure { return die(session.lossReason(failure)) }
                    onListenAnswer(request.index, .failed(failure.message))
                }
                continue
            }
            guard case .done(let listener) = result else { return }
            listenInFlight = nil
            remoteListeners[request.index] = listener
            onListenAnswer(request.index, .listening(port: listener.port))
        }
    }

    /// Takes every forwarded-tcpip channel the server opened and starts
    /// connecting each to its target here.
    func acceptForwarded() {
        for (index, listener) in remoteListeners {
            while !isDead, case .done(let channel) = listener.accept() {
                let target = remoteTargets[index]
                target.stats.total.add(1, ordering: .relaxed)
                target.stats.active.add(1, ordering: .relaxed)
                onClientStarted()
                dial(channel, target: target, listener: listener)
            }
        }
    }

    private func dial(_ channel: SSHChannel, target: ChannelTarget, listener: SSHListener) {
        guard let dialer else { return refuse(channel, target: target, listener: listener, reason: "the link is closing") }
        var key: ObjectIdentifier?
        let attempt = dialer.dial(host: target.host, port: target.port) { [unowned self] result in
            guard let key, self.dialing.removeValue(forKey: key) != nil else {
                if case .success(let socket) = result { socket.close() }
                return
            }
            switch result {
            case .success(let socket):
                let c = Connection(socket: socket, peer: nil, target: target, acceptedAt: Instant.now())
                c.channel = channel
                c.phase = .pumping
                self.track(c)
            case .failure(let failure):
                self.refuse(channel, target: target, listener: listener, reason: failure.message)
            }
        }
        key = ObjectIdentifier(attempt)
        dialing[ObjectIdentifier(attempt)] = (attempt, channel, target)
    }

    /// The target here cannot be reached: the server's client sees its
    /// connection closed (libssh2 confirmed the channel before we could try).
    private func refuse(_ channel: SSHChannel, target: ChannelTarget, listener: SSHListener, reason: String) {
        let host = listener.host.contains(":") ? "[\(listener.host)]" : listener.host
        logger.warning("remote \(host):\(listener.port): cannot connect to \(target.description) here: \(reason); closing the forwarded connection")
        _ = try? channel.close()
        channel.free()
        target.stats.active.subtract(1, ordering: .relaxed)
        onClientFinished()
    }

    /// Ends the remote side with the link: connections still being connected
    /// here are dropped; on a graceful close the server is told to stop
    /// listening first (it would anyway once the session ends).
    func closeRemote(graceful: Bool) {
        for entry in dialing.values {
            entry.attempt.cancel()
            _ = try? entry.channel.close()
            entry.channel.free()
            entry.target.stats.active.subtract(1, ordering: .relaxed)
            onClientFinished()
        }
        dialing.removeAll()
        if graceful && !session.isClosed && session.connectionLoss == nil {
            for listener in remoteListeners.values { _ = try? listener.cancel() }
        }
        remoteListeners.removeAll()
        listenQueue.removeAll()
        listenInFlight = nil
        dialer = nil
    }
}
