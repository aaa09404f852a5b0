import Foundation
import XCTest

/// Every row of the engine's bad-input table: a one-line error naming the
/// file:line or the argument, a non-zero exit, no hang, nothing left bound.
final class BadInputTests: XCTestCase {
    var harness: TunnelHarness!

    override func setUp() { harness = TunnelHarness() }
    // A test that went through the supervisor leaves none running behind it.
    override func tearDown() { harness?.stopSupervisor() }

    /// Runs `tunnel up NAME --foreground`; asserts a failure with one error line.
    /// "No hang": runCommand fails the test if it has not exited after 30 s.
    @discardableResult
    private func expectError(_ name: String = "db", contains needles: [String],
                             file: StaticString = #filePath, line: UInt = #line) -> String {
        let result = harness.tunnel(["up", name, "--foreground"], timeout: 30, file: file, line: line)
        XCTAssertNotEqual(result.status, 0, result.output, file: file, line: line)
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("tunnel:") }
        XCTAssertEqual(errors.count, 1, "expected one error line: \(result.stderr)", file: file, line: line)
        for needle in needles {
            XCTAssertTrue(result.stderr.contains(needle), "missing \"\(needle)\" in: \(result.stderr)", file: file, line: line)
        }
        return result.stderr
    }

    private func profile(host: String = "127.0.0.1", port: UInt16 = 22, forward: String = "\"15433:localhost:5432\"", extra: String = "") -> String {
        """
        [tunnels.db]
        host = "\(host)"
        port = \(port)
        forward = \(forward)
        known_hosts = "\(harness.knownHosts)"
        \(extra)

        [tunnels.cache]
        host = "127.0.0.1"
        forward = "16379:localhost:6379"
        """
    }

    func testUnknownProfile_namesTheProfilesThatExist() {
        harness.writeConfig(profile())
        expectError("nosuch", contains: ["nosuch", "db", "cache"])
    }

    func testTOMLSyntaxError_givesFileLineColumn() {
        harness.writeConfig("[tunnels.db]\nhost = \"x\"\nforward = [\"1:a:2\"\nport = 22\n")
        expectError(contains: ["\(harness.configPath):"])
        let out = harness.tunnel(["up", "db", "--foreground"]).stderr
        XCTAssertNotNil(out.range(of: #"tunnels\.toml:\d+:\d+"#, options: .regularExpression), out)
    }

    func testWrongType_givesFileLineColumnAndKey() {
        harness.writeConfig("[tunnels.db]\nhost = \"10.0.0.1\"\nport = \"abc\"\nforward = \"1:a:2\"\n")
        expectError(contains: ["\(harness.configPath):3:", "port", "integer"])
    }

    func testMissingHost_and_missingForward_areNamed() {
        harness.writeConfig("[tunnels.db]\nforward = \"1:a:2\"\n")
        expectError(contains: ["\(harness.configPath):1:", "host"])
        harness.writeConfig("[tunnels.db]\nhost = \"10.0.0.1\"\n")
        expectError(contains: ["\(harness.configPath):1:", "no forward: the profile writes no forward, dynamic or remote, and ssh_config has no LocalForward, DynamicForward or RemoteForward for 10.0.0.1"])
        harness.writeConfig("[tunnels.db]\nhost = \"10.0.0.1\"\nssh_config = \"none\"\n")
        expectError(contains: ["\(harness.configPath):1:", "missing required key \"forward\""])
    }

    func testUnknownKey_isNamedWithASuggestion() {
        harness.writeConfig("[tunnels.db]\nhots = \"10.0.0.1\"\nhost = \"10.0.0.1\"\nforward = \"1:a:2\"\n")
        expectError(contains: ["\(harness.configPath):2:", "hots", "host"])
    }

    func testBadForwardSpecs_nameTheSpecAndWhatIsWrong() {
        let cases: [(String, String)] = [
            ("5433:localhost:0", "remote port"),
            ("5433:localhost:65536", "65536"),
            ("abc:localhost:5432", "abc"),
            ("5433:localhost", "5433:localhost"),
            ("70000:localhost:5432", "70000"),
        ]
        for (spec, needle) in cases {
            harness.writeConfig(profile(forward: "\"\(spec)\""))
            expectError(contains: [spec, needle, "\(harness.configPath):"])
        }
    }

    func testHostThatDoesNotResolve_saysSo() {
        harness.writeConfig(profile(host: "nonexistent.invalid"))
        expectError(contains: ["nonexistent.invalid", "does not resolve"])
    }

    func testHostThatIsAnSSHConfigAlias_saysWhatTheAliasStandsFor() throws {
        try FileManager.default.createDirectory(atPath: harness.dir + "/.ssh", withIntermediateDirectories: true)
        write("Host *\n  ServerAliveInterval 30\nHost web bastion.invalid\n  HostName 10.0.1.50\n  User rahul\n  Port 2222\n  IdentityFile ~/.ssh/id_work\n", to: harness.dir + "/.ssh/config")
        harness.writeConfig(profile(host: "bastion.invalid"))
        expectError(contains: ["bastion.invalid", "does not resolve", "\"bastion.invalid\" is a Host alias in ~/.ssh/config:3 (HostName 10.0.1.50, User rahul, Port 2222, IdentityFile ~/.ssh/id_work)",
                               "in the profile, set host = \"10.0.1.50\", user = \"rahul\", port = 2222, identity = \"~/.ssh/id_work\""])
    }

    func testHostThatRefuses_saysSoWithTheAddress() {
        let closed = Net.freePort()
        harness.writeConfig(profile(port: closed))
        expectError(contains: ["connection refused", "127.0.0.1:\(closed)"])
    }

    func testHostThatTimesOut_saysSoWithTheAddress() {
        let hole = BlackHole()
        defer { hole.close() }
        harness.writeConfig(profile(port: hole.port, extra: "connect_timeout = 2"))
        expectError(contains: ["timed out", "127.0.0.1:\(hole.port)", "2 s"])
    }

    func testServerThatIsNotSSH_timesOutInTheHandshake() {
        let silent = SilentServer()
        defer { silent.close() }
        harness.writeConfig(profile(port: silent.port, extra: "connect_timeout = 2"))
        expectError(contains: ["handshake", "timed out", "127.0.0.1:\(silent.port)"])
    }

    /// A server that says hello and hangs up (sshd's MaxStartups, an access
    /// rule) is not blamed on algorithms, and a protocol-1 one is named.
    func testServerThatHangsUpAfterItsIdentification_orSpeaksProtocol1_isNamedAsSuch() throws {
        for (banner, expected) in [("SSH-2.0-OpenSSH_9.2p1 Debian-2", "sent its identification (\"SSH-2.0-OpenSSH_9.2p1 Debian-2\") and then ended the connection"),
                                   ("SSH-1.5-OldServer", "speaks only SSH protocol 1 (\"SSH-1.5-OldServer\")")] {
            let port = Net.freePort()
            let server = try Background("/usr/bin/python3", ["-c", """
                import socket, sys, time
                s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
                while True:
                    c, _ = s.accept(); c.sendall(sys.argv[2].encode() + b"\\r\\n"); time.sleep(0.2); c.close()
                """, "\(port)", banner], logPath: harness.dir + "/hangup.log")
            defer { server.stop() }
            XCTAssertTrue(eventually(timeout: 10) { Net.isListening(port) }, read(harness.dir + "/hangup.log"))
            harness.writeConfig(profile(port: port, extra: "connect_timeout = 5"))
            let check = harness.tunnel(["check", "db"], timeout: 30)
            XCTAssertNotEqual(check.status, 0)
            XCTAssertTrue(check.stdout.contains(expected) && !check.stdout.contains("no common algorithms"), check.stdout)
        }
    }

    /// A server that sends text and never an SSH identification line (libssh2
    /// 1.10 would skip its lines for ever), and one that answers in HTTP.
    func testServerFloodingTextOrSpeakingHTTP_failsAtOnceSayingItIsNotSSH_andTheSupervisorStaysResponsive() throws {
        let port = Net.freePort()
        let flood = try Background("/usr/bin/python3", ["-c", """
            import socket, sys, threading
            s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
            def serve(c):
                try:
                    while True: c.sendall(b"junk line\\r\\n" * 4096)
                except OSError: pass
            while True:
                c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
            """, "\(port)"], logPath: harness.dir + "/flood.log")
        defer { flood.stop() }
        XCTAssertTrue(eventually(timeout: 10) { Net.isListening(port) }, read(harness.dir + "/flood.log"))
        harness.writeConfig(profile(port: port, extra: "connect_timeout = 20"))
        expectError(contains: ["127.0.0.1:\(port) sent more than 64 KiB without an SSH identification line"])
        // `check` puts it on the handshake, before any host key.
        let check = harness.tunnel(["check", "db"], timeout: 30)
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.stdout.contains("[FAIL] handshake") && check.stdout.contains("without an SSH identification line"), check.stdout)
        XCTAssertTrue(check.stdout.contains("[skip] host key"), check.stdout)
        // The same through the supervisor: `up` fails, and the supervisor still answers.
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertNotEqual(up.status, 0, up.output)
        XCTAssertTrue(up.stderr.contains("without an SSH identification line"), up.stderr)
        XCTAssertEqual(harness.tunnel(["ls"], timeout: 10).status, 0)
        XCTAssertEqual(harness.tunnel(["down", "--all"], timeout: 10).status, 0)

        let webPort = Net.freePort()
        let web = try Background("/usr/bin/python3", ["-m", "http.server", "--bind", "127.0.0.1", "\(webPort)"], logPath: harness.dir + "/web.log")
        defer { web.stop() }
        XCTAssertTrue(eventually(timeout: 10) { Net.isListening(webPort) })
        harness.writeConfig(profile(port: webPort, extra: "connect_timeout = 20"))
        // Its first line (HTTP/0.9 for a one-word request: no status line), not the last of its page.
        expectError(contains: ["the server at 127.0.0.1:\(webPort) is not an SSH server: it sent \"<!DOCTYPE HTML>\" and no SSH identification line"])

        // An HTTP proxy's status line is what names it, not the header that ends its reply.
        let proxyPort = Net.freePort()
        let reply = """
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", PORT)); s.listen()
        while True:
            c, _ = s.accept(); c.recv(100)
            c.sendall(b"HTTP/1.1 400 Bad Request\\r\\nconnection: close\\r\\ncontent-length: 0\\r\\ndate: Fri, 04 Dec 2026\\r\\n\\r\\n"); c.close()
        """
        let proxy = try Background("/usr/bin/python3", ["-c", reply.replacingOccurrences(of: "PORT", with: "\(proxyPort)")], logPath: harness.dir + "/proxy.log")
        defer { proxy.stop() }
        XCTAssertTrue(eventually(timeout: 10) { Net.isListening(proxyPort) }, proxy.log)
        harness.writeConfig(profile(port: proxyPort, extra: "connect_timeout = 20"))
        expectError(contains: ["the server at 127.0.0.1:\(proxyPort) is not an SSH server: it sent \"HTTP/1.1 400 Bad Request\" and no SSH identification line"])
    }

    func testUpOfAnAlias_whoseSSHConfigIsBroken_quotesSSHsLine() {
        let sshConfig = harness.dir + "/ssh_config"
        write("Host al\n  LocalForward 17301 localhost:22\n  Bogus yes\n", to: sshConfig, mode: 0o600)
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n")
        let up = harness.tunnel(["up", "al"], timeout: 30)
        XCTAssertNotEqual(up.status, 0)
        XCTAssertEqual(up.stderr, "tunnel: no profile named al in \(harness.configPath), and ssh_config cannot be read for it: ssh_config: \(sshConfig): line 3: Bad configuration option: bogus (`ssh -F \(sshConfig) -G al` failed)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.pid"), "no supervisor was started")
        // check says the same, at its profile step.
        let check = harness.tunnel(["check", "al"], timeout: 30)
        XCTAssertEqual(check.status, 1, check.output)
        XCTAssertTrue(check.stdout.contains("[FAIL] profile  no profile named al in \(harness.configPath), and ssh_config cannot be read for it: ssh_config: \(sshConfig): line 3: Bad configuration option: bogus"), check.stdout)
    }

    /// A Host of ssh_config without forward lines is what the user meant:
    /// say so, and how to give the forward, rather than "no profile named".
    func testUpAndCheckOfAnAliasWithoutForwards_sayItIsAHostAndHowToForward() {
        let sshConfig = harness.dir + "/ssh_config"
        write("Host first\n  Port 2222\nHost jumpbox other\n  HostName 192.0.2.1\n", to: sshConfig, mode: 0o600)
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n" + profile())
        let up = harness.tunnel(["up", "jumpbox"], timeout: 30)
        XCTAssertEqual(up.status, 1, up.output)
        XCTAssertEqual(up.stderr, "tunnel: jumpbox is a Host in ssh_config (\(sshConfig):3) with no LocalForward, DynamicForward or RemoteForward, and no profile: say what to forward: `tunnel up -L PORT:HOST:HOSTPORT jumpbox` (or -D PORT), or add a LocalForward line to that Host block\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.pid"), "no supervisor was started")
        let check = harness.tunnel(["check", "jumpbox"], timeout: 30)
        XCTAssertEqual(check.status, 1, check.output)
        XCTAssertTrue(check.stdout.contains("[FAIL] profile  jumpbox is a Host in ssh_config (\(sshConfig):3)"), check.stdout)
        XCTAssertTrue(check.stdout.contains("fix: say what to forward: `tunnel up -L PORT:HOST:HOSTPORT jumpbox`"), check.stdout)
        // A name ssh_config does not know is still "no profile named".
        XCTAssertTrue(harness.tunnel(["up", "nosuch"], timeout: 30).stderr.contains("no profile named \"nosuch\""))
    }

    func testCommandLineNumbersAndNames_outOfRange_areUsageErrors_notCrashes() {
        harness.writeConfig(profile())
        for args in [["up", "db", "--timeout", "nan"], ["up", "db", "--timeout", "inf"], ["up", "db", "--timeout", "1e308"],
                     ["up", "db", "--timeout=-1"], ["logs", "--lines=-5"], ["ls", "--config", ""], ["ls", "--runtime-dir", ""],
                     ["up", "-L", "1:a:1", "--name", "bad name", "x"], ["up", "-L", "1:a:1", "--name", "", "x"],
                     ["up", "-L", "1:a:1", "--name", "a/b", "x"], ["up", "-L", "1:a:1", "--name", "x;rm", "x"], ["up", "-L", "1:a:1", "--name", "..", "x"],
                     ["up", "-L", "1:a:1", "--name", "rtl\u{202E}txt", "x"], ["up", "-L", "1:a:1", "--name", "daemon", "x"],
                     ["up", "-L", "1:a:1", "-J", "", "x"], ["up", "-L", "1:a:1", "-J", ",", "x"], ["up", "-L", "1:a:1", "-J", "a,,b", "x"],
                     ["up", "-L", "1:a:1", "-i", "", "x"], ["up", "-L", "1:a:1", "-i", "/nonexistent/key", "x"], ["up", "-L", "1:a:1", "-i", "/tmp", "x"]] {
            let result = harness.tunnel(args, timeout: 20)
            XCTAssertEqual(result.status, 64, "\(args): \(result.output)")
            XCTAssertTrue(result.stderr.hasPrefix("Error: "), "\(args): \(result.stderr)")
            XCTAssertFalse(result.stderr.contains("Fatal error"), "\(args): \(result.stderr)")
        }
        // A negative number after a space is the option's value, named as such.
        for (args, expected) in [(["up", "db", "--timeout", "-1"], "--timeout must be a number of seconds"), (["logs", "--lines", "-5"], "--lines")] {
            let result = harness.tunnel(args, timeout: 20)
            XCTAssertEqual(result.status, 64, "\(args): \(result.output)")
            XCTAssertTrue(result.stderr.contains(expected) && !result.stderr.contains("Missing value"), "\(args): \(result.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.pid"), "no supervisor was started")
    }

    func testLocalPortAlreadyInUse_namesTheAddressAndPort() {
        let holder = TestServer(.echo)
        defer { holder.stop() }
        harness.writeConfig(profile(forward: "\"\(holder.port):localhost:5432\""))
        expectError(contains: ["127.0.0.1:\(holder.port)", "already in use"])
    }

    // MARK: - Config files that are not files, or not sane

    /// `tunnel ARGS` exits non-zero with exactly `stderr` and nothing on stdout.
    /// A hang fails too: runCommand kills it after the timeout and fails the test.
    private func expectFailure(_ args: [String], stderr: String, file: StaticString = #filePath, line: UInt = #line) {
        let result = harness.tunnel(args, timeout: 20, file: file, line: line)
        XCTAssertNotEqual(result.status, 0, result.output, file: file, line: line)
        XCTAssertEqual(result.stderr, stderr, file: file, line: line)
        XCTAssertEqual(result.stdout, "", file: file, line: line)
    }

    func testFIFOAsConfig_withNoWriter_isRefusedAtOnce_byConfigCheckAndUp() {
        let fifo = harness.dir + "/fifo.toml"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        expectFailure(["config", "check", "--config", fifo], stderr: "tunnel: \(fifo) is a FIFO, not a regular file\n")
        expectFailure(["up", "db", "--config", fifo], stderr: "tunnel: \(fifo) is a FIFO, not a regular file\n")
        expectFailure(["up", "db", "--foreground", "--config", fifo], stderr: "tunnel: \(fifo) is a FIFO, not a regular file\n")
        expectFailure(["check", "db", "--config", fifo], stderr: "tunnel: \(fifo) is a FIFO, not a regular file\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.pid"), "no supervisor was started")
    }

    func testDevZeroAsConfig_isACharacterDevice_notAnAllocation() {
        expectFailure(["config", "check", "--config", "/dev/zero"], stderr: "tunnel: /dev/zero is a character device, not a regular file\n")
        expectFailure(["up", "db", "--config", "/dev/zero"], stderr: "tunnel: /dev/zero is a character device, not a regular file\n")
    }

    func testDirectoryAsConfig_isNamed() {
        expectFailure(["config", "check", "--config", harness.dir], stderr: "tunnel: \(harness.dir) is a directory, not a regular file\n")
    }

    func testConfigOverOneMiB_isRefusedNamingTheLimit() {
        let big = harness.dir + "/big.toml"
        write("# " + String(repeating: "x", count: 2 << 20) + "\n", to: big)
        expectFailure(["config", "check", "--config", big], stderr: "tunnel: \(big) is too large: more than 1 MiB\n")
        expectFailure(["up", "db", "--config", big], stderr: "tunnel: \(big) is too large: more than 1 MiB\n")
    }

    func testTwentyThousandDeepArraysAndInlineTables_areAPositionedError_notACrash() {
        let nested = "deep = " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "\n"
        let tables = "deep = " + String(repeating: "{a = ", count: 20_000) + String(repeating: "}", count: 20_000) + "\n"
        let tooDeep = "nesting too deep: more than 100 levels of arrays and tables"
        for (text, column) in [(nested, 108), (tables, 508)] {
            harness.writeConfig(text)
            let path = harness.configPath
            expectFailure(["config", "check"], stderr: "\(path):1:\(column): \(tooDeep)\ntunnel: 1 problem in \(path)\n")
            expectFailure(["up", "db"], stderr: "tunnel: db: \(path):1:\(column): \(tooDeep)\n")
        }
    }
}
