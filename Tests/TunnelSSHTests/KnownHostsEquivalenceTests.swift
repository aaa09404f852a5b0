import TunnelTestSupport
import XCTest
@testable import TunnelSSH

/// The byte-wise reader against the String-wise one it replaced (kept below
/// as `ReferenceKnownHosts`): same entries, lookups and verdicts on tricky
/// and on generated files.
final class KnownHostsEquivalenceTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var ed: GeneratedKey!
    private var ec: GeneratedKey!
    private var rsa: GeneratedKey!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        ec = try generateKey(in: dir, name: "ec", type: "ecdsa")
        rsa = try generateKey(in: dir, name: "rsa", type: "rsa", bits: 2048)
    }

    override func tearDown() { dir = nil }

    private let names = [
        "example.com", "www.example.com", "secret.example.com", "[example.com]:2222", "[example.com]:22",
        "db.internal", "host1", "host12", "192.0.2.1", "::1", "[::1]:2200", "bücher.example", "BÜCHER.example",
        "EXAMPLE.com", "", "*", "!", "a,b", "|1|x",
    ]

    private func assertSameAsReference(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let fast = KnownHosts(path: "/x", text: text)
        let reference = ReferenceKnownHosts(text: text)
        let context = "text: \(text.debugDescription)"
        XCTAssertEqual(fast.entries, reference.entries, context, file: file, line: line)
        XCTAssertEqual(fast.certAuthorityLines.map(\.line), reference.certAuthorityLines.map(\.line), context, file: file, line: line)
        XCTAssertEqual(fast.certAuthorityLines.map(\.patterns), reference.certAuthorityLines.map(\.patterns), context, file: file, line: line)
        var keys = [ed.blob, ec.blob, rsa.blob]
        for entry in reference.entries where !keys.contains(entry.key) { keys.append(entry.key) }
        for name in names {
            let nameContext = "\(context), name: \(name)"
            XCTAssertEqual(fast.entries(matching: name), reference.entries(matching: name), nameContext, file: file, line: line)
            XCTAssertEqual(fast.certAuthorityLines(matching: name), reference.certAuthorityLines(matching: name), nameContext, file: file, line: line)
            XCTAssertEqual(fast.knownKeyTypes(for: name), reference.knownKeyTypes(for: name), nameContext, file: file, line: line)
            for key in keys {
                let type = Fingerprint.keyType(ofBlob: key) ?? ""
                let verdict = fast.verify(name: name, keyType: type, key: key)
                XCTAssertEqual(verdict, reference.verify(name: name, keyType: type, key: key), nameContext, file: file, line: line)
                if case .changed(let known) = verdict, case .changed(let expected) = reference.verify(name: name, keyType: type, key: key) {
                    XCTAssertEqual(known.map(\.fingerprint), expected.map(\.fingerprint), nameContext, file: file, line: line)
                    XCTAssertEqual(known.map(\.type), expected.map(\.type), nameContext, file: file, line: line)
                }
            }
        }
    }

    private func hashed(_ name: String) -> String {
        String(KnownHosts.hashedLine(name: name, keyType: "x", key: []).split(separator: " ")[0])
    }

    func testKnownHostsEquivalence_trickyLines_readAsTheStringReaderReadThem() {
        let e = "\(ed.publicType) \(ed.publicBase64)"
        let c = "\(ec.publicType) \(ec.publicBase64)"
        let r = "\(rsa.publicType) \(rsa.publicBase64)"
        let hash = hashed("example.com").split(separator: "|").map(String.init)  // ["1", salt, hash]
        let lines = [
            "example.com \(e)",
            "*.example.com,!secret.example.com \(c)",
            "!secret.example.com,*.example.com \(r) comment words",
            "host? \(e)",
            "h??t*,192.0.2.* \(c)",
            "[example.com]:2222,[*.example.com]:2222 \(e)",
            "[example.com]:22 \(c)",
            "::1,[::1]:2200 \(e)",
            "Example.COM,EXAMPLE.com \(r)",
            "BÜCHER.example \(e)",
            "bücher.example \(c)",
            "*,!*.internal \(e)",
            "! \(e)",
            "* \(c)",
            ",,a,,,example.com,, \(e)",
            "\(hashed("example.com")) \(e)",
            "\(hashed("[example.com]:2222")),other.example \(c)",
            "\(hashed("")) \(e)",
            "|1||\(hash[1])|\(hash[2]) \(c)",
            "|1|\(hash[1])||\(hash[2])| \(r)",
            "|1|\(hash[1]) \(e)",
            "|2|\(hash[1])|\(hash[2]) \(e)",
            "|1|!!|\(hash[2]) \(e)",
            "|1|=|\(Base64.encode(KnownHosts.hmacSHA1(key: [], data: Array("example.com".utf8)))) \(c)",
            "!|1|\(hash[1])|\(hash[2]) \(e)",
            "@revoked example.com \(c)",
            "@revoked * \(r)",
            "@revoked unrelated.example \(e)",
            "@revoked",
            "@revoked example.com ssh-ed25519",
            "@cert-authority *.example.com \(e)",
            "@cert-authority",
            "@cert-authority example.com",
            "@bogus example.com \(e)",
            "# example.com \(e)",
            "   # indented \(e)",
            "\t  example.com\t\t\(ed.publicType)   \(ed.publicBase64)\t",
            "example.com ssh-ed25519 TODO",
            "example.com ssh-ed25519 \(ec.publicBase64)",
            "example.com ssh-ed25519 !!!not-base64!!!",
            "example.com ssh-ed25519 ====",
            "example.com ssh-ed25519",
            "example.com",
            "",
            "   ",
            "example.com\r\(e)",
            "éxample.com \(e)",
        ]
        for ending in ["\n", "\r\n"] {
            for line in lines { assertSameAsReference(line + ending + "other.example \(e)" + ending) }
            assertSameAsReference(lines.joined(separator: ending))
            assertSameAsReference(lines.joined(separator: ending) + ending)
            assertSameAsReference("\u{FEFF}" + lines.joined(separator: ending))
            assertSameAsReference("\u{FEFF}# comment" + ending + lines.joined(separator: ending))
            assertSameAsReference("\u{FEFF}example.com,host1 \(e)" + ending)
        }
    }

    func testKnownHostsEquivalence_generatedFiles_readAsTheStringReaderReadThem() {
        var random = SplitMix64(seed: 0x6b6e_6f77_6e5f_686f)
        let hosts = [
            "example.com", "*.example.com", "!secret.example.com", "[example.com]:2222", "[*.example.com]:2222",
            "host?", "h*1*", "::1", "[::1]:2200", "EXAMPLE.com", "bücher.example", "*", "!*", "!*.internal",
            hashed("example.com"), hashed("[example.com]:2222"), hashed("host1"), "|1|abc|def", "",
        ]
        let keys = [
            "\(ed.publicType) \(ed.publicBase64)", "\(ec.publicType) \(ec.publicBase64)", "\(rsa.publicType) \(rsa.publicBase64)",
            "ssh-ed25519 \(ec.publicBase64)", "ssh-ed25519 TODO", "ssh-ed25519", "", "ssh-rsa !!",
        ]
        let markers = ["", "", "", "@revoked ", "@cert-authority ", "@other ", "# "]
        let separators = [" ", "  ", "\t", " \t", "\r "]
        let endings = ["\n", "\r\n", "\r\r\n"]
        for _ in 0..<150 {
            var text = random.next(3) == 0 ? "\u{FEFF}" : ""
            for _ in 0..<random.next(8) {
                let count = 1 + random.next(3)
                let patterns = (0..<count).map { _ in random.pick(hosts) }.joined(separator: random.next(4) == 0 ? ",," : ",")
                let key = random.pick(keys).replacingOccurrences(of: " ", with: random.pick(separators))
                text += random.pick(random.next(5) == 0 ? separators : [""]) + random.pick(markers) + patterns
                text += random.pick(separators) + key + random.pick(["", "", " comment", "\t"]) + random.pick(endings)
            }
            assertSameAsReference(text)
        }
    }

    func testKnownHosts_commaBeforeACombiningMark_stillSeparatesPatterns_asInOpenSSH() {
        // Character-wise, "," and U+0301 are one Character and the String
        // reader saw a single pattern; OpenSSH splits bytes, and so does this.
        let kh = KnownHosts(path: "/x", text: "example.com,\u{301}x \(ed.publicType) \(ed.publicBase64)\n")
        XCTAssertEqual(kh.entries(matching: "example.com").map(\.line), [1])
    }

    func testKnownHosts_byteOrderMark_isPartOfTheFirstPattern_asOpenSSHReadsIt() {
        let kh = KnownHosts(path: "/x", text: "\u{FEFF}alpha,beta \(ed.publicType) \(ed.publicBase64)\r\n")
        XCTAssertEqual(kh.entries(matching: "alpha").map(\.line), [])
        XCTAssertEqual(kh.entries(matching: "beta").map(\.line), [1])
    }

    func testKnownHosts_largeFile_findsTheHostsLinesWithTheirNumbers() throws {
        var lines = (0..<20_000).map { "host\($0).example,10.0.\($0 / 256).\($0 % 256) \(ec.publicType) \(ec.publicBase64)" }
        lines[12_345] = "target.example \(ed.publicType) \(ed.publicBase64)"
        lines[19_998] = "@revoked other.example \(ed.publicType) \(ed.publicBase64)"
        lines[7] = "\(hashed("target.example")) \(rsa.publicType) \(rsa.publicBase64)"
        try dir.write("known_hosts", lines.joined(separator: "\n") + "\n")
        let kh = try KnownHosts.load(path: dir.file("known_hosts"))
        XCTAssertEqual(kh.entries(matching: "target.example").map(\.line), [8, 12_346])
        XCTAssertEqual(kh.knownKeyTypes(for: "target.example"), [rsa.publicType, ed.publicType])
        XCTAssertEqual(kh.verify(name: "target.example", keyType: rsa.publicType, key: rsa.blob), .trusted(line: 8))
        XCTAssertEqual(kh.verify(name: "host19999.example", keyType: ed.publicType, key: ed.blob), .revoked(line: 19_999))
        XCTAssertEqual(kh.entries(matching: "10.0.78.31").map(\.line), [20_000])
    }

    func testLookup_matchingEntries_areEachFilesEntriesForTheName() throws {
        try dir.write("a", "db.example \(ed.publicType) \(ed.publicBase64)\nother \(ec.publicType) \(ec.publicBase64)\n")
        try dir.write("b", "# none\n*.example \(ec.publicType) \(ec.publicBase64)\n")
        let lookup = try HostKeyVerifier.Lookup.load(paths: [dir.file("a"), dir.file("b"), dir.file("missing")], host: "db.example", port: 22)
        XCTAssertEqual(lookup.matching.map { $0.map(\.line) }, [[1], [2], []])
        XCTAssertEqual(lookup.matching, lookup.files.map { $0.entries(matching: "db.example") })
    }
}

