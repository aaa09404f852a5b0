import TunnelTestSupport
import XCTest
@testable import TunnelSSH

/// Several UserKnownHostsFile, HostKeyAlias and HashKnownHosts.
final class HostKeyLookupTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var ed: GeneratedKey!
    private var other: GeneratedKey!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        other = try generateKey(in: dir, name: "other", type: "ed25519")
    }

    override func tearDown() { dir = nil }

    private func entry(_ patterns: String, _ key: GeneratedKey) -> String {
        "\(patterns) \(key.publicType) \(key.publicBase64)"
    }

    private func lookup(_ files: [String], host: String = "db.example", port: UInt16 = 22, alias: String? = nil, hashed: Bool = false) throws -> HostKeyVerifier.Lookup {
        try HostKeyVerifier.Lookup.load(paths: files.map { dir.file($0) }, host: host, port: port, alias: alias, hashed: hashed)
    }

    func testKeyTrustedInTheSecondFile_isTrusted_andNothingIsWritten() throws {
        try dir.write("second", "\(entry("db.example", ed))\n")
        let outcome = try HostKeyVerifier.verify(ed.hostKey, try lookup(["first", "second"]), acceptNew: true)
        XCTAssertEqual(outcome, .trusted(line: 1))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.file("first")), "a trusted key is never written")
    }

    func testUnknownKey_isLearnedIntoTheFirstFileOnly() throws {
        try dir.write("second", "\(entry("elsewhere", other))\n")
        let outcome = try HostKeyVerifier.verify(ed.hostKey, try lookup(["first", "second"]), acceptNew: true)
        XCTAssertEqual(outcome, .learned(line: entry("db.example", ed)))
        XCTAssertEqual(try dir.read("first"), entry("db.example", ed) + "\n")
        XCTAssertEqual(try dir.read("second"), "\(entry("elsewhere", other))\n")
    }

    func testOtherKeyInTheSecondFile_isAChangedKey_namingThatFileAndLine() throws {
        try dir.write("first", "\(entry("unrelated", other))\n")
        try dir.write("second", "# comment\n\(entry("db.example", other))\n")
        do {
            _ = try HostKeyVerifier.verify(ed.hostKey, try lookup(["first", "second"]), acceptNew: true)
            XCTFail("a changed key must be refused")
        } catch let failure as HostKeyFailure {
            XCTAssertEqual(failure.kind, .changed)
            XCTAssertTrue(failure.message.contains("remove line 2 of \(dir.file("second")) and connect again"), failure.message)
        }
    }

    func testRevokedInAnyFile_winsOverTrustedInAnother() throws {
        try dir.write("first", "\(entry("db.example", ed))\n")
        try dir.write("second", "@revoked * \(ed.publicType) \(ed.publicBase64)\n")
        do {
            _ = try HostKeyVerifier.verify(ed.hostKey, try lookup(["first", "second"]), acceptNew: true)
            XCTFail("a revoked key must be refused")
        } catch let failure as HostKeyFailure {
            XCTAssertEqual(failure.kind, .revoked)
            XCTAssertTrue(failure.message.contains("\(dir.file("second")):1"), failure.message)
        }
    }

    func testHostKeyAlias_isTheNameLookedUpAndRecorded_withoutThePort() throws {
        try dir.write("kh", "\(entry("[db.example]:2222", other))\n")
        let learned = try HostKeyVerifier.verify(ed.hostKey, try lookup(["kh"], port: 2222, alias: "prod-db"), acceptNew: true)
        XCTAssertEqual(learned, .learned(line: entry("prod-db", ed)), "the host's own [db.example]:2222 entry is not consulted under an alias")
        let again = try HostKeyVerifier.verify(ed.hostKey, try lookup(["kh"], host: "10.9.9.9", port: 22, alias: "prod-db"), acceptNew: false)
        XCTAssertEqual(again, .trusted(line: 2))
    }

    func testHashKnownHosts_writesAHashedNameThatSSHKeygenFinds() throws {
        let outcome = try HostKeyVerifier.verify(ed.hostKey, try lookup(["kh"], port: 2222, hashed: true), acceptNew: true)
        let written = try dir.read("kh")
        guard case .learned(let line) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(written, line + "\n")
        XCTAssertTrue(line.hasPrefix("|1|"), line)
        XCTAssertFalse(line.contains("db.example"), "the name must not be readable: \(line)")
        XCTAssertTrue(line.hasSuffix(" \(ed.publicType) \(ed.publicBase64)"), line)
        // ssh-keygen -F hashes the name as ssh does and finds the line.
        let found = try sshKeygen(["-F", "[db.example]:2222", "-f", dir.file("kh")])
        XCTAssertTrue(found.contains(ed.publicBase64), found)
        XCTAssertEqual(try HostKeyVerifier.verify(ed.hostKey, try lookup(["kh"], port: 2222), acceptNew: false), .trusted(line: 1))
        XCTAssertThrowsError(try HostKeyVerifier.verify(ed.hostKey, try lookup(["kh"], port: 22), acceptNew: false), "hashed under [db.example]:2222 only")
    }

    func testHashedLines_useAFreshSaltEachTime() {
        let a = KnownHosts.hashedLine(name: "db.example", keyType: ed.publicType, key: ed.blob)
        let b = KnownHosts.hashedLine(name: "db.example", keyType: ed.publicType, key: ed.blob)
        XCTAssertNotEqual(a, b)
        for line in [a, b] {
            let kh = KnownHosts(path: "/x", text: line)
            XCTAssertEqual(kh.verify(name: "db.example", keyType: ed.publicType, key: ed.blob), .trusted(line: 1))
        }
    }

    func testPreferredAlgorithms_considerEveryFile() throws {
        let ec = try generateKey(in: dir, name: "ec", type: "ecdsa")
        try dir.write("second", "\(entry("db.example", ec))\n")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(try lookup(["first", "second"])).first, "ecdsa-sha2-nistp256")
    }

    func testChosenAlgorithms_keepTheWantedOrder_andCanLeaveNothing() {
        XCTAssertNil(SSHAlgorithms.chosen(nil, from: SSHAlgorithms.ciphers))
        XCTAssertEqual(SSHAlgorithms.chosen(["chacha20-poly1305@openssh.com", "aes256-ctr", "aes128-ctr"], from: SSHAlgorithms.ciphers), ["aes256-ctr", "aes128-ctr"])
        XCTAssertEqual(SSHAlgorithms.chosen(["aes256-gcm@openssh.com"], from: SSHAlgorithms.ciphers), [])
        XCTAssertEqual(SSHAlgorithms.chosen(["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"], from: SSHAlgorithms.macs), ["hmac-sha2-256"])
    }
}
