import Foundation
import XCTest

/// `jump` with a real PostgreSQL behind the bastion: the cluster listens on
/// the network namespace's own loopback (and on no Unix socket), so only the
/// hosts inside the namespace reach it; psql and pgbench reach it through
/// one hop and through two.
final class JumpPostgresTests: SSHTestCase {
    private var namespace: TestNamespace!
    private var bastion: SSHServer!
    /// The target: inside the namespace, reachable only through the bastion.
    private var inner: SSHServer!
    private var postgres: Postgres!

    override func setUpWithError() throws {
        try super.setUpWithError()
        namespace = try TestNamespace()
        bastion = try SSHServer(namespace: namespace, listenAddress: namespace.insideAddress)
        inner = try SSHServer(namespace: namespace)
        postgres = try Postgres(namespace: namespace)
        // Every hop accepts the profile's one identity.
        try bastion.authorize(publicKeyFile: server.userKey + ".pub")
        try inner.authorize(publicKeyFile: server.userKey + ".pub")
        harness.trust(bastion)
        harness.trust(inner)
    }

    override func tearDown() {
        harness?.stopSupervisor()
        postgres?.stop()
        bastion?.stop()
        inner?.stop()
        namespace?.remove()
        super.tearDown()
    }

    private var bastionName: String { "root@\(namespace.insideAddress):\(bastion.port)" }

    /// A profile for `target` through `jump`, forwarding `port` to PostgreSQL
    /// as the target sees it (127.0.0.1 inside the namespace).
    private func writeProfile(_ port: UInt16, target: SSHServer, jump: String) {
        harness.writeConfig(harness.profile("db", server: target, forwards: ["\(port):127.0.0.1:\(postgres.port)"], extra: "jump = \"\(jump)\"\n")
            .replacingOccurrences(of: "identity = \"\(target.userKey)\"", with: "identity = \"\(server.userKey)\""))
    }

    /// psql from inside the namespace, where the cluster listens.
    private func queryInsideTheNamespace(_ sql: String) -> Outcome {
        runCommand("/usr/bin/ip", ["netns", "exec", namespace.name, "/usr/bin/psql", "-h", "127.0.0.1", "-p", "\(postgres.port)",
                                   "-U", "postgres", "-d", "postgres", "-At", "-c", sql],
                   env: ["PGCONNECT_TIMEOUT": "10"], timeout: 30)
    }

