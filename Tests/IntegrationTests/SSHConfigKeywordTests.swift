import Foundation
import XCTest

/// ssh_config's login keywords, as `ssh -G` resolves them, against a real
/// sshd: several IdentityFile and UserKnownHostsFile, HostKeyAlias,
/// HashKnownHosts, IdentityAgent, IdentitiesOnly, Ciphers and MACs.
final class SSHConfigKeywordTests: SSHTestCase {
    private var sshConfig: String { harness.dir + "/ssh_config" }

    /// An ssh_config whose `Host NAME` blocks reach the test sshd, each with `extra` lines.
    private func writeSSHConfig(_ hosts: [(name: String, extra: String)]) {
        let blocks = hosts.map { host in
            "Host \(host.name)\n  HostName 127.0.0.1\n  Port \(server.port)\n  User \(Env.userName)\n"
                + host.extra.split(separator: "\n").map { "  \($0)\n" }.joined()
        }
        write(blocks.joined(), to: sshConfig, mode: 0o600)
    }

    /// Profiles naming only an alias and a forward to the echo server.
    private func writeProfiles(_ names: [String]) -> [String: UInt16] {
        var ports: [String: UInt16] = [:]
        var text = "[defaults]\nssh_config = \"\(sshConfig)\"\nconnect_timeout = 5\n"
        for name in names {
            let port = Net.freePort()
            ports[name] = port
            text += "[tunnels.\(name)]\nhost = \"\(name)\"\nforward = \"\(port):127.0.0.1:\(echo.port)\"\n"
        }
        harness.writeConfig(text)
        return ports
    }

    private func assertEchoes(_ port: UInt16?, file: StaticString = #filePath, line: UInt = #line) {
        guard let port, let fd = Net.connect(port, timeout: 10) else { return XCTFail("cannot connect", file: file, line: line) }
        defer { close(fd) }
        Net.setTimeout(fd, 10)
        XCTAssertTrue(Net.sendAll(fd, Array("ping".utf8)), file: file, line: line)
        XCTAssertEqual(Net.readExactly(fd, 4).map { String(decoding: $0, as: UTF8.self) }, "ping", file: file, line: line)
    }

