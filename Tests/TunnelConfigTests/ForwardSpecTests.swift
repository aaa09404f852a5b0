import XCTest
@testable import TunnelConfig

/// `ssh -L` forward specs: `[bind:]port:host:hostport`.
final class ForwardSpecTests: XCTestCase {
    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> ForwardSpec {
        do {
            return try ForwardSpec.parse(text)
        } catch {
            XCTFail("unexpected error: \(error)", file: file, line: line)
            throw error
        }
    }

    private func assertError(_ text: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let spec = try ForwardSpec.parse(text)
            XCTFail("expected an error, got \(spec)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.description, expected, file: file, line: line)
            XCTAssertEqual(error.spec, text, file: file, line: line)
        }
    }

    // MARK: - Valid specs

    func testForwardSpec_withoutBind_bindsIPv4Loopback() throws {
        let spec = try parse("5433:localhost:5432")
        XCTAssertEqual(spec.bind, BindAddress(host: "127.0.0.1", isIPv6: false))
        XCTAssertEqual(spec.localPort, 5433)
        XCTAssertEqual(spec.remoteHost, "localhost")
        XCTAssertEqual(spec.remotePort, 5432)
        XCTAssertEqual(spec.text, "5433:localhost:5432")
        XCTAssertFalse(spec.isPublic)
        XCTAssertTrue(spec.bind.isLoopback)
    }

    func testForwardSpec_withIPv4Bind_parses() throws {
        let spec = try parse("127.0.0.2:8080:web.internal:80")
        XCTAssertEqual(spec.bind.host, "127.0.0.2")
        XCTAssertFalse(spec.bind.isIPv6)
        XCTAssertTrue(spec.bind.isLoopback, "all of 127.0.0.0/8 is loopback")
        XCTAssertEqual(spec.remoteHost, "web.internal")
    }

    func testForwardSpec_withBracketedIPv6Bind_parses() throws {
        let spec = try parse("[::1]:5433:db:5432")
        XCTAssertEqual(spec.bind.host, "::1")
        XCTAssertTrue(spec.bind.isIPv6)
        XCTAssertTrue(spec.bind.isLoopback)
        XCTAssertFalse(spec.isPublic)
        XCTAssertEqual(spec.localDescription, "[::1]:5433")
    }

    func testForwardSpec_withIPv6Bind_isCanonicalized() throws {
        let spec = try parse("[0:0:0:0:0:0:0:1]:5433:db:5432")
        XCTAssertEqual(spec.bind.host, "::1")
        XCTAssertEqual(try parse("[FE80:0::1]:80:h:80").bind.host, "fe80::1")
    }

    func testForwardSpec_withLocalhostBind_meansIPv4Loopback() throws {
        XCTAssertEqual(try parse("localhost:5433:db:5432").bind.host, "127.0.0.1")
        XCTAssertEqual(try parse("LOCALHOST:5433:db:5432").bind.host, "127.0.0.1")
    }

    func testForwardSpec_withStarOrEmptyBind_meansAllInterfaces() throws {
        for text in ["*:5433:db:5432", ":5433:db:5432", "0.0.0.0:5433:db:5432"] {
            let spec = try parse(text)
            XCTAssertEqual(spec.bind.host, "0.0.0.0", text)
            XCTAssertTrue(spec.bind.isWildcard, text)
            XCTAssertTrue(spec.isPublic, text)
            XCTAssertFalse(spec.bind.isLoopback, text)
        }
    }

    /// As ssh reads them: no bind, `localhost`, `*` and "" name both families;
    /// an address written out names only itself.
    func testIPv6Companion_onlyForNamesThatCoverBothFamilies() throws {
        let loopback6 = BindAddress(host: "::1", isIPv6: true), any6 = BindAddress(host: "::", isIPv6: true)
        let cases: [(String, BindAddress?)] = [
            ("5433:db:5432", loopback6), ("localhost:5433:db:5432", loopback6), ("LocalHost:5433:db:5432", loopback6),
            ("*:5433:db:5432", any6), (":5433:db:5432", any6),
            ("127.0.0.1:5433:db:5432", nil), ("0.0.0.0:5433:db:5432", nil), ("[::1]:5433:db:5432", nil),
            ("[::]:5433:db:5432", nil), ("192.168.1.10:5433:db:5432", nil), ("/tmp/pg.sock:db:5432", nil),
        ]
        for (text, expected) in cases { XCTAssertEqual(try parse(text).ipv6Companion, expected, text) }
        let dynamic: [(String, BindAddress?)] = [("1080", loopback6), ("localhost:1080", loopback6), ("*:1080", any6),
                                                 ("127.0.0.1:1080", nil), ("[::1]:1080", nil)]
        for (text, expected) in dynamic { XCTAssertEqual(try ForwardSpec.parseDynamic(text).ipv6Companion, expected, text) }
    }

