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
