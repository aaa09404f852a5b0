import TunnelPOSIX

extension SSHSession {
    /// Both ends of the session's socket: nil where it is not TCP (a proxy
    /// command's or a jump host's socketpair) or no longer connected.
    public var endpoints: (local: SocketAddress?, peer: SocketAddress?) {
        func tcp(_ address: SocketAddress?) -> SocketAddress? {
            if case .unix = address { return nil }
            return address
        }
        return (tcp(try? transport.socket.localAddress()), tcp(try? transport.socket.peerAddress()))
    }
}
