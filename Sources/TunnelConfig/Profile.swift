/// What to do with a server host key that is not in known_hosts.
public enum HostKeyPolicy: String, Sendable, Equatable, CaseIterable {
    /// Refuse unknown and changed keys (the default).
    case strict
    /// Record unknown keys on first connect; still refuse changed ones.
    case acceptNew = "accept-new"
}

/// One validated `[tunnels.NAME]` entry, with `[defaults]` and built-in defaults applied.
public struct Profile: Equatable, Sendable {
    public internal(set) var name: String
    public internal(set) var host: String
    public internal(set) var port: UInt16
    public internal(set) var user: String
    /// The first identity file (`identity`, or ssh_config's first IdentityFile);
    /// nil means ssh-agent keys, then the default key files.
    public var identity: String? { login.identities.first }
    public internal(set) var forwards: [ForwardSpec]
    /// `remote`: listeners on the server whose connections come back to
    /// this machine (`ssh -R`).
    public internal(set) var remoteForwards: [RemoteForwardSpec]
    /// Whether it forwards anything at all: every profile must.
    public var hasForwards: Bool { !forwards.isEmpty || !remoteForwards.isEmpty }
    /// The known_hosts file learned keys go to, `~` expanded.
    public var knownHosts: String { login.knownHosts[0] }
    public var hostKey: HostKeyPolicy { login.hostKey }
    /// How the target is logged in to and its host key checked.
    public internal(set) var login: HopLogin
    /// Seconds between keepalives; 0 turns them off.
    public internal(set) var keepalive: Int
    /// The link is dead after keepalive × keepaliveCount seconds with nothing received.
    public internal(set) var keepaliveCount: Int
    /// Seconds for TCP connect, handshake and authentication.
    public internal(set) var connectTimeout: Int
    /// Seconds a client waits for a reconnecting link before it is closed.
    public internal(set) var holdTimeout: Int
    /// `lazy = true`: listeners bind at once, the SSH connection waits for the first client.
    public internal(set) var lazy: Bool
    /// A lazy tunnel closes its SSH connection after this many seconds without a client.
    public internal(set) var idleTimeout: Int
    /// `public = true`: binding non-loopback addresses is allowed.
    public internal(set) var isPublic: Bool
    /// SSH connections the tunnel spreads its clients over (each on its own
    /// thread), so many concurrent clients can use more than one core here
    /// and on the server.
    public internal(set) var sessions: Int
    /// The most SSH connections the tunnel may hold (≥ `sessions`): while
    /// clients queue for a channel, extra connections are opened up to this
    /// many and closed again once idle, because libssh2 opens one channel at
    /// a time per connection.
    public internal(set) var maxSessions: Int
    /// Run through `/bin/sh -c` (%h %p %r %n %% expanded) to reach the
    /// server: its stdin and stdout carry the SSH session, as OpenSSH's
    /// ProxyCommand. nil: a TCP connection to host:port.
    public internal(set) var proxyCommand: String?
    /// Jump hosts (`ssh -J`), first hop first: the session to each next hop
    /// runs inside a channel of the one before. Empty: connect directly.
    public internal(set) var jump: [JumpHop]
    /// Where ssh_config is read from (`ssh_config = "PATH"` or "none").
    public internal(set) var sshConfig: SSHConfigSource
    /// The keys tunnels.toml wrote for it (in the profile or `[defaults]`):
    /// those win over ssh_config. Not part of `==`.
    public internal(set) var written: Set<String>
    /// The `[tunnels.NAME]` header. Not part of `==`, so a reload that only moved
    /// a profile within the file does not count as a change.
    public internal(set) var location: SourceLocation

    /// The documented defaults, in one place for the validator and the tests.
    public enum Defaults {
        public static let port: UInt16 = 22
        public static let knownHosts = "~/.ssh/known_hosts"
        public static let hostKey = HostKeyPolicy.strict
        public static let keepalive = 15
        public static let keepaliveCount = 3
        public static let connectTimeout = 10
        public static let holdTimeout = 10
        public static let idleTimeout = 300
        public static let isPublic = false
        public static let sessions = 1
        /// `max_sessions` when not written: this, or `sessions` if more.
        public static let maxSessions = 4
        /// The upper bound of both `sessions` and `max_sessions`.
        public static let sessionLimit = 8
    }

