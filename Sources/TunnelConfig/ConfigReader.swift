/// Turns a parsed TOML document into profiles and diagnostics.
struct ConfigReader {
    static let tunnelKeys = [
        "host", "port", "user", "identity", "forward", "dynamic", "remote", "known_hosts", "host_key",
        "keepalive", "keepalive_count", "connect_timeout", "hold_timeout", "public",
        "sessions", "max_sessions", "proxy_command", "jump", "ssh_config", "lazy", "idle_timeout",
    ]
    static let topLevelKeys = ["daemon", "defaults", "tunnels"]
    /// The keys that say what a profile forwards; it needs one of them.
    static let forwardKeys = ["forward", "dynamic", "remote"]

    /// ssh_config spellings people are likely to reach for.
    static let sshAliases: [String: String] = [
        "hostname": "host", "address": "host", "username": "user", "login": "user",
        "identityfile": "identity", "key": "identity", "keyfile": "identity",
        "localforward": "forward", "forwards": "forward", "local": "forward",
        "dynamicforward": "dynamic", "socks": "dynamic",
        "remoteforward": "remote", "remotes": "remote", "reverse": "remote",
        "userknownhostsfile": "known_hosts", "knownhostsfile": "known_hosts",
        "stricthostkeychecking": "host_key", "hostkeypolicy": "host_key",
        "serveraliveinterval": "keepalive", "serveralivecountmax": "keepalive_count",
        "gatewayports": "public",
        "connections": "sessions", "lanes": "sessions",
        "proxycommand": "proxy_command", "proxyjump": "jump", "jumphost": "jump", "jumphosts": "jump", "bastion": "jump",
    ]

    let path: String
    let home: String
    let defaultUser: String

    private(set) var fileErrors: [ConfigError] = []
    private(set) var profileErrors: [String: [ConfigError]] = [:]
    private(set) var profileNames: [String] = []
    private(set) var profiles: [String: Profile] = [:]
    /// `ssh_config` in `[defaults]`.
    private(set) var defaultSSHConfig: SSHConfigSource = .standard
    /// `[daemon]`, and its errors (also in `fileErrors`).
    private(set) var daemon = DaemonSettings()
    private(set) var daemonErrors: [ConfigError] = []

    init(path: String, home: String, defaultUser: String) {
        self.path = path
        self.home = home
        self.defaultUser = defaultUser
    }

    /// One tunnel's settings as written; nil where absent or invalid.
    struct Settings {
        var host: String?
        var port: UInt16?
        var user: String?
        var identity: String?
        var forwards: [LocatedForward] = []
        var remoteForwards: [LocatedRemoteForward] = []
        var knownHosts: String?
        var hostKey: HostKeyPolicy?
        var keepalive: Int?
        var keepaliveCount: Int?
        var connectTimeout: Int?
        var holdTimeout: Int?
        var lazy: Bool?
        var lazyLocation: SourceLocation?
        var idleTimeout: Int?
        var isPublic: Bool?
        var sessions: Int?
        var maxSessions: Int?
        var maxSessionsLocation: SourceLocation?
        var proxyCommand: String?
        var jump: [JumpHop]?
        var jumpLocation: SourceLocation?
        var sshConfig: SSHConfigSource?
        /// Keys that were written, valid or not: an invalid `host` is not also "missing".
        var present: Set<String> = []
    }

    struct LocatedForward {
        var spec: ForwardSpec
        var location: SourceLocation
        var profile: String
    }

    struct LocatedRemoteForward {
        var spec: RemoteForwardSpec
        var location: SourceLocation
    }

    private struct Candidate {
        var name: String
        var location: SourceLocation
        var settings: Settings
    }

    private func location(_ position: TOMLPosition) -> SourceLocation {
        position.location(in: path)
    }

    // MARK: - Document

