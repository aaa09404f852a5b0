import Foundation
import XCTest

/// `jump`: through a bastion in a network namespace to servers that only the
/// bastion can reach (they listen on that namespace's own loopback).
final class JumpHostTests: SSHTestCase {
    private var namespace: TestNamespace!
    private var bastion: SSHServer!
    /// Reachable only from inside the namespace.
    private var inner: SSHServer!

    override func setUpWithError() throws {
        try super.setUpWithError()
        namespace = try TestNamespace()
        bastion = try SSHServer(namespace: namespace, listenAddress: namespace.insideAddress)
        inner = try SSHServer(namespace: namespace)
        // Every hop accepts the profile's one identity.
        try bastion.authorize(publicKeyFile: server.userKey + ".pub")
        try inner.authorize(publicKeyFile: server.userKey + ".pub")
    }

    override func tearDown() {
        bastion?.stop()
        inner?.stop()
        namespace?.remove()
        super.tearDown()
    }

    /// A profile for `target` through `jump`, forwarding a local port to
    /// `service` as the target sees it.
    private func profile(_ port: UInt16, target: SSHServer, jump: String, service: UInt16) -> String {
        harness.profile("db", server: target, forwards: ["\(port):127.0.0.1:\(service)"], extra: "jump = \"\(jump)\"\n")
            .replacingOccurrences(of: "identity = \"\(target.userKey)\"", with: "identity = \"\(server.userKey)\"")
    }

    /// The SSH banner of a server inside the namespace, read through the tunnel.
    private static func banner(through port: UInt16) -> String? {
        guard let fd = Net.connect(port, timeout: 10) else { return nil }
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        guard let bytes = Net.readExactly(fd, 8) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    private var bastionName: String { "root@\(namespace.insideAddress):\(bastion.port)" }

    func testJump_reachesAServiceOnlyTheBastionCanReach() throws {
        XCTAssertNil(Net.connect(inner.port, timeout: 1).map { close($0) }, "the inner server is not reachable from here")
        harness.trust(bastion)
        harness.trust(inner)
        let port = Net.freePort()
        harness.writeConfig(profile(port, target: inner, jump: bastionName, service: inner.port))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-", "the inner server's own port, reached from inside the namespace")
        let listed = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(listed.via, "root@127.0.0.1:\(inner.port) via \(bastionName)")
        XCTAssertEqual(listed.hops, [bastionName, "root@127.0.0.1:\(inner.port)"])
        XCTAssertTrue(harness.supervisorLog.contains("hop 1 of 2 (\(bastionName)) up via \(namespace.insideAddress):\(bastion.port)"), harness.supervisorLog)
    }

    func testSOCKSAndUnixSocketForwards_workThroughTheJumpToo() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let socks = Net.freePort()
        let socketPath = makeTempDir("jump-sock") + "/inner.sock"
        harness.writeConfig(profile(Net.freePort(), target: inner, jump: bastionName, service: inner.port)
            .replacingOccurrences(of: "forward = [", with: "dynamic = \"\(socks)\"\nforward = [\"\(socketPath):127.0.0.1:\(inner.port)\", "))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        // The inner server's banner, asked for by name through the SOCKS proxy (the name resolves on the inner host).
        let viaSocks = runCommand(Env.which("nc")!, ["-X", "5", "-x", "127.0.0.1:\(socks)", "-w", "5", "localhost", "\(inner.port)"], timeout: 30, stdin: "")
        XCTAssertTrue(viaSocks.stdout.hasPrefix("SSH-2.0-"), viaSocks.output)
        let viaSocket = runCommand(Env.which("nc")!, ["-U", "-w", "5", socketPath], timeout: 30, stdin: "")
        XCTAssertTrue(viaSocket.stdout.hasPrefix("SSH-2.0-"), viaSocket.output)
        XCTAssertEqual(harness.listed("db")?.forwards.compactMap(\.kind).sorted(), ["dynamic", "local", "local"])
    }

