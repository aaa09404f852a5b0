import TunnelTestSupport
import XCTest
@testable import TunnelSSH
import TunnelPOSIX

final class HostKeyVerifierTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var ed: GeneratedKey!
    private var other: GeneratedKey!
    private var ec: GeneratedKey!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        other = try generateKey(in: dir, name: "other", type: "ed25519")
        ec = try generateKey(in: dir, name: "ec", type: "ecdsa")
    }

    override func tearDown() { dir = nil }

    private func entry(_ patterns: String, _ key: GeneratedKey) -> String {
        "\(patterns) \(key.publicType) \(key.publicBase64)"
    }

    private func failure(_ body: () throws -> Void) -> HostKeyFailure? {
        do {
            try body()
            XCTFail("expected a HostKeyFailure")
            return nil
        } catch let failure as HostKeyFailure {
            return failure
        } catch {
            XCTFail("unexpected error \(error)")
            return nil
        }
    }

    // MARK: preferredAlgorithms

    func testHostKeyVerifier_preferredAlgorithmsForUnknownHost_isTheDefaultOrder() {
        let kh = KnownHosts(path: "/kh", text: "")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "example.com", port: 22), SSHAlgorithms.hostKeys)
    }

    func testHostKeyVerifier_preferredAlgorithms_putsKnownTypesFirst() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("example.com", ec))\n")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "example.com", port: 22),
                       ["ecdsa-sha2-nistp256", "ssh-ed25519", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"])
    }

    func testHostKeyVerifier_preferredAlgorithmsWithSeveralKnownTypes_keepsFileOrderThenTheRest() throws {
        let rsa = try generateKey(in: dir, name: "rsa", type: "rsa", bits: 2048)
        let kh = KnownHosts(path: "/kh", text: "\(entry("example.com", rsa))\n\(entry("example.com", ec))\n")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "Example.com", port: 22),
                       ["ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"])
    }

    func testHostKeyVerifier_preferredAlgorithms_dropsKnownTypesLibssh2CannotOffer() {
        let kh = KnownHosts(path: "/kh", text: "example.com sk-ssh-ed25519@openssh.com \(ed.publicBase64)\n\(entry("example.com", ec))\n")
        let algorithms = HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "example.com", port: 22)
        XCTAssertEqual(algorithms.first, "ecdsa-sha2-nistp256")
        XCTAssertEqual(algorithms.sorted(), SSHAlgorithms.hostKeys.sorted())
    }

    func testHostKeyVerifier_preferredAlgorithms_usesThePortSpecificEntry() {
        let kh = KnownHosts(path: "/kh", text: "\(entry("[example.com]:2222", ec))\n")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "example.com", port: 2222).first, "ecdsa-sha2-nistp256")
        XCTAssertEqual(HostKeyVerifier.preferredAlgorithms(knownHosts: kh, host: "example.com", port: 22), SSHAlgorithms.hostKeys)
    }

    // MARK: verify

    func testHostKeyVerifier_knownKey_isTrustedWithoutTouchingTheFile() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", "# mine\n\(entry("example.com", ed))\n")
        let before = try dir.read("known_hosts")
        let kh = try KnownHosts.load(path: path)
        XCTAssertEqual(try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true), .trusted(line: 2))
        XCTAssertEqual(try dir.read("known_hosts"), before)
    }

    func testHostKeyVerifier_unknownKeyWithAcceptNew_appendsExactlyOneCorrectLine() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", "\(entry("other.example", other))\n")
        let kh = try KnownHosts.load(path: path)

        let outcome = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "Example.com", port: 22, acceptNew: true)

        let expectedLine = "example.com ssh-ed25519 \(ed.publicBase64)"
        XCTAssertEqual(outcome, .learned(line: expectedLine))
        XCTAssertEqual(try dir.read("known_hosts"), "\(entry("other.example", other))\n\(expectedLine)\n")
        let reloaded = try KnownHosts.load(path: path)
        XCTAssertEqual(try HostKeyVerifier.verify(ed.hostKey, knownHosts: reloaded, host: "example.com", port: 22, acceptNew: false), .trusted(line: 2))
    }

    func testHostKeyVerifier_learnedLine_isAcceptedBySSHKeygen() throws {
        let path = dir.file("known_hosts")
        let kh = try KnownHosts.load(path: path)
        _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 2222, acceptNew: true)
        // ssh-keygen -F finds the host the way ssh would and prints the line.
        let found = try sshKeygen(["-F", "[example.com]:2222", "-f", path])
        XCTAssertTrue(found.contains("[example.com]:2222 ssh-ed25519 \(ed.publicBase64)"), found)
    }

    func testHostKeyVerifier_unknownKeyWithAcceptNew_createsMissingParentDirectoriesPrivately() throws {
        let path = dir.file("home/.ssh/sub/known_hosts")
        let kh = try KnownHosts.load(path: path)
        let outcome = try HostKeyVerifier.verify(ec.hostKey, knownHosts: kh, host: "db.internal", port: 2022, acceptNew: true)
        let expectedLine = "[db.internal]:2022 ecdsa-sha2-nistp256 \(ec.publicBase64)"
        XCTAssertEqual(outcome, .learned(line: expectedLine))
        XCTAssertEqual(try dir.read("home/.ssh/sub/known_hosts"), expectedLine + "\n")
        XCTAssertEqual(Files.status(path)?.mode, 0o600)
        XCTAssertEqual(Files.status(dir.file("home/.ssh/sub"))?.mode, 0o700)
        XCTAssertEqual(Files.status(dir.file("home"))?.mode, 0o700)
    }

    func testHostKeyVerifier_appendToFileWithoutTrailingNewline_startsANewLine() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", entry("other.example", other))
        let kh = try KnownHosts.load(path: path)
        _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true)
        let lines = try dir.read("known_hosts").split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines, [Substring(entry("other.example", other)), Substring("example.com ssh-ed25519 \(ed.publicBase64)"), ""])
    }

    func testHostKeyVerifier_unknownKeyUnderStrict_throwsUnknownWithTheLineToAdd() throws {
        let path = dir.file("missing/known_hosts")
        let kh = try KnownHosts.load(path: path)
        let error = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 2222, acceptNew: false) }
        XCTAssertEqual(error?.kind, .unknown)
        let message = error?.message ?? ""
        XCTAssertTrue(message.contains("[example.com]:2222 ssh-ed25519 \(ed.publicBase64)"), message)
        XCTAssertTrue(message.contains(path), message)
        XCTAssertTrue(message.contains(ed.hostKey.fingerprint), message)
        XCTAssertEqual(error?.description, message)
        XCTAssertFalse(Files.exists(path), "strict must not write anything")
        XCTAssertFalse(Files.exists(dir.file("missing")))
    }

    func testHostKeyVerifier_unknownKeyUnderACertAuthorityLine_saysHostCertificatesCannotBeUsed() throws {
        let kh = KnownHosts(path: "/kh", text: "\(entry("other", other))\n@cert-authority *.corp.example \(other.publicType) \(other.publicBase64)\n")
        XCTAssertTrue(kh.entries(matching: "bastion.corp.example").isEmpty, "a CA key is not a host key")
        let error = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "bastion.corp.example", port: 22, acceptNew: false) }
        XCTAssertEqual(error?.kind, .unknown)
        XCTAssertTrue(error?.message.contains("line 2 trusts a @cert-authority for this host, but libssh2 1.10 cannot negotiate host certificates") == true, error?.message ?? "")
        // A host the CA line does not cover gets the plain message.
        let plain = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "db.example", port: 22, acceptNew: false) }
        XCTAssertEqual(plain?.message.contains("cert-authority"), false, plain?.message ?? "")
    }

    func testHostKeyVerifier_changedKey_throwsChangedMentioningBothFingerprintsAndTheLine() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", "# one\n# two\n\(entry("example.com", other))\n")
        let before = try dir.read("known_hosts")
        let kh = try KnownHosts.load(path: path)
        let error = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true) }
        XCTAssertEqual(error?.kind, .changed)
        let message = error?.message ?? ""
        XCTAssertTrue(message.contains(try ed.opensshFingerprint()), "new fingerprint missing: \(message)")
        XCTAssertTrue(message.contains(try other.opensshFingerprint()), "old fingerprint missing: \(message)")
        XCTAssertTrue(message.contains("\(path):3"), message)
        XCTAssertTrue(message.contains("remove line 3"), message)
        XCTAssertEqual(try dir.read("known_hosts"), before, "a changed key is never learnt")
    }

    func testHostKeyVerifier_changedKeyOfAnotherType_isStillRefused() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", "\(entry("example.com", ed))\n")
        let kh = try KnownHosts.load(path: path)
        let error = failure { _ = try HostKeyVerifier.verify(ec.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true) }
        XCTAssertEqual(error?.kind, .changed)
        XCTAssertTrue(error?.message.contains(ed.hostKey.fingerprint) ?? false)
        XCTAssertTrue(error?.message.contains(ec.hostKey.fingerprint) ?? false)
    }

    func testHostKeyVerifier_revokedKey_throwsRevokedEvenWithAcceptNew() throws {
        let path = dir.file("known_hosts")
        try dir.write("known_hosts", "@revoked \(entry("*", ed))\n")
        let kh = try KnownHosts.load(path: path)
        let error = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true) }
        XCTAssertEqual(error?.kind, .revoked)
        XCTAssertTrue(error?.message.contains("\(path):1") ?? false, error?.message ?? "")
        XCTAssertTrue(error?.message.contains(ed.hostKey.fingerprint) ?? false)
        XCTAssertEqual(try dir.read("known_hosts"), "@revoked \(entry("*", ed))\n")
    }

    func testHostKeyVerifier_unwritableKnownHosts_throwsUnwritable() throws {
        // A regular file where the parent directory should be.
        try dir.write("blocker", "")
        let path = dir.file("blocker/known_hosts")
        let kh = KnownHosts(path: path, text: "")
        let error = failure { _ = try HostKeyVerifier.verify(ed.hostKey, knownHosts: kh, host: "example.com", port: 22, acceptNew: true) }
        XCTAssertEqual(error?.kind, .unwritable)
    }

    func testHostKey_typeFromLibssh2Name_roundTripsThroughRawValue() {
        for type in HostKeyType.allCases {
            XCTAssertEqual(HostKeyType(rawValue: type.rawValue), type)
        }
        XCTAssertEqual(ed.hostKey.type, .ed25519)
        XCTAssertEqual(ec.hostKey.type, .ecdsa256)
    }
}
