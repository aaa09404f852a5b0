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
    public init(message: String) { self.message = message }
}

public enum SSHConfigLookup {
    /// `ssh -G` for `host`; nil when not consulted, or when ssh is not
    /// installed (plain profiles need it not; an alias then fails to resolve,
    /// and the connect error says what to install).
    /// `user` and `port`, when given, go to ssh as `-l` and `-p`, as `ssh
    /// user@host -p port` would: `Match user`, `%r` and `%p` then see them.
    public static func query(_ host: String, source: SSHConfigSource, user: String? = nil, port: UInt16? = nil,
                             timeout: Double = 5) throws(SSHConfigError) -> SSHConfigEntry? {
        if source == .none { return nil }
        guard let ssh = ProcessControl.which("ssh") else { return nil }
        guard !host.hasPrefix("-"), !host.contains(where: { $0.isWhitespace }) else {
            throw SSHConfigError(message: "\(host) is not a host name ssh -G can look up")
        }
        if let user, user.hasPrefix("-") || user.contains(where: { $0.isWhitespace }) {
            throw SSHConfigError(message: "\(user) is not a user name ssh -G can look up")
        }
        let config: [String] = if case .file(let path) = source { ["-F", path] } else { [] }
        let login = (user.map { ["-l", $0] } ?? []) + (port.map { ["-p", String($0)] } ?? [])
        guard let configured = ProcessControl.capture(ssh, config + login + ["-G", host], timeout: timeout),
              let baseline = ProcessControl.capture(ssh, ["-F", "/dev/null"] + login + ["-G", host], timeout: timeout) else {
            throw SSHConfigError(message: "ssh -G \(host) did not answer within \(Int(timeout)) s")
        }
        guard configured.status == 0 else {
            // Once more for ssh's own words, which name the file and line.
            let said = ProcessControl.capture(ssh, config + login + ["-G", host], timeout: timeout, withStderr: true)?.output
                .split(whereSeparator: \.isNewline).first { !$0.isEmpty && !$0.hasPrefix("Pseudo-terminal") }
            let command = (["ssh"] + config + login + ["-G", host]).joined(separator: " ")
            throw SSHConfigError(message: said.map { "ssh_config: \($0) (`\(command)` failed)" } ?? "`\(command)` failed (status \(configured.status))")
        }
        let values = SSHConfigEntry.parse(configured.output)
        return SSHConfigEntry(values: values, explicit: SSHConfigEntry.explicitKeys(values, over: SSHConfigEntry.parse(baseline.output)))
    }
}

