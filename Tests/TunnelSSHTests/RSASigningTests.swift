import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class RSASigningTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws { dir = try TemporaryDirectory() }
    override func tearDown() { dir = nil }

    func testForServer_OpenSSH72AndLater_getRSASHA2_512_othersKeepSSHRSA() {
        let cases: [(String, RSASignatureAlgorithm?)] = [
            ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", .sha512),
            ("SSH-2.0-OpenSSH_7.2", .sha512),
            ("SSH-2.0-OpenSSH_10.0", .sha512),
            ("SSH-2.0-OpenSSH_for_Windows_8.1", .sha512),
            ("SSH-2.0-OpenSSH_7.1p2", nil),
            ("SSH-2.0-OpenSSH_6.6.1p1 Ubuntu-2ubuntu2", nil),
            ("SSH-2.0-dropbear_2022.83", nil),
            ("SSH-2.0-Go", nil),
            ("", nil),
        ]
        for (banner, expected) in cases {
            XCTAssertEqual(RSASignatureAlgorithm.forServer(banner: banner), expected, banner)
        }
    }

    func testRequestBlob_replacesTheTypeName_keepsEAndN_refusesOtherKeyTypes() throws {
        let rsa = try generateKey(in: dir, name: "rsa", type: "rsa", bits: 2048)
        let blob = try XCTUnwrap(RSASignatureAlgorithm.sha512.requestBlob(for: rsa.blob))
        var reader = SSHReader(blob)
        XCTAssertEqual(reader.string(), Array("rsa-sha2-512".utf8))
        XCTAssertEqual(Array(blob[(4 + 12)...]), Array(rsa.blob[(4 + 7)...]))
        let ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        XCTAssertNil(RSASignatureAlgorithm.sha512.requestBlob(for: ed.blob))
    }

    func testRSAPrivateKey_readsOpenSSHPEMAndPKCS8_withThePublicBlobOfThePubFile() throws {
        for format in [nil, "PEM", "PKCS8"] {
            let key = try generateKey(in: dir, name: "k\(format ?? "openssh")", type: "rsa", bits: 2048, format: format)
            let loaded = try XCTUnwrap(RSAPrivateKey(text: key.privateText), format ?? "openssh")
            XCTAssertEqual(loaded.publicBlob, key.blob, format ?? "openssh")
        }
    }

    func testRSAPrivateKey_signsWithTheModulusLength_differentlyForSHA512AndSHA256() throws {
        let key = try generateKey(in: dir, name: "k", type: "rsa", bits: 3072)
        let loaded = try XCTUnwrap(RSAPrivateKey(text: key.privateText))
        let data = Array("session id and request".utf8)
        let sig512 = try XCTUnwrap(data.withUnsafeBytes { loaded.sign($0, with: .sha512) })
        let sig256 = try XCTUnwrap(data.withUnsafeBytes { loaded.sign($0, with: .sha256) })
        XCTAssertEqual(sig512.count, 384)
        XCTAssertEqual(sig256.count, 384)
        XCTAssertNotEqual(sig512, sig256)
        // PKCS#1 v1.5 is deterministic: the same input signs the same way.
        XCTAssertEqual(data.withUnsafeBytes { loaded.sign($0, with: .sha512) }, sig512)
    }

    func testRSAPrivateKey_isNilForEncryptedOtherTypesAndGarbage() throws {
        let encrypted = try generateKey(in: dir, name: "enc", type: "rsa", bits: 2048, passphrase: "secret")
        XCTAssertNil(RSAPrivateKey(text: encrypted.privateText))
        let encryptedPEM = try generateKey(in: dir, name: "encpem", type: "rsa", bits: 2048, format: "PEM", passphrase: "secret")
        XCTAssertNil(RSAPrivateKey(text: encryptedPEM.privateText))
        let ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        XCTAssertNil(RSAPrivateKey(text: ed.privateText))
        let ecPEM = try generateKey(in: dir, name: "ec", type: "ecdsa", format: "PEM")
        XCTAssertNil(RSAPrivateKey(text: ecPEM.privateText))
        XCTAssertNil(RSAPrivateKey(text: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
        XCTAssertNil(RSAPrivateKey(text: "not a key"))
    }

    func testAppendMPInt_addsALeadingZeroOnlyWhenTheHighBitIsSet_andDropsExtraZeros() {
        var a: [UInt8] = []
        a.appendMPInt([0x01, 0x00, 0x01][...])
        XCTAssertEqual(a, [0, 0, 0, 3, 0x01, 0x00, 0x01])
        var b: [UInt8] = []
        b.appendMPInt([0x00, 0x00, 0x80, 0x01][...])
        XCTAssertEqual(b, [0, 0, 0, 3, 0x00, 0x80, 0x01])
    }
}