    /// Mainly for other modules' tests; configs are read with `Config.load`.
    public init(
        name: String,
        host: String,
        port: UInt16 = Defaults.port,
        user: String,
        identity: String? = nil,
        forwards: [ForwardSpec],
        remoteForwards: [RemoteForwardSpec] = [],
        knownHosts: String,
        hostKey: HostKeyPolicy = Defaults.hostKey,
        keepalive: Int = Defaults.keepalive,
        keepaliveCount: Int = Defaults.keepaliveCount,
        connectTimeout: Int = Defaults.connectTimeout,
        holdTimeout: Int = Defaults.holdTimeout,
        lazy: Bool = false,
        idleTimeout: Int = Defaults.idleTimeout,
        isPublic: Bool = Defaults.isPublic,
        sessions: Int = Defaults.sessions,
        maxSessions: Int? = nil,
        proxyCommand: String? = nil,
        jump: [JumpHop] = [],
        sshConfig: SSHConfigSource = .standard,
        written: Set<String> = [],
        location: SourceLocation
    ) {
        self.name = name
        self.host = host
        self.port = port
        self.user = user
        self.login = HopLogin(identities: identity.map { [$0] } ?? [], knownHosts: [knownHosts], hostKey: hostKey)
        self.forwards = forwards
        self.remoteForwards = remoteForwards
        self.keepalive = keepalive
        self.keepaliveCount = keepaliveCount
        self.connectTimeout = connectTimeout
        self.holdTimeout = holdTimeout
        self.lazy = lazy
        self.idleTimeout = idleTimeout
        self.isPublic = isPublic
        self.sessions = sessions
        self.maxSessions = max(maxSessions ?? Defaults.maxSessions, sessions)
        self.proxyCommand = proxyCommand
        self.jump = jump
        self.sshConfig = sshConfig
        self.written = written
        self.location = location
    }

    /// "user@host:port", with an IPv6 host in brackets; through jump hosts,
    /// "root@10.0.2.2:22 via ops@bastion:22".
    public var via: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let target = "\(user)@\(shownHost):\(port)"
        return jump.isEmpty ? target : target + " via " + hops.dropLast().map(\.description).reversed().joined(separator: " via ")
    }

    /// Every hop, the jump hosts first and the target last, each with its
    /// user and login (a hop without its own takes the profile's).
    public var hops: [JumpHop] {
        jump.map { JumpHop(user: $0.user ?? user, host: $0.host, port: $0.port, login: $0.login ?? login) }
            + [JumpHop(user: user, host: host, port: port, login: login)]
    }

    public static func == (a: Profile, b: Profile) -> Bool {
        a.name == b.name && a.host == b.host && a.port == b.port && a.user == b.user
            && a.login == b.login && a.forwards == b.forwards && a.remoteForwards == b.remoteForwards && a.keepalive == b.keepalive && a.keepaliveCount == b.keepaliveCount
            && a.connectTimeout == b.connectTimeout && a.holdTimeout == b.holdTimeout && a.isPublic == b.isPublic
            && a.lazy == b.lazy && a.idleTimeout == b.idleTimeout
            && a.sessions == b.sessions && a.maxSessions == b.maxSessions && a.proxyCommand == b.proxyCommand && a.jump == b.jump && a.sshConfig == b.sshConfig
            // Which keys were written decides what ssh_config may fill in.
            && a.written == b.written
    }
}

/// Where the keys for logging in come from.
public enum IdentityAgent: Equatable, Sendable {
    /// SSH_AUTH_SOCK as the command that started the tunnel had it.
    case inherited
    /// IdentityAgent none: no agent.
    case none
    case socket(String)
}

/// ssh_config's AddressFamily.
public enum AddressFamily: String, Equatable, Sendable {
    case any
    /// IPv4 only.
    case inet
    /// IPv6 only.
    case inet6
}

/// How one hop logs in and checks its host key: the profile's keys, or what
/// ssh_config says for that hop's own name.
public struct HopLogin: Equatable, Sendable {
    /// Identity files in the order tried, `~` expanded; empty: the agent's
    /// keys, then the default key files.
    public var identities: [String]
    /// IdentitiesOnly: agent keys are used only when they are one of `identities`.
    public var identitiesOnly = false
    /// ssh_config's CertificateFile: each is offered with the identity file
    /// whose key it certifies.
    public var certificates: [String] = []
    public var agent = IdentityAgent.inherited
    /// Read in order; learned keys go to the first. Never empty.
    public var knownHosts: [String]
    /// HostKeyAlias: the name looked up and recorded in known_hosts instead of
    /// host and port.
    public var hostKeyAlias: String?
    public var hostKey: HostKeyPolicy
    /// HashKnownHosts: learned keys are written under a hashed name.
    public var hashKnownHosts = false
    /// ssh_config's Ciphers and MACs, in its order; nil: tunnel's own.
    public var ciphers: [String]?
    public var macs: [String]?
    /// ssh_config's AddressFamily: which of the server's addresses are tried.
    public var addressFamily = AddressFamily.any

    public init(identities: [String], knownHosts: [String], hostKey: HostKeyPolicy) {
        precondition(!knownHosts.isEmpty)
        self.identities = identities
        self.knownHosts = knownHosts
        self.hostKey = hostKey
    }
}
