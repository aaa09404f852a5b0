internal import CLibSSH2
internal import COpenSSLKeys
import TunnelPOSIX

/// OpenSSH known_hosts, read with OpenSSH's rules: `[host]:port` names for
/// ports other than 22 (and only those), hashed names (|1|salt|hash),
/// wildcard and negated patterns, @revoked keys. libssh2's own parser is not
/// used: it stops at the first line it cannot parse and falls back from
/// `[host]:port` to `host`.
public struct KnownHosts: Sendable {
    public struct Entry: Equatable, Sendable {
        public let line: Int
        public let patterns: [String]
        public let keyType: String
        public let key: [UInt8]
        public let isRevoked: Bool
    }

    public let path: String
    public let entries: [Entry]
    /// @cert-authority lines: (line, host patterns). Host certificates cannot
    /// be negotiated with libssh2 1.10, so these only explain a refusal.
    public let certAuthorityLines: [(line: Int, patterns: [String])]

    /// The name OpenSSH looks a server up by.
    public static func lookupName(host: String, port: UInt16) -> String {
        let h = host.lowercased()
        return port == 22 ? h : "[\(h)]:\(port)"
    }

    public init(path: String, text: String) {
        self.path = path
        var entries: [Entry] = []
        var authorities: [(line: Int, patterns: [String])] = []
        var lineNumber = 0
        // "\r\n" is one Character in Swift: split on both so CRLF files parse.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let first = fields.first, !first.hasPrefix("#") else { continue }
            var revoked = false
            if first.hasPrefix("@") {
                if first == "@cert-authority" && fields.count >= 2 {
                    authorities.append((lineNumber, fields[1].split(separator: ",").map(String.init)))
                }
                guard first == "@revoked" else { continue }
                revoked = true
                fields.removeFirst()
            }
            // Like OpenSSH, a line whose key is not a key blob of the named type is skipped.
            guard fields.count >= 3, let key = Base64.decode(fields[2]), Fingerprint.keyType(ofBlob: key) == fields[1] else { continue }
            entries.append(Entry(line: lineNumber, patterns: fields[0].split(separator: ",").map(String.init),
                                 keyType: fields[1], key: key, isRevoked: revoked))
        }
        self.entries = entries
        self.certAuthorityLines = authorities
    }

    /// Reads the file; a missing file is an empty one. It must be a regular
    /// file: a FIFO or a device is refused instead of blocking the connection.
    public static func load(path: String) throws(HostKeyFailure) -> KnownHosts {
        // ssh_config's "keep no known hosts" idiom: empty, as ssh reads it.
        if path == nullDevice { return KnownHosts(path: path, text: "") }
        do {
            let bytes = try Files.readRegularFile(path, limit: maxFileSize)
            return KnownHosts(path: path, text: String(decoding: bytes, as: UTF8.self))
        } catch {
            switch error.reason {
            case .missing:
                return KnownHosts(path: path, text: "")
            case .system(let failure):
                throw HostKeyFailure(kind: .unreadable, message: "cannot read known_hosts file \(path): \(failure.errno)")
            case .notRegular, .tooLarge:
                throw HostKeyFailure(kind: .unreadable, message: "known_hosts: \(error)")
            }
        }
    }

    /// A known_hosts path that holds nothing and keeps nothing learned.
    public static let nullDevice = "/dev/null"

    /// Far more than any real known_hosts file (hundreds of thousands of lines).
    public static let maxFileSize = 64 << 20

    /// Entries whose host patterns match `name`.
    public func entries(matching name: String) -> [Entry] {
        entries.filter { KnownHosts.matches(patterns: $0.patterns, name: name) }
    }

    /// Lines of @cert-authority entries whose patterns match `name`.
    public func certAuthorityLines(matching name: String) -> [Int] {
        certAuthorityLines.filter { KnownHosts.matches(patterns: $0.patterns, name: name) }.map(\.line)
    }

    /// Key types already trusted for this host, to be preferred in the handshake.
    public func knownKeyTypes(for name: String) -> [String] {
        var seen: [String] = []
        for e in entries(matching: name) where !e.isRevoked && !seen.contains(e.keyType) { seen.append(e.keyType) }
        return seen
    }

    public enum Verdict: Equatable, Sendable {
        case trusted(line: Int)
        case unknown
        /// Known under this name, with other keys: the lines and their fingerprints.
        case changed([(line: Int, fingerprint: String, type: String)])
        case revoked(line: Int)

        public static func == (a: Verdict, b: Verdict) -> Bool {
            switch (a, b) {
            case (.trusted(let x), .trusted(let y)): return x == y
            case (.unknown, .unknown): return true
            case (.revoked(let x), .revoked(let y)): return x == y
            case (.changed(let x), .changed(let y)): return x.map { $0.line } == y.map { $0.line }
            default: return false
            }
        }
    }

    public func verify(name: String, keyType: String, key: [UInt8]) -> Verdict {
        let matching = entries(matching: name)
        if let r = matching.first(where: { $0.isRevoked && $0.key == key }) { return .revoked(line: r.line) }
        // A revoked key is refused whatever host pattern it was listed under.
        if let r = entries.first(where: { $0.isRevoked && $0.key == key }) { return .revoked(line: r.line) }
        let trusted = matching.filter { !$0.isRevoked }
        if let hit = trusted.first(where: { $0.keyType == keyType && $0.key == key }) { return .trusted(line: hit.line) }
        if trusted.isEmpty { return .unknown }
        // Known under other keys. The handshake preferred the known types, so
        // a server that answers with anything else no longer has those keys.
        return .changed(trusted.map { (line: $0.line, fingerprint: Fingerprint.sha256($0.key), type: $0.keyType) })
    }

    /// OpenSSH's match_hostname: any negated match excludes, else any positive match includes.
    static func matches(patterns: [String], name: String) -> Bool {
        var positive = false
        for pattern in patterns {
            if pattern.hasPrefix("|1|") {
                if hashedMatch(pattern, name: name) { positive = true }
                continue
            }
            let negated = pattern.hasPrefix("!")
            let body = negated ? String(pattern.dropFirst()) : pattern
            if glob(Array(body.lowercased().utf8), Array(name.utf8)) {
                if negated { return false }
                positive = true
            }
        }
        return positive
    }

    static func hashedMatch(_ pattern: String, name: String) -> Bool {
        let parts = pattern.split(separator: "|", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[0] == "1", let salt = Base64.decode(parts[1]), let hash = Base64.decode(parts[2]) else { return false }
        return hmacSHA1(key: salt, data: Array(name.utf8)) == hash
    }

    static func hmacSHA1(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        key.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in
                _ = tunnel_hmac_sha1(k.baseAddress, Int32(key.count), d.baseAddress, data.count, &out)
            }
        }
        return out
    }

    /// `*` and `?` wildcards, as in OpenSSH's match_pattern.
    static func glob(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var pi = 0, si = 0
        var star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// The line `tunnel` adds (or tells the user to add).
    public static func line(name: String, keyType: String, key: [UInt8]) -> String {
        "\(name) \(keyType) \(Base64.encode(key))"
    }

    /// The line under a hashed name (HashKnownHosts): `|1|salt|HMAC-SHA1(salt, name)`
    /// with a fresh 20-byte salt, as ssh-keygen -H writes it.
    public static func hashedLine(name: String, keyType: String, key: [UInt8]) -> String {
        var salt = [UInt8](repeating: 0, count: 20)
        precondition(tunnel_random_bytes(&salt, Int32(salt.count)) == 1, "OpenSSL's RAND_bytes failed")
        let hash = hmacSHA1(key: salt, data: Array(name.utf8))
        return line(name: "|1|\(Base64.encode(salt))|\(Base64.encode(hash))", keyType: keyType, key: key)
    }

    /// Appends a line, creating the file (0600) and its directory (0700).
    public static func append(line: String, to path: String) throws(HostKeyFailure) {
        if path == nullDevice { return }
        do {
            if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
                let dir = String(path[..<slash])
                if !Files.exists(dir) { try Files.makeDirectories(dir, mode: 0o700) }
            }
            try Files.append(line + "\n", to: path, mode: 0o600)
        } catch {
            throw HostKeyFailure(kind: .unwritable, message: "cannot add the host key to \(path): \(error)")
        }
    }
}

/// Why a host key was not accepted. Never retried automatically.
public struct HostKeyFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable { case unknown, changed, revoked, unreadable, unwritable, noKey }
    public let kind: Kind
    public let message: String
    public var description: String { message }
}
