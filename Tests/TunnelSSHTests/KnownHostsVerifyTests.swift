import Glibc
import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class KnownHostsVerifyTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var a: GeneratedKey!   // ed25519
    private var b: GeneratedKey!   // ed25519
    private var c: GeneratedKey!   // ecdsa-sha2-nistp256

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        a = try generateKey(in: dir, name: "a", type: "ed25519")
        b = try generateKey(in: dir, name: "b", type: "ed25519")
        c = try generateKey(in: dir, name: "c", type: "ecdsa")
    }

    override func tearDown() { dir = nil }

    private func entry(_ patterns: String, _ key: GeneratedKey) -> String {
        "\(patterns) \(key.publicType) \(key.publicBase64)"
    }

    func testKnownHostsVerify_sameKeyListed_isTrustedWithItsLineNumber() {
        let kh = KnownHosts(path: "/kh", text: "# header\n\(entry("other", b))\n\(entry("example.com", a))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .trusted(line: 3))
    }

    func testKnownHostsVerify_hostNotListed_isUnknown() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("other.example", a))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .unknown)
    }

    func testKnownHostsVerify_emptyFile_isUnknown() {
        let kh = KnownHosts(path: "/kh", text: "")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .unknown)
    }

    func testKnownHostsVerify_hostListedOnlyOnAnotherPort_isUnknown() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("[example.com]:2222", a))\n\(entry("example.com", b))\n")
        XCTAssertEqual(kh.verify(name: "[example.com]:2200", keyType: a.publicType, key: a.blob), .unknown)
        XCTAssertEqual(kh.verify(name: "[example.com]:2222", keyType: a.publicType, key: a.blob), .trusted(line: 1))
    }

    func testKnownHostsVerify_hostListedWithOtherKeys_isChangedWithEveryLineFingerprintAndType() {
        let text = """
        # keys for example.com
        \(entry("example.com", a))
        \(entry("unrelated", b))
        \(entry("example.com,192.0.2.1", c))
        """
        let kh = KnownHosts(path: "/kh", text: text)
        let verdict = kh.verify(name: "example.com", keyType: b.publicType, key: b.blob)
        guard case .changed(let known) = verdict else { return XCTFail("expected changed, got \(verdict)") }
        XCTAssertEqual(known.map(\.line), [2, 4])
        XCTAssertEqual(known.map(\.fingerprint), [Fingerprint.sha256(a.blob), Fingerprint.sha256(c.blob)])
        XCTAssertEqual(known.map(\.type), ["ssh-ed25519", "ecdsa-sha2-nistp256"])
    }

    func testKnownHostsVerify_changedVerdicts_compareByLineNumbers() {
        XCTAssertEqual(KnownHosts.Verdict.changed([(line: 2, fingerprint: "x", type: "t")]),
                       KnownHosts.Verdict.changed([(line: 2, fingerprint: "y", type: "u")]))
        XCTAssertNotEqual(KnownHosts.Verdict.changed([(line: 2, fingerprint: "x", type: "t")]),
                          KnownHosts.Verdict.changed([(line: 3, fingerprint: "x", type: "t")]))
        XCTAssertNotEqual(KnownHosts.Verdict.trusted(line: 1), KnownHosts.Verdict.revoked(line: 1))
    }

    func testKnownHostsVerify_oneOfSeveralKeysMatches_isTrustedAtTheMatchingLine() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("example.com", a))\n\(entry("example.com", c))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: c.publicType, key: c.blob), .trusted(line: 2))
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .trusted(line: 1))
    }

    func testKnownHostsVerify_sameBlobUnderADifferentTypeName_isNotTrusted() {
        let kh = KnownHosts(path: "/kh", text: "example.com ssh-rsa \(a.publicBase64)\n")
        XCTAssertNotEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .trusted(line: 1))
    }

    func testKnownHostsVerify_revokedKeyForThisHost_isRevokedEvenIfAlsoTrusted() {
        let text = """
        \(entry("example.com", a))
        @revoked \(entry("example.com", a))
        """
        let kh = KnownHosts(path: "/kh", text: text)
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .revoked(line: 2))
    }

    func testKnownHostsVerify_revokedKeyUnderWildcard_isRevoked() {
        let kh = KnownHosts(path: "/kh", text: "@revoked \(entry("*", b))\n\(entry("example.com", a))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: b.publicType, key: b.blob), .revoked(line: 1))
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .trusted(line: 2))
    }

    func testKnownHostsVerify_keyRevokedUnderAnotherHostPattern_isStillRevoked() {
        let kh = KnownHosts(path: "/kh", text: "@revoked \(entry("other.example", b))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: b.publicType, key: b.blob), .revoked(line: 1))
    }

    func testKnownHostsVerify_revokedLineOnly_doesNotMakeAnotherKeyChanged() {
        let kh = KnownHosts(path: "/kh", text: "@revoked \(entry("example.com", b))\n")
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .unknown)
    }

    func testKnownHostsVerify_hashedEntryFromSSHKeygen_isTrustedForItsNameOnly() throws {
        try dir.write("known_hosts", "\(entry("example.com", a))\n\(entry("[example.com]:2222", c))\n")
        try sshKeygen(["-H", "-f", dir.file("known_hosts")])
        let kh = try KnownHosts.load(path: dir.file("known_hosts"))
        XCTAssertEqual(kh.verify(name: "example.com", keyType: a.publicType, key: a.blob), .trusted(line: 1))
        XCTAssertEqual(kh.verify(name: "[example.com]:2222", keyType: c.publicType, key: c.blob), .trusted(line: 2))
        XCTAssertEqual(kh.verify(name: "example.org", keyType: a.publicType, key: a.blob), .unknown)
        XCTAssertEqual(kh.verify(name: "example.com", keyType: b.publicType, key: b.blob), .changed([(line: 1, fingerprint: "", type: "")]))
    }

    func testKnownHostsVerify_knownKeyTypes_listsDistinctTypesInFileOrderWithoutRevoked() throws {
        let rsa = try generateKey(in: dir, name: "rsa", type: "rsa", bits: 2048)
        let text = """
        \(entry("example.com", c))
        \(entry("other", rsa))
        \(entry("*.com", a))
        \(entry("example.com", b))
        @revoked \(entry("example.com", rsa))
        """
        let kh = KnownHosts(path: "/kh", text: text)
        XCTAssertEqual(kh.knownKeyTypes(for: "example.com"), ["ecdsa-sha2-nistp256", "ssh-ed25519"])
        XCTAssertEqual(kh.knownKeyTypes(for: "other"), ["ssh-rsa"])
        XCTAssertEqual(kh.knownKeyTypes(for: "nobody.org"), [])
    }

    func testKnownHostsVerify_knownKeyTypes_respectsThePort() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("[example.com]:2222", c))\n\(entry("example.com", a))\n")
        XCTAssertEqual(kh.knownKeyTypes(for: KnownHosts.lookupName(host: "example.com", port: 2222)), ["ecdsa-sha2-nistp256"])
        XCTAssertEqual(kh.knownKeyTypes(for: KnownHosts.lookupName(host: "example.com", port: 22)), ["ssh-ed25519"])
    }

    func testKnownHostsLoad_missingFileIsEmpty_aFIFOOrDeviceIsRefusedWithoutBlocking() throws {
        XCTAssertEqual(try KnownHosts.load(path: dir.file("missing")).entries, [])
        XCTAssertEqual(mkfifo(dir.file("fifo"), 0o600), 0)
        XCTAssertThrowsError(try KnownHosts.load(path: dir.file("fifo"))) { error in
            XCTAssertEqual(error as? HostKeyFailure,
                           HostKeyFailure(kind: .unreadable, message: "known_hosts: \(self.dir.file("fifo")) is a FIFO, not a regular file"))
        }
        XCTAssertThrowsError(try KnownHosts.load(path: "/dev/zero")) { error in
            XCTAssertEqual((error as? HostKeyFailure)?.message, "known_hosts: /dev/zero is a character device, not a regular file")
        }
    }
}
