import Foundation
import XCTest

/// The background supervisor against a real sshd: many tunnels, restarts,
/// reload, saved state, the control socket.
final class SupervisorTests: SSHTestCase {

    /// Sends `text` through `port` on a fresh connection and returns the echo.
    private static func roundTrip(_ port: UInt16, _ text: String = "ping", timeout: Double = 20) -> String? {
        guard let fd = Net.connect(port, timeout: timeout) else { return nil }
        defer { close(fd) }
        guard Net.sendAll(fd, Array(text.utf8)) else { return nil }
        return Net.readExactly(fd, text.utf8.count).map { String(decoding: $0, as: UTF8.self) }
    }

    func testTwoProfilesThreeForwards_upInTheBackground_lsShowsTheFieldsAndCountersMove() throws {
        let a1 = Net.freePort(), a2 = Net.freePort(), b1 = Net.freePort()
        harness.writeConfig(harness.profile("alpha", server: server, forwards: ["\(a1):127.0.0.1:\(echo.port)", "\(a2):127.0.0.1:\(echo.port)"])
                            + harness.profile("beta", server: server, forwards: ["\(b1):127.0.0.1:\(echo.port)"]))
        XCTAssertTrue(harness.list().isEmpty, "no supervisor yet: ls shows nothing and succeeds")
        let up = harness.tunnel(["up", "alpha", "beta"], timeout: 30)
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stdout.contains("alpha: up") && up.stdout.contains("beta: up"), up.stdout)
        // `tunnel up` returned: the tunnels are usable at once.
        XCTAssertEqual(Self.roundTrip(a1, "hello"), "hello")
        XCTAssertEqual(Self.roundTrip(b1, "world!"), "world!")

        let listed = harness.list()
        XCTAssertEqual(listed.map(\.name), ["alpha", "beta"])
        XCTAssertEqual(listed.flatMap(\.forwards).count, 3)
        let alpha = try XCTUnwrap(listed.first)
        XCTAssertEqual(alpha.state, "up")
        XCTAssertEqual(alpha.via, "\(Env.userName)@127.0.0.1:\(server.port)")
        XCTAssertEqual(alpha.restarts, 0)
        XCTAssertNil(alpha.last_error)
        XCTAssertNotNil(alpha.since.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"#, options: .regularExpression), alpha.since)
        XCTAssertEqual(alpha.forwards[0].local, "127.0.0.1:\(a1)")
        XCTAssertEqual(alpha.forwards[0].remote, "127.0.0.1:\(echo.port)")
        XCTAssertEqual(alpha.forwards[0].total, 1)
        XCTAssertEqual(alpha.forwards[0].bytes_out, 5)
        XCTAssertEqual(alpha.forwards[0].bytes_in, 5)
        XCTAssertEqual(alpha.forwards[1].total, 0)

        // Counters move with traffic, and an open connection shows as active.
        guard let fd = Net.connect(a2) else { return XCTFail("connect") }
        let payload = randomBytes(100_000, seed: 9)
        XCTAssertTrue(Net.sendAll(fd, payload))
        XCTAssertEqual(Net.readExactly(fd, payload.count).map(checksum), checksum(payload))
        let during = try XCTUnwrap(harness.listed("alpha")).forwards[1]
        XCTAssertEqual(during.active, 1)
        XCTAssertEqual(during.total, 1)
        XCTAssertEqual(during.bytes_out, 100_000)
        XCTAssertEqual(during.bytes_in, 100_000)
        close(fd)
        XCTAssertTrue(eventually(timeout: 5) { self.harness.listed("alpha")?.forwards[1].active == 0 })

        // The tunnels share the group's loops (one per core) besides the
        // supervisor's own: two tunnels on a 2-core machine use two, not a thread each.
        let names = threadNames(of: try XCTUnwrap(harness.supervisorPID))
        let loops = names.filter { $0.hasPrefix("tunnel-loop-") }
        XCTAssertEqual(loops.count, min(2, ProcessInfo.processInfo.activeProcessorCount), "threads: \(names)")
        XCTAssertFalse(names.contains("tunnel-alpha") || names.contains("tunnel-beta"), "no thread per tunnel: \(names)")

        let table = harness.tunnel(["ls"]).stdout
        for needle in ["NAME", "STATE", "alpha", "beta", "127.0.0.1:\(b1)", "up"] {
            XCTAssertTrue(table.contains(needle), table)
        }
    }

