import XCTest
@testable import TunnelConfig

final class SSHConfigEntryTests: XCTestCase {
    func testParse_keepsRepeatedKeywordsInOrder_lowercased() {
        let values = SSHConfigEntry.parse("user root\nIdentityFile ~/.ssh/a\nidentityfile ~/.ssh/b\nuserknownhostsfile /k1 /k2\n")
        XCTAssertEqual(values["user"], ["root"])
        XCTAssertEqual(values["identityfile"], ["~/.ssh/a", "~/.ssh/b"])
        XCTAssertEqual(values["userknownhostsfile"], ["/k1 /k2"])
    }

    func testExplicit_isWhatDiffersFromSSHsBuiltInDefaults() {
        let baseline = SSHConfigEntry.parse("hostname db\nport 22\nserveraliveinterval 0\nuser root\n")
        let configured = SSHConfigEntry.parse("hostname 10.0.0.5\nport 22\nserveraliveinterval 0\nuser ops\nproxyjump bastion\n")
        let entry = SSHConfigEntry(values: configured, explicit: SSHConfigEntry.explicitKeys(configured, over: baseline))
        XCTAssertEqual(entry.explicit, ["hostname", "user", "proxyjump"])
        XCTAssertNil(entry.setting("serveraliveinterval"), "ssh's default ServerAliveInterval 0 must not switch off tunnel's keepalive")
        XCTAssertNil(entry.setting("port"))
        XCTAssertEqual(entry.setting("hostname"), "10.0.0.5")
    }
}

/// How ssh_config's login keywords become a hop's login.
final class SSHConfigLoginTests: XCTestCase {
    private let base = HopLogin(identities: ["/home/u/.ssh/profile_key"], knownHosts: ["/home/u/.ssh/known_hosts"], hostKey: .strict)

    private func entry(_ text: String) -> SSHConfigEntry {
        let values = SSHConfigEntry.parse(text)
        return SSHConfigEntry(values: values, explicit: Set(values.keys))
    }

    private func login(_ text: String, written: Set<String> = []) throws -> (HopLogin, [String]) {
        var notes: [String] = []
        let login = try entry(text).login(over: base, written: written, host: "db", user: "ops", home: "/home/u", notes: &notes)
        return (login, notes)
    }

    func testEveryKeyword_isTaken() throws {
        let (login, notes) = try login("""
        identityfile ~/.ssh/one
        identityfile /keys/%r@%h
        identitiesonly yes
        identityagent ~/agent.sock
        userknownhostsfile ~/.ssh/kh1 /etc/kh2
        hostkeyalias prod-db
        hashknownhosts yes
        stricthostkeychecking accept-new
        ciphers aes256-ctr,aes128-ctr
        macs hmac-sha2-256
        """)
        XCTAssertEqual(login.identities, ["/home/u/.ssh/one", "/keys/ops@db"])
        XCTAssertTrue(login.identitiesOnly)
        XCTAssertEqual(login.agent, .socket("/home/u/agent.sock"))
        XCTAssertEqual(login.knownHosts, ["/home/u/.ssh/kh1", "/etc/kh2"])
        XCTAssertEqual(login.hostKeyAlias, "prod-db")
        XCTAssertTrue(login.hashKnownHosts)
        XCTAssertEqual(login.hostKey, .acceptNew)
        XCTAssertEqual(login.ciphers, ["aes256-ctr", "aes128-ctr"])
        XCTAssertEqual(login.macs, ["hmac-sha2-256"])
        XCTAssertEqual(notes, [])
    }

    func testNothingSet_keepsTheBase() throws {
        XCTAssertEqual(try login("").0, base)
    }

    func testKeysWrittenInTheProfile_win() throws {
        let (login, _) = try login("identityfile ~/.ssh/one\nuserknownhostsfile /kh\nstricthostkeychecking accept-new\n",
                                   written: ["identity", "known_hosts", "host_key"])
        XCTAssertEqual(login.identities, base.identities)
        XCTAssertEqual(login.knownHosts, base.knownHosts)
        XCTAssertEqual(login.hostKey, .strict)
    }

    func testStrictHostKeyCheckingNo_isAcceptNew_withANote() throws {
        let (login, notes) = try login("stricthostkeychecking no\n")
        XCTAssertEqual(login.hostKey, .acceptNew)
        XCTAssertEqual(notes, ["ssh_config says StrictHostKeyChecking no for db: tunnel records unknown host keys (accept-new) but still refuses changed ones"])
        XCTAssertEqual(try self.login("stricthostkeychecking ask\n").0.hostKey, .strict)
    }

    func testIdentityAgent_noneAndTheEnvironmentName() throws {
        XCTAssertEqual(try login("identityagent none\n").0.agent, .none)
        XCTAssertEqual(try login("identityagent SSH_AUTH_SOCK\n").0.agent, .inherited)
        XCTAssertThrowsError(try login("identityagent $OTHER_SOCK\n")) { error in
            XCTAssertEqual("\(error)", "IdentityAgent $OTHER_SOCK for db in ssh_config: tunnel takes a socket path, SSH_AUTH_SOCK or none")
        }
    }

    func testTokens_areExpanded_andAnUnknownOneIsNamed() throws {
        XCTAssertEqual(try SSHConfigEntry.expandTokens("%d/k_%h_%r_100%%", keyword: "IdentityFile", host: "db", user: "ops", home: "/home/u"), "/home/u/k_db_ops_100%")
        XCTAssertThrowsError(try SSHConfigEntry.expandTokens("~/.ssh/%C", keyword: "IdentityFile", host: "db", user: "ops", home: "/home/u")) { error in
            XCTAssertEqual("\(error)", "IdentityFile ~/.ssh/%C in ssh_config: tunnel expands %d %h %i %j %k %L %l %n %p %r %u %% there, not %C")
        }
        // The name as given, the port, the host key alias (else the name), ProxyJump, this machine's name.
        let tokens = SSHConfigEntry.Tokens(host: "10.0.1.5", user: "ops", home: "/home/u", alias: "db", port: 2222, proxyJump: "bastion")
        XCTAssertEqual(try SSHConfigEntry.expandTokens("~/.ssh/keys/%n-%p-%k-%j", keyword: "IdentityFile", tokens), "/home/u/.ssh/keys/db-2222-db-bastion")
        var aliased = tokens
        aliased.hostKeyAlias = "db.example"
        XCTAssertEqual(try SSHConfigEntry.expandTokens("%k", keyword: "IdentityFile", aliased), "db.example")
        let machine = ProcessInfo.processInfo.hostName
        XCTAssertEqual(try SSHConfigEntry.expandTokens("%l|%L", keyword: "IdentityFile", tokens),
                       "\(machine)|\(machine.split(separator: ".").first.map(String.init) ?? "")")
    }
}