    mutating func read(_ root: TOMLTable) {
        if let entry = root.entry("daemon") {
            (daemon, daemonErrors) = Self.readDaemon(entry, location: location)
            fileErrors += daemonErrors
        }
        var defaults = Settings()
        if let entry = root.entry("defaults") {
            if let table = entry.value.table {
                defaults = readSettings(table, path: ["defaults"], profile: nil, errors: &fileErrors)
                defaultSSHConfig = defaults.sshConfig ?? .standard
            } else {
                fileErrors.append(ConfigError(location: location(entry.value.position),
                                              message: "defaults: expected a table ([defaults]), found \(entry.value.foundDescription)"))
            }
        }

        for entry in root.entries where !Self.topLevelKeys.contains(entry.key) {
            fileErrors.append(ConfigError(location: location(entry.keyPosition), message: unknownTopLevelKeyMessage(entry)))
        }

        var candidates: [Candidate] = []
        if let entry = root.entry("tunnels") {
            if let tunnels = entry.value.table {
                for profileEntry in tunnels.entries {
                    if let candidate = readProfile(profileEntry, defaults: defaults) {
                        candidates.append(candidate)
                    }
                }
            } else {
                fileErrors.append(ConfigError(location: location(entry.value.position),
                                              message: "tunnels: expected a table of profiles ([tunnels.NAME]), found \(entry.value.foundDescription)"))
            }
        }

        checkOverlaps(candidates.flatMap(\.settings.forwards))

        for candidate in candidates where (profileErrors[candidate.name] ?? []).isEmpty {
            profiles[candidate.name] = makeProfile(candidate, defaults: defaults)
        }
    }

    private func unknownTopLevelKeyMessage(_ entry: TOMLTable.Entry) -> String {
        let name = quoted(entry.key)
        if Self.tunnelKeys.contains(entry.key) {
            return "unknown key \(name) at the top level (tunnel settings go under [tunnels.NAME] or [defaults])"
        }
        if let table = entry.value.table, table["host"] != nil || Self.forwardKeys.contains(where: { table[$0] != nil }) {
            return "unknown key \(name) (did you mean [tunnels.\(keyPath([entry.key]))]?)"
        }
        return "unknown key \(name)" + didYouMean(entry.key, among: Self.topLevelKeys)
    }

    // MARK: - Profiles

