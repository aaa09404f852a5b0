import XCTest
@testable import TunnelConfig

/// Profiles: required keys, defaults, types, unknown keys, names.
final class ConfigProfileTests: XCTestCase {
    // MARK: - Defaults

    func testMinimalProfile_getsTheDocumentedDefaults() throws {
        let config = parseConfig("""
        [tunnels.db]
        host = "10.0.1.50"
        forward = ["5433:localhost:5432"]
        """)
        XCTAssertEqual(config.errors, [])
        let db = try profile("db", in: config)
        XCTAssertEqual(db.name, "db")
        XCTAssertEqual(db.host, "10.0.1.50")
        XCTAssertEqual(db.port, 22)
        XCTAssertEqual(db.user, "tester")
        XCTAssertNil(db.identity)
        XCTAssertEqual(db.forwards, [try ForwardSpec.parse("5433:localhost:5432")])
        XCTAssertEqual(db.knownHosts, "/home/tester/.ssh/known_hosts")
        XCTAssertEqual(db.hostKey, .strict)
        XCTAssertEqual(db.keepalive, 15)
        XCTAssertEqual(db.keepaliveCount, 3)
        XCTAssertEqual(db.connectTimeout, 10)
        XCTAssertEqual(db.holdTimeout, 10)
        XCTAssertFalse(db.isPublic)
        XCTAssertEqual(db.location, location(1, 1))
        XCTAssertEqual(db.via, "tester@10.0.1.50:22")
    }

    func testEmptyFile_decodesToNoProfiles() {
        for text in ["", "\n", "# nothing yet\n", "[tunnels]\n", "[defaults]\nuser = \"x\"\n"] {
            let config = parseConfig(text)
            XCTAssertEqual(config.errors, [], text)
            XCTAssertEqual(config.profileNames, [], text)
            XCTAssertEqual(config.validProfiles, [], text)
        }
    }

    func testEveryKey_isReadIntoTheProfile() throws {
        let db = try profile("db", in: parseConfig("""
        [tunnels.db]
        host = "bastion.example.com"
        port = 2222
        user = "deploy"
        identity = "~/.ssh/deploy_ed25519"
        forward = ["5433:localhost:5432", "[::1]:6380:cache:6379"]
        known_hosts = "/etc/tunnel/known_hosts"
        host_key = "accept-new"
        keepalive = 30
        keepalive_count = 5
        connect_timeout = 20
        hold_timeout = 0
        public = true
        sessions = 3
        """))
        XCTAssertEqual(db.host, "bastion.example.com")
        XCTAssertEqual(db.port, 2222)
        XCTAssertEqual(db.user, "deploy")
        XCTAssertEqual(db.identity, "/home/tester/.ssh/deploy_ed25519")
        XCTAssertEqual(db.forwards.map(\.text), ["5433:localhost:5432", "[::1]:6380:cache:6379"])
        XCTAssertEqual(db.knownHosts, "/etc/tunnel/known_hosts")
        XCTAssertEqual(db.hostKey, .acceptNew)
        XCTAssertEqual(db.keepalive, 30)
        XCTAssertEqual(db.keepaliveCount, 5)
        XCTAssertEqual(db.connectTimeout, 20)
        XCTAssertEqual(db.holdTimeout, 0)
        XCTAssertTrue(db.isPublic)
        XCTAssertEqual(db.sessions, 3)
        XCTAssertEqual(db.maxSessions, 4, "max_sessions defaults to 4")
        XCTAssertEqual(db.via, "deploy@bastion.example.com:2222")
    }

    func testDefaults_areMergedIntoEveryProfile() throws {
        let config = parseConfig("""
        [defaults]
        user = "rahul"
        identity = "~/.ssh/work"
        keepalive = 5
        host_key = "accept-new"

        [tunnels.db]
        host = "10.0.1.50"
        forward = "5433:localhost:5432"

        [tunnels.cache]
        host = "10.0.1.51"
        forward = "6380:localhost:6379"
        """)
        XCTAssertEqual(config.errors, [])
        for name in ["db", "cache"] {
            let p = try profile(name, in: config)
            XCTAssertEqual(p.user, "rahul")
            XCTAssertEqual(p.identity, "/home/tester/.ssh/work")
            XCTAssertEqual(p.keepalive, 5)
            XCTAssertEqual(p.hostKey, .acceptNew)
            XCTAssertEqual(p.keepaliveCount, 3, "keys absent from both come from the built-in defaults")
            XCTAssertEqual(p.sessions, 1, "one SSH connection unless asked")
            XCTAssertEqual(p.maxSessions, 4, "up to 4 while clients queue for channels")
        }
    }

