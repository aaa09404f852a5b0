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