    func testUnknownBastionKey_isRefusedNamingTheBastion() {
        harness.trust(inner)
        harness.writeConfig(profile(Net.freePort(), target: inner, jump: bastionName, service: inner.port))
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("hop 1 of 2 (\(bastionName)): ") && up.stderr.contains("not known"), up.stderr)
        XCTAssertFalse(read(bastion.logPath).contains("Accepted publickey"), "no login on a bastion whose key was refused")
    }

    func testUnknownInnerKey_isRefusedNamingTheInnerHost() {
        harness.trust(bastion)
        harness.writeConfig(profile(Net.freePort(), target: inner, jump: bastionName, service: inner.port))
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("hop 2 of 2 (root@127.0.0.1:\(inner.port)): ") && up.stderr.contains("not known"), up.stderr)
        XCTAssertFalse(read(inner.logPath).contains("Accepted publickey"), "no login on a host whose key was refused")
    }

    func testTwoHops_theSecondThroughTheFirst() throws {
        let third = try SSHServer(namespace: namespace)
        defer { third.stop() }
        try third.authorize(publicKeyFile: server.userKey + ".pub")
        for s in [bastion!, inner!, third] { harness.trust(s) }
        let port = Net.freePort()
        harness.writeConfig(profile(port, target: third, jump: "\(bastionName),root@127.0.0.1:\(inner.port)", service: third.port))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertEqual(harness.listed("db")?.via, "root@127.0.0.1:\(third.port) via root@127.0.0.1:\(inner.port) via \(bastionName)")
        XCTAssertTrue(read(inner.logPath).contains("Accepted publickey"), "the middle hop authenticated")
    }

    /// A bastion that forbids forwarding: the error names the bastion (its
    /// configuration is the cause), and the tunnel stops asking.
    func testBastionThatProhibitsForwarding_isNamedAsTheCause_andTheFailureIsPermanent() throws {
        bastion.stop()
        bastion = try SSHServer(extraConfig: "AllowTcpForwarding no", namespace: namespace, listenAddress: namespace.insideAddress)
        try bastion.authorize(publicKeyFile: server.userKey + ".pub")
        harness.trust(bastion)
        harness.trust(inner)
        let port = Net.freePort()
        harness.writeConfig(profile(port, target: inner, jump: bastionName, service: inner.port))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertNotEqual(up.status, 0, up.output)
        let expected = "hop 1 of 2 (\(bastionName)): does not forward to hop 2 (127.0.0.1:\(inner.port)): Channel open failure (administratively prohibited) (AllowTcpForwarding or PermitOpen in that hop's sshd_config)"
        XCTAssertTrue(up.stderr.contains(expected), up.stderr)
        XCTAssertEqual(harness.listed("db")?.state, "failed", "\(harness.list())")
        XCTAssertFalse(up.stderr.contains("retrying"), up.stderr)
        // The hop's channel has no client of its own to close: the log says nothing of one.
        XCTAssertFalse(harness.supervisorLog.contains("closing that client"), harness.supervisorLog)
    }

    /// A ProxyJump chain that passes the same server twice is finite, and
    /// ssh takes it: so does tunnel (bastion, inner, then bastion again).
    func testProxyJumpChainThatPassesAHostTwice_isTaken() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let config = writeSSHConfig(innerPort: inner.port, extraForDB: """
        Host inner-alias
          HostName 127.0.0.1
          Port \(inner.port)
        Host again-alias
          HostName \(namespace.insideAddress)
          Port \(bastion.port)
          ProxyJump bastion-alias,inner-alias
        """)
        let port = Net.freePort()
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n[tunnels.again]\nhost = \"again-alias\"\nforward = \"\(port):\(namespace.insideAddress):\(bastion.port)\"\n")
        let up = harness.tunnel(["up", "again"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("again")?.hops?.count, 3, "\(harness.list())")
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
    }

    /// ProxyJump in URL form, which `ssh -G` prints with the host in brackets
    /// (`[10.x.x.x]:2222`), as ssh -J also accepts it.
    func testProxyJumpInURLForm_isTaken() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let config = writeSSHConfig(innerPort: inner.port, extraForDB: """
        Host url-alias
          HostName 127.0.0.1
          Port \(inner.port)
          ProxyJump ssh://\(namespace.insideAddress):\(bastion.port)
        Host \(namespace.insideAddress)
          User root
          IdentityFile \(server.userKey)
        """)
        let port = Net.freePort()
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n[tunnels.url]\nhost = \"url-alias\"\nforward = \"\(port):127.0.0.1:\(inner.port)\"\n")
        let up = harness.tunnel(["up", "url"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("url")?.hops?.first, "\(Env.userName)@\(namespace.insideAddress):\(bastion.port)", "\(harness.list())")
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
    }

    func testKilledBastionSession_isHealed_withTheListenerBound() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let port = Net.freePort()
        harness.writeConfig(profile(port, target: inner, jump: bastionName, service: inner.port))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        bastion.killSessions()
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.restarts == 1 && self.harness.listed("db")?.state == "up" },
                      "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertTrue(Net.isListening(port))
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertTrue(harness.listed("db")?.last_error?.hasPrefix("hop 1 of 2 (\(bastionName)): ") == true,
                      "the loss is the bastion's: \(harness.list())")
    }

    func testStoppedBastion_isNoticedWithinKeepaliveTimesCount_andHealed() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let port = Net.freePort()
        harness.writeConfig(profile(port, target: inner, jump: bastionName, service: inner.port))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let stopped = bastion.sessionPIDs
        XCTAssertFalse(stopped.isEmpty)
        for pid in stopped { kill(pid, SIGSTOP) }
        // keepalive 2 s × 3: the silent bastion is declared dead; the wait only guards against a hang.
        let noticed = eventually(timeout: 30) { self.harness.listed("db")?.last_error?.contains("no data from the server") == true }
        for pid in stopped { kill(pid, SIGKILL) }
        XCTAssertTrue(noticed, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertTrue(harness.listed("db")?.last_error?.hasPrefix("hop 1 of 2 (\(bastionName)): no data from the server") == true, "\(harness.list())")
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.state == "up" }, "\(harness.list())")
        XCTAssertTrue(Net.isListening(port))
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
    }

    /// ssh_config with Include, Match, a wildcard Host and ProxyJump, as
    /// `ssh -G` resolves it; the profile names only the alias and the forward.
    private func writeSSHConfig(innerPort: UInt16, extraForDB: String = "") -> String {
        let dir = harness.dir + "/ssh"
        mkdir(dir, 0o700)
        write("Host bastion-alias\n  HostName \(namespace.insideAddress)\n  Port \(bastion.port)\n", to: dir + "/bastion.conf", mode: 0o600)
        write("""
        Include \(dir)/bastion.conf
        Host db-alias
          HostName 127.0.0.1
          Port \(innerPort)
          ProxyJump bastion-alias
        \(extraForDB)
        Match host 127.0.0.1,\(namespace.insideAddress)
          UserKnownHostsFile \(harness.knownHosts)
        Host *-alias
          User root
          IdentityFile \(server.userKey)
          ServerAliveInterval 3

        """, to: dir + "/config", mode: 0o600)
        return dir + "/config"
    }

    func testSSHConfig_aliasWithIncludeMatchWildcardAndProxyJump_isResolvedAsSSHGSays() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let config = writeSSHConfig(innerPort: inner.port)
        let port = Net.freePort()
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n[tunnels.db]\nhost = \"db-alias\"\nforward = \"\(port):127.0.0.1:\(inner.port)\"\nkeepalive_count = 2\n")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertEqual(harness.listed("db")?.via, "root@127.0.0.1:\(inner.port) via root@\(namespace.insideAddress):\(bastion.port)")
        XCTAssertTrue(harness.supervisorLog.contains("[db] info: ssh_config for db-alias: root@127.0.0.1:\(inner.port) via root@\(namespace.insideAddress):\(bastion.port)"),
                      harness.supervisorLog)
    }

    func testEachHop_logsInWithItsOwnSSHConfigIdentityAndKnownHosts() throws {
        // The bastion accepts only its own key, the inner host only the
        // profile's: one identity for the whole chain cannot work.
        let bastionOnly = try SSHServer(namespace: namespace, listenAddress: namespace.insideAddress)
        defer { bastionOnly.stop() }
        let bastionKnownHosts = harness.dir + "/bastion_known_hosts"
        write(bastionOnly.knownHostsLine + "\n", to: bastionKnownHosts, mode: 0o600)
        harness.trust(inner)
        let dir = harness.dir + "/ssh"
        mkdir(dir, 0o700)
        let config = dir + "/config"
        let port = Net.freePort()
        func writeSSHConfig(bastionIdentity: String) {
            write("""
            Host bastion-alias
              HostName \(namespace.insideAddress)
              Port \(bastionOnly.port)
              User root
              IdentityFile \(bastionIdentity)
              UserKnownHostsFile \(bastionKnownHosts)

            """, to: config, mode: 0o600)
        }
        writeSSHConfig(bastionIdentity: bastionOnly.userKey)
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n" + profile(port, target: inner, jump: "bastion-alias", service: inner.port))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertEqual(harness.listed("db")?.hops, ["root@\(namespace.insideAddress):\(bastionOnly.port)", "root@127.0.0.1:\(inner.port)"])
        XCTAssertTrue(harness.supervisorLog.contains("publickey with \(bastionOnly.userKey)"), harness.supervisorLog)
        XCTAssertTrue(harness.supervisorLog.contains("publickey with \(server.userKey)"), harness.supervisorLog)
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)

        // With the profile's key named for the bastion too, the bastion refuses, and the error names it.
        writeSSHConfig(bastionIdentity: server.userKey)
        let refused = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("hop 1 of 2 (root@\(namespace.insideAddress):\(bastionOnly.port)): authentication failed"), refused.stderr)
    }

    /// What ssh_config says for the target stays the target's: its
    /// StrictHostKeyChecking accept-new and HostKeyAlias do not make tunnel
    /// trust an unknown bastion, as ssh would not.
    func testTargetsAcceptNewAndHostKeyAlias_doNotReachTheBastion() throws {
        harness.trust(inner)
        let dir = harness.dir + "/ssh"
        mkdir(dir, 0o700)
        write("""
        Host bastion-alias
          HostName \(namespace.insideAddress)
          Port \(bastion.port)
        Host db-alias
          HostName 127.0.0.1
          Port \(inner.port)
          ProxyJump bastion-alias
          StrictHostKeyChecking accept-new
          HostKeyAlias db-key
        Host *-alias
          User root
          IdentityFile \(server.userKey)
          UserKnownHostsFile \(harness.knownHosts)

        """, to: dir + "/config", mode: 0o600)
        let port = Net.freePort()
        harness.writeConfig("[defaults]\nssh_config = \"\(dir)/config\"\n[tunnels.db]\nhost = \"db-alias\"\nforward = \"\(port):127.0.0.1:\(inner.port)\"\n")
        let before = read(harness.knownHosts)
        let refused = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(refused.status, 0, refused.output)
        XCTAssertTrue(refused.stderr.contains("hop 1 of 2 (root@\(namespace.insideAddress):\(bastion.port)): ") && refused.stderr.contains("not known"), refused.stderr)
        XCTAssertEqual(read(harness.knownHosts), before, "nothing learned for the bastion")
        XCTAssertFalse(read(bastion.logPath).contains("Accepted publickey"))

        harness.trust(bastion)
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        // The target itself: learned under its alias, as accept-new and HostKeyAlias say.
        XCTAssertTrue(read(harness.knownHosts).contains("db-key "), read(harness.knownHosts))
    }

    func testSSHConfig_aKeyWrittenInTheProfileWins() throws {
        harness.trust(bastion)
        harness.trust(inner)
        // ssh_config names a port nothing listens on; the profile's own port wins.
        let config = writeSSHConfig(innerPort: Net.freePort())
        let port = Net.freePort()
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n[tunnels.db]\nhost = \"db-alias\"\nport = \(inner.port)\nforward = \"\(port):127.0.0.1:\(inner.port)\"\n")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
    }

    func testSSHConfigNone_isNotConsulted() {
        let config = writeSSHConfig(innerPort: inner.port)
        harness.writeConfig("[defaults]\nssh_config = \"none\"\n[tunnels.db]\nhost = \"db-alias\"\nforward = \"\(Net.freePort()):127.0.0.1:1\"\nconnect_timeout = 3\n")
        _ = config
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("host db-alias does not resolve"), up.stderr)
    }

    func testCheck_showsEachHopAsItsOwnSteps() {
        harness.trust(bastion)
        harness.writeConfig(profile(Net.freePort(), target: inner, jump: bastionName, service: inner.port))
        let refused = harness.tunnel(["check", "db"])
        XCTAssertNotEqual(refused.status, 0)
        let innerName = "hop 2 of 2 (root@127.0.0.1:\(inner.port))"
        XCTAssertTrue(refused.stdout.contains("hop 1 of 2 (\(bastionName)): host key"), refused.stdout)
        XCTAssertTrue(refused.stdout.contains("hop 1 of 2 (\(bastionName)): authentication"), refused.stdout)
        XCTAssertTrue(refused.stdout.contains("\(innerName): host key"), refused.stdout)
        harness.trust(inner)
        let passed = harness.tunnel(["check", "db", "--json"])
        XCTAssertEqual(passed.status, 0, passed.output)
        for step in ["reach \(namespace.insideAddress):\(bastion.port)", "hop 1 of 2 (\(bastionName)): host key", "hop 1 of 2 (\(bastionName)): authentication",
                     "\(innerName): host key", "\(innerName): authentication", "remote 127.0.0.1:\(inner.port)"] {
            XCTAssertTrue(passed.stdout.contains("\"step\" : \"\(step)\""), "\(step) missing: \(passed.stdout)")
        }
    }

    func testAdHocUp_dashLdashJ_isSupervisedAndRestoredLikeAProfile() throws {
        // An ad-hoc tunnel checks ~/.ssh/known_hosts (HOME is the harness's directory).
        mkdir(harness.dir + "/.ssh", 0o700)
        write(bastion.knownHostsLine + "\n" + inner.knownHostsLine + "\n", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        harness.writeConfig("")
        let port = Net.freePort()
        let destination = "root@127.0.0.1:\(inner.port)"
        let up = harness.tunnel(["up", "-L", "\(port):127.0.0.1:\(inner.port)", "-J", bastionName, "-i", server.userKey, destination])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stdout.contains("\(destination): up: 127.0.0.1:\(port) -> 127.0.0.1:\(inner.port) via \(destination) via \(bastionName)"), up.stdout)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertEqual(harness.listed(destination)?.origin, "command line")
        // A restarted supervisor brings it back from the saved state.
        harness.stopSupervisor()
        XCTAssertFalse(Net.isListening(port))
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer { daemon.signal(SIGTERM); _ = daemon.wait(timeout: 5) }
        XCTAssertTrue(eventually(timeout: 15) { self.harness.listed(destination)?.state == "up" }, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        // `reload` leaves it alone: it is not a profile.
        let reload = harness.tunnel(["reload"])
        XCTAssertTrue(reload.stdout.contains("\(destination): unchanged"), reload.output)
    }

    func testAdHocUp_badInput_getsOneLine() {
        harness.writeConfig("")
        let noForward = harness.tunnel(["up", "-J", "b", "host"])
        XCTAssertNotEqual(noForward.status, 0)
        XCTAssertTrue(noForward.stderr.contains("-J, -i, -p and --name go with -L"), noForward.stderr)
        let badSpec = harness.tunnel(["up", "-L", "99999:h:1", "host"])
        XCTAssertNotEqual(badSpec.status, 0)
        XCTAssertTrue(badSpec.stderr.hasPrefix("tunnel: -L ") && badSpec.stderr.contains("99999"), badSpec.stderr)
        // A spec that starts with "-" is a bad spec, not a missing value; a stray ":" at the end is named.
        for (spec, expected) in [("-1:h:2", "tunnel: -L \"-1:h:2\": local port \"-1\" is not a number\n"),
                                 ("18010:127.0.0.1:17001:", "tunnel: -L \"18010:127.0.0.1:17001:\": expected [bind:]port:host:hostport (it ends with \":\")\n")] {
            let bad = harness.tunnel(["up", "-L", spec, "host"])
            XCTAssertEqual(bad.status, 1, bad.output)
            XCTAssertEqual(bad.stderr, expected)
        }
        let badJump = harness.tunnel(["up", "-L", "1:h:2", "-J", "ops@", "host"])
        XCTAssertTrue(badJump.stderr.contains(#"-J "ops@": no host"#), badJump.stderr)
        XCTAssertNil(harness.supervisorPID, "nothing started for bad input")
    }

    func testSSHConfigAliasWithOnlyLocalForward_needsNoProfile() throws {
        harness.trust(bastion)
        harness.trust(inner)
        let port = Net.freePort()
        let config = writeSSHConfig(innerPort: inner.port, extraForDB: "Host fwd-alias\n  HostName 127.0.0.1\n  Port \(inner.port)\n  ProxyJump bastion-alias\n  LocalForward \(port) 127.0.0.1:\(inner.port)\n")
        harness.writeConfig("[defaults]\nssh_config = \"\(config)\"\n")
        let up = harness.tunnel(["up", "fwd-alias"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(Self.banner(through: port), "SSH-2.0-")
        XCTAssertEqual(harness.listed("fwd-alias")?.origin, "ssh_config")
        XCTAssertEqual(harness.listed("fwd-alias")?.via, "root@127.0.0.1:\(inner.port) via root@\(namespace.insideAddress):\(bastion.port)")

        // `-L ... ALIAS` reads the same ssh_config (`[defaults] ssh_config`), not ssh's own files.
        let other = Net.freePort()
        let adHoc = harness.tunnel(["up", "-L", "\(other):127.0.0.1:\(inner.port)", "--name", "by-hand", "db-alias"])
        XCTAssertEqual(adHoc.status, 0, adHoc.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("by-hand")?.via, "root@127.0.0.1:\(inner.port) via root@\(namespace.insideAddress):\(bastion.port)")
        XCTAssertEqual(Self.banner(through: other), "SSH-2.0-")
    }
}
