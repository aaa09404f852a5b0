import TunnelPOSIX
import TunnelSSH

/// Moves bytes for the connections of one link.
struct Pump {
    let session: SSHSession
    let scratch: UnsafeMutableRawPointer
    let scratchSize: Int

    enum Failure: Error {
        /// The local socket failed: this connection ends.
        case local(SystemError)
        /// The channel failed: this connection ends; the session may be dead too.
        case channel(SSHError)
    }

    // MARK: local → channel

    /// Reads the local socket into the channel until the socket is empty, the
    /// peer's window closes, or the session's outbound queue is full.
    func pumpUp(_ c: Connection) throws(Failure) {
        guard let channel = c.channel, !c.up.isClosed else { return }
        c.upWait = .none
        // What the channel did not take last time goes first.
        while !c.upPending.isEmpty {
            if session.isSendQueueFull { c.upWait = .session; return }
            let result: SSHChannel.WriteResult
            do { result = try channel.write(c.upPending.readable!, count: c.upPending.count) } catch { throw .channel(error) }
            switch result {
            case .wrote(let n): c.upPending.consume(n)
            case .mustWait: c.upWait = .window; return
            }
        }
        if c.up.state == .draining {
            if c.up.flushed() == .propagateEOF { try sendEOF(c) }
            return
        }
        while c.up.isOpen {
            if session.isSendQueueFull { c.upWait = .session; return }
            let window = channel.writeWindow
            if window <= 0 { c.upWait = .window; return }
            let wanted = min(window, scratchSize)
            let received: IOResult<Int>
            do { received = try c.socket.recv(into: scratch, count: wanted) } catch { throw .local(error) }
            guard case .done(let n) = received else { return }
            if n == 0 {
                if c.up.sourceEnded(pendingBytes: 0) == .propagateEOF { try sendEOF(c) }
                return
            }
            c.target.stats.bytesOut.add(UInt64(n), ordering: .relaxed)
            var offset = 0
            while offset < n {
                let result: SSHChannel.WriteResult
                do { result = try channel.write(scratch + offset, count: n - offset) } catch { throw .channel(error) }
                switch result {
                case .wrote(let k):
                    offset += k
                case .mustWait:
                    c.upPending.append(scratch + offset, count: n - offset)
                    c.upWait = .window
                    return
                }
            }
            // A short read emptied the socket; level-triggered epoll reports
            // more, so skip the recv that would only say EAGAIN.
            if n < wanted { return }
        }
    }

    func sendEOF(_ c: Connection) throws(Failure) {
        guard let channel = c.channel else { return }
        do {
            c.eofOwed = !(try channel.sendEOF())
        } catch {
            throw .channel(error)
        }
    }

    // MARK: channel → local

    /// Moves what libssh2 has queued for the channel to the local socket until
    /// the queue is empty or the socket is full; passes EOF on once flushed.
    func pumpDown(_ c: Connection) throws(Failure) {
        guard let channel = c.channel, !c.down.isClosed else { return }
        if !c.downPending.isEmpty {
            let sent: IOResult<Int>
            do { sent = try c.socket.send(c.downPending.readable!, count: c.downPending.count) } catch { throw .local(error) }
            if case .done(let n) = sent { c.downPending.consume(n) }
            if !c.downPending.isEmpty { return }
        }
        if c.down.state == .draining {
            if c.down.flushed() == .propagateEOF { c.endDownstream() }
            return
        }
        while c.down.isOpen {
            let result: SSHChannel.ReadResult
            do { result = try channel.read(into: scratch, capacity: scratchSize) } catch { throw .channel(error) }
            switch result {
            case .wouldBlock:
                return
            case .eof:
                if c.down.sourceEnded(pendingBytes: 0) == .propagateEOF { c.endDownstream() }
                return
            case .data(let n):
                c.target.stats.bytesIn.add(UInt64(n), ordering: .relaxed)
                let sent: IOResult<Int>
                do { sent = try c.socket.send(scratch, count: n) } catch { throw .local(error) }
                let k: Int
                if case .done(let m) = sent { k = m } else { k = 0 }
                if k < n {
                    c.downPending.append(scratch + k, count: n - k)
                    return
                }
            }
        }
    }
}

/// A lane's byte-pump buffer, shared by its link's connections.
final class Scratch {
    let pointer: UnsafeMutableRawPointer
    let size: Int
    init(size: Int) {
        self.size = size
        pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    }
    deinit { pointer.deallocate() }
}
