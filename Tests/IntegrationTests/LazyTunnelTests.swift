import Foundation
import XCTest

/// `lazy = true` against a real sshd: listeners bound at `tunnel up`, the SSH
/// connection opened by the first client and closed after `idle_timeout`.
final class LazyTunnelTests: SSHTestCase {
    private var logins: Int { server.log.components(separatedBy: "Accepted publickey").count - 1 }
    /// TCP connections sshd accepted (logged at VERBOSE), logged in or not.
    private var connections: Int { server.log.components(separatedBy: "Connection from 127.0.0.1").count - 1 }

    private static func roundTrip(_ port: UInt16, _ text: String, timeout: Double = 20) -> String? {
        guard let fd = Net.connect(port, timeout: timeout) else { return nil }
        defer { close(fd) }
        Net.setTimeout(fd, timeout)
        guard Net.sendAll(fd, Array(text.utf8)) else { return nil }
        return Net.readExactly(fd, text.utf8.count).map { String(decoding: $0, as: UTF8.self) }
    }

    func testLazy_upLogsInNowhere_simultaneousFirstClientsShareOneLogin_idleClosesIt_andTheNextClientOpensAnother() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"],
                                            extra: "lazy = true\nidle_timeout = 2\nhold_timeout = 0"))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stdout.contains("db: idle, connects when the first client arrives: 127.0.0.1:\(port) -> 127.0.0.1:\(echo.port)"), up.stdout)
        XCTAssertTrue(Net.isListening(port), "the listener is bound at once")
        XCTAssertEqual(harness.listed("db")?.state, "idle")
        XCTAssertTrue(harness.tunnel(["ls"]).stdout.contains("idle"))
        XCTAssertEqual(connections, 0, "no SSH connection before the first client: \(server.log)")
        XCTAssertEqual(logins, 0)

        // Four clients at once (as many as one connection carries before the
        // tunnel adds another), each sending before anything is connected.
        // With hold_timeout = 0 they still wait for the connection they started.
        let fds = (0..<4).compactMap { _ in Net.connect(port) }
        XCTAssertEqual(fds.count, 4)
        for (i, fd) in fds.enumerated() {
            Net.setTimeout(fd, 20)
            XCTAssertTrue(Net.sendAll(fd, Array("client-\(i)".utf8)))
        }
        for (i, fd) in fds.enumerated() {
            XCTAssertEqual(Net.readExactly(fd, "client-\(i)".utf8.count).map { String(decoding: $0, as: UTF8.self) }, "client-\(i)")
        }
        XCTAssertEqual(logins, 1, "the first clients shared one login")
        XCTAssertEqual(connections, 1)
        XCTAssertEqual(harness.listed("db")?.state, "up")
        fds.forEach { close($0) }

        // No client for idle_timeout: the SSH connection closes, the listener stays.
        XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state == "idle" }, "\(String(describing: harness.listed("db")))")
        XCTAssertTrue(eventually(timeout: 10) { self.server.sessionPIDs.isEmpty }, "sshd still serves a connection: \(server.sessionPIDs)")
        XCTAssertTrue(Net.isListening(port))
        XCTAssertTrue(harness.supervisorLog.contains("idle: no client for 2 s"), harness.supervisorLog)

        // The next client opens a new connection and is served.
        XCTAssertEqual(Self.roundTrip(port, "again"), "again")
        XCTAssertEqual(logins, 2)
        let listed = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(listed.restarts, 0, "idling is not a restart")
        XCTAssertEqual(listed.forwards[0].total, 5)
    }

    func testLazy_whileIdleOrInUse_aSecondUpAnswersAtOnce_andDownClosesTheListener() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: "lazy = true"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let again = harness.tunnel(["up", "db"])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.stdout.contains("db: idle"), again.stdout)
        XCTAssertEqual(logins, 0, "asking again does not connect either")
        XCTAssertEqual(Self.roundTrip(port, "x"), "x")
        XCTAssertTrue(harness.tunnel(["up", "db"]).stdout.contains("db: already up"))
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        XCTAssertFalse(Net.isListening(port))
        XCTAssertTrue(eventually(timeout: 10) { self.server.sessionPIDs.isEmpty })
    }

    /// The server is down when the first client comes: once that client has
    /// given up (hold_timeout), nobody waits, and the tunnel goes back to
    /// idle instead of logging in again and again until idle_timeout.
    func testLazy_serverDown_afterTheHeldClientGoes_itIsIdleAgain_andTheNextClientTriesAgain() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"],
                                            extra: "lazy = true\nhold_timeout = 2\nidle_timeout = 300"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        server.stop()
        let fd = try XCTUnwrap(Net.connect(port))
        Net.setTimeout(fd, 20)
        XCTAssertTrue(Net.readToEOF(fd).bytes.isEmpty)
        close(fd)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "idle" }, "\(harness.list())")
        XCTAssertTrue(harness.supervisorLog.contains("idle: no client is waiting and no SSH connection is up"), harness.supervisorLog)
        // The server back: the next client connects it.
        try server.start()
        XCTAssertEqual(Self.roundTrip(port, "again"), "again")
    }

    func testLazy_authFailure_isFailed_andNewClientsAreClosedWithoutAnotherLogin_untilUpAsksAgain() throws {
        let other = makeTempDir("key") + "/other"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", other])
        try server.authorize(publicKeyFile: other + ".pub")
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"],
                                            extra: "lazy = true\nhold_timeout = 1"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)

        // The first client starts the attempt; authentication fails; it is closed after hold_timeout.
        let fd = try XCTUnwrap(Net.connect(port))
        Net.setTimeout(fd, 20)
        XCTAssertTrue(Net.sendAll(fd, Array("hello".utf8)))
        let first = Net.readToEOF(fd)
        close(fd)
        XCTAssertTrue(first.bytes.isEmpty, "nothing came back through a failed tunnel")
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.state == "failed" })
        XCTAssertTrue(harness.listed("db")?.last_error?.contains("publickey") ?? false, "\(String(describing: harness.listed("db")?.last_error))")
        let attempts = connections
        XCTAssertEqual(attempts, 1)

        // More clients: each is closed after hold_timeout, and none retries the login.
        for _ in 0..<3 {
            let c = try XCTUnwrap(Net.connect(port))
            Net.setTimeout(c, 20)
            XCTAssertTrue(Net.readToEOF(c).bytes.isEmpty)
            close(c)
        }
        XCTAssertEqual(connections, attempts, "new clients did not retry a failed login: \(server.log)")
        XCTAssertEqual(harness.listed("db")?.state, "failed")

        // `tunnel up` asks again, and with the right key it connects.
        try server.authorize(publicKeyFile: server.userKey + ".pub")
        let retried = harness.tunnel(["up", "db"])
        XCTAssertEqual(retried.status, 0, retried.output)
        XCTAssertEqual(connections, attempts + 1)
        XCTAssertEqual(Self.roundTrip(port, "works"), "works")
    }

    func testLazy_wakeAndSleepCycles_leaveTheSupervisorsDescriptorCountFlat() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"],
                                            extra: "lazy = true\nidle_timeout = 1\nsessions = 2"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        let fdCount = { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1 }
        var counts: [Int] = []
        for cycle in 0..<3 {
            XCTAssertEqual(Self.roundTrip(port, "cycle-\(cycle)"), "cycle-\(cycle)")
            XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state == "idle" })
            XCTAssertTrue(eventually(timeout: 10) { self.server.sessionPIDs.isEmpty })
            counts.append(fdCount())
        }
        XCTAssertEqual(logins, 6, "two SSH connections per wake")
        XCTAssertEqual(Set(counts).count, 1, "descriptors after each idle: \(counts)")
    }
}
