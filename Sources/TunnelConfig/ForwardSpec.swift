/// The local address a forward listens on.
public struct BindAddress: Hashable, Sendable, CustomStringConvertible {
    /// Canonical text without brackets: "127.0.0.1", "::1", "0.0.0.0".
    public let host: String
    public let isIPv6: Bool

    /// 127.0.0.0/8 or ::1: reachable from this machine only.
    public var isLoopback: Bool {
        guard let bytes = System.parseIP(host, ipv6: isIPv6)?.bytes else { return false }
        if isIPv6 { return bytes == [UInt8](repeating: 0, count: 15) + [1] }
        return bytes[0] == 127
    }

    /// 0.0.0.0 or ::, i.e. every interface of the family.
    public var isWildcard: Bool { host == "0.0.0.0" || host == "::" }

    /// "127.0.0.1" or "[::1]", ready to have ":port" appended.
    public var description: String { isIPv6 ? "[\(host)]" : host }

    static let loopbackIPv4 = BindAddress(host: "127.0.0.1", isIPv6: false)
    static let anyIPv4 = BindAddress(host: "0.0.0.0", isIPv6: false)
    static let loopbackIPv6 = BindAddress(host: "::1", isIPv6: true)
    static let anyIPv6 = BindAddress(host: "::", isIPv6: true)

    init(host: String, isIPv6: Bool) {
        self.host = host
        self.isIPv6 = isIPv6
    }

    /// An IPv4 literal, or an IPv6 literal with or without brackets, in canonical form.
    init?(ipLiteral text: String) {
        if text.hasPrefix("[") && text.hasSuffix("]") && text.count >= 2 {
            guard let ip = System.parseIP(String(text.dropFirst().dropLast()), ipv6: true) else { return nil }
            self.init(host: ip.canonical, isIPv6: true)
        } else if let ip = System.parseIP(text, ipv6: false) {
            self.init(host: ip.canonical, isIPv6: false)
        } else if let ip = System.parseIP(text, ipv6: true) {
            self.init(host: ip.canonical, isIPv6: true)
        } else {
            return nil
        }
    }

    /// Whether listeners on both addresses (on the same port) would collide. IPv6
    /// listeners are V6ONLY, so the families never overlap; a wildcard overlaps
    /// every address of its family.
    public func overlaps(_ other: BindAddress) -> Bool {
        isIPv6 == other.isIPv6 && (host == other.host || isWildcard || other.isWildcard)
    }
}

/// Why a forward spec is invalid; the description is one line naming the spec.
public struct ForwardSpecError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The spec as written.
    public let spec: String
    /// What is wrong with it, e.g. `remote port 99999 is out of range (1-65535)`.
    public let reason: String
    /// The key or flag it was written under: "forward", "dynamic".
    public let keyword: String

    public init(spec: String, reason: String, keyword: String = "forward") {
        self.spec = spec
        self.reason = reason
        self.keyword = keyword
    }

    public var description: String { "\(keyword) \(text)" }
    /// Without the keyword: "\"1080x\": local port ..." for `-D 1080x`.
    public var text: String { "\(quoted(spec)): \(reason)" }
}

