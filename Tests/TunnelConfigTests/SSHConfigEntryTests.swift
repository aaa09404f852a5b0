import XCTest
@testable import TunnelConfig

final class SSHConfigEntryTests: XCTestCase {
    func testParse_keepsRepeatedKeywordsInOrder_lowercased() {
        let values = SSHConfigEntry.parse("user root\nIdentityFile ~/.ssh/a\nidentityfile ~/.ssh/b\nuserknownhostsfile /k1 /k2\n")
        XCTAssertEqual(values["user"], ["root"])
        XCTAssertEqual(values["identityfile"], ["~/.ssh/a", "~/.ssh/b"])
        XCTAssertEqual(values["userknownhostsfile"], ["/k1 /k2"])
    }

    func testExplicit_isWhatDiffersFromSSHsBuiltInDefaults() {
        let baseline = SSHConfigEntry.parse("hostname db\nport 22\nserveraliveinterval 0\nuser root\n")
        let configured = SSHConfigEntry.parse("hostname 10.0.0.5\nport 22\nserveraliveinterval 0\nuser ops\nproxyjump bastion\n")
        let entry = SSHConfigEntry(values: configured, explicit: SSHConfigEntry.explicitKeys(configured, over: baseline))
        XCTAssertEqual(entry.explicit, ["hostname", "user", "proxyjump"])
        XCTAssertNil(entry.setting("serveraliveinterval"), "ssh's default ServerAliveInterval 0 must not switch off tunnel's keepalive")
        XCTAssertNil(entry.setting("port"))
        XCTAssertEqual(entry.setting("hostname"), "10.0.0.5")
    }
}
