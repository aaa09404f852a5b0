import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class KnownHostsMatchingTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var ed: GeneratedKey!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        ed = try generateKey(in: dir, name: "ed", type: "ed25519")
    }

    override func tearDown() { dir = nil }

    private func matches(_ patterns: String, _ host: String, port: UInt16 = 22) -> Bool {
        let kh = KnownHosts(path: "/x", text: "\(patterns) \(ed.publicType) \(ed.publicBase64)\n")
        XCTAssertEqual(kh.entries.count, 1, "the test line must parse")
        return !kh.entries(matching: KnownHosts.lookupName(host: host, port: port)).isEmpty
    }

    func testKnownHostsMatching_plainName_matchesOnlyThatHost() {
        XCTAssertTrue(matches("example.com", "example.com"))
        XCTAssertFalse(matches("example.com", "www.example.com"))
        XCTAssertFalse(matches("example.com", "example.co"))
        XCTAssertFalse(matches("example.com", "example.com.evil"))
    }

    func testKnownHostsMatching_isCaseInsensitive() {
        XCTAssertTrue(matches("Example.COM", "example.com"))
        XCTAssertTrue(matches("example.com", "EXAMPLE.com"))
        XCTAssertTrue(matches("[Example.COM]:2222", "example.COM", port: 2222))
    }

    func testKnownHostsMatching_commaList_matchesAnyListedName() {
        XCTAssertTrue(matches("alpha,beta,192.0.2.1", "alpha"))
        XCTAssertTrue(matches("alpha,beta,192.0.2.1", "beta"))
        XCTAssertTrue(matches("alpha,beta,192.0.2.1", "192.0.2.1"))
        XCTAssertFalse(matches("alpha,beta,192.0.2.1", "gamma"))
        XCTAssertFalse(matches("alpha,beta,192.0.2.1", "192.0.2.11"))
    }

    func testKnownHostsMatching_starWildcard_matchesAnyRun() {
        XCTAssertTrue(matches("*.example.com", "www.example.com"))
        XCTAssertTrue(matches("*.example.com", "a.b.example.com"))
        XCTAssertFalse(matches("*.example.com", "example.com"))
        XCTAssertFalse(matches("*.example.com", "www.example.org"))
        XCTAssertTrue(matches("192.0.2.*", "192.0.2.200"))
        XCTAssertTrue(matches("*", "anything.at.all"))
        XCTAssertTrue(matches("db*prod*", "db-eu-prod-3"))
        XCTAssertFalse(matches("db*prod*", "db-eu-staging"))
    }

    func testKnownHostsMatching_questionMarkWildcard_matchesExactlyOneCharacter() {
        XCTAssertTrue(matches("host?", "host1"))
        XCTAssertFalse(matches("host?", "host"))
        XCTAssertFalse(matches("host?", "host12"))
        XCTAssertTrue(matches("h??t", "host"))
    }

    func testKnownHostsMatching_negatedPattern_excludesEvenWhenAnotherPatternMatches() {
        XCTAssertTrue(matches("*.example.com,!secret.example.com", "www.example.com"))
        XCTAssertFalse(matches("*.example.com,!secret.example.com", "secret.example.com"))
        XCTAssertFalse(matches("!secret.example.com,*.example.com", "secret.example.com"), "order must not matter")
    }

    func testKnownHostsMatching_negatedPatternAlone_matchesNothing() {
        XCTAssertFalse(matches("!secret.example.com", "www.example.com"))
        XCTAssertFalse(matches("!secret.example.com", "secret.example.com"))
    }

    func testKnownHostsMatching_negatedWildcard_excludesAllItCovers() {
        XCTAssertFalse(matches("*,!*.internal", "db.internal"))
        XCTAssertTrue(matches("*,!*.internal", "db.example.com"))
    }

    func testKnownHostsMatching_bracketedPortEntry_matchesOnlyThatPort() {
        XCTAssertTrue(matches("[example.com]:2222", "example.com", port: 2222))
        XCTAssertFalse(matches("[example.com]:2222", "example.com", port: 2223))
        XCTAssertFalse(matches("[example.com]:2222", "example.com", port: 22))
        XCTAssertFalse(matches("[example.com]:2222", "example.com", port: 222))
    }

    func testKnownHostsMatching_plainEntry_doesNotMatchANonStandardPort() {
        XCTAssertTrue(matches("example.com", "example.com", port: 22))
        XCTAssertFalse(matches("example.com", "example.com", port: 2222))
    }

    func testKnownHostsMatching_bracketedPort22Entry_isNotTheLookupNameForPort22() {
        // OpenSSH looks port 22 up as the bare name only.
        XCTAssertFalse(matches("[example.com]:22", "example.com", port: 22))
    }

    func testKnownHostsMatching_wildcardInsideBrackets_matchesHostsOnThatPort() {
        XCTAssertTrue(matches("[*.example.com]:2222", "db.example.com", port: 2222))
        XCTAssertFalse(matches("[*.example.com]:2222", "db.example.com", port: 22))
        XCTAssertFalse(matches("*.example.com", "db.example.com", port: 2222))
    }

    func testKnownHostsMatching_ipv6WithPort_usesBrackets() {
        XCTAssertTrue(matches("[::1]:2200", "::1", port: 2200))
        XCTAssertTrue(matches("::1", "::1"))
        XCTAssertFalse(matches("::1", "::1", port: 2200))
    }

    // MARK: hashed names

    /// Writes `names` one per line with the ed key, hashes the file with
    /// `ssh-keygen -H` and returns the parsed result.
    private func hashedKnownHosts(_ names: [String]) throws -> KnownHosts {
        let text = names.map { "\($0) \(ed.publicType) \(ed.publicBase64)" }.joined(separator: "\n") + "\n"
        try dir.write("known_hosts", text)
        try sshKeygen(["-H", "-f", dir.file("known_hosts")])
        let hashed = try dir.read("known_hosts")
        XCTAssertFalse(names.contains { hashed.contains($0) }, "ssh-keygen -H left a clear name:\n\(hashed)")
        return KnownHosts(path: dir.file("known_hosts"), text: hashed)
    }

    func testKnownHostsMatching_hashedEntriesFromSSHKeygen_matchTheirOwnNameOnly() throws {
        let kh = try hashedKnownHosts(["example.com", "[example.com]:2222", "192.0.2.9"])
        XCTAssertEqual(kh.entries.count, 3)
        for entry in kh.entries { XCTAssertTrue(entry.patterns[0].hasPrefix("|1|"), entry.patterns[0]) }

        XCTAssertEqual(kh.entries(matching: "example.com").map(\.line), [1])
        XCTAssertEqual(kh.entries(matching: "[example.com]:2222").map(\.line), [2])
        XCTAssertEqual(kh.entries(matching: "192.0.2.9").map(\.line), [3])

        XCTAssertTrue(kh.entries(matching: "example.org").isEmpty)
        XCTAssertTrue(kh.entries(matching: "www.example.com").isEmpty)
        XCTAssertTrue(kh.entries(matching: "[example.com]:2223").isEmpty)
        XCTAssertTrue(kh.entries(matching: "192.0.2.90").isEmpty)
    }

    func testKnownHostsMatching_hashedCommaListFromSSHKeygen_becomesOneHashedLinePerName() throws {
        let kh = try hashedKnownHosts(["alpha.example,10.0.0.1"])
        XCTAssertEqual(kh.entries.count, 2)
        XCTAssertEqual(kh.entries(matching: "alpha.example").count, 1)
        XCTAssertEqual(kh.entries(matching: "10.0.0.1").count, 1)
        XCTAssertNotEqual(kh.entries(matching: "alpha.example").first?.line, kh.entries(matching: "10.0.0.1").first?.line)
        XCTAssertTrue(kh.entries(matching: "alpha").isEmpty)
    }

    func testKnownHostsMatching_hashedEntry_isReachedThroughLookupNameWithMixedCase() throws {
        let kh = try hashedKnownHosts(["db.example.com", "[db.example.com]:2022"])
        XCTAssertEqual(kh.entries(matching: KnownHosts.lookupName(host: "DB.Example.com", port: 22)).map(\.line), [1])
        XCTAssertEqual(kh.entries(matching: KnownHosts.lookupName(host: "DB.Example.com", port: 2022)).map(\.line), [2])
    }

    func testKnownHostsMatching_hashedWithWrongSaltOrMalformedField_matchesNothing() throws {
        let kh = try hashedKnownHosts(["example.com"])
        let pattern = kh.entries[0].patterns[0]
        let parts = pattern.split(separator: "|")
        XCTAssertEqual(parts.count, 3)
        let otherSalt = Base64.encode([UInt8](repeating: 7, count: 20))
        XCTAssertFalse(KnownHosts.matches(patterns: ["|1|\(otherSalt)|\(parts[2])"], name: "example.com"))
        XCTAssertFalse(KnownHosts.matches(patterns: ["|1|\(parts[1])"], name: "example.com"))
        XCTAssertFalse(KnownHosts.matches(patterns: ["|2|\(parts[1])|\(parts[2])"], name: "example.com"))
        XCTAssertTrue(KnownHosts.matches(patterns: [pattern], name: "example.com"))
    }

    func testKnownHostsMatching_hmacSHA1_matchesRFC2202TestCase2() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = KnownHosts.hmacSHA1(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    }

    func testKnownHostsMatching_hmacSHA1_matchesRFC2202TestCase6AndTheEmptyKey() {
        // Test case 6: a key longer than SHA-1's block is hashed first. An
        // empty salt ("|1|=|...") is an empty key, not "the previous key".
        let hex = { (mac: [UInt8]) in mac.map { String(format: "%02x", $0) }.joined() }
        let long = KnownHosts.hmacSHA1(key: [UInt8](repeating: 0xaa, count: 80), data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        XCTAssertEqual(hex(long), "aa4ae5e15272d00e95705637ce8a3b55ed402112")
        XCTAssertEqual(hex(KnownHosts.hmacSHA1(key: [], data: [])), "fbdb1d1b18aa6c08324b7d64b71fb76370690e1d")
        let hash = Base64.encode(KnownHosts.hmacSHA1(key: [], data: Array("example.com".utf8)))
        XCTAssertTrue(KnownHosts.matches(patterns: ["|1|\(Base64.encode(Array("Jefe".utf8)))|x", "|1|=|\(hash)"], name: "example.com"))
    }

    func testKnownHostsMatching_glob_handlesBacktrackingAndTrailingStars() {
        XCTAssertTrue(KnownHosts.glob(Array("a*b*c".utf8), Array("aXbYbZc".utf8)))
        XCTAssertFalse(KnownHosts.glob(Array("a*b*c".utf8), Array("aXbYbZ".utf8)))
        XCTAssertTrue(KnownHosts.glob(Array("abc**".utf8), Array("abc".utf8)))
        XCTAssertTrue(KnownHosts.glob(Array("".utf8), Array("".utf8)))
        XCTAssertFalse(KnownHosts.glob(Array("".utf8), Array("a".utf8)))
        XCTAssertFalse(KnownHosts.glob(Array("a".utf8), Array("".utf8)))
    }
}
