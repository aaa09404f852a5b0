/// Why a remote forward spec is invalid; the description is one line naming the spec.
public struct RemoteForwardSpecError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The spec as written.
    public let spec: String
    /// What is wrong with it, e.g. `target port 99999 is out of range (1-65535)`.
    public let reason: String

    public var description: String { "remote \(quoted(spec)): \(reason)" }
}

/// One `ssh -R` forward: `[bind:]port:host:hostport`. The SSH server listens
/// on bind:port; each connection it accepts there comes back through the
/// session and is connected from this machine to host:hostport.
public struct RemoteForwardSpec: Hashable, Sendable, CustomStringConvertible {
    /// The address the server listens on. Without one, 127.0.0.1: the
    /// server's own loopback (OpenSSH without GatewayPorts binds loopback
    /// whatever is asked).
    public let bind: BindAddress
    /// The port the server listens on; 0 lets the server pick (written `0` or `auto`).
    public let port: UInt16
    /// Hostname or IP address (IPv6 without brackets) on this machine's side,
    /// resolved here.
    public let targetHost: String
    public let targetPort: UInt16
    /// The spec as written.
    public let text: String

    /// The listener would be reachable from other machines than the server.
    public var isPublic: Bool { !bind.isLoopback }

    /// Whether both would ask the server for the same address. Server-picked
    /// ports (0) never collide.
    public func collides(with other: RemoteForwardSpec) -> Bool {
        port != 0 && port == other.port && bind.overlaps(other.bind)
    }

    /// What the server is asked to listen on: "127.0.0.1", "::1", "0.0.0.0".
    public var requestHost: String { bind.host }

    /// "127.0.0.1:8080", "[::1]:9000", "127.0.0.1:auto"; with `boundPort`,
    /// the port the server allocated.
    public func listenDescription(boundPort: UInt16? = nil) -> String {
        let shown = boundPort ?? port
        return "\(bind):\(shown == 0 ? "auto" : String(shown))"
    }

    /// "localhost:3000", "[::1]:5432 (postgresql)".
    public var targetDescription: String {
        let host = targetHost.contains(":") ? "[\(targetHost)]" : targetHost
        let service = ServiceNames.name(forPort: targetPort).map { " (\($0))" } ?? ""
        return "\(host):\(targetPort)\(service)"
    }

    /// "remote 127.0.0.1:8080 -> localhost:3000".
    public var description: String { "remote \(listenDescription()) -> \(targetDescription)" }

    static let syntax = "expected [bind:]port:host:hostport (the server listens on bind:port; host:hostport is reached from this machine)"

    public init(bind: BindAddress, port: UInt16, targetHost: String, targetPort: UInt16, text: String) {
        self.bind = bind
        self.port = port
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.text = text
    }

    /// Parses `[bind:]port:host:hostport`. IPv6 addresses must be in brackets,
    /// so fields are split on ":" outside brackets only.
    public static func parse(_ text: String) throws(RemoteForwardSpecError) -> RemoteForwardSpec {
        func failure(_ reason: String) -> RemoteForwardSpecError { RemoteForwardSpecError(spec: text, reason: reason) }

        if text.isEmpty { throw failure(syntax) }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw failure("a forward must not contain spaces or control characters")
        }
        if text.hasPrefix("/") || text.contains(":/") {
            throw failure("Unix socket paths are not supported (libssh2 1.10 forwards TCP only)")
        }
        let fields = try fields(of: text, failure: failure)
        let bindField: Substring?
        switch fields.count {
        case 3: bindField = nil
        case 4: bindField = fields[0]
        case 1, 2:
            // `ssh -R [bind:]port` alone is a SOCKS proxy on the server.
            let last = fields[fields.count - 1]
            let hint = !last.isEmpty && last.allSatisfy(\.isASCIIDigit) ? " (a remote SOCKS proxy, `-R [bind:]port` alone, is not supported)" : ""
            throw failure(syntax + hint)
        default:
            throw failure(syntax + " (put IPv6 addresses in brackets, e.g. [::1])")
        }
        let rest = fields.suffix(3)
        let (portField, hostField, hostPortField) = (rest[rest.startIndex], rest[rest.startIndex + 1], rest[rest.startIndex + 2])
        return RemoteForwardSpec(bind: try bind(bindField, failure: failure),
                                 port: try listenPort(portField, failure: failure),
                                 targetHost: try targetHost(hostField, failure: failure),
                                 targetPort: try targetPort(hostPortField, failure: failure),
                                 text: text)
    }

    /// The shared field parsers, with `-R`'s names for the fields.
    private static func fields(of text: String, failure: (String) -> RemoteForwardSpecError) throws(RemoteForwardSpecError) -> [Substring] {
        do { return try SpecFields.split(text) } catch { throw failure(error.reason) }
    }

    private static func bind(_ field: Substring?, failure: (String) -> RemoteForwardSpecError) throws(RemoteForwardSpecError) -> BindAddress {
        do { return try SpecFields.bind(field, named: "the server's bind address") } catch { throw failure(error.reason) }
    }

    private static func listenPort(_ field: Substring, failure: (String) -> RemoteForwardSpecError) throws(RemoteForwardSpecError) -> UInt16 {
        do { return try SpecFields.listenPort(field, named: "the server's port", zeroMeans: "one the server picks") } catch { throw failure(error.reason) }
    }

    private static func targetHost(_ field: Substring, failure: (String) -> RemoteForwardSpecError) throws(RemoteForwardSpecError) -> String {
        do { return try SpecFields.host(field, named: "target host") } catch { throw failure(error.reason) }
    }

    private static func targetPort(_ field: Substring, failure: (String) -> RemoteForwardSpecError) throws(RemoteForwardSpecError) -> UInt16 {
        do { return try SpecFields.port(field, named: "target port") } catch { throw failure(error.reason) }
    }
}
