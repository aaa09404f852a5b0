import TunnelPOSIX

/// Supervisor-wide settings: the `[daemon]` table of the profiles file.
public struct DaemonSettings: Sendable, Equatable {
    /// Where the Prometheus endpoint listens; nil: no endpoint (the default).
    public var metrics: MetricsAddress?
    /// Allows a metrics address other machines can reach.
    public var isPublic: Bool

    public init(metrics: MetricsAddress? = nil, isPublic: Bool = false) {
        self.metrics = metrics
        self.isPublic = isPublic
    }

    public static let keys = ["metrics", "public"]
}

/// `metrics = "HOST:PORT"`: an IP literal (IPv6 in brackets) or `localhost`, and a port.
public struct MetricsAddress: Sendable, Hashable, CustomStringConvertible {
    /// Canonical, without brackets: "127.0.0.1", "::1".
    public let host: String
    public let isIPv6: Bool
    public let port: UInt16

    public init(host: String, isIPv6: Bool, port: UInt16) {
        self.host = host
        self.isIPv6 = isIPv6
        self.port = port
    }

    public var isLoopback: Bool { BindAddress(host: host, isIPv6: isIPv6).isLoopback }

    /// "127.0.0.1:9469", "[::1]:9469".
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Why `text` is not a metrics address, worded to follow "metrics: ".
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    public static func parse(_ text: String) throws(ParseError) -> MetricsAddress {
        let hostText: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ParseError(reason: "\(quoted(text)) is not HOST:PORT (an IPv6 address is written \"[::1]:9469\")")
            }
            hostText = text[...close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw ParseError(reason: parts.count > 2
                    ? "\(quoted(text)) is not HOST:PORT (write an IPv6 address in brackets: \"[::1]:9469\")"
                    : "\(quoted(text)) is not HOST:PORT (e.g. \"127.0.0.1:9469\")")
            }
            hostText = parts[0]
            portText = parts[1]
        }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let port = Int(portText), (1...65535).contains(port) else {
            throw ParseError(reason: "\(quoted(text)): port \(quoted(String(portText))) must be 1-65535")
        }
        if hostText == "localhost" { return MetricsAddress(host: "127.0.0.1", isIPv6: false, port: UInt16(port)) }
        // Unbracketed IPv6 was refused above (more than one colon).
        guard let bind = BindAddress(ipLiteral: String(hostText)) else {
            throw ParseError(reason: "\(quoted(text)): \(quoted(String(hostText))) is not an IP address (or localhost)")
        }
        return MetricsAddress(host: bind.host, isIPv6: bind.isIPv6, port: UInt16(port))
    }
}

extension Config {
    /// The profile names `[daemon]` and friends take from the file: `daemon`
    /// would read as the supervisor's table, not a profile.
    public static let reservedProfileNames: Set<String> = ["daemon"]

    static func reservedNameMessage(_ name: String, path: String) -> String {
        "\(quoted(name)) is not a profile name: [\(name)] in \(path) holds the supervisor's settings (profiles are [tunnels.NAME], and none may be named \(quoted(name)))"
    }

    /// The `[daemon]` table of the file the supervisor was started for. A
    /// missing file means the defaults (no metrics endpoint) when
    /// `missingIsDefault` (a supervisor starting before any profile exists),
    /// and is an error otherwise (a reload keeps what runs); an unreadable or
    /// unparsable file, or a bad `[daemon]` table, throws its errors
    /// (file:line:column). Errors of profiles do not matter here.
    public static func daemonSettings(path: String, environment: [String: String],
                                      missingIsDefault: Bool = true) throws(DaemonSettingsError) -> DaemonSettings {
        let bytes: [UInt8]
        do { bytes = try Files.readRegularFile(path, limit: maxFileSize) } catch {
            if error.reason == .missing && missingIsDefault { return DaemonSettings() }
            throw DaemonSettingsError(inTable: false, errors: ConfigErrors([ConfigError(location: nil, message: loadErrorMessage(error))]))
        }
        let config = build(bytes: bytes, path: path, environment: environment)
        if config.hasSyntaxError { throw DaemonSettingsError(inTable: false, errors: ConfigErrors(config.fileErrors)) }
        if !config.daemonErrors.isEmpty { throw DaemonSettingsError(inTable: true, errors: ConfigErrors(config.daemonErrors)) }
        return config.daemon
    }
}

/// Why `[daemon]` could not be read: the file as a whole (unreadable, a
/// syntax error) or the table itself.
public struct DaemonSettingsError: Error, Sendable, CustomStringConvertible {
    /// The table was read and is wrong (not the file unreadable or unparsable).
    public let inTable: Bool
    public let errors: ConfigErrors
    public var description: String { errors.description }
}

extension ConfigReader {
    /// Reads `[daemon]`; its errors are file-level (they break every profile:
    /// a file the supervisor would refuse is not half-used).
    static func readDaemon(_ entry: TOMLTable.Entry, location: (TOMLPosition) -> SourceLocation) -> (DaemonSettings, [ConfigError]) {
        guard let table = entry.value.table else {
            return (DaemonSettings(), [ConfigError(location: location(entry.value.position),
                                                   message: "daemon: expected a table ([daemon]), found \(entry.value.foundDescription)")])
        }
        var settings = DaemonSettings()
        var errors: [ConfigError] = []
        var metricsLocation: SourceLocation?
        for item in table.entries {
            let value = item.value
            let at = location(value.position)
            switch item.key {
            case "metrics":
                metricsLocation = at
                guard let text = value.string else {
                    errors.append(ConfigError(location: at, message: "daemon.metrics: expected a string (\"127.0.0.1:9469\"), found \(value.foundDescription)"))
                    continue
                }
                do throws(MetricsAddress.ParseError) { settings.metrics = try MetricsAddress.parse(text) } catch {
                    errors.append(ConfigError(location: at, message: "daemon.metrics: \(error)"))
                }
            case "public":
                guard let flag = value.boolean else {
                    errors.append(ConfigError(location: at, message: "daemon.public: expected a boolean (true or false), found \(value.foundDescription)"))
                    continue
                }
                settings.isPublic = flag
            default:
                errors.append(ConfigError(location: location(item.keyPosition),
                                          message: "daemon: unknown key \(quoted(item.key))\(didYouMean(item.key, among: DaemonSettings.keys))"))
            }
        }
        if let address = settings.metrics, !address.isLoopback, !settings.isPublic, let metricsLocation {
            let reach = BindAddress(host: address.host, isIPv6: address.isIPv6).isWildcard ? "every interface" : "the network"
            errors.append(ConfigError(location: metricsLocation,
                                      message: "daemon.metrics: \(address) is not a loopback address, so the metrics would be reachable from \(reach); set public = true in [daemon] to allow it"))
        }
        return errors.isEmpty ? (settings, []) : (DaemonSettings(), errors)
    }
}
