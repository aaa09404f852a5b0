import XCTest

@testable import TunnelSSH

/// Which user certificates tunnel offers depends on the libssh2 loaded:
/// ECDSA ones with any libssh2 1.10, ed25519 ones only with tunnel's build
/// (Patches/libssh2), RSA ones never. (End to end against sshd:
/// TrustAndAuthTests' certificate tests.)
final class CertificateSupportTests: XCTestCase {
    private let ecdsa = ["ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
                         "ecdsa-sha2-nistp521-cert-v01@openssh.com"]
    private let tunnels = Libssh2Patches.all

    func testTheLibssh2ThisProcessLoaded_isTunnelsBuild_withEveryPatch() {
        XCTAssertEqual(Libssh2Patches.loaded, tunnels, "the test bundle runs on the system's libssh2: run bash Scripts/libssh2 .build/debug")
    }

    func testECDSACertificates_areOfferedWithAnyLibssh2() {
        for type in ecdsa {
            XCTAssertFalse(Authenticator.isUnsignableCertificate(type, patches: []), type)
            XCTAssertFalse(Authenticator.isUnsignableCertificate(type, patches: tunnels), type)
        }
    }

    func testEd25519Certificates_areOfferedOnlyWithTunnelsLibssh2() {
        XCTAssertTrue(Authenticator.isUnsignableCertificate("ssh-ed25519-cert-v01@openssh.com", patches: []))
        XCTAssertTrue(Authenticator.isUnsignableCertificate("ssh-ed25519-cert-v01@openssh.com", patches: .wholePacketCipher))
        XCTAssertFalse(Authenticator.isUnsignableCertificate("ssh-ed25519-cert-v01@openssh.com", patches: tunnels))
    }

    func testRSAAndOtherCertificates_areNeverOffered() {
        for type in ["ssh-rsa-cert-v01@openssh.com", "ssh-dss-cert-v01@openssh.com", "sk-ssh-ed25519-cert-v01@openssh.com"] {
            XCTAssertTrue(Authenticator.isUnsignableCertificate(type, patches: tunnels), type)
        }
    }

    func testPlainKeys_areNotCertificates() {
        for type in ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"] {
            XCTAssertFalse(Authenticator.isUnsignableCertificate(type, patches: []), type)
        }
    }

    func testTheNote_namesWhatTheLoadedLibssh2Signs() {
        XCTAssertTrue(Authenticator.unsignableCertificateNote(patches: tunnels).contains("(only ECDSA and ed25519 ones)"))
        XCTAssertTrue(Authenticator.unsignableCertificateNote(patches: []).contains("(only ECDSA ones; tunnel's own build of libssh2, Scripts/libssh2, signs ed25519 ones too)"))
    }
}