extension SSHConfigEntry {
    /// How this host logs in by ssh_config, over `base` for what it does not
    /// set; the profile keys in `written` keep `base`'s value.
    /// `alias`: the name as given (ssh's %n); `port`: where it logs in (%p).
    func login(over base: HopLogin, written: Set<String>, host: String, user: String, home: String,
               alias: String? = nil, port: UInt16? = nil, notes: inout [String]) throws(SSHConfigError) -> HopLogin {
        var login = base
        let tokens = Tokens(host: host, user: user, home: home, alias: alias, port: port,
                            hostKeyAlias: setting("hostkeyalias"), proxyJump: setting("proxyjump").map { $0 == "none" ? "" : $0 } ?? "")
        if !written.contains("identity") {
            let files = try settings("identityfile").map { path throws(SSHConfigError) in
                try SSHConfigEntry.expandTokens(path, keyword: "IdentityFile", tokens)
            }
            if !files.isEmpty { login.identities = files }
        }
        let certificates = try settings("certificatefile").map { path throws(SSHConfigError) in
            try SSHConfigEntry.expandTokens(path, keyword: "CertificateFile", tokens)
        }
        if !certificates.isEmpty { login.certificates = certificates }
        if let only = setting("identitiesonly") { login.identitiesOnly = only == "yes" }
        if let agent = setting("identityagent") {
            switch agent {
            case "none": login.agent = .none
            case "SSH_AUTH_SOCK", "$SSH_AUTH_SOCK", "${SSH_AUTH_SOCK}": login.agent = .inherited
            default:
                guard !agent.hasPrefix("$") else {
                    throw SSHConfigError(message: "IdentityAgent \(agent) for \(host) in ssh_config: tunnel takes a socket path, SSH_AUTH_SOCK or none")
                }
                // ssh -G has already expanded its %-tokens (unlike IdentityFile's): a "%" left is part of the path.
                login.agent = .socket(SSHConfigEntry.expandUserHome(agent, home: home))
            }
        }
        if !written.contains("known_hosts"), let files = setting("userknownhostsfile") {
            let paths = try SSHConfigEntry.knownHostsFiles(files, host: host, home: home)
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
        if login.knownHosts == ["/dev/null"] && login.hostKey == .acceptNew {
            notes.append("ssh_config keeps no known_hosts for \(host) (/dev/null) and accepts new keys: its host key is not checked")
        }
        if let alias = setting("hostkeyalias") { login.hostKeyAlias = alias }
        if let hashed = setting("hashknownhosts") { login.hashKnownHosts = hashed == "yes" }
        if let ciphers = setting("ciphers") { login.ciphers = ciphers.split(separator: ",").map(String.init) }
        if let macs = setting("macs") { login.macs = macs.split(separator: ",").map(String.init) }
        if let family = setting("addressfamily") { login.addressFamily = AddressFamily(rawValue: family.lowercased()) ?? .any }
        return login
    }

    /// UserKnownHostsFile as `ssh -G` prints it: the files joined by spaces,
    /// each already absolute, so a word that does not start a path (`/` or
    /// `~`) continues the one before (a path with spaces in it). `none`
    /// (no user file) and relative paths (relative to whatever directory the
    /// supervisor runs in) are refused rather than guessed at.
    static func knownHostsFiles(_ printed: String, host: String, home: String) throws(SSHConfigError) -> [String] {
        if printed == "none" {
            throw SSHConfigError(message: "UserKnownHostsFile none for \(host) in ssh_config: tunnel needs a known_hosts file to check the host key against; name one (or /dev/null to keep none)")
        }
        var paths: [String] = []
        for word in printed.split(separator: " ") {
            if word.hasPrefix("/") || word.hasPrefix("~") || paths.isEmpty {
                paths.append(String(word))
            } else {
                paths[paths.count - 1] += " " + word
            }
        }
        return try paths.map { path throws(SSHConfigError) in
            let expanded = expandUserHome(path, home: home)
            guard expanded.hasPrefix("/") else {
                throw SSHConfigError(message: "UserKnownHostsFile \(path) for \(host) in ssh_config: not an absolute path (the supervisor has no working directory of yours); write it from / or ~/")
            }
            return expanded
        }
    }

    /// `~/…` with `home`, `~name/…` with that user's home directory, as ssh
    /// expands them; anything else unchanged.
    static func expandUserHome(_ path: String, home: String) -> String {
        guard path.hasPrefix("~") else { return path }
        let slash = path.firstIndex(of: "/") ?? path.endIndex
        let name = path[path.index(after: path.startIndex)..<slash]
        if name.isEmpty { return home + path[slash...] }
        guard let directory = System.homeDirectory(ofUser: String(name)) else { return path }
        return directory + path[slash...]
    }

    /// What ssh_config's %-tokens stand for, for one host.
    struct Tokens {
        var host: String
        var user: String
        var home: String
        /// The name as given, before HostName (%n).
        var alias: String? = nil
        var port: UInt16? = nil
        /// HostKeyAlias, else the name as given (%k).
        var hostKeyAlias: String? = nil
        /// ProxyJump as ssh_config gives it, "" without one (%j).
        var proxyJump: String? = nil
    }

    /// ssh_config's %-tokens in IdentityFile and CertificateFile (`ssh -G`
    /// prints those unexpanded), and a leading `~/`. %C, a hash whose
    /// inputs changed across OpenSSH releases, is not guessed.
    static func expandTokens(_ text: String, keyword: String, host: String, user: String, home: String) throws(SSHConfigError) -> String {
        try expandTokens(text, keyword: keyword, Tokens(host: host, user: user, home: home))
    }

    static func expandTokens(_ text: String, keyword: String, _ tokens: Tokens) throws(SSHConfigError) -> String {
        var out = ""
        var chars = text.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { out.append(c); continue }
            let token = chars.next()
            let value: String?
            switch token {
            case "%": value = "%"
            case "d": value = tokens.home
            case "h": value = tokens.host
            case "r": value = tokens.user
            case "u": value = System.userName([:])
            case "i": value = String(System.userID)
            case "l": value = System.hostName
            case "L": value = String(System.hostName.prefix { $0 != "." })
            case "n": value = tokens.alias
            case "p": value = tokens.port.map(String.init)
            case "k": value = tokens.hostKeyAlias ?? tokens.alias
            case "j": value = tokens.proxyJump
            default: value = nil
            }
            guard let value else {
                throw SSHConfigError(message: "\(keyword) \(text) in ssh_config: tunnel expands %d %h %i %j %k %L %l %n %p %r %u %% there, not %\(token.map(String.init) ?? "")")
            }
            out += value
        }
        return expandUserHome(out, home: tokens.home)
    }
}