/// One local listener: an `ssh -L` forward (`[bind:]port:host:hostport`) or
/// an `ssh -D` SOCKS proxy (`[bind:]port`).
public struct ForwardSpec: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// `-L`: every client goes to remoteHost:remotePort.
        case local
        /// `-D`: each client says where it goes, in SOCKS4, 4a or 5.
        case dynamic
    }

    public let kind: Kind
    /// A local Unix socket path (`/dir/.s.PGSQL.5432:host:hostport`) instead
    /// of bind and port.
    public var localPath: String? = nil
    public let bind: BindAddress
    /// Written as `localhost`, `*` or with no bind address: like ssh, the
    /// forward also listens on the IPv6 counterpart of `bind` (see `ipv6Companion`).
    public var meansBothFamilies = false
    /// 0 means "let the kernel pick a free port" (written `0` or `auto`).
    public let localPort: UInt16
    /// Hostname or IP address, IPv6 without brackets; resolved by the SSH server.
    public let remoteHost: String
    public let remotePort: UInt16
    /// The spec as written in the config.
    public let text: String

    /// The listener is reachable from other machines (the bind is not loopback).
    public var isPublic: Bool { localPath == nil && !bind.isLoopback }

    /// The second address a name that covers both families stands for: ::1
    /// for `localhost` (or no bind address), :: for `*`. Clients that resolve
    /// `localhost` to ::1 first then reach the forward, as with `ssh -L`.
    public var ipv6Companion: BindAddress? {
        guard meansBothFamilies, localPath == nil else { return nil }
        return bind.isWildcard ? .anyIPv6 : .loopbackIPv6
    }

    /// Whether both forwards' listeners would claim the same local address.
    /// Kernel-picked ports (0) never collide.
    public func collides(with other: ForwardSpec) -> Bool {
        if localPath != nil || other.localPath != nil { return localPath == other.localPath }
        return localPort != 0 && localPort == other.localPort && bind.overlaps(other.bind)
    }

    /// Whether this forward's listener would collide with one bound at
    /// `address` ("127.0.0.1:5433", "[::1]:5433", a Unix socket path).
    public func collides(withListeningAddress address: String) -> Bool {
        if let localPath { return localPath == address }
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]),
              let bound = BindAddress(ipLiteral: String(address[..<colon])) else { return false }
        return localPort != 0 && localPort == port && bind.overlaps(bound)
    }

    /// "127.0.0.1:5433", "[::1]:5433", "127.0.0.1:auto", "/run/pg/.s.PGSQL.5432".
    public var localDescription: String {
        localPath ?? "\(bind):\(localPort == 0 ? "auto" : String(localPort))"
    }

    /// "localhost:5432 (postgresql)", "[::1]:8081"; "socks" for `-D`.
    public var remoteDescription: String {
        if kind == .dynamic { return "socks" }
        let host = remoteHost.contains(":") ? "[\(remoteHost)]" : remoteHost
        let service = ServiceNames.name(forPort: remotePort).map { " (\($0))" } ?? ""
        return "\(host):\(remotePort)\(service)"
    }

    /// "127.0.0.1:5433 -> localhost:5432 (postgresql)".
    public var description: String { "\(localDescription) -> \(remoteDescription)" }

    static let syntax = "expected [bind:]port:host:hostport"

    /// Parses `[bind:]port:host:hostport`. IPv6 addresses must be in brackets, so
    /// the spec is split into fields with brackets kept whole, never on every ":".
    public static func parse(_ text: String) throws(ForwardSpecError) -> ForwardSpec {
        func failure(_ reason: String) -> ForwardSpecError { ForwardSpecError(spec: text, reason: reason) }

        if text.isEmpty { throw failure(syntax) }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw failure("a forward must not contain spaces or control characters")
        }
        if text.hasPrefix("/") { return try parseUnixLocal(text, failure: failure) }
        let fields = try splitFields(text, failure: failure)
        // "5433:localhost:5432:" is a complete spec plus a stray ":", not a bind address of "5433".
        if fields.count == 4, fields[3].isEmpty, (try? parseBind(fields[0], failure: failure)) == nil {
            throw failure(syntax + " (it ends with \":\")")
        }
        let bindField: Substring?
        let rest: ArraySlice<Substring>
        switch fields.count {
        case 3: (bindField, rest) = (nil, fields[0...])
        case 4: (bindField, rest) = (fields[0], fields[1...])
        default:
            let hint = fields.count > 4 ? " (put IPv6 addresses in brackets, e.g. [::1])" : ""
            throw failure(syntax + hint)
        }
        let (portField, hostField, hostPortField) = (rest[rest.startIndex], rest[rest.startIndex + 1], rest[rest.startIndex + 2])

        let bind = try parseBind(bindField, failure: failure)
        let localPort = try parseLocalPort(portField, failure: failure)
        let remoteHost = try parseRemoteHost(hostField, failure: failure)
        let remotePort = try parseRemotePort(hostPortField, failure: failure)
        var spec = ForwardSpec(kind: .local, bind: bind, localPort: localPort, remoteHost: remoteHost, remotePort: remotePort, text: text)
        spec.meansBothFamilies = SpecFields.meansBothFamilies(bindField)
        return spec
    }

    /// `/path/to/socket:host:hostport`, as ssh writes a Unix-socket -L: the
    /// path runs to the first ":".
    private static func parseUnixLocal(_ text: String, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> ForwardSpec {
        guard let colon = text.firstIndex(of: ":") else { throw failure("expected /path/to/socket:host:hostport") }
        let path = String(text[..<colon])
        // sockaddr_un holds 107 bytes and a NUL.
        guard path.utf8.count <= 107 else { throw failure("socket path is \(path.utf8.count) bytes; a Unix socket path holds at most 107") }
        guard !path.hasSuffix("/"), !path.split(separator: "/").contains(where: { $0 == ".." }) else {
            throw failure("socket path \(quoted(path)) must name a file, without \"..\"")
        }
        let fields = try splitFields(String(text[text.index(after: colon)...]), failure: failure)
        guard fields.count == 2 else { throw failure("expected /path/to/socket:host:hostport") }
        var spec = ForwardSpec(kind: .local, bind: .loopbackIPv4, localPort: 0,
                               remoteHost: try parseRemoteHost(fields[0], failure: failure),
                               remotePort: try parseRemotePort(fields[1], failure: failure), text: text)
        spec.localPath = path
        return spec
    }

    static let dynamicSyntax = "expected [bind:]port"

    /// Parses an `ssh -D` spec: `port`, `bind:port` or `[v6]:port`.
    public static func parseDynamic(_ text: String) throws(ForwardSpecError) -> ForwardSpec {
        func failure(_ reason: String) -> ForwardSpecError { ForwardSpecError(spec: text, reason: reason, keyword: "dynamic") }
        if text.isEmpty { throw failure(dynamicSyntax) }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw failure("a forward must not contain spaces or control characters")
        }
        let fields = try splitFields(text, failure: failure)
        let bind: BindAddress
        let port: UInt16
        switch fields.count {
        case 1: (bind, port) = (.loopbackIPv4, try parseLocalPort(fields[0], failure: failure))
        case 2: (bind, port) = (try parseBind(fields[0], failure: failure), try parseLocalPort(fields[1], failure: failure))
        default: throw failure(dynamicSyntax + (fields.count > 2 ? " (put IPv6 addresses in brackets, e.g. [::1]:1080)" : ""))
        }
        var spec = ForwardSpec(kind: .dynamic, bind: bind, localPort: port, remoteHost: "", remotePort: 0, text: text)
        spec.meansBothFamilies = SpecFields.meansBothFamilies(fields.count == 2 ? fields[0] : nil)
        return spec
    }

    /// The shared field parsers, with `-L`'s names for the fields.
    private static func splitFields(_ text: String, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> [Substring] {
        do { return try SpecFields.split(text) } catch { throw failure(error.reason) }
    }

    private static func parseBind(_ field: Substring?, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> BindAddress {
        do { return try SpecFields.bind(field, named: "bind address") } catch { throw failure(error.reason) }
    }

    private static func parseLocalPort(_ field: Substring, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> UInt16 {
        do { return try SpecFields.listenPort(field, named: "local port", zeroMeans: "any free port") } catch { throw failure(error.reason) }
    }

    private static func parseRemoteHost(_ field: Substring, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> String {
        do { return try SpecFields.host(field, named: "remote host") } catch { throw failure(error.reason) }
    }

    private static func parseRemotePort(_ field: Substring, failure: (String) -> ForwardSpecError) throws(ForwardSpecError) -> UInt16 {
        do { return try SpecFields.port(field, named: "remote port") } catch { throw failure(error.reason) }
    }
}

/// The fields of `[bind:]port:host:hostport`, shared by `ForwardSpec` (-L)
/// and `RemoteForwardSpec` (-R), which differ only in what the fields are
/// called in messages.
enum SpecFields {
    struct Problem: Error { let reason: String }

    /// Splits on ":" outside brackets; a bracketed field must be the whole field.
    static func split(_ text: String) throws(Problem) -> [Substring] {
        var fields: [Substring] = []
        var fieldStart = text.startIndex
        var i = text.startIndex
        while i < text.endIndex {
            switch text[i] {
            case "[":
                guard i == fieldStart else { throw Problem(reason: "\"[\" may only start a field (an IPv6 address in brackets)") }
                guard let close = text[i...].firstIndex(of: "]") else { throw Problem(reason: "\"[\" without a matching \"]\"") }
                i = text.index(after: close)
                if i < text.endIndex && text[i] != ":" { throw Problem(reason: "expected \":\" after \"]\"") }
                continue
            case "]":
                throw Problem(reason: "\"]\" without a matching \"[\"")
            case ":":
                fields.append(text[fieldStart..<i])
                fieldStart = text.index(after: i)
            default:
                break
            }
            i = text.index(after: i)
        }
        fields.append(text[fieldStart...])
        return fields
    }

    /// nil: loopback; "" or "*": every IPv4 interface.
    static func bind(_ field: Substring?, named name: String) throws(Problem) -> BindAddress {
        guard let field else { return .loopbackIPv4 }
        if field.isEmpty || field == "*" { return .anyIPv4 }
        if field.lowercased() == "localhost" { return .loopbackIPv4 }
        if let address = BindAddress(ipLiteral: String(field)), field.hasPrefix("[") || !address.isIPv6 {
            return address
        }
        throw Problem(reason: "\(name) must be an IP address, localhost or * (found \(quoted(String(field))))")
    }

    /// Whether a bind field names both address families, as ssh reads it: none
    /// (loopback), `localhost`, `*` or empty (every interface).
    static func meansBothFamilies(_ field: Substring?) -> Bool {
        guard let field else { return true }
        return field.isEmpty || field == "*" || field.lowercased() == "localhost"
    }

    /// A port to listen on: 0 or `auto` for one picked for us.
    static func listenPort(_ field: Substring, named name: String, zeroMeans: String) throws(Problem) -> UInt16 {
        if field.isEmpty { throw Problem(reason: "\(name) is missing") }
        if field.lowercased() == "auto" { return 0 }
        guard field.allSatisfy(\.isASCIIDigit) else { throw Problem(reason: "\(name) \(quoted(String(field))) is not a number") }
        guard let port = Int(field), port <= 65535 else {
            throw Problem(reason: "\(name) \(field) is out of range (1-65535, or 0/auto for \(zeroMeans))")
        }
        return UInt16(port)
    }

    /// A host name or IP address; IPv6 in brackets, returned without them.
    static func host(_ field: Substring, named name: String) throws(Problem) -> String {
        if field.isEmpty { throw Problem(reason: "\(name) is missing") }
        if field.hasPrefix("[") {
            let inner = field.dropFirst().dropLast()
            guard System.parseIP(String(inner), ipv6: true) != nil else {
                throw Problem(reason: "\(name) \(quoted(String(field))) is not an IPv6 address")
            }
            return String(inner)
        }
        return String(field)
    }

    /// A port to connect to: a number or a service name.
    static func port(_ field: Substring, named name: String) throws(Problem) -> UInt16 {
        if field.isEmpty { throw Problem(reason: "\(name) is missing") }
        if field.allSatisfy(\.isASCIIDigit) {
            guard let port = Int(field), (1...65535).contains(port) else { throw Problem(reason: "\(name) \(field) is out of range (1-65535)") }
            return UInt16(port)
        }
        guard let port = ServiceNames.port(named: String(field)) else {
            throw Problem(reason: "\(name) \(quoted(String(field))) is not a number or a known service name")
        }
        return port
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
