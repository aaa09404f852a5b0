import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class PrivateKeyInfoTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws { dir = try TemporaryDirectory() }
    override func tearDown() { dir = nil }

    private func inspect(type: String, bits: Int? = nil, format: String? = nil, passphrase: String = "") throws -> PrivateKeyInfo {
        let key = try generateKey(in: dir, name: "key", type: type, bits: bits, format: format, passphrase: passphrase)
        defer {
            try? FileManager.default.removeItem(atPath: key.privatePath)
            try? FileManager.default.removeItem(atPath: key.publicPath)
        }
        var info = PrivateKeyInfo.inspect(key.privateText)
        // An OpenSSH key file holds its public key in clear, even encrypted: the .pub's blob.
        if info.format == .openssh {
            let pub = try XCTUnwrap(FileManager.default.contents(atPath: key.publicPath))
            XCTAssertEqual(info.publicBlob, Authenticator.publicKeyFileBlob(Array(pub)), "\(type)")
        } else {
            XCTAssertNil(info.publicBlob)
        }
        info.publicBlob = nil
        return info
    }

    func testPrivateKeyInfo_plainEd25519_isOpenSSHUnencrypted() throws {
        let info = try inspect(type: "ed25519")
        XCTAssertEqual(info, PrivateKeyInfo(format: .openssh, keyType: "ssh-ed25519", isEncrypted: false))
        XCTAssertFalse(info.isRSA)
    }

    func testPrivateKeyInfo_ed25519WithPassphrase_isOpenSSHEncryptedAndStillNamesItsType() throws {
        let info = try inspect(type: "ed25519", passphrase: "secret")
        XCTAssertEqual(info, PrivateKeyInfo(format: .openssh, keyType: "ssh-ed25519", isEncrypted: true))
    }

    func testPrivateKeyInfo_ecdsaP256_isOpenSSHWithCurveInTheType() throws {
        let info = try inspect(type: "ecdsa", bits: 256)
        XCTAssertEqual(info, PrivateKeyInfo(format: .openssh, keyType: "ecdsa-sha2-nistp256", isEncrypted: false))
    }

    func testPrivateKeyInfo_ecdsaP384WithPassphrase_isOpenSSHEncrypted() throws {
        let info = try inspect(type: "ecdsa", bits: 384, passphrase: "secret")
        XCTAssertEqual(info, PrivateKeyInfo(format: .openssh, keyType: "ecdsa-sha2-nistp384", isEncrypted: true))
    }

    func testPrivateKeyInfo_rsaInOpenSSHFormat_isOpenSSHRSA() throws {
        let info = try inspect(type: "rsa", bits: 2048)
        XCTAssertEqual(info, PrivateKeyInfo(format: .openssh, keyType: "ssh-rsa", isEncrypted: false))
        XCTAssertTrue(info.isRSA)
    }

    func testPrivateKeyInfo_rsaInPEMFormat_isPEMRSAUnencrypted() throws {
        let info = try inspect(type: "rsa", bits: 2048, format: "PEM")
        XCTAssertEqual(info, PrivateKeyInfo(format: .pem, keyType: "ssh-rsa", isEncrypted: false))
        XCTAssertTrue(info.isRSA)
    }

    func testPrivateKeyInfo_rsaInPEMFormatWithPassphrase_isPEMRSAEncrypted() throws {
        let info = try inspect(type: "rsa", bits: 2048, format: "PEM", passphrase: "secret")
        XCTAssertEqual(info, PrivateKeyInfo(format: .pem, keyType: "ssh-rsa", isEncrypted: true))
    }

    func testPrivateKeyInfo_ecdsaInPEMFormat_isPEMECDSA() throws {
        let info = try inspect(type: "ecdsa", format: "PEM")
        XCTAssertEqual(info, PrivateKeyInfo(format: .pem, keyType: "ecdsa", isEncrypted: false))
    }

    func testPrivateKeyInfo_ecdsaInPKCS8Format_isPKCS8Unencrypted() throws {
        let info = try inspect(type: "ecdsa", format: "PKCS8")
        XCTAssertEqual(info, PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: false))
    }

    func testPrivateKeyInfo_ecdsaInPKCS8FormatWithPassphrase_isPKCS8Encrypted() throws {
        let info = try inspect(type: "ecdsa", format: "PKCS8", passphrase: "secret-passphrase")
        XCTAssertEqual(info, PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: true))
    }

    func testPrivateKeyInfo_openSSHKeyWithCRLFLineEndings_isStillRecognised() throws {
        let key = try generateKey(in: dir, name: "crlf", type: "ed25519", passphrase: "secret")
        let crlf = key.privateText.replacingOccurrences(of: "\n", with: "\r\n")
        let pub = try XCTUnwrap(FileManager.default.contents(atPath: key.publicPath))
        XCTAssertEqual(PrivateKeyInfo.inspect(crlf), PrivateKeyInfo(format: .openssh, keyType: "ssh-ed25519", isEncrypted: true,
                                                                    publicBlob: Authenticator.publicKeyFileBlob(Array(pub))))
    }

    func testPrivateKeyInfo_puttyKeyWithoutEncryption_isPuTTYUnencrypted() {
        let text = """
        PuTTY-User-Key-File-3: ssh-ed25519
        Encryption: none
        Comment: ed25519-key-20240101
        Public-Lines: 2
        AAAAC3NzaC1lZDI1NTE5AAAAIAbsoMOBKzvbxqrXE87WmixocvS2AKmOucqhH13n
        1caz
        """
        let info = PrivateKeyInfo.inspect(text)
        XCTAssertEqual(info.format, .putty)
        XCTAssertFalse(info.isEncrypted)
    }

    func testPrivateKeyInfo_puttyKeyWithEncryption_isPuTTYEncrypted() {
        let text = """
        PuTTY-User-Key-File-2: ssh-rsa
        Encryption: aes256-cbc
        Comment: rsa-key
        Public-Lines: 1
        AAAA
        """
        let info = PrivateKeyInfo.inspect(text)
        XCTAssertEqual(info.format, .putty)
        XCTAssertTrue(info.isEncrypted)
    }

    func testPrivateKeyInfo_dsaPEMHeader_isPEMDSS() {
        let text = "-----BEGIN DSA PRIVATE KEY-----\nMIIBuwIBAAKBgQ==\n-----END DSA PRIVATE KEY-----\n"
        XCTAssertEqual(PrivateKeyInfo.inspect(text), PrivateKeyInfo(format: .pem, keyType: "ssh-dss", isEncrypted: false))
    }

    func testPrivateKeyInfo_garbage_isUnknown() {
        for text in ["", "hello world", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== me@host", "\u{0}\u{1}\u{2}binary"] {
            XCTAssertEqual(PrivateKeyInfo.inspect(text), PrivateKeyInfo(format: .unknown, keyType: nil, isEncrypted: false), text)
        }
    }

    func testPrivateKeyInfo_openSSHArmourAroundGarbage_isOpenSSHWithUnknownType() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
        XCTAssertEqual(PrivateKeyInfo.inspect(text), PrivateKeyInfo(format: .openssh, keyType: nil, isEncrypted: false))
    }

    func testPrivateKeyInfo_openSSHArmourWithoutEndMarker_isNotTakenForOpenSSH() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
        XCTAssertEqual(PrivateKeyInfo.inspect(text).format, .unknown)
    }
}
