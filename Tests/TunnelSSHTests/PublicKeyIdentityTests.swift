import TunnelTestSupport
import XCTest
@testable import TunnelSSH

/// An IdentityFile may name a public key (ssh's way to pick one of the
/// agent's keys), and UserKnownHostsFile may be /dev/null (nothing known,
/// nothing kept).
final class PublicKeyIdentityTests: XCTestCase {
    func testPublicKeyFile_givesItsBlob_andAnythingElseNone() throws {
        let dir = try TemporaryDirectory()
        let key = try generateKey(in: dir, name: "k", type: "ed25519")
        let line = try dir.read("k.pub")
        XCTAssertEqual(Authenticator.publicKeyFileBlob(Array(line.utf8)), key.blob)
        XCTAssertEqual(Authenticator.publicKeyFileBlob(Array("\(key.publicType) \(key.publicBase64)".utf8)), key.blob, "no comment, no newline")
        XCTAssertNil(Authenticator.publicKeyFileBlob(Array(key.privateText.utf8)), "a private key is not a public one")
        XCTAssertNil(Authenticator.publicKeyFileBlob(Array("ssh-rsa \(key.publicBase64)\n".utf8)), "the type must be the blob's")
        XCTAssertNil(Authenticator.publicKeyFileBlob(Array("ssh-ed25519 not-base64!\n".utf8)))
        XCTAssertNil(Authenticator.publicKeyFileBlob(Array("".utf8)))
    }

    func testDevNullKnownHosts_isEmpty_andKeepsNothing() throws {
        let kh = try KnownHosts.load(path: "/dev/null")
        XCTAssertEqual(kh.entries(matching: "example.com"), [])
        XCTAssertEqual(kh.verify(name: "example.com", keyType: "ssh-ed25519", key: [1, 2, 3]), .unknown)
        XCTAssertNoThrow(try KnownHosts.append(line: "example.com ssh-ed25519 AAAA", to: "/dev/null"))
        // Another character device is still refused rather than read.
        XCTAssertThrowsError(try KnownHosts.load(path: "/dev/zero")) { error in
            XCTAssertTrue("\(error)".contains("/dev/zero is a character device, not a regular file"), "\(error)")
        }
    }
}
