import Foundation
import XCTest

/// `sessions = 2`: one tunnel over two SSH connections, against a real sshd.
final class SessionsTests: SSHTestCase {

    /// Established connections to the echo target, counted per sshd connection
    /// (the listener's child serving it, with its privilege-separated descendants).
    private func targetConnectionsPerSSHConnection() -> [Int32: Int] {
        let out = runCommand(Env.which("ss")!, ["-tnpH", "state", "established", "dst", "127.0.0.1:\(echo.port)"]).stdout
        let pids = out.split(separator: "\n").compactMap { line -> Int32? in
            guard let range = line.range(of: #"pid=\d+"#, options: .regularExpression) else { return nil }
            return Int32(line[range].dropFirst(4))
        }
        guard let listener = server.process?.pid else { return [:] }
        let children = descendants(of: listener).filter { parent(of: $0) == listener }
        var counts: [Int32: Int] = [:]
        for pid in pids {
            guard let owner = children.first(where: { $0 == pid || descendants(of: $0).contains(pid) }) else { continue }
            counts[owner, default: 0] += 1
        }
        return counts
    }

    private func parent(of pid: Int32) -> Int32? {
        let stat = read("/proc/\(pid)/stat")
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// When a process started (field 22 of /proc/PID/stat, in clock ticks since boot).
    private func startTime(of pid: Int32) -> Int? {
        let stat = read("/proc/\(pid)/stat")
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? Int(fields[19]) : nil
    }

    /// Reads a client whose stream the tunnel cut: true for a reset with no
    /// bytes; false for data, a clean EOF (a cut that reads as a complete
    /// stream), or our read timeout (left open).
    private func cutWithReset(_ fd: Int32, within seconds: Double) -> Bool {
        Net.setTimeout(fd, seconds)
        let (bytes, end) = Net.readToEnd(fd)
        return bytes.isEmpty && end == .reset
    }

    /// Opens a connection and proves it carries bytes; the caller closes it.
    private func openEchoing(_ port: UInt16, _ text: String) -> Int32? {
        guard let fd = Net.connect(port) else { return nil }
        guard Net.sendAll(fd, Array(text.utf8)), Net.readExactly(fd, text.utf8.count) == Array(text.utf8) else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Opens `count` clients ("label 0", "label 1", ...), each proven to echo; the caller closes them.
    private func openEchoingClients(_ count: Int, _ port: UInt16, _ label: String) throws -> [Int32] {
        var fds: [Int32] = []
        do {
            for i in 0..<count { fds.append(try XCTUnwrap(openEchoing(port, "\(label) \(i)"), "\(label) \(i)")) }
        } catch {
            fds.forEach { close($0) }
            throw error
        }
        return fds
    }

    private static func echoes(_ fd: Int32, _ text: String) -> Bool {
        Net.sendAll(fd, Array(text.utf8)) && Net.readExactly(fd, text.utf8.count) == Array(text.utf8)
    }

    func testTwoSessions_clientsAreSpreadEvenlyOverTwoSSHConnections_andLsShowsBoth() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2\n"))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.sessions_up == 2 }, "\(harness.list())")
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "up")
        XCTAssertEqual(db.sessions, 2)
        XCTAssertEqual(server.log.components(separatedBy: "Accepted publickey").count - 1, 2, "two SSH logins")

        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        fds += try openEchoingClients(8, port, "client")
        let spread = targetConnectionsPerSSHConnection()
        XCTAssertEqual(spread.values.sorted(), [4, 4], "per sshd connection: \(spread)")
        XCTAssertEqual(harness.listed("db")?.forwards[0].active, 8)

        // The two SSH connections run on two of the group's loops (one per core), so both cores work.
        let names = threadNames(of: try XCTUnwrap(harness.supervisorPID))
        XCTAssertEqual(names.filter { $0.hasPrefix("tunnel-loop-") }.count, min(2, ProcessInfo.processInfo.activeProcessorCount), "threads: \(names)")

        let table = harness.tunnel(["ls"]).stdout
        XCTAssertTrue(table.contains("up 2/2"), table)

        // `down` cuts the clients of both connections: a reset, not our read timeout.
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        for fd in fds {
            XCTAssertTrue(cutWithReset(fd, within: 5))
        }
        XCTAssertFalse(Net.isListening(port))
        XCTAssertTrue(eventually(timeout: 5) { self.targetConnectionsPerSSHConnection().isEmpty })
    }

    /// `tunnel up` of a profile whose SSH connections go through a relay that
    /// holds the second one back `lateBy` seconds, so the two lanes come up
    /// apart. The caller stops the relay.
    private func upWithOneLateSession(lateBy delay: Double, port: UInt16) -> (relay: TestServer, up: Outcome) {
        let relay = TestServer(.relay(port: server.port, delays: [0, delay]))
        let key = server.knownHostsLine.split(separator: " ").dropFirst().joined(separator: " ")
        write(read(harness.knownHosts) + "[127.0.0.1]:\(relay.port) \(key)\n", to: harness.knownHosts, mode: 0o600)
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2\n")
            .replacingOccurrences(of: "port = \(server.port)\n", with: "port = \(relay.port)\n"))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        return (relay, up)
    }

