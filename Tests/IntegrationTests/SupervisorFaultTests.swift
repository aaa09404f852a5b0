import Foundation
import XCTest

/// The supervisor's bad-input and fault table.
final class SupervisorFaultTests: SSHTestCase {

    private func profile(_ name: String, _ port: UInt16, extra: String = "") -> String {
        harness.profile(name, server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"], extra: extra)
    }

    func testUpOfAnUnknownOrBrokenProfile_failsWithTheReason_andLeavesOtherTunnelsAlone() throws {
        let good = Net.freePort()
        harness.writeConfig(profile("good", good) + "[tunnels.broken]\nhost = \"127.0.0.1\"\nforward = \"99999:a:1\"\n")
        XCTAssertEqual(harness.tunnel(["up", "good"]).status, 0)
        let unknown = harness.tunnel(["up", "nosuch"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("nosuch") && unknown.stderr.contains("good"), unknown.stderr)
        let broken = harness.tunnel(["up", "broken"])
        XCTAssertNotEqual(broken.status, 0)
        XCTAssertTrue(broken.stderr.contains("99999") && broken.stderr.contains("tunnels.toml:"), broken.stderr)
        XCTAssertEqual(harness.list().map(\.name), ["good"])
        XCTAssertEqual(harness.listed("good")?.state, "up")
    }

    /// A cgroup control file takes one write in place (no temporary file and rename).
    private func writeControl(_ text: String, to path: String) {
        let fd = open(path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0, "cannot open \(path)")
        defer { close(fd) }
        XCTAssertEqual(Glibc.write(fd, text, text.utf8.count), text.utf8.count, "cannot write \(text) to \(path)")
    }

    /// A pids cgroup of the test's own (v1 `pids` hierarchy, or the v2
    /// unified one): the supervisor in it can start no thread beyond `pids.max`.
    private func pidsCgroup() throws -> String {
        let v1 = "/sys/fs/cgroup/pids"
        var parent = v1
        if !FileManager.default.fileExists(atPath: v1 + "/cgroup.procs") {
            parent = "/sys/fs/cgroup"
            if !read(parent + "/cgroup.controllers").contains("pids") { parent = "/sys/fs/cgroup/unified" }
            writeControl("+pids", to: parent + "/cgroup.subtree_control")
        }
        let group = parent + "/tunnel-test-\(getpid())-\(Net.freePort())"
        XCTAssertEqual(mkdir(group, 0o755), 0, "cannot make a pids cgroup under \(parent)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: group + "/pids.max"), "no pids controller at \(group)")
        return group
    }

    /// With no thread to be had (the system's limit), a start fails naming
    /// pthread_create and the supervisor serves on; once threads are back, the same `up` works.
    func testNoThreadLeft_failsTheStartWithTheReason_andTheSupervisorServesOn() throws {
        let port = Net.freePort()
        harness.writeConfig(profile("db", port))
        let group = try pidsCgroup()
        let daemon = try Background("/bin/sh", ["-c", "echo $$ > \(group)/cgroup.procs && exec \(Env.tunnelBinary) daemon"],
                                    env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer {
            daemon.signal(SIGTERM)
            _ = daemon.wait(timeout: 5)
            rmdir(group)
        }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.supervisorPID != nil && self.harness.tunnel(["ls"]).status == 0 }, daemon.log)
        let pid = try XCTUnwrap(harness.supervisorPID)
        XCTAssertTrue(read(group + "/cgroup.procs").contains("\(pid)"), "the supervisor is in the cgroup")
        writeControl(read(group + "/pids.current").trimmingCharacters(in: .whitespacesAndNewlines), to: group + "/pids.max")

        let starved = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(starved.status, 0, starved.output)
        XCTAssertTrue(starved.stderr.contains("pthread_create(") && starved.stderr.contains("Resource temporarily unavailable"), starved.output)
        XCTAssertEqual(harness.tunnel(["ls"]).status, 0, "the supervisor serves on")
        XCTAssertTrue(daemon.isRunning, daemon.log)

        writeControl("max", to: group + "/pids.max")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        let fd = try XCTUnwrap(Net.connect(port, timeout: 10))
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        XCTAssertTrue(Net.sendAll(fd, Array("ping".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 4), Array("ping".utf8))
    }

    func testUpTwice_saysAlreadyUp_andSucceeds() {
        harness.writeConfig(profile("db", Net.freePort()))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let again = harness.tunnel(["up", "db"])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.stdout.contains("already up"), again.stdout)
        XCTAssertEqual(harness.listed("db")?.restarts, 0)
        // A changed profile is not applied by `up`: it says so and points at reload.
        harness.writeConfig(profile("db", Net.freePort()))
        let changed = harness.tunnel(["up", "db"])
        XCTAssertEqual(changed.status, 0, changed.output)
        XCTAssertTrue(changed.stderr.contains("tunnel reload"), changed.output)
    }

    func testTwoProfilesClaimingTheSameLocalAddress_theSecondFailsNamingBoth_theFirstKeepsRunning() throws {
        let port = Net.freePort()
        harness.writeConfig(profile("first", port))
        XCTAssertEqual(harness.tunnel(["up", "first"]).status, 0)
        // Same address from another profiles file (one file would be rejected when read).
        let other = harness.dir + "/other.toml"
        write(profile("second", port), to: other)
        let second = harness.tunnel(["up", "second", "--config", other])
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("first") && second.stderr.contains("second") && second.stderr.contains("127.0.0.1:\(port)"), second.stderr)
        XCTAssertEqual(harness.list().map(\.name), ["first"])
        guard let fd = Net.connect(port) else { return XCTFail("connect") }
        defer { close(fd) }
        XCTAssertTrue(Net.sendAll(fd, Array("x".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 1), Array("x".utf8))
    }

    /// A profile that is down can be taken down again; a name that no
    /// profile has is a typo and fails, with or without a supervisor.
    func testDownOfATunnelThatIsNotUp_saysSo_andSucceeds_butAnUnknownNameFails() {
        harness.writeConfig(profile("db", Net.freePort()))
        let none = harness.tunnel(["down", "db"])
        XCTAssertEqual(none.status, 0)
        XCTAssertTrue(none.stdout.contains("not up"), none.stdout)
        let unknownName = "tunnel: nosuch: no such tunnel: it is not up and \(harness.configPath) has no profile of that name\n"
        let typo = harness.tunnel(["down", "db", "nosuch"])
        XCTAssertEqual(typo.status, 1, typo.output)
        XCTAssertEqual(typo.stdout, "db: not up (no supervisor is running)\n")
        XCTAssertEqual(typo.stderr, unknownName)
        // `up` with a typo among the names starts none of them.
        let upTypo = harness.tunnel(["up", "db", "nosuch"])
        XCTAssertEqual(upTypo.status, 1, upTypo.output)
        XCTAssertTrue(upTypo.stderr.contains("tunnel: nosuch: no profile named \"nosuch\"") && upTypo.stderr.hasSuffix("tunnel: nothing was started\n"), upTypo.stderr)
        XCTAssertNil(harness.supervisorPID, "no supervisor started for it")
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let other = harness.tunnel(["down", "nosuch"])
        XCTAssertEqual(other.status, 1, other.output)
        XCTAssertEqual(other.stdout, "")
        XCTAssertEqual(other.stderr, unknownName)
        XCTAssertEqual(harness.list().map(\.name), ["db"])
        XCTAssertEqual(harness.tunnel(["down", "db"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines), "db: down")
        XCTAssertTrue(harness.list().isEmpty)
    }

    func testANameGivenTwice_getsOneAnswer_insteadOfLeavingTheRequestWaiting() {
        let port = Net.freePort()
        harness.writeConfig(profile("db", port))
        let up = harness.tunnel(["up", "db", "db"], timeout: 20)
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertEqual(up.stdout.components(separatedBy: "db: up").count - 1, 1, up.stdout)
        // The supervisor once waited for a second outcome for the same name: the CLI timed out.
        let down = harness.tunnel(["down", "db", "db"], timeout: 20)
        XCTAssertEqual(down.status, 0, down.output)
        XCTAssertEqual(down.stdout, "db: down\n")
        XCTAssertFalse(Net.isListening(port))
    }

    func testDownAll_closesEveryListener() {
        let a = Net.freePort(), b = Net.freePort()
        harness.writeConfig(profile("a", a) + profile("b", b))
        XCTAssertEqual(harness.tunnel(["up", "a", "b"]).status, 0)
        XCTAssertEqual(harness.tunnel(["down", "--all"]).status, 0)
        XCTAssertFalse(Net.isListening(a) || Net.isListening(b))
        XCTAssertTrue(harness.list().isEmpty)
    }

    private func modeOf(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_mode & 0o7777) : nil
    }

    func testUnusableRuntimeDirectory_givesAClearMessage() {
        harness.writeConfig(profile("db", Net.freePort()))
        write("not a directory", to: harness.dir + "/afile")
        let underFile = harness.tunnel(["up", "db", "--runtime-dir", harness.dir + "/afile/run"])
        XCTAssertNotEqual(underFile.status, 0)
        XCTAssertTrue(underFile.stderr.contains("runtime directory") && underFile.stderr.contains("afile/run"), underFile.stderr)
        let foreign = harness.dir + "/foreign"
        mkdir(foreign, 0o700)
        chown(foreign, 65534, 65534)
        let listed = harness.tunnel(["ls", "--runtime-dir", harness.dir + "/afile"])
        XCTAssertEqual(listed.status, 1, listed.output)
        XCTAssertEqual(listed.stderr, "tunnel: runtime directory \(harness.dir)/afile is a regular file, not a directory\n")
        let notOurs = harness.tunnel(["up", "db", "--runtime-dir", foreign])
        XCTAssertNotEqual(notOurs.status, 0)
        XCTAssertTrue(notOurs.stderr.contains("belongs to uid 65534"), notOurs.stderr)

        // Open to others and shared (like /tmp), or holding other files: refused, its mode untouched.
        let shared = harness.dir + "/shared", project = harness.dir + "/project"
        mkdir(shared, 0o700); chmod(shared, 0o1777)
        mkdir(project, 0o755)
        write("x", to: project + "/notes.txt")
        for (dir, mode, why) in [(shared, 0o1777, "is shared (sticky)"), (project, 0o755, "holds files that are not tunnel's (notes.txt)")] {
            let refused = harness.tunnel(["up", "db", "--runtime-dir", dir])
            XCTAssertEqual(refused.status, 1, refused.output)
            XCTAssertEqual(refused.stderr, "tunnel: runtime directory \(dir) is accessible to others (mode \(String(mode, radix: 8))) and \(why), so tunnel will not make it private; name a directory of its own (it is created with mode 700) with --runtime-dir or $TUNNEL_RUNTIME_DIR\n")
            XCTAssertEqual(modeOf(dir), mode, "left as it was")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/control.sock"))
        }
        // Open, but tunnel's alone (a leftover of its own): made private, and used.
        let leftover = harness.dir + "/leftover"
        mkdir(leftover, 0o755)
        write("{}", to: leftover + "/state.json")
        XCTAssertEqual(harness.tunnel(["up", "db", "--runtime-dir", leftover]).status, 0)
        XCTAssertEqual(modeOf(leftover), 0o700)
        XCTAssertEqual(harness.tunnel(["down", "--all", "--runtime-dir", leftover]).status, 0)
        // Its supervisor is not the harness's: stopped here.
        XCTAssertEqual(harness.tunnel(["daemon", "stop", "--runtime-dir", leftover]).status, 0)
    }

    func testStaleSocketAndPidFileFromAKilledSupervisor_areReplaced() throws {
        harness.writeConfig(profile("db", Net.freePort()))
        mkdir(harness.runtimeDir, 0o700)
        // A socket file nobody listens on, and the pid of a process that is gone.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = harness.runtimeDir + "/control.sock"
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: Array(path.utf8) + [0]) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        write("999999\n", to: harness.runtimeDir + "/supervisor.pid")
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertNotEqual(harness.supervisorPID, 999999)
        XCTAssertEqual(harness.listed("db")?.state, "up")
    }

    func testSupervisorKilledWithSIGKILL_theNextUpStartsAFreshOne_andSavedTunnelsComeBack() throws {
        let a = Net.freePort(), b = Net.freePort()
        harness.writeConfig(profile("a", a) + profile("b", b))
        XCTAssertEqual(harness.tunnel(["up", "a", "b"]).status, 0)
        let old = try XCTUnwrap(harness.supervisorPID)
        kill(old, SIGKILL)
        XCTAssertTrue(eventually(timeout: 5) { kill(old, 0) != 0 && !Net.isListening(a) })
        let up = harness.tunnel(["up", "a"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertNotEqual(harness.supervisorPID, old)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.list().filter { $0.state == "up" }.map(\.name) == ["a", "b"] },
                      "b was not restored: \(harness.supervisorLog)")
        XCTAssertTrue(Net.isListening(b))
    }

    /// A supervisor that dies without its shutdown (SIGKILL, the OOM killer,
    /// a crash): the kernel closes its sockets, and a stream it cut is reset,
    /// never a clean EOF; one whose target had ended keeps its bytes and end.
    func testSupervisorKilled_resetsTheStreamsItCuts_butNotOneWhoseTargetEnded() throws {
        try assertStopResetsOnlyTheCutStream {
            let pid = try XCTUnwrap(harness.supervisorPID)
            kill(pid, SIGKILL)
            XCTAssertTrue(eventually(timeout: 5) { kill(pid, 0) != 0 })
        }
    }

    func testDaemonStop_thenTheNextStart_restoresTheTunnels() throws {
        let a = Net.freePort()
        harness.writeConfig(profile("a", a))
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        let stop = harness.tunnel(["daemon", "stop"])
        XCTAssertEqual(stop.status, 0, stop.output)
        XCTAssertFalse(Net.isListening(a))
        XCTAssertTrue(harness.list().isEmpty, "no supervisor: ls is empty, not an error")
        // `tunnel daemon` in the foreground (as systemd runs it) brings `a` back.
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer { daemon.signal(SIGTERM); _ = daemon.wait(timeout: 5) }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("a")?.state == "up" }, daemon.log)
        XCTAssertTrue(daemon.log.contains("restoring a"), daemon.log)
    }

    func testSIGTERM_drainsAndExitsZero_andASecondDaemonRefusesToStart() throws {
        let a = Net.freePort()
        harness.writeConfig(profile("a", a))
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: self.harness.runtimeDir + "/control.sock") })
        let second = harness.tunnel(["daemon"], timeout: 10)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("already running"), second.stderr)
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        let open = Net.connect(a)
        XCTAssertNotNil(open)
        // An open connection must not hold the exit up (wait's deadline only stops a hang).
        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.wait(timeout: 5), 0, daemon.log)
        XCTAssertFalse(Net.isListening(a))
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/control.sock"))
        if let open { close(open) }
    }

    func testHoldTimeout_clientsWaitingForADownLink_areClosedAfterIt() throws {
        let port = Net.freePort()
        harness.writeConfig(profile("db", port, extra: "hold_timeout = 2"))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        server.stop()
        XCTAssertTrue(eventually(timeout: 5) { self.harness.listed("db")?.state == "reconnecting" })
        guard let fd = Net.connect(port, timeout: 10) else { return XCTFail("the listener must still accept into its queue") }
        defer { close(fd) }
        // Closed by the tunnel (a clean EOF), not left hanging until our 10 s
        // read timeout. How long it was held is the benchmark's to measure;
        // that a held client is served once the link is back is in SessionsTests.
        let (bytes, cleanEOF) = Net.readToEOF(fd)
        XCTAssertEqual(bytes.count, 0)
        XCTAssertTrue(cleanEOF, "the held client was not closed")
        XCTAssertTrue(Net.isListening(port))
    }

    func testLogs_filtersByTunnel() throws {
        harness.writeConfig(profile("a", Net.freePort()) + profile("b", Net.freePort()))
        XCTAssertEqual(harness.tunnel(["up", "a", "b"]).status, 0)
        let logs = harness.tunnel(["logs", "a"])
        XCTAssertEqual(logs.status, 0)
        XCTAssertTrue(logs.stdout.contains("[a]"), logs.stdout)
        XCTAssertFalse(logs.stdout.contains("[b]"), logs.stdout)
        XCTAssertTrue(harness.tunnel(["logs"]).stdout.contains("[b]"))
        // A name with no lines (a typo) says so instead of printing nothing.
        let none = harness.tunnel(["logs", "nosuch"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertEqual(none.stderr, "tunnel: no lines for nosuch in \(harness.runtimeDir)/supervisor.log\n")
        // Following such a name waits for its lines, and says so.
        let waiting = try Background(Env.tunnelBinary, ["logs", "nosuch", "-f"], env: harness.environment, logPath: harness.dir + "/waiting.log")
        defer { waiting.stop() }
        XCTAssertTrue(eventually(timeout: 5) { waiting.log.contains("(no lines for nosuch yet; waiting for them)") }, waiting.log)
        XCTAssertTrue(waiting.isRunning, waiting.log)
        // -f follows new lines, still filtered.
        let follow = try Background(Env.tunnelBinary, ["logs", "b", "-f", "--lines", "0"], env: harness.environment, logPath: harness.dir + "/follow.log")
        defer { follow.stop() }
        usleep(300_000)
        XCTAssertEqual(harness.tunnel(["down", "a", "b"]).status, 0)
        XCTAssertTrue(eventually(timeout: 5) { follow.log.contains("[b] info: down") }, follow.log)
        XCTAssertFalse(follow.log.contains("[a]"), follow.log)
    }

    func testLogsFollow_beforeAnySupervisorRan_saysWhatItWaitsFor_thenPrintsTheLines() throws {
        harness.writeConfig(profile("a", Net.freePort()))
        let follow = try Background(Env.tunnelBinary, ["logs", "-f"], env: harness.environment, logPath: harness.dir + "/follow.log")
        defer { follow.stop() }
        let waiting = "(no log at \(harness.runtimeDir)/supervisor.log yet; waiting for a supervisor to write it)"
        XCTAssertTrue(eventually(timeout: 5) { follow.log.contains(waiting) }, follow.log)
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        XCTAssertTrue(eventually(timeout: 5) { follow.log.contains("[a] info:") }, follow.log)
    }

    /// A supervisor that does not answer (stopped) is not reported as a
    /// tunnel still connecting: `up` says the supervisor is silent, and
    /// that the request may still be carried out, as it is once it resumes.
    func testStoppedSupervisor_upSaysItDoesNotAnswer_notThatTheTunnelIsConnecting() throws {
        let first = Net.freePort(), second = Net.freePort()
        harness.writeConfig(profile("a", first) + profile("b", second))
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        kill(pid, SIGSTOP)
        let up = harness.tunnel(["up", "b", "--timeout", "2"], timeout: 30)
        kill(pid, SIGCONT)
        XCTAssertEqual(up.status, 1, up.output)
        XCTAssertEqual(up.stderr, "tunnel: no reply from the supervisor (pid \(pid)) within 2 s; it has the request and may still carry it out, but it does not answer now either (stopped? overloaded?)\n")
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("b")?.state == "up" }, "carried out once resumed: \(harness.list())")
    }

    func testCorruptSavedState_isLoggedAndReplaced_notSilentlyDropped() throws {
        let port = Net.freePort()
        harness.writeConfig(profile("a", port))
        mkdir(harness.runtimeDir, 0o700)
        write("{not json", to: harness.runtimeDir + "/state.json", mode: 0o600)
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        XCTAssertTrue(harness.supervisorLog.contains("no tunnels restored: \(harness.runtimeDir)/state.json is not a list of saved tunnels"), harness.supervisorLog)
        XCTAssertTrue(read(harness.runtimeDir + "/state.json").contains("\"name\":\"a\""), "rewritten with what is up now")
    }

    func testProtocolVersionMismatch_isNamedOnBothSides() throws {
        harness.writeConfig(profile("a", Net.freePort()))
        XCTAssertEqual(harness.tunnel(["up", "a"]).status, 0)
        // A client from the future, to this supervisor:
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
        s.sendall(b'{"v":99,"command":"list"}\\n')
        print(s.makefile().readline())
        """
        let reply = runCommand("/usr/bin/python3", ["-c", script, harness.runtimeDir + "/control.sock"])
        XCTAssertTrue(reply.stdout.contains("v99") && reply.stdout.contains("v1"), reply.output)
        // A supervisor from the future, to this CLI:
        harness.stopSupervisor()
        let fake = """
        import socket, sys, os
        p = sys.argv[1]
        s = socket.socket(socket.AF_UNIX); s.bind(p); s.listen(1)
        c, _ = s.accept(); c.makefile().readline()
        c.sendall(b'{"v":2,"ok":true,"supervisorVersion":"9.9.9"}\\n'); c.close()
        """
        let server = try Background("/usr/bin/python3", ["-c", fake, harness.runtimeDir + "/control.sock"], logPath: harness.dir + "/fake.log")
        defer { server.stop() }
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: self.harness.runtimeDir + "/control.sock") })
        let ls = harness.tunnel(["ls"])
        XCTAssertNotEqual(ls.status, 0)
        XCTAssertTrue(ls.stderr.contains("v2") && ls.stderr.contains("9.9.9"), ls.stderr)
    }
}