    func testTunnelKeys_overrideDefaults() throws {
        let config = parseConfig("""
        [defaults]
        user = "rahul"
        port = 2200
        public = true

        [tunnels.db]
        host = "10.0.1.50"
        user = "postgres"
        public = false
        forward = "5433:localhost:5432"
        """)
        let db = try profile("db", in: config)
        XCTAssertEqual(db.user, "postgres")
        XCTAssertEqual(db.port, 2200)
        XCTAssertFalse(db.isPublic)
    }

    func testHostInDefaults_satisfiesTheRequirement() throws {
        let config = parseConfig("""
        [defaults]
        host = "bastion"
        [tunnels.a]
        forward = "1000:a:80"
        """)
        XCTAssertEqual(try profile("a", in: config).host, "bastion")
    }

    func testForwardInDefaults_isRejected() {
        let config = parseConfig("""
        [defaults]
        forward = ["5433:localhost:5432"]

        [tunnels.db]
        host = "10.0.1.50"
        forward = "5433:localhost:5432"
        """)
        XCTAssertEqual(errorLines(config), ["2:1: defaults.forward: forward is not allowed in [defaults]; list forwards in each [tunnels.NAME]"])
        XCTAssertEqual(profileErrors("db", in: config).count, 1, "a bad [defaults] breaks every profile")
    }

    func testUser_defaultsToUSERThenThePasswordDatabase() throws {
        let text = "[tunnels.a]\nhost = \"h\"\nforward = \"1:h:2\"\n"
        XCTAssertEqual(try profile("a", in: parseConfig(text, environment: ["HOME": "/h", "USER": "alice"])).user, "alice")
        let fromPasswd = try profile("a", in: parseConfig(text, environment: ["HOME": "/h"])).user
        XCTAssertFalse(fromPasswd.isEmpty)
    }

    func testTilde_isExpandedInIdentityAndKnownHosts() throws {
        let a = try profile("a", in: parseConfig("""
        [tunnels.a]
        host = "h"
        forward = "1:h:2"
        identity = "~"
        known_hosts = "~/kh"
        """, environment: ["HOME": "/home/x/", "USER": "x"]))
        XCTAssertEqual(a.identity, "/home/x/")
        XCTAssertEqual(a.knownHosts, "/home/x/kh")
        let b = try profile("b", in: parseConfig("""
        [tunnels.b]
        host = "h"
        forward = "1:h:2"
        identity = "keys/~/id"
        known_hosts = "~other/kh"
        """))
        XCTAssertEqual(b.identity, "keys/~/id", "only a leading ~ is expanded")
        XCTAssertEqual(b.knownHosts, "~other/kh", "~user is not expanded")
    }

    func testForward_mayBeASingleString() throws {
        let a = try profile("a", in: parseConfig("[tunnels.a]\nhost = \"h\"\nforward = \"8080:web:80\"\n"))
        XCTAssertEqual(a.forwards.map(\.remotePort), [80])
    }

    func testIPv6Host_isStoredBareAndShownInBrackets() throws {
        let config = parseConfig("""
        [tunnels.a]
        host = "[2001:db8::1]"
        forward = "1:h:2"
        [tunnels.b]
        host = "fe80::1"
        forward = "3:h:4"
        """)
        XCTAssertEqual(try profile("a", in: config).host, "2001:db8::1")
        XCTAssertEqual(try profile("a", in: config).via, "tester@[2001:db8::1]:22")
        XCTAssertEqual(try profile("b", in: config).via, "tester@[fe80::1]:22")
    }

    // MARK: - Required keys

