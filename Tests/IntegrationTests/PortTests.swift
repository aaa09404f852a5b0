import Foundation
import XCTest

/// Ports: who holds them, privileged ports, safe binds, service names, auto,
/// overlaps, `tunnel check` and `tunnel config check`.
final class PortTests: SSHTestCase {

    private func config(_ forwards: [String], extra: String = "", name: String = "db") {
        harness.writeConfig(harness.profile(name, server: server, forwards: forwards, extra: extra))
    }

    private func check(_ name: String = "db", env: [String: String] = [:]) -> (Outcome, [String: (String, String)]) {
        let result = harness.tunnel(["check", name, "--json"], timeout: 30, env: env)
        var steps: [String: (String, String)] = [:]
        if let data = result.stdout.data(using: .utf8),
           let reports = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
           let list = reports.first?["steps"] as? [[String: Any]] {
            for step in list {
                let detail = (step["detail"] as? String ?? "") + " | fix: " + (step["fix"] as? String ?? "")
                steps[step["step"] as? String ?? "?"] = (step["outcome"] as? String ?? "?", detail)
            }
        } else {
            XCTFail("check --json printed no steps: \(result.output)")
        }
        return (result, steps)
    }

    func testPortHeldByAnotherProcess_theErrorAndCheckNameItsPidAndProgram() throws {
        let port = Net.freePort()
        // Its command line spans lines and carries an escape sequence: the error stays one line and inert.
        let holder = try Background("/usr/bin/python3", ["-c", "import socket,time\ns=socket.socket(); s.bind(('127.0.0.1', \(port))); s.listen(); time.sleep(300) # \u{1b}[31m"],
                                    logPath: harness.dir + "/holder.log")
        defer { holder.stop() }
        XCTAssertTrue(eventually(timeout: 5) { Net.isListening(port) })
        config(["\(port):127.0.0.1:\(echo.port)"])
        let fg = harness.tunnel(["up", "db", "--foreground"], timeout: 20)
        XCTAssertNotEqual(fg.status, 0)
        XCTAssertTrue(fg.stderr.contains("already in use") && fg.stderr.contains("pid \(holder.pid)") && fg.stderr.contains("python3"), fg.stderr)
        XCTAssertTrue(fg.stderr.contains("import socket,time\\ns=socket"), fg.stderr)
        XCTAssertFalse(fg.stderr.contains("\u{1b}"), fg.stderr)
        XCTAssertEqual(fg.stderr.split(separator: "\n").filter { $0.hasPrefix("tunnel:") }.count, 1, fg.stderr)
        let bg = harness.tunnel(["up", "db"], timeout: 20)
        XCTAssertNotEqual(bg.status, 0)
        XCTAssertTrue(bg.stderr.contains("pid \(holder.pid)") && bg.stderr.contains("python3"), bg.stderr)
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let local = try XCTUnwrap(steps["local 127.0.0.1:\(port)"])
        XCTAssertEqual(local.0, "fail")
        XCTAssertTrue(local.1.contains("pid \(holder.pid)") && local.1.contains("python3") && local.1.contains("time.sleep"), local.1)
    }

