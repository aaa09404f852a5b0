import Foundation
import XCTest

/// A real sshd, a trusted profiles harness and an echo target, torn down
/// (supervisor included) after each test.
class SSHTestCase: XCTestCase {
    var server: SSHServer!
    var harness: TunnelHarness!
    var echo: TestServer!

    override func setUpWithError() throws {
        server = try SSHServer()
        harness = TunnelHarness()
        harness.trust(server)
        echo = TestServer(.echo)
    }

    /// Swaps in an sshd started with `extraConfig`, with a fresh harness trusting it.
    func replaceServer(extraConfig: String) throws {
        server.stop()
        server = try SSHServer(extraConfig: extraConfig)
        harness = TunnelHarness()
        harness.trust(server)
    }

    override func tearDown() {
        harness?.stopSupervisor()
        server?.stop()
        echo?.stop()
    }
}

/// An SSHTestCase plus a second sshd inside a network namespace of its own,
/// listening on the namespace's inside address and trusted by the harness.
class NamespacedSSHTestCase: SSHTestCase {
    var namespace: TestNamespace!
    var remoteServer: SSHServer!

    override func setUpWithError() throws {
        try super.setUpWithError()
        namespace = try TestNamespace()
        remoteServer = try SSHServer(namespace: namespace, listenAddress: namespace.insideAddress)
        harness.trust(remoteServer)
    }

    override func tearDown() {
        remoteServer?.stop()
        namespace?.remove()
        super.tearDown()
    }
}

extension SSHTestCase {
    /// Tunnel `db` carries two clients: one mid-stream with the echo server,
    /// one that already has all of its target's bytes and EOF (unread).
    /// After `stop` the first must read a reset, never a clean end, and the
    /// second every byte and a clean end.
    func assertStopResetsOnlyTheCutStream(file: StaticString = #filePath, line: UInt = #line, _ stop: () throws -> Void) throws {
        let data = randomBytes(100_000, seed: 7)
        let finished = TestServer(.sendThenRead(data: data))
        defer { finished.stop() }
        let open = Net.freePort(), ended = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(open):127.0.0.1:\(echo.port)", "\(ended):127.0.0.1:\(finished.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0, file: file, line: line)
        guard let cut = Net.connect(open), let whole = Net.connect(ended) else { return XCTFail("connect", file: file, line: line) }
        defer { close(cut); close(whole) }
        XCTAssertTrue(Net.sendAll(cut, Array("mid-stream".utf8)), file: file, line: line)
        XCTAssertEqual(Net.readExactly(cut, 10).map { String(decoding: $0, as: UTF8.self) }, "mid-stream", file: file, line: line)
        XCTAssertTrue(eventually(timeout: 10) { Net.peerHasEnded(whole) }, "the target's EOF reached the client", file: file, line: line)

        try stop()
        Net.setTimeout(cut, 5)
        Net.setTimeout(whole, 5)
        XCTAssertEqual(Net.readToEnd(cut).end, .reset, "the cut stream", file: file, line: line)
        let rest = Net.readToEnd(whole)
        XCTAssertEqual(rest.end, .eof, file: file, line: line)
        XCTAssertEqual(rest.bytes, data, file: file, line: line)
    }
}
