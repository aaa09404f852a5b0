import Foundation
import XCTest

/// `dynamic` (ssh -D): a SOCKS4, 4a and 5 proxy whose connections go out
/// through the SSH server, tested with real clients (curl, nc, proxychains4
/// with psql) and hostile ones (Scripts/socks_probe.py).
final class SocksTests: SSHTestCase {
    private var proxyPort: UInt16 = 0
    private var web: Background?
    private var webPort: UInt16 = 0

    override func tearDown() {
        web?.stop()
        super.tearDown()
    }

    /// A profile with one SOCKS proxy, brought up.
    private func upProxy(extra: String = "", file: StaticString = #filePath, line: UInt = #line) {
        proxyPort = Net.freePort()
        harness.writeConfig(harness.profile("lab", server: server, forwards: [], extra: "dynamic = \"\(proxyPort)\"\n" + extra))
        let up = harness.tunnel(["up", "lab"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog, file: file, line: line)
    }

    /// A static HTTP server on loopback with one file, hello.txt.
    private func startWeb(namespace: TestNamespace? = nil) throws {
        let dir = makeTempDir("web")
        write("hello through socks\n", to: dir + "/hello.txt")
        webPort = Net.freePort()
        let command = ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "\(webPort)"]
        let full = namespace.map { ["/usr/bin/ip", "netns", "exec", $0.name] + command } ?? command
        web = try Background(full[0], Array(full.dropFirst()), logPath: dir + "/log")
        let listening = { namespace == nil ? Net.isListening(self.webPort) : runCommand("/usr/bin/ip", ["netns", "exec", namespace!.name, "ss", "-ltnH", "sport = :\(self.webPort)"]).stdout.contains("LISTEN") }
        XCTAssertTrue(eventually(timeout: 10, listening), "http.server did not start")
    }

    private func curl(_ args: [String]) -> Outcome {
        runCommand(Env.which("curl")!, ["-sS", "--max-time", "20"] + args, timeout: 40)
    }

