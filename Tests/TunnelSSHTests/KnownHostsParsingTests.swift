import TunnelTestSupport
import XCTest
@testable import TunnelSSH

final class KnownHostsParsingTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var ed: GeneratedKey!
    private var ec: GeneratedKey!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        ed = try generateKey(in: dir, name: "ed", type: "ed25519")
        ec = try generateKey(in: dir, name: "ec", type: "ecdsa")
    }

    override func tearDown() { dir = nil }

    func testKnownHosts_emptyText_hasNoEntries() {
        XCTAssertTrue(KnownHosts(path: "/x", text: "").entries.isEmpty)
        XCTAssertTrue(KnownHosts(path: "/x", text: "\n\n  \n\t\n").entries.isEmpty)
    }

    func testKnownHosts_plainLine_isParsedIntoPatternsTypeAndKey() {
        let kh = KnownHosts(path: "/tmp/kh", text: "example.com,192.0.2.1 \(ed.publicType) \(ed.publicBase64) comment words\n")
        XCTAssertEqual(kh.path, "/tmp/kh")
        XCTAssertEqual(kh.entries, [
            KnownHosts.Entry(line: 1, patterns: ["example.com", "192.0.2.1"], keyType: "ssh-ed25519", key: ed.blob, isRevoked: false),
        ])
    }

    func testKnownHosts_commentsAndBlankLines_areSkippedButCountedInLineNumbers() {
        let text = """
        # a comment
        
           # an indented comment
        alpha \(ed.publicType) \(ed.publicBase64)
        
        beta \(ec.publicType) \(ec.publicBase64)
        """
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.map(\.line), [4, 6])
        XCTAssertEqual(kh.entries.map(\.patterns), [["alpha"], ["beta"]])
        XCTAssertEqual(kh.entries.map(\.keyType), ["ssh-ed25519", "ecdsa-sha2-nistp256"])
        XCTAssertEqual(kh.entries.map(\.key), [ed.blob, ec.blob])
    }

    func testKnownHosts_revokedMarker_setsIsRevokedAndShiftsTheFields() {
        let kh = KnownHosts(path: "/x", text: "@revoked * \(ed.publicType) \(ed.publicBase64)\n")
        XCTAssertEqual(kh.entries, [
            KnownHosts.Entry(line: 1, patterns: ["*"], keyType: "ssh-ed25519", key: ed.blob, isRevoked: true),
        ])
    }

    func testKnownHosts_certAuthorityMarker_isIgnored() {
        let text = """
        @cert-authority *.example.com \(ed.publicType) \(ed.publicBase64)
        host.example.com \(ec.publicType) \(ec.publicBase64)
        """
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.count, 1)
        XCTAssertEqual(kh.entries.first?.line, 2)
        XCTAssertEqual(kh.entries.first?.key, ec.blob)
    }

    func testKnownHosts_unknownMarker_isIgnored() {
        let kh = KnownHosts(path: "/x", text: "@bogus host \(ed.publicType) \(ed.publicBase64)\n")
        XCTAssertTrue(kh.entries.isEmpty)
    }

    func testKnownHosts_malformedLines_areSkippedWithoutStoppingLaterLines() {
        let text = """
        this line is: garbage!
        onlyhost
        host ssh-ed25519
        host ssh-ed25519 !!!not-base64!!!
        host ssh-ed25519 ====
        @revoked
        @revoked host ssh-ed25519
        good.example \(ed.publicType) \(ed.publicBase64)
        more garbage here!
        last.example \(ec.publicType) \(ec.publicBase64)
        """
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.map(\.line), [8, 10])
        XCTAssertEqual(kh.entries.map(\.patterns), [["good.example"], ["last.example"]])
    }

    func testKnownHosts_keyFieldThatDecodesButIsNoKeyBlob_isSkippedLikeOpenSSH() {
        // "TODO" and "here" are valid base64 but not SSH key blobs; OpenSSH's
        // sshkey_read rejects such lines. Kept, they turn an unknown host into
        // a "HOST KEY CHANGED" refusal.
        let text = """
        example.com ssh-ed25519 TODO
        more garbage here
        good.example \(ed.publicType) \(ed.publicBase64)
        """
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.map(\.line), [3])
        XCTAssertEqual(kh.verify(name: "example.com", keyType: ed.publicType, key: ed.blob), .unknown)
    }

    func testKnownHosts_keyBlobOfAnotherTypeThanTheTypeField_isSkippedLikeOpenSSH() {
        // An ECDSA blob filed under ssh-ed25519: sshkey_read reports a type mismatch and skips it.
        let text = """
        example.com ssh-ed25519 \(ec.publicBase64)
        good.example \(ed.publicType) \(ed.publicBase64)
        """
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.map(\.line), [2])
    }

    func testKnownHosts_CRLFLineEndings_parseLikeLF() {
        let text = "# comment\r\nalpha \(ed.publicType) \(ed.publicBase64)\r\n\r\nbeta \(ec.publicType) \(ec.publicBase64)\r\n"
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.entries.map(\.line), [2, 4])
        XCTAssertEqual(kh.entries.map(\.patterns), [["alpha"], ["beta"]])
        XCTAssertEqual(kh.entries.map(\.keyType), ["ssh-ed25519", "ecdsa-sha2-nistp256"])
        XCTAssertEqual(kh.entries.map(\.key), [ed.blob, ec.blob])
    }

    func testKnownHosts_CRLFFileWithTwoHosts_trustsEachHostsOwnKey() {
        // Without a comment line: "\r\n" is one Character in Swift, so splitting
        // the text on "\n" leaves the whole file as one line.
        let text = "alpha \(ed.publicType) \(ed.publicBase64)\r\nbeta \(ec.publicType) \(ec.publicBase64)\r\n"
        let kh = KnownHosts(path: "/x", text: text)
        XCTAssertEqual(kh.verify(name: "alpha", keyType: ed.publicType, key: ed.blob), .trusted(line: 1))
        XCTAssertEqual(kh.verify(name: "beta", keyType: ec.publicType, key: ec.blob), .trusted(line: 2))
    }

    func testKnownHosts_tabsAndRepeatedSpaces_separateFields() {
        let kh = KnownHosts(path: "/x", text: "  alpha\t\t\(ed.publicType)   \(ed.publicBase64)\t\n")
        XCTAssertEqual(kh.entries.first?.patterns, ["alpha"])
        XCTAssertEqual(kh.entries.first?.key, ed.blob)
    }

    func testKnownHosts_lineWithoutTrailingNewline_isParsed() {
        let kh = KnownHosts(path: "/x", text: "alpha \(ed.publicType) \(ed.publicBase64)")
        XCTAssertEqual(kh.entries.count, 1)
    }

    func testKnownHosts_lineBuiltByLine_parsesBackToTheSameKey() {
        let line = KnownHosts.line(name: "[example.com]:2222", keyType: ed.publicType, key: ed.blob)
        XCTAssertEqual(line, "[example.com]:2222 ssh-ed25519 \(ed.publicBase64)")
        let kh = KnownHosts(path: "/x", text: line)
        XCTAssertEqual(kh.entries.first?.patterns, ["[example.com]:2222"])
        XCTAssertEqual(kh.entries.first?.key, ed.blob)
    }

    func testKnownHosts_loadMissingFile_isEmpty() throws {
        let kh = try KnownHosts.load(path: dir.file("does/not/exist"))
        XCTAssertTrue(kh.entries.isEmpty)
        XCTAssertEqual(kh.path, dir.file("does/not/exist"))
    }

    func testKnownHosts_loadFile_parsesItsContents() throws {
        try dir.write("known_hosts", "# c\nalpha \(ed.publicType) \(ed.publicBase64)\n")
        let kh = try KnownHosts.load(path: dir.file("known_hosts"))
        XCTAssertEqual(kh.entries.map(\.line), [2])
    }

    func testKnownHosts_loadDirectory_throwsUnreadable() {
        XCTAssertThrowsError(try KnownHosts.load(path: dir.path)) { error in
            XCTAssertEqual((error as? HostKeyFailure)?.kind, .unreadable)
        }
    }

    func testKnownHosts_lookupName_isBareLowercasedHostOnPort22() {
        XCTAssertEqual(KnownHosts.lookupName(host: "Example.COM", port: 22), "example.com")
        XCTAssertEqual(KnownHosts.lookupName(host: "192.0.2.7", port: 22), "192.0.2.7")
    }

    func testKnownHosts_lookupName_isBracketedHostAndPortOnOtherPorts() {
        XCTAssertEqual(KnownHosts.lookupName(host: "Example.COM", port: 2222), "[example.com]:2222")
        XCTAssertEqual(KnownHosts.lookupName(host: "::1", port: 2200), "[::1]:2200")
        XCTAssertEqual(KnownHosts.lookupName(host: "h", port: 1), "[h]:1")
    }
}
