/// One direction of a forwarded connection (local→channel or channel→local).
///
/// Bytes read from the source are delivered to the sink before the source's
/// end of stream is passed on: `open` → (source EOF with bytes pending)
/// `draining` → (pending bytes delivered) `closed` + propagate EOF. With
/// nothing pending, EOF propagates at once. `abort` ends it without EOF.
public struct Direction: Equatable, Sendable {
    public enum State: Equatable, Sendable {
        case open
        case draining
        case closed
    }

    public enum Action: Equatable, Sendable {
        case none
        /// Send EOF to the sink: `send_eof` on the channel, or `shutdown(SHUT_WR)` on the socket.
        case propagateEOF
    }

    public private(set) var state: State = .open

    public init() {}

    public var isOpen: Bool { state == .open }
    public var isClosed: Bool { state == .closed }

    /// The source reported end of stream.
    public mutating func sourceEnded(pendingBytes: Int) -> Action {
        switch state {
        case .open:
            if pendingBytes == 0 {
                state = .closed
                return .propagateEOF
            }
            state = .draining
            return .none
        case .draining, .closed:
            return .none
        }
    }

    /// The pending bytes reached the sink.
    public mutating func flushed() -> Action {
        switch state {
        case .draining:
            state = .closed
            return .propagateEOF
        case .open, .closed:
            return .none
        }
    }

    /// An error on either side: no EOF is passed on.
    public mutating func abort() {
        state = .closed
    }
}
