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

extension SSHConfigEntry {
    /// How this host logs in by ssh_config, over `base` for what it does not
    /// set; the profile keys in `written` keep `base`'s value.
    func login(over base: HopLogin, written: Set<String>, host: String, user: String, home: String,
               notes: inout [String]) throws(SSHConfigError) -> HopLogin {
        var login = base
        if !written.contains("identity") {
            let files = try settings("identityfile").map { path throws(SSHConfigError) in
                try SSHConfigEntry.expandTokens(path, keyword: "IdentityFile", host: host, user: user, home: home)
            }
            if !files.isEmpty { login.identities = files }
        }
        if let only = setting("identitiesonly") { login.identitiesOnly = only == "yes" }
        if let agent = setting("identityagent") {
            switch agent {
            case "none": login.agent = .none
            case "SSH_AUTH_SOCK", "$SSH_AUTH_SOCK", "${SSH_AUTH_SOCK}": login.agent = .inherited
            default:
                guard !agent.hasPrefix("$") else {
                    throw SSHConfigError(message: "IdentityAgent \(agent) for \(host) in ssh_config: tunnel takes a socket path, SSH_AUTH_SOCK or none")
                }
                login.agent = .socket(try SSHConfigEntry.expandTokens(agent, keyword: "IdentityAgent", host: host, user: user, home: home))
            }
        }
        if !written.contains("known_hosts"), let files = setting("userknownhostsfile") {
            let paths = files.split(separator: " ").map { $0.hasPrefix("~/") ? home + $0.dropFirst() : String($0) }
            if !paths.isEmpty { login.knownHosts = paths }
        }
        if !written.contains("host_key"), let strict = setting("stricthostkeychecking") {
            switch strict.lowercased() {
            case "accept-new": login.hostKey = .acceptNew
            case "no", "false", "off":
                login.hostKey = .acceptNew
                notes.append("ssh_config says StrictHostKeyChecking \(strict) for \(host): tunnel records unknown host keys (accept-new) but still refuses changed ones")
            default: login.hostKey = .strict
            }
        }
        if let alias = setting("hostkeyalias") { login.hostKeyAlias = alias }
        if let hashed = setting("hashknownhosts") { login.hashKnownHosts = hashed == "yes" }
        if let ciphers = setting("ciphers") { login.ciphers = ciphers.split(separator: ",").map(String.init) }
        if let macs = setting("macs") { login.macs = macs.split(separator: ",").map(String.init) }
        return login
    }

    /// ssh_config's %-tokens in IdentityFile and IdentityAgent (`ssh -G`
    /// prints those unexpanded), and a leading `~/`.
    static func expandTokens(_ text: String, keyword: String, host: String, user: String, home: String) throws(SSHConfigError) -> String {
        var out = ""
        var chars = text.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { out.append(c); continue }
            switch chars.next() {
            case "%": out += "%"
            case "d": out += home
            case "h": out += host
            case "r": out += user
            case "u": out += System.userName([:])
            case "i": out += String(System.userID)
            case let other:
                throw SSHConfigError(message: "\(keyword) \(text) in ssh_config: tunnel expands %d %h %r %u %i %% there, not %\(other.map(String.init) ?? "")")
            }
        }
        return out.hasPrefix("~/") ? home + out.dropFirst() : out
    }
}

extension HopLogin {
    /// The ssh_config keywords that make `self` differ from `base`, for the log.
    func keywordsChanged(from base: HopLogin) -> [String] {
        [("IdentityFile", identities != base.identities), ("IdentitiesOnly", identitiesOnly != base.identitiesOnly),
         ("IdentityAgent", agent != base.agent), ("UserKnownHostsFile", knownHosts != base.knownHosts),
         ("HostKeyAlias", hostKeyAlias != base.hostKeyAlias), ("StrictHostKeyChecking", hostKey != base.hostKey),
         ("HashKnownHosts", hashKnownHosts != base.hashKnownHosts), ("Ciphers", ciphers != base.ciphers), ("MACs", macs != base.macs)]
            .filter(\.1).map(\.0)
    }
}

extension SSHConfigEntry {
    /// LocalForward and DynamicForward, for a profile that writes no forward.
    func forwards(for host: String, publicAllowed: Bool) throws(SSHConfigError) -> [ForwardSpec] {
        var specs: [ForwardSpec] = []
        for text in AdHocTunnel.forwards(fromLocalForward: settings("localforward")) {
            do { specs.append(try ForwardSpec.parse(text)) } catch { throw SSHConfigError(message: "LocalForward for \(host) in ssh_config: \(error.text)") }
        }
        for text in AdHocTunnel.forwards(fromDynamicForward: settings("dynamicforward")) {
            do { specs.append(try ForwardSpec.parseDynamic(text)) } catch { throw SSHConfigError(message: "DynamicForward for \(host) in ssh_config: \(error.text)") }
        }
        if !publicAllowed, let spec = specs.first(where: \.isPublic) {
            throw SSHConfigError(message: "\(spec.kind == .dynamic ? "DynamicForward" : "LocalForward") \(spec.text) for \(host) in ssh_config binds a non-loopback address; set public = true in the profile to allow it")
        }
        for (i, spec) in specs.enumerated() where specs[..<i].contains(where: { $0.collides(with: spec) }) {
            throw SSHConfigError(message: "ssh_config for \(host) forwards \(spec.localDescription) twice")
        }
        return specs
    }
}

