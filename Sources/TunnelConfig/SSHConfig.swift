import TunnelPOSIX

/// What OpenSSH's own configuration says about a host, as `ssh -G` resolves
/// it (Include, Match, Host patterns, %-tokens and canonicalisation exactly
/// as ssh sees them): tunnel writes no ssh_config parser.
public struct SSHConfigEntry: Equatable, Sendable {
    /// Keyword (lower case) → values in the order `ssh -G` printed them
    /// (IdentityFile and the like repeat).
    public let values: [String: [String]]
    /// Keywords whose value differs from what `ssh -F /dev/null -G` prints
    /// for the same host: set by a config file, not ssh's built-in default.
    /// Only these override tunnel's own defaults.
    public let explicit: Set<String>

    public init(values: [String: [String]], explicit: Set<String>) {
        self.values = values
        self.explicit = explicit
    }

    /// The value of a keyword a config file set, or nil.
    public func setting(_ key: String) -> String? { explicit.contains(key) ? values[key]?.first : nil }
    public func settings(_ key: String) -> [String] { explicit.contains(key) ? values[key] ?? [] : [] }

    /// `ssh -G` output as keyword → values.
    static func parse(_ output: String) -> [String: [String]] {
        var values: [String: [String]] = [:]
        for line in output.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            values[line[..<space].lowercased(), default: []].append(String(line[line.index(after: space)...]))
        }
        return values
    }

    /// Which keywords `configured` sets beyond `baseline`.
    static func explicitKeys(_ configured: [String: [String]], over baseline: [String: [String]]) -> Set<String> {
        Set(configured.compactMap { key, value in baseline[key] == value ? nil : key })
    }
}

/// Where ssh_config comes from: `ssh_config` in `[defaults]`.
public enum SSHConfigSource: Equatable, Sendable {
    /// ssh's own files (~/.ssh/config, /etc/ssh/ssh_config).
    case standard
    /// `ssh -F PATH`.
    case file(String)
    /// `ssh_config = "none"`: not consulted.
    case none
}

public struct SSHConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public enum SSHConfigLookup {
    /// `ssh -G` for `host`; nil when not consulted, or when ssh is not
    /// installed (plain profiles need it not; an alias then fails to resolve,
    /// and the connect error says what to install).
    public static func query(_ host: String, source: SSHConfigSource, timeout: Double = 5) throws(SSHConfigError) -> SSHConfigEntry? {
        if source == .none { return nil }
        guard let ssh = ProcessControl.which("ssh") else { return nil }
        guard !host.hasPrefix("-"), !host.contains(where: { $0.isWhitespace }) else {
            throw SSHConfigError(message: "\(host) is not a host name ssh -G can look up")
        }
        let config: [String] = if case .file(let path) = source { ["-F", path] } else { [] }
        guard let configured = ProcessControl.capture(ssh, config + ["-G", host], timeout: timeout),
              let baseline = ProcessControl.capture(ssh, ["-F", "/dev/null", "-G", host], timeout: timeout) else {
            throw SSHConfigError(message: "ssh -G \(host) did not answer within \(Int(timeout)) s")
        }
        guard configured.status == 0 else {
            let which = if case .file(let path) = source { path } else { "~/.ssh/config or /etc/ssh/ssh_config" }
            throw SSHConfigError(message: "ssh -G \(host) failed (status \(configured.status)): check \(which) with `ssh -G \(host)`")
        }
        let values = SSHConfigEntry.parse(configured.output)
        return SSHConfigEntry(values: values, explicit: SSHConfigEntry.explicitKeys(values, over: SSHConfigEntry.parse(baseline.output)))
    }
}

extension Profile {
    /// This profile with what ssh_config says about its host filled in where
    /// the profile (or `[defaults]`) wrote nothing: a key written in
    /// tunnels.toml wins, then ssh_config, then tunnel's own default. Jump
    /// hosts from ProxyJump are resolved on their own names, as ssh does.
    /// `notes` are worth a log line.
    public func applyingSSHConfig(_ source: SSHConfigSource, home: String) throws(SSHConfigError) -> (profile: Profile, notes: [String]) {
        guard let entry = try SSHConfigLookup.query(host, source: source) else { return (self, []) }
        var notes: [String] = []
        func unwritten(_ key: String) -> Bool { !written.contains(key) }
        func expand(_ path: String) -> String { path.hasPrefix("~/") ? home + path.dropFirst() : path }

        var hostKey = self.hostKey
        if unwritten("host_key"), let strict = entry.setting("stricthostkeychecking") {
            switch strict.lowercased() {
            case "accept-new": hostKey = .acceptNew
            case "no", "false", "off":
                hostKey = .acceptNew
                notes.append("ssh_config says StrictHostKeyChecking \(strict) for \(host): tunnel records unknown host keys (accept-new) but still refuses changed ones")
            default: hostKey = .strict
            }
        }
        let identity = unwritten("identity")
            ? entry.settings("identityfile").map(expand).first { Files.exists($0) } ?? self.identity
            : self.identity
        let knownHosts = unwritten("known_hosts")
            ? entry.setting("userknownhostsfile").flatMap { $0.split(separator: " ").first.map { expand(String($0)) } } ?? self.knownHosts
            : self.knownHosts
        var proxyCommand = self.proxyCommand
        var jump = self.jump
        if unwritten("jump") && unwritten("proxy_command") {
            if let command = entry.setting("proxycommand"), command != "none" { proxyCommand = command }
            if let hops = entry.setting("proxyjump"), hops != "none" {
                jump = []
                for text in hops.split(separator: ",") {
                    let hop: JumpHop
                    do { hop = try JumpHop.parse(String(text)) } catch {
                        throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(error)")
                    }
                    // Each hop on its own name, as ssh does.
                    let hopEntry = try SSHConfigLookup.query(hop.host, source: source)
                    jump.append(JumpHop(user: hop.user ?? hopEntry?.setting("user"),
                                        host: hopEntry?.setting("hostname") ?? hop.host,
                                        port: text.contains(":") ? hop.port : hopEntry?.setting("port").flatMap { UInt16($0) } ?? hop.port))
                }
            }
        }
        let resolved = Profile(
            name: name,
            host: entry.setting("hostname") ?? host,
            port: unwritten("port") ? entry.setting("port").flatMap { UInt16($0) } ?? port : port,
            user: unwritten("user") ? entry.setting("user") ?? user : user,
            identity: identity,
            forwards: forwards,
            knownHosts: knownHosts,
            hostKey: hostKey,
            keepalive: unwritten("keepalive") ? entry.setting("serveraliveinterval").flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? keepalive : keepalive,
            keepaliveCount: unwritten("keepalive_count") ? entry.setting("serveralivecountmax").flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? keepaliveCount : keepaliveCount,
            connectTimeout: unwritten("connect_timeout") ? entry.setting("connecttimeout").flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? connectTimeout : connectTimeout,
            holdTimeout: holdTimeout,
            isPublic: isPublic,
            sessions: sessions,
            maxSessions: maxSessions,
            proxyCommand: proxyCommand,
            jump: jump,
            sshConfig: sshConfig,
            written: written,
            location: location)
        if resolved.jump.count >= JumpHop.maxHops {
            throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(resolved.jump.count) jump hosts; a chain has at most \(JumpHop.maxHops) hops")
        }
        if resolved != self { notes.insert("\(name): ssh_config for \(host): \(resolved.via)", at: 0) }
        return (resolved, notes)
    }
}