    func testPortBelow1024_asNobody_namesTheMissingPrivilegeAndBothFixes() throws {
        guard getuid() == 0 else { return XCTFail("runs a command as nobody: needs root (CI runs as root)") }
        let ns = try NetworkNamespace()
        // nobody must be able to read the profile.
        let dir = makeTempDir("nobody")
        let path = dir + "/tunnels.toml"
        write("[tunnels.web]\nhost = \"127.0.0.1\"\nport = \(server.port)\nforward = \"80:127.0.0.1:8080\"\nknown_hosts = \"\(dir)/kh\"\n", to: path)
        let asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", Env.tunnelBinary]
        let up = ns.run("/usr/bin/setpriv", asNobody + ["up", "web", "--foreground", "--config", path], env: ["HOME": dir])
        XCTAssertNotEqual(up.status, 0)
        for needle in ["127.0.0.1:80", "CAP_NET_BIND_SERVICE", "1024", "setcap cap_net_bind_service=+ep"] {
            XCTAssertTrue(up.stderr.contains(needle), "missing \(needle): \(up.stderr)")
        }
        let check = ns.run("/usr/bin/setpriv", asNobody + ["check", "web", "--config", path], env: ["HOME": dir])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.stdout.contains("[FAIL] privileged ports") && check.stdout.contains("setcap"), check.stdout)
        // Root may: the same profile binds.
        let asRoot = ns.run(Env.tunnelBinary, ["check", "web", "--config", path], env: ["HOME": dir])
        XCTAssertTrue(asRoot.stdout.contains("[ok  ] privileged ports"), asRoot.stdout)
    }

    func testWildcardBind_isRefusedWithoutPublic_andWarnedAndMarkedWithIt() throws {
        let port = Net.freePort()
        config(["0.0.0.0:\(port):127.0.0.1:\(echo.port)"])
        let refused = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("every interface") && refused.stderr.contains("public = true"), refused.stderr)
        XCTAssertFalse(Net.isListening(port))
        for bind in ["[::]", "192.0.2.2"] {
            config(["\(bind):\(port):127.0.0.1:\(echo.port)"])
            let other = harness.tunnel(["up", "db"])
            XCTAssertNotEqual(other.status, 0)
            XCTAssertTrue(other.stderr.contains("public = true"), other.stderr)
        }

        config(["0.0.0.0:\(port):127.0.0.1:\(echo.port)"], extra: "public = true")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stderr.contains("reachable from the network"), "tunnel up warns: \(up.output)")
        XCTAssertTrue(harness.supervisorLog.contains("reachable from the network"), harness.supervisorLog)
        let table = harness.tunnel(["ls"]).stdout
        XCTAssertTrue(table.contains("0.0.0.0:\(port) !") && table.contains("reachable from the network"), table)
        let json = harness.tunnel(["ls", "--json"]).stdout
        XCTAssertTrue(json.contains("\"public\" : true"), json)
    }

    func testCheck_tellsTheFourTCPFailuresApart() throws {
        let ns = try NetworkNamespace()
        let cases: [(host: String, port: UInt16, timeout: Int, expect: String)] = [
            ("nonexistent.invalid", 22, 3, "does not resolve"),
            ("127.0.0.1", Net.freePort(), 3, "connection refused"),
            ("10.9.9.3", 22, 1, "timed out"),
            ("10.9.9.2", 22, 8, "no route"),
            ("10.255.255.1", 22, 3, "no route"),
        ]
        for c in cases {
            // Name resolution needs the machine's own network; the others run in the namespace.
            let inNamespace = c.host.hasPrefix("10.")
            write("[tunnels.db]\nhost = \"\(c.host)\"\nport = \(c.port)\nforward = \"15432:localhost:5432\"\nconnect_timeout = \(c.timeout)\nknown_hosts = \"\(harness.knownHosts)\"\n",
                  to: harness.configPath)
            let result = inNamespace ? ns.run(Env.tunnelBinary, ["check", "db"], env: harness.environment, timeout: 30)
                                     : harness.tunnel(["check", "db"], timeout: 30)
            XCTAssertNotEqual(result.status, 0, result.output)
            let line = result.stdout.split(separator: "\n").first { $0.contains("reach ") } ?? ""
            XCTAssertTrue(line.contains("[FAIL]") && line.contains(c.expect), "\(c.host): expected \(c.expect): \(result.stdout)")
            XCTAssertTrue(result.stdout.contains("[skip] host key"), result.stdout)
        }
    }

    func testCheck_passesEveryStepForAGoodProfile_andChangesNothing() throws {
        let port = Net.freePort()
        config(["\(port):127.0.0.1:\(echo.port)"])
        let knownBefore = read(harness.knownHosts)
        let (result, steps) = check()
        XCTAssertEqual(result.status, 0, result.output)
        // Plus an "ssh_config" step where the machine's ssh_config adds something (Debian's sets HashKnownHosts yes).
        XCTAssertEqual(steps.keys.filter { $0 != "ssh_config" }.count, 8, "\(steps)")
        XCTAssertTrue(steps.values.allSatisfy { $0.0 == "ok" }, "\(steps)")
        XCTAssertTrue(steps["encryption"]?.1.contains("\(DefaultAlgorithms.pair) (whole-packet cipher, batched keystream, prefetched HMAC digest, kept HMAC keys, pooled padding)") ?? false, "\(steps)")
        XCTAssertTrue(steps["host key"]?.1.contains(server.hostKeyFingerprint) ?? false)
        XCTAssertTrue(steps["authentication"]?.1.contains(server.userKey) ?? false)
        XCTAssertFalse(Net.isListening(port), "check left a listener")
        XCTAssertEqual(read(harness.knownHosts), knownBefore)
        // accept-new with an unknown key: reported, not written.
        write("", to: harness.knownHosts)
        config(["\(port):127.0.0.1:\(echo.port)"], extra: "host_key = \"accept-new\"")
        let (again, steps2) = check()
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(steps2["host key"]?.1.contains("will add") ?? false, "\(steps2)")
        XCTAssertEqual(read(harness.knownHosts), "", "check must not write known_hosts")
    }

    /// The tunnel's own listener is not a conflict in any state: up, or
    /// retrying while its server is gone (when `check` is most needed).
    func testCheck_ofATunnelItsSupervisorRuns_acceptsItsOwnListener_upOrRetrying() throws {
        let port = Net.freePort()
        config(["\(port):127.0.0.1:\(echo.port)"])
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let (_, up) = check()
        XCTAssertEqual(up["local 127.0.0.1:\(port)"]?.0, "ok", "\(up)")
        XCTAssertTrue(up["local 127.0.0.1:\(port)"]?.1.contains("held by this tunnel's own supervisor") ?? false, "\(up)")
        XCTAssertTrue(up["local 127.0.0.1:\(port)"]?.1.contains("db is up") ?? false, "\(up)")

        server.stop()
        XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state != "up" }, "\(harness.list())")
        let state = try XCTUnwrap(harness.listed("db")?.state)
        let (result, down) = check()
        XCTAssertNotEqual(result.status, 0, "the server is gone: check fails, at the right step")
        XCTAssertEqual(down["local 127.0.0.1:\(port)"]?.0, "ok", "\(down)")
        XCTAssertTrue(down["local 127.0.0.1:\(port)"]?.1.contains("db is \(state)") ?? false, "\(down)")
        XCTAssertEqual(down["reach 127.0.0.1:\(server.port)"]?.0, "fail", "\(down)")
    }

    /// Another tunnel of the same supervisor holds the port: check names that
    /// tunnel and `tunnel down` it, not the supervisor every tunnel runs in.
    func testCheck_portHeldByAnotherTunnel_namesThatTunnel() throws {
        let port = Net.freePort()
        config(["\(port):127.0.0.1:\(echo.port)"])
        // A command-line tunnel checks ~/.ssh/known_hosts (HOME is the harness's directory).
        mkdir(harness.dir + "/.ssh", 0o700)
        write(server.knownHostsLine + "\n", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        let squat = harness.tunnel(["up", "-L", "\(port):127.0.0.1:\(echo.port)", "-i", server.userKey, "-p", "\(server.port)",
                                    "--name", "squat", "\(Env.userName)@127.0.0.1"])
        XCTAssertEqual(squat.status, 0, squat.output)
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let local = steps["local 127.0.0.1:\(port)"]
        XCTAssertEqual(local?.0, "fail", "\(steps)")
        XCTAssertTrue(local?.1.hasPrefix("127.0.0.1:\(port) is already in use by tunnel squat (this user's supervisor, pid ") ?? false, "\(steps)")
        XCTAssertTrue(local?.1.contains("fix: `tunnel down squat`") ?? false, "\(steps)")
    }

    func testCheck_identityFileThatDoesNotExist_namesItInTheFix() throws {
        let missing = harness.dir + "/no-such-key"
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"])
            .replacingOccurrences(of: "identity = \"\(server.userKey)\"", with: "identity = \"\(missing)\""))
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let auth = try XCTUnwrap(steps["authentication"])
        XCTAssertEqual(auth.0, "fail")
        XCTAssertTrue(auth.1.contains("fix: ~/no-such-key does not exist: point identity"), auth.1) // HOME is the harness directory
    }

    func testCheck_hostKeyMismatch_failsWithBothFingerprints() throws {
        let other = makeTempDir("otherkey") + "/k"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", other])
        let pub = read(other + ".pub").split(separator: " ")
        write("[127.0.0.1]:\(server.port) \(pub[0]) \(pub[1])\n", to: harness.knownHosts)
        config(["\(Net.freePort()):127.0.0.1:\(echo.port)"])
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let hostKey = try XCTUnwrap(steps["host key"])
        XCTAssertEqual(hostKey.0, "fail")
        XCTAssertTrue(hostKey.1.contains("CHANGED") && hostKey.1.contains(server.hostKeyFingerprint), hostKey.1)
        XCTAssertEqual(steps["authentication"]?.0, "skipped")
    }

    func testCheck_remoteTargetThatRefuses_isToldApartFromForwardingProhibited() throws {
        let closed = Net.freePort()
        config(["\(Net.freePort()):127.0.0.1:\(closed)", "\(Net.freePort()):127.0.0.1:\(echo.port)"])
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let refused = try XCTUnwrap(steps["remote 127.0.0.1:\(closed)"])
        XCTAssertEqual(refused.0, "fail")
        XCTAssertTrue(refused.1.contains("refused by the target"), refused.1)
        XCTAssertEqual(steps["remote 127.0.0.1:\(echo.port)"]?.0, "ok")
    }

    func testServerWithAllowTcpForwardingNo_isReportedAsForwardingProhibited() throws {
        try replaceServer(extraConfig: "AllowTcpForwarding no")
        let port = Net.freePort()
        config(["\(port):127.0.0.1:\(echo.port)"])
        let (result, steps) = check()
        XCTAssertNotEqual(result.status, 0)
        let remote = try XCTUnwrap(steps["remote 127.0.0.1:\(echo.port)"])
        XCTAssertTrue(remote.1.contains("forwarding prohibited by the server") && remote.1.contains("AllowTcpForwarding"), remote.1)
        // And a live tunnel closes that client at once, logging the server's reason.
        let fg = try harness.foreground("db", waitFor: port)
        defer { fg.signal(SIGTERM); _ = fg.wait(timeout: 5) }
        guard let fd = Net.connect(port) else { return XCTFail("connect") }
        let (bytes, cleanEOF) = Net.readToEOF(fd)
        close(fd)
        XCTAssertEqual(bytes.count, 0)
        XCTAssertTrue(cleanEOF, "closed by the tunnel, not left open until our read timeout")
        XCTAssertTrue(eventually(timeout: 5) { fg.log.contains("administratively prohibited") }, fg.log)
    }

    func testServiceNames_resolveAndAreShownBesideThePort() throws {
        config(["\(Net.freePort()):localhost:postgresql", "\(Net.freePort()):127.0.0.1:redis", "\(Net.freePort()):127.0.0.1:\(echo.port)"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, "\(up.output)\n\(harness.supervisorLog)")
        let remotes = harness.listed("db")?.forwards.map(\.remote) ?? []
        XCTAssertEqual(remotes.prefix(2), ["localhost:5432 (postgresql)", "127.0.0.1:6379 (redis)"])
        XCTAssertTrue(harness.tunnel(["ls"]).stdout.contains("localhost:5432 (postgresql)"))
        config(["\(Net.freePort()):localhost:nosuchservice"])
        let bad = harness.tunnel(["config", "check"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("nosuchservice"), bad.stderr)
    }

    func testAutoPort_theKernelPicks_upPrintsIt_lsShowsIt_andItForwards() throws {
        config(["auto:127.0.0.1:\(echo.port)", "0:127.0.0.1:\(echo.port)"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        let locals = harness.listed("db")?.forwards.map(\.local) ?? []
        XCTAssertEqual(locals.count, 2)
        for local in locals {
            XCTAssertTrue(up.stdout.contains(local), "tunnel up prints \(local): \(up.stdout)")
            let port = try XCTUnwrap(UInt16(local.split(separator: ":").last!))
            XCTAssertNotEqual(port, 0)
            guard let fd = Net.connect(port) else { return XCTFail("connect \(local)") }
            XCTAssertTrue(Net.sendAll(fd, Array("auto".utf8)))
            XCTAssertEqual(Net.readExactly(fd, 4), Array("auto".utf8))
            close(fd)
        }
    }

    /// Like `ssh -L`: `localhost` (or no bind address) means 127.0.0.1 and ::1.
    func testLocalhostForward_alsoListensOnIPv6Loopback_anExplicitAddressOnlyThere() throws {
        let (both, named, v4Only, v6Own, socks) = (Net.freePort(), Net.freePort(), Net.freePort(), Net.freePort(), Net.freePort())
        config(["\(both):127.0.0.1:\(echo.port)", "localhost:\(named):127.0.0.1:\(echo.port)",
                "127.0.0.1:\(v4Only):127.0.0.1:\(echo.port)", "auto:127.0.0.1:\(echo.port)",
                // An explicit [::1] forward keeps its port: the other forward on that port stays IPv4.
                "[::1]:\(v6Own):127.0.0.1:\(echo.port)", "\(v6Own):127.0.0.1:\(echo.port)"],
               extra: "dynamic = [\"\(socks)\"]")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        let forwards = try XCTUnwrap(harness.listed("db")?.forwards)
        XCTAssertEqual(forwards.count, 7)
        let auto = try XCTUnwrap(UInt16(forwards[3].local.split(separator: ":").last!))
        XCTAssertEqual(forwards.map(\.also_local), ["[::1]:\(both)", "[::1]:\(named)", nil, "[::1]:\(auto)", nil, nil, "[::1]:\(socks)"])

        func echoes(_ fd: Int32?, _ what: String) {
            guard let fd else { return XCTFail("connect \(what)") }
            defer { close(fd) }
            XCTAssertTrue(Net.sendAll(fd, Array(what.utf8)))
            XCTAssertEqual(Net.readExactly(fd, what.utf8.count).map { String(decoding: $0, as: UTF8.self) }, what)
        }
        for port in [both, named, auto, v6Own] {
            echoes(Net.connect(port), "127.0.0.1:\(port)")
            echoes(Net.connect6(port), "[::1]:\(port)")
        }
        echoes(Net.connect(v4Only), "127.0.0.1:\(v4Only)")
        XCTAssertNil(Net.connect6(v4Only).map { close($0) }, "127.0.0.1 written out listens on IPv4 only")
        // The SOCKS proxy answers on ::1 too.
        let socksClient = try XCTUnwrap(Net.connect6(socks))
        defer { close(socksClient) }
        XCTAssertTrue(Net.sendAll(socksClient, [5, 1, 0]))
        XCTAssertEqual(Net.readExactly(socksClient, 2), [5, 0])

        XCTAssertFalse(harness.supervisorLog.contains("only:"), "no address was left out: \(harness.supervisorLog)")
        let status = harness.tunnel(["status", "db"]).stdout
        XCTAssertTrue(status.contains("127.0.0.1:\(both) and [::1]:\(both) -> "), status)

        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        for port in [both, named, auto, v6Own, socks] { XCTAssertFalse(Net.isListening(port), "port \(port) is closed on both families") }
        XCTAssertTrue(harness.supervisorLog.contains("[::1]:\(both)"), "down names both addresses: \(harness.supervisorLog)")
    }

    func testLocalhostForward_whenSomeoneHoldsItOnIPv6Loopback_comesUpOnIPv4AndSaysSo() throws {
        let port = Net.freePort()
        let holder = try XCTUnwrap(Net.listen6(port), "[::1]:\(port) is free for the test to take")
        defer { close(holder) }
        config(["\(port):127.0.0.1:\(echo.port)"])
        // check passes (IPv4 is free) and names who has the IPv6 side.
        let (checked, steps) = check()
        XCTAssertEqual(checked.status, 0, checked.output)
        let local = steps["local 127.0.0.1:\(port)"]
        XCTAssertEqual(local?.0, "ok", "\(steps)")
        XCTAssertTrue(local?.1.contains("[::1]:\(port) is taken by pid \(getpid()) ") ?? false, "\(steps)")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        guard let fd = Net.connect(port) else { return XCTFail("connect 127.0.0.1:\(port)") }
        defer { close(fd) }
        XCTAssertTrue(Net.sendAll(fd, Array("v4".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 2), Array("v4".utf8))
        XCTAssertNil(harness.listed("db")?.forwards.first?.also_local)
        // The holder is named, and the supervisor's own IPv4 listener is not taken for one.
        let log = harness.supervisorLog
        XCTAssertTrue(log.contains("127.0.0.1:\(port) only: local address [::1]:\(port) is already in use by pid \(getpid()) "), log)
        XCTAssertFalse(log.contains("tunnel supervisor (pid"), log)
    }

    func testOverlappingForwardsAcrossTwoProfiles_areCaughtWhenReadNamingBoth() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("a", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
                            + harness.profile("b", server: server, forwards: ["0.0.0.0:\(port):127.0.0.1:\(echo.port)"], extra: "public = true"))
        let check = harness.tunnel(["config", "check"])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.stderr.contains("tunnels.a") && check.stderr.contains("tunnels.b") && check.stderr.contains("overlaps"), check.stderr)
        let upB = harness.tunnel(["up", "b"])
        XCTAssertNotEqual(upB.status, 0)
        XCTAssertTrue(upB.stderr.contains("overlaps") && upB.stderr.contains("tunnels.a"), upB.stderr)
        XCTAssertFalse(Net.isListening(port), "nothing was bound")
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
    }

    func testConfigCheck_reportsThreeDifferentMistakesAtTheirLines() throws {
        harness.writeConfig("""
        [tunnels.db]
        host = "10.0.1.50"
        hots = "10.0.1.51"
        forward = ["5433:localhost:5432"]

        [tunnels.cache]
        host = "10.0.1.52"
        port = "twenty-two"
        forward = "6380:localhost:6379"

        [tunnels.web]
        host = "10.0.1.53"
        forward = ["8080:localhost:99999"]
        """)
        let result = harness.tunnel(["config", "check"])
        XCTAssertNotEqual(result.status, 0)
        let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix(harness.configPath + ":") }
        XCTAssertEqual(lines.count, 3, result.stderr)
        XCTAssertTrue(lines.contains { $0.hasPrefix("\(harness.configPath):3:") && $0.contains("hots") && $0.contains("did you mean \"host\"") }, result.stderr)
        XCTAssertTrue(lines.contains { $0.hasPrefix("\(harness.configPath):8:") && $0.contains("port") }, result.stderr)
        XCTAssertTrue(lines.contains { $0.hasPrefix("\(harness.configPath):13:") && $0.contains("99999") }, result.stderr)
        // A good file passes and lists its profiles.
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        let ok = harness.tunnel(["config", "check"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(ok.stdout.contains("ok, 1 profile: db"), ok.stdout)
    }
}
