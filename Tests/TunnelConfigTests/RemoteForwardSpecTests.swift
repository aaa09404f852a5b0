import XCTest
@testable import TunnelConfig

/// `ssh -R` forward specs: `[bind:]port:host:hostport`, the server listening on bind:port.
final class RemoteForwardSpecTests: XCTestCase {
    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> RemoteForwardSpec {
        do {
            return try RemoteForwardSpec.parse(text)
        } catch {
            XCTFail("unexpected error: \(error)", file: file, line: line)
            throw error
        }
    }

    private func assertError(_ text: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let spec = try RemoteForwardSpec.parse(text)
            XCTFail("expected an error, got \(spec)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.description, expected, file: file, line: line)
            XCTAssertEqual(error.spec, text, file: file, line: line)
        }
    }

    // MARK: - Valid specs

    func testWithoutBind_theServerListensOnItsIPv4Loopback() throws {
        let spec = try parse("8080:localhost:3000")
        XCTAssertEqual(spec.bind, BindAddress(host: "127.0.0.1", isIPv6: false))
        XCTAssertEqual(spec.requestHost, "127.0.0.1")
        XCTAssertEqual(spec.port, 8080)
        XCTAssertEqual(spec.targetHost, "localhost")
        XCTAssertEqual(spec.targetPort, 3000)
        XCTAssertEqual(spec.text, "8080:localhost:3000")
        XCTAssertFalse(spec.isPublic)
        XCTAssertEqual(spec.description, "remote 127.0.0.1:8080 -> localhost:3000")
    }

    func testPortZero_orAuto_letsTheServerPick() throws {
        for text in ["0:localhost:3000", "auto:localhost:3000", "AUTO:localhost:3000"] {
            let spec = try parse(text)
            XCTAssertEqual(spec.port, 0, text)
            XCTAssertEqual(spec.listenDescription(), "127.0.0.1:auto", text)
            XCTAssertEqual(spec.listenDescription(boundPort: 43127), "127.0.0.1:43127", text)
        }
    }

    func testBracketedIPv6Bind_isLoopbackAndCanonical() throws {
        let spec = try parse("[0:0::1]:9000:localhost:3000")
        XCTAssertEqual(spec.bind.host, "::1")
        XCTAssertTrue(spec.bind.isIPv6)
        XCTAssertFalse(spec.isPublic)
        XCTAssertEqual(spec.requestHost, "::1")
        XCTAssertEqual(spec.listenDescription(), "[::1]:9000")
    }

    func testLocalhostBind_isIPv4Loopback() throws {
        XCTAssertEqual(try parse("localhost:9000:h:1").bind.host, "127.0.0.1")
    }

    func testWildcardAndAddressBinds_arePublic() throws {
        for (text, host) in [("*:8080:h:80", "0.0.0.0"), (":8080:h:80", "0.0.0.0"), ("0.0.0.0:8080:h:80", "0.0.0.0"),
                             ("[::]:8080:h:80", "::"), ("10.0.0.5:8080:h:80", "10.0.0.5")] {
            let spec = try parse(text)
            XCTAssertEqual(spec.bind.host, host, text)
            XCTAssertTrue(spec.isPublic, text)
        }
    }

    func testTarget_mayBeAnIPv6AddressInBrackets_orAServiceName() throws {
        let spec = try parse("5432:[::1]:postgresql")
        XCTAssertEqual(spec.targetHost, "::1")
        XCTAssertEqual(spec.targetPort, 5432)
        XCTAssertEqual(spec.targetDescription, "[::1]:5432 (postgresql)")
    }

    func testCollides_onlyOnTheSameFixedPortAndOverlappingAddress() throws {
        XCTAssertTrue(try parse("8080:a:1").collides(with: parse("127.0.0.1:8080:b:2")))
        XCTAssertTrue(try parse("*:8080:a:1").collides(with: parse("127.0.0.1:8080:b:2")), "the wildcard covers loopback")
        XCTAssertFalse(try parse("8080:a:1").collides(with: parse("8081:a:1")))
        XCTAssertFalse(try parse("8080:a:1").collides(with: parse("[::1]:8080:a:1")), "another family")
        XCTAssertFalse(try parse("0:a:1").collides(with: parse("0:a:1")), "the server picks a free port for each")
    }

