import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class FingerprintTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws { dir = try TemporaryDirectory() }
    override func tearDown() { dir = nil }

    func testFingerprint_sha256OfEd25519Blob_matchesSSHKeygen() throws {
        let key = try generateKey(in: dir, name: "ed", type: "ed25519")
        XCTAssertEqual(Fingerprint.sha256(key.blob), try key.opensshFingerprint())
    }

    func testFingerprint_sha256OfECDSABlob_matchesSSHKeygen() throws {
        let key = try generateKey(in: dir, name: "ec", type: "ecdsa", bits: 384)
        XCTAssertEqual(Fingerprint.sha256(key.blob), try key.opensshFingerprint())
    }

    func testFingerprint_sha256OfRSABlob_matchesSSHKeygen() throws {
        let key = try generateKey(in: dir, name: "rsa", type: "rsa", bits: 2048)
        XCTAssertEqual(Fingerprint.sha256(key.blob), try key.opensshFingerprint())
    }

    func testFingerprint_sha256OfKnownInput_isUnpaddedBase64OfTheDigest() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 96177a9c b410ff61 f20015ad
        XCTAssertEqual(Fingerprint.sha256(Array("abc".utf8)), "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0")
        // SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855
        XCTAssertEqual(Fingerprint.sha256([]), "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
    }

    func testFingerprint_differentKeys_haveDifferentFingerprints() throws {
        let a = try generateKey(in: dir, name: "a", type: "ed25519")
        let b = try generateKey(in: dir, name: "b", type: "ed25519")
        XCTAssertNotEqual(Fingerprint.sha256(a.blob), Fingerprint.sha256(b.blob))
    }

    func testFingerprint_hostKeyFingerprint_isTheBlobsSHA256() throws {
        let key = try generateKey(in: dir, name: "ed", type: "ed25519")
        XCTAssertEqual(key.hostKey.fingerprint, try key.opensshFingerprint())
        XCTAssertEqual(key.hostKey.base64, key.publicBase64)
    }

    func testFingerprint_keyTypeOfRealBlobs_isTheTypeNamedInThePublicKeyLine() throws {
        let cases: [(type: String, bits: Int?, expected: String)] = [
            ("ed25519", nil, "ssh-ed25519"),
            ("ecdsa", 256, "ecdsa-sha2-nistp256"),
            ("ecdsa", 384, "ecdsa-sha2-nistp384"),
            ("ecdsa", 521, "ecdsa-sha2-nistp521"),
            ("rsa", 2048, "ssh-rsa"),
        ]
        for (i, c) in cases.enumerated() {
            let key = try generateKey(in: dir, name: "k\(i)", type: c.type, bits: c.bits)
            XCTAssertEqual(Fingerprint.keyType(ofBlob: key.blob), c.expected)
            XCTAssertEqual(key.publicType, c.expected)
        }
    }

    func testFingerprint_keyTypeOfTruncatedOrEmptyBlob_isNil() {
        XCTAssertNil(Fingerprint.keyType(ofBlob: []))
        XCTAssertNil(Fingerprint.keyType(ofBlob: [0, 0, 0]))
        // Claims an 11-byte string but holds only 3 bytes.
        XCTAssertNil(Fingerprint.keyType(ofBlob: [0, 0, 0, 11] + Array("ssh".utf8)))
    }

    func testFingerprint_keyTypeOfHandBuiltBlob_readsTheFirstString() {
        let blob: [UInt8] = [0, 0, 0, 7] + Array("ssh-foo".utf8) + [0, 0, 0, 1, 0x42]
        XCTAssertEqual(Fingerprint.keyType(ofBlob: blob), "ssh-foo")
    }
}

/// A certificate in ssh-agent is shown by its key's fingerprint, as
/// `ssh-add -l` and `ssh-keygen -l` show it.
final class CertificateFingerprintTests: XCTestCase {
    func testCertifiedKey_ofEachCertificateType_fingerprintsAsSSHKeygenDoes() throws {
        let dir = try TemporaryDirectory()
        _ = try generateKey(in: dir, name: "ca", type: "ed25519")
        for type in ["ed25519", "ecdsa", "rsa"] {
            let key = try generateKey(in: dir, name: "id_\(type)", type: type)
            _ = try sshKeygen(["-q", "-s", dir.file("ca"), "-I", "test", "-n", "someone", key.publicPath])
            let certLine = try String(contentsOfFile: dir.file("id_\(type)-cert.pub"), encoding: .utf8)
            let certBlob = try XCTUnwrap(Base64.decode(certLine.split(separator: " ")[1]))
            let plain = try XCTUnwrap(Fingerprint.certifiedKey(ofBlob: certBlob), type)
            XCTAssertEqual(plain, key.blob, type)
            let listed = try sshKeygen(["-l", "-E", "sha256", "-f", dir.file("id_\(type)-cert.pub")])
            XCTAssertEqual(String(listed.split(separator: " ")[1]), Fingerprint.sha256(plain), type)
        }
        XCTAssertNil(Fingerprint.certifiedKey(ofBlob: try generateKey(in: dir, name: "plain", type: "ed25519").blob))
    }
}
