import XCTest
import Foundation
@testable import TunnelConfig

/// `[daemon]`: the supervisor's settings, and the name it takes from profiles.
final class DaemonSettingsTests: XCTestCase {
    private let profile = """
    [tunnels.db]
    host = "db.example.com"
    forward = "5433:localhost:5432"
    """

    func testNoDaemonTable_meansNoMetricsAndNotPublic_likeAnEmptyTable() {
        XCTAssertEqual(parseConfig(profile).daemon, DaemonSettings())
        XCTAssertEqual(parseConfig("[daemon]\n" + profile).daemon, DaemonSettings())
        XCTAssertNil(DaemonSettings().metrics)
        XCTAssertFalse(DaemonSettings().isPublic)
    }

    func testLoopbackAddresses_parse_IPv4_IPv6InBrackets_andLocalhost() throws {
        let v4 = parseConfig("[daemon]\nmetrics = \"127.0.0.1:9469\"\n" + profile)
        XCTAssertEqual(errorLines(v4), [])
        XCTAssertEqual(v4.daemon.metrics, MetricsAddress(host: "127.0.0.1", isIPv6: false, port: 9469))
        XCTAssertEqual(v4.daemon.metrics?.description, "127.0.0.1:9469")
        let v6 = parseConfig("[daemon]\nmetrics = \"[::1]:9469\"\n" + profile)
        XCTAssertEqual(errorLines(v6), [])
        XCTAssertEqual(v6.daemon.metrics, MetricsAddress(host: "::1", isIPv6: true, port: 9469))
        XCTAssertEqual(v6.daemon.metrics?.description, "[::1]:9469")
        XCTAssertEqual(try MetricsAddress.parse("localhost:1").description, "127.0.0.1:1")
        XCTAssertEqual(try MetricsAddress.parse("127.0.0.1:65535").port, 65535)
        // Profiles still read alongside it.
        XCTAssertEqual(try profile("db", in: v4).host, "db.example.com")
    }

    func testNonLoopbackAddress_withoutPublic_isAnErrorAtTheValue_andBreaksEveryProfile() {
        let config = parseConfig("[daemon]\nmetrics = \"0.0.0.0:9469\"\n" + profile)
        XCTAssertEqual(errorLines(config), [
            "2:11: daemon.metrics: 0.0.0.0:9469 is not a loopback address, so the metrics would be reachable from every interface; set public = true in [daemon] to allow it",
        ])
        XCTAssertEqual(config.daemonErrors.map(\.location), [location(2, 11)])
        XCTAssertNil(config.daemon.metrics, "nothing half-done: a refused table is not used")
        XCTAssertEqual(profileErrors("db", in: config).count, 1)
        XCTAssertTrue(config.validProfiles.isEmpty)
    }

    func testNonLoopbackAddress_withPublicTrue_isAllowed_inEitherOrder() {
        for text in ["[daemon]\nmetrics = \"192.0.2.7:9469\"\npublic = true\n", "[daemon]\npublic = true\nmetrics = \"[::]:9469\"\n"] {
            let config = parseConfig(text + profile)
            XCTAssertEqual(errorLines(config), [], text)
            XCTAssertEqual(config.daemon.isPublic, true)
            XCTAssertNotNil(config.daemon.metrics)
        }
        XCTAssertEqual(errorLines(parseConfig("[daemon]\nmetrics = \"10.1.2.3:80\"\npublic = false\n")),
                       ["2:11: daemon.metrics: 10.1.2.3:80 is not a loopback address, so the metrics would be reachable from the network; set public = true in [daemon] to allow it"])
    }

