/// A tunnel that no tunnels.toml profile describes: `tunnel up -L SPEC -R
/// SPEC ... DESTINATION` (the ad-hoc form of `ssh -N -L -R`), or `tunnel up
/// ALIAS` for an ssh_config Host with LocalForward or RemoteForward lines. Saved as given, so a restarted
/// supervisor builds the same tunnel again.
public struct AdHocTunnel: Codable, Equatable, Sendable {
    public enum Origin: String, Codable, Sendable {
        case commandLine = "command line"
        case sshConfig = "ssh_config"

        /// "from the command line", "from ssh_config".
        public var fromWhere: String { self == .commandLine ? "from the command line" : "from ssh_config" }
    }

    public var name: String
    /// `[user@]host[:port]`, `ssh://user@host:port` or an ssh_config alias.
    public var destination: String
    public var forwards: [String]
    /// `-D` specs (`[bind:]port`); nil in states saved before there were any.
    public var dynamic: [String]?
    /// `-R` specs; nil in states saved before there were any.
    public var remote: [String]?
    /// As `-J`: `user@bastion:22,second`.
    public var jump: String?
    public var identity: String?
    public var port: UInt16?
    public var origin: Origin
    /// Where its alias was looked up: "PATH" (ssh -F), "none", or nil for ssh's own files.
    public var sshConfigFile: String?

    public init(name: String?, destination: String, forwards: [String], dynamic: [String] = [], remote: [String] = [], jump: String? = nil, identity: String? = nil,
                port: UInt16? = nil, origin: Origin, sshConfig: SSHConfigSource = .standard) {
        self.name = name ?? destination
        self.destination = destination
        self.forwards = forwards
        self.dynamic = dynamic.isEmpty ? nil : dynamic
        self.remote = remote.isEmpty ? nil : remote
        self.jump = jump
        self.identity = identity
        self.port = port
        self.origin = origin
        switch sshConfig {
        case .standard: sshConfigFile = nil
        case .file(let path): sshConfigFile = path
        case .none: sshConfigFile = "none"
        }
    }

    var sshConfig: SSHConfigSource {
        switch sshConfigFile {
        case nil: return .standard
        case "none"?: return .none
        case let path?: return .file(path)
        }
    }

    public struct Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// The profile it stands for, before ssh_config is applied: what the
    /// command line wrote counts as written, everything else is filled in by
    /// ssh_config, then by tunnel's defaults.
    public func profile(home: String, environment: [String: String]) throws(Invalid) -> Profile {
        let defaultUser = System.userName(environment)
        let target: JumpHop
        do { target = try JumpHop.parse(destination) } catch { throw Invalid(message: "destination \(error)") }
        if let port, target.portIsExplicit, port != target.port {
            throw Invalid(message: "-p \(port) and destination \(destination) name different ports")
        }
        let specTexts = forwards.map { ("-L", $0) } + (dynamic ?? []).map { ("-D", $0) }
        let remoteTexts = remote ?? []
        guard !specTexts.isEmpty || !remoteTexts.isEmpty else {
            throw Invalid(message: "\(name): no forward: give -L [bind:]port:host:hostport, -D [bind:]port or -R [bind:]port:host:hostport")
        }
        var specs: [ForwardSpec] = []
        for (flag, text) in specTexts {
            do { specs.append(try flag == "-D" ? ForwardSpec.parseDynamic(text) : ForwardSpec.parse(text)) } catch { throw Invalid(message: "\(flag) \(error.text)") }
        }
        for (i, spec) in specs.enumerated() {
            let (flag, text) = specTexts[i]
            if spec.isPublic { throw Invalid(message: "\(flag) \(text): binds a non-loopback address; write a profile with public = true for that") }
            if let other = specs[..<i].firstIndex(where: { $0.collides(with: spec) }) {
                throw Invalid(message: "\(flag) \(text) and \(specTexts[other].0) \(specTexts[other].1) claim the same local address")
            }
        }
        var remoteSpecs: [RemoteForwardSpec] = []
        for text in remoteTexts {
            do throws(RemoteForwardSpecError) { remoteSpecs.append(try RemoteForwardSpec.parse(text)) } catch {
                throw Invalid(message: "-R \(text): \(error.reason)")
            }
        }
        for (i, spec) in remoteSpecs.enumerated() {
            if spec.isPublic {
                throw Invalid(message: "-R \(remoteTexts[i]): asks the server to listen on a non-loopback address; write a profile with public = true for that")
            }
            if let other = remoteSpecs[..<i].firstIndex(where: { $0.collides(with: spec) }) {
                throw Invalid(message: "-R \(remoteTexts[i]) and -R \(remoteTexts[other]) ask the server for the same address")
            }
        }
        var hops: [JumpHop] = []
        if let jump {
            for text in jump.split(separator: ",") {
                do { hops.append(try JumpHop.parse(String(text).trimmingSpaces)) } catch { throw Invalid(message: "-J \(error)") }
            }
            guard hops.count < JumpHop.maxHops else { throw Invalid(message: "-J: a chain has at most \(JumpHop.maxHops) hops, the target included") }
        }
        var written: Set<String> = specs.isEmpty ? [] : ["forward"]
        if !remoteSpecs.isEmpty { written.insert("remote") }
        if target.user != nil { written.insert("user") }
        if port != nil || target.portIsExplicit { written.insert("port") }
        if identity != nil { written.insert("identity") }
        if jump != nil { written.insert("jump") }
        let profile = Profile(name: name, host: target.host, port: port ?? target.port, user: target.user ?? defaultUser,
                       identity: identity.map { $0.hasPrefix("~/") ? home + $0.dropFirst() : $0 },
                       forwards: specs, remoteForwards: remoteSpecs, knownHosts: expandTilde(Profile.Defaults.knownHosts, home: home), jump: hops, sshConfig: sshConfig, written: written,
                       location: SourceLocation(file: origin.rawValue, line: 0, column: 0))
        return profile
    }

    /// `ssh -G` DynamicForward values ("1080", "[127.0.0.1]:1082", "[::1]:1081") as `-D` specs.
    public static func forwards(fromDynamicForward values: [String]) -> [String] {
        values.map { unbracketed($0[...]) }
    }

    /// ssh -G prints every host in brackets ("[127.0.0.1]:5432"); only IPv6 keeps them.
    private static func unbracketed(_ field: Substring) -> String {
        guard field.hasPrefix("["), let close = field.firstIndex(of: "]") else { return String(field) }
        let inner = field[field.index(after: field.startIndex)..<close]
        return inner.contains(":") ? String(field) : String(inner) + field[field.index(after: close)...]
    }

    /// `ssh -G` LocalForward values ("5433 localhost:5432", "127.0.0.1:5433 [::1]:5432")
    /// as `-L` specs.
    public static func forwards(fromLocalForward values: [String]) -> [String] {
        values.map { $0.split(separator: " ", maxSplits: 1).map(unbracketed).joined(separator: ":") }
    }

    /// `ssh -G` RemoteForward values ("8080 [localhost]:3000", "[127.0.0.1]:0 [::1]:3000")
    /// as `-R` specs: the same two fields as LocalForward. (A remote SOCKS
    /// proxy prints as "1080 [socks]:0" and a Unix socket as its path; the
    /// spec parser refuses both.)
    public static func forwards(fromRemoteForward values: [String]) -> [String] {
        forwards(fromLocalForward: values)
    }
}