    /// Three tunnels on ONE event loop (TUNNEL_LOOPS=1): transfers through
    /// all at once arrive intact, and stopping one while the others carry
    /// data leaves the shared loop running for them.
    func testThreeTunnelsOnOneSharedLoop_carryConcurrentTransfers_andDownOfOneLeavesTheOthersWorking() throws {
        let names = ["one", "two", "three"]
        let ports = names.map { _ in Net.freePort() }
        harness.writeConfig(zip(names, ports).map { harness.profile($0, server: server, forwards: ["\($1):127.0.0.1:\(echo.port)"]) }.joined())
        let up = harness.tunnel(["up"] + names, timeout: 30, env: ["TUNNEL_LOOPS": "1"])
        XCTAssertEqual(up.status, 0, up.output)
        let loopThreads = threadNames(of: try XCTUnwrap(harness.supervisorPID))
        XCTAssertEqual(loopThreads.filter { $0.hasPrefix("tunnel-loop-") }, ["tunnel-loop-1"], "threads: \(loopThreads)")

        // 4 MB each way through every tunnel at once, in 64 KiB steps.
        let size = 4 << 20
        let payloads = (0..<3).map { randomBytes(size, seed: UInt64(20 + $0)) }
        let fds = try ports.map { try XCTUnwrap(Net.connect($0)) }
        defer { fds.forEach { close($0) } }
        final class Echoed: @unchecked Sendable {
            let lock = NSLock()
            var sums: [Int: UInt64] = [:]
            func set(_ k: Int, _ sum: UInt64?) { lock.lock(); sums[k] = sum; lock.unlock() }
            func get(_ k: Int) -> UInt64? { lock.lock(); defer { lock.unlock() }; return sums[k] }
        }
        let echoed = Echoed()
        let group = DispatchGroup()
        for k in 0..<3 {
            let fd = fds[k], payload = payloads[k]
            // Writer and reader apart: the echo comes back while we still send.
            Thread { _ = payload.withUnsafeBytes { Net.sendAll(fd, $0) } }.start()
            DispatchQueue.global().async(group: group) {
                echoed.set(k, Net.readExactly(fd, size).map(checksum))
            }
        }
        // While the transfers run, `three` goes down: the others must not notice.
        usleep(50_000)
        XCTAssertEqual(harness.tunnel(["down", "three"]).status, 0)
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        for k in 0..<2 {
            XCTAssertEqual(echoed.get(k), checksum(payloads[k]), "tunnel \(names[k])")
        }
        XCTAssertFalse(Net.isListening(ports[2]))
        XCTAssertEqual(Self.roundTrip(ports[0], "still"), "still")
        XCTAssertEqual(Self.roundTrip(ports[1], "here"), "here")
        XCTAssertEqual(harness.listed("one")?.state, "up")
    }

    func testKilledSessionProcess_reconnects_countsOneRestart_keepsTheListenerBound_andServesAClientFromTheOutage() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertEqual(Self.roundTrip(port), "ping")

        // Watch the listener the whole time.
        let watching = Atomic(true), unbound = Atomic(false)
        let watcher = Thread {
            while watching.value { if !Net.isListening(port) { unbound.value = true }; usleep(2_000) }
        }
        watcher.start()
        defer { watching.value = false }