    // MARK: - Errors

    func testWrongFieldCount_namesTheSyntax() {
        let syntax = "expected [bind:]port:host:hostport (the server listens on bind:port; host:hostport is reached from this machine)"
        assertError("", "remote \"\": " + syntax)
        assertError("8080:localhost", "remote \"8080:localhost\": " + syntax)
        assertError("a:b:c:d:e", "remote \"a:b:c:d:e\": " + syntax + " (put IPv6 addresses in brackets, e.g. [::1])")
    }

    func testRemoteSocksForm_isRefusedByName() {
        assertError("1080", "remote \"1080\": expected [bind:]port:host:hostport (the server listens on bind:port; host:hostport is reached from this machine)"
                     + " (a remote SOCKS proxy, `-R [bind:]port` alone, is not supported)")
    }

    func testUnixSockets_areRefused() {
        assertError("/tmp/app.sock:localhost:3000", "remote \"/tmp/app.sock:localhost:3000\": Unix socket paths are not supported (libssh2 1.10 forwards TCP only)")
        assertError("8080:/run/app.sock", "remote \"8080:/run/app.sock\": Unix socket paths are not supported (libssh2 1.10 forwards TCP only)")
    }

    func testPorts_outOfRangeOrNotNumbers() {
        assertError("99999:h:1", "remote \"99999:h:1\": the server's port 99999 is out of range (1-65535, or 0/auto for one the server picks)")
        assertError("web:h:1", "remote \"web:h:1\": the server's port \"web\" is not a number")
        assertError(":h:1:2", "remote \":h:1:2\": the server's port \"h\" is not a number")
        assertError("8080:h:0", "remote \"8080:h:0\": target port 0 is out of range (1-65535)")
        assertError("8080:h:nosuchservice", "remote \"8080:h:nosuchservice\": target port \"nosuchservice\" is not a number or a known service name")
        assertError("8080:h:", "remote \"8080:h:\": target port is missing")
        assertError("8080::3000", "remote \"8080::3000\": target host is missing")
    }

    func testBind_mustBeAnAddress() {
        assertError("server.example:8080:h:1",
                    "remote \"server.example:8080:h:1\": the server's bind address must be an IP address, localhost or * (found \"server.example\")")
    }

    func testBrackets_andWhitespace() {
        assertError("[::1:8080:h:1", "remote \"[::1:8080:h:1\": \"[\" without a matching \"]\"")
        assertError("8080:h]:1", "remote \"8080:h]:1\": \"]\" without a matching \"[\"")
        assertError("8080:[h]x:1", "remote \"8080:[h]x:1\": expected \":\" after \"]\"")
        assertError("8080:[nothost]:1", "remote \"8080:[nothost]:1\": target host \"[nothost]\" is not an IPv6 address")
        assertError("8080: h:1", "remote \"8080: h:1\": a forward must not contain spaces or control characters")
    }
}

/// `remote` in profiles: where the specs go, the bind rule, overlaps, positions.
final class RemoteForwardConfigTests: XCTestCase {
    func testRemoteAlone_isEnoughForAProfile() throws {
        let config = parseConfig("""
        [tunnels.web]
        host = "h"
        remote = ["8080:localhost:3000", "0:localhost:3000", "[::1]:9000:localhost:3000"]
        """)
        XCTAssertEqual(config.errors, [])
        let web = try profile("web", in: config)
        XCTAssertEqual(web.forwards, [])
        XCTAssertEqual(web.remoteForwards.map(\.text), ["8080:localhost:3000", "0:localhost:3000", "[::1]:9000:localhost:3000"])
        XCTAssertTrue(web.hasForwards)
        XCTAssertTrue(web.written.contains("remote"))
    }