extension SSHConfigEntry {
    /// ProxyJump's comma-separated hops.
    static func proxyJump(_ text: String, host: String) throws(SSHConfigError) -> [JumpHop] {
        var hops: [JumpHop] = []
        for part in text.split(separator: ",") {
            do { hops.append(try JumpHop.parse(String(part))) } catch {
                throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(error)")
            }
        }
        return hops
    }

    /// A ProxyCommand with `%n` (the name as given, before HostName) filled
    /// in now, while that name is known; `%%` and the other tokens stay for
    /// the connect, which knows the host, port and user.
    static func expandingOriginalName(_ command: String, _ name: String) -> String {
        var out = ""
        var chars = command.makeIterator()
        while let c = chars.next() {
            guard c == "%" else { out.append(c); continue }
            guard let next = chars.next() else { out.append(c); break }
            if next == "n" { out += name } else { out.append(c); out.append(next) }
        }
        return out
    }
}

extension HopLogin {
    /// The ssh_config keywords that make `self` differ from `base`, for the log.
    func keywordsChanged(from base: HopLogin) -> [String] {
        [("IdentityFile", identities != base.identities), ("CertificateFile", certificates != base.certificates),
         ("IdentitiesOnly", identitiesOnly != base.identitiesOnly),
         ("IdentityAgent", agent != base.agent), ("UserKnownHostsFile", knownHosts != base.knownHosts),
         ("HostKeyAlias", hostKeyAlias != base.hostKeyAlias), ("StrictHostKeyChecking", hostKey != base.hostKey),
         ("HashKnownHosts", hashKnownHosts != base.hashKnownHosts), ("Ciphers", ciphers != base.ciphers), ("MACs", macs != base.macs)]
            .filter(\.1).map(\.0)
    }
}