    func testBadAddresses_sayWhatIsWrong_withLineAndColumn() {
        let cases: [(String, String)] = [
            ("127.0.0.1", "\"127.0.0.1\" is not HOST:PORT (e.g. \"127.0.0.1:9469\")"),
            ("::1:9469", "\"::1:9469\" is not HOST:PORT (write an IPv6 address in brackets: \"[::1]:9469\")"),
            ("[::1]9469", "\"[::1]9469\" is not HOST:PORT (an IPv6 address is written \"[::1]:9469\")"),
            ("127.0.0.1:0", "\"127.0.0.1:0\": port \"0\" must be 1-65535"),
            ("127.0.0.1:65536", "\"127.0.0.1:65536\": port \"65536\" must be 1-65535"),
            ("127.0.0.1:-1", "\"127.0.0.1:-1\": port \"-1\" must be 1-65535"),
            ("127.0.0.1:", "\"127.0.0.1:\": port \"\" must be 1-65535"),
            ("metrics.example.com:9469", "\"metrics.example.com:9469\": \"metrics.example.com\" is not an IP address (or localhost)"),
            ("[zz]:1", "\"[zz]:1\": \"[zz]\" is not an IP address (or localhost)"),
        ]
        for (text, reason) in cases {
            XCTAssertEqual(errorLines(parseConfig("\n[daemon]\nmetrics = \"\(text)\"\n")), ["3:11: daemon.metrics: \(reason)"], text)
        }
    }

    func testWrongTypes_andUnknownKeys_areReportedEach() {
        let config = parseConfig("""
        [daemon]
        metrics = 9469
        public = "yes"
        metric = "127.0.0.1:1"
        """)
        XCTAssertEqual(errorLines(config), [
            "2:11: daemon.metrics: expected a string (\"127.0.0.1:9469\"), found an integer (9469)",
            "3:10: daemon.public: expected a boolean (true or false), found a string (\"yes\")",
            "4:1: daemon: unknown key \"metric\" (did you mean \"metrics\"?)",
        ])
        XCTAssertEqual(errorLines(parseConfig("daemon = 1\n")), ["1:10: daemon: expected a table ([daemon]), found an integer (1)"])
    }

    func testDaemon_isNotAProfileName_eitherAsALookupOrUnderTunnels() {
        let config = parseConfig("[daemon]\nmetrics = \"127.0.0.1:9469\"\n" + profile)
        XCTAssertEqual(profileErrors("daemon", in: config), [
            "\"daemon\" is not a profile name: [daemon] in \(testPath) holds the supervisor's settings (profiles are [tunnels.NAME], and none may be named \"daemon\")",
        ])
        let named = parseConfig("[tunnels.daemon]\nhost = \"h\"\nforward = \"5433:localhost:5432\"\n")
        XCTAssertEqual(profileErrors("daemon", in: named), [
            "1:10: tunnels.daemon: \"daemon\" is reserved ([daemon] holds the supervisor's settings); give the profile another name",
        ])
    }

    func testDaemonSettingsAtStart_missingFileIsOff_badTableThrowsFileLine_profileErrorsDoNotMatter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("daemon-settings-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try Config.daemonSettings(path: dir + "/absent.toml", environment: testEnvironment), DaemonSettings())

        let good = dir + "/good.toml"
        try Data("[daemon]\nmetrics = \"127.0.0.1:9469\"\n[tunnels.broken]\nport = 99999\n".utf8).write(to: URL(fileURLWithPath: good))
        XCTAssertEqual(try Config.daemonSettings(path: good, environment: testEnvironment).metrics?.port, 9469)

        let bad = dir + "/bad.toml"
        try Data("[daemon]\nmetrics = \"0.0.0.0:9469\"\n".utf8).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try Config.daemonSettings(path: bad, environment: testEnvironment)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(bad):2:11: daemon.metrics: "), "\(error)")
            XCTAssertEqual((error as? DaemonSettingsError)?.inTable, true)
        }
        let syntax = dir + "/syntax.toml"
        try Data("[daemon\n".utf8).write(to: URL(fileURLWithPath: syntax))
        XCTAssertThrowsError(try Config.daemonSettings(path: syntax, environment: testEnvironment)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(syntax):1:"), "\(error)")
            XCTAssertEqual((error as? DaemonSettingsError)?.inTable, false, "the file, not the table")
        }
        XCTAssertThrowsError(try Config.daemonSettings(path: dir, environment: testEnvironment), "a directory is not a missing file")
    }
}