    func testForwardSpec_withIPv6WildcardBind_isPublic() throws {
        let spec = try parse("[::]:5433:db:5432")
        XCTAssertEqual(spec.bind.host, "::")
        XCTAssertTrue(spec.bind.isWildcard)
        XCTAssertTrue(spec.isPublic)
        XCTAssertEqual(spec.localDescription, "[::]:5433")
    }

    func testForwardSpec_withLANBind_isPublicButNotWildcard() throws {
        let spec = try parse("192.168.1.10:5433:db:5432")
        XCTAssertTrue(spec.isPublic)
        XCTAssertFalse(spec.bind.isWildcard)
    }

    func testForwardSpec_withBracketedIPv6Target_storesItWithoutBrackets() throws {
        let spec = try parse("8081:[2001:db8::5]:80")
        XCTAssertEqual(spec.remoteHost, "2001:db8::5")
        XCTAssertEqual(spec.remoteDescription, "[2001:db8::5]:80 (http)")
    }

    func testForwardSpec_withIPv6BindAndIPv6Target_parses() throws {
        let spec = try parse("[::1]:8081:[::1]:8080")
        XCTAssertEqual(spec.bind.host, "::1")
        XCTAssertEqual(spec.localPort, 8081)
        XCTAssertEqual(spec.remoteHost, "::1")
        XCTAssertEqual(spec.remotePort, 8080)
    }

    func testForwardSpec_withIPv4Target_parses() throws {
        XCTAssertEqual(try parse("3307:10.0.1.50:3306").remoteHost, "10.0.1.50")
    }

    func testForwardSpec_withAutoOrZeroLocalPort_letsTheKernelPick() throws {
        XCTAssertEqual(try parse("auto:db:5432").localPort, 0)
        XCTAssertEqual(try parse("0:db:5432").localPort, 0)
        XCTAssertEqual(try parse("127.0.0.1:auto:db:5432").localDescription, "127.0.0.1:auto")
    }

    func testForwardSpec_withServiceNameRemotePort_resolvesIt() throws {
        XCTAssertEqual(try parse("5433:localhost:postgresql").remotePort, 5432)
        XCTAssertEqual(try parse("5433:localhost:postgres").remotePort, 5432)
        XCTAssertEqual(try parse("6380:cache:redis").remotePort, 6379)
        XCTAssertEqual(try parse("8443:web:https").remotePort, 443)
    }

    func testForwardSpec_portBoundaries_areAccepted() throws {
        XCTAssertEqual(try parse("1:h:1").localPort, 1)
        XCTAssertEqual(try parse("65535:h:65535").remotePort, 65535)
    }

    // MARK: - Descriptions

    func testDescriptions_showAddressesPortsAndServiceNames() throws {
        let spec = try parse("5433:localhost:5432")
        XCTAssertEqual(spec.localDescription, "127.0.0.1:5433")
        XCTAssertEqual(spec.remoteDescription, "localhost:5432 (postgresql)")
        XCTAssertEqual(spec.description, "127.0.0.1:5433 -> localhost:5432 (postgresql)")
        XCTAssertEqual(try parse("9999:h:54321").remoteDescription, "h:54321")
    }

    func testBindAddressDescription_bracketsIPv6() throws {
        XCTAssertEqual(try parse("[::1]:1:h:2").bind.description, "[::1]")
        XCTAssertEqual(try parse("1:h:2").bind.description, "127.0.0.1")
    }

    // MARK: - Errors

