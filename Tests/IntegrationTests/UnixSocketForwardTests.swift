import Foundation
import XCTest

/// A `forward` whose local side is a path listens on a Unix socket there:
/// the PostgreSQL case (`psql -h DIR`), its mode, stale and live files.
final class UnixSocketForwardTests: SSHTestCase {
    private var socketDir: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        socketDir = makeTempDir("pgsock")
    }

    private func writeProfile(path: String, target: UInt16) {
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(path):127.0.0.1:\(target)"]))
    }

    /// A Unix socket file at `path`; with `listening`, a process keeps accepting on it.
    private func makeSocketFile(_ path: String, listening: Bool) throws -> Background? {
        let script = "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\n"
            + (listening ? "s.listen(8)\nprint('ready',flush=True)\ntime.sleep(120)\n" : "")
        if !listening {
            XCTAssertEqual(runCommand("/usr/bin/python3", ["-c", script, path]).status, 0)
            return nil
        }
        let p = try Background("/usr/bin/python3", ["-c", script, path], logPath: socketDir + "/live.log")
        XCTAssertTrue(eventually(timeout: 10) { p.log.contains("ready") })
        return p
    }

    func testPsql_dashH_reachesPostgresThroughTheSocket_whichIsPrivate_andGoneAfterDown() throws {
        let postgres = try Postgres()
        defer { postgres.stop() }
        let path = socketDir + "/.s.PGSQL.5432"
        writeProfile(path: path, target: postgres.port)
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        let status = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual(status[.type] as? FileAttributeType, .typeSocket)
        XCTAssertEqual((status[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let psql = runCommand("/usr/bin/psql", ["-h", socketDir, "-p", "5432", "-U", "postgres", "-d", "postgres", "-At", "-c", "select 6 * 7"],
                              env: ["PGCONNECT_TIMEOUT": "10"], timeout: 30)
        XCTAssertEqual(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "42", psql.output)
        let listed = try XCTUnwrap(harness.listed("db"))
        XCTAssertEqual(listed.forwards.first?.local, path)
        XCTAssertEqual(listed.forwards.first?.total, 1)
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "down removes the socket file")
    }

    func testAStaleSocketFile_isReplaced() throws {
        let path = socketDir + "/echo.sock"
        _ = try makeSocketFile(path, listening: false)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        writeProfile(path: path, target: echo.port)
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        let nc = runCommand(Env.which("nc")!, ["-U", "-q", "2", path], timeout: 30, stdin: "through a unix socket\n")
        XCTAssertEqual(nc.stdout, "through a unix socket\n", nc.output)
    }

    func testALiveSocket_aRegularFile_andAMissingDirectory_areRefusedNamingThem() throws {
        let live = socketDir + "/live.sock"
        let owner = try makeSocketFile(live, listening: true)
        defer { owner?.stop() }
        writeProfile(path: live, target: echo.port)
        let refused = harness.tunnel(["up", "db", "--foreground"], timeout: 30)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("\(live) is a socket something is listening on"), refused.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a live socket is never removed")

        let file = socketDir + "/notes.txt"
        write("keep me\n", to: file)
        writeProfile(path: file, target: echo.port)
        let notASocket = harness.tunnel(["up", "db", "--foreground"], timeout: 30)
        XCTAssertTrue(notASocket.stderr.contains("\(file) exists and is a regular file, not a socket"), notASocket.stderr)
        XCTAssertEqual(read(file), "keep me\n")

        writeProfile(path: socketDir + "/missing/db.sock", target: echo.port)
        let noDirectory = harness.tunnel(["up", "db", "--foreground"], timeout: 30)
        XCTAssertTrue(noDirectory.stderr.contains("directory \(socketDir!)/missing does not exist"), noDirectory.stderr)
        // `tunnel check` says the same before anything starts; a free path passes.
        let checked = harness.tunnel(["check", "db"], timeout: 30)
        XCTAssertNotEqual(checked.status, 0)
        XCTAssertTrue(checked.stdout.contains("[FAIL] local \(socketDir!)/missing/db.sock") && checked.stdout.contains("does not exist"), checked.stdout)
        writeProfile(path: live, target: echo.port)
        XCTAssertTrue(harness.tunnel(["check", "db"], timeout: 30).stdout.contains("is a socket something is listening on"))
        writeProfile(path: socketDir + "/free.sock", target: echo.port)
        let free = harness.tunnel(["check", "db"], timeout: 30)
        XCTAssertEqual(free.status, 0, free.output)
        XCTAssertTrue(free.stdout.contains("a Unix socket, made when the tunnel starts"), free.stdout)
    }

    func testTwoForwardsOnOnePath_isAConfigError() {
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(socketDir!)/a.sock:127.0.0.1:1", "\(socketDir!)/a.sock:127.0.0.1:2"]))
        let check = harness.tunnel(["config", "check"])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.output.contains("\(socketDir!)/a.sock overlaps \(socketDir!)/a.sock"), check.output)
    }
}
