import XCTest
@testable import TunnelConfig

/// Checks done before anything binds: non-loopback binds need `public = true`,
/// and no two forwards may listen on overlapping addresses.
final class ConfigBindSafetyTests: XCTestCase {
    private func tunnel(_ name: String, forward: String, public isPublic: Bool? = nil) -> String {
        var text = "[tunnels.\(name)]\nhost = \"h\"\nforward = \(forward)\n"
        if let isPublic { text += "public = \(isPublic)\n" }
        return text
    }

    // MARK: - Public binds

    func testWildcardBind_requiresPublic() {
        assertSingleError(tunnel("db", forward: #""0.0.0.0:5433:localhost:5432""#),
                          #"3:11: tunnels.db: forward "0.0.0.0:5433:localhost:5432" binds 0.0.0.0 (all interfaces), so the service would be reachable from every interface; set public = true to allow it"#)
    }

    func testStarBind_requiresPublic() {
        assertSingleError(tunnel("db", forward: #""*:5433:localhost:5432""#),
                          #"3:11: tunnels.db: forward "*:5433:localhost:5432" binds 0.0.0.0 (all interfaces), so the service would be reachable from every interface; set public = true to allow it"#)
    }

    func testIPv6WildcardBind_requiresPublic() {
        assertSingleError(tunnel("db", forward: #""[::]:5433:localhost:5432""#),
                          #"3:11: tunnels.db: forward "[::]:5433:localhost:5432" binds [::] (all interfaces), so the service would be reachable from every interface; set public = true to allow it"#)
    }

    func testLANAddressBind_requiresPublic() {
        assertSingleError(tunnel("db", forward: #""192.168.1.10:5433:localhost:5432""#),
                          #"3:11: tunnels.db: forward "192.168.1.10:5433:localhost:5432" binds 192.168.1.10, so the service would be reachable from the network; set public = true to allow it"#)
    }

    func testPublicBinds_areAcceptedWithPublicTrue() throws {
        for bind in ["0.0.0.0", "*", "[::]", "192.168.1.10", "[2001:db8::1]"] {
            let config = parseConfig(tunnel("db", forward: "\"\(bind):5433:localhost:5432\"", public: true))
            XCTAssertEqual(config.errors, [], bind)
            let db = try profile("db", in: config)
            XCTAssertTrue(db.isPublic, bind)
            XCTAssertEqual(db.forwards.map(\.isPublic), [true], bind)
        }
    }

    func testPublicTrueInDefaults_allowsPublicBinds() throws {
        let config = parseConfig("[defaults]\npublic = true\n" + tunnel("db", forward: #""0.0.0.0:5433:localhost:5432""#))
        XCTAssertEqual(config.errors, [])
        XCTAssertTrue(try profile("db", in: config).forwards[0].isPublic)
    }

    func testLoopbackBinds_doNotNeedPublic() throws {
        let config = parseConfig(tunnel("db", forward: #"["5433:db:5432", "127.0.0.2:5434:db:5432", "[::1]:5435:db:5432", "localhost:5436:db:5432"]"#))
        XCTAssertEqual(config.errors, [])
        XCTAssertEqual(try profile("db", in: config).forwards.map(\.isPublic), [false, false, false, false])
    }

    func testEachPublicForward_isReportedSeparately() {
        let config = parseConfig(tunnel("db", forward: #"["5433:db:5432", "0.0.0.0:5434:db:5432", "10.0.0.5:5435:db:5432"]"#))
        XCTAssertEqual(config.errors.compactMap(\.location?.column), [28, 52])
    }

    // MARK: - Overlaps

    func testOverlappingForwardsAcrossTwoProfiles_nameBothProfiles() {
        let config = parseConfig("""
        [tunnels.a]
        host = "h"
        forward = "5433:db:5432"

        [tunnels.b]
        host = "h"
        forward = "0.0.0.0:5433:db:5432"
        public = true
        """)
        XCTAssertEqual(errorLines(config), ["7:11: tunnels.b.forward: 0.0.0.0:5433 overlaps 127.0.0.1:5433 of tunnels.a (/cfg/tunnels.toml:3:11)"])
    }

    func testOverlap_breaksOnlyTheLaterProfile() throws {
        let config = parseConfig(tunnel("a", forward: #""5433:db:5432""#) + tunnel("b", forward: #""5433:other:5432""#))
        XCTAssertEqual(try profile("a", in: config).name, "a")
        XCTAssertEqual(profileErrors("b", in: config),
                       ["6:11: tunnels.b.forward: 127.0.0.1:5433 overlaps 127.0.0.1:5433 of tunnels.a (/cfg/tunnels.toml:3:11)"])
        XCTAssertEqual(config.validProfiles.map(\.name), ["a"])
    }

    func testOverlappingForwardsWithinOneProfile_areAnError() {
        let config = parseConfig(tunnel("a", forward: #"["5433:db:5432", "5433:db:5433"]"#))
        XCTAssertEqual(errorLines(config), ["3:28: tunnels.a.forward: 127.0.0.1:5433 overlaps 127.0.0.1:5433 of tunnels.a (/cfg/tunnels.toml:3:12)"])
    }

    func testSpecificAddressAfterAWildcard_overlaps() {
        let config = parseConfig(tunnel("a", forward: #""*:8080:web:80""#, public: true) + tunnel("b", forward: #""127.0.0.1:8080:web:80""#))
        XCTAssertEqual(errorLines(config), ["7:11: tunnels.b.forward: 127.0.0.1:8080 overlaps 0.0.0.0:8080 of tunnels.a (/cfg/tunnels.toml:3:11)"])
    }

    func testIPv6Forwards_overlapWithinTheirFamily() {
        let config = parseConfig(tunnel("a", forward: #"["[::]:8080:web:80", "[::1]:8080:web:80"]"#, public: true))
        XCTAssertEqual(errorLines(config), ["3:32: tunnels.a.forward: [::1]:8080 overlaps [::]:8080 of tunnels.a (/cfg/tunnels.toml:3:12)"])
    }

    func testDifferentLoopbackAddresses_doNotOverlap() {
        XCTAssertEqual(parseConfig(tunnel("a", forward: #"["127.0.0.1:8080:web:80", "127.0.0.2:8080:web:80"]"#)).errors, [])
    }

    func testIPv6WildcardAndIPv4Wildcard_doNotOverlapBecauseListenersAreV6Only() {
        XCTAssertEqual(parseConfig(tunnel("a", forward: #"["0.0.0.0:8080:web:80", "[::]:8080:web:80"]"#, public: true)).errors, [])
        XCTAssertEqual(parseConfig(tunnel("a", forward: #"["127.0.0.1:8080:web:80", "[::1]:8080:web:80"]"#)).errors, [])
    }

    func testAutoPorts_neverOverlap() {
        XCTAssertEqual(parseConfig(tunnel("a", forward: #"["auto:web:80", "0:web:80", "auto:web:81"]"#) + tunnel("b", forward: #""auto:web:80""#)).errors, [])
    }

    func testDifferentPorts_doNotOverlap() {
        XCTAssertEqual(parseConfig(tunnel("a", forward: #""5433:db:5432""#) + tunnel("b", forward: #""5434:db:5432""#)).errors, [])
    }

    func testEquivalentIPv6Spellings_overlap() {
        let config = parseConfig(tunnel("a", forward: #"["[::1]:8080:web:80", "[0:0::1]:8080:web:80"]"#))
        XCTAssertEqual(config.errors.count, 1)
        XCTAssertTrue(config.errors[0].message.contains("[::1]:8080 overlaps [::1]:8080"), config.errors[0].message)
    }

    func testThreeOverlappingForwards_eachNameTheFirst() {
        let config = parseConfig(tunnel("a", forward: #""5433:db:5432""#) + tunnel("b", forward: #""5433:db:5432""#) + tunnel("c", forward: #""5433:db:5432""#))
        XCTAssertEqual(config.errors.map(\.message), [
            "tunnels.b.forward: 127.0.0.1:5433 overlaps 127.0.0.1:5433 of tunnels.a (/cfg/tunnels.toml:3:11)",
            "tunnels.c.forward: 127.0.0.1:5433 overlaps 127.0.0.1:5433 of tunnels.a (/cfg/tunnels.toml:3:11)",
        ])
    }

    func testBindAddressOverlap_rules() throws {
        let v4 = { (s: String) in try XCTUnwrap(BindAddress(ipLiteral: s)) }
        XCTAssertTrue(try v4("0.0.0.0").overlaps(v4("10.1.2.3")))
        XCTAssertTrue(try v4("10.1.2.3").overlaps(v4("0.0.0.0")))
        XCTAssertTrue(try v4("10.1.2.3").overlaps(v4("10.1.2.3")))
        XCTAssertFalse(try v4("10.1.2.3").overlaps(v4("10.1.2.4")))
        XCTAssertFalse(try v4("::").overlaps(v4("0.0.0.0")))
        XCTAssertTrue(try v4("::").overlaps(v4("[fe80::1]")))
    }
}
