/// One jump host, as `ssh -J` writes it: `[user@]host[:port]` or
/// `ssh://[user@]host[:port]`, an IPv6 host in brackets.
public struct JumpHop: Equatable, Sendable, CustomStringConvertible {
    /// nil: the profile's user.
    public let user: String?
    public let host: String
    public let port: UInt16
    /// What ssh_config says for this hop's own name; nil: the profile's.
    public let login: HopLogin?
    /// False when the text named no port (22 then stands for ssh_config's
    /// Port, if any). Not part of `==`: it says how the hop was written.
    public let portIsExplicit: Bool

    public static func == (a: JumpHop, b: JumpHop) -> Bool {
        a.user == b.user && a.host == b.host && a.port == b.port && a.login == b.login
    }

    public init(user: String?, host: String, port: UInt16 = 22, login: HopLogin? = nil, portIsExplicit: Bool = true) {
        self.user = user
        self.host = host
        self.port = port
        self.login = login
        self.portIsExplicit = portIsExplicit
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return (user.map { "\($0)@" } ?? "") + "\(shownHost):\(port)"
    }

    /// The most hops a chain may have, the target included.
    public static let maxHops = 8

    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let text: String
        public let reason: String
        public var description: String { "\(quoted(text)): \(reason)" }
    }

    public static func parse(_ text: String) throws(ParseError) -> JumpHop {
        func failure(_ reason: String) -> ParseError { ParseError(text: text, reason: reason) }
        var rest = Substring(text)
        if rest.hasPrefix("ssh://") { rest = rest.dropFirst("ssh://".count) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty else { throw failure("no host") }
        guard !rest.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } == true }) else {
            throw failure("must not contain whitespace or control characters")
        }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            if user!.isEmpty { throw failure("empty user before @") }
        }
        var host: String
        var port: UInt16 = 22
        var portIsExplicit = false
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw failure("unclosed [ in an IPv6 address") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw failure("expected :port after ]") }
                port = try parsePort(after.dropFirst(), failure)
                portIsExplicit = true
            }
            // ssh takes any host in brackets (its -G prints ProxyJump ssh://h:p as [h]:p); one with ":" must be IPv6.
            guard !host.contains(":") || System.parseIP(host, ipv6: true) != nil else { throw failure("\(quoted(host)) is not an IPv6 address") }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw failure("write an IPv6 host in brackets: [2001:db8::1]:22") }
            host = String(parts[0])
            if parts.count == 2 {
                port = try parsePort(parts[1], failure)
                portIsExplicit = true
            }
        }
        guard !host.isEmpty else { throw failure("no host") }
        return JumpHop(user: user, host: host, port: port, portIsExplicit: portIsExplicit)
    }

    private static func parsePort(_ text: Substring, _ failure: (String) -> ParseError) throws(ParseError) -> UInt16 {
        guard let n = Int(text), (1...65535).contains(n) else { throw failure("port \(quoted(String(text))) is not 1-65535") }
        return UInt16(n)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var s = Substring(self)
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension Profile {
    /// What connecting to hop `index` of `hops` takes: that hop's host, port,
    /// user and login, with this profile's timeouts; the proxy command, if
    /// any, reaches the first hop.
    public func hop(_ index: Int) -> Profile {
        let hop = hops[index]
        var profile = Profile(name: name, host: hop.host, port: hop.port, user: hop.user ?? user,
                              forwards: [], knownHosts: knownHosts, keepalive: keepalive,
                              keepaliveCount: keepaliveCount, connectTimeout: connectTimeout, holdTimeout: holdTimeout,
                              proxyCommand: index == 0 ? proxyCommand : nil, sshConfig: sshConfig, location: location)
        profile.login = hop.login ?? login
        return profile
    }
}
