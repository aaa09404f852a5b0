internal import CLibSSH2
internal import COpenSSLKeys
import Glibc
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
    /// @cert-authority lines: (line, host patterns). Host certificates cannot
    /// be negotiated with libssh2 1.10, so these only explain a refusal.
    public let certAuthorityLines: [(line: Int, patterns: [String])]

    /// The file, and where each host line's fields lie in it. Files of
    /// 100,000 lines are nearly all other hosts: patterns are matched in
    /// place, and a key is decoded only for a line that matches.
    private let text: [UInt8]
    private let lines: [Line]
    /// Decoded up front: a revoked key is refused under any name, and such lines are few.
    private let revoked: [Entry]

    /// One host line: offsets into `text`, which fit in 32 bits (files are capped far below).
    private struct Line: Sendable {
        let number: UInt32
        let hosts: Field, type: Field, key: Field
        let isRevoked: Bool
    }

    private struct Field: Sendable {
        let start: UInt32, end: UInt32
        init(_ range: Range<Int>) { start = UInt32(range.lowerBound); end = UInt32(range.upperBound) }
        var range: Range<Int> { Int(start)..<Int(end) }
    }

    /// Every valid entry in file order. This decodes every key: lookups use `entries(matching:)`.
    public var entries: [Entry] {
        text.withUnsafeBufferPointer { b in lines.compactMap { Self.entry($0, in: b) } }
    }

    /// The name OpenSSH looks a server up by.
    public static func lookupName(host: String, port: UInt16) -> String {
        let h = host.lowercased()
        return port == 22 ? h : "[\(h)]:\(port)"
    }

    public init(path: String, text: String) {
        self.init(path: path, bytes: Array(text.utf8))
    }

    /// The file's bytes, split as OpenSSH splits them (not Characters: "\r\n"
    /// is one to Swift, and splitting Characters took seconds on a file of
    /// 100,000 lines).
    init(path: String, bytes: [UInt8]) {
        self.path = path
        precondition(bytes.count < UInt32.max, "known_hosts text too large")
        var lines: [Line] = []
        var authorities: [(line: Int, patterns: [String])] = []
        var revoked: [Entry] = []
        bytes.withUnsafeBufferPointer { b in
            var number = 0
            var start = 0
            while start <= b.count {
                let end = Self.lineEnd(b, from: start)
                defer { start = end + 1 }
                number += 1
                var cursor = start
                guard var hosts = Self.field(b, &cursor, end), b[hosts.lowerBound] != UInt8(ascii: "#") else { continue }
                var isRevoked = false
                if b[hosts.lowerBound] == UInt8(ascii: "@") {
                    let marker = b[hosts]
                    if marker.elementsEqual("@cert-authority".utf8), let patterns = Self.field(b, &cursor, end) {
                        authorities.append((number, Self.patterns(b[patterns])))
                    }
                    guard marker.elementsEqual("@revoked".utf8), let next = Self.field(b, &cursor, end) else { continue }
                    isRevoked = true
                    hosts = next
                }
                guard let type = Self.field(b, &cursor, end), let key = Self.field(b, &cursor, end) else { continue }
                let line = Line(number: UInt32(number), hosts: Field(hosts), type: Field(type), key: Field(key), isRevoked: isRevoked)
                lines.append(line)
                if isRevoked, let entry = Self.entry(line, in: b) { revoked.append(entry) }
            }
        }
        self.text = bytes
        self.lines = lines
        self.revoked = revoked
        self.certAuthorityLines = authorities
    }

    /// Where the line from `start` ends: its "\n" or the end of the text.
    private static func lineEnd(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        guard start < b.count, let base = b.baseAddress, let newline = memchr(base + start, 0x0A, b.count - start) else { return b.count }
        return UnsafeRawPointer(newline) - UnsafeRawPointer(base)
    }

    /// The next field of a line (fields are separated by spaces, tabs and a CR), moving `cursor` past it.
    private static func field(_ b: UnsafeBufferPointer<UInt8>, _ cursor: inout Int, _ end: Int) -> Range<Int>? {
        func isSeparator(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") }
        while cursor < end && isSeparator(b[cursor]) { cursor += 1 }
        guard cursor < end else { return nil }
        let start = cursor
        while cursor < end && !isSeparator(b[cursor]) { cursor += 1 }
        return start..<cursor
    }

    private static func patterns(_ field: Slice<UnsafeBufferPointer<UInt8>>) -> [String] {
        field.split(separator: UInt8(ascii: ",")).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The line's entry, or nil when, as OpenSSH skips it, its key is not a key blob of the named type.
    private static func entry(_ line: Line, in b: UnsafeBufferPointer<UInt8>) -> Entry? {
        let encoded = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: b[line.key.range]))
        var key = [UInt8](repeating: 0, count: encoded.count * 3 / 4 + 3)
        guard let count = key.withUnsafeMutableBytes({ Base64.decode(encoded, into: $0) }) else { return nil }
        key.removeSubrange(count...)
        let type = b[line.type.range]
        var reader = SSHReader(key)
        guard let named = reader.string(), named.elementsEqual(type) else { return nil }
        return Entry(line: Int(line.number), patterns: patterns(b[line.hosts.range]),
                     keyType: String(decoding: type, as: UTF8.self), key: key, isRevoked: line.isRevoked)
    }

    /// Reads the file; a missing file is an empty one. It must be a regular
    /// file: a FIFO or a device is refused instead of blocking the connection.
    public static func load(path: String) throws(HostKeyFailure) -> KnownHosts {
        // ssh_config's "keep no known hosts" idiom: empty, as ssh reads it.
        if path == nullDevice { return KnownHosts(path: path, text: "") }
        do {
            let bytes = try Files.readRegularFile(path, limit: maxFileSize)
            return KnownHosts(path: path, bytes: bytes)
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
        var name = name
        return name.withUTF8 { name in
            text.withUnsafeBufferPointer { b in
                var matcher = NameMatcher(name: name)
                return lines.compactMap { matcher.matches(b[$0.hosts.range]) ? Self.entry($0, in: b) : nil }
            }
        }
    }

    /// Lines of @cert-authority entries whose patterns match `name`.
    public func certAuthorityLines(matching name: String) -> [Int] {
        certAuthorityLines.filter { KnownHosts.matches(patterns: $0.patterns, name: name) }.map(\.line)
    }

    /// Key types already trusted for this host, to be preferred in the handshake.
    public func knownKeyTypes(for name: String) -> [String] {
        Self.keyTypes(of: entries(matching: name))
    }

    /// The distinct types of entries not revoked, in file order.
    public static func keyTypes(of matching: [Entry]) -> [String] {
        var seen: [String] = []
        for e in matching where !e.isRevoked && !seen.contains(e.keyType) { seen.append(e.keyType) }
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
        verify(matching: entries(matching: name), keyType: keyType, key: key)
    }

    /// `matching`: this file's `entries(matching:)` for the name, found once
    /// by the caller (scanning a large file is the costly part).
    public func verify(matching: [Entry], keyType: String, key: [UInt8]) -> Verdict {
        if let r = matching.first(where: { $0.isRevoked && $0.key == key }) { return .revoked(line: r.line) }
        // A revoked key is refused whatever host pattern it was listed under.
        if let r = revoked.first(where: { $0.key == key }) { return .revoked(line: r.line) }
        let trusted = matching.filter { !$0.isRevoked }
        if let hit = trusted.first(where: { $0.keyType == keyType && $0.key == key }) { return .trusted(line: hit.line) }
        if trusted.isEmpty { return .unknown }
        // Known under other keys. The handshake preferred the known types, so
        // a server that answers with anything else no longer has those keys.
        return .changed(trusted.map { (line: $0.line, fingerprint: Fingerprint.sha256($0.key), type: $0.keyType) })
    }

    /// OpenSSH's match_hostname: any negated match excludes, else any positive match includes.
    static func matches(patterns: [String], name: String) -> Bool {
        var name = name
        return name.withUTF8 { name in
            var matcher = NameMatcher(name: name)
            var positive = false
            for var pattern in patterns {
                switch pattern.withUTF8({ matcher.match($0[...]) }) {
                case .excluded: return false
                case .included: positive = true
                case nil: break
                }
            }
            return positive
        }
    }

    static func hmacSHA1(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        let hmac = HMACSHA1()
        key.withUnsafeBytes { k in data.withUnsafeBytes { d in out.withUnsafeMutableBytes { hmac.mac(key: k, data: d, into: $0) } } }
        return out
    }

    /// `*` and `?` wildcards, as in OpenSSH's match_pattern.
    static func glob(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        p.withUnsafeBufferPointer { p in s.withUnsafeBufferPointer { s in glob(p[...], s, lowercasing: false) } }
    }

    /// `lowercasing`: compares the pattern's ASCII letters in lower case, as
    /// if it had been lowercased first.
    static func glob(_ p: Slice<UnsafeBufferPointer<UInt8>>, _ s: UnsafeBufferPointer<UInt8>, lowercasing: Bool) -> Bool {
        var pi = p.startIndex, si = 0
        var star = -1, mark = 0
        @inline(__always) func at(_ i: Int) -> UInt8 {
            let c = p[i]
            return lowercasing && c &- UInt8(ascii: "A") < 26 ? c | 0x20 : c
        }
        while si < s.count {
            if pi < p.endIndex && (p[pi] == UInt8(ascii: "?") || at(pi) == s[si]) {
                pi += 1; si += 1
            } else if pi < p.endIndex && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.endIndex && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.endIndex
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

/// Host patterns matched against one name, in place in the file's bytes.
struct NameMatcher {
    enum Match { case included, excluded }

    let name: UnsafeBufferPointer<UInt8>
    /// Made at the first hashed pattern, then kept for the others.
    private var hmac: HMACSHA1?

    init(name: UnsafeBufferPointer<UInt8>) { self.name = name }

    /// A comma-separated host field: OpenSSH's match_hostname.
    mutating func matches(_ field: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        var positive = false
        var start = field.startIndex
        while start < field.endIndex {
            let end = field[start...].firstIndex(of: UInt8(ascii: ",")) ?? field.endIndex
            if end > start {
                switch match(field[start..<end]) {
                case .excluded: return false
                case .included: positive = true
                case nil: break
                }
            }
            start = end + 1
        }
        return positive
    }

    /// One pattern: hashed, or a glob, possibly negated.
    mutating func match(_ pattern: Slice<UnsafeBufferPointer<UInt8>>) -> Match? {
        if pattern.count > 2 && pattern.first == UInt8(ascii: "|") && pattern.dropFirst().first == UInt8(ascii: "1")
            && pattern.dropFirst(2).first == UInt8(ascii: "|") { return hashedMatch(pattern) ? .included : nil }
        let negated = pattern.first == UInt8(ascii: "!")
        let body = negated ? pattern.dropFirst() : pattern
        guard glob(body) else { return nil }
        return negated ? .excluded : .included
    }

    private func glob(_ pattern: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        if pattern.allSatisfy({ $0 < 0x80 }) { return KnownHosts.glob(pattern, name, lowercasing: true) }
        // Beyond ASCII the pattern is lowercased as String does it, as it always was.
        let lowered = Array(String(decoding: pattern, as: UTF8.self).lowercased().utf8)
        return lowered.withUnsafeBufferPointer { KnownHosts.glob($0[...], name, lowercasing: false) }
    }

    /// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`. The parts are split on
    /// "|" with empty ones dropped, as this always read them.
    private mutating func hashedMatch(_ pattern: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        var parts = (0..<0, 0..<0, 0..<0)
        var count = 0
        var start = pattern.startIndex
        while start < pattern.endIndex {
            let end = pattern[start...].firstIndex(of: UInt8(ascii: "|")) ?? pattern.endIndex
            if end > start {
                switch count {
                case 0: parts.0 = start..<end
                case 1: parts.1 = start..<end
                case 2: parts.2 = start..<end
                default: return false
                }
                count += 1
            }
            start = end + 1
        }
        guard count == 3, pattern.base[parts.0].elementsEqual("1".utf8) else { return false }
        if hmac == nil { hmac = HMACSHA1() }
        let hmac = hmac!
        let name = UnsafeRawBufferPointer(name)
        return Self.decode(pattern.base[parts.1]) { salt in
            Self.decode(pattern.base[parts.2]) { hash in
                guard let salt, let hash, hash.count == 20 else { return false }
                return withUnsafeTemporaryAllocation(byteCount: 20, alignment: 1) { mac in
                    hmac.mac(key: salt, data: name, into: mac)
                    return mac.elementsEqual(hash)
                }
            }
        }
    }

    /// Base64 decoded into stack memory; nil when it is not base64.
    private static func decode<R>(_ text: Slice<UnsafeBufferPointer<UInt8>>, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        withUnsafeTemporaryAllocation(byteCount: text.count * 3 / 4 + 3, alignment: 1) { out in
            let count = Base64.decode(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: text)), into: out)
            return body(count.map { UnsafeRawBufferPointer(rebasing: out[..<$0]) })
        }
    }
}

/// HMAC-SHA1 under one key after another, with OpenSSL's HMAC fetched once.
final class HMACSHA1 {
    private let context: OpaquePointer

    init() {
        // Without it no hashed name could ever match, and every hashed host
        // would read as unknown: under accept-new, a changed key would be learnt.
        guard let context = tunnel_hmac_sha1_new() else { preconditionFailure("OpenSSL cannot make an HMAC-SHA1 context") }
        self.context = context
    }

    deinit { tunnel_hmac_sha1_free(context) }

    /// The 20-byte MAC into the start of `out`.
    func mac(key: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 20)
        let status = tunnel_hmac_sha1(context, key.baseAddress, key.count, data.baseAddress, data.count,
                                      out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        precondition(status == 0, "OpenSSL's HMAC-SHA1 failed")
    }
}

/// Why a host key was not accepted. Never retried automatically.
public struct HostKeyFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable { case unknown, changed, revoked, unreadable, unwritable, noKey }
    public let kind: Kind
    public let message: String
    public var description: String { message }
}