    /// Validates one entry under `[tunnels]`; records its errors, and returns its
    /// settings when it is a table (even a broken one, for the overlap check).
    private mutating func readProfile(_ entry: TOMLTable.Entry, defaults: Settings) -> Candidate? {
        let name = entry.key
        profileNames.append(name)
        let path = ["tunnels", name]
        let shownPath = keyPath(path)
        var errors: [ConfigError] = []
        defer { profileErrors[name] = errors.isEmpty ? nil : errors }

        if !isValidProfileName(name) {
            errors.append(ConfigError(location: location(entry.keyPosition),
                                      message: "\(shownPath): profile name \(quoted(name)) may only contain letters, digits, \"_\", \".\" and \"-\", and may not start with \"-\" (the command line would take it for an option)"))
        } else if Config.reservedProfileNames.contains(name) {
            errors.append(ConfigError(location: location(entry.keyPosition),
                                      message: "\(shownPath): \(quoted(name)) is reserved ([\(name)] holds the supervisor's settings); give the profile another name"))
        }
        guard let table = entry.value.table else {
            errors.append(ConfigError(location: location(entry.value.position),
                                      message: "\(shownPath): expected a table ([tunnels.\(keyPath([name]))]), found \(entry.value.foundDescription)"))
            return nil
        }
        let here = location(entry.value.position)
        let settings = readSettings(table, path: path, profile: name, errors: &errors)

        if !settings.present.contains("host") && !defaults.present.contains("host") {
            errors.append(ConfigError(location: here, message: "\(shownPath): missing required key \"host\""))
        }
        // Without ssh_config, nothing else can say what to forward. With it,
        // LocalForward and DynamicForward for the host fill in, and `up` says
        // so if there are none.
        if Self.forwardKeys.allSatisfy({ !settings.present.contains($0) }) && (settings.sshConfig ?? defaults.sshConfig) == SSHConfigSource.none {
            errors.append(ConfigError(location: here, message: "\(shownPath): missing required key \"forward\" (a profile needs at least one of "
                                      + Self.forwardKeys.map(quoted).joined(separator: ", ") + " when ssh_config = \"none\")"))
        }

        let sessions = settings.sessions ?? defaults.sessions ?? Profile.Defaults.sessions
        if let most = settings.maxSessions ?? defaults.maxSessions, most < sessions,
           let at = settings.maxSessionsLocation ?? defaults.maxSessionsLocation {
            let key = settings.maxSessions != nil ? "\(shownPath).max_sessions" : "defaults.max_sessions"
            errors.append(ConfigError(location: at, message: "\(key): \(most) is fewer than sessions = \(sessions) of \(shownPath); max_sessions counts those too"))
        }

        // The server listens for a remote forward only while connected: a
        // lazy tunnel would never ask it to.
        if settings.lazy ?? defaults.lazy ?? false, let first = settings.remoteForwards.first,
           let at = settings.lazyLocation ?? defaults.lazyLocation {
            errors.append(ConfigError(location: at, message: "\(shownPath): lazy = true cannot go with remote \(quoted(first.spec.text)): "
                                      + "the server listens for a remote forward only while connected, and a lazy tunnel connects only when a local client arrives"))
        }

        let isPublic = settings.isPublic ?? defaults.isPublic ?? Profile.Defaults.isPublic
        if !isPublic {
            for forward in settings.forwards where forward.spec.isPublic {
                let bind = forward.spec.bind
                let reach = bind.isWildcard
                    ? "binds \(bind) (all interfaces), so the service would be reachable from every interface"
                    : "binds \(bind), so the service would be reachable from the network"
                errors.append(ConfigError(location: forward.location,
                                          message: "\(shownPath): \(forward.spec.kind == .dynamic ? "dynamic" : "forward") \(quoted(forward.spec.text)) \(reach); set public = true to allow it"))
            }
            for remote in settings.remoteForwards where remote.spec.isPublic {
                let bind = remote.spec.bind
                let reach = bind.isWildcard
                    ? "asks the server to listen on \(bind) (all its interfaces), so this machine's \(remote.spec.targetDescription) would be reachable from every network the server is on"
                    : "asks the server to listen on \(bind), so this machine's \(remote.spec.targetDescription) would be reachable from the server's network"
                errors.append(ConfigError(location: remote.location,
                                          message: "\(shownPath): remote \(quoted(remote.spec.text)) \(reach); set public = true to allow it"))
            }
        }
        errors += remoteOverlaps(settings.remoteForwards, profilePath: shownPath)
        return Candidate(name: name, location: here, settings: settings)
    }