/// Deterministic choices for generated files.
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next(_ bound: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int((z ^ (z >> 31)) % UInt64(bound))
    }

    mutating func pick<T>(_ items: [T]) -> T { items[next(items.count)] }
}

/// The String-wise known_hosts reader the byte-wise one replaced, as it was:
/// the reference for its rules. It split Characters, which took seconds on
/// large files.
private struct ReferenceKnownHosts {
    let entries: [KnownHosts.Entry]
    let certAuthorityLines: [(line: Int, patterns: [String])]

    init(text: String) {
        var entries: [KnownHosts.Entry] = []
        var authorities: [(line: Int, patterns: [String])] = []
        var lineNumber = 0
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
            guard fields.count >= 3, let key = Base64.decode(fields[2]), Fingerprint.keyType(ofBlob: key) == fields[1] else { continue }
            entries.append(KnownHosts.Entry(line: lineNumber, patterns: fields[0].split(separator: ",").map(String.init),
                                            keyType: fields[1], key: key, isRevoked: revoked))
        }
        self.entries = entries
        self.certAuthorityLines = authorities
    }

    func entries(matching name: String) -> [KnownHosts.Entry] {
        entries.filter { Self.matches(patterns: $0.patterns, name: name) }
    }

    func certAuthorityLines(matching name: String) -> [Int] {
        certAuthorityLines.filter { Self.matches(patterns: $0.patterns, name: name) }.map(\.line)
    }

    func knownKeyTypes(for name: String) -> [String] {
        var seen: [String] = []
        for e in entries(matching: name) where !e.isRevoked && !seen.contains(e.keyType) { seen.append(e.keyType) }
        return seen
    }

    func verify(name: String, keyType: String, key: [UInt8]) -> KnownHosts.Verdict {
        let matching = entries(matching: name)
        if let r = matching.first(where: { $0.isRevoked && $0.key == key }) { return .revoked(line: r.line) }
        if let r = entries.first(where: { $0.isRevoked && $0.key == key }) { return .revoked(line: r.line) }
        let trusted = matching.filter { !$0.isRevoked }
        if let hit = trusted.first(where: { $0.keyType == keyType && $0.key == key }) { return .trusted(line: hit.line) }
        if trusted.isEmpty { return .unknown }
        return .changed(trusted.map { (line: $0.line, fingerprint: Fingerprint.sha256($0.key), type: $0.keyType) })
    }

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
        return KnownHosts.hmacSHA1(key: salt, data: Array(name.utf8)) == hash
    }

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
}