    func testUp_waitsForTheLateSecondSession_soClientsConnectingRightAfterAreSpreadOverBoth() throws {
        let port = Net.freePort()
        let (relay, up) = upWithOneLateSession(lateBy: 1.5, port: port)
        defer { relay.stop() }
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertFalse(up.stderr.contains("SSH connections up"), up.output)
        XCTAssertEqual(harness.listed("db")?.sessions_up, 2, "both SSH connections are up when `up` returns: \(harness.list())")

        // A pool opening as soon as `up` returns.
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        fds += try openEchoingClients(8, port, "client")
        let spread = targetConnectionsPerSSHConnection()
        XCTAssertEqual(spread.values.sorted(), [4, 4], "per sshd connection: \(spread)")
    }

    func testUp_whenTheSecondSessionTimesOut_reportsUpWithANoteNamingIt_andTheSessionJoinsLater() throws {
        let port = Net.freePort()
        // connect_timeout is 5 s in the harness's profiles: the second connection misses it once.
        let (relay, up) = upWithOneLateSession(lateBy: 8, port: port)
        defer { relay.stop() }
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stderr.contains("note: db: 1 of 2 SSH connections up:"), up.output)
        XCTAssertTrue(openEchoing(port, "served by the first").map { close($0); return true } ?? false)
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.sessions_up == 2 }, "\(harness.list())")
    }

    func testOneOfTwoSessionsKilled_theOtherKeepsServing_newClientsAreServedAtOnce_itReconnects_andTheLogNamesIt() throws {
        let port = Net.freePort()
        // The relay holds the second SSH connection back 2 s, so the lane that
        // logs "up" first is the one served by the older sshd process: that is
        // the one killed below, and the log must name it (killing "the lowest
        // pid" of two simultaneous logins let either lane be the victim).
        let (relay, up) = upWithOneLateSession(lateBy: 2, port: port)
        defer { relay.stop() }
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.sessions_up == 2 })
        let ups = harness.supervisorLog.split(separator: "\n").filter { $0.contains("info: up: ") }
        XCTAssertEqual(ups.count, 2, harness.supervisorLog)
        let lanes = ups.map { line in line.range(of: #"session=\d/2$"#, options: .regularExpression).map { String(line[$0]) } ?? "" }
        XCTAssertEqual(Set(lanes), ["session=1/2", "session=2/2"], harness.supervisorLog)
        let firstLane = lanes[0]

        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        fds += try openEchoingClients(4, port, "before")
        let spread = targetConnectionsPerSSHConnection()
        XCTAssertEqual(spread.values.sorted(), [2, 2], "\(spread)")
        let byAge = spread.keys.sorted { (startTime(of: $0) ?? 0) < (startTime(of: $1) ?? 0) }
        let victim = try XCTUnwrap(byAge.first), survivor = try XCTUnwrap(byAge.last)
        XCTAssertLessThan(try XCTUnwrap(startTime(of: victim)), try XCTUnwrap(startTime(of: survivor)), "the relay staggers the logins")
        // A stopped listener keeps the killed connection from coming back until
        // SIGCONT; the surviving connection's own process keeps running.
        let listener = try XCTUnwrap(server.process?.pid)
        kill(listener, SIGSTOP)
        var resumed = false
        defer { if !resumed { kill(listener, SIGCONT) } }
        for pid in [victim] + descendants(of: victim) { kill(pid, SIGKILL) }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.sessions_up == 1 }, "\(harness.list())")
        XCTAssertEqual(harness.listed("db")?.state, "up", "one connection up is still up")

        // Clients of the killed connection are reset; the others keep echoing.
        var survivors = 0
        for (i, fd) in fds.enumerated() {
            Net.setTimeout(fd, 5)
            if Self.echoes(fd, "after \(i)") { survivors += 1 }
        }
        XCTAssertEqual(survivors, 2)

        // New clients do not wait for the reconnect: the live connection takes them.
        fds += try openEchoingClients(3, port, "during the outage")
        XCTAssertEqual(targetConnectionsPerSSHConnection(), [survivor: 5])

        kill(listener, SIGCONT)
        resumed = true
        XCTAssertTrue(eventually(timeout: 15) { self.harness.listed("db")?.sessions_up == 2 }, "\(harness.list())")
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "up")
        XCTAssertEqual(db.restarts, 1)
        XCTAssertNotNil(db.last_error)
        // Both lanes log "session=K/2" on every line; the loss is logged once, by the killed lane.
        let lost = harness.supervisorLog.split(separator: "\n").filter { $0.contains("warning: link lost") }
        XCTAssertEqual(lost.count, 1, harness.supervisorLog)
        XCTAssertTrue(lost.first?.hasSuffix(" \(firstLane)") ?? false, "expected the loss of \(firstLane): \(lost)")
    }

    func testBothSessionsKilled_theListenerStaysBound_aClientFromTheOutageIsServedAfterRecovery() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2\n"))
        XCTAssertEqual(harness.tunnel(["up", "db"], timeout: 30).status, 0)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.sessions_up == 2 })

        // Both connections down, and held down until SIGCONT.
        let listener = try XCTUnwrap(server.process?.pid)
        kill(listener, SIGSTOP)
        var resumed = false
        defer { if !resumed { kill(listener, SIGCONT) } }
        server.killSessions()
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "reconnecting" }, "\(harness.list())")
        XCTAssertEqual(harness.listed("db")?.sessions_up, 0)
        XCTAssertTrue(Net.isListening(port), "the listener closed during the outage")

        // Clients arriving now wait (hold_timeout is 10 s) and are served once a connection is back.
        let replies = Atomic<[String]>([])
        let clients = (0..<3).map { i in
            Thread {
                guard let fd = Net.connect(port, timeout: 20) else { return }
                defer { close(fd) }
                Net.setTimeout(fd, 20)
                if Self.echoes(fd, "held \(i)") { replies.mutate { $0.append("held \(i)") } }
            }
        }
        clients.forEach { $0.start() }
        usleep(500_000)
        kill(listener, SIGCONT)
        resumed = true
        XCTAssertTrue(eventually(timeout: 20) { clients.allSatisfy(\.isFinished) })
        XCTAssertEqual(replies.value.sorted(), ["held 0", "held 1", "held 2"])
        XCTAssertTrue(eventually(timeout: 15) { self.harness.listed("db")?.sessions_up == 2 }, "\(harness.list())")
        XCTAssertEqual(harness.listed("db")?.restarts, 2, "one restart per connection")
    }

    func testKeyTheServerRefuses_withTwoSessions_upFailsOnce_stateFailed_twoAttemptsOnly() throws {
        let wrong = makeTempDir("wrongkey") + "/id_ed25519"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", wrong])
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2\n")
            .replacingOccurrences(of: "identity = \"\(server.userKey)\"", with: "identity = \"\(wrong)\""))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("authentication failed"), up.stderr)
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "failed")
        sleep(3)
        XCTAssertEqual(server.log.components(separatedBy: "Connection from 127.0.0.1").count - 1, 2,
                       "one attempt per connection, then the 5-minute pause: \(server.log)")
    }

    func testForeground_withTwoSessions_servesAndStopsOnSIGTERM() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "sessions = 2\n"))
        let fg = try harness.foreground("db", waitFor: port)
        defer { fg.stop() }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        XCTAssertTrue(eventually(timeout: 10) { fg.log.contains("session=1/2") && fg.log.contains("session=2/2") }, fg.log)
        usleep(200_000)  // the runtime hears of the second connection from its thread
        fds += try openEchoingClients(4, port, "fg")
        XCTAssertEqual(targetConnectionsPerSSHConnection().values.sorted(), [2, 2])
        fg.signal(SIGTERM)
        XCTAssertEqual(fg.wait(timeout: 3), 0, fg.log)
        XCTAssertFalse(Net.isListening(port))
        for fd in fds {
            XCTAssertTrue(cutWithReset(fd, within: 3))
        }
    }

    // MARK: extra connections while clients queue (max_sessions)

    /// SSH connections from tunnel to the server, established now.
    private func sshConnections() -> Int {
        runCommand(Env.which("ss")!, ["-tnH", "state", "established", "dst", "127.0.0.1:\(server.port)"]).stdout
            .split(separator: "\n").count
    }

    /// `count` clients connect at once, then each sends its line and must get
    /// it back; the caller closes them.
    private func burstOfEchoingClients(_ count: Int, _ port: UInt16) throws -> [Int32] {
        var fds: [Int32] = []
        do {
            for i in 0..<count { fds.append(try XCTUnwrap(Net.connect(port), "connect \(i)")) }
            for (i, fd) in fds.enumerated() { XCTAssertTrue(Net.sendAll(fd, Array("burst \(i)\n".utf8)), "send \(i)") }
            var echoed = 0
            for (i, fd) in fds.enumerated() {
                Net.setTimeout(fd, 20)
                let text = Array("burst \(i)\n".utf8)
                if Net.readExactly(fd, text.count) == text { echoed += 1 }
            }
            XCTAssertEqual(echoed, count, "clients echoed byte-exactly")
        } catch {
            fds.forEach { close($0) }
            throw error
        }
        return fds
    }

    func testClientsQueueingForChannels_openOneExtraConnection_upToMaxSessions_sharingTheQueue_thenItClosesWhenIdle() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "max_sessions = 2\n"))
        let up = harness.tunnel(["up", "db"], timeout: 30, env: ["TUNNEL_EXTRA_SESSION_IDLE": "2"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertEqual(sshConnections(), 1, "one SSH connection while nothing queues")

        // 400 clients at once: libssh2 opens one channel at a time per
        // connection, so the queue makes the tunnel add a connection, and
        // only one (max_sessions = 2).
        var fds = try burstOfEchoingClients(400, port)
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(server.log.components(separatedBy: "Accepted publickey").count - 1, 2, "two SSH logins, not more")
        let spread = targetConnectionsPerSSHConnection()
        XCTAssertEqual(spread.values.reduce(0, +), 400, "\(spread)")
        XCTAssertEqual(spread.count, 2, "both connections carry clients: \(spread)")
        XCTAssertGreaterThanOrEqual(spread.values.min() ?? 0, 40, "the new connection took a share of the queue: \(spread)")
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "up")
        XCTAssertEqual(db.sessions_up, 1)
        XCTAssertEqual(db.sessions_extra, 1)
        XCTAssertEqual(db.forwards[0].active, 400)
        XCTAssertTrue(harness.tunnel(["ls"]).stdout.contains("up +1"), harness.tunnel(["ls"]).stdout)
        XCTAssertTrue(harness.supervisorLog.contains("opening extra SSH connection 2"), harness.supervisorLog)

        // Busy, the extra connection stays past its idle time.
        sleep(3)
        XCTAssertEqual(sshConnections(), 2)
        XCTAssertEqual(targetConnectionsPerSSHConnection().values.reduce(0, +), 400)

        // Idle, it closes; the kept one still serves.
        fds.forEach { close($0) }
        fds = []
        XCTAssertTrue(eventually(timeout: 10) { self.sshConnections() == 1 }, "the extra connection closed once idle")
        XCTAssertEqual(harness.listed("db")?.sessions_extra, 0)
        XCTAssertEqual(harness.listed("db")?.restarts, 0, "closing an idle extra connection is not a restart")
        XCTAssertTrue(harness.supervisorLog.contains("extra SSH connection 2 closed: no clients for 2.0 s"), harness.supervisorLog)
        fds += try openEchoingClients(2, port, "after")
        XCTAssertEqual(sshConnections(), 1)
    }

    /// The default profile (one SSH connection, max_sessions 4): a pool of
    /// eight clients makes it open a second connection once the first
    /// carries four, and the pool ends up split four and four.
    func testDefaultProfile_aPoolOfEightClients_opensASecondConnectionAtFourBusy_andSplitsFourAndFour() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"], timeout: 30).status, 0)
        var fds = try openEchoingClients(4, port, "first")
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(sshConnections(), 1, "four clients fit on one connection")
        fds += try openEchoingClients(4, port, "more")
        XCTAssertEqual(server.log.components(separatedBy: "Accepted publickey").count - 1, 2, "a second login, not more")
        XCTAssertEqual(targetConnectionsPerSSHConnection().values.sorted(), [4, 4])
        XCTAssertEqual(harness.listed("db")?.sessions_extra, 1)
        XCTAssertTrue(harness.supervisorLog.contains("4 clients on 1 SSH connection(s), 1 more arriving: opening extra SSH connection 2"), harness.supervisorLog)
        // The extra connection runs on the tunnel's own loop: no second loop thread starts for it.
        let names = threadNames(of: try XCTUnwrap(harness.supervisorPID))
        XCTAssertEqual(names.filter { $0.hasPrefix("tunnel-loop-") }, ["tunnel-loop-1"], "threads: \(names)")
        // Every client still echoes through its connection.
        for (i, fd) in fds.enumerated() { XCTAssertTrue(Self.echoes(fd, "again \(i)")) }
    }

    func testMaxSessionsOne_aBurstStaysOnOneConnection_andEveryClientIsServed() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "max_sessions = 1\n"))
        XCTAssertEqual(harness.tunnel(["up", "db"], timeout: 30).status, 0)
        let fds = try burstOfEchoingClients(400, port)
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(server.log.components(separatedBy: "Accepted publickey").count - 1, 1, "one SSH login")
        XCTAssertEqual(targetConnectionsPerSSHConnection().values.sorted(), [400])
        XCTAssertEqual(harness.listed("db")?.sessions_extra, 0)
    }

    func testExtraConnectionRefusedByTheServer_theQueueIsServedByTheKeptOne_andTheTunnelStaysUp() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "max_sessions = 3\n"))
        XCTAssertEqual(harness.tunnel(["up", "db"], timeout: 30).status, 0)
        // No new SSH connection gets through from here on: the kept one is
        // served by its own sshd process.
        let listener = try XCTUnwrap(server.process?.pid)
        kill(listener, SIGSTOP)
        defer { kill(listener, SIGCONT) }
        let fds = try burstOfEchoingClients(300, port)
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(targetConnectionsPerSSHConnection().values.sorted(), [300])
        let db = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(db.state, "up")
        XCTAssertEqual(db.restarts, 0)
        XCTAssertNil(db.last_error, "a missing extra connection is not the tunnel's error")
        XCTAssertTrue(eventually(timeout: 10) { self.harness.supervisorLog.contains("no extra SSH connection for 30 s") }, harness.supervisorLog)
        XCTAssertEqual(harness.supervisorLog.components(separatedBy: "opening extra SSH connection").count - 1, 1,
                       "after a failure, no new attempt for 30 s: \(harness.supervisorLog)")
    }
}
