import Glibc
import TunnelTestSupport
import XCTest
@testable import TunnelConfig

/// How a profile reads ssh_config through the real `ssh -G`: jump hosts
/// looked up on their own names (nothing of the target's leaks into them),
/// the first hop's own ProxyJump or ProxyCommand, the profile's user and port
/// seen by Match and tokens, and UserKnownHostsFile as ssh prints it.
final class SSHConfigResolutionTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh"), "OpenSSH's client is what resolves ssh_config")
    }

    override func tearDown() { dir = nil }

    /// `profile` (TOML body of `[tunnels.t]`) resolved against `sshConfig`.
    private func resolve(_ sshConfig: String, _ profile: String) throws -> (profile: Profile, notes: [String]) {
        try dir.write("ssh_config", sshConfig)
        let config = parseConfig("[defaults]\nssh_config = \"\(dir.file("ssh_config"))\"\n[tunnels.t]\n" + profile)
        XCTAssertEqual(config.errors, [])
        return try config.profile(named: "t").applyingSSHConfig(.file(dir.file("ssh_config")), home: "/home/tester")
    }

    private var loginName: String { String(cString: getpwuid(getuid())!.pointee.pw_name) }

    func testJumpHost_takesNothingOfTheTargetsHostKeyAliasStrictnessOrIdentities() throws {
        let (t, _) = try resolve("""
        Host tgt
          HostName 10.9.9.9
          HostKeyAlias tgtalias
          StrictHostKeyChecking accept-new
          UserKnownHostsFile /kh/target
          IdentityFile /keys/target
          IdentitiesOnly yes
          ProxyJump bastion
        Host bastion
          HostName 10.9.9.1
          User ops
        """, "host = \"tgt\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.login.hostKeyAlias, "tgtalias")
        XCTAssertEqual(t.login.hostKey, .acceptNew)
        XCTAssertEqual(t.login.identities, ["/keys/target"])
        let hop = t.hop(0)
        XCTAssertEqual(hop.host, "10.9.9.1")
        XCTAssertEqual(hop.user, "ops")
        XCTAssertNil(hop.login.hostKeyAlias, "the bastion's key is checked under its own name")
        XCTAssertEqual(hop.login.hostKey, .strict, "an unknown bastion is refused, as ssh refuses it")
        XCTAssertEqual(hop.login.knownHosts, ["/home/tester/.ssh/known_hosts"])
        XCTAssertEqual(hop.login.identities, [], "the bastion is offered its own keys, not the target's")
        XCTAssertFalse(hop.login.identitiesOnly)
        XCTAssertEqual(t.hop(1).login, t.login, "the target keeps its own")
    }

    /// target through inner, which ssh_config reaches through outer; `outer` is outer's last line.
    private func resolveChain(outer: String) throws -> (profile: Profile, notes: [String]) {
        try resolve("""
        Host target
          HostName 10.9.9.3
          ProxyJump inner
        Host inner
          HostName 10.9.9.2
          ProxyJump outer
        Host outer
          HostName 10.9.9.1
          \(outer)
        """, "host = \"target\"\nforward = \"5433:localhost:5432\"\n")
    }

    func testFirstHop_isReachedByItsOwnProxyJump_thenItsOwnProxyCommand() throws {
        let (t, _) = try resolveChain(outer: "ProxyCommand nc -X connect -x proxy:3128 %h %p # %n %%n")
        XCTAssertEqual(t.jump.map(\.host), ["10.9.9.1", "10.9.9.2"])
        XCTAssertEqual(t.proxyCommand, "nc -X connect -x proxy:3128 %h %p # outer %%n", "%n is the first hop's name as written")
        XCTAssertEqual(t.via, "\(loginName)@10.9.9.3:22 via \(loginName)@10.9.9.2:22 via \(loginName)@10.9.9.1:22")
    }

    func testJumpChainLeadingBackIntoItself_isRefused() {
        XCTAssertThrowsError(try resolveChain(outer: "ProxyJump inner")) { error in
            XCTAssertTrue("\(error)".contains("loop"), "\(error)")
        }
    }

    func testTargetsProxyCommand_percentN_isTheAlias() throws {
        let (t, _) = try resolve("Host alias1\n  HostName 10.9.9.5\n  ProxyCommand connect %n %h %p\n", "host = \"alias1\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.host, "10.9.9.5")
        XCTAssertEqual(t.proxyCommand, "connect alias1 %h %p")
    }

    func testProfilesUserAndPort_areSeenByMatchUserAndTokens() throws {
        let config = """
        Match originalhost m2 user deploy
          IdentityFile /keys/deploy
        Host m2
          HostName 10.9.9.4
          User nobody
          UserKnownHostsFile /kh/%h_%p
        """
        let (t, _) = try resolve(config, "host = \"m2\"\nuser = \"deploy\"\nport = 2201\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.user, "deploy")
        XCTAssertEqual(t.port, 2201)
        XCTAssertEqual(t.login.identities, ["/keys/deploy"], "Match user sees the profile's user")
        XCTAssertEqual(t.login.knownHosts, ["/kh/10.9.9.4_2201"], "%p is the profile's port")
        let (plain, _) = try resolve(config, "host = \"m2\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(plain.user, "nobody")
        XCTAssertEqual(plain.login.identities, [])
        XCTAssertEqual(plain.login.knownHosts, ["/kh/10.9.9.4_22"])
    }

    func testProxyJumpHop_takesSSHsUser_evenTheLoginName_notTheProfiles() throws {
        let (t, _) = try resolve("""
        Host tgt
          HostName 10.9.9.9
          ProxyJump bastion,plain
        Host bastion
          HostName 10.9.9.1
          User \(loginName)
        Host plain
          HostName 10.9.9.2
        """, "host = \"tgt\"\nuser = \"deploy\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.user, "deploy")
        XCTAssertEqual(t.hop(0).user, loginName, "ssh_config's User, though it is the login name")
        XCTAssertEqual(t.hop(1).user, loginName, "ssh's own default for a hop is the login name")
        // The profile's own `jump` keeps its documented rule: a hop naming no user is the profile's.
        let (own, _) = try resolve("Host bastion\n  HostName 10.9.9.1\n", "host = \"10.9.9.9\"\nuser = \"deploy\"\njump = \"bastion\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(own.hop(0).user, "deploy")
    }

    func testUserKnownHostsFile_pathsWithSpaces_otherUsersHome_none_andRelative() throws {
        let forward = "host = \"h\"\nforward = \"5433:localhost:5432\"\n"
        let (spaced, _) = try resolve("Host h\n  UserKnownHostsFile \"/kh/my known hosts\" /kh/second ~root/kh\n", forward)
        let rootHome = String(cString: getpwnam("root")!.pointee.pw_dir)
        XCTAssertEqual(spaced.login.knownHosts, ["/kh/my known hosts", "/kh/second", rootHome + "/kh"])
        XCTAssertThrowsError(try resolve("Host h\n  UserKnownHostsFile none\n", forward)) { error in
            XCTAssertTrue("\(error)".hasPrefix("UserKnownHostsFile none for h in ssh_config: "), "\(error)")
        }
        XCTAssertThrowsError(try resolve("Host h\n  UserKnownHostsFile kh/relative\n", forward)) { error in
            XCTAssertTrue("\(error)".contains("kh/relative for h in ssh_config: not an absolute path"), "\(error)")
        }
        let (null, notes) = try resolve("Host h\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n", forward)
        XCTAssertEqual(null.login.knownHosts, ["/dev/null"])
        XCTAssertTrue(notes.contains { $0.contains("its host key is not checked") }, "\(notes)")
    }

    func testSSHGFailing_givesSSHsOwnFileAndLine_andTheCommandAsRun() {
        XCTAssertThrowsError(try resolve("Host h\n  HostName 10.9.9.9\n  Bogus yes\n", "host = \"h\"\nforward = \"5433:localhost:5432\"\n")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("ssh_config: \(self.dir.file("ssh_config")): line 3: Bad configuration option: bogus"), text)
            XCTAssertTrue(text.contains("(`ssh -F \(self.dir.file("ssh_config")) -G h` failed)"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
    }

    func testIdentityAgent_isTakenAsSSHGExpandedIt_notExpandedTwice() throws {
        let (t, _) = try resolve("Host h\n  IdentityAgent /run/agent%%1-%h.sock\n", "host = \"h\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.login.agent, .socket("/run/agent%1-h.sock"))
    }

    func testIdentityFile_tildeUser_isThatUsersHome() throws {
        let (t, _) = try resolve("Host h\n  IdentityFile ~root/.ssh/ka\n", "host = \"h\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(t.login.identities, [String(cString: getpwnam("root")!.pointee.pw_dir) + "/.ssh/ka"])
    }
}
