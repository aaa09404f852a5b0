import XCTest
@testable import TunnelConfig

/// A fixed environment, so results do not depend on who runs the tests.
let testEnvironment = ["HOME": "/home/tester", "USER": "tester"]
let testPath = "/cfg/tunnels.toml"

func parseConfig(_ text: String, environment: [String: String] = testEnvironment) -> Config {
    Config.parse(text: text, path: testPath, environment: environment)
}

/// "line:column: message" for every error, in order, without the file name.
func errorLines(_ config: Config) -> [String] {
    config.errors.map { error in
        guard let location = error.location else { return error.message }
        return "\(location.line):\(location.column): \(error.message)"
    }
}

func location(_ line: Int, _ column: Int) -> SourceLocation {
    SourceLocation(file: testPath, line: line, column: column)
}

extension XCTestCase {
    /// The profile, failing the test with the config's errors if it is broken.
    func profile(_ name: String, in config: Config, file: StaticString = #filePath, line: UInt = #line) throws -> Profile {
        do {
            return try config.profile(named: name)
        } catch {
            XCTFail("profile \(name) is broken:\n\(error)", file: file, line: line)
            throw error
        }
    }

    /// The errors `profile(named:)` throws, as "line:column: message".
    func profileErrors(_ name: String, in config: Config, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            let profile = try config.profile(named: name)
            XCTFail("expected \(name) to be broken, got \(profile)", file: file, line: line)
            return []
        } catch {
            return error.errors.map { error in
                guard let location = error.location else { return error.message }
                return "\(location.line):\(location.column): \(error.message)"
            }
        }
    }

    func assertSingleError(_ text: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(errorLines(parseConfig(text)), [expected], file: file, line: line)
    }
}