    func testForwardSpec_withOutOfRangeRemotePort_isAnError() {
        assertError("5433:localhost:99999", #"forward "5433:localhost:99999": remote port 99999 is out of range (1-65535)"#)
        assertError("5433:localhost:65536", #"forward "5433:localhost:65536": remote port 65536 is out of range (1-65535)"#)
    }

    func testForwardSpec_withRemotePortZero_isAnError() {
        assertError("5433:localhost:0", #"forward "5433:localhost:0": remote port 0 is out of range (1-65535)"#)
    }

    func testForwardSpec_withOutOfRangeLocalPort_isAnError() {
        assertError("65536:localhost:5432",
                    #"forward "65536:localhost:5432": local port 65536 is out of range (1-65535, or 0/auto for any free port)"#)
        assertError("99999999999999999999999:h:1",
                    #"forward "99999999999999999999999:h:1": local port 99999999999999999999999 is out of range (1-65535, or 0/auto for any free port)"#)
    }

    func testForwardSpec_withNonNumericLocalPort_isAnError() {
        assertError("abc:localhost:5432", #"forward "abc:localhost:5432": local port "abc" is not a number"#)
        assertError("-1:localhost:5432", #"forward "-1:localhost:5432": local port "-1" is not a number"#)
    }

    func testForwardSpec_withUnknownServiceName_namesIt() {
        assertError("5433:localhost:nosuchservice",
                    #"forward "5433:localhost:nosuchservice": remote port "nosuchservice" is not a number or a known service name"#)
    }

    func testForwardSpec_withMissingParts_isAnError() {
        assertError("5433:localhost", #"forward "5433:localhost": expected [bind:]port:host:hostport"#)
        assertError("5433", #"forward "5433": expected [bind:]port:host:hostport"#)
        assertError("", #"forward "": expected [bind:]port:host:hostport"#)
        assertError("a:b:c:d:e", #"forward "a:b:c:d:e": expected [bind:]port:host:hostport (put IPv6 addresses in brackets, e.g. [::1])"#)
    }

    func testForwardSpec_withEmptyFields_namesTheMissingOne() {
        assertError(":localhost:5432", #"forward ":localhost:5432": local port is missing"#)
        assertError("5433::5432", #"forward "5433::5432": remote host is missing"#)
        assertError("5433:localhost:", #"forward "5433:localhost:": remote port is missing"#)
    }

    func testForwardSpec_withUnbracketedIPv6_asksForBrackets() {
        assertError("5433:::1:5432", #"forward "5433:::1:5432": expected [bind:]port:host:hostport (put IPv6 addresses in brackets, e.g. [::1])"#)
    }

    func testForwardSpec_withBadBind_isAnError() {
        assertError("example.com:5433:db:5432",
                    #"forward "example.com:5433:db:5432": bind address must be an IP address, localhost or * (found "example.com")"#)
        assertError("300.1.1.1:5433:db:5432",
                    #"forward "300.1.1.1:5433:db:5432": bind address must be an IP address, localhost or * (found "300.1.1.1")"#)
        assertError("[nope]:5433:db:5432",
                    #"forward "[nope]:5433:db:5432": bind address must be an IP address, localhost or * (found "[nope]")"#)
        assertError("[192.168.0.1]:5433:db:5432",
                    #"forward "[192.168.0.1]:5433:db:5432": bind address must be an IP address, localhost or * (found "[192.168.0.1]")"#)
    }

    func testForwardSpec_withBadBracketedTarget_isAnError() {
        assertError("5433:[db]:5432", #"forward "5433:[db]:5432": remote host "[db]" is not an IPv6 address"#)
    }

    func testForwardSpec_withUnbalancedBrackets_isAnError() {
        assertError("[::1:5433:db:5432", #"forward "[::1:5433:db:5432": "[" without a matching "]""#)
        assertError("::1]:5433:db:5432", #"forward "::1]:5433:db:5432": "]" without a matching "[""#)
        assertError("[::1]x:5433:db:5432", #"forward "[::1]x:5433:db:5432": expected ":" after "]""#)
        assertError("x[::1]:5433:db:5432", #"forward "x[::1]:5433:db:5432": "[" may only start a field (an IPv6 address in brackets)"#)
    }

    func testForwardSpec_withWhitespace_isAnError() {
        assertError("5433: localhost:5432", #"forward "5433: localhost:5432": a forward must not contain spaces or control characters"#)
    }
}

final class ServiceNamesTests: XCTestCase {
    func testPortNamed_resolvesTheBuiltInTable() {
        let expected: [String: UInt16] = [
            "ssh": 22, "smtp": 25, "dns": 53, "domain": 53, "http": 80, "pop3": 110, "imap": 143,
            "https": 443, "ldap": 389, "ldaps": 636, "mssql": 1433, "oracle": 1521, "mysql": 3306,
            "rdp": 3389, "postgresql": 5432, "postgres": 5432, "amqp": 5672, "redis": 6379,
            "http-alt": 8080, "elasticsearch": 9200, "memcached": 11211, "mongodb": 27017, "kafka": 9092,
        ]
        for (name, port) in expected {
            XCTAssertEqual(ServiceNames.port(named: name), port, name)
        }
    }

    func testPortNamed_isCaseInsensitiveAsAFallback() {
        XCTAssertEqual(ServiceNames.port(named: "PostgreSQL"), 5432)
    }

    func testPortNamed_returnsNilForUnknownNames() {
        XCTAssertNil(ServiceNames.port(named: "nosuchservice"))
        XCTAssertNil(ServiceNames.port(named: ""))
    }

    func testNameForPort_givesTheUsualName() {
        XCTAssertEqual(ServiceNames.name(forPort: 5432), "postgresql")
        XCTAssertEqual(ServiceNames.name(forPort: 22), "ssh")
        XCTAssertEqual(ServiceNames.name(forPort: 6379), "redis")
        XCTAssertNil(ServiceNames.name(forPort: 54321))
        // Registered in /etc/services, but not what anyone means by the number.
        XCTAssertNil(ServiceNames.name(forPort: 17004))
    }

    func testTrailingColon_isNamedAsSuch_notReadAsABindAddress() {
        XCTAssertThrowsError(try ForwardSpec.parse("18010:127.0.0.1:17001:")) { error in
            XCTAssertTrue("\(error)".contains("(it ends with \":\")") && !"\(error)".contains("bind address"), "\(error)")
        }
    }

    func testServicesFile_parsingUsesTCPEntriesAndAliases() {
        let table = ServiceTable(parsingServicesFile: """
        # comment line
        ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol
        postgresql\t5432/tcp\tpostgres\t# PostgreSQL Database
        syslog\t\t514/udp
        custom 7000/tcp alias-one alias-two
        custom-dup 7000/tcp
        broken line
        bad\tx/tcp
        """)
        XCTAssertEqual(table.portByName["ssh"], 22)
        XCTAssertEqual(table.portByName["postgres"], 5432)
        XCTAssertEqual(table.nameByPort[5432], "postgresql")
        XCTAssertNil(table.portByName["syslog"], "udp entries are ignored")
        XCTAssertEqual(table.portByName["alias-two"], 7000)
        XCTAssertEqual(table.nameByPort[7000], "custom", "the first entry for a port wins")
        XCTAssertNil(table.portByName["bad"])
    }
}

/// `dynamic`: `ssh -D [bind:]port`.
final class DynamicSpecTests: XCTestCase {
    func testForms() throws {
        let plain = try ForwardSpec.parseDynamic("1080")
        XCTAssertEqual(plain.kind, .dynamic)
        XCTAssertEqual(plain.localDescription, "127.0.0.1:1080")
        XCTAssertEqual(plain.remoteDescription, "socks")
        XCTAssertEqual(plain.description, "127.0.0.1:1080 -> socks")
        XCTAssertFalse(plain.isPublic)
        XCTAssertEqual(try ForwardSpec.parseDynamic("[::1]:1081").localDescription, "[::1]:1081")
        XCTAssertEqual(try ForwardSpec.parseDynamic("localhost:1082").localDescription, "127.0.0.1:1082")
        XCTAssertTrue(try ForwardSpec.parseDynamic("*:1080").isPublic)
        XCTAssertEqual(try ForwardSpec.parseDynamic("auto").localPort, 0)
    }

    func testErrorsNameTheSpecUnderDynamic() {
        for (text, reason) in [("", "expected [bind:]port"),
                               ("1080:localhost:22", "expected [bind:]port (put IPv6 addresses in brackets, e.g. [::1]:1080)"),
                               ("socks", "local port \"socks\" is not a number"),
                               ("99999", "local port 99999 is out of range (1-65535, or 0/auto for any free port)"),
                               ("host.example:1080", "bind address must be an IP address, localhost or * (found \"host.example\")")] {
            XCTAssertThrowsError(try ForwardSpec.parseDynamic(text)) { error in
                XCTAssertEqual("\(error)", "dynamic \"\(text)\": \(reason)")
            }
        }
    }

    func testProfileKey_joinsTheForwards_andIsCheckedForOverlapsAndPublic() throws {
        let config = parseConfig("[tunnels.lab]\nhost = \"h\"\ndynamic = [\"1080\", \"[::1]:1081\"]\n")
        XCTAssertEqual(config.errors, [])
        let lab = try config.profile(named: "lab")
        XCTAssertEqual(lab.forwards.map(\.kind), [.dynamic, .dynamic])
        XCTAssertEqual(errorLines(parseConfig("[tunnels.lab]\nhost = \"h\"\nforward = \"1080:h:22\"\ndynamic = \"1080\"\n")),
                       ["4:11: tunnels.lab.dynamic: 127.0.0.1:1080 overlaps 127.0.0.1:1080 of tunnels.lab (/cfg/tunnels.toml:3:11)"])
        XCTAssertEqual(errorLines(parseConfig("[tunnels.lab]\nhost = \"h\"\ndynamic = \"0.0.0.0:1080\"\n")),
                       ["3:11: tunnels.lab: dynamic \"0.0.0.0:1080\" binds 0.0.0.0 (all interfaces), so the service would be reachable from every interface; set public = true to allow it"])
        XCTAssertEqual(errorLines(parseConfig("[defaults]\ndynamic = \"1080\"\n[tunnels.lab]\nhost = \"h\"\nforward = \"1:h:2\"\n")),
                       ["2:1: defaults.dynamic: dynamic is not allowed in [defaults]; list forwards in each [tunnels.NAME]"])
    }
}

/// `forward = "/path/to/socket:host:hostport"`: a local Unix socket.
final class UnixLocalSpecTests: XCTestCase {
    func testPath_runsToTheFirstColon() throws {
        let spec = try ForwardSpec.parse("/run/user/1000/pg/.s.PGSQL.5432:localhost:5432")
        XCTAssertEqual(spec.localPath, "/run/user/1000/pg/.s.PGSQL.5432")
        XCTAssertEqual(spec.remoteHost, "localhost")
        XCTAssertEqual(spec.remotePort, 5432)
        XCTAssertEqual(spec.localDescription, "/run/user/1000/pg/.s.PGSQL.5432")
        XCTAssertFalse(spec.isPublic)
        XCTAssertEqual(try ForwardSpec.parse("/tmp/x.sock:[::1]:https").remoteHost, "::1")
    }

    func testCollisions_areByPath() throws {
        let a = try ForwardSpec.parse("/tmp/a.sock:h:1"), b = try ForwardSpec.parse("/tmp/a.sock:h:2")
        XCTAssertTrue(a.collides(with: b))
        XCTAssertFalse(a.collides(with: try ForwardSpec.parse("/tmp/b.sock:h:1")))
        XCTAssertFalse(a.collides(with: try ForwardSpec.parse("5432:h:1")))
    }

    func testBadPaths_areNamed() {
        let long = "/" + String(repeating: "d", count: 120)
        for (text, reason) in [("/tmp/a.sock", "expected /path/to/socket:host:hostport"),
                               ("/tmp/a.sock:h", "expected /path/to/socket:host:hostport"),
                               ("/tmp/dir/:h:1", "socket path \"/tmp/dir/\" must name a file, without \"..\""),
                               ("/tmp/../etc/x:h:1", "socket path \"/tmp/../etc/x\" must name a file, without \"..\""),
                               (long + ":h:1", "socket path is 121 bytes; a Unix socket path holds at most 107")] {
            XCTAssertThrowsError(try ForwardSpec.parse(text)) { error in
                XCTAssertEqual("\(error)", "forward \"\(text)\": \(reason)")
            }
        }
    }
}