    func testMissingHost_isAnErrorAtTheProfileHeader() {
        let config = parseConfig("# db\n[tunnels.db]\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(errorLines(config), ["2:1: tunnels.db: missing required key \"host\""])
    }

    func testMissingForward_isAnErrorAtTheProfileHeader_whenSSHConfigCannotSupplyOne() {
        XCTAssertEqual(errorLines(parseConfig("[tunnels.db]\nhost = \"h\"\n")), [], "ssh_config's LocalForward may supply it")
        let config = parseConfig("[tunnels.db]\nhost = \"h\"\nssh_config = \"none\"\n")
        XCTAssertEqual(errorLines(config), ["1:1: tunnels.db: missing required key \"forward\" (a profile needs at least one of \"forward\", \"dynamic\", \"remote\" when ssh_config = \"none\")"])
    }

    func testEmptyProfile_reportsBothMissingKeys() {
        XCTAssertEqual(errorLines(parseConfig("[defaults]\nssh_config = \"none\"\n[tunnels.db]\n")), [
            "3:1: tunnels.db: missing required key \"host\"",
            "3:1: tunnels.db: missing required key \"forward\" (a profile needs at least one of \"forward\", \"dynamic\", \"remote\" when ssh_config = \"none\")",
        ])
    }

    // MARK: - Types and ranges

    /// Each key with a wrongly typed value: the message names the key, what was expected and what was found.
    func testEveryKey_reportsWrongTypes() {
        let cases: [(String, String)] = [
            (#"host = 1"#, #"tunnels.db.host: expected a string, found an integer (1)"#),
            (#"port = "abc""#, #"tunnels.db.port: expected an integer, found a string ("abc")"#),
            (#"port = 22.0"#, #"tunnels.db.port: expected an integer, found a float (22.0)"#),
            (#"user = ["a"]"#, #"tunnels.db.user: expected a string, found an array"#),
            (#"identity = true"#, #"tunnels.db.identity: expected a string, found a boolean (true)"#),
            (#"known_hosts = {}"#, #"tunnels.db.known_hosts: expected a string, found a table"#),
            (#"host_key = 1979-05-27"#, #"tunnels.db.host_key: expected a string, found a date (1979-05-27)"#),
            (#"keepalive = "15""#, #"tunnels.db.keepalive: expected an integer, found a string ("15")"#),
            (#"keepalive_count = 1979-05-27T07:32:00Z"#, #"tunnels.db.keepalive_count: expected an integer, found a date-time (1979-05-27T07:32:00Z)"#),
            (#"connect_timeout = 07:32:00"#, #"tunnels.db.connect_timeout: expected an integer, found a time (07:32:00)"#),
            (#"hold_timeout = false"#, #"tunnels.db.hold_timeout: expected an integer, found a boolean (false)"#),
            (#"public = "yes""#, #"tunnels.db.public: expected a boolean (true or false), found a string ("yes")"#),
            (#"public = 1"#, #"tunnels.db.public: expected a boolean (true or false), found an integer (1)"#),
        ]
        for (line, message) in cases {
            let isHost = line.hasPrefix("host ")
            let text = "[tunnels.db]\nforward = \"1:h:2\"\n" + (isHost ? "" : "host = \"h\"\n") + line + "\n"
            let column = line.distance(from: line.startIndex, to: line.firstIndex(of: "=")!) + 3
            let expectedLine = isHost ? 3 : 4
            XCTAssertEqual(errorLines(parseConfig(text)), ["\(expectedLine):\(column): \(message)"], line)
        }
    }

    func testForward_reportsWrongTypes() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = 5433\n",
                          "3:11: tunnels.db.forward: expected a string or an array of strings, found an integer (5433)")
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = []\n",
                          "3:11: tunnels.db.forward: expected at least one forward, found an empty array")
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = [\"1:h:2\", 5433]\n",
                          "3:21: tunnels.db.forward[1]: expected a string, found an integer (5433)")
    }

    func testNumericKeys_reportOutOfRangeValues() {
        let cases: [(String, String)] = [
            ("port = 0", "tunnels.db.port: 0 is out of range (1-65535)"),
            ("port = 65536", "tunnels.db.port: 65536 is out of range (1-65535)"),
            ("keepalive = -1", "tunnels.db.keepalive: -1 is out of range (0-86400)"),
            ("keepalive = 86401", "tunnels.db.keepalive: 86401 is out of range (0-86400)"),
            ("keepalive_count = 0", "tunnels.db.keepalive_count: 0 is out of range (1-1000)"),
            ("connect_timeout = 0", "tunnels.db.connect_timeout: 0 is out of range (1-86400)"),
            ("hold_timeout = -5", "tunnels.db.hold_timeout: -5 is out of range (0-86400)"),
            ("hold_timeout = 9223372036854775807", "tunnels.db.hold_timeout: 9223372036854775807 is out of range (0-86400)"),
            ("sessions = 0", "tunnels.db.sessions: 0 is out of range (1-8)"),
            ("sessions = 9", "tunnels.db.sessions: 9 is out of range (1-8)"),
            ("max_sessions = 0", "tunnels.db.max_sessions: 0 is out of range (1-8)"),
            ("max_sessions = 9", "tunnels.db.max_sessions: 9 is out of range (1-8)"),
            ("max_sessions = \"4\"", "tunnels.db.max_sessions: expected an integer, found a string (\"4\")"),
        ]
        for (line, message) in cases {
            let column = line.distance(from: line.startIndex, to: line.firstIndex(of: "=")!) + 3
            assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\n\(line)\n", "4:\(column): \(message)")
        }
    }

    func testNumericKeys_acceptTheirBounds() throws {
        let p = try profile("db", in: parseConfig("""
        [tunnels.db]
        host = "h"
        forward = "1:h:2"
        port = 65535
        keepalive = 0
        keepalive_count = 1
        connect_timeout = 1
        hold_timeout = 86400
        sessions = 8
        max_sessions = 8
        """))
        XCTAssertEqual([Int(p.port), p.keepalive, p.keepaliveCount, p.connectTimeout, p.holdTimeout, p.sessions, p.maxSessions],
                       [65535, 0, 1, 1, 86400, 8, 8])
    }

    func testMaxSessions_defaultsToFourOrSessions_andMayNotBeFewerThanSessions() throws {
        let wide = try profile("db", in: parseConfig("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nsessions = 6\n"))
        XCTAssertEqual(wide.maxSessions, 6, "never fewer than sessions")
        let off = try profile("db", in: parseConfig("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nmax_sessions = 1\n"))
        XCTAssertEqual([off.sessions, off.maxSessions], [1, 1], "max_sessions = 1: no extra connections")
        let inherited = try profile("db", in: parseConfig("[defaults]\nmax_sessions = 2\n[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\n"))
        XCTAssertEqual(inherited.maxSessions, 2)
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nsessions = 3\nmax_sessions = 2\n",
                          "5:16: tunnels.db.max_sessions: 2 is fewer than sessions = 3 of tunnels.db; max_sessions counts those too")
        assertSingleError("[defaults]\nmax_sessions = 2\n[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nsessions = 3\n",
                          "2:16: defaults.max_sessions: 2 is fewer than sessions = 3 of tunnels.db; max_sessions counts those too")
    }

    func testHost_mustBeNonEmptyWithoutWhitespace() {
        assertSingleError("[tunnels.db]\nhost = \"\"\nforward = \"1:h:2\"\n", "2:8: tunnels.db.host: must not be empty")
        assertSingleError("[tunnels.db]\nhost = \"my host\"\nforward = \"1:h:2\"\n",
                          "2:8: tunnels.db.host: \"my host\" must not contain whitespace or control characters")
        assertSingleError("[tunnels.db]\nhost = \"[nope]\"\nforward = \"1:h:2\"\n", "2:8: tunnels.db.host: \"[nope]\" is not an IPv6 address")
        assertSingleError("[tunnels.db]\nhost = \"-G\"\nforward = \"1:h:2\"\n", "2:8: tunnels.db.host: \"-G\" is not a host name (it starts with \"-\")")
        // A user too: `ssh -G -l -oProxyCommand=id` would take it as an option.
        assertSingleError("[tunnels.db]\nhost = \"h\"\nuser = \"-oProxyCommand=id\"\nforward = \"1:h:2\"\n",
                          "3:8: tunnels.db.user: \"-oProxyCommand=id\" is not a user name (it starts with \"-\")")
    }

    func testUserIdentityAndKnownHosts_mustNotBeEmpty() {
        for key in ["user", "identity", "known_hosts"] {
            assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\n\(key) = \"\"\n",
                              "4:\(key.count + 4): tunnels.db.\(key): must not be empty")
        }
    }

    func testHostKey_acceptsOnlyTheTwoPolicies() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nhost_key = \"accept_new\"\n",
                          "4:12: tunnels.db.host_key: expected \"strict\" or \"accept-new\", found \"accept_new\" (did you mean \"accept-new\"?)")
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nhost_key = \"no\"\n",
                          "4:12: tunnels.db.host_key: expected \"strict\" or \"accept-new\", found \"no\"")
    }

    func testBadForwardSpec_isReportedAtItsString() {
        assertSingleError("""
        [tunnels.db]
        host = "h"
        forward = [
          "5433:localhost:5432",
          "5434:localhost:99999",
        ]
        """, #"5:3: tunnels.db: forward "5434:localhost:99999": remote port 99999 is out of range (1-65535)"#)
    }

    // MARK: - Unknown keys

    func testUnknownKeyInAProfile_suggestsTheClosestKey() {
        assertSingleError("[tunnels.db]\nhots = \"10.0.1.50\"\nforward = \"1:h:2\"\nhost = \"h\"\n",
                          #"2:1: tunnels.db: unknown key "hots" (did you mean "host"?)"#)
    }

    func testUnknownKey_suggestionsCoverTyposCaseAndSeparators() {
        XCTAssertEqual(closestMatch("prot", among: ConfigReader.tunnelKeys), "port")
        XCTAssertEqual(closestMatch("keepalive_cout", among: ConfigReader.tunnelKeys), "keepalive_count")
        XCTAssertEqual(closestMatch("connect-timeout", among: ConfigReader.tunnelKeys), "connect_timeout")
        XCTAssertEqual(closestMatch("KnownHosts", among: ConfigReader.tunnelKeys), "known_hosts")
        XCTAssertEqual(closestMatch("forwards", among: ConfigReader.tunnelKeys), "forward")
        XCTAssertEqual(closestMatch("pubilc", among: ConfigReader.tunnelKeys), "public")
        XCTAssertNil(closestMatch("color", among: ConfigReader.tunnelKeys))
        XCTAssertNil(closestMatch("x", among: ConfigReader.tunnelKeys))
    }

    func testUnknownSSHConfigSpelling_suggestsOurKey() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nIdentityFile = \"~/.ssh/k\"\n",
                          #"4:1: tunnels.db: unknown key "IdentityFile" (did you mean "identity"?)"#)
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nconnections = 2\n",
                          #"4:1: tunnels.db: unknown key "connections" (did you mean "sessions"?)"#)
        XCTAssertEqual(errorLines(parseConfig("[tunnels.db]\nHostName = \"h\"\nforward = \"1:h:2\"\n")), [
            "1:1: tunnels.db: missing required key \"host\"",
            #"2:1: tunnels.db: unknown key "HostName" (did you mean "host"?)"#,
        ])
    }

    func testUnknownKeyWithNothingClose_hasNoSuggestion() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\ncolor = \"red\"\n",
                          #"4:1: tunnels.db: unknown key "color""#)
    }

    func testUnknownKeyInDefaults_isAnError() {
        assertSingleError("[defaults]\nusr = \"x\"\n", #"2:1: defaults: unknown key "usr" (did you mean "user"?)"#)
    }

    func testUnknownTopLevelKey_suggestsTheClosestSection() {
        assertSingleError("[tunnel.db]\nhost = \"h\"\nforward = \"1:h:2\"\n", #"1:2: unknown key "tunnel" (did you mean "tunnels"?)"#)
        assertSingleError("[default]\nuser = \"x\"\n", #"1:2: unknown key "default" (did you mean "defaults"?)"#)
    }

    func testTunnelKeyAtTopLevel_pointsToTheRightSection() {
        assertSingleError("user = \"x\"\n", #"1:1: unknown key "user" at the top level (tunnel settings go under [tunnels.NAME] or [defaults])"#)
    }

    func testProfileOutsideTunnels_suggestsTheTunnelsHeader() {
        assertSingleError("[db]\nhost = \"h\"\nforward = \"1:h:2\"\n", #"1:2: unknown key "db" (did you mean [tunnels.db]?)"#)
    }

    // MARK: - Structure and names

    func testNonTableUnderTunnels_isAnError() {
        let config = parseConfig("[tunnels]\ndb = \"10.0.1.50\"\n")
        XCTAssertEqual(errorLines(config), [#"2:6: tunnels.db: expected a table ([tunnels.db]), found a string ("10.0.1.50")"#])
        XCTAssertEqual(config.profileNames, ["db"])
    }

    func testArrayOfTablesUnderTunnels_isAnError() {
        assertSingleError("[[tunnels.db]]\nhost = \"h\"\nforward = \"1:h:2\"\n",
                          "1:1: tunnels.db: expected a table ([tunnels.db]), found an array of tables")
    }

    func testTunnelsThatIsNotATable_isAnError() {
        assertSingleError("tunnels = [\"db\"]\n", "1:11: tunnels: expected a table of profiles ([tunnels.NAME]), found an array")
        assertSingleError("defaults = 1\n", "1:12: defaults: expected a table ([defaults]), found an integer (1)")
    }

    func testProfilesDefinedInlineOrWithDottedKeys_work() throws {
        let config = parseConfig("""
        tunnels.a.host = "h"
        tunnels.a.forward = "1:h:2"
        tunnels.b = { host = "h", forward = "3:h:4" }
        """)
        XCTAssertEqual(config.errors, [])
        XCTAssertEqual(config.profileNames, ["a", "b"])
        XCTAssertEqual(try profile("b", in: config).forwards.map(\.localPort), [3])
    }

    func testProfileNames_allowLettersDigitsUnderscoreDotAndDash() throws {
        let config = parseConfig("""
        [tunnels."db.prod-2_a"]
        host = "h"
        forward = "1:h:2"
        """)
        XCTAssertEqual(try profile("db.prod-2_a", in: config).name, "db.prod-2_a")
    }

    func testProfileNameWithOtherCharacters_namesTheAllowedCharacters() {
        let config = parseConfig("[tunnels.\"my db\"]\nhost = \"h\"\nforward = \"1:h:2\"\n")
        XCTAssertEqual(errorLines(config), [#"1:10: tunnels."my db": profile name "my db" may only contain letters, digits, "_", "." and "-", and may not start with "-" (the command line would take it for an option)"#])
        XCTAssertEqual(config.profileNames, ["my db"])
        // `tunnel up -x` or `tunnel down --all` could never name it.
        for name in ["-x", "--all"] {
            let dashed = parseConfig("[tunnels.\"\(name)\"]\nhost = \"h\"\nforward = \"1:h:2\"\n")
            XCTAssertEqual(dashed.errors.count, 1, "\(name): \(errorLines(dashed))")
        }
    }

    func testDuplicateProfileNames_areASyntaxErrorThatBreaksEveryProfile() {
        let config = parseConfig("""
        [tunnels.db]
        host = "a"
        forward = "1:h:2"

        [tunnels.web]
        host = "w"
        forward = "3:h:4"

        [tunnels.db]
        host = "b"
        forward = "5:h:6"
        """)
        XCTAssertEqual(errorLines(config), ["9:1: table [tunnels.db] is already defined at 1:1"])
        XCTAssertEqual(profileErrors("web", in: config), ["9:1: table [tunnels.db] is already defined at 1:1"])
        XCTAssertEqual(config.validProfiles, [])
        XCTAssertEqual(config.profileNames, ["db", "web"], "names read before the error are still listed")
    }

    func testProfileNames_keepFileOrderIncludingBrokenProfiles() {
        let config = parseConfig("""
        [tunnels.zeta]
        host = "h"
        forward = "1:h:2"
        [tunnels.alpha]
        forward = "3:h:4"
        [tunnels.mid]
        host = "h"
        forward = "5:h:6"
        """)
        XCTAssertEqual(config.profileNames, ["zeta", "alpha", "mid"])
        XCTAssertEqual(config.validProfiles.map(\.name), ["zeta", "mid"])
    }

    // MARK: - Whole files

    func testFileWithThreeMistakes_reportsEachAtItsLine() {
        let config = parseConfig("""
        [defaults]
        keepalive = "15"

        [tunnels.db]
        hots = "10.0.1.50"
        host = "10.0.1.50"
        forward = ["5433:localhost:5432"]

        [tunnels.web]
        host = "10.0.1.60"
        forward = ["8080:localhost:99999"]
        """)
        XCTAssertEqual(errorLines(config), [
            #"2:13: defaults.keepalive: expected an integer, found a string ("15")"#,
            #"5:1: tunnels.db: unknown key "hots" (did you mean "host"?)"#,
            #"11:12: tunnels.web: forward "8080:localhost:99999": remote port 99999 is out of range (1-65535)"#,
        ])
        XCTAssertEqual(config.errors.first?.description,
                       #"/cfg/tunnels.toml:2:13: defaults.keepalive: expected an integer, found a string ("15")"#)
    }

    func testSyntaxError_isReportedWithoutThrowingAndBreaksEveryProfile() {
        let config = parseConfig("""
        [tunnels.db]
        host = "h"
        forward = "1:h:2"

        [tunnels.web]
        host = "w
        """)
        XCTAssertEqual(errorLines(config), ["6:8: unterminated string: missing closing \""])
        XCTAssertEqual(profileErrors("db", in: config), ["6:8: unterminated string: missing closing \""])
        XCTAssertEqual(profileErrors("later", in: config), ["6:8: unterminated string: missing closing \""],
                       "after a syntax error an unknown name may just be past the error")
    }

    func testOneProfilesErrors_doNotBreakAnother() throws {
        let config = parseConfig("""
        [tunnels.good]
        host = "h"
        forward = "1:h:2"

        [tunnels.bad]
        host = "h"
        port = "22"
        forward = "3:h:4"
        """)
        XCTAssertEqual(try profile("good", in: config).name, "good")
        XCTAssertEqual(profileErrors("bad", in: config), [#"7:8: tunnels.bad.port: expected an integer, found a string ("22")"#])
        XCTAssertEqual(config.validProfiles.map(\.name), ["good"])
    }

    func testFileLevelErrors_breakEveryProfile() {
        let config = parseConfig("""
        colour = "blue"
        [tunnels.good]
        host = "h"
        forward = "1:h:2"
        """)
        XCTAssertEqual(profileErrors("good", in: config), [#"1:1: unknown key "colour""#])
        XCTAssertEqual(config.validProfiles, [])
    }

    func testUnknownProfileName_listsTheProfiles() {
        let config = parseConfig("[tunnels.a]\nhost = \"h\"\nforward = \"1:h:2\"\n[tunnels.b]\nhost = \"h\"\nforward = \"3:h:4\"\n")
        XCTAssertEqual(profileErrors("x", in: config), [#"no profile named "x" in /cfg/tunnels.toml (profiles: a, b)"#])
        XCTAssertEqual(profileErrors("x", in: parseConfig("")), [#"no profile named "x" in /cfg/tunnels.toml (it defines no profiles)"#])
    }

    func testProfileEquality_ignoresTheLocation() throws {
        let first = try profile("db", in: parseConfig("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\n"))
        let moved = try profile("db", in: parseConfig("\n\n# moved\n[tunnels.db]\nforward = \"1:h:2\"\nhost = \"h\"\n"))
        let changed = try profile("db", in: parseConfig("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:3\"\n"))
        XCTAssertNotEqual(first.location, moved.location)
        XCTAssertEqual(first, moved)
        XCTAssertNotEqual(first, changed)
    }

    func testErrors_areSortedByPosition() {
        let config = parseConfig("""
        [tunnels.b]
        host = "h"
        forward = "1:h:2"
        zzz = 1
        [tunnels.a]
        forward = "5:h:6"
        aaa = 1
        [defaults]
        qqq = 1
        """)
        XCTAssertEqual(config.errors.compactMap(\.location?.line), [4, 5, 7, 9])
    }
}

final class LazyConfigTests: XCTestCase {
    func testLazy_isOffByDefault_with300sIdle_andBothKeysAreRead() throws {
        let config = parseConfig("""
        [defaults]
        idle_timeout = 60

        [tunnels.eager]
        host = "h"
        forward = "1:h:2"

        [tunnels.lazy]
        host = "h"
        forward = "3:h:4"
        lazy = true
        idle_timeout = 5
        """)
        let eager = try profile("eager", in: config), lazy = try profile("lazy", in: config)
        XCTAssertFalse(eager.lazy)
        XCTAssertEqual(eager.idleTimeout, 60)
        XCTAssertTrue(lazy.lazy)
        XCTAssertEqual(lazy.idleTimeout, 5)
        XCTAssertEqual(try profile("x", in: parseConfig("[tunnels.x]\nhost = \"h\"\nforward = \"1:h:2\"\n")).idleTimeout, 300)
        XCTAssertNotEqual(eager, { var p = eager; p.lazy = true; return p }(), "a reload notices lazy changing")
    }

    func testLazy_badValues_nameTheKey() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nlazy = \"yes\"\n",
                          #"4:8: tunnels.db.lazy: expected a boolean (true or false), found a string ("yes")"#)
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nidle_timeout = 0\n",
                          "4:16: tunnels.db.idle_timeout: 0 is out of range (1-604800)")
    }

    func testLazy_withARemoteForward_isRefusedAtTheLazyKey() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nremote = \"8080:localhost:80\"\nlazy = true\n",
                          #"4:8: tunnels.db: lazy = true cannot go with remote "8080:localhost:80": the server listens for a remote forward only while connected, and a lazy tunnel connects only when a local client arrives"#)
    }
}
