import XCTest
@testable import TunnelConfig

final class SSHConfigAliasTests: XCTestCase {
    private func find(_ host: String, _ text: String) -> SSHConfigAlias? {
        SSHConfigAlias.find(host: host, configText: text, displayPath: "~/.ssh/config")
    }

    func testLiteralHostAlias_isFound_withItsLineAndSettings_firstValueWins() throws {
        let text = """
        # work
        Host github.com
          User git
        Host db-bastion prod
          HostName 10.0.1.50
          user rahul
          Port=2222
          HostName 10.9.9.9
          IdentityFile "~/.ssh/id work"
          ForwardAgent yes
        Host other
          HostName 10.0.0.1
        """
        let alias = try XCTUnwrap(find("prod", text))
        XCTAssertEqual(alias.location, "~/.ssh/config:4")
        XCTAssertEqual(alias.settings.map(\.key), ["HostName", "User", "Port", "IdentityFile"])
        XCTAssertEqual(alias.settings.map(\.value), ["10.0.1.50", "rahul", "2222", "~/.ssh/id work"])
        XCTAssertEqual(alias.hint(for: "prod", .sshMissing),
                       "\"prod\" is a Host alias in ~/.ssh/config:4 (HostName 10.0.1.50, User rahul, Port 2222, IdentityFile ~/.ssh/id work); "
                       + "tunnel reads ssh_config through `ssh -G`, and ssh is not installed (apt-get install openssh-client); "
                       + "or in the profile, set host = \"10.0.1.50\", user = \"rahul\", port = 2222, identity = \"~/.ssh/id work\"")
    }

    func testLaterBlocksNamingTheAlias_addWhatTheFirstDoesNotSet_asSSHMerges() throws {
        let text = "Host hb\n  HostName 10.0.1.50\nHost other\n  Port 1\nHost hb backup\n  Port 2222\n  HostName 10.9.9.9\n  User ops\n"
        let alias = try XCTUnwrap(find("hb", text))
        XCTAssertEqual(alias.location, "~/.ssh/config:1")
        XCTAssertEqual(alias.settings.map(\.key), ["HostName", "Port", "User"])
        XCTAssertEqual(alias.settings.map(\.value), ["10.0.1.50", "2222", "ops"])
    }

    func testWildcardsAndOtherNames_areNotFollowed() {
        let text = "Host *.corp prod-*\n  HostName %h.example\nHost prodx\n  HostName 1.2.3.4\n"
        XCTAssertNil(find("prod-db", text))
        XCTAssertNil(find("a.corp", text))
        XCTAssertNil(find("prod", text))
        XCTAssertNil(find("prod", ""))
    }

    func testMatchBlock_endsTheHostBlock() throws {
        let alias = try XCTUnwrap(find("b", "Host b\n  User u\nMatch host b\n  HostName 9.9.9.9\n"))
        XCTAssertEqual(alias.settings.map(\.key), ["User"])
    }

    func testProxyJump_becomesTheJumpKeyOfTheSuggestedProfile() throws {
        let alias = try XCTUnwrap(find("inner", "Host inner\n  HostName 10.1.1.1\n  ProxyJump bastion\n"))
        XCTAssertEqual(alias.hint(for: "inner", .turnedOff),
                       "\"inner\" is a Host alias in ~/.ssh/config:1 (HostName 10.1.1.1, ProxyJump bastion); "
                       + "ssh_config = \"none\" keeps tunnel from reading ssh_config; or in the profile, set host = \"10.1.1.1\", jump = \"bastion\"")
    }

    func testAliasWithNoSettings_stillSaysItIsAnAliasAndWhySSHDidNotResolveIt() throws {
        let alias = try XCTUnwrap(find("x", "Host x\nHost y\n  User z\n"))
        XCTAssertEqual(alias.hint(for: "x", .notSeenBySSH),
                       "\"x\" is a Host alias in ~/.ssh/config:1; `ssh -G` did not see it (ssh reads ~/.ssh/config of the password database's home directory, not $HOME)")
    }

    func testNoAliasFound_onlyAMissingSSHIsWorthAHint() {
        XCTAssertEqual(SSHConfigAlias.hint(unresolved: .sshMissing),
                       "if it is an ssh_config alias: tunnel reads ssh_config through `ssh -G`, and ssh is not installed (apt-get install openssh-client)")
        XCTAssertNil(SSHConfigAlias.hint(unresolved: .turnedOff))
        XCTAssertNil(SSHConfigAlias.hint(unresolved: .notSeenBySSH))
    }
}