    func testRemoteAsOneString_andWithForward() throws {
        let web = try profile("web", in: parseConfig("[tunnels.web]\nhost = \"h\"\nforward = \"5433:db:5432\"\nremote = \"8080:localhost:3000\"\n"))
        XCTAssertEqual(web.forwards.count, 1)
        XCTAssertEqual(web.remoteForwards, [try RemoteForwardSpec.parse("8080:localhost:3000")])
    }

    func testBadSpec_isOneLineAtItsPosition() {
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = [\"8080:localhost:3000\", \"8080:x\"]\n",
                          "3:34: tunnels.web: remote \"8080:x\": expected [bind:]port:host:hostport (the server listens on bind:port; host:hostport is reached from this machine)")
    }

    func testNonLoopbackBind_needsPublic() throws {
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = [\"*:8080:localhost:3000\"]\n",
                          "3:11: tunnels.web: remote \"*:8080:localhost:3000\" asks the server to listen on 0.0.0.0 (all its interfaces), so this machine's "
                          + "localhost:3000 would be reachable from every network the server is on; set public = true to allow it")
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = \"10.0.0.5:8080:localhost:3000\"\n",
                          "3:10: tunnels.web: remote \"10.0.0.5:8080:localhost:3000\" asks the server to listen on 10.0.0.5, so this machine's "
                          + "localhost:3000 would be reachable from the server's network; set public = true to allow it")
        let open = try profile("web", in: parseConfig("[tunnels.web]\nhost = \"h\"\npublic = true\nremote = \"*:8080:localhost:3000\"\n"))
        XCTAssertTrue(open.remoteForwards[0].isPublic)
    }

    func testTwoRemoteForwardsForOneServerAddress_overlap() {
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = [\"8080:a:1\", \"8081:a:1\", \"127.0.0.1:8080:b:2\"]\n",
                          "3:35: tunnels.web.remote: 127.0.0.1:8080 on the server overlaps 127.0.0.1:8080 (/cfg/tunnels.toml:3:11)")
    }

    func testRemoteForwardsOfDifferentProfiles_doNotOverlap() {
        let config = parseConfig("[tunnels.a]\nhost = \"h1\"\nremote = \"8080:a:1\"\n[tunnels.b]\nhost = \"h2\"\nremote = \"8080:a:1\"\n")
        XCTAssertEqual(config.errors, [], "each server has its own ports")
    }

    func testRemoteInDefaults_isRefused_andTheProfileStillNeedsAForward() {
        XCTAssertEqual(errorLines(parseConfig("[defaults]\nremote = \"8080:a:1\"\nssh_config = \"none\"\n[tunnels.web]\nhost = \"h\"\n")), [
            "2:1: defaults.remote: remote is not allowed in [defaults]; list remote forwards in each [tunnels.NAME]",
            "4:1: tunnels.web: missing required key \"forward\" (a profile needs at least one of \"forward\", \"dynamic\", \"remote\" when ssh_config = \"none\")",
        ])
    }

    func testWrongType_andEmptyArray() {
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = 8080\n", "3:10: tunnels.web.remote: expected a string or an array of strings, found an integer (8080)")
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = []\n", "3:10: tunnels.web.remote: expected at least one remote forward, found an empty array")
        assertSingleError("[tunnels.web]\nhost = \"h\"\nremote = [\"8080:a:1\", 2]\n", "3:23: tunnels.web.remote[1]: expected a string, found an integer (2)")
    }

    func testSSHSpelling_suggestsRemote() {
        assertSingleError("[tunnels.web]\nhost = \"h\"\nforward = \"1:h:2\"\nRemoteForward = \"8080:a:1\"\n",
                          #"4:1: tunnels.web: unknown key "RemoteForward" (did you mean "remote"?)"#)
    }
}

/// ssh_config's RemoteForward, for profiles that write no `remote`.
final class RemoteForwardSSHConfigTests: XCTestCase {
    private func entry(_ text: String) -> SSHConfigEntry {
        let values = SSHConfigEntry.parse(text)
        return SSHConfigEntry(values: values, explicit: Set(values.keys))
    }

    private func base(isPublic: Bool = false) -> Profile {
        Profile(name: "web", host: "h", user: "u", forwards: [], knownHosts: "/k", isPublic: isPublic,
                location: SourceLocation(file: "t", line: 1, column: 1))
    }

