import XCTest
import Foundation
import Glibc
@testable import TunnelConfig

/// Finding and reading the config file, and the diagnostics' text forms.
final class ConfigLoadingTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tunnelconfig-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func write(_ text: String, to name: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    // MARK: - Path lookup

    func testResolvePath_prefersTheExplicitPath() {
        let env = ["HOME": "/home/u", "TUNNEL_CONFIG": "/env/t.toml", "XDG_CONFIG_HOME": "/xdg"]
        XCTAssertEqual(Config.resolvePath(explicit: "/explicit.toml", environment: env), "/explicit.toml")
        XCTAssertEqual(Config.resolvePath(explicit: "relative.toml", environment: env), "relative.toml")
        XCTAssertEqual(Config.resolvePath(explicit: "~/my.toml", environment: env), "/home/u/my.toml")
    }

    func testResolvePath_thenTUNNEL_CONFIG() {
        let env = ["HOME": "/home/u", "TUNNEL_CONFIG": "/env/t.toml", "XDG_CONFIG_HOME": "/xdg"]
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: env), "/env/t.toml")
        XCTAssertEqual(Config.resolvePath(explicit: "", environment: env), "/env/t.toml", "an empty --config is ignored")
    }

    func testResolvePath_thenXDG_CONFIG_HOME() {
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "/xdg"]), "/xdg/tunnel/tunnels.toml")
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "/xdg/"]), "/xdg/tunnel/tunnels.toml")
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u", "TUNNEL_CONFIG": "", "XDG_CONFIG_HOME": "/xdg"]),
                       "/xdg/tunnel/tunnels.toml", "an empty variable counts as unset")
    }

    func testResolvePath_defaultsToDotConfigInHOME() {
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u"]), "/home/u/.config/tunnel/tunnels.toml")
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": ""]), "/home/u/.config/tunnel/tunnels.toml")
        XCTAssertEqual(Config.resolvePath(explicit: nil, environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "relative"]),
                       "/home/u/.config/tunnel/tunnels.toml", "XDG says to ignore a relative path")
    }

    func testResolvePath_withoutHOME_usesThePasswordDatabase() {
        let path = Config.resolvePath(explicit: nil, environment: [:])
        XCTAssertTrue(path.hasPrefix("/"), path)
        XCTAssertTrue(path.hasSuffix("/.config/tunnel/tunnels.toml"), path)
    }

    // MARK: - Loading

    func testLoad_readsAndValidatesTheFile() throws {
        let path = try write("[tunnels.db]\nhost = \"h\"\nforward = \"5433:localhost:5432\"\n", to: "ok.toml")
        let config = try Config.load(path: path, environment: testEnvironment)
        XCTAssertEqual(config.path, path)
        XCTAssertEqual(config.errors, [])
        XCTAssertEqual(try config.profile(named: "db").location, SourceLocation(file: path, line: 1, column: 1))
    }

    func testLoad_ofAMissingFile_throwsOneErrorNamingThePathAndTheReason() {
        let path = directory.appendingPathComponent("missing.toml").path
        XCTAssertThrowsError(try Config.load(path: path, environment: testEnvironment)) { error in
            let errors = (error as! ConfigErrors).errors
            XCTAssertEqual(errors, [ConfigError(location: nil, message: "cannot read config file \(path): No such file or directory")])
        }
    }

    func testLoad_ofADirectory_throws() {
        XCTAssertThrowsError(try Config.load(path: directory.path, environment: testEnvironment)) { error in
            XCTAssertEqual((error as! ConfigErrors).description, "\(self.directory.path) is a directory, not a regular file")
        }
    }

    func testLoad_ofAFIFOOrADevice_isRefusedAtOnce_namingWhatItIs() {
        let fifo = directory.appendingPathComponent("fifo.toml").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try Config.load(path: fifo, environment: testEnvironment)) { error in
            XCTAssertEqual((error as! ConfigErrors).description, "\(fifo) is a FIFO, not a regular file")
        }
        XCTAssertThrowsError(try Config.load(path: "/dev/zero", environment: testEnvironment)) { error in
            XCTAssertEqual((error as! ConfigErrors).description, "/dev/zero is a character device, not a regular file")
        }
    }

    func testLoad_ofAFileOverOneMiB_isRefused_andOneMiBIsRead() throws {
        let exact = try write("#" + String(repeating: "x", count: Config.maxFileSize - 2) + "\n", to: "exact.toml")
        XCTAssertEqual(try Config.load(path: exact, environment: testEnvironment).errors, [])
        let over = try write("#" + String(repeating: "x", count: Config.maxFileSize - 1) + "\n", to: "over.toml")
        XCTAssertThrowsError(try Config.load(path: over, environment: testEnvironment)) { error in
            XCTAssertEqual((error as! ConfigErrors).description, "\(over) is too large: more than 1 MiB")
        }
    }

    func testLoad_withASyntaxError_doesNotThrow() throws {
        let path = try write("[tunnels.db]\nhost = \n", to: "bad.toml")
        let config = try Config.load(path: path, environment: testEnvironment)
        XCTAssertEqual(config.errors.map(\.description), ["\(path):2:8: expected a value, found the end of the line"])
        XCTAssertThrowsError(try config.profile(named: "db"))
    }

    func testLoad_ofInvalidUTF8_reportsThePosition() throws {
        let url = directory.appendingPathComponent("latin1.toml")
        try Data(Array("# caf".utf8) + [0xE9] + Array("\n".utf8)).write(to: url)
        let config = try Config.load(path: url.path, environment: testEnvironment)
        XCTAssertEqual(config.errors.map(\.location), [SourceLocation(file: url.path, line: 1, column: 6)])
    }

    // MARK: - Text forms

    func testSourceLocationDescription_isFileLineColumn() {
        XCTAssertEqual(SourceLocation(file: "/a/t.toml", line: 5, column: 11).description, "/a/t.toml:5:11")
        XCTAssertEqual(SourceLocation(file: "/a/t.toml", line: 0, column: 0).description, "/a/t.toml", "line 0 is the whole file")
    }

    func testConfigErrorDescription_prefixesTheLocation() {
        XCTAssertEqual(ConfigError(location: SourceLocation(file: "f", line: 2, column: 3), message: "m").description, "f:2:3: m")
        XCTAssertEqual(ConfigError(location: SourceLocation(file: "f", line: 0, column: 0), message: "m").description, "f: m")
        XCTAssertEqual(ConfigError(location: nil, message: "m").description, "m")
    }

    func testConfigErrorsDescription_isOneSortedErrorPerLine() {
        let errors = ConfigErrors([
            ConfigError(location: SourceLocation(file: "f", line: 9, column: 1), message: "third"),
            ConfigError(location: SourceLocation(file: "f", line: 2, column: 5), message: "second"),
            ConfigError(location: SourceLocation(file: "f", line: 2, column: 1), message: "first"),
            ConfigError(location: nil, message: "general"),
        ])
        XCTAssertEqual(errors.description, "general\nf:2:1: first\nf:2:5: second\nf:9:1: third")
    }

    // MARK: - The shipped example

    func testExampleConfig_parsesWithNoErrors() throws {
        // Tests/TunnelConfigTests/<this file> → repository root → Configs/ (symlinks
        // resolved, so a scratch package that links the test directory works too).
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("Configs/tunnels.example.toml").path
        let config = try Config.load(path: path, environment: testEnvironment)
        XCTAssertEqual(config.errors, [], config.errors.map(\.description).joined(separator: "\n"))
        XCTAssertTrue(config.profileNames.contains("db"))
        XCTAssertEqual(config.validProfiles.count, config.profileNames.count)

        let db = try config.profile(named: "db")
        XCTAssertEqual(db.forwards.first?.localPort, 5433)
        XCTAssertEqual(db.forwards.first?.remoteDescription, "localhost:5432 (postgresql)")
        XCTAssertTrue(config.validProfiles.contains { $0.forwards.count >= 2 }, "one example shows several forwards")

        // Every documented key appears in the example.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for key in ConfigReader.tunnelKeys {
            XCTAssertTrue(text.contains("\n\(key) = ") || text.contains("\n# \(key) = "), "example does not document \(key)")
        }
    }
}
