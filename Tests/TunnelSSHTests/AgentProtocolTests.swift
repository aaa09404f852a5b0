import Foundation
import TunnelTestSupport
import TunnelPOSIX
import XCTest
@testable import TunnelSSH

/// The ssh-agent messages tunnel reads and writes itself (libssh2's agent
/// calls block the loop thread), and a query's bounds, against a socket.
final class AgentProtocolTests: XCTestCase {
    private func string(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.appendSSHBytes(bytes)
        return out
    }

    func testIdentitiesAnswer_isRead_keyByKey_andAnythingMalformedIsNil() {
        let blobA: [UInt8] = string(Array("ssh-ed25519".utf8)) + string([1, 2, 3])
        let blobB: [UInt8] = string(Array("ssh-rsa".utf8)) + string([4])
        var reply: [UInt8] = [AgentProtocol.identitiesAnswer]
        reply.appendUInt32(2)
        reply += string(blobA) + string(Array("laptop".utf8)) + string(blobB) + string([])
        XCTAssertEqual(AgentProtocol.identities(from: reply),
                       [.init(blob: blobA, comment: "laptop"), .init(blob: blobB, comment: "")])

        XCTAssertEqual(AgentProtocol.identities(from: [AgentProtocol.identitiesAnswer, 0, 0, 0, 0]), [])
        XCTAssertNil(AgentProtocol.identities(from: [AgentProtocol.failure]), "a refusal is not an empty list")
        XCTAssertNil(AgentProtocol.identities(from: Array(reply.dropLast(3))), "truncated")
        // A count no reply of this size could hold is refused before any allocation.
        XCTAssertNil(AgentProtocol.identities(from: [AgentProtocol.identitiesAnswer, 0xff, 0xff, 0xff, 0xff]))
    }

    func testSignRequest_carriesKeyDataAndFlags() {
        let request = AgentProtocol.signRequest(keyBlob: [9, 9], data: [7], flags: 4)
        XCTAssertEqual(request, [AgentProtocol.signRequest, 0, 0, 0, 2, 9, 9, 0, 0, 0, 1, 7, 0, 0, 0, 4])
    }

    func testSignResponse_givesTheRawSignature_checkingTheAlgorithmWhenOneWasAskedFor() throws {
        var reply: [UInt8] = [AgentProtocol.signResponse]
        reply += string(string(Array("rsa-sha2-512".utf8)) + string([0xaa, 0xbb]))
        XCTAssertEqual(try AgentProtocol.signature(from: reply, algorithm: "rsa-sha2-512"), [0xaa, 0xbb])
        XCTAssertEqual(try AgentProtocol.signature(from: reply, algorithm: nil), [0xaa, 0xbb])
        XCTAssertThrowsError(try AgentProtocol.signature(from: reply, algorithm: "rsa-sha2-256")) {
            XCTAssertEqual($0 as? AgentProtocol.SignatureError, .algorithm("rsa-sha2-512"))
        }
        XCTAssertThrowsError(try AgentProtocol.signature(from: [AgentProtocol.failure], algorithm: nil)) {
            XCTAssertEqual($0 as? AgentProtocol.SignatureError, .refused)
        }
        XCTAssertThrowsError(try AgentProtocol.signature(from: [AgentProtocol.signResponse, 0, 0, 0, 9, 1], algorithm: nil)) {
            XCTAssertEqual($0 as? AgentProtocol.SignatureError, .malformed)
        }
    }

    /// A query against a real Unix socket: each way it can end, and no fd left behind.
    func testQuery_endsAsReplySilenceOrFailure_andClosesItsSocket() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/agent.sock"
        let missing = AgentQuery(socketPath: path, purpose: .listKeys, body: AgentProtocol.listRequest(), deadline: Instant.now().adding(seconds: 5))
        let before = openDescriptors()
        guard case .failed(let why) = missing.run() else { return XCTFail("no socket: not a failure") }
        XCTAssertTrue(why.hasPrefix("not reachable ("), why)
        let directory = AgentQuery(socketPath: dir.path, purpose: .listKeys, body: AgentProtocol.listRequest(), deadline: Instant.now().adding(seconds: 5))
        XCTAssertEqual(directory.run(), .failed("not reachable: it is a directory, not a socket"))
        let long = dir.path + "/" + String(repeating: "a", count: 200)
        let tooLong = AgentQuery(socketPath: long, purpose: .listKeys, body: AgentProtocol.listRequest(), deadline: Instant.now().adding(seconds: 5))
        XCTAssertEqual(tooLong.run(), .failed("not reachable (the path is longer than the 107 bytes a socket address holds)"))

        let listener = try Socket.unix()
        defer { listener.close() }
        try listener.bind(.unix(path: path))
        try listener.listen(backlog: 8)
        // Accepted by the kernel, never answered: silent by the deadline.
        let silent = AgentQuery(socketPath: path, purpose: .listKeys, body: AgentProtocol.listRequest(), deadline: Instant.now().adding(seconds: 0.3))
        XCTAssertEqual(silent.run(), .silent)
        XCTAssertEqual(openDescriptors(), before + 1, "only the listener is open")
    }

    /// Open sockets, not every fd: the test process may open files on other threads meanwhile.
    private func openDescriptors() -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) ?? "").hasPrefix("socket:") }.count
    }
}
