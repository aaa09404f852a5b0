import Foundation
import XCTest

/// `remote` (`ssh -R`): the SSH server runs in a network namespace and listens
/// there for each remote forward; its clients are started inside that
/// namespace (`ip netns exec`), and the services they reach exist only in
/// this one (on its own loopback), so only the forward can carry them.
final class RemoteForwardTests: NamespacedSSHTestCase {
    // remoteServer: the server the remote forwards listen on, inside the namespace.

    /// A profile for `server` (in the namespace) with these remote forwards.
    private func profile(_ remote: [String], server: SSHServer? = nil, extra: String = "") -> String {
        harness.profile("web", server: server ?? remoteServer!, forwards: [],
                        extra: "remote = [\(remote.map { "\"\($0)\"" }.joined(separator: ", "))]\n" + extra)
    }

    /// Inside the namespace: connects to 127.0.0.1:`port`, sends `request`,
    /// shuts down its write side and reads to EOF. Prints the reply's length
    /// and FNV-1a checksum (the one `checksum` computes). A server that closes
    /// the connection before the request is all written (a refused target)
    /// leaves the reply as far as it got: the checksum tells.
    private static let client = """
    import errno, socket, sys
    port, path = int(sys.argv[1]), sys.argv[2]
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    closed = (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET)
    try:
        s.sendall(open(path, "rb").read())
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        if e.errno not in closed:
            raise
    reply = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except OSError as e:
            if e.errno not in closed:
                raise
            break
        if not chunk:
            break
        reply += chunk
    h = 0xcbf29ce484222325
    for b in reply:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    print(len(reply), h)
    """

    private struct Reply: Equatable {
        let count: Int
        let checksum: UInt64
    }

    /// What a client inside the namespace got back from 127.0.0.1:port
    /// (nil when it could not connect), and what it printed.
    private struct Exchange {
        let reply: Reply?
        let output: String
    }

    private func exchangeInside(port: UInt16, request: [UInt8]) -> Exchange {
        let path = harness.dir + "/request-\(UUID().uuidString.prefix(8))"
        _ = FileManager.default.createFile(atPath: path, contents: Data(request))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = runCommand("/usr/bin/ip", ["netns", "exec", namespace.name, "/usr/bin/python3", "-c", Self.client, "\(port)", path], timeout: 30)
        let fields = result.stdout.split(whereSeparator: \.isWhitespace)
        guard result.status == 0, fields.count == 2, let count = Int(fields[0]), let sum = UInt64(fields[1]) else {
            return Exchange(reply: nil, output: result.output)
        }
        return Exchange(reply: Reply(count: count, checksum: sum), output: result.output)
    }

    private func echoed(_ request: [UInt8]) -> Reply { Reply(count: request.count, checksum: checksum(request)) }

    /// "127.0.0.1:3000", or with the service name /etc/services gives the port.
    private func isTarget(_ text: String?, port: UInt16) -> Bool {
        guard let text else { return false }
        return text == "127.0.0.1:\(port)" || text.hasPrefix("127.0.0.1:\(port) (")
    }

    /// `tunnel ls --json`'s forwards, `kind` included.
    private struct ListedForward: Decodable {
        let kind: String?
        let local: String
        let remote: String
        let active: Int
        let total: Int
        let bytes_in: UInt64
        let bytes_out: UInt64
        let problem: String?
    }

    private struct Listed: Decodable {
        let name: String
        let state: String
        let last_error: String?
        let restarts: Int
        let forwards: [ListedForward]
    }

    private func listed() -> Listed? {
        let result = harness.tunnel(["ls", "--json"])
        return (try? JSONDecoder().decode([Listed].self, from: Data(result.stdout.utf8)))?.first { $0.name == "web" }
    }

    // MARK: - tests

    /// `tunnel up` of a tunnel that failed for good waits for the new
    /// attempt's listeners, not the failed attempt's "not listening".
    func testUpOfAFailedTunnel_waitsForTheNewLinksListeners() throws {
        let port = Net.freePort()
        // A key the server does not take: the login fails for good.
        let key = harness.dir + "/other_key"
        let made = runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", key])
        XCTAssertEqual(made.status, 0, made.output)
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"]).replacingOccurrences(of: "identity = \"\(remoteServer!.userKey)\"", with: "identity = \"\(key)\""))
        let failed = harness.tunnel(["up", "web"])
        XCTAssertNotEqual(failed.status, 0, failed.output)
        XCTAssertEqual(listed()?.state, "failed", "\(harness.list())")
        // The right key at that path now: asked again, the tunnel comes up with its listener.
        write(read(remoteServer!.userKey), to: key, mode: 0o600)
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stdout.hasPrefix("web: up: remote 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), up.output)
        XCTAssertFalse(up.stderr.contains("not listening"), up.stderr)
        XCTAssertEqual(exchangeInside(port: port, request: [7, 7]).reply, echoed([7, 7]))
    }

    func testClientOnTheServer_reachesAServiceOnlyThisMachineHas() throws {
        let port = Net.freePort()
        let control = exchangeInside(port: echo.port, request: [1])
        XCTAssertNil(control.reply, "the echo service is not reachable from the server's namespace")
        XCTAssertTrue(control.output.contains("ConnectionRefusedError"), control.output)

        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"]))
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stdout.hasPrefix("web: up: remote 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), up.output)

        let request = randomBytes(200_000, seed: 18)
        let exchange = exchangeInside(port: port, request: request)
        XCTAssertEqual(exchange.reply, echoed(request), exchange.output)

        let forward = try XCTUnwrap(listed()?.forwards.first)
        XCTAssertEqual(forward.kind, "remote")
        XCTAssertEqual(forward.remote, "127.0.0.1:\(port)", "where the server listens")
        XCTAssertTrue(isTarget(forward.local, port: echo.port), "the target on this machine: \(forward.local)")
        XCTAssertTrue(eventually(timeout: 10) { self.listed()?.forwards.first.map { $0.total == 1 && $0.active == 0 } == true }, "\(harness.list())")
        let done = try XCTUnwrap(listed()?.forwards.first)
        XCTAssertEqual(done.bytes_in, UInt64(request.count), "bytes that came over SSH from the server's client")
        XCTAssertEqual(done.bytes_out, UInt64(request.count), "bytes sent back over SSH")
        XCTAssertTrue(harness.supervisorLog.contains("remote 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), harness.supervisorLog)
        XCTAssertTrue(harness.supervisorLog.contains(": the server listens\n"), harness.supervisorLog)
    }

    func testSeveralSessions_onlyTheFirstAsksForTheListener() throws {
        let port = Net.freePort()
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 3"))
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("web")?.sessions_up, 3)
        XCTAssertEqual(remoteServer.log.components(separatedBy: "Accepted publickey").count - 1, 3, "three logins")
        let request = Array("one listener".utf8)
        let exchange = exchangeInside(port: port, request: request)
        XCTAssertEqual(exchange.reply, echoed(request), exchange.output)
        XCTAssertNil(listed()?.last_error, "no second request was refused")
        XCTAssertFalse(harness.supervisorLog.contains("refused the listener"), harness.supervisorLog)
        XCTAssertEqual(harness.supervisorLog.components(separatedBy: ": the server listens session=1/3\n").count - 1, 1, harness.supervisorLog)
        XCTAssertEqual(harness.supervisorLog.components(separatedBy: ": the server listens").count - 1, 1, "asked for once, by the first session")
    }

    func testPortZero_reportsThePortTheServerPicked_andItIsReachable() throws {
        harness.writeConfig(profile(["0:127.0.0.1:\(echo.port)"]))
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        let pattern = try NSRegularExpression(pattern: #"remote 127\.0\.0\.1:([0-9]+) -> 127\.0\.0\.1:\#(echo.port)"#)
        let match = try XCTUnwrap(pattern.firstMatch(in: up.stdout, range: NSRange(up.stdout.startIndex..., in: up.stdout)), up.output)
        let port = try XCTUnwrap(UInt16(up.stdout[Range(match.range(at: 1), in: up.stdout)!]))
        XCTAssertNotEqual(port, 0)
        XCTAssertEqual(listed()?.forwards.first?.remote, "127.0.0.1:\(port)", "ls --json shows the same port")
        XCTAssertEqual(harness.tunnel(["ls"]).stdout.contains("127.0.0.1:\(port)"), true, "and so does the table")
        let request = Array("through the port the server picked".utf8)
        let exchange = exchangeInside(port: port, request: request)
        XCTAssertEqual(exchange.reply, echoed(request), exchange.output)
    }

    func testKilledServerSession_theRemotePortWorksAgain() throws {
        let port = Net.freePort()
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0, harness.supervisorLog)
        let request = Array("before and after".utf8)
        let before = exchangeInside(port: port, request: request)
        XCTAssertEqual(before.reply, echoed(request), before.output)

        remoteServer.killSessions()
        XCTAssertTrue(eventually(timeout: 30, interval: 0.5) {
            guard let web = self.listed(), web.restarts >= 1, web.state == "up" else { return false }
            return self.exchangeInside(port: port, request: request).reply == self.echoed(request)
        }, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertEqual(listed()?.state, "up")
        XCTAssertEqual(listed()?.forwards.first?.remote, "127.0.0.1:\(port)")
    }

    /// A frozen session keeps its listener, so the new session's request is
    /// refused until it is gone: the tunnel stays up and asks again.
    func testOldSessionStillHoldingThePort_isRetriedUntilItLetsGo() throws {
        let port = Net.freePort()
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0, harness.supervisorLog)
        let frozen = remoteServer.sessionPIDs
        XCTAssertFalse(frozen.isEmpty)
        for pid in frozen { kill(pid, SIGSTOP) }
        // keepalive 2 s × 3 declares the frozen link dead; the new session is refused the port.
        let refused = eventually(timeout: 40, interval: 0.5) {
            self.listed()?.last_error?.hasPrefix("remote 127.0.0.1:\(port): server refused the listener (still held by the old session?); retrying in ") == true
        }
        let whileRefused = listed()
        for pid in frozen { kill(pid, SIGKILL) }
        XCTAssertTrue(refused, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertEqual(whileRefused?.state, "up", "the tunnel stays up while it asks again")
        let request = Array("the old session let go".utf8)
        XCTAssertTrue(eventually(timeout: 40, interval: 0.5) {
            self.exchangeInside(port: port, request: request).reply == self.echoed(request)
        }, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertTrue(harness.supervisorLog.contains(": the server listens again\n"), harness.supervisorLog)
    }

    func testServerThatAllowsOnlyLocalForwarding_refusesWithOneClearLine_andTheLocalForwardStillWorks() throws {
        remoteServer.stop()
        remoteServer = try SSHServer(extraConfig: "AllowTcpForwarding local", namespace: namespace, listenAddress: namespace.insideAddress)
        harness.trust(remoteServer)
        let port = Net.freePort()
        let localPort = Net.freePort()
        // The local forward reaches the server's own SSH port from inside the namespace.
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"], extra: "forward = [\"\(localPort):127.0.0.1:\(remoteServer.port)\"]"))
        let up = harness.tunnel(["up", "web"])
        let refusal = "remote 127.0.0.1:\(port): the server refused the listener (remote forwarding is off there by AllowTcpForwarding or DisableForwarding, "
            + "PermitListen leaves this address out, or the port is in use on the server); retrying in "
        XCTAssertNotEqual(up.status, 0, "what was asked for is not there: \(up.output)")
        XCTAssertTrue(up.stderr.contains("tunnel: web: \(refusal)"), up.output)
        XCTAssertTrue(up.stdout.contains("web: up: 127.0.0.1:\(localPort) -> 127.0.0.1:\(remoteServer.port)"), up.output)

        let fd = try XCTUnwrap(Net.connect(localPort), "the local forward works on that server")
        defer { close(fd) }
        XCTAssertEqual(Net.readExactly(fd, 8).map { String(decoding: $0, as: UTF8.self) }, "SSH-2.0-")

        // Asked again and again; the log says it once.
        XCTAssertTrue(eventually(timeout: 20, interval: 0.5) { self.listed()?.last_error?.hasSuffix("retrying in 4 s") == true }, "\(harness.list())")
        XCTAssertEqual(listed()?.state, "up")
        // The refused forward's own row says it is not listening, and why; the local one is up.
        let remoteRow = listed()?.forwards.first { $0.kind == "remote" }
        XCTAssertTrue(remoteRow?.problem?.hasPrefix(refusal) == true, "\(String(describing: remoteRow))")
        XCTAssertNil(listed()?.forwards.first { $0.kind != "remote" }?.problem)
        let table = harness.tunnel(["ls"]).stdout.split(separator: "\n")
        XCTAssertTrue(table.contains { $0.contains(" remote ") && $0.contains("not listening") && $0.contains(refusal) }, table.joined(separator: "\n"))
        XCTAssertTrue(table.contains { $0.contains(" local ") && $0.contains("  up  ") }, table.joined(separator: "\n"))
        XCTAssertTrue(harness.tunnel(["status", "web"]).stdout.contains("; not listening: \(refusal)"))
        XCTAssertEqual(harness.supervisorLog.components(separatedBy: refusal).count - 1, 1, harness.supervisorLog)

        // With the refused remote forward its only one, the tunnel is up with nothing in place: said so, not an empty list.
        XCTAssertEqual(harness.tunnel(["down", "web"]).status, 0)
        harness.writeConfig(profile(["\(port):127.0.0.1:\(echo.port)"]))
        let alone = harness.tunnel(["up", "web"])
        XCTAssertNotEqual(alone.status, 0, alone.output)
        XCTAssertTrue(alone.stdout.hasPrefix("web: up (no forward in place yet) via "), alone.output)
        XCTAssertTrue(alone.stderr.contains("tunnel: web: \(refusal)"), alone.output)
    }

    func testHalfClose_theServersClientShutsDownItsWriteSide_andStillGetsTheWholeReply() throws {
        let reply = randomBytes(300_000, seed: 5)
        let target = TestServer(.replyAfterEOF(reply: reply))
        defer { target.stop() }
        let port = Net.freePort()
        harness.writeConfig(profile(["\(port):127.0.0.1:\(target.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0, harness.supervisorLog)
        let request = Array("the whole request, then EOF".utf8)
        let exchange = exchangeInside(port: port, request: request)
        XCTAssertEqual(exchange.reply, echoed(reply), exchange.output)
        XCTAssertEqual(target.received, [request], "the target saw the request end (EOF) before it replied")
    }

    func testRefusingTarget_closesTheForwardedConnection_andSaysWhy() throws {
        let port = Net.freePort()
        let closedPort = Net.freePort()
        harness.writeConfig(profile(["\(port):127.0.0.1:\(closedPort)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0, harness.supervisorLog)
        let exchange = exchangeInside(port: port, request: Array("anyone?".utf8))
        XCTAssertEqual(exchange.reply, echoed([]), "connected to the server, then closed: \(exchange.output)")
        XCTAssertTrue(eventually(timeout: 10) {
            let log = self.harness.supervisorLog
            return log.contains("remote 127.0.0.1:\(port): cannot connect to 127.0.0.1:\(closedPort)")
                && log.contains(" here: connection refused by 127.0.0.1:\(closedPort); closing the forwarded connection")
        }, harness.supervisorLog)
        XCTAssertTrue(eventually(timeout: 10) { self.listed()?.forwards.first.map { $0.total == 1 && $0.active == 0 } == true }, "\(harness.list())")
        XCTAssertEqual(listed()?.state, "up")
    }

    func testPublicBind_withGatewayPortsClientspecified_listensOnTheAddressAskedFor() throws {
        remoteServer.stop()
        remoteServer = try SSHServer(extraConfig: "GatewayPorts clientspecified", namespace: namespace, listenAddress: namespace.insideAddress)
        harness.trust(remoteServer)
        let port = Net.freePort()
        let spec = "\(namespace.insideAddress):\(port):127.0.0.1:\(echo.port)"
        harness.writeConfig(profile([spec]))
        let refused = harness.tunnel(["up", "web"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("remote \"\(spec)\" asks the server to listen on \(namespace.insideAddress), so this machine's 127.0.0.1:\(echo.port)"),
                      refused.stderr)

        harness.writeConfig(profile([spec], extra: "public = true"))
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stderr.contains("warning: web: remote \(namespace.insideAddress):\(port) is not a loopback address on the server"), up.stderr)
        XCTAssertTrue(up.stdout.hasPrefix("web: up: remote \(namespace.insideAddress):\(port) -> "), up.output)
        // From this namespace, across the veth pair: the server listens on its veth address.
        let fd = try XCTUnwrap(Net.connect(port, host: namespace.insideAddress), "\(harness.list())")
        defer { close(fd) }
        let request = Array("from the server's network".utf8)
        XCTAssertTrue(Net.sendAll(fd, request))
        shutdown(fd, Int32(SHUT_WR))
        let reply = Net.readToEOF(fd)
        XCTAssertEqual(reply.bytes, request)
        XCTAssertTrue(reply.cleanEOF)
    }

    func testDashR_andAnSSHConfigAliasWithRemoteForward_needNoProfile() throws {
        // Ad hoc: ~/.ssh/known_hosts (HOME is the harness's directory).
        mkdir(harness.dir + "/.ssh", 0o700)
        write(remoteServer.knownHostsLine + "\n", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        harness.writeConfig("")
        let destination = "\(Env.userName)@\(namespace.insideAddress)"
        let up = harness.tunnel(["up", "-R", "0:127.0.0.1:\(echo.port)", "-i", remoteServer.userKey, "-p", "\(remoteServer.port)",
                                 "--name", "adhoc", destination])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        let pattern = try NSRegularExpression(pattern: #"^adhoc: up: remote 127\.0\.0\.1:([0-9]+) -> "#)
        let match = try XCTUnwrap(pattern.firstMatch(in: up.stdout, range: NSRange(up.stdout.startIndex..., in: up.stdout)), up.output)
        let picked = try XCTUnwrap(UInt16(up.stdout[Range(match.range(at: 1), in: up.stdout)!]))
        let request = Array("ad hoc".utf8)
        let adHoc = exchangeInside(port: picked, request: request)
        XCTAssertEqual(adHoc.reply, echoed(request), adHoc.output)
        XCTAssertEqual(harness.tunnel(["down", "adhoc"]).status, 0)

        // ssh_config alone: RemoteForward.
        let port = Net.freePort()
        let sshConfig = harness.dir + "/ssh_config"
        write("""
        Host rf-alias
          HostName \(namespace.insideAddress)
          Port \(remoteServer.port)
          User \(Env.userName)
          IdentityFile \(remoteServer.userKey)
          UserKnownHostsFile \(harness.knownHosts)
          RemoteForward \(port) 127.0.0.1:\(echo.port)
          RemoteForward 19102

        """, to: sshConfig, mode: 0o600)
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n")
        // Before it is up, `check` preflights the alias as `up` reads it.
        let before = harness.tunnel(["check", "rf-alias"], timeout: 30)
        XCTAssertEqual(before.status, 0, before.output)
        XCTAssertTrue(before.stdout.contains("the ssh_config alias rf-alias with forward lines; rf-alias: ssh_config's RemoteForward 19102 for rf-alias left out"), before.stdout)
        let alias = harness.tunnel(["up", "rf-alias"])
        XCTAssertEqual(alias.status, 0, alias.output + harness.supervisorLog)
        XCTAssertTrue(alias.stdout.hasPrefix("rf-alias: up: remote 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), alias.output)
        // The line it cannot serve (a SOCKS proxy on the server) is left out with a note, as for a profile.
        XCTAssertEqual(alias.stderr, "tunnel: rf-alias: ssh_config's RemoteForward 19102 for rf-alias left out: it asks for a SOCKS proxy on the server (a port alone), which tunnel does not serve\n")
        let fromConfig = exchangeInside(port: port, request: request)
        XCTAssertEqual(fromConfig.reply, echoed(request), fromConfig.output)
        // Once up, `check` takes it as saved.
        let check = harness.tunnel(["check", "rf-alias"], timeout: 30)
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.stdout.contains("brought up from ssh_config (rf-alias), not a profile"), check.stdout)

        // A lazy profile naming the alias connects at once (the server must listen): `up` says why.
        XCTAssertEqual(harness.tunnel(["down", "rf-alias"]).status, 0)
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n[tunnels.lz]\nhost = \"rf-alias\"\nlazy = true\n")
        let lazy = harness.tunnel(["up", "lz"])
        XCTAssertEqual(lazy.status, 0, lazy.output + harness.supervisorLog)
        XCTAssertTrue(lazy.stdout.hasPrefix("lz: up: remote 127.0.0.1:\(port)"), lazy.output)
        XCTAssertTrue(lazy.stderr.contains("note: lz: lazy = true is ignored: ssh_config adds remote forwards, which need the SSH connection up\n"), lazy.stderr)
    }

    func testThroughAJumpHost_theFinalHopListens() throws {
        // The bastion is the namespace's server; the target listens on the namespace's loopback only.
        let inner = try SSHServer(namespace: namespace)
        defer { inner.stop() }
        try inner.authorize(publicKeyFile: remoteServer.userKey + ".pub")
        harness.trust(inner)
        let port = Net.freePort()
        let text = profile(["\(port):127.0.0.1:\(echo.port)"], server: inner,
                           extra: "jump = \"\(Env.userName)@\(namespace.insideAddress):\(remoteServer.port)\"")
            .replacingOccurrences(of: "identity = \"\(inner.userKey)\"", with: "identity = \"\(remoteServer.userKey)\"")
        harness.writeConfig(text)
        let up = harness.tunnel(["up", "web"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stdout.hasPrefix("web: up: remote 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), up.output)
        XCTAssertTrue(up.stdout.contains(" via \(Env.userName)@127.0.0.1:\(inner.port) via \(Env.userName)@\(namespace.insideAddress):\(remoteServer.port)"), up.output)
        let request = Array("via the bastion".utf8)
        let exchange = exchangeInside(port: port, request: request)
        XCTAssertEqual(exchange.reply, echoed(request), exchange.output)
        // The listening socket belongs to the target's sshd, not the bastion's.
        let owners = runCommand("/usr/bin/ip", ["netns", "exec", namespace.name, "ss", "-Htlnp", "sport = :\(port)"]).stdout
        let pids = owners.split(separator: "pid=").dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
        XCTAssertFalse(pids.isEmpty, owners)
        XCTAssertTrue(pids.allSatisfy { inner.sessionPIDs.contains($0) }, "\(owners) vs the target's \(inner.sessionPIDs)")
    }
}
