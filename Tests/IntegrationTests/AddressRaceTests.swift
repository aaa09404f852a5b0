import Foundation
import XCTest

/// A server name with several addresses, one of which drops packets (an AAAA
/// record on a network with broken IPv6, a dead node behind round-robin DNS).
/// In a network namespace of its own, `bastion.test` resolves to 10.9.9.3
/// first (SYNs vanish there) and to 10.9.9.1 second, where a real sshd
/// listens; tunnel runs inside the namespace.
final class AddressRaceTests: XCTestCase {
    private var namespace: NetworkNamespace!
    private var server: SSHServer!
    private var harness: TunnelHarness!

    override func setUpWithError() throws {
        namespace = try NetworkNamespace()
        namespace.resolve([("bastion.test", ["10.9.9.3", "10.9.9.1"])])
        // The test means something only if the dead address comes first.
        let order = namespace.run("/usr/bin/getent", ["ahosts", "bastion.test"])
        let first = order.stdout.split(separator: "\n").first { $0.contains("STREAM") }?.split(separator: " ").first
        XCTAssertEqual(first.map(String.init), "10.9.9.3", "getent ahosts bastion.test in the namespace: \(order.output)")
        server = try SSHServer(namespace: namespace, listenAddress: "10.9.9.1")
        harness = TunnelHarness()
        let pub = read(server.hostKey + ".pub").split(separator: " ")
        write("[bastion.test]:\(server.port) \(pub[0]) \(pub[1])\n", to: harness.knownHosts, mode: 0o600)
    }

    override func tearDown() {
        _ = namespace?.run(Env.tunnelBinary, ["daemon", "stop"], env: harness?.environment ?? [:], timeout: 15)
        server?.stop()
        // XCTest keeps each test case alive to the end: let go of everything
        // that holds the namespace, so its deinit removes it (and /etc/netns/NAME) now.
        server = nil
        harness = nil
        let name = namespace?.name
        namespace = nil
        if let name {
            XCTAssertFalse(runCommand("/usr/sbin/ip", ["netns", "list"]).stdout.contains(name), "the namespace \(name) was left behind")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/netns/\(name)"))
        }
    }

    private func writeProfile(port: UInt16, localPort: UInt16, connectTimeout: Int, extra: String = "") {
        harness.writeConfig("""
        [tunnels.db]
        host = "bastion.test"
        port = \(port)
        user = "\(Env.userName)"
        identity = "\(server.userKey)"
        known_hosts = "\(harness.knownHosts)"
        forward = "\(localPort):10.9.9.1:\(server.port)"
        connect_timeout = \(connectTimeout)
        \(extra)

        """)
    }

    private func inNamespace(_ args: [String], timeout: Double = 60) -> Outcome {
        namespace.run(Env.tunnelBinary, args, env: harness.environment, timeout: timeout)
    }

    /// Tried one after the other, the dead address took the whole
    /// connect_timeout on every attempt and the tunnel never came up; ssh
    /// gets through after ConnectTimeout. Raced, the live address wins.
    func testFirstAddressDropsPackets_theTunnelComesUpThroughTheNextOne() throws {
        let localPort = Net.freePort()
        writeProfile(port: server.port, localPort: localPort, connectTimeout: 5)

        let check = inNamespace(["check", "db"])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.stdout.contains("TCP connect to 10.9.9.1:\(server.port)"), check.stdout)
        XCTAssertTrue(check.stdout.contains("[ok  ] authentication"), check.stdout)

        let up = inNamespace(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(harness.supervisorLog.contains("via 10.9.9.1:\(server.port)"), harness.supervisorLog)
        // Traffic: the forward's target is the sshd itself, which greets first.
        let client = namespace.run("/usr/bin/python3", ["-c", """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
            print(s.recv(64).decode(errors="replace").strip())
            """, "\(localPort)"])
        XCTAssertTrue(client.stdout.hasPrefix("SSH-2.0-OpenSSH"), client.output)
        let list = inNamespace(["ls", "--json"])
        XCTAssertTrue(list.stdout.contains("\"state\" : \"up\""), list.output)
    }