    private func probe(_ args: [String]) -> String {
        let out = runCommand("/usr/bin/python3", [Env.packageRoot.appendingPathComponent("Scripts/socks_probe.py").path] + args, timeout: 120)
        XCTAssertEqual(out.status, 0, out.output)
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testCurl_socks5Hostname_socks4a_socks5_and_socks4_allReachTheWebServer() throws {
        try startWeb()
        upProxy()
        let url = "http://localhost:\(webPort)/hello.txt"
        for (flag, target) in [("--socks5-hostname", url), ("--socks4a", url),
                               ("--socks5", "http://127.0.0.1:\(webPort)/hello.txt"), ("--socks4", "http://127.0.0.1:\(webPort)/hello.txt")] {
            let result = curl([flag, "127.0.0.1:\(proxyPort)", target])
            XCTAssertEqual(result.status, 0, "\(flag): \(result.output)")
            XCTAssertEqual(result.stdout, "hello through socks\n", flag)
        }
        let listed = try XCTUnwrap(harness.listed("lab"))
        XCTAssertEqual(listed.forwards.first?.kind, "dynamic")
        XCTAssertEqual(listed.forwards.first?.remote, "socks")
        XCTAssertEqual(listed.forwards.first?.local, "127.0.0.1:\(proxyPort)")
        XCTAssertEqual(listed.forwards.first?.total, 4)
        let table = harness.tunnel(["ls"]).stdout
        XCTAssertTrue(table.contains("127.0.0.1:\(proxyPort)") && table.contains("socks"), table)
    }

    func testNetcat_dashX5_andPipelinedPayload_echo() {
        upProxy()
        let nc = runCommand(Env.which("nc")!, ["-X", "5", "-x", "127.0.0.1:\(proxyPort)", "-q", "2", "127.0.0.1", "\(echo.port)"], timeout: 30, stdin: "hello over nc\n")
        XCTAssertEqual(nc.stdout, "hello over nc\n", nc.output)
        // The first payload bytes in the same packet as the request are forwarded too.
        XCTAssertEqual(probe(["echo5", "\(proxyPort)", "127.0.0.1", "\(echo.port)"]), "ping")
    }

    func testProxychains4_runsARealPsqlThroughTheProxy() throws {
        let postgres = try Postgres()
        defer { postgres.stop() }
        upProxy()
        let conf = harness.dir + "/proxychains.conf"
        write("strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 127.0.0.1 \(proxyPort)\n", to: conf)
        let psql = runCommand(Env.which("proxychains4")!, ["-q", "-f", conf, "/usr/bin/psql", "-h", "127.0.0.1", "-p", "\(postgres.port)", "-U", "postgres",
                                                           "-d", "postgres", "-At", "-c", "select 6 * 7"], env: ["PGCONNECT_TIMEOUT": "10"], timeout: 60)
        XCTAssertEqual(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "42", psql.output)
        XCTAssertGreaterThanOrEqual(harness.listed("lab")?.forwards.first?.total ?? 0, 1, "psql went through the proxy")
    }

    func testBindAndUDPAssociate_getCommandNotSupported() {
        upProxy()
        XCTAssertEqual(probe(["reply5", "\(proxyPort)", "127.0.0.1", "\(echo.port)", "2"]), "reply 07")
        XCTAssertEqual(probe(["reply5", "\(proxyPort)", "127.0.0.1", "\(echo.port)", "3"]), "reply 07")
        XCTAssertEqual(probe(["reply4", "\(proxyPort)", "127.0.0.1", "\(echo.port)", "2"]), "reply 5b")
    }

    /// The server's "connect failed" may be a closed port, a name that does
    /// not resolve or an unreachable host: a general failure, not "refused".
    func testATargetThatCannotBeReached_getsGeneralFailure_andAProhibitedOne_notAllowed() throws {
        upProxy()
        let closed = Net.freePort()
        XCTAssertEqual(probe(["reply5", "\(proxyPort)", "127.0.0.1", "\(closed)", "1"]), "reply 01")
        XCTAssertEqual(probe(["reply4", "\(proxyPort)", "127.0.0.1", "\(closed)", "1"]), "reply 5b")
        XCTAssertEqual(harness.listed("lab")?.state, "up", "a refused target leaves the tunnel up")
        harness.stopSupervisor()
        try replaceServer(extraConfig: "PermitOpen 127.0.0.1:\(echo.port)")
        upProxy()
        XCTAssertEqual(probe(["reply5", "\(proxyPort)", "127.0.0.1", "\(closed)", "1"]), "reply 02")
        XCTAssertEqual(probe(["echo5", "\(proxyPort)", "127.0.0.1", "\(echo.port)"]), "ping", "the permitted target still works")
    }

    func testGarbage_unknownVersions_andTruncatedRequests_areClosed() {
        upProxy()
        for bytes in ["474554202f20485454502f312e310d0a0d0a",  // an HTTP request
                      "16030100",                              // a TLS record
                      "0500",                                  // SOCKS5 with no methods
                      "050100" + "0601000100000000",           // a request of version 6
                      "050100" + "05010005",                   // an unknown address type
                      "050100" + "0501000300"] {               // a zero-length name
            XCTAssertEqual(probe(["garbage", "\(proxyPort)", bytes]), "closed", bytes)
        }
        XCTAssertEqual(probe(["echo5", "\(proxyPort)", "127.0.0.1", "\(echo.port)"]), "ping", "the proxy still serves")
    }

    func testCheck_ofASOCKSProxy_passes_withNoTargetToOpen() {
        proxyPort = Net.freePort()
        harness.writeConfig(harness.profile("lab", server: server, forwards: [], extra: "dynamic = \"\(proxyPort)\"\n"))
        let check = harness.tunnel(["check", "lab"], timeout: 30)
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.stdout.contains("[ok  ] remote socks") && check.stdout.contains("each client names its target"), check.stdout)
        XCTAssertFalse(check.stdout.contains("FAIL"), check.stdout)
    }

