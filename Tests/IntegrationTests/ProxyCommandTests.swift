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

    func testCheck_goesThroughTheProxyCommand() {
        harness.writeConfig(profile(Net.freePort(), proxy: sshW))
        let check = harness.tunnel(["check", "db"])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertTrue(check.stdout.contains("through the proxy command `/usr/bin/ssh -F /dev/null"), check.stdout)
        XCTAssertTrue(check.stdout.contains("-W 127.0.0.1:\(server.port)"), "tokens expanded: \(check.stdout)")
    }
}
