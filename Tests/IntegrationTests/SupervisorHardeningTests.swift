import Foundation
import XCTest

/// Hostile or stale input the supervisor meets while it runs: control-socket
/// clients that misbehave, runtime paths too long for a socket, a saved agent
/// socket that is no longer this user's, and reloads that must keep each
/// tunnel's own agent and home.
final class SupervisorHardeningTests: SSHTestCase {
    private func profile(_ name: String, _ port: UInt16, extra: String = "") -> String {
        harness.profile(name, server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: extra)
    }

    private var controlSocket: String { harness.runtimeDir + "/control.sock" }

    /// A raw connection to the control socket.
    private func connectControl() -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: Array(controlSocket.utf8) + [0]) }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { close(fd); return nil }
        return fd
    }

    func testMisbehavingControlClients_areDroppedAndLogged_whileLsIsServed() throws {
        harness.writeConfig(profile("db", Net.freePort()))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)

        // 50 clients that connect and say nothing.
        let silent = (0..<50).compactMap { _ in connectControl() }
        defer { silent.forEach { close($0) } }
        XCTAssertEqual(silent.count, 50)
        // One that sends an 8 MiB line, one that sends garbage, one that hangs up mid-request.
        let big = try XCTUnwrap(connectControl())
        defer { close(big) }
        let flooder = Thread {
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            for _ in 0..<8 { if !Net.sendAll(big, chunk) { break } }
        }
        flooder.start()
        let garbage = try XCTUnwrap(connectControl())
        defer { close(garbage) }
        XCTAssertTrue(Net.sendAll(garbage, Array("\u{0}\u{1b}[2J not json at all\n".utf8)))
        Net.setTimeout(garbage, 10)
        let refusal = String(decoding: Net.readToEOF(garbage).bytes, as: UTF8.self)
        XCTAssertTrue(refusal.contains("malformed request"), refusal)
        let truncated = try XCTUnwrap(connectControl())
        XCTAssertTrue(Net.sendAll(truncated, Array(#"{"v":1,"command":"li"#.utf8)))
        close(truncated)

        // Everyone else is served meanwhile.
        let ls = harness.tunnel(["ls", "--json"], timeout: 5)
        XCTAssertEqual(ls.status, 0, ls.output)
        XCTAssertTrue(ls.stdout.contains("\"db\""), ls.stdout)

        let log = { self.harness.supervisorLog }
        XCTAssertTrue(eventually(timeout: 20) { log().components(separatedBy: "sent no whole request within 10 s").count - 1 == 50 },
                      "the 50 silent clients were not each dropped: \(log())")
        XCTAssertTrue(log().contains("sent a request of more than 1048576 bytes"), log())
        XCTAssertTrue(log().contains("hung up after 20 bytes of a request"), log())
        XCTAssertTrue(log().contains("sent a malformed request"), log())
        XCTAssertEqual(harness.listed("db")?.state, "up", "the supervisor serves on")
    }

    /// A script or CI job that runs `tunnel up` with an inheritable pipe (its
    /// log reader waits for EOF) must not have the background supervisor
    /// keep that pipe open.
    func testSupervisorStartedByUp_keepsNoDescriptorItsCallerLeftInheritable() throws {
        harness.writeConfig(profile("db", Net.freePort()))
        var ends: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&ends), 0)  // without O_CLOEXEC, as a careless caller would
        defer { close(ends[0]) }
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        XCTAssertEqual(kill(pid, 0), 0)
        close(ends[1])
        // Every write end is closed (this process's and any copy the children kept): EOF, not "would block".
        _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        var byte: UInt8 = 0
        XCTAssertEqual(read(ends[0], &byte, 1), 0, "errno \(errno): someone still holds the pipe's write end")
        let held = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        XCTAssertFalse(held.isEmpty)
        for fd in held {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) ?? ""
            XCTAssertFalse(target.hasPrefix("pipe:"), "supervisor fd \(fd) is \(target)")
        }
    }

    func testRuntimeDirectoryTooLongForASocket_isOneLineNamingThePathAndTheLimit() {
        harness.writeConfig(profile("db", Net.freePort()))
        let long = harness.dir + "/" + String(repeating: "r", count: 120)
        for args in [["ls"], ["up", "db"], ["daemon"]] {
            let result = harness.tunnel(args + ["--runtime-dir", long], timeout: 20)
            XCTAssertNotEqual(result.status, 0, "\(args): \(result.output)")
            let lines = result.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("runtime directory \(long) is too long") && result.stderr.contains("holds at most 107"),
                          "\(args): \(result.stderr)")
        }
    }

    /// A unix socket listening at `path`, served by `user` (nil: this process's uid).
    private func listeningSocket(at path: String, as user: String?) throws -> Background {
        let script = "import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(8)\nprint('ready',flush=True)\ntime.sleep(300)\n"
        let args = ["-c", script, path]
        let p = user.map { try? Background("/usr/sbin/runuser", ["-u", $0, "--", "/usr/bin/python3"] + args, logPath: harness.dir + "/agent-\($0).log") }
            ?? (try? Background("/usr/bin/python3", args, logPath: harness.dir + "/agent.log"))
        let process = try XCTUnwrap(p)
        XCTAssertTrue(eventually(timeout: 10) { FileManager.default.fileExists(atPath: path) }, "no socket at \(path)")
        return process
    }

    /// `up db` with SSH_AUTH_SOCK = `agent` (nothing there yet), then a
    /// supervisor restart once `prepare` has put something at that path.
    private func restoreWithSavedAgent(_ agent: String, prepare: () throws -> Background) throws -> String {
        let port = Net.freePort()
        harness.writeConfig(profile("db", port))
        let first = harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": agent])
        XCTAssertEqual(first.status, 0, first.output)
        harness.stopSupervisor()
        let fake = try prepare()
        defer { fake.stop() }
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0, "the tunnel falls back as for a missing agent")
        XCTAssertEqual(Self.echoes(port), true)
        return harness.supervisorLog
    }

    private static func echoes(_ port: UInt16) -> Bool {
        guard let fd = Net.connect(port, timeout: 10) else { return false }
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        return Net.sendAll(fd, Array("ping".utf8)) && Net.readExactly(fd, 4) == Array("ping".utf8)
    }

    func testSavedAgentSocketOwnedByAnotherUser_isNotUsed_andTheLogSaysWhy() throws {
        let dir = harness.dir + "/agentdir"
        mkdir(dir, 0o777)
        chmod(dir, 0o777)
        let agent = dir + "/agent.sock"
        let log = try restoreWithSavedAgent(agent) { try listeningSocket(at: agent, as: "nobody") }
        XCTAssertTrue(log.contains("[db] warning: not using its saved ssh-agent socket (\(agent) belongs to uid 65534, not to uid 0); using no agent"), log)
    }

    func testSavedAgentSocketServedByAnotherUser_isNotUsed() throws {
        let dir = harness.dir + "/agentdir"
        mkdir(dir, 0o777)
        chmod(dir, 0o777)
        let agent = dir + "/agent.sock"
        let log = try restoreWithSavedAgent(agent) {
            let fake = try listeningSocket(at: agent, as: "nobody")
            // The file now looks like ours; the process behind it is not.
            XCTAssertEqual(chown(agent, 0, 0), 0)
            return fake
        }
        XCTAssertTrue(log.contains("[db] warning: not using its saved ssh-agent socket (\(agent) is served by uid 65534"), log)
    }

    func testReload_keepsEachTunnelsOwnHome() throws {
        // The supervisor starts with the harness's HOME, which has no keys.
        let first = Net.freePort(), second = Net.freePort()
        harness.writeConfig(profile("first", first) + profile("second", second))
        XCTAssertEqual(harness.tunnel(["up", "first"]).status, 0)
        // `second` has no identity line: it finds ~/.ssh/id_ed25519 in the HOME of the `up` that started it.
        let home = harness.dir + "/home2"
        XCTAssertEqual(mkdir(home, 0o700), 0)
        XCTAssertEqual(mkdir(home + "/.ssh", 0o700), 0)
        write(read(server.userKey), to: home + "/.ssh/id_ed25519", mode: 0o600)
        let withoutIdentity = { (extra: String) in
            self.profile("first", first) + self.profile("second", second, extra: extra)
                .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("identity =") }.joined(separator: "\n")
        }
        harness.writeConfig(withoutIdentity(""))
        let up = harness.tunnel(["up", "second"], env: ["HOME": home])
        XCTAssertEqual(up.status, 0, up.output)
        harness.writeConfig(withoutIdentity("hold_timeout = 11\n"))
        let reload = harness.tunnel(["reload"])
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stdout.contains("second: restarted"), reload.stdout)
        XCTAssertEqual(harness.listed("second")?.state, "up", harness.supervisorLog)
        XCTAssertTrue(Self.echoes(second))
    }
}
