import Foundation
import XCTest

/// `proxy_command`: the SSH session runs over a command's stdin and stdout,
/// as with OpenSSH's ProxyCommand (here `ssh -W` through the test sshd).
final class ProxyCommandTests: SSHTestCase {
    private var sshW: String {
        "/usr/bin/ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=\(harness.knownHosts)"
            + " -i \(server.userKey) -p \(server.port) -W %h:%p \(Env.userName)@127.0.0.1"
    }

    private func profile(_ port: UInt16, proxy: String) -> String {
        harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"],
                        extra: "proxy_command = '''\(proxy)'''\n")
    }

    private static func echoes(_ port: UInt16, _ text: String = "through the proxy") -> Bool {
        guard let fd = Net.connect(port, timeout: 10) else { return false }
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        return Net.sendAll(fd, Array(text.utf8)) && Net.readExactly(fd, text.utf8.count) == Array(text.utf8)
    }

    /// The pid of the proxy command of the link that came up last, from the log.
    private var proxyPID: Int32? {
        let lines = harness.supervisorLog.split(separator: "\n").filter { $0.contains("up: ") && $0.contains("via proxy command (pid ") }
        guard let line = lines.last, let start = line.range(of: "(pid ") else { return nil }
        return Int32(line[start.upperBound...].prefix { $0.isNumber })
    }

    func testSSHW_carriesTheTunnel_andDownEndsTheCommand() throws {
        let port = Net.freePort()
        harness.writeConfig(profile(port, proxy: sshW))
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(Self.echoes(port))
        let pid = try XCTUnwrap(proxyPID, harness.supervisorLog)
        XCTAssertEqual(kill(pid, 0), 0, "the proxy command runs while the tunnel is up")
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        XCTAssertTrue(eventually(timeout: 10) { kill(pid, 0) != 0 }, "the proxy command outlived `tunnel down`")
    }

    func testProxyCommandThatExits_failsUpWithItsLastStderrLine() {
        harness.writeConfig(profile(Net.freePort(), proxy: "sh -c 'echo connecting to %h:%p as %r >&2; echo no route to the bastion >&2; exit 3'"))
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("proxy command exited with status 3: no route to the bastion"), up.stderr)
        XCTAssertTrue(harness.supervisorLog.contains("proxy command: connecting to 127.0.0.1:\(server.port) as \(Env.userName)"), harness.supervisorLog)
    }

    func testKilledProxyCommand_isHealed_withTheListenerBound() throws {
        let port = Net.freePort()
        harness.writeConfig(profile(port, proxy: sshW))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let first = try XCTUnwrap(proxyPID)
        XCTAssertEqual(kill(first, SIGKILL), 0)
        XCTAssertTrue(eventually(timeout: 20) { self.harness.listed("db")?.restarts == 1 && self.harness.listed("db")?.state == "up" },
                      "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertTrue(Net.isListening(port))
        XCTAssertNotEqual(try XCTUnwrap(proxyPID), first, "a new proxy command carries the new link")
        XCTAssertTrue(Self.echoes(port))
        XCTAssertTrue(harness.listed("db")?.last_error?.contains("proxy command exited with status 137") == true, "\(harness.list())")
    }

    /// A supervisor killed outright (SIGKILL, the OOM killer) takes its proxy
    /// commands with it. The one here never answers, like a proxy still
    /// connecting to a bastion that drops packets: left alone it would run
    /// for its own timeout (10 minutes here) after the supervisor was gone.
    func testSupervisorKilledWhileItsProxyCommandConnects_theCommandEndsToo() throws {
        // A connect timeout far off, so the supervisor does not end the command itself first.
        let profile = harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"], extra: "proxy_command = 'sleep 600'\n")
        XCTAssertTrue(profile.contains("connect_timeout = 5\n"))
        harness.writeConfig(profile.replacingOccurrences(of: "connect_timeout = 5\n", with: "connect_timeout = 120\n"))
        let up = try Background(Env.tunnelBinary, ["up", "db"], env: harness.environment, logPath: harness.dir + "/up-killed.log")
        defer { up.stop() }
        var supervisor: Int32?, proxy: Int32?
        XCTAssertTrue(eventually(timeout: 20) {
            supervisor = self.harness.supervisorPID
            proxy = supervisor.flatMap { Self.child(of: $0, running: "sleep") }
            return proxy != nil
        }, "no proxy command started: \(up.log)\n\(harness.supervisorLog)")
        let (supervisorPID, proxyPID) = (try XCTUnwrap(supervisor), try XCTUnwrap(proxy))
        XCTAssertEqual(kill(supervisorPID, SIGKILL), 0)
        XCTAssertTrue(eventually(timeout: 10) { !Self.runs(supervisorPID) })
        XCTAssertTrue(eventually(timeout: 10) { !Self.runs(proxyPID) }, "the proxy command outlived the supervisor")
    }

    /// A running child of `parent` whose command is `name`.
    private static func child(of parent: Int32, running name: String) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.range(of: ") ", options: .backwards) else { continue }
            let fields = stat[close.upperBound...].split(separator: " ")
            if stat[stat.index(after: open)..<close.lowerBound] == name, fields.count > 1, Int32(fields[1]) == parent, runs(pid) { return pid }
        }
        return nil
    }

    /// Alive and not a zombie (an orphan's exit is reaped by whoever inherits it).
    private static func runs(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.range(of: ") ", options: .backwards) else { return false }
        return stat[end.upperBound...].first != "Z"
    }

    func testCheck_goesThroughTheProxyCommand() {
        harness.writeConfig(profile(Net.freePort(), proxy: sshW))
        let check = harness.tunnel(["check", "db"])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.stdout.contains("through the proxy command `/usr/bin/ssh -F /dev/null"), check.stdout)
        XCTAssertTrue(check.stdout.contains("-W 127.0.0.1:\(server.port)"), "tokens expanded: \(check.stdout)")
    }
}