        server.killSessions()
        // A client arriving during the outage waits and is served after recovery.
        let reply = Atomic<String?>(nil)
        let client = Thread { reply.value = Self.roundTrip(port, "during the outage") }
        client.start()
        XCTAssertTrue(eventually(timeout: 15) { client.isFinished }, "the client was not served")
        XCTAssertEqual(reply.value, "during the outage")
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "up" })
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.restarts, 1)
        let lastError = try XCTUnwrap(db.last_error)
        // When it happened, before the link came up again (ISO 8601 in UTC sorts as text).
        let at = try XCTUnwrap(db.last_error_at)
        XCTAssertLessThanOrEqual(at, db.since)
        let table = harness.tunnel(["ls"]).stdout
        XCTAssertTrue(table.contains(" ago: \(lastError)"), table)
        watching.value = false
        XCTAssertFalse(unbound.value, "the listener was closed during the outage")
    }

    func testConnectionCutOffByALostLink_isResetNotCleanlyClosed() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        guard let fd = Net.connect(port, timeout: 10) else { return XCTFail("connect") }
        defer { close(fd) }
        XCTAssertTrue(Net.sendAll(fd, Array("mid-stream".utf8)))
        XCTAssertNotNil(Net.readExactly(fd, 10))
        server.killSessions()
        // A truncated stream must not look like a complete one.
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        XCTAssertEqual(n, -1, "expected a reset, got a clean end of stream")
        XCTAssertEqual(errno, ECONNRESET)
    }

    func testHungServer_SIGSTOP_isDetectedByTheKeepalive_andTheTunnelRecovers() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
            .replacingOccurrences(of: "keepalive = 2", with: "keepalive = 1"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let hung = server.sessionPIDs
        XCTAssertFalse(hung.isEmpty)
        for pid in hung { kill(pid, SIGSTOP) }
        let start = Date()
        // A stopped server keeps its TCP connection open: only the keepalive can
        // notice (last_error below says it did). The deadline only stops a hang;
        // how fast it notices is measured by the benchmark.
        XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.restarts == 1 }, "the hung link was not detected: \(harness.supervisorLog)")
        let detected = Date().timeIntervalSince(start)
        print("hung link detected after \(String(format: "%.2f", detected)) s")
        for pid in hung { kill(pid, SIGKILL) }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "up" })
        XCTAssertTrue(harness.listed("db")?.last_error?.contains("no data from the server") ?? false)
        XCTAssertEqual(Self.roundTrip(port, "alive"), "alive")
    }

    func testSSHDStoppedForFiveSeconds_theTunnelRecoversOnItsOwn() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        server.stop()
        XCTAssertTrue(eventually(timeout: 5) { self.harness.listed("db")?.state == "reconnecting" })
        sleep(5)
        XCTAssertTrue(Net.isListening(port), "the listener must stay bound while the server is away")
        try server.start()
        XCTAssertTrue(eventually(timeout: 40) { self.harness.listed("db")?.state == "up" }, harness.supervisorLog)
        XCTAssertEqual(Self.roundTrip(port, "back"), "back")
    }

    func testKeyTheServerRefuses_upFails_stateFailed_noReconnectStorm() throws {
        let wrong = makeTempDir("wrongkey") + "/id_ed25519"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", wrong])
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
            .replacingOccurrences(of: "identity = \"\(server.userKey)\"", with: "identity = \"\(wrong)\""))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("authentication failed") && up.stderr.contains("refused by the server"), up.stderr)
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "failed")
        XCTAssertTrue(db.last_error?.contains("authentication failed") ?? false)
        sleep(4)
        let attempts = server.log.components(separatedBy: "Connection from 127.0.0.1").count - 1
        XCTAssertEqual(attempts, 1, "the server saw \(attempts) connections: \(server.log)")
        // Asking again retries at once (and fails again, quickly).
        XCTAssertNotEqual(harness.tunnel(["up", "db"], timeout: 30).status, 0)
        XCTAssertEqual(server.log.components(separatedBy: "Connection from 127.0.0.1").count - 1, 2)
    }

    func testReload_restartsTheChangedProfile_andAConnectionThroughTheUnchangedOneSurvives() throws {
        let keep = Net.freePort(), change = Net.freePort(), changed = Net.freePort(), gone = Net.freePort()
        let keepBlock = harness.profile("keep", server: server, forwards: ["\(keep):127.0.0.1:\(echo.port)"])
        harness.writeConfig(keepBlock + harness.profile("change", server: server, forwards: ["\(change):127.0.0.1:\(echo.port)"])
                            + harness.profile("gone", server: server, forwards: ["\(gone):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "keep", "change", "gone"]).status, 0)
        guard let open = Net.connect(keep) else { return XCTFail("connect") }
        defer { close(open) }
        XCTAssertTrue(Net.sendAll(open, Array("before".utf8)))
        XCTAssertEqual(Net.readExactly(open, 6).map { String(decoding: $0, as: UTF8.self) }, "before")

        harness.writeConfig(keepBlock + harness.profile("change", server: server, forwards: ["\(changed):127.0.0.1:\(echo.port)"]))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stdout.contains("keep: unchanged"), reload.stdout)
        XCTAssertTrue(reload.stdout.contains("change: restarted"), reload.stdout)
        XCTAssertTrue(reload.stdout.contains("gone: removed"), reload.stdout)

        // The unchanged tunnel's open connection still works.
        XCTAssertTrue(Net.sendAll(open, Array("after".utf8)))
        XCTAssertEqual(Net.readExactly(open, 5).map { String(decoding: $0, as: UTF8.self) }, "after")
        XCTAssertEqual(harness.listed("keep")?.restarts, 0)
        XCTAssertTrue(Net.isListening(changed))
        XCTAssertFalse(Net.isListening(change))
        XCTAssertFalse(Net.isListening(gone))
        XCTAssertEqual(Self.roundTrip(changed), "ping")
        XCTAssertEqual(harness.list().map(\.name), ["change", "keep"])
    }

    func testReload_whenTheConfigPathBecameAFIFO_failsWithTheReason_andTheSupervisorGoesOnServing() throws {
        let port = Net.freePort()
        let text = harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
        harness.writeConfig(text)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)

        // Before the fix the supervisor's open() of a FIFO blocked its thread for good.
        XCTAssertEqual(unlink(harness.configPath), 0)
        XCTAssertEqual(mkfifo(harness.configPath, 0o600), 0)
        let reload = harness.tunnel(["reload"], timeout: 20)
        XCTAssertNotEqual(reload.status, 0, reload.output)
        XCTAssertEqual(reload.stderr, "tunnel: db: failed: kept running: \(harness.configPath) is a FIFO, not a regular file\n")

        // Still serving: the control socket answers, the tunnel is up and carries data.
        XCTAssertEqual(harness.list().map(\.state), ["up"])
        XCTAssertEqual(Self.roundTrip(port), "ping")
        XCTAssertEqual(harness.tunnel(["ls"]).status, 0)

        // With a regular file back, reload works again.
        XCTAssertEqual(unlink(harness.configPath), 0)
        harness.writeConfig(text)
        let again = harness.tunnel(["reload"], timeout: 20)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(again.stdout, "db: unchanged\n")
    }

    /// `down` (as a reload's restart) cuts a client whose target was still
    /// sending with a reset, so the cut never reads as a complete stream;
    /// a client that already has its target's EOF keeps every byte and its
    /// clean end, though it had read none of them.
    func testDown_resetsAStreamItCuts_butAStreamWhoseTargetEndedKeepsItsBytesAndItsCleanEnd() throws {
        try assertStopResetsOnlyTheCutStream {
            XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        }
    }

    /// A tunnel from the command line is named like a profile afterwards:
    /// `tunnel up NAME` retries it after a failure, answers "already up",
    /// and brings it back through a new supervisor; no profiles file needed.
    func testCommandLineTunnel_isBroughtUpAgainByItsName_withoutAProfilesFile() throws {
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.configPath))
        mkdir(harness.dir + "/.ssh", 0o700)
        write("", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        let port = Net.freePort()
        let first = harness.tunnel(["up", "-L", "\(port):127.0.0.1:\(echo.port)", "-i", server.userKey, "-p", "\(server.port)",
                                    "--name", "six", "\(Env.userName)@127.0.0.1"])
        XCTAssertEqual(first.status, 1, first.output)
        XCTAssertTrue(first.stderr.contains("is not known"), first.stderr)
        XCTAssertEqual(harness.listed("six")?.state, "failed")

        // The fix the error named, then the tunnel by name.
        write(server.knownHostsLine + "\n", to: harness.dir + "/.ssh/known_hosts", mode: 0o600)
        let again = harness.tunnel(["up", "six"])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.stdout.hasPrefix("six: up: 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), again.stdout)
        XCTAssertFalse(again.stderr.contains("cannot read"), "the missing profiles file is no error here: \(again.stderr)")
        XCTAssertEqual(Self.roundTrip(port), "ping")
        let twice = harness.tunnel(["up", "six"])
        XCTAssertEqual(twice.status, 0, twice.output)
        XCTAssertTrue(twice.stdout.hasPrefix("six: already up"), twice.stdout)

        // A supervisor killed outright: asking for it by name starts one, which restores it.
        let pid = try XCTUnwrap(harness.supervisorPID)
        kill(pid, SIGKILL)
        XCTAssertTrue(eventually(timeout: 10) { kill(pid, 0) != 0 })
        // Meanwhile `ls` says nothing runs, and what would come back.
        let none = harness.tunnel(["ls"])
        XCTAssertEqual(none.status, 0, none.output)
        XCTAssertEqual(none.stdout, "")
        XCTAssertEqual(none.stderr, "no supervisor is running; 1 saved tunnel (six) come back with the next `tunnel up` or `tunnel daemon`\n")
        XCTAssertEqual(harness.tunnel(["ls", "--json"]).stdout, "[]\n")
        let restored = harness.tunnel(["up", "six"])
        XCTAssertEqual(restored.status, 0, restored.output + harness.supervisorLog)
        XCTAssertTrue(restored.stdout.contains("six: "), restored.stdout)
        XCTAssertEqual(Self.roundTrip(port), "ping")
        // `check` takes it by name too.
        let check = harness.tunnel(["check", "six"], timeout: 30)
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertFalse(check.stderr.contains("cannot read"), check.stderr)
        XCTAssertTrue(check.stdout.contains("brought up from the command line (\(Env.userName)@127.0.0.1), not a profile"), check.stdout)
        // A name that is neither a profile nor a saved tunnel still says so.
        let unknown = harness.tunnel(["up", "seven"])
        XCTAssertEqual(unknown.status, 1, unknown.output)
    }

    /// An "auto" port is asked for again when a new supervisor restores the
    /// tunnel, so clients told it keep working; if something took it
    /// meanwhile, the kernel picks another.
    func testAutoPort_isTheSameAfterASupervisorRestart_orAnotherWhenTaken() throws {
        harness.writeConfig(harness.profile("db", server: server, forwards: ["auto:127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let first = try XCTUnwrap(harness.listed("db")?.forwards.first?.local)
        let port = try XCTUnwrap(first.split(separator: ":").last.flatMap { UInt16($0) })
        XCTAssertEqual(Self.roundTrip(port), "ping")

        func killSupervisor() throws {
            let pid = try XCTUnwrap(harness.supervisorPID)
            kill(pid, SIGKILL)
            XCTAssertTrue(eventually(timeout: 10) { kill(pid, 0) != 0 })
        }
        try killSupervisor()
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertEqual(harness.listed("db")?.forwards.first?.local, first, "the same port again")
        XCTAssertEqual(Self.roundTrip(port), "ping")

        try killSupervisor()
        let (holderFD, held) = loopbackListener(backlog: 1, port: port)
        defer { close(holderFD) }
        XCTAssertEqual(held, port)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let other = try XCTUnwrap(harness.listed("db")?.forwards.first?.local)
        XCTAssertNotEqual(other, first, "taken meanwhile: another one")
        XCTAssertEqual(Self.roundTrip(try XCTUnwrap(other.split(separator: ":").last.flatMap { UInt16($0) })), "ping")
    }

    /// A reload that restarts a tunnel for another change asks for the ports
    /// it had; a forward the edit changed gets a new one.
    func testAutoPort_isKeptWhenAReloadRestartsTheTunnelForAnotherChange() throws {
        let forwards = ["auto:127.0.0.1:\(echo.port)", "0:127.0.0.1:\(echo.port)"]
        harness.writeConfig(harness.profile("db", server: server, forwards: forwards))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let before = try XCTUnwrap(harness.listed("db")?.forwards.map(\.local))
        XCTAssertEqual(before.count, 2)

        harness.writeConfig(harness.profile("db", server: server, forwards: forwards, extra: "hold_timeout = 9"))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertTrue(reload.stdout.contains("db: restarted"), reload.output)
        XCTAssertEqual(harness.listed("db")?.forwards.map(\.local), before, "the same ports after the restart")
        let port = try XCTUnwrap(before[0].split(separator: ":").last.flatMap { UInt16($0) })
        XCTAssertEqual(Self.roundTrip(port), "ping")

        // The second forward now goes elsewhere: it is another forward, with a port of its own.
        harness.writeConfig(harness.profile("db", server: server, forwards: [forwards[0], "0:localhost:\(echo.port)"], extra: "hold_timeout = 9"))
        XCTAssertTrue(harness.tunnel(["reload"], timeout: 30).stdout.contains("db: restarted"))
        let after = try XCTUnwrap(harness.listed("db")?.forwards.map(\.local))
        XCTAssertEqual(after.first, before[0])
        XCTAssertNotEqual(after.last, before[1])
    }

    /// A reload names what it read and did not start: a new profile (it
    /// stays down until `tunnel up`), and a broken one as a failure, so an
    /// edit with a mistake is seen now rather than at the next `up`.
    func testReload_namesTheProfilesThatAreNotUp_andABrokenOneFailsIt() throws {
        let port = Net.freePort(), fresh = Net.freePort()
        let keep = harness.profile("keep", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
        harness.writeConfig(keep)
        XCTAssertEqual(harness.tunnel(["up", "keep"]).status, 0)
        // In the foreground too, it would only find its port taken: said as what it is.
        let twice = harness.tunnel(["up", "keep", "--foreground"], timeout: 20)
        XCTAssertEqual(twice.status, 1, twice.output)
        XCTAssertEqual(twice.stderr, "tunnel: keep is up in the supervisor (pid \(harness.supervisorPID ?? 0)); `tunnel down keep` first to run it in the foreground\n")

        harness.writeConfig(keep + harness.profile("fresh", server: server, forwards: ["\(fresh):127.0.0.1:\(echo.port)"])
                            + harness.profile("broken", server: server, forwards: ["not-a-port:127.0.0.1:\(echo.port)"]))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(reload.status, 1, reload.output)
        XCTAssertEqual(reload.stdout, "keep: unchanged\nfresh: not-up: in \(harness.configPath); tunnel up fresh starts it\n")
        XCTAssertTrue(reload.stderr.hasPrefix("tunnel: broken: failed: not up, and its profile has errors: \(harness.configPath):"), reload.stderr)
        XCTAssertEqual(reload.stderr.split(separator: "\n").count, 1, reload.stderr)
        XCTAssertEqual(harness.list().map(\.name), ["keep"], "a reload starts nothing")
        XCTAssertFalse(Net.isListening(fresh))

        harness.writeConfig(keep + harness.profile("fresh", server: server, forwards: ["\(fresh):127.0.0.1:\(echo.port)"]))
        let fixed = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(fixed.status, 0, fixed.output)
        XCTAssertEqual(fixed.stderr, "")
        XCTAssertTrue(fixed.stdout.hasSuffix("fresh: not-up: in \(harness.configPath); tunnel up fresh starts it\n"), fixed.stdout)

        // The supervisor's own file broken as a whole, with no tunnel from it
        // running: said once, as the file's.
        let other = harness.dir + "/other.toml", otherPort = Net.freePort()
        write(harness.profile("other", server: server, forwards: ["\(otherPort):127.0.0.1:\(echo.port)"]), to: other)
        XCTAssertEqual(harness.tunnel(["up", "other", "--config", other]).status, 0)
        XCTAssertEqual(harness.tunnel(["down", "keep"]).status, 0)
        harness.writeConfig("[defaults]\nnonsense = 1\n" + keep)
        let whole = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(whole.status, 1, whole.output)
        XCTAssertEqual(whole.stdout, "other: unchanged\n")
        XCTAssertTrue(whole.stderr.hasPrefix("tunnel: [profiles]: failed: none can be used: \(harness.configPath):2:"), whole.stderr)
        XCTAssertEqual(whole.stderr.split(separator: "\n").count, 1, whole.stderr)

        // `--config` names one more file whose profiles that are not up are listed.
        let third = harness.dir + "/third.toml"
        write(harness.profile("extra", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]), to: third)
        let withConfig = harness.tunnel(["reload", "--config", third], timeout: 30)
        XCTAssertTrue(withConfig.stdout.contains("extra: not-up: in \(third); tunnel up extra starts it\n"), withConfig.output)
    }

    /// Reading stops at a syntax error (or at bytes that are not UTF-8): the
    /// profiles past it are not known, so a reload removes none of them.
    func testReload_ofAFileThatStopsEarly_removesNothing_andTheStateSurvives() throws {
        let port = Net.freePort()
        let text = harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
        harness.writeConfig(text)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let state = harness.runtimeDir + "/state.json"
        let saved = read(state)
        XCTAssertTrue(saved.contains("\"db\""), saved)

        for broken in [Array("# caf".utf8) + [0xE9, 0x0A] + Array(text.utf8), Array("[tunnels\n".utf8) + Array(text.utf8)] {
            XCTAssertTrue(FileManager.default.createFile(atPath: harness.configPath, contents: Data(broken)))
            let reload = harness.tunnel(["reload"], timeout: 20)
            XCTAssertNotEqual(reload.status, 0, reload.output)
            XCTAssertTrue(reload.stderr.hasPrefix("tunnel: db: failed: kept running: \(harness.configPath):1:"), reload.output)
            XCTAssertFalse(reload.output.contains("removed"), reload.output)
            XCTAssertEqual(harness.list().map(\.state), ["up"])
            XCTAssertEqual(Self.roundTrip(port), "ping")
            XCTAssertEqual(read(state), saved, "the saved state is untouched")
        }
        harness.writeConfig(text)
        let again = harness.tunnel(["reload"], timeout: 20)
        XCTAssertEqual(again.stdout, "db: unchanged\n", again.output)
    }

    func testReload_whoseChangedProfileCannotStart_keepsThePreviousVersionRunning() throws {
        let port = Net.freePort()
        let text = harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
        harness.writeConfig(text)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        // The changed profile wants a port something else holds.
        let holder = TestServer(.echo)
        defer { holder.stop() }
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(holder.port):127.0.0.1:\(echo.port)"]))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertNotEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stderr.contains("db: failed: ") && reload.stderr.contains("127.0.0.1:\(holder.port)")
                      && reload.stderr.contains("started the previous version again (its open connections were cut)"), reload.stderr)
        XCTAssertEqual(harness.list().map(\.name), ["db"], "not dropped")
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.state == "up" }, "\(harness.list())")
        XCTAssertEqual(Self.roundTrip(port), "ping")
        XCTAssertTrue(harness.supervisorLog.contains("db: the changed profile cannot start"), harness.supervisorLog)
    }

    func testFailedUp_leavesNoSupervisorItStarted_andDownWithoutASupervisorForgetsSavedTunnels() throws {
        let holder = TestServer(.echo)
        defer { holder.stop() }
        let port = Net.freePort(), other = Net.freePort()
        harness.writeConfig(harness.profile("busy", server: server, forwards: ["\(holder.port):127.0.0.1:\(echo.port)"])
                            + harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"])
                            + harness.profile("cache", server: server, forwards: ["\(other):127.0.0.1:\(echo.port)"]))
        let failed = harness.tunnel(["up", "busy"], timeout: 30)
        XCTAssertNotEqual(failed.status, 0, failed.output)
        XCTAssertTrue(eventually(timeout: 10) { !FileManager.default.fileExists(atPath: self.harness.runtimeDir + "/supervisor.pid") },
                      "the supervisor that `up` started for nothing is gone")
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/control.sock"))

        // Saved tunnels, then a supervisor killed outright: `down` edits what the next one restores.
        XCTAssertEqual(harness.tunnel(["up", "db", "cache"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        kill(pid, SIGKILL)
        XCTAssertTrue(eventually(timeout: 10) { kill(pid, 0) != 0 })
        let down = harness.tunnel(["down", "db"], timeout: 20)
        XCTAssertEqual(down.status, 0, down.output)
        XCTAssertEqual(down.stdout, "db: down (no supervisor was running; it will not be restored)\n")
        // The next supervisor brings back cache only.
        let ls = harness.tunnel(["up", "cache"], timeout: 30)
        XCTAssertEqual(ls.status, 0, ls.output)
        XCTAssertTrue(eventually(timeout: 20) { self.harness.list().map(\.name) == ["cache"] }, "\(harness.list())")
        XCTAssertFalse(Net.isListening(port))
    }

    /// An ad-hoc `up` under the name of a tunnel running with other settings
    /// fails (what it asked for is not there), naming what runs under that name.
    func testAlreadyUpWithOtherSettings_failsNamingTheRunningTunnelsRoutes() throws {
        let port = Net.freePort(), other = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let again = harness.tunnel(["up", "-L", "\(other):127.0.0.1:1", "db"])
        XCTAssertEqual(again.status, 1, again.output)
        XCTAssertTrue(again.stderr.hasPrefix("tunnel: db: already up with other settings (127.0.0.1:\(port) -> 127.0.0.1:\(echo.port) via "), again.output)
        XCTAssertTrue(again.stderr.contains("`tunnel down db` first, or give another --name"), again.output)
        XCTAssertFalse(Net.isListening(other))
        XCTAssertEqual(harness.listed("db")?.state, "up")
    }

    func testSIGHUP_reloadsToo() throws {
        let before = Net.freePort(), after = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(before):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(after):127.0.0.1:\(echo.port)"]))
        kill(try XCTUnwrap(harness.supervisorPID), SIGHUP)
        XCTAssertTrue(eventually(timeout: 10) { Net.isListening(after) && !Net.isListening(before) })
    }

    func testControlSocket_refusesAClientOfAnotherUid() throws {
        guard getuid() == 0 else { return XCTFail("this test runs a client as nobody and needs root (CI runs as root)") }
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let asNobody = ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", Env.tunnelBinary,
                        "ls", "--runtime-dir", harness.runtimeDir]
        // The 0700 directory keeps nobody out: the client checks its owner
        // (ControlClient.connect) before touching the socket.
        let blocked = runCommand(asNobody[0], Array(asNobody.dropFirst()), env: ["HOME": "/tmp"])
        XCTAssertNotEqual(blocked.status, 0)
        XCTAssertEqual(blocked.stderr, "tunnel: permission denied: runtime directory \(harness.runtimeDir) belongs to uid 0, not to you (uid 65534); use --runtime-dir\n")
        // ...and with the directory opened up, the supervisor itself refuses by
        // uid (SO_PEERCRED): a raw client speaking the protocol, run as nobody.
        chmod(harness.runtimeDir, 0o711)
        chmod(harness.runtimeDir + "/control.sock", 0o666)
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
        try: s.sendall(b'{"v":1,"command":"down","names":["db"],"all":false}\\n')
        except OSError: pass
        print(s.makefile().readline())
        """
        let refused = runCommand("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                                                      "/usr/bin/python3", "-c", script, harness.runtimeDir + "/control.sock"])
        chmod(harness.runtimeDir, 0o700)
        XCTAssertTrue(refused.stdout.contains("\"ok\":false") && refused.stdout.contains("permission denied"), refused.output)
        XCTAssertTrue(harness.supervisorLog.contains("refused a control connection from uid 65534"), harness.supervisorLog)
        XCTAssertEqual(harness.listed("db")?.state, "up", "the refused client changed nothing")
    }
}

/// A tiny lock-protected value for test threads.
/// `value` reads or replaces under the lock; a change that depends on the
/// old value (appending) must go through `mutate`, or concurrent ones are lost.
final class Atomic<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ value: T) { _value = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
    func mutate(_ body: (inout T) -> Void) { lock.lock(); body(&_value); lock.unlock() }
}