    func testHostKeyAliasAndHashKnownHosts_learnAHashedAliasLine_intoTheFirstKnownHostsFileOnly() throws {
        let first = harness.dir + "/kh-first", second = harness.dir + "/kh-second"
        write("", to: second, mode: 0o600)
        writeSSHConfig([("db", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(first) \(second)\nHostKeyAlias prod-db\nHashKnownHosts yes\nStrictHostKeyChecking accept-new")])
        let ports = writeProfiles(["db"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["db"])
        let learned = read(first)
        XCTAssertEqual(learned.split(separator: "\n").count, 1, learned)
        XCTAssertTrue(learned.hasPrefix("|1|"), "HashKnownHosts writes a hashed name: \(learned)")
        XCTAssertEqual(read(second), "", "learned keys go to the first file only")
        // ssh-keygen finds it under the alias, not under the address and port.
        let pub = read(server.hostKey + ".pub").split(separator: " ")[1]
        XCTAssertTrue(runCommand(Env.which("ssh-keygen")!, ["-F", "prod-db", "-f", first]).stdout.contains(String(pub)))
        XCTAssertEqual(runCommand(Env.which("ssh-keygen")!, ["-F", "[127.0.0.1]:\(server.port)", "-f", first]).stdout, "")
    }

    func testKeyTrustedOnlyInTheSecondKnownHostsFile_underTheAlias_connectsUnderStrict() throws {
        let first = harness.dir + "/kh-first", second = harness.dir + "/kh-second"
        let pub = read(server.hostKey + ".pub").split(separator: " ")
        write("prod-db \(pub[0]) \(pub[1])\n", to: second, mode: 0o600)
        writeSSHConfig([("db", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(first) \(second)\nHostKeyAlias prod-db\nStrictHostKeyChecking yes"),
                        ("plain", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(first) \(second)\nStrictHostKeyChecking yes")])
        let ports = writeProfiles(["db", "plain"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["db"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: first), "nothing learned")
        // Without the alias the same key is unknown under [127.0.0.1]:PORT, and strict refuses it.
        let refused = harness.tunnel(["up", "plain"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("host key for [127.0.0.1]:\(server.port) is not known"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("add this line to \(first)"), refused.stderr)
    }

    /// `IdentityFile ~/.ssh/keys/%n`, the per-alias key pattern: %n is the
    /// name as given (before HostName), %p the port.
    func testIdentityFileTokens_nameAsGivenAndPort_areExpandedAsSSHDoes() throws {
        let keys = harness.dir + "/keys"
        XCTAssertEqual(mkdir(keys, 0o700), 0)
        write(read(server.userKey), to: keys + "/db-\(server.port)", mode: 0o600)
        writeSSHConfig([("db", "IdentityFile \(keys)/%n-%p\nIdentitiesOnly yes\nUserKnownHostsFile \(harness.knownHosts)")])
        let ports = writeProfiles(["db"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        // Shown under ~ (HOME is the harness directory).
        XCTAssertTrue(harness.supervisorLog.contains("publickey with ~/keys/db-\(server.port);"), harness.supervisorLog)
        assertEchoes(ports["db"])
    }

    func testSeveralIdentityFiles_areTriedInOrder() throws {
        let wrong = makeTempDir("keys") + "/id_wrong"
        runCommand(Env.which("ssh-keygen")!, ["-q", "-t", "ed25519", "-N", "", "-f", wrong])
        writeSSHConfig([("db", "IdentityFile \(wrong)\nIdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)")])
        let ports = writeProfiles(["db"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["db"])
        XCTAssertTrue(harness.supervisorLog.contains("publickey with \(server.userKey)"), harness.supervisorLog)
    }

    /// CertificateFile goes with the identity file whose key it certifies
    /// (wherever it lies); one for another key is not offered with it.
    func testCertificateFile_isOfferedWithTheKeyItCertifies_whereOnlyItsCAIsTrusted() throws {
        let dir = makeTempDir("certificatefile")
        let keygen = Env.which("ssh-keygen")!
        runCommand(keygen, ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/ca"])
        for key in ["id_ecdsa", "other"] {
            runCommand(keygen, ["-q", "-t", "ecdsa", "-N", "", "-f", dir + "/" + key])
            XCTAssertEqual(runCommand(keygen, ["-q", "-s", dir + "/ca", "-I", key, "-n", Env.userName, "-V", "+1h", dir + "/\(key).pub"]).status, 0)
        }
        // Kept apart from the keys, under names of their own; the .pub files are gone, so the key file says what it is.
        mkdir(dir + "/certs", 0o755)
        XCTAssertEqual(rename(dir + "/id_ecdsa-cert.pub", dir + "/certs/mine.pub"), 0)
        XCTAssertEqual(rename(dir + "/other-cert.pub", dir + "/certs/theirs.pub"), 0)
        unlink(dir + "/id_ecdsa.pub")
        replaceServerTrusting(ca: dir + "/ca.pub")
        writeSSHConfig([("db", "IdentityFile \(dir)/id_ecdsa\nCertificateFile \(dir)/certs/theirs.pub\nCertificateFile \(dir)/certs/%r.pub\nUserKnownHostsFile \(harness.knownHosts)")])
        // %r is the user; "mine.pub" is what the test named the certificate, so link the user's name to it.
        if Env.userName != "mine" { XCTAssertEqual(symlink(dir + "/certs/mine.pub", dir + "/certs/\(Env.userName).pub"), 0) }
        let ports = writeProfiles(["db"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["db"])
        XCTAssertTrue(harness.supervisorLog.contains("publickey with \(dir)/certs/\(Env.userName).pub (ecdsa-sha2-nistp256-cert-v01@openssh.com SHA256:"),
                      harness.supervisorLog)
        XCTAssertFalse(server.log.contains("ID other"), "the other key's certificate was not offered: \(server.log)")
    }

    private func replaceServerTrusting(ca: String) {
        server.stop()
        server = try! SSHServer(extraConfig: "TrustedUserCAKeys \(ca)")
        harness.trust(server)
    }

    /// An ssh-agent of the test's own, holding no keys yet: its directory and socket.
    private func startAgent() throws -> (agent: Background, dir: String, socket: String) {
        let dir = makeTempDir("agent")
        let socket = dir + "/agent.sock"
        let agent = try Background(Env.which("ssh-agent")!, ["-D", "-a", socket], logPath: dir + "/agent.log")
        XCTAssertTrue(eventually(timeout: 5) { FileManager.default.fileExists(atPath: socket) })
        return (agent, dir, socket)
    }

    func testIdentityAgentAndIdentitiesOnly_decideWhetherTheAgentsKeysAreOffered() throws {
        let (agent, _, socket) = try startAgent()
        defer { agent.stop() }
        XCTAssertEqual(runCommand(Env.which("ssh-add")!, [server.userKey], env: ["SSH_AUTH_SOCK": socket]).status, 0)
        let known = "UserKnownHostsFile \(harness.knownHosts)"
        writeSSHConfig([("inherits", known), ("noagent", known + "\nIdentityAgent none"),
                        ("named", known + "\nIdentityAgent \(socket)"), ("only", known + "\nIdentitiesOnly yes")])
        let ports = writeProfiles(["inherits", "noagent", "named", "only"])
        // HOME (the harness directory) has no key files: only the agent can log in.
        let withAgent = ["SSH_AUTH_SOCK": socket]
        let inherits = harness.tunnel(["up", "inherits"], env: withAgent)
        XCTAssertEqual(inherits.status, 0, inherits.output + harness.supervisorLog)
        assertEchoes(ports["inherits"])
        let noAgent = harness.tunnel(["up", "noagent"], env: withAgent)
        XCTAssertNotEqual(noAgent.status, 0, "IdentityAgent none: the agent is not asked")
        XCTAssertTrue(noAgent.stderr.contains("authentication failed"), noAgent.stderr)
        let named = harness.tunnel(["up", "named"])
        XCTAssertEqual(named.status, 0, "IdentityAgent PATH works without SSH_AUTH_SOCK: " + named.output + harness.supervisorLog)
        assertEchoes(ports["named"])
        let only = harness.tunnel(["up", "only"], env: withAgent)
        XCTAssertNotEqual(only.status, 0, "IdentitiesOnly: the agent's key is none of the identity files")
        XCTAssertTrue(only.stderr.contains("authentication failed"), only.stderr)
    }

    /// ssh's way to pick one of the agent's keys: IdentityFile names its public key.
    func testIdentityFileNamingAPublicKey_withIdentitiesOnly_picksThatKeyFromTheAgent() throws {
        let (agent, dir, socket) = try startAgent()
        defer { agent.stop() }
        // Only the public half on disk where ssh_config points.
        let pub = dir + "/picked.pub"
        write(read(server.userKey + ".pub"), to: pub, mode: 0o644)
        let known = "UserKnownHostsFile \(harness.knownHosts)\nIdentitiesOnly yes\nIdentityFile \(pub)"
        writeSSHConfig([("pub", known)])
        let ports = writeProfiles(["pub"])
        let withAgent = ["SSH_AUTH_SOCK": socket]
        let empty = harness.tunnel(["up", "pub"], env: withAgent)
        XCTAssertNotEqual(empty.status, 0, "the agent does not hold the key yet")
        XCTAssertTrue(empty.stderr.contains("\(pub): is a public key, which picks a key of ssh-agent's, and the agent does not hold it"), empty.stderr)
        XCTAssertEqual(runCommand(Env.which("ssh-add")!, [server.userKey], env: withAgent).status, 0)
        let up = harness.tunnel(["up", "pub"], env: withAgent)
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["pub"])
    }

    func testCiphersThatLeaveNothingLibssh2Supports_isOneLineNamingBothLists() {
        writeSSHConfig([("db", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)\nCiphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"),
                        ("mac", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)\nMACs hmac-sha2-256-etm@openssh.com")])
        _ = writeProfiles(["db", "mac"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("ssh_config's Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com for 127.0.0.1 leaves nothing tunnel's libssh2 can use, which is aes128-ctr,aes256-ctr,aes192-ctr"), up.stderr)
        XCTAssertEqual(up.stderr.split(separator: "\n").filter { $0.hasPrefix("tunnel:") }.count, 1, up.stderr)
        let mac = harness.tunnel(["up", "mac"])
        XCTAssertNotEqual(mac.status, 0)
        XCTAssertTrue(mac.stderr.contains("ssh_config's MACs hmac-sha2-256-etm@openssh.com for 127.0.0.1 leaves nothing tunnel's libssh2 can use, which is \(DefaultAlgorithms.macList)"), mac.stderr)
    }

    func testCiphersAndMACs_areOfferedInTheOrderSSHConfigGives() throws {
        try replaceServer(extraConfig: "LogLevel DEBUG1\n")
        writeSSHConfig([("db", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)\nCiphers aes192-ctr,aes256-ctr\nMACs hmac-sha2-256")])
        let ports = writeProfiles(["db"])
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        assertEchoes(ports["db"])
        // The server picks the client's first choice it also has.
        XCTAssertTrue(server.log.contains("kex: client->server cipher: aes192-ctr MAC: hmac-sha2-256"), server.log)
    }

    func testAProfileWithoutForward_takesLocalForwardAndDynamicForwardFromSSHConfig() throws {
        let local = Net.freePort(), socks = Net.freePort()
        writeSSHConfig([("db", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)\nLocalForward \(local) 127.0.0.1:\(echo.port)\nDynamicForward \(socks)"),
                        ("bare", "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)")])
        harness.writeConfig("[defaults]\nssh_config = \"\(sshConfig)\"\n[tunnels.db]\nhost = \"db\"\n[tunnels.bare]\nhost = \"bare\"\n")
        XCTAssertEqual(harness.tunnel(["config", "check"]).status, 0)
        let up = harness.tunnel(["up", "db"])
        XCTAssertEqual(up.status, 0, up.output + harness.supervisorLog)
        XCTAssertTrue(up.stdout.contains("db: up: 127.0.0.1:\(local) -> 127.0.0.1:\(echo.port), 127.0.0.1:\(socks) -> socks via \(Env.userName)@127.0.0.1:\(server.port)"), up.stdout)
        assertEchoes(local)
        XCTAssertEqual(harness.listed("db")?.forwards.map(\.local), ["127.0.0.1:\(local)", "127.0.0.1:\(socks)"])
        let bare = harness.tunnel(["up", "bare"])
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.stderr.contains("tunnel: bare: \(harness.configPath):5:1: no forward: the profile writes no forward, dynamic or remote, and ssh_config has no LocalForward, DynamicForward or RemoteForward for bare"), bare.stderr)
    }

    /// A reload reads ssh_config again: a tunnel whose host it now describes
    /// otherwise restarts, one it describes the same way is left alone, and a
    /// key newly written (even with ssh_config's value) counts as a change.
    func testReload_readsSSHConfigAgain_andRestartsOnlyTheTunnelsItNowResolvesOtherwise() throws {
        let login = "IdentityFile \(server.userKey)\nUserKnownHostsFile \(harness.knownHosts)"
        writeSSHConfig([("db", login + "\nServerAliveInterval 2"), ("web", login)])
        let ports = writeProfiles(["db", "web"])
        XCTAssertEqual(harness.tunnel(["up", "db", "web"]).status, 0, harness.supervisorLog)
        // A connection through web stays open across the reloads: web is never restarted.
        let held = try XCTUnwrap(Net.connect(ports["web"]!, timeout: 10))
        defer { close(held) }
        XCTAssertTrue(Net.sendAll(held, Array("1".utf8)))
        XCTAssertEqual(Net.readExactly(held, 1), Array("1".utf8))

        let same = harness.tunnel(["reload"], timeout: 30)
        XCTAssertTrue(same.stdout.contains("db: unchanged") && same.stdout.contains("web: unchanged"), same.output)

        writeSSHConfig([("db", login + "\nServerAliveInterval 3"), ("web", login)])
        let edited = harness.tunnel(["reload"], timeout: 30)
        XCTAssertTrue(edited.stdout.contains("db: restarted") && edited.stdout.contains("web: unchanged"), edited.output)
        XCTAssertTrue(harness.supervisorLog.contains("reload: db changed in ssh_config; restarting it"), harness.supervisorLog)
        XCTAssertTrue(harness.tunnel(["status", "db"]).stdout.contains("keepalive 3 s"), harness.tunnel(["status", "db"]).stdout)
        assertEchoes(ports["db"])

        XCTAssertTrue(Net.sendAll(held, Array("2".utf8)))
        XCTAssertEqual(Net.readExactly(held, 1), Array("2".utf8), "web's connection survived both reloads")

        // keepalive = 3 written where ssh_config said 3 for db: a change all the same (ssh_config no longer decides it).
        harness.writeConfig(read(harness.configPath).replacingOccurrences(of: "connect_timeout = 5\n", with: "connect_timeout = 5\nkeepalive = 3\n"))
        let written = harness.tunnel(["reload"], timeout: 30)
        XCTAssertTrue(written.stdout.contains("db: restarted") && written.stdout.contains("web: restarted"), written.output)
    }
}