    func testAStalledGreeting_isClosedAfterTheDeadline() {
        upProxy()
        // Both stalls at once: each waits out the same 10 s deadline.
        let stalls = ["0502", "050100050100"] // a greeting cut short; stopped halfway through the request
        let results = Atomic([String](repeating: "", count: stalls.count))
        let script = Env.packageRoot.appendingPathComponent("Scripts/socks_probe.py").path, port = proxyPort
        DispatchQueue.concurrentPerform(iterations: stalls.count) { i in
            let out = runCommand("/usr/bin/python3", [script, "stall", "\(port)", stalls[i]], timeout: 120)
            results.mutate { $0[i] = "\(out.status) " + out.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        XCTAssertEqual(results.value, ["0 closed", "0 closed"])
    }

    func testTwoHundredStalledHalfGreetings_leaveTheProxyServingAGoodClient() {
        upProxy()
        XCTAssertEqual(probe(["crowd", "\(proxyPort)", "200", "127.0.0.1", "\(echo.port)"]), "echo OK 200")
        XCTAssertEqual(harness.listed("lab")?.state, "up")
    }

    func testThroughABastionInANamespace_aNameOnlyTheBastionResolves_isReached() throws {
        let namespace = try TestNamespace()
        defer { namespace.remove() }
        // `ip netns exec` puts /etc/netns/NAME/hosts over /etc/hosts for what it runs.
        let netnsEtc = "/etc/netns/\(namespace.name)"
        try FileManager.default.createDirectory(atPath: netnsEtc, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: netnsEtc) }
        write("127.0.0.1 localhost\n127.0.0.1 intranet.lab.internal\n", to: netnsEtc + "/hosts")
        let bastion = try SSHServer(namespace: namespace, listenAddress: namespace.insideAddress)
        defer { bastion.stop() }
        harness.trust(bastion)
        try startWeb(namespace: namespace)
        proxyPort = Net.freePort()
        harness.writeConfig(harness.profile("lab", server: bastion, forwards: [], extra: "dynamic = [\"\(proxyPort)\"]\n"))
        let up = harness.tunnel(["up", "lab"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        let url = "http://intranet.lab.internal:\(webPort)/hello.txt"
        let remote = curl(["--socks5-hostname", "127.0.0.1:\(proxyPort)", url])
        XCTAssertEqual(remote.stdout, "hello through socks\n", remote.output)
        XCTAssertEqual(curl(["--socks4a", "127.0.0.1:\(proxyPort)", url]).stdout, "hello through socks\n")
        // Resolved here, the name means nothing: curl fails before it asks the proxy.
        let local = curl(["--socks5", "127.0.0.1:\(proxyPort)", url])
        XCTAssertNotEqual(local.status, 0)
        XCTAssertTrue(local.stderr.contains("Could not resolve host: intranet.lab.internal"), local.output)
    }

    func testAdHocDashD_andASSHConfigAliasWithDynamicForward_needNoProfile() throws {
        // Ad-hoc tunnels check ~/.ssh/known_hosts (HOME is the harness's directory).
        mkdir(harness.dir + "/.ssh", 0o700)
        write(server.knownHostsLine + "\n", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        let adHocPort = Net.freePort(), aliasPort = Net.freePort()
        let sshConfig = harness.dir + "/ssh_config"
        write("Host socks-alias\n  HostName 127.0.0.1\n  Port \(server.port)\n  User root\n  IdentityFile \(server.userKey)\n"
              + "  UserKnownHostsFile \(harness.knownHosts)\n  DynamicForward \(aliasPort)\n", to: sshConfig, mode: 0o600)
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n")
        let destination = "root@127.0.0.1:\(server.port)"
        let adHoc = harness.tunnel(["up", "-D", "\(adHocPort)", "-i", server.userKey, "--name", "adhoc", destination])
        XCTAssertEqual(adHoc.status, 0, adHoc.output + harness.supervisorLog)
        XCTAssertTrue(adHoc.stdout.contains("adhoc: up: 127.0.0.1:\(adHocPort) -> socks"), adHoc.stdout)
        let alias = harness.tunnel(["up", "socks-alias"])
        XCTAssertEqual(alias.status, 0, alias.output + harness.supervisorLog)
        for port in [adHocPort, aliasPort] {
            XCTAssertEqual(probe(["echo5", "\(port)", "127.0.0.1", "\(echo.port)"]), "ping")
        }
        XCTAssertEqual(harness.listed("adhoc")?.origin, "command line")
        XCTAssertEqual(harness.listed("socks-alias")?.origin, "ssh_config")
        XCTAssertEqual(harness.listed("socks-alias")?.forwards.first?.kind, "dynamic")
        let bad = harness.tunnel(["up", "-D", "1080:localhost:22", destination])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("-D \"1080:localhost:22\": expected [bind:]port"), bad.stderr)
    }

    func testAClientArrivingWhileTheLinkIsDown_isHeldAndServedAfterTheReconnect() {
        upProxy(extra: "hold_timeout = 30\n")
        XCTAssertEqual(probe(["echo5", "\(proxyPort)", "127.0.0.1", "\(echo.port)"]), "ping")
        server.killSessions()
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("lab")?.state != "up" }, "\(harness.list())")
        XCTAssertTrue(Net.isListening(proxyPort), "the proxy's port stays bound")
        // Sent while the link is down: it waits, then gets through.
        XCTAssertEqual(probe(["echo5", "\(proxyPort)", "127.0.0.1", "\(echo.port)"]), "ping")
        XCTAssertEqual(harness.listed("lab")?.state, "up")
        XCTAssertEqual(harness.listed("lab")?.forwards.first?.total, 2)
    }
}