    private func pgbench(_ args: [String], port: UInt16) throws -> Outcome {
        let pgbench = try XCTUnwrap(Env.which("pgbench"), "pgbench is not installed (postgresql-contrib)")
        return runCommand(pgbench, args + ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "postgres"],
                          env: ["PGCONNECT_TIMEOUT": "10"], timeout: 180)
    }

    /// The value after "LABEL: " on the line of pgbench's summary that starts with LABEL, up to the first space.
    static func summaryValue(_ output: String, _ label: String) -> String? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(label + ": ") }) else { return nil }
        return line.dropFirst(label.count + 2).split(separator: " ").first.map(String.init)
    }

    /// Whether a TCP connection to host:port is accepted (closed at once).
    private static func connects(_ port: UInt16, host: String = "127.0.0.1") -> Bool {
        guard let fd = Net.connect(port, host: host, timeout: 1) else { return false }
        close(fd)
        return true
    }

    /// The cluster runs and answers inside the namespace, and nothing here reaches it.
    private func assertPostgresIsReachableOnlyInsideTheNamespace(file: StaticString = #filePath, line: UInt = #line) {
        let inside = queryInsideTheNamespace("select 1")
        XCTAssertEqual(inside.status, 0, inside.output, file: file, line: line)
        XCTAssertEqual(inside.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "1", file: file, line: line)
        XCTAssertFalse(Self.connects(postgres.port), "PostgreSQL is reachable on this loopback", file: file, line: line)
        XCTAssertFalse(Self.connects(postgres.port, host: namespace.insideAddress),
                       "PostgreSQL is reachable on the namespace's veth address", file: file, line: line)
        let direct = Postgres.query("select 1", port: postgres.port)
        XCTAssertNotEqual(direct.status, 0, "psql reached PostgreSQL without the tunnel: \(direct.output)", file: file, line: line)
    }

    /// A query, `pgbench -i` and a pgbench run of 8 clients through the forward on `port`.
    private func assertPostgresWorks(through port: UInt16, file: StaticString = #filePath, line: UInt = #line) throws {
        // Answered by the cluster inside the namespace: its address and port, and a client that is the target's sshd there.
        let answer = Postgres.query("select inet_server_addr(), current_setting('port'), inet_client_addr(), 40 + 2", port: port)
        XCTAssertEqual(answer.status, 0, answer.output + harness.supervisorLog, file: file, line: line)
        XCTAssertEqual(answer.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "127.0.0.1|\(postgres.port)|127.0.0.1|42", file: file, line: line)

        let initialize = try pgbench(["-i", "-q", "-s", "1"], port: port)
        XCTAssertEqual(initialize.status, 0, initialize.output, file: file, line: line)
        XCTAssertTrue(initialize.output.contains("done in"), initialize.output, file: file, line: line)
        let accounts = Postgres.query("select count(*) from pgbench_accounts", port: port)
        XCTAssertEqual(accounts.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "100000", accounts.output, file: file, line: line)

        let run = try pgbench(["-S", "-n", "-c", "8", "-j", "2", "-t", "200"], port: port)
        XCTAssertEqual(run.status, 0, run.output, file: file, line: line)
        XCTAssertEqual(Self.summaryValue(run.stdout, "number of clients"), "8", run.output, file: file, line: line)
        XCTAssertEqual(Self.summaryValue(run.stdout, "number of transactions actually processed"), "1600/1600", run.output, file: file, line: line)
        XCTAssertEqual(Self.summaryValue(run.stdout, "number of failed transactions"), "0", run.output, file: file, line: line)

        // The link carried it all without a reconnect, one channel per client.
        let listed = try XCTUnwrap(harness.listed("db"), file: file, line: line)
        XCTAssertEqual(listed.state, "up", file: file, line: line)
        XCTAssertEqual(listed.restarts, 0, "\(harness.list())\n\(harness.supervisorLog)", file: file, line: line)
        // psql twice, pgbench -i, and pgbench's 8 clients at least.
        XCTAssertGreaterThanOrEqual(listed.forwards.first?.total ?? 0, 11, "\(harness.list())", file: file, line: line)
    }

    func testOneJump_psqlAndPgbench_reachPostgresOnlyTheBastionsSideCanReach() throws {
        assertPostgresIsReachableOnlyInsideTheNamespace()
        let port = Net.freePort()
        writeProfile(port, target: inner, jump: bastionName)
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("db")?.hops, [bastionName, "root@127.0.0.1:\(inner.port)"])
        try assertPostgresWorks(through: port)
        XCTAssertTrue(read(inner.logPath).contains("Accepted publickey"), "the target authenticated through the bastion")
    }

    func testTwoJumps_psqlAndPgbench_reachPostgresThroughBothHops() throws {
        let third = try SSHServer(namespace: namespace)
        defer { third.stop() }
        try third.authorize(publicKeyFile: server.userKey + ".pub")
        harness.trust(third)
        assertPostgresIsReachableOnlyInsideTheNamespace()
        let port = Net.freePort()
        let middle = "root@127.0.0.1:\(inner.port)"
        writeProfile(port, target: third, jump: "\(bastionName),\(middle)")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertEqual(harness.listed("db")?.hops, [bastionName, middle, "root@127.0.0.1:\(third.port)"])
        try assertPostgresWorks(through: port)
        XCTAssertTrue(read(inner.logPath).contains("Accepted publickey"), "the middle hop authenticated")
        XCTAssertTrue(read(third.logPath).contains("Accepted publickey"), "the target authenticated through both hops")
    }
}