    func testRemoteForwardAsSSHGPrintsIt_becomesAnRSpec() {
        XCTAssertEqual(AdHocTunnel.forwards(fromRemoteForward: ["8080 [localhost]:3000", "[127.0.0.1]:0 [::1]:3000", "[*]:7000 [localhost]:80"]),
                       ["8080:localhost:3000", "127.0.0.1:0:[::1]:3000", "*:7000:localhost:80"])
    }

    func testSupportedLines_areTaken_theOthersLeftOutWithANote() throws {
        var notes: [String] = []
        let specs = base().remoteForwards(from: entry("""
        remoteforward 8080 [localhost]:3000
        remoteforward [127.0.0.1]:0 [::1]:3000
        remoteforward 1080 [socks]:0
        remoteforward /tmp/app.sock [localhost]:5
        remoteforward [*]:7000 [localhost]:80
        remoteforward [127.0.0.1]:8080 [other]:1
        """), notes: &notes)
        XCTAssertEqual(specs.map(\.text), ["8080:localhost:3000", "127.0.0.1:0:[::1]:3000"])
        XCTAssertEqual(notes, [
            "ssh_config's RemoteForward 1080 for h left out: it asks for a SOCKS proxy on the server (a port alone), which tunnel does not serve",
            "ssh_config's RemoteForward /tmp/app.sock [localhost]:5 for h left out: Unix socket paths are not supported (libssh2 1.10 forwards TCP only)",
            "ssh_config's RemoteForward [*]:7000 [localhost]:80 for h left out: it asks the server to listen on 0.0.0.0, which needs public = true",
            "ssh_config's RemoteForward [127.0.0.1]:8080 [other]:1 for h left out: it asks for the same address as 8080:localhost:3000",
        ])
        var none: [String] = []
        XCTAssertEqual(base(isPublic: true).remoteForwards(from: entry("remoteforward [*]:7000 [localhost]:80\n"), notes: &none).map(\.text),
                       ["*:7000:localhost:80"])
    }

    func testAdHocTunnel_withR_hasRemoteForwards() throws {
        let env = ["USER": "me", "HOME": "/home/me"]
        let onlyR = try AdHocTunnel(name: nil, destination: "h", forwards: [], remote: ["0:localhost:3000"], origin: .commandLine)
            .profile(home: "/home/me", environment: env)
        XCTAssertEqual(onlyR.remoteForwards.map(\.text), ["0:localhost:3000"])
        XCTAssertEqual(onlyR.forwards, [])
        XCTAssertEqual(onlyR.written, ["remote"], "ssh_config does not add RemoteForward lines to -R")
        XCTAssertThrowsError(try AdHocTunnel(name: nil, destination: "h", forwards: [], remote: ["*:80:h:80"], origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertTrue("\($0)".contains("-R *:80:h:80: asks the server to listen on a non-loopback address"), "\($0)") }
        XCTAssertThrowsError(try AdHocTunnel(name: nil, destination: "h", forwards: [], remote: ["80:h"], origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertTrue("\($0)".hasPrefix("-R 80:h: expected [bind:]port:host:hostport"), "\($0)") }
        XCTAssertThrowsError(try AdHocTunnel(name: nil, destination: "h", forwards: [], remote: ["8080:a:1", "8080:b:2"], origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertEqual("\($0)", "-R 8080:b:2 and -R 8080:a:1 ask the server for the same address") }
        XCTAssertThrowsError(try AdHocTunnel(name: "x", destination: "h", forwards: [], origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertTrue("\($0)".contains("no forward"), "\($0)") }
    }

    func testAdHocTunnel_savedWithoutRemote_stillDecodes() throws {
        let saved = #"{"name":"h","destination":"h","forwards":["1:h:2"],"origin":"command line"}"#
        let decoded = try JSONDecoder().decode(AdHocTunnel.self, from: Data(saved.utf8))
        XCTAssertNil(decoded.remote)
    }
}
