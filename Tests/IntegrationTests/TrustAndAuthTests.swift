import Foundation
import XCTest

/// Host-key trust and authentication against a real sshd.
final class TrustAndAuthTests: XCTestCase {
    var server: SSHServer!
    var harness: TunnelHarness!
    var local: UInt16 = 0

    override func setUpWithError() throws {
        server = try SSHServer()
        harness = TunnelHarness()
        local = Net.freePort()
    }

    override func tearDown() { server?.stop() }

    private func config(extra: String = "", identity: String? = nil) {
        var block = harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:9"], extra: extra)
        if let identity { block = block.replacingOccurrences(of: "identity = \"\(server.userKey)\"", with: "identity = \"\(identity)\"") }
        harness.writeConfig(block)
    }

    /// `tunnel up db --foreground` that is expected to fail: returns stderr.
    private func upFails(env: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> String {
        let result = harness.tunnel(["up", "db", "--foreground"], timeout: 20, env: env, file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "expected failure: \(result.output)", file: file, line: line)
        XCTAssertFalse(Net.isListening(local), "the listener was left bound", file: file, line: line)
        return result.stderr
    }

    private func upWorks(env: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) {
        let p = try? harness.foreground("db", waitFor: local, env: env)
        XCTAssertNotNil(p, file: file, line: line)
        p?.signal(SIGTERM)
        XCTAssertEqual(p?.wait(timeout: 5), 0, p?.log ?? "", file: file, line: line)
    }

    func testStrict_unknownHostKey_isRefusedWithFingerprintAndTheLineToAdd() {
        config()
        let err = upFails()
        XCTAssertTrue(err.contains("not known"), err)
        XCTAssertTrue(err.contains(server.hostKeyFingerprint), "fingerprint \(server.hostKeyFingerprint) missing: \(err)")
        XCTAssertTrue(err.contains(server.knownHostsLine), "line to add missing: \(err)")
        XCTAssertEqual(read(harness.knownHosts), "", "strict must not write known_hosts")
        XCTAssertEqual(err.split(separator: "\n").filter { $0.hasPrefix("tunnel:") }.count, 1, err)
    }

    func testChangedHostKey_isRefusedLoudly_withBothFingerprints_underStrictAndAcceptNew() throws {
        let other = makeTempDir("otherkey") + "/k"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", other])
        let pub = read(other + ".pub").split(separator: " ")
        write("[127.0.0.1]:\(server.port) \(pub[0]) \(pub[1])\n", to: harness.knownHosts)
        let oldFingerprint = String(runCommand(Env.which("ssh-keygen")!, ["-l", "-E", "sha256", "-f", other + ".pub"]).stdout.split(separator: " ")[1])
        for policy in ["strict", "accept-new"] {
            config(extra: "host_key = \"\(policy)\"")
            let err = upFails()
            XCTAssertTrue(err.contains("HOST KEY CHANGED"), err)
            XCTAssertTrue(err.contains(server.hostKeyFingerprint), err)
            XCTAssertTrue(err.contains(oldFingerprint), err)
        }
        XCTAssertFalse(read(harness.knownHosts).contains(server.knownHostsLine.split(separator: " ")[2]), "the changed key was written")
    }

    func testAcceptNew_writesTheUnknownKey_andTrustsItNextTime() {
        config(extra: "host_key = \"accept-new\"")
        upWorks()
        // Found as ssh finds it: written plainly, or hashed where ssh_config says HashKnownHosts yes (Debian's does).
        let key = String(server.knownHostsLine.split(separator: " ")[2])
        let found = runCommand(Env.which("ssh-keygen")!, ["-F", "[127.0.0.1]:\(server.port)", "-f", harness.knownHosts])
        XCTAssertTrue(found.stdout.contains(key), read(harness.knownHosts))
        // Now known: strict accepts it, and nothing is appended twice.
        config(extra: "host_key = \"strict\"")
        upWorks()
        XCTAssertEqual(read(harness.knownHosts).components(separatedBy: "\n").filter { !$0.isEmpty }.count, 1)
    }

    func testHashedKnownHostsEntry_isTrusted() {
        harness.trust(server)
        runCommand(Env.which("ssh-keygen")!, ["-H", "-f", harness.knownHosts])
        XCTAssertTrue(read(harness.knownHosts).hasPrefix("|1|"))
        config()
        upWorks()
    }

    func testKeyTheServerRefuses_failsWithTheMethodsTriedAndWhy() {
        harness.trust(server)
        let other = makeTempDir("wrongkey") + "/id_ed25519"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", other])
        config(identity: other)
        let err = upFails()
        XCTAssertTrue(err.contains("authentication failed"), err)
        XCTAssertTrue(err.contains(other) && err.contains("refused by the server"), err)
        XCTAssertTrue(err.contains("publickey"), "the server's methods are named: \(err)")
    }

    func testEncryptedKeyWithoutAgent_saysToAddItToSSHAgent() throws {
        harness.trust(server)
        let key = makeTempDir("enc") + "/id_ed25519"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "secret phrase", "-f", key])
        try server.authorize(publicKeyFile: key + ".pub")
        config(identity: key)
        let err = upFails()
        XCTAssertTrue(err.contains("encrypted"), err)
        XCTAssertTrue(err.contains("ssh-agent") && err.contains("ssh-add"), err)
    }

    /// An ssh-agent holding a passphrase-protected key the server accepts;
    /// the key file alone is useless without the agent.
    private func agentWithEncryptedKey(type: String = "ed25519") throws -> (key: String, socket: String, agent: Background) {
        let dir = makeTempDir("agent")
        let key = dir + "/id_\(type)"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", type, "-N", "secret phrase", "-f", key])
        try server.authorize(publicKeyFile: key + ".pub")
        let socketPath = dir + "/agent.sock"
        let agent = try Background(Env.which("ssh-agent")!, ["-D", "-a", socketPath], logPath: dir + "/agent.log")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
        write("#!/bin/sh\necho 'secret phrase'\n", to: dir + "/askpass", mode: 0o755)
        let add = runCommand(Env.which("ssh-add")!, [key], env: ["SSH_AUTH_SOCK": socketPath, "SSH_ASKPASS": dir + "/askpass", "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"])
        XCTAssertEqual(add.status, 0, add.output)
        return (key, socketPath, agent)
    }

    func testEncryptedKeyInSSHAgent_authenticatesThroughTheAgent() throws {
        harness.trust(server)
        for type in ["ed25519", "ecdsa"] {
            let (key, socketPath, agent) = try agentWithEncryptedKey(type: type)
            defer { agent.stop() }
            config(identity: key)
            let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": socketPath])
            XCTAssertTrue(p.log.contains("publickey with agent key \(type == "ecdsa" ? "ecdsa-sha2-nistp256" : "ssh-ed25519") SHA256:"), p.log)
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 5), 0)
        }
    }

    /// An agent that refuses to sign (here: a key added with `ssh-add -c`
    /// and no way to confirm) is named, and the next key is tried.
    func testSSHAgentRefusingToSign_isNamed_andTheKeyFileIsTriedNext() throws {
        harness.trust(server)
        let dir = makeTempDir("refusing-agent")
        let agentKey = dir + "/id_ed25519"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", agentKey])
        let socketPath = dir + "/agent.sock"
        let agent = try Background(Env.which("ssh-agent")!, ["-D", "-a", socketPath], logPath: dir + "/agent.log")
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
        let add = runCommand(Env.which("ssh-add")!, ["-c", agentKey], env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertEqual(add.status, 0, add.output)
        try server.authorize(publicKeyFile: agentKey + ".pub")
        config(identity: agentKey) // offered by the agent first, then read from the file
        let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertTrue(p.log.contains("publickey with \(agentKey)"), p.log)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 5), 0)
        config(identity: dir + "/missing")
        let err = upFails(env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertTrue(err.contains("agent key ssh-ed25519 SHA256:") && err.contains("ssh-agent refused to sign"), err)
    }

    func testRestoredTunnel_authenticatesWithTheAgentOfTheUpThatStartedIt_notTheSupervisors() throws {
        harness.trust(server)
        let (key, socketPath, agent) = try agentWithEncryptedKey()
        defer { agent.stop() }
        config(identity: key)
        let up = harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertEqual(harness.tunnel(["daemon", "stop"]).status, 0)
        XCTAssertFalse(Net.isListening(local))
        // The next supervisor has no agent of its own (the harness clears SSH_AUTH_SOCK).
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer { daemon.signal(SIGTERM); _ = daemon.wait(timeout: 5) }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "up" }, "\(harness.list())\n\(harness.supervisorLog)")
        XCTAssertTrue(daemon.log.contains("restoring db"), daemon.log)
        XCTAssertTrue(Net.isListening(local))
    }

    func testRestoredTunnel_whoseAgentIsGone_saysSo_andFailsWithTheAgentHint() throws {
        harness.trust(server)
        let (key, socketPath, agent) = try agentWithEncryptedKey()
        config(identity: key)
        XCTAssertEqual(harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": socketPath]).status, 0)
        XCTAssertEqual(harness.tunnel(["daemon", "stop"]).status, 0)
        // As after a reboot or a new login: the agent and its socket are gone.
        agent.stop()
        try? FileManager.default.removeItem(atPath: socketPath)
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer { daemon.signal(SIGTERM); _ = daemon.wait(timeout: 5) }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.listed("db")?.state == "failed" }, "\(harness.list())")
        XCTAssertTrue(harness.supervisorLog.contains("[db] warning: not using its saved ssh-agent socket (\(socketPath) is gone); using no agent"), harness.supervisorLog)
        // Tagged with the tunnel, so its own log shows why it then fails.
        XCTAssertTrue(harness.tunnel(["logs", "db"]).stdout.contains("not using its saved ssh-agent socket"))
        XCTAssertTrue(harness.listed("db")?.last_error?.contains("ssh-add") == true, "\(harness.list())")
    }

    // MARK: RSA keys, signed with rsa-sha2-512 by tunnel (libssh2 1.10 alone signs ssh-rsa, SHA-1)

    /// A server that takes RSA keys only with SHA-2 signatures: written out
    /// here rather than relying on OpenSSH's default (8.8 and later).
    private func restartServer(acceptedAlgorithms: String) throws {
        server.stop()
        server = try SSHServer(extraConfig: "PubkeyAcceptedAlgorithms \(acceptedAlgorithms)")
        harness.trust(server)
    }

    private func rsaKey(format: String? = nil, passphrase: String = "") throws -> String {
        let key = makeTempDir("rsa") + "/id_rsa"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "rsa", "-b", "2048", "-N", passphrase, "-f", key] + (format.map { ["-m", $0] } ?? []))
        try server.authorize(publicKeyFile: key + ".pub")
        return key
    }

    func testRSAKeyFiles_inOpenSSHPEMAndPKCS8Formats_authenticateWithRSASHA2_512_whereSHA1IsRefused() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512,rsa-sha2-256")
        for format in [nil, "PEM", "PKCS8"] {
            let key = try rsaKey(format: format)
            config(identity: key)
            let p = try harness.foreground("db", waitFor: local)
            XCTAssertTrue(p.log.contains("publickey with \(key), rsa-sha2-512"), "\(format ?? "OpenSSH"): \(p.log)")
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 5), 0, p.log)
        }
        XCTAssertEqual(server.log.components(separatedBy: "Accepted publickey for").count - 1, 3, server.log)
    }

    func testRSAKeyInSSHAgent_passphraseProtected_authenticatesWithRSASHA2_512() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let (key, socketPath, agent) = try agentWithEncryptedKey(type: "rsa")
        defer { agent.stop() }
        config(identity: key)
        let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertTrue(p.log.contains("agent key ssh-rsa") && p.log.contains(", rsa-sha2-512"), p.log)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 5), 0)
    }

    func testRSAKey_onAServerThatTakesNoRSA_isRefused_sayingWhichSignatureWasSent() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519")
        let key = try rsaKey()
        config(identity: key)
        let err = upFails()
        XCTAssertTrue(err.contains("\(key): refused by the server (signed with rsa-sha2-512)"), err)
    }

    /// An ssh-agent that lists an RSA key, then never answers: `hangOn` 11
    /// (the key list) or 13 (the signature).
    private func stuckAgent(listing publicKeyFile: String, hangOn request: Int) throws -> (socket: String, agent: Background) {
        let dir = makeTempDir("stuck-agent")
        let script = dir + "/agent.py"
        write("""
        import base64, socket, struct, sys, threading, time
        path, pub, hang = sys.argv[1], sys.argv[2], int(sys.argv[3])
        blob = base64.b64decode(open(pub).read().split()[1])
        def exact(c, n):
            b = b""
            while len(b) < n:
                d = c.recv(n - len(b))
                if not d: raise EOFError
                b += d
            return b
        def serve(c):
            try:
                while True:
                    msg = exact(c, struct.unpack(">I", exact(c, 4))[0])
                    if msg[0] == hang:
                        print("holding request", hang, flush=True)
                        time.sleep(3600)
                    if msg[0] == 11:
                        body = bytes([12]) + struct.pack(">I", 1) + struct.pack(">I", len(blob)) + blob + struct.pack(">I", 5) + b"stuck"
                    else:
                        body = bytes([5])
                    c.sendall(struct.pack(">I", len(body)) + body)
            except EOFError:
                pass
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.listen(8)
        while True:
            threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
        """, to: script)
        let socketPath = dir + "/agent.sock"
        let agent = try Background(Env.which("python3")!, [script, socketPath, publicKeyFile, "\(request)"], logPath: dir + "/agent.log")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
        return (socketPath, agent)
    }

    /// libssh2 1.10 reads an agent's EOF as "nothing yet" and asks again for ever.
    func testSSHAgentClosingMidRequest_failsAtOnce_insteadOfSpinning() throws {
        let dir = makeTempDir("closing-agent")
        let socketPath = dir + "/agent.sock"
        let agent = try Background("/usr/bin/python3", ["-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
            while True:
                c, _ = s.accept(); c.recv(4096); c.close()
            """, socketPath], logPath: dir + "/agent.log")
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
        harness.trust(server)
        config(identity: dir + "/missing") // only the agent could log in
        let err = upFails(env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertTrue(err.contains("ssh-agent at \(socketPath): it closed the connection without answering"), err)
    }

    func testStuckSSHAgent_whileListingOrSigning_failsNamingTheTimeout_insteadOfHanging() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        // Passphrase-protected: only the (stuck) agent could sign with it.
        let key = try rsaKey(passphrase: "secret phrase")
        for (request, expected) in [(11, "agent.sock: did not answer within 5 s"), (13, "(stuck): ssh-agent did not answer within 5 s")] {
            let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: request)
            defer { agent.stop() }
            config(identity: key) // connect_timeout = 5
            // upFails gives up (and fails) after 20 s: "instead of hanging".
            let err = upFails(env: ["SSH_AUTH_SOCK": socketPath])
            XCTAssertTrue(err.contains(expected), "request \(request): \(err)")
        }
    }

    /// The agent is asked off the loop thread: while it holds one tunnel's
    /// signature, another tunnel on the same (only) event loop keeps
    /// carrying traffic. libssh2's own agent calls block the thread.
    func testStuckSSHAgent_holdsOnlyItsOwnTunnel_notTheOthersOnItsEventLoop() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let echo = TestServer(.echo)
        let key = try rsaKey(passphrase: "secret phrase")
        server.alsoAuthorize(publicKeyFile: server.userKey + ".pub")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 13)
        defer {
            agent.stop()
            harness.stopSupervisor()
            echo.stop()
        }
        let fast = Net.freePort(), held = Net.freePort()
        harness.writeConfig(harness.profile("fast", server: server, forwards: ["\(fast):127.0.0.1:\(echo.port)"])
                            + harness.profile("held", server: server, forwards: ["\(held):127.0.0.1:9"])
                                .replacingOccurrences(of: "identity = \"\(server.userKey)\"", with: "identity = \"\(key)\"")
                                .replacingOccurrences(of: "connect_timeout = 5", with: "connect_timeout = 60"))
        let up = harness.tunnel(["up", "fast"], env: ["TUNNEL_LOOPS": "1"])
        XCTAssertEqual(up.status, 0, up.output)
        let waiting = try Background(Env.tunnelBinary, ["up", "held"], env: harness.environment.merging(["SSH_AUTH_SOCK": socketPath]) { $1 },
                                     logPath: harness.dir + "/up-held.log")
        defer { waiting.stop() }
        XCTAssertTrue(eventually(timeout: 15) { agent.log.contains("holding request 13") }, agent.log)
        for text in ["one", "two", "three"] {
            guard let fd = Net.connect(fast, timeout: 10) else { return XCTFail("cannot connect to \(fast)") }
            defer { close(fd) }
            Net.setTimeout(fd, 10)
            XCTAssertTrue(Net.sendAll(fd, Array(text.utf8)))
            XCTAssertEqual(Net.readExactly(fd, text.utf8.count).map { String(decoding: $0, as: UTF8.self) }, text,
                           "the shared loop stalled while ssh-agent held held's signature")
        }
        XCTAssertEqual(harness.listed("held")?.state, "connecting", "held is still waiting for the agent: \(harness.list())")
        XCTAssertTrue(waiting.isRunning, waiting.log)
    }

    /// The agent may answer next time: its silence is a reason to back off
    /// and retry, not the five-minute pause of a refused key.
    func testSilentSSHAgent_duringAConnect_isRetriedWithBackoff_notFailedForMinutes() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let key = try rsaKey(passphrase: "secret phrase")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 11)
        defer {
            agent.stop()
            harness.stopSupervisor()
        }
        config(identity: key) // connect_timeout = 5
        let up = harness.tunnel(["up", "db"], timeout: 30, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertNotEqual(up.status, 0, up.output)
        XCTAssertTrue(up.output.contains("agent.sock: did not answer within 5 s"), up.output)
        XCTAssertTrue(eventually(timeout: 10) { self.harness.supervisorLog.contains("did not answer within 5 s [") }, harness.supervisorLog)
        let log = harness.supervisorLog
        XCTAssertTrue(log.contains("s [\(Env.userName)@127.0.0.1:\(server.port)]; retrying in"), log)
        XCTAssertFalse(log.contains("not retrying for"), log)
        XCTAssertNotEqual(harness.listed("db")?.state, "failed", "\(harness.list())")
    }

    /// A second `tunnel up` of a tunnel that failed brings its own ssh-agent:
    /// the one saved at the first `up` may be what failed.
    func testUpOfAFailedTunnel_retriesWithTheAgentOfThatUp_andKeepsIt() throws {
        harness.trust(server)
        let (key, socketPath, agent) = try agentWithEncryptedKey()
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment, logPath: harness.dir + "/daemon.out")
        defer {
            agent.stop()
            daemon.signal(SIGTERM)
            _ = daemon.wait(timeout: 5)
        }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.tunnel(["ls"]).status == 0 && self.harness.supervisorPID != nil })
        config(identity: key) // passphrase-protected: only the agent can sign
        let gone = socketPath + ".gone"
        let first = harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": gone])
        XCTAssertNotEqual(first.status, 0, first.output)
        XCTAssertTrue(first.output.contains("ssh-agent at \(gone): not reachable"), first.output)
        XCTAssertEqual(harness.listed("db")?.state, "failed", "\(harness.list())")

        let second = harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertEqual(harness.listed("db")?.state, "up", "\(harness.list())")
        XCTAssertTrue(Net.isListening(local))
        XCTAssertTrue(harness.supervisorLog.contains("[db] info: using the ssh-agent of this `tunnel up` from now on: \(socketPath)"), harness.supervisorLog)
        // Saved: a restarted supervisor restores db with that agent.
        XCTAssertTrue(read(harness.runtimeDir + "/state.json").contains(socketPath), read(harness.runtimeDir + "/state.json"))
    }

    /// A `reload` that restarts a tunnel while a `tunnel up` of it is still
    /// connecting: the `up` answers with the new version's outcome, not with
    /// the restart. (Here the old version waits on a stuck ssh-agent and the
    /// new one logs in with a key file.)
    func testReloadDuringAnUpsConnect_theUpAnswersWithTheRestartedTunnel() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let key = try rsaKey(passphrase: "secret phrase")
        server.alsoAuthorize(publicKeyFile: server.userKey + ".pub")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 13)
        defer {
            agent.stop()
            harness.stopSupervisor()
        }
        config(extra: "connect_timeout = 60", identity: key)
        let config = read(harness.configPath).replacingOccurrences(of: "connect_timeout = 5\n", with: "")
        harness.writeConfig(config)
        let up = try Background(Env.tunnelBinary, ["up", "db"], env: harness.environment.merging(["SSH_AUTH_SOCK": socketPath]) { $1 },
                                logPath: harness.dir + "/up-db.log")
        defer { up.stop() }
        XCTAssertTrue(eventually(timeout: 15) { agent.log.contains("holding request 13") }, agent.log)
        // The new version logs in with a key file, and only with it: as ssh, it would
        // otherwise offer the agent's key first, which this agent never signs with.
        let only = makeTempDir("identities-only") + "/ssh_config"
        write("IdentitiesOnly yes\n", to: only, mode: 0o600)
        harness.writeConfig(config.replacingOccurrences(of: "identity = \"\(key)\"", with: "identity = \"\(server.userKey)\"\nssh_config = \"\(only)\""))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stdout.contains("db: restarted"), reload.output)
        XCTAssertEqual(up.wait(timeout: 30), 0, up.log)
        XCTAssertTrue(up.log.contains("db: up: 127.0.0.1:\(local) -> "), up.log)
        XCTAssertTrue(Net.isListening(local))
    }

    /// SSH_AUTH_SOCK longer than a socket address holds: named, not a crash.
    func testAgentSocketPathTooLongForASocketAddress_isNamed_notACrash() {
        harness.trust(server)
        let long = "/tmp/" + String(repeating: "a", count: 200)
        config(identity: makeTempDir("nokey") + "/missing")
        let err = upFails(env: ["SSH_AUTH_SOCK": long])
        XCTAssertTrue(err.contains("ssh-agent at \(long): not reachable (the path is longer than the 107 bytes a socket address holds)"), err)
        XCTAssertFalse(err.contains("Fatal error"), err)
    }

    /// A reload restarts a tunnel with its saved agent only while that agent
    /// is still there; else with the supervisor's own, and the log says why.
    func testReload_ofATunnelWhoseAgentIsGone_usesTheSupervisorsAgent_andSaysWhy() throws {
        harness.trust(server)
        let (key, socketPath, agent) = try agentWithEncryptedKey()
        let dir = (key as NSString).deletingLastPathComponent
        let ownSocket = makeTempDir("own-agent") + "/agent.sock"
        let own = try Background(Env.which("ssh-agent")!, ["-D", "-a", ownSocket], logPath: dir + "/own-agent.log")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: ownSocket) })
        let add = runCommand(Env.which("ssh-add")!, [key], env: ["SSH_AUTH_SOCK": ownSocket, "SSH_ASKPASS": dir + "/askpass", "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"])
        XCTAssertEqual(add.status, 0, add.output)
        let daemon = try Background(Env.tunnelBinary, ["daemon"], env: harness.environment.merging(["SSH_AUTH_SOCK": ownSocket]) { $1 },
                                    logPath: harness.dir + "/daemon.out")
        defer {
            own.stop()
            daemon.signal(SIGTERM)
            _ = daemon.wait(timeout: 5)
        }
        XCTAssertTrue(eventually(timeout: 10) { self.harness.tunnel(["ls"]).status == 0 && self.harness.supervisorPID != nil })
        config(identity: key)
        let up = harness.tunnel(["up", "db"], env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertEqual(up.status, 0, up.output)
        agent.stop()
        try? FileManager.default.removeItem(atPath: socketPath)
        harness.writeConfig(read(harness.configPath).replacingOccurrences(of: "keepalive_count = 3", with: "keepalive_count = 4"))
        let reload = harness.tunnel(["reload"], timeout: 30)
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stdout.contains("db: restarted"), reload.output)
        XCTAssertEqual(harness.listed("db")?.state, "up", "\(harness.list())")
        XCTAssertTrue(harness.supervisorLog.contains("[db] warning: not using its saved ssh-agent socket (\(socketPath) is gone); using \(ownSocket)"), harness.supervisorLog)
    }

    /// An `up` still waiting when `tunnel down` stops the tunnel is told so,
    /// not that the tunnel keeps retrying.
    func testDownWhileAnUpWaits_theUpSaysTheTunnelWasStopped() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let key = try rsaKey(passphrase: "secret phrase")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 13)
        defer {
            agent.stop()
            harness.stopSupervisor()
        }
        config(identity: key)
        harness.writeConfig(read(harness.configPath).replacingOccurrences(of: "connect_timeout = 5", with: "connect_timeout = 60"))
        let up = try Background(Env.tunnelBinary, ["up", "db"], env: harness.environment.merging(["SSH_AUTH_SOCK": socketPath]) { $1 },
                                logPath: harness.dir + "/up-db.log")
        defer { up.stop() }
        XCTAssertTrue(eventually(timeout: 15) { agent.log.contains("holding request 13") }, agent.log)
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        XCTAssertEqual(up.wait(timeout: 30), 1, up.log)
        XCTAssertTrue(up.log.contains("tunnel: db: stopped before it came up"), up.log)
        XCTAssertFalse(up.log.contains("still retrying"), up.log)
        XCTAssertFalse(Net.isListening(local))
    }

    /// User certificates: stock libssh2 1.10 signs ECDSA ones right; tunnel's
    /// build (Patches/libssh2) ed25519 ones too; RSA ones it would sign under
    /// the certificate's name, which the server refuses, so they are not
    /// offered, and the message says why. A CA, `id_ecdsa`, `id_ed25519` and
    /// `id_rsa` each with its `-cert.pub`, in a new directory; the server
    /// restarted trusting only that CA (no key is in authorized_keys).
    /// Returns the directory.
    private func certifiedKeysAndACAOnlyServer(_ name: String) throws -> String {
        let dir = makeTempDir(name)
        let keygen = Env.which("ssh-keygen")!
        runCommand(keygen, ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/ca"])
        for type in ["ecdsa", "ed25519", "rsa"] {
            runCommand(keygen, ["-q", "-t", type, "-N", "", "-f", dir + "/id_\(type)"])
            let signed = runCommand(keygen, ["-q", "-s", dir + "/ca", "-I", "test-\(type)", "-n", Env.userName, "-V", "+1h", dir + "/id_\(type).pub"])
            XCTAssertEqual(signed.status, 0, signed.output)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/id_\(type)-cert.pub"))
        }
        server.stop()
        server = try SSHServer(extraConfig: "TrustedUserCAKeys \(dir)/ca.pub")
        harness.trust(server)
        return dir
    }

    private let unsupportedCertificate = "is a certificate of a key type libssh2 1.10 cannot sign certificates for (only ECDSA and ed25519 ones); not offered"

    func testCertificatesInSSHAgent_ecdsaAndEd25519LogIn_rsaIsNamedAsUnsupported() throws {
        let dir = try certifiedKeysAndACAOnlyServer("certs")
        for (type, certificate) in [("ecdsa", "ecdsa-sha2-nistp256-cert-v01@openssh.com"), ("ed25519", "ssh-ed25519-cert-v01@openssh.com"),
                                    ("rsa", "ssh-rsa-cert-v01@openssh.com")] {
            let socketPath = dir + "/agent-\(type).sock"
            let agent = try Background(Env.which("ssh-agent")!, ["-D", "-a", socketPath], logPath: dir + "/agent-\(type).log")
            defer { agent.stop() }
            XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
            // Only the certificate is trusted by the server (its key is not in authorized_keys).
            let add = runCommand(Env.which("ssh-add")!, [dir + "/id_\(type)"], env: ["SSH_AUTH_SOCK": socketPath])
            XCTAssertEqual(add.status, 0, add.output)
            XCTAssertTrue(add.output.contains("Certificate added"), add.output)
            config(identity: dir + "/missing")
            if type != "rsa" {
                let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": socketPath])
                XCTAssertTrue(p.log.contains("publickey with agent key \(certificate) SHA256:"), p.log)
                p.signal(SIGTERM)
                XCTAssertEqual(p.wait(timeout: 5), 0)
            } else {
                let err = upFails(env: ["SSH_AUTH_SOCK": socketPath])
                XCTAssertTrue(err.contains("agent key \(certificate) SHA256:") && err.contains(unsupportedCertificate), err)
            }
        }
    }

    /// `KEY-cert.pub` beside an identity file is offered with it, as ssh
    /// does: an ECDSA or ed25519 certificate logs in where only its CA is
    /// trusted; an RSA one is not offered, and the failure says why.
    func testCertificateBesideTheIdentityFile_ecdsaAndEd25519LogIn_rsaIsNamedAsUnsupported() throws {
        let dir = try certifiedKeysAndACAOnlyServer("cert-files")

        for (type, certificate) in [("ecdsa", "ecdsa-sha2-nistp256-cert-v01@openssh.com"), ("ed25519", "ssh-ed25519-cert-v01@openssh.com")] {
            config(identity: dir + "/id_\(type)")
            let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": ""])
            XCTAssertTrue(p.log.contains("publickey with \(dir)/id_\(type)-cert.pub (\(certificate) SHA256:"), p.log)
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 5), 0)
        }

        config(identity: dir + "/id_rsa")
        let err = upFails(env: ["SSH_AUTH_SOCK": ""])
        XCTAssertTrue(err.contains("\(dir)/id_rsa-cert.pub (ssh-rsa-cert-v01@openssh.com SHA256:")
                      && err.contains(unsupportedCertificate)
                      && err.contains("\(dir)/id_rsa: refused by the server"), err)

        // Without their certificates, the keys alone are refused: the certificates are what logged in.
        for type in ["ecdsa", "ed25519"] {
            XCTAssertEqual(unlink(dir + "/id_\(type)-cert.pub"), 0)
            config(identity: dir + "/id_\(type)")
            let plain = upFails(env: ["SSH_AUTH_SOCK": ""])
            XCTAssertTrue(plain.contains("\(dir)/id_\(type): refused by the server") && !plain.contains("-cert.pub"), plain)
        }
    }

    /// An ssh-agent on a socket in `dir`, holding `keys` (files without a passphrase), in that order.
    private func agent(in dir: String, holding keys: [String]) throws -> (socket: String, agent: Background) {
        let socketPath = dir + "/agent.sock"
        let agent = try Background(Env.which("ssh-agent")!, ["-D", "-a", socketPath], logPath: dir + "/agent.log")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socketPath) })
        for key in keys {
            XCTAssertEqual(runCommand(Env.which("ssh-add")!, [key], env: ["SSH_AUTH_SOCK": socketPath]).status, 0, key)
        }
        return (socketPath, agent)
    }

    /// `count` new ed25519 keys in `dir` that no server takes.
    private func junkKeys(_ count: Int, in dir: String) -> [String] {
        (0..<count).map { k in
            let key = dir + "/junk\(k)"
            runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", key])
            return key
        }
    }

    /// As ssh without IdentitiesOnly: an identity file the server refuses
    /// does not hide the agent's other keys; the file's own key, when the
    /// agent holds it, goes first (one try of MaxAuthTries).
    func testAgentKeys_areOfferedBesideAnIdentityFile_itsOwnKeyFirst() throws {
        server.stop()
        server = try SSHServer(extraConfig: "MaxAuthTries 2")
        harness.trust(server)
        let dir = makeTempDir("agent-and-file")
        let junk = junkKeys(3, in: dir)
        let (socketPath, agent) = try agent(in: dir, holding: [junk[1], junk[2], server.userKey])
        defer { agent.stop() }
        func logsInThroughTheAgent(_ what: String) throws {
            let p = try harness.foreground("db", waitFor: local, env: ["SSH_AUTH_SOCK": socketPath])
            XCTAssertTrue(p.log.contains("publickey with agent key ssh-ed25519 SHA256:"), "\(what): \(p.log)")
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 5), 0)
        }
        // The file is the server's key, which the agent holds last: offered first, so MaxAuthTries 2 is enough.
        config(identity: server.userKey)
        try logsInThroughTheAgent("the file's own key")

        // The file is a key the server refuses and the agent lacks: the agent's keys are still offered.
        let agentsKey = server.userKey
        server.stop()
        server = try SSHServer()
        try server.authorize(publicKeyFile: agentsKey + ".pub")
        harness.trust(server)
        config(identity: junk[0])
        try logsInThroughTheAgent("beside a refused file")
    }

    /// sshd ends the login after MaxAuthTries keys: the error quotes the
    /// server, not "refused", and `check` says to offer fewer keys.
    func testServerEndingTheLoginAfterMaxAuthTries_isQuoted_andCheckSaysToOfferFewerKeys() throws {
        server.stop()
        server = try SSHServer(extraConfig: "MaxAuthTries 2")
        harness.trust(server)
        let dir = makeTempDir("many-keys")
        let (socketPath, agent) = try agent(in: dir, holding: junkKeys(4, in: dir) + [server.userKey])
        defer { agent.stop() }
        config(identity: dir + "/missing") // every agent key is offered; the right one comes last
        let err = upFails(env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertTrue(err.contains("the server disconnected: Too many authentication failures"), err)
        let check = harness.tunnel(["check", "db"], timeout: 30, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.stdout.contains("sshd stops after MaxAuthTries keys"), check.output)
    }

    func testCheck_withASilentSSHAgent_namesTheAgentInTheFix() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let key = try rsaKey(passphrase: "secret phrase")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 11)
        defer { agent.stop() }
        config(identity: key)
        let check = harness.tunnel(["check", "db"], timeout: 30, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.stdout.contains("ssh-agent at \(socketPath) did not answer: is it stopped"), check.output)
    }

    /// `up --timeout` that runs out while the tunnel still connects: the
    /// supervisor is fine, so the message names the tunnel and what goes on.
    func testUpTimeout_whileTheTunnelStillConnects_namesTheTunnel_notTheSupervisor() throws {
        try restartServer(acceptedAlgorithms: "ssh-ed25519,rsa-sha2-512")
        let key = try rsaKey(passphrase: "secret phrase")
        let (socketPath, agent) = try stuckAgent(listing: key + ".pub", hangOn: 13)
        defer {
            agent.stop()
            harness.stopSupervisor()
        }
        config(identity: key)
        harness.writeConfig(read(harness.configPath).replacingOccurrences(of: "connect_timeout = 5", with: "connect_timeout = 60"))
        let up = harness.tunnel(["up", "db", "--timeout", "0.5"], timeout: 30, env: ["SSH_AUTH_SOCK": socketPath])
        XCTAssertEqual(up.status, 1, up.output)
        XCTAssertEqual(up.stderr, "tunnel: db: not up within 0.5 s; still connecting in the background (`tunnel ls` shows it, `tunnel down db` stops it)\n")
        XCTAssertEqual(harness.listed("db")?.state, "connecting", "\(harness.list())")
    }

    /// A relative SSH_AUTH_SOCK is the caller's: the supervisor, started
    /// elsewhere, is given the absolute path.
    func testRelativeSSHAuthSock_isResolvedInTheCallersDirectory() throws {
        harness.trust(server)
        let (key, socketPath, agent) = try agentWithEncryptedKey()
        defer {
            agent.stop()
            harness.stopSupervisor()
        }
        config(identity: key)
        XCTAssertEqual(harness.tunnel(["ls"]).status, 0)
        let dir = (socketPath as NSString).deletingLastPathComponent
        let up = runCommand("/bin/sh", ["-c", "cd \"$0\" && exec \"$1\" up db", dir, Env.tunnelBinary],
                            env: harness.environment.merging(["SSH_AUTH_SOCK": "agent.sock"]) { $1 })
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(read(harness.runtimeDir + "/state.json").contains(socketPath), read(harness.runtimeDir + "/state.json"))
    }

    /// An SSH_AUTH_SOCK holding a newline and an escape sequence is shown
    /// escaped, on one line, not written raw to the terminal.
    func testSSHAuthSockWithControlCharacters_isShownEscapedOnOneLine() {
        harness.trust(server)
        config(identity: makeTempDir("nokey") + "/missing")
        let result = harness.tunnel(["up", "db"], timeout: 30, env: ["SSH_AUTH_SOCK": "/tmp/agent\nfake\u{1b}[31m"])
        harness.stopSupervisor()
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("ssh-agent at /tmp/agent\\nfake\\x1b[31m: not reachable"), result.stderr)
        XCTAssertFalse(result.stderr.contains("\u{1b}"), result.stderr)
    }
}
