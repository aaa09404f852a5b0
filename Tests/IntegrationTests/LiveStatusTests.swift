import Foundation
import XCTest

/// `tunnel status NAME` and `tunnel ls --watch` against a real sshd.
final class LiveStatusTests: SSHTestCase {
    struct Detail: Decodable {
        struct Connection: Decodable {
            var number: Int
            var extra: Bool
            var state: String
            var up_since: String?
            var peer: String?
            var auth: String?
            var algorithms: String?
            var host_key: String?
            var rtt_ms: Double?
        }
        struct Change: Decodable { var time: String; var state: String; var reason: String? }
        var tunnel: ListedTunnel
        var connections: [Connection]
        var history: [Change]
        var lazy: Bool
        var keepalive: Int
    }

    private func detail(_ name: String) throws -> Detail {
        let out = harness.tunnel(["status", name, "--json"])
        XCTAssertEqual(out.status, 0, out.output)
        return try JSONDecoder().decode(Detail.self, from: Data(out.stdout.utf8))
    }

    func testStatus_showsEachConnectionWithItsAlgorithms_theForwards_andTheLastTenStateChangesWithReasons() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        guard let fd = Net.connect(port) else { return XCTFail("connect") }
        XCTAssertTrue(Net.sendAll(fd, Array("hello".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 5).map { String(decoding: $0, as: UTF8.self) }, "hello")
        close(fd)

        let d = try detail("db")
        XCTAssertEqual(d.tunnel.state, "up")
        XCTAssertFalse(d.lazy)
        XCTAssertEqual(d.keepalive, 2)
        XCTAssertEqual(d.connections.map(\.number), [1, 2])
        for c in d.connections {
            XCTAssertEqual(c.state, "up")
            XCTAssertFalse(c.extra)
            XCTAssertEqual(c.auth, "publickey with \(server.userKey)")
            XCTAssertEqual(c.peer, "\(Env.userName)@127.0.0.1:\(server.port) via 127.0.0.1:\(server.port)")
            XCTAssertEqual(c.host_key, server.hostKeyFingerprint)
            XCTAssertNotNil(c.up_since)
            XCTAssertGreaterThan(c.rtt_ms ?? 0, 0, "each connection pings once it is up")
            // kex, host key type, cipher/MAC, as libssh2 negotiated them.
            XCTAssertTrue(c.algorithms?.contains("ssh-ed25519") ?? false, "\(String(describing: c.algorithms))")
        }
        XCTAssertEqual(d.history.map(\.state), ["connecting", "up"])
        XCTAssertEqual(d.history.last?.reason, "connected (publickey with \(server.userKey))")
        XCTAssertEqual(d.tunnel.forwards.first?.bytes_out, 5)

        let text = harness.tunnel(["status", "db"])
        XCTAssertEqual(text.status, 0)
        for needle in ["db: up for", "SSH connections:", "#1 up", "#2 up", "rtt ", "ssh-ed25519", "host key \(server.hostKeyFingerprint)",
                       "Forwards:", "local 127.0.0.1:\(port) and [::1]:\(port) -> 127.0.0.1:\(echo.port): 0 open, 1 total, in 5 B, out 5 B",
                       "Last state changes:", "connected (publickey with"] {
            XCTAssertTrue(text.stdout.contains(needle), "\(needle) missing from:\n\(text.stdout)")
        }

        // Every drop and heal is recorded with its reason; only the last ten are kept.
        for round in 0..<5 {
            let before = try detail("db").history.count
            server.killSessions()
            XCTAssertTrue(eventually(timeout: 30) { (try? self.detail("db"))?.history.last?.state == "reconnecting" || (try? self.detail("db"))?.history.count ?? 0 > before },
                          "round \(round)")
            XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state == "up" && self.harness.listed("db")?.sessions_up == 2 }, "round \(round)")
        }
        let after = try detail("db")
        XCTAssertEqual(after.history.count, 10)
        XCTAssertEqual(after.history.last?.state, "up")
        XCTAssertTrue(after.history.contains { $0.state == "reconnecting" && ($0.reason ?? "").hasPrefix("link lost: ") }, "\(after.history)")
        XCTAssertEqual(after.history.map(\.time), after.history.map(\.time).sorted(), "oldest first")

        // An outage's retries are one entry: the cause stays in the history,
        // and the state's age counts from the loss, not from the last attempt.
        server.stop()
        XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state != "up" }, "\(harness.list())")
        let atLoss = try detail("db").history
        let lost = try XCTUnwrap(atLoss.last)
        sleep(6)  // a few retries (backoff from 1 s)
        let later = try detail("db")
        // Times have whole seconds, so the entries are compared, not counted by time.
        XCTAssertEqual(later.history.map(\.state), atLoss.map(\.state), "\(later.history)")
        XCTAssertEqual(later.history.map(\.reason), atLoss.map(\.reason), "\(later.history)")
        XCTAssertEqual(later.history.last?.time, lost.time, "\(later.history)")
        XCTAssertEqual(later.tunnel.since, lost.time)
    }

    func testStatus_ofATunnelThatIsNotUp_failsNamingIt() {
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let out = harness.tunnel(["status", "nope"])
        XCTAssertEqual(out.status, 1)
        XCTAssertEqual(out.stderr.trimmingCharacters(in: .whitespacesAndNewlines), "tunnel: nope is not in the supervisor (it has: db)")
        XCTAssertEqual(harness.tunnel(["ls", "--watch", "--json"]).status, 64, "--watch with --json is refused as a usage error")
    }

    func testWatch_underTmux_redrawsTheTableInPlace_withMovingRates() throws {
        let tmux = try XCTUnwrap(Env.which("tmux"), "tmux is installed by .ci/run")
        let port = Net.freePort()
        harness.writeConfig(harness.profile("web", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0)

        // Traffic the whole time, so the rates move.
        let running = Atomic(true)
        let pusher = Thread {
            guard let fd = Net.connect(port) else { return }
            defer { close(fd) }
            let chunk = randomBytes(64 * 1024, seed: 3)
            while running.value {
                guard Net.sendAll(fd, chunk), Net.readExactly(fd, chunk.count) != nil else { return }
                usleep(20_000)
            }
        }
        pusher.start()
        defer { running.value = false }

        let session = "tunnel-watch-\(getpid())-\(Int.random(in: 1000...9999))"
        let env = harness.environment.map { "\($0.key)='\($0.value)'" }.sorted().joined(separator: " ")
        let start = runCommand(tmux, ["new-session", "-d", "-s", session, "-x", "200", "-y", "30", "env \(env) \(Env.tunnelBinary) ls --watch"])
        XCTAssertEqual(start.status, 0, start.output)
        defer { runCommand(tmux, ["kill-session", "-t", session]) }
        let capture = { runCommand(tmux, ["capture-pane", "-p", "-t", session]).stdout }

        var frames: [String] = []
        XCTAssertTrue(eventually(timeout: 20, interval: 0.3) {
            let pane = capture()
            let moving = pane.range(of: #"[0-9.]+ (KiB|MiB|GiB)/s"#, options: .regularExpression) != nil
            if pane.contains("web") && moving && frames.last != pane { frames.append(pane) }
            return frames.count >= 3
        }, "frames seen: \(frames)")
        let last = try XCTUnwrap(frames.last)
        for needle in ["tunnel ls --watch", "NAME", "IN/s", "OUT/s", "web", "127.0.0.1:\(port)", "up"] {
            XCTAssertTrue(last.contains(needle), "\(needle) missing from the pane:\n\(last)")
        }
        // Redrawn in place: one header on the screen, not a scroll of tables.
        XCTAssertEqual(last.components(separatedBy: "tunnel ls --watch").count - 1, 1, last)
        XCTAssertEqual(last.components(separatedBy: "NAME").count - 1, 1, last)
    }

    /// On a terminal smaller than the table, lines are cut to its width and
    /// the frame to its height, so it is still redrawn in place, not scrolled.
    func testWatch_onASmallTerminal_clipsTheTableToFit() throws {
        let tmux = try XCTUnwrap(Env.which("tmux"), "tmux is installed by .ci/run")
        let port = Net.freePort()
        harness.writeConfig(harness.profile("web", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0)
        let session = "tunnel-watch-small-\(getpid())-\(Int.random(in: 1000...9999))"
        let env = harness.environment.map { "\($0.key)='\($0.value)'" }.sorted().joined(separator: " ")
        let start = runCommand(tmux, ["new-session", "-d", "-s", session, "-x", "60", "-y", "6", "env \(env) \(Env.tunnelBinary) ls --watch"])
        XCTAssertEqual(start.status, 0, start.output)
        defer { runCommand(tmux, ["kill-session", "-t", session]) }
        var pane = ""
        XCTAssertTrue(eventually(timeout: 20, interval: 0.3) {
            pane = runCommand(tmux, ["capture-pane", "-p", "-t", session]).stdout
            return pane.contains("web ")
        }, pane)
        sleep(3)  // a few redraws
        pane = runCommand(tmux, ["capture-pane", "-p", "-t", session]).stdout
        XCTAssertEqual(pane.components(separatedBy: "tunnel ls --watch").count - 1, 1, pane)
        XCTAssertEqual(pane.components(separatedBy: "NAME").count - 1, 1, pane)
        XCTAssertTrue(pane.contains("…"), pane)
        XCTAssertTrue(pane.split(separator: "\n").allSatisfy { $0.count <= 60 }, pane)
    }

    func testWatch_withoutATerminal_printsOneTablePerInterval() throws {
        harness.writeConfig(harness.profile("web", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "web"]).status, 0)
        let out = harness.dir + "/watch.out"
        let watch = try Background(Env.tunnelBinary, ["ls", "--watch"], env: harness.environment, logPath: out)
        XCTAssertTrue(eventually(timeout: 20) { read(out).components(separatedBy: "NAME").count - 1 >= 3 }, read(out))
        watch.stop()
        let text = read(out)
        XCTAssertFalse(text.contains("\u{1B}["), "no escape sequences in a file")
        XCTAssertTrue(text.contains("web"))
    }
}