    private func isValidProfileName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("-") && name.utf8.allSatisfy { isBareKeyByte($0) || $0 == ASCII.dot }
    }

    /// Two listeners on the same port collide when their addresses overlap. The
    /// error goes on the later forward, naming the earlier one.
    private mutating func checkOverlaps(_ forwards: [LocatedForward]) {
        var paths: [String: Int] = [:]
        var ports: [(index: Int, port: UInt16, bind: BindAddress)] = []
        for (i, forward) in forwards.enumerated() {
            if let path = forward.spec.localPath {
                if let match = paths[path] { reportOverlap(forwards[match], forward) } else { paths[path] = i }
            } else {
                ports.append((i, forward.spec.localPort, forward.spec.bind))
            }
        }
        for (earlier, later) in Self.overlaps(ports) { reportOverlap(forwards[earlier], forwards[later]) }
    }

    /// For each address that overlaps an earlier one on the same port, the
    /// two indices (the earliest such earlier one). Port 0 (picked for us)
    /// never overlaps. Linear in the number of addresses (a file may list
    /// hundreds of thousands): per port and family it keeps the first, the
    /// first wildcard and the first on each address, which are the only
    /// candidates for "the earliest one this one collides with".
    private static func overlaps(_ addresses: [(index: Int, port: UInt16, bind: BindAddress)]) -> [(earlier: Int, later: Int)] {
        struct Key: Hashable { var port: UInt16; var isIPv6: Bool }
        struct Earlier { var first: Int; var wildcard: Int?; var byHost: [String: Int] }
        var seen: [Key: Earlier] = [:]
        var found: [(earlier: Int, later: Int)] = []
        for (i, port, bind) in addresses where port != 0 {
            let key = Key(port: port, isIPv6: bind.isIPv6)
            // Taken out and put back, so its dictionary is not copied on each change.
            guard var slot = seen.removeValue(forKey: key) else {
                seen[key] = Earlier(first: i, wildcard: bind.isWildcard ? i : nil, byHost: [bind.host: i])
                continue
            }
            let match = bind.isWildcard ? slot.first : [slot.byHost[bind.host], slot.wildcard].compactMap { $0 }.min()
            if slot.wildcard == nil && bind.isWildcard { slot.wildcard = i }
            if slot.byHost[bind.host] == nil { slot.byHost[bind.host] = i }
            seen[key] = slot
            if let match { found.append((match, i)) }
        }
        return found
    }

    private mutating func reportOverlap(_ earlier: LocatedForward, _ later: LocatedForward) {
        assert(earlier.spec.collides(with: later.spec))
        let message = "\(keyPath(["tunnels", later.profile, later.spec.kind == .dynamic ? "dynamic" : "forward"])): \(later.spec.localDescription) overlaps "
            + "\(earlier.spec.localDescription) of \(keyPath(["tunnels", earlier.profile])) (\(earlier.location))"
        profileErrors[later.profile, default: []].append(ConfigError(location: later.location, message: message))
    }

    /// Two remote forwards of one profile asking the one server for the same
    /// address: the server would refuse the second. The error goes on the
    /// later one. (Local listeners are checked across profiles; remote ones of
    /// different profiles may be on different servers.)
    private func remoteOverlaps(_ remotes: [LocatedRemoteForward], profilePath: String) -> [ConfigError] {
        Self.overlaps(remotes.enumerated().map { ($0.offset, $0.element.spec.port, $0.element.spec.bind) }).map { earlierIndex, laterIndex in
            let (earlier, later) = (remotes[earlierIndex], remotes[laterIndex])
            assert(earlier.spec.collides(with: later.spec))
            return ConfigError(location: later.location,
                               message: "\(profilePath).remote: \(later.spec.listenDescription()) on the server overlaps \(earlier.spec.listenDescription()) (\(earlier.location))")
        }
    }

    private func makeProfile(_ candidate: Candidate, defaults: Settings) -> Profile? {
        let own = candidate.settings
        guard let host = own.host ?? defaults.host else { return nil }
        return Profile(
            name: candidate.name,
            host: host,
            port: own.port ?? defaults.port ?? Profile.Defaults.port,
            user: own.user ?? defaults.user ?? defaultUser,
            identity: own.identity ?? defaults.identity,
            forwards: own.forwards.map(\.spec),
            remoteForwards: own.remoteForwards.map(\.spec),
            knownHosts: own.knownHosts ?? defaults.knownHosts ?? expandTilde(Profile.Defaults.knownHosts, home: home),
            hostKey: own.hostKey ?? defaults.hostKey ?? Profile.Defaults.hostKey,
            keepalive: own.keepalive ?? defaults.keepalive ?? Profile.Defaults.keepalive,
            keepaliveCount: own.keepaliveCount ?? defaults.keepaliveCount ?? Profile.Defaults.keepaliveCount,
            connectTimeout: own.connectTimeout ?? defaults.connectTimeout ?? Profile.Defaults.connectTimeout,
            holdTimeout: own.holdTimeout ?? defaults.holdTimeout ?? Profile.Defaults.holdTimeout,
            lazy: own.lazy ?? defaults.lazy ?? false,
            idleTimeout: own.idleTimeout ?? defaults.idleTimeout ?? Profile.Defaults.idleTimeout,
            isPublic: own.isPublic ?? defaults.isPublic ?? Profile.Defaults.isPublic,
            sessions: own.sessions ?? defaults.sessions ?? Profile.Defaults.sessions,
            maxSessions: own.maxSessions ?? defaults.maxSessions,
            proxyCommand: own.proxyCommand ?? defaults.proxyCommand,
            jump: own.jump ?? defaults.jump ?? [],
            sshConfig: own.sshConfig ?? defaults.sshConfig ?? .standard,
            written: own.present.union(defaults.present),
            location: candidate.location
        )
    }

    // MARK: - Keys

    /// Reads the tunnel keys of `[defaults]` (profile nil) or one profile.
    private func readSettings(_ table: TOMLTable, path: [String], profile: String?, errors: inout [ConfigError]) -> Settings {
        var s = Settings()
        for entry in table.entries {
            let value = entry.value
            let name = keyPath(path + [entry.key])
            var checker = ValueChecker(name: name, value: value, location: location(value.position))
            s.present.insert(entry.key)
            switch entry.key {
            case "host":
                s.host = checker.host()
            case "port":
                s.port = checker.integer(in: 1...65535).map(UInt16.init)
            case "user":
                s.user = checker.userName()
            case "identity":
                s.identity = checker.nonEmptyString().map { expandTilde($0, home: home) }
            case "known_hosts":
                s.knownHosts = checker.nonEmptyString().map { expandTilde($0, home: home) }
            case "proxy_command":
                s.proxyCommand = checker.nonEmptyString()
            case "ssh_config":
                s.sshConfig = checker.nonEmptyString().map { $0 == "none" ? .none : .file(expandTilde($0, home: home)) }
            case "jump":
                s.jump = checker.jumpHops()
                s.jumpLocation = location(value.position)
            case "host_key":
                s.hostKey = checker.hostKeyPolicy()
            case "keepalive":
                s.keepalive = checker.integer(in: 0...86400)
            case "keepalive_count":
                s.keepaliveCount = checker.integer(in: 1...1000)
            case "connect_timeout":
                s.connectTimeout = checker.integer(in: 1...86400)
            case "hold_timeout":
                s.holdTimeout = checker.integer(in: 0...86400)
            case "lazy":
                s.lazy = checker.boolean()
                s.lazyLocation = checker.location
            case "idle_timeout":
                s.idleTimeout = checker.integer(in: 1...604800)
            case "public":
                s.isPublic = checker.boolean()
            case "sessions":
                s.sessions = checker.integer(in: 1...Profile.Defaults.sessionLimit)
            case "max_sessions":
                s.maxSessions = checker.integer(in: 1...Profile.Defaults.sessionLimit)
                s.maxSessionsLocation = checker.location
            case "remote":
                if profile != nil {
                    s.remoteForwards = checker.remoteForwards(profilePath: keyPath(path))
                } else {
                    s.present.remove(entry.key)  // so profiles without forwards are still reported
                    errors.append(ConfigError(location: location(entry.keyPosition),
                                              message: "\(name): remote is not allowed in [defaults]; list remote forwards in each [tunnels.NAME]"))
                }
            case "forward", "dynamic":
                if let profile {
                    let parse = entry.key == "dynamic" ? ForwardSpec.parseDynamic : ForwardSpec.parse
                    s.forwards += checker.forwards(profile: profile, profilePath: keyPath(path), parse: parse)
                } else {
                    s.present.remove(entry.key)  // so profiles without forwards are still reported
                    errors.append(ConfigError(location: location(entry.keyPosition),
                                              message: "\(name): \(entry.key) is not allowed in [defaults]; list forwards in each [tunnels.NAME]"))
                }
            default:
                s.present.remove(entry.key)
                let suggestion = didYouMean(entry.key, among: Self.tunnelKeys.filter { profile != nil || !Self.forwardKeys.contains($0) },
                                            aliases: Self.sshAliases)
                errors.append(ConfigError(location: location(entry.keyPosition),
                                          message: "\(keyPath(path)): unknown key \(quoted(entry.key))\(suggestion)"))
            }
            errors += checker.errors
        }
        return s
    }
}