    /// When every address fails, the error names each one and how.
    func testEveryAddressFails_theErrorNamesEachAndHow() throws {
        let closed = Net.freePort()
        writeProfile(port: closed, localPort: Net.freePort(), connectTimeout: 2)

        let check = inNamespace(["check", "db"])
        XCTAssertNotEqual(check.status, 0, check.output)
        let reach = check.stdout.split(separator: "\n").first { $0.contains("reach bastion.test") }.map(String.init) ?? ""
        XCTAssertTrue(reach.contains("[FAIL]") && reach.contains("10.9.9.1:\(closed): connection refused")
                      && reach.contains("10.9.9.3:\(closed): timed out after 2 s"), check.stdout)
        XCTAssertTrue(check.stdout.contains("nothing listens on 10.9.9.1:\(closed)"), "the refusal's fix wins: \(check.stdout)")

        let up = inNamespace(["up", "db", "--foreground"], timeout: 30)
        XCTAssertNotEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stderr.contains("connection refused by 10.9.9.1:\(closed)")
                      && up.stderr.contains("connection to 10.9.9.3:\(closed) timed out after 2 s"), up.stderr)
    }

    /// ssh_config's AddressFamily picks which addresses are tried.
    func testSSHConfigAddressFamily_picksTheAddressesTried() throws {
        let sshConfig = makeTempDir("ssh_config") + "/config"
        let localPort = Net.freePort()
        writeProfile(port: server.port, localPort: localPort, connectTimeout: 5, extra: "ssh_config = \"\(sshConfig)\"")

        write("Host bastion.test\n  AddressFamily inet6\n", to: sshConfig)
        let check = inNamespace(["check", "db"])
        XCTAssertNotEqual(check.status, 0, check.output)
        let why = "bastion.test has no IPv6 address (it resolves to 10.9.9.3, 10.9.9.1), and ssh_config says AddressFamily inet6 for it"
        XCTAssertTrue(check.stdout.contains(why), check.stdout)
        let up = inNamespace(["up", "db", "--foreground"], timeout: 30)
        XCTAssertNotEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stderr.contains(why), up.stderr)

        write("Host bastion.test\n  AddressFamily inet\n", to: sshConfig)
        let inet = inNamespace(["check", "db"])
        XCTAssertEqual(inet.status, 0, inet.output)
        XCTAssertTrue(inet.stdout.contains("TCP connect to 10.9.9.1:\(server.port)"), inet.stdout)
    }

    /// A remote forward's target on this machine is raced the same way.
    func testRemoteForwardTargetWhoseFirstAddressDropsPackets_isReachedThroughTheNextOne() throws {
        let remotePort = Net.freePort()
        harness.writeConfig("""
        [tunnels.db]
        host = "10.9.9.1"
        port = \(server.port)
        user = "\(Env.userName)"
        identity = "\(server.userKey)"
        known_hosts = "\(harness.knownHosts)"
        remote = "\(remotePort):bastion.test:\(server.port)"
        connect_timeout = 5

        """)
        let pub = read(server.hostKey + ".pub").split(separator: " ")
        write("[10.9.9.1]:\(server.port) \(pub[0]) \(pub[1])\n", to: harness.knownHosts, mode: 0o600)
        let up = inNamespace(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        // The server's end of the remote forward; its target, bastion.test, is the sshd itself, which greets first.
        let client = namespace.run("/usr/bin/python3", ["-c", """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
            print(s.recv(64).decode(errors="replace").strip())
            """, "\(remotePort)"])
        XCTAssertTrue(client.stdout.hasPrefix("SSH-2.0-OpenSSH"), "\(client.output)\n\(harness.supervisorLog)")
    }
}