extension SSHConfigEntry {
    /// LocalForward and DynamicForward, for a profile that writes no forward.
    public func forwards(for host: String, publicAllowed: Bool) throws(SSHConfigError) -> [ForwardSpec] {
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

extension SSHConfigEntry {
    /// The RemoteForward lines tunnel can serve, each with a note (starting
    /// with `label`) for one it leaves out: a remote SOCKS proxy, a Unix
    /// socket, a non-loopback bind unless `publicAllowed`, a second forward
    /// asking for the same address.
    public func servableRemoteForwards(for host: String, label: String?, publicAllowed: Bool, notes: inout [String]) -> [RemoteForwardSpec] {
        let values = settings("remoteforward")
        let label = label.map { "\($0): " } ?? ""
        var specs: [RemoteForwardSpec] = []
        for (value, text) in zip(values, AdHocTunnel.forwards(fromRemoteForward: values)) {
            // How ssh -G prints `RemoteForward PORT`: a SOCKS proxy on the server's side.
            if value.hasSuffix(" [socks]:0") {
                notes.append("\(label)ssh_config's RemoteForward \(value.dropLast(" [socks]:0".count)) for \(host) left out: it asks for a SOCKS proxy on the server (a port alone), which tunnel does not serve")
                continue
            }
            let spec: RemoteForwardSpec
            do throws(RemoteForwardSpecError) { spec = try RemoteForwardSpec.parse(text) } catch {
                notes.append("\(label)ssh_config's RemoteForward \(value) for \(host) left out: \(error.reason)")
                continue
            }
            if spec.isPublic && !publicAllowed {
                notes.append("\(label)ssh_config's RemoteForward \(value) for \(host) left out: it asks the server to listen on \(spec.bind), which needs public = true")
            } else if let earlier = specs.first(where: { $0.collides(with: spec) }) {
                notes.append("\(label)ssh_config's RemoteForward \(value) for \(host) left out: it asks for the same address as \(earlier.text)")
            } else {
                specs.append(spec)
            }
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
        entry.servableRemoteForwards(for: host, label: nil, publicAllowed: isPublic, notes: &notes)
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
        guard let entry = try SSHConfigLookup.query(host, source: source, user: written.contains("user") ? user : nil,
                                                    port: written.contains("port") ? port : nil) else {
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
        // ssh -G's user is ssh_config's or, as ssh's own default, the login name.
        if unwritten("user"), let user = entry.values["user"]?.first { resolved.user = user }
        resolved.login = try entry.login(over: login, written: written, host: resolved.host, user: resolved.user, home: home,
                                         alias: host, port: resolved.port, notes: &notes)
        if unwritten("keepalive"), let seconds = positive("serveraliveinterval") { resolved.keepalive = seconds }
        if unwritten("keepalive_count"), let count = positive("serveralivecountmax") { resolved.keepaliveCount = count }
        if unwritten("connect_timeout"), let seconds = positive("connecttimeout") { resolved.connectTimeout = seconds }
        if unwritten("remote") { resolved.remoteForwards = remoteForwards(from: entry, notes: &notes) }
        guard resolved.hasForwards else {
            throw SSHConfigError(message: header + "no forward: the profile writes no forward, dynamic or remote, and ssh_config has no LocalForward, DynamicForward or RemoteForward for \(host)")
        }

        var hopsToResolve: [JumpHop] = []
        // Hops that ssh_config's ProxyJump names take their user as ssh does
        // (ssh_config's or the login name); the profile's `jump` hops that name
        // none take the profile's.
        var hopsFromSSHConfig = false
        if !jump.isEmpty {
            hopsToResolve = jump
        } else if unwritten("jump") && unwritten("proxy_command") {
            if let command = entry.setting("proxycommand"), command != "none" {
                resolved.proxyCommand = SSHConfigEntry.expandingOriginalName(command, host)
            }
            if let hops = entry.setting("proxyjump"), hops != "none" {
                hopsToResolve = try SSHConfigEntry.proxyJump(hops, host: host)
                hopsFromSSHConfig = true
            }
        }
        if !hopsToResolve.isEmpty {
            // Each hop on its own name, as ssh does, over the profile's own
            // login: what ssh_config says for the target stays the target's.
            func resolve(_ hop: JumpHop, fromSSHConfig: Bool) throws(SSHConfigError) -> (hop: JumpHop, entry: SSHConfigEntry?) {
                guard let hopEntry = try SSHConfigLookup.query(hop.host, source: source, user: hop.user,
                                                              port: hop.portIsExplicit ? hop.port : nil) else { return (hop, nil) }
                let user = hop.user ?? (fromSSHConfig ? hopEntry.values["user"]?.first : hopEntry.setting("user"))
                let host = hopEntry.setting("hostname") ?? hop.host
                let port = hop.portIsExplicit ? hop.port : hopEntry.setting("port").flatMap { UInt16($0) } ?? hop.port
                let hopLogin = try hopEntry.login(over: login, written: [], host: host, user: user ?? resolved.user, home: home,
                                                  alias: hop.host, port: port, notes: &notes)
                return (JumpHop(user: user, host: host, port: port, login: hopLogin == resolved.login ? nil : hopLogin), hopEntry)
            }
            var resolvedHops = try hopsToResolve.map { hop throws(SSHConfigError) in try resolve(hop, fromSSHConfig: hopsFromSSHConfig) }
            // The first hop is reached as ssh reaches it: by its own ProxyJump or
            // ProxyCommand, if ssh_config gives it one (ssh's `-J a,b` runs
            // `ssh -W … a` for the first, which reads a's; later hops are
            // reached through the one before, whatever their own say).
            if unwritten("proxy_command") {
                var firstName = hopsToResolve[0].host
                // Names as written and as resolved: a ProxyJump back to either loops.
                var seen = Set(([host, resolved.host] + hopsToResolve.map(\.host) + resolvedHops.map(\.hop.host)).map { $0.lowercased() })
                while let first = resolvedHops.first?.entry, resolvedHops.count < JumpHop.maxHops {
                    if let more = first.setting("proxyjump"), more != "none" {
                        let outer = try SSHConfigEntry.proxyJump(more, host: firstName)
                        if let back = outer.first(where: { seen.contains($0.host.lowercased()) }) {
                            throw SSHConfigError(message: "\(name): ssh_config's ProxyJump for \(firstName) leads back to \(back.host): the chain would loop")
                        }
                        seen.formUnion(outer.map { $0.host.lowercased() })
                        firstName = outer[0].host
                        let outerHops = try outer.map { hop throws(SSHConfigError) in try resolve(hop, fromSSHConfig: true) }
                        seen.formUnion(outerHops.map { $0.hop.host.lowercased() })
                        resolvedHops = outerHops + resolvedHops
                    } else {
                        if let command = first.setting("proxycommand"), command != "none" {
                            resolved.proxyCommand = SSHConfigEntry.expandingOriginalName(command, firstName)
                        }
                        break
                    }
                }
            }
            resolved.jump = resolvedHops.map(\.hop)
        }
        if resolved.jump.count >= JumpHop.maxHops {
            throw SSHConfigError(message: "ProxyJump for \(host) in ssh_config: \(resolved.jump.count) jump hosts; a chain has at most \(JumpHop.maxHops) hops")
        }
        // A chain that passes one host twice is finite (at most maxHops) and
        // ssh takes it; only a ProxyJump leading back while it is expanded
        // (above) would never end.
        if resolved != self {
            let keywords = resolved.login.keywordsChanged(from: login)
            notes.insert("ssh_config for \(host): \(resolved.via)" + (keywords.isEmpty ? "" : " (\(keywords.joined(separator: ", ")))"), at: 0)
        }
        return (resolved, notes)
    }
}