/// Checks one value's type and range, collecting "name: expected X, found Y" errors.
private struct ValueChecker {
    let name: String
    let value: TOMLValue
    let location: SourceLocation
    var errors: [ConfigError] = []

    init(name: String, value: TOMLValue, location: SourceLocation) {
        self.name = name
        self.value = value
        self.location = location
    }

    private mutating func fail(_ message: String, at location: SourceLocation? = nil, name: String? = nil) {
        errors.append(ConfigError(location: location ?? self.location, message: "\(name ?? self.name): \(message)"))
    }

    private mutating func expect(_ expected: String) {
        fail("expected \(expected), found \(value.foundDescription)")
    }

    mutating func string() -> String? {
        guard let s = value.string else { expect("a string"); return nil }
        return s
    }

    mutating func nonEmptyString() -> String? {
        guard let s = string() else { return nil }
        if s.isEmpty { fail("must not be empty"); return nil }
        return s
    }

    /// Non-empty, no whitespace or control characters (user names).
    mutating func word() -> String? {
        guard let s = nonEmptyString() else { return nil }
        if s.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            fail("\(quoted(s)) must not contain whitespace or control characters")
            return nil
        }
        return s
    }

    /// A login name: a word that ssh (and `ssh -G`) would not read as an option.
    mutating func userName() -> String? {
        guard let s = word() else { return nil }
        if s.hasPrefix("-") {
            fail("\(quoted(s)) is not a user name (it starts with \"-\")")
            return nil
        }
        return s
    }

    /// A hostname or IP address; an IPv6 address may be written in brackets.
    mutating func host() -> String? {
        guard var s = word() else { return nil }
        // ssh (and `ssh -G`) would read it as an option.
        if s.hasPrefix("-") {
            fail("\(quoted(s)) is not a host name (it starts with \"-\")")
            return nil
        }
        if s.hasPrefix("[") && s.hasSuffix("]") && s.count > 2 {
            let inner = String(s.dropFirst().dropLast())
            guard System.parseIP(inner, ipv6: true) != nil else {
                fail("\(quoted(s)) is not an IPv6 address")
                return nil
            }
            s = inner
        }
        return s
    }

    mutating func integer(in range: ClosedRange<Int>) -> Int? {
        guard let n = value.integer else { expect("an integer"); return nil }
        guard n >= Int64(range.lowerBound) && n <= Int64(range.upperBound) else {
            fail("\(n) is out of range (\(range.lowerBound)-\(range.upperBound))")
            return nil
        }
        return Int(n)
    }

    mutating func boolean() -> Bool? {
        guard let b = value.boolean else { expect("a boolean (true or false)"); return nil }
        return b
    }

    mutating func hostKeyPolicy() -> HostKeyPolicy? {
        guard let s = string() else { return nil }
        if let policy = HostKeyPolicy(rawValue: s) { return policy }
        let choices = HostKeyPolicy.allCases.map(\.rawValue)
        fail("expected \(choices.map(quoted).joined(separator: " or ")), found \(quoted(s))" + didYouMean(s, among: choices))
        return nil
    }

    /// `ssh -J` hops: a comma-separated string or an array of strings, first
    /// hop first; at most `JumpHop.maxHops - 1` of them.
    mutating func jumpHops() -> [JumpHop]? {
        var texts: [(String, SourceLocation)] = []
        switch value.kind {
        case .string:
            texts = value.string!.split(separator: ",", omittingEmptySubsequences: false)
                .map { (String($0).trimmingSpaces, location) }
        case .array(let array):
            for (i, item) in array.enumerated() {
                let itemLocation = SourceLocation(file: location.file, line: item.position.line, column: item.position.column)
                guard let text = item.string else {
                    fail("expected a string, found \(item.foundDescription)", at: itemLocation, name: "\(name)[\(i)]")
                    return nil
                }
                texts.append((text, itemLocation))
            }
        default:
            expect("a string (\"user@bastion:22,ops@second\") or an array of strings")
            return nil
        }
        guard !texts.isEmpty, !(texts.count == 1 && texts[0].0.isEmpty) else {
            fail("expected at least one jump host")
            return nil
        }
        var hops: [JumpHop] = []
        for (text, itemLocation) in texts {
            do throws(JumpHop.ParseError) { hops.append(try JumpHop.parse(text)) } catch {
                fail("\(error)", at: itemLocation)
                return nil
            }
        }
        if hops.count >= JumpHop.maxHops {
            fail("\(hops.count) jump hosts: a chain has at most \(JumpHop.maxHops) hops, the target included")
            return nil
        }
        for (i, hop) in hops.enumerated() where hops[..<i].contains(where: { $0.host == hop.host && $0.port == hop.port }) {
            fail("\(hop.host):\(hop.port) appears twice: the chain would loop")
            return nil
        }
        return hops
    }

    /// The strings of a string or a non-empty array of strings, each with its
    /// location; items of other types are reported and left out.
    mutating func stringItems(what: String) -> [(String, SourceLocation)] {
        let items: [TOMLValue]
        switch value.kind {
        case .string:
            items = [value]
        case .array(let array):
            if array.isEmpty { fail("expected at least one \(what), found an empty array"); return [] }
            items = array
        default:
            expect("a string or an array of strings")
            return []
        }
        var result: [(String, SourceLocation)] = []
        for (i, item) in items.enumerated() {
            let itemLocation = SourceLocation(file: location.file, line: item.position.line, column: item.position.column)
            guard let text = item.string else {
                fail("expected a string, found \(item.foundDescription)", at: itemLocation, name: "\(name)[\(i)]")
                continue
            }
            result.append((text, itemLocation))
        }
        return result
    }

    /// A string or a non-empty array of strings, each a valid spec (`ssh -L`,
    /// or `ssh -D` with `parseDynamic`). Returns the valid ones, so overlaps
    /// are still checked in a broken profile.
    mutating func forwards(profile: String, profilePath: String,
                           parse: (String) throws(ForwardSpecError) -> ForwardSpec) -> [ConfigReader.LocatedForward] {
        var result: [ConfigReader.LocatedForward] = []
        for (text, itemLocation) in stringItems(what: "forward") {
            do {
                result.append(.init(spec: try parse(text), location: itemLocation, profile: profile))
            } catch {
                errors.append(ConfigError(location: itemLocation, message: "\(profilePath): \(error)"))
            }
        }
        return result
    }
}

