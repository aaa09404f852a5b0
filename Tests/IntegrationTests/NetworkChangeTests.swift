import Foundation
import XCTest

/// The supervisor watches address and route changes: a tunnel whose local
/// address goes away probes its server at once instead of waiting out
/// keepalive × keepalive_count (here 30 s × 3), and reconnects as soon as the
/// address is back instead of waiting out its backoff. The SSH server runs in
/// a network namespace across a veth pair whose address on this side the
/// test removes and puts back.
final class NetworkChangeReconnectTests: NamespacedSSHTestCase {

    /// A tunnel to the namespace's server with a 30 s keepalive, forwarding
    /// `localPort` to that server's own SSH port (whose banner shows traffic flows).
    private func writeProfile(localPort: UInt16) {
        let text = harness.profile("net", server: remoteServer, forwards: ["\(localPort):\(namespace.insideAddress):\(remoteServer.port)"])
        XCTAssertTrue(text.contains("keepalive = 2\n"))
        harness.writeConfig(text.replacingOccurrences(of: "keepalive = 2\n", with: "keepalive = 30\n"))
    }

    private func banner(_ port: UInt16) -> String? {
        guard let fd = Net.connect(port) else { return nil }
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        return Net.readExactly(fd, 8).map { String(decoding: $0, as: UTF8.self) }
    }

    private func ip(_ args: [String]) {
        let result = runCommand("/usr/bin/ip", args)
        XCTAssertEqual(result.status, 0, "ip \(args.joined(separator: " ")): \(result.output)")
    }

    func testClientAddressRemoved_tunnelLeavesUpOnAProbe_andReconnectsWhenTheAddressReturns() throws {
        let localPort = Net.freePort()
        writeProfile(localPort: localPort)
        let up = harness.tunnel(["up", "net"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertEqual(banner(localPort), "SSH-2.0-")

        ip(["addr", "del", namespace.hostAddress + "/30", "dev", namespace.hostInterface])
        let left = eventually(timeout: 20, interval: 0.1) { self.harness.listed("net")?.state != "up" }
        // On failure, what the interface holds tells a missed event from a removal that did not happen.
        XCTAssertTrue(left, "\(harness.list())\n\(runCommand("/usr/bin/ip", ["addr", "show", "dev", namespace.hostInterface]).output)\n\(harness.supervisorLog)")
        // Noticed by the probe after the change, not by the keepalive deadline (90 s).
        let log = harness.supervisorLog
        XCTAssertTrue(log.contains("network: address \(namespace.hostAddress)/30 removed"), log)
        XCTAssertTrue(log.contains("link lost after "), log)
        XCTAssertTrue(log.contains("no answer within 2 s after "), log)
        XCTAssertFalse(log.contains("no data from the server for"), log)
        XCTAssertTrue(harness.listed("net")?.last_error?.hasPrefix("no answer within 2 s after ") == true, "\(harness.list())")

        let before = harness.supervisorLog
        ip(["addr", "add", namespace.hostAddress + "/30", "dev", namespace.hostInterface])
        let back = eventually(timeout: 20, interval: 0.1) { self.harness.listed("net")?.state == "up" }
        XCTAssertTrue(back, "\(harness.list())\n\(harness.supervisorLog)")
        // Reconnected because the address came back, not when a backoff ran out.
        let after = String(harness.supervisorLog.dropFirst(before.count))
        XCTAssertTrue(after.contains("network: address \(namespace.hostAddress)/30 added"), after)
        XCTAssertTrue(after.contains("reconnecting now after "), after)
        XCTAssertEqual(banner(localPort), "SSH-2.0-", "traffic flows through the forward again")
    }

    /// A cable pulled or `ip link set DEV down`: the interface keeps its
    /// address and the kernel drops its routes without saying so; only the
    /// link's state changes.
    func testInterfaceDown_tunnelLeavesUpOnAProbe_andReconnectsWhenItRunsAgain() throws {
        let localPort = Net.freePort()
        writeProfile(localPort: localPort)
        XCTAssertEqual(harness.tunnel(["up", "net"]).status, 0)
        XCTAssertEqual(banner(localPort), "SSH-2.0-")

        ip(["link", "set", namespace.hostInterface, "down"])
        var restored = false
        defer { if !restored { ip(["link", "set", namespace.hostInterface, "up"]) } }
        let left = eventually(timeout: 20, interval: 0.1) { self.harness.listed("net")?.state != "up" }
        XCTAssertTrue(left, "\(harness.list())\n\(harness.supervisorLog)")
        let log = harness.supervisorLog
        XCTAssertTrue(log.contains("network: link \(namespace.hostInterface) down"), log)
        XCTAssertTrue(log.contains("no answer within 2 s after link \(namespace.hostInterface) down"), log)
        XCTAssertFalse(log.contains("no data from the server for"), "noticed by the probe, not the 90 s keepalive deadline: \(log)")

        ip(["link", "set", namespace.hostInterface, "up"])
        restored = true
        XCTAssertTrue(eventually(timeout: 30, interval: 0.1) { self.harness.listed("net")?.state == "up" }, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertEqual(banner(localPort), "SSH-2.0-", "traffic flows through the forward again")
    }

    func testRoundTrip_isListedOnceUp() throws {
        let localPort = Net.freePort()
        writeProfile(localPort: localPort)
        let up = harness.tunnel(["up", "net"])
        XCTAssertEqual(up.status, 0, up.output)
        // The first ping goes out as soon as the link is up, not after 30 s.
        XCTAssertTrue(eventually(timeout: 10, interval: 0.1) { self.harness.listed("net")?.rtt_ms != nil }, "\(harness.list())")
        let rtt = try XCTUnwrap(harness.listed("net")?.rtt_ms)
        XCTAssertGreaterThan(rtt, 0)
        let json = harness.tunnel(["ls", "--json"]).stdout
        XCTAssertTrue(json.contains("\"rtt_ms\""), json)
    }
}
