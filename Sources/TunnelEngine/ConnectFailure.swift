import TunnelPOSIX
import TunnelSSH

/// Why a connection attempt failed, worded for the user.
public struct ConnectFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Equatable, Sendable {
        case doesNotResolve = "does not resolve"
        case refused = "connection refused"
        case timedOut = "timed out"
        case unreachable = "no route to host"
        case network = "network error"
        case hostKey = "host key"
        case authentication = "authentication"
        case ssh = "ssh"
    }
    public let kind: Kind
    public let message: String
    /// Retrying will not fix it (host key, refused keys): do not hammer the server.
    public let isPermanent: Bool
    /// For a host-key failure: what was wrong with the key.
    public var hostKeyProblem: HostKeyFailure.Kind?
    /// For an authentication failure: causes with a known fix.
    public var authFindings: Set<AuthFinding> = []
    public var description: String { message }

    public init(kind: Kind, message: String, isPermanent: Bool, hostKeyProblem: HostKeyFailure.Kind? = nil, authFindings: Set<AuthFinding> = []) {
        self.kind = kind
        self.message = message
        self.isPermanent = isPermanent
        self.hostKeyProblem = hostKeyProblem
        self.authFindings = authFindings
    }
}

/// An authenticated session, ready for channels.
public struct ConnectedSession {
    public let session: SSHSession
    /// What the session runs over, for the log: "127.0.0.1:22" or "proxy command (pid 123)".
    public let peer: String
    /// The proxy command carrying the session, if any: it lives as long as the session.
    let proxy: ProxyCommand?
    public let authMethod: String
    public let learnedHostKey: String?
    public let hostKeyFingerprint: String
}

/// Where a connection attempt stands; `tunnel check` reports these as steps.
public enum ConnectProgress: Equatable, Sendable {
    case tcpConnected(SocketAddress)
    case proxyStarted(command: String)
    case hostKeyVerified(fingerprint: String, learnedLine: String?)
    case authenticated(method: String)
}
