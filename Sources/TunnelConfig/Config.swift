import TunnelPOSIX

/// The user's tunnel profiles, read from one TOML file and validated as a whole.
///
/// Reading never stops at the first problem: every error in the file is in
/// `errors` (for `tunnel config check`), and each profile is usable unless it has
/// errors of its own or the file has file-level errors (syntax errors, unknown
/// top-level keys, a bad `[defaults]`).
public struct Config: Sendable {
    public let path: String
    /// Every name under `[tunnels]`, in file order, broken ones included. After a
    /// syntax error, only the names defined before it.
    public let profileNames: [String]
    /// Every problem in the file, sorted by position.
    public let errors: [ConfigError]
    /// `ssh_config` in `[defaults]`: where aliases are looked up.
    public var sshConfig: SSHConfigSource = .standard
    /// `[daemon]`: the supervisor's settings (defaults when absent or broken).
    public internal(set) var daemon = DaemonSettings()
    /// The problems of `[daemon]` (also in `errors`).
    public internal(set) var daemonErrors: [ConfigError] = []

    /// `profileNames` for lookups (a file may define many thousands).
    let nameSet: Set<String>
    /// Errors outside any one profile (syntax, `[defaults]`, `[daemon]`): they break every profile.
    public let fileErrors: [ConfigError]
    let hasSyntaxError: Bool
    /// A syntax error (or bytes that are not UTF-8) stopped the reading: the
    /// profiles past it are not known, so none of them can be called removed.
    public var stoppedEarly: Bool { hasSyntaxError }
    let profileErrors: [String: [ConfigError]]
    let profiles: [String: Profile]

    /// The profile, or the errors that make it unusable.
    public func profile(named name: String) throws(ConfigErrors) -> Profile {
        if Config.reservedProfileNames.contains(name) && !nameSet.contains(name) {
            throw ConfigErrors([ConfigError(location: nil, message: Config.reservedNameMessage(name, path: path))])
        }
        guard nameSet.contains(name) else {
            // After a syntax error the name may simply be past the error.
            if hasSyntaxError { throw ConfigErrors(fileErrors) }
            let list = profileNames.isEmpty ? "it defines no profiles" : "profiles: " + profileNames.joined(separator: ", ")
            throw ConfigErrors(fileErrors + [ConfigError(location: nil, message: "no profile named \(quoted(name)) in \(path) (\(list))")])
        }
        let own = profileErrors[name] ?? []
        if own.isEmpty && fileErrors.isEmpty, let profile = profiles[name] { return profile }
        throw ConfigErrors(fileErrors + own)
    }

    /// The usable profiles, in file order; none when the file has file-level errors.
    public var validProfiles: [Profile] {
        guard fileErrors.isEmpty else { return [] }
        return profileNames.compactMap { profileErrors[$0] == nil ? profiles[$0] : nil }
    }

    /// Reads and validates the file. Only an unreadable file throws; problems in
    /// its contents are in `errors`.
    ///
    /// The file must be a regular file (or a symbolic link to one) of at most
    /// `maxFileSize` bytes: a FIFO, a device or a directory is refused at once,
    /// without blocking or reading from it.
    public static func load(path: String, environment: [String: String]) throws(ConfigErrors) -> Config {
        let bytes: [UInt8]
        do { bytes = try Files.readRegularFile(path, limit: maxFileSize) } catch {
            throw ConfigErrors([ConfigError(location: nil, message: loadErrorMessage(error))])
        }
        return build(bytes: bytes, path: path, environment: environment)
    }

    /// Profiles files are small; anything larger is a mistake (or /dev/zero).
    public static let maxFileSize = 1 << 20

    static func loadErrorMessage(_ error: FileReadError) -> String {
        switch error.reason {
        case .missing, .system:
            return "cannot read config file \(error.path): \(error.errno ?? .noEntry)"
        case .notRegular, .tooLarge:
            return error.description
        }
    }

    /// Validates config text as if read from `path` (used in messages only).
    public static func parse(text: String, path: String, environment: [String: String]) -> Config {
        build(bytes: Array(text.utf8), path: path, environment: environment)
    }

    /// Validates a file's raw bytes as if read from `path` (used in messages
    /// only): what `load` does once the file is read, e.g. for the fuzzer.
    public static func parse(bytes: [UInt8], path: String, environment: [String: String]) -> Config {
        build(bytes: bytes, path: path, environment: environment)
    }

    /// `--config PATH`, then `$TUNNEL_CONFIG`, then `$XDG_CONFIG_HOME/tunnel/tunnels.toml`,
    /// then `~/.config/tunnel/tunnels.toml`.
    public static func resolvePath(explicit: String?, environment: [String: String]) -> String {
        let home = homeDirectory(environment)
        if let explicit, !explicit.isEmpty { return expandTilde(explicit, home: home) }
        if let path = environment["TUNNEL_CONFIG"], !path.isEmpty { return expandTilde(path, home: home) }
        // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            return joinPath(xdg, "tunnel/tunnels.toml")
        }
        return joinPath(home, ".config/tunnel/tunnels.toml")
    }

    private static func joinPath(_ directory: String, _ rest: String) -> String {
        directory.hasSuffix("/") ? directory + rest : directory + "/" + rest
    }

    static func build(bytes: [UInt8], path: String, environment: [String: String]) -> Config {
        var reader = ConfigReader(path: path, home: homeDirectory(environment), defaultUser: System.userName(environment))
        let (table, syntaxError) = TOMLParser.parsePartially(bytes: bytes)
        if let syntaxError {
            let error = ConfigError(location: syntaxError.position.location(in: path), message: syntaxError.message)
            let names = table["tunnels"]?.table?.keys ?? []
            return Config(path: path, profileNames: names, errors: [error], nameSet: Set(names), fileErrors: [error],
                          hasSyntaxError: true, profileErrors: [:], profiles: [:])
        }
        reader.read(table)
        let all = reader.fileErrors + reader.profileNames.flatMap { reader.profileErrors[$0] ?? [] }
        var config = Config(path: path, profileNames: reader.profileNames, errors: sortedByPosition(all), nameSet: Set(reader.profileNames),
                            fileErrors: sortedByPosition(reader.fileErrors), hasSyntaxError: false,
                            profileErrors: reader.profileErrors.mapValues(sortedByPosition), profiles: reader.profiles)
        config.sshConfig = reader.defaultSSHConfig
        config.daemon = reader.daemon
        config.daemonErrors = sortedByPosition(reader.daemonErrors)
        return config
    }
}