extension Profile {
    /// ssh_config's RemoteForward lines for this host, for a profile that
    /// writes no `remote`. The forms tunnel does not serve (a remote SOCKS
    /// proxy, Unix sockets), a non-loopback bind without `public = true` and
    /// a second forward asking for the same address are left out with a note.
    func remoteForwards(from entry: SSHConfigEntry, notes: inout [String]) -> [RemoteForwardSpec] {
        let values = entry.settings("remoteforward")
        var specs: [RemoteForwardSpec] = []
        for (value, text) in zip(values, AdHocTunnel.forwards(fromRemoteForward: values)) {
            let spec: RemoteForwardSpec
            do throws(RemoteForwardSpecError) { spec = try RemoteForwardSpec.parse(text) } catch {
                notes.append("\(name): ssh_config's RemoteForward \(value) for \(host) left out: \(error.reason)")
                continue
            }
            if spec.isPublic && !isPublic {
                notes.append("\(name): ssh_config's RemoteForward \(value) for \(host) left out: it asks the server to listen on \(spec.bind), which needs public = true")
            } else if let earlier = specs.first(where: { $0.collides(with: spec) }) {
                notes.append("\(name): ssh_config's RemoteForward \(value) for \(host) left out: it asks for the same address as \(earlier.text)")
            } else {
                specs.append(spec)
            }
        }
        return specs
    }

    /// This profile with what ssh_config says about its host filled in where
    /// the profile (or `[defaults]`) wrote nothing: a key written in
    /// tunnels.toml wins, then ssh_config, then tunnel's own default. Each
    /// jump host, from the profile's `jump` or from ProxyJump, is looked up on
    /// its own name, as ssh does, and logs in as ssh_config says for it (the
    /// profile's keys where it says nothing). `notes` are worth a log line.
    public func applyingSSHConfig(_ source: SSHConfigSource, home: String) throws(SSHConfigError) -> (profile: Profile, notes: [String]) {
        // A profile without forwards is pointed at by its own header.
        let header = location.line > 0 ? "\(location): " : ""
        guard let entry = try SSHConfigLookup.query(host, source: source) else {
            if !hasForwards { throw SSHConfigError(message: header + "no forward: the profile writes no forward, dynamic or remote, and ssh_config is not read (\(source == .none ? "ssh_config = \"none\"" : "ssh is not installed"))") }
            return (self, [])
        }
        var notes: [String] = []
        func unwritten(_ key: String) -> Bool { !written.contains(key) }
        func positive(_ key: String) -> Int? { entry.setting(key).flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } }

        var resolved = self
        if forwards.isEmpty {
            do { resolved.forwards = try entry.forwards(for: host, publicAllowed: isPublic) } catch { throw SSHConfigError(message: header + error.message) }
        }
        resolved.host = entry.setting("hostname") ?? host
        if unwritten("port"), let port = entry.setting("port").flatMap({ UInt16($0) }) { resolved.port = port }
        if unwritten("user"), let user = entry.setting("user") { resolved.user = user }
        resolved.login = try entry.login(over: login, written: written, host: resolved.host, user: resolved.user, home: home, notes: &notes)
        if unwritten("keepalive"), let seconds = positive("serveraliveinterval") { resolved.keepalive = seconds }
        if unwritten("keepalive_count"), let count = positive("serveralivecountmax") { resolved.keepaliveCount = count }
        if unwritten("connect_timeout"), let seconds = positive("connecttimeout") { resolved.connectTimeout = seconds }
        if unwritten("remote") { resolved.remoteForwards = remoteForwards(from: entry, notes: &notes) }
        guard resolved.hasForwards else {
            throw SSHConfigError(message: header + "no forward: the profile writes no forward, dynamic or remote, and ssh_config has no LocalForward, DynamicForward or RemoteForward for \(host)")
        }

        var hopsToResolve: [JumpHop] = []
        if !jump.isEmpty {
            hopsToResolve = jump
        } else if unwritten("jump") && unwritten("proxy_command") {
            if let command = entry.setting("proxycommand"), command != "none" { resolved.proxyCommand = command }
            if let hops = entry.setting("proxyjump"), hops != "none" {
                for text in hops.split(separator: ",") {
                    do { hopsToResolve.append(try JumpHop.parse(String(text))) } catch {
                        throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(error)")
                    }
                }
            }
        }
        if !hopsToResolve.isEmpty {
            resolved.jump = try hopsToResolve.map { hop throws(SSHConfigError) in
                // Each hop on its own name, as ssh does.
                guard let hopEntry = try SSHConfigLookup.query(hop.host, source: source) else { return hop }
                let user = hop.user ?? hopEntry.setting("user")
                let host = hopEntry.setting("hostname") ?? hop.host
                let port = hop.portIsExplicit ? hop.port : hopEntry.setting("port").flatMap { UInt16($0) } ?? hop.port
                let login = try hopEntry.login(over: resolved.login, written: [], host: host, user: user ?? resolved.user, home: home, notes: &notes)
                return JumpHop(user: user, host: host, port: port, login: login == resolved.login ? nil : login)
            }
        }
        if resolved.jump.count >= JumpHop.maxHops {
            throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(resolved.jump.count) jump hosts; a chain has at most \(JumpHop.maxHops) hops")
        }
        let chain = resolved.hops
        for (i, hop) in chain.enumerated() {
            if let earlier = chain[..<i].first(where: { $0.host.lowercased() == hop.host.lowercased() && $0.port == hop.port }) {
                throw SSHConfigError(message: "\(name): ssh_config makes the chain \(resolved.via) reach \(earlier.host):\(earlier.port) twice: it would loop")
            }
        }
        if resolved != self {
            let keywords = resolved.login.keywordsChanged(from: login)
            notes.insert("\(name): ssh_config for \(host): \(resolved.via)" + (keywords.isEmpty ? "" : " (\(keywords.joined(separator: ", ")))"), at: 0)
        }
        return (resolved, notes)
    }
}
