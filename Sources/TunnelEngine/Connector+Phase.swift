extension Connector {
    /// Still resolving or in TCP connect: nothing the server holds is lost by
    /// starting over (the network may have just changed under the attempt).
    var isBeforeTCPConnected: Bool {
        switch phase {
        case .idle, .resolving, .connecting: return true
        case .readingKnownHosts, .handshaking, .authenticating, .finished: return false
        }
    }
}
