import Glibc

/// Checks an ssh-agent socket before it is trusted with signing: a socket
/// path saved earlier may since have been replaced by another user's.
public enum AgentSocket {
    /// Why the socket at `path` is not this user's agent; nil when it is.
    /// The path (after symlinks) must be a socket owned by `uid`, and the
    /// process listening on it must run as `uid` or root.
    public static func problem(_ path: String, uid: uid_t = getuid(), timeout: Double = 1) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let errno = Errno.current
            return errno == .noEntry ? "\(path) is gone" : "\(path): \(errno)"
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return "\(path) is not a socket" }
        guard st.st_uid == uid else { return "\(path) belongs to uid \(st.st_uid), not to uid \(uid)" }
        // A socket bound through a relative path can be longer than connect takes.
        guard SocketAddress.unix(path: path).fitsSockaddr else {
            return "\(path) is longer than the \(SocketAddress.maxUnixPathBytes) bytes a socket address holds"
        }
        let socket: Socket
        do { socket = try Socket.unix() } catch { return "\(path): \(error)" }
        defer { socket.close() }
        do {
            guard case .done = try socket.connect(.unix(path: path), until: Instant.now().adding(seconds: timeout)) else {
                return "\(path): the agent did not accept a connection within \(Int(timeout)) s"
            }
            let peer = try socket.peerCredentials()
            guard peer.uid == uid || peer.uid == 0 else {
                return "\(path) is served by uid \(peer.uid) (pid \(peer.pid)), not by uid \(uid) or root"
            }
        } catch {
            return "\(path): \(error.errno)"
        }
        return nil
    }
}