extension ValueChecker {
    /// A string or a non-empty array of strings, each a valid `ssh -R` spec.
    mutating func remoteForwards(profilePath: String) -> [ConfigReader.LocatedRemoteForward] {
        var result: [ConfigReader.LocatedRemoteForward] = []
        for (text, itemLocation) in stringItems(what: "remote forward") {
            do throws(RemoteForwardSpecError) {
                result.append(.init(spec: try RemoteForwardSpec.parse(text), location: itemLocation))
            } catch {
                errors.append(ConfigError(location: itemLocation, message: "\(profilePath): \(error)"))
            }
        }
        return result
    }
}

// MARK: - Suggestions

/// ` (did you mean "host"?)` for a near miss, or "".
func didYouMean(_ word: String, among candidates: [String], aliases: [String: String] = [:]) -> String {
    guard let match = closestMatch(word, among: candidates, aliases: aliases) else { return "" }
    return " (did you mean \(quoted(match))?)"
}

/// The candidate a mistyped word most likely meant: same letters ignoring case
/// and "_"/"-", a known alias, or the nearest by edit distance when close enough.
func closestMatch(_ word: String, among candidates: [String], aliases: [String: String] = [:]) -> String? {
    func normalized(_ s: String) -> String { String(s.lowercased().filter { $0 != "_" && $0 != "-" }) }
    let key = normalized(word)
    if let exact = candidates.first(where: { normalized($0) == key }) { return exact }
    if let alias = aliases[key], candidates.contains(alias) { return alias }
    let lowered = word.lowercased()
    let threshold = max(1, min(3, lowered.count / 3))
    var best: (candidate: String, distance: Int)?
    let length = lowered.unicodeScalars.count
    for candidate in candidates {
        // The distance is at least the difference in length: skip long words at once.
        guard abs(length - candidate.unicodeScalars.count) <= threshold else { continue }
        let d = editDistance(lowered, candidate)
        if d <= threshold && d < (best?.distance ?? .max) { best = (candidate, d) }
    }
    return best?.candidate
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions,
/// so "hots" is one edit from "host".
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous2 = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = min(current[j], previous2[j - 2] + 1)
            }
        }
        (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[b.count]
}
