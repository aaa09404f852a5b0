import Foundation
import TunnelTestSupport
import XCTest
@testable import TunnelConfig

/// Hostile input: nesting is capped at 100 levels with a positioned error, and
/// no byte sequence crashes the parser or the validation after it.
final class TOMLParserLimitsTests: XCTestCase {
    private let tooDeep = "nesting too deep: more than 100 levels of arrays and tables"

    private func assertError(_ text: String, at line: Int, _ column: Int, _ message: String,
                             file: StaticString = #filePath, testLine: UInt = #line) {
        do {
            _ = try TOMLParser.parse(text)
            XCTFail("expected an error", file: file, line: testLine)
        } catch {
            XCTAssertEqual(error.position, TOMLPosition(line: line, column: column), "\(error)", file: file, line: testLine)
            XCTAssertEqual(error.message, message, file: file, line: testLine)
        }
    }

    /// How many arrays and tables are nested under `value`, itself included.
    private func depth(_ value: TOMLValue?) -> Int {
        guard let value else { return 0 }
        switch value.kind {
        case .array(let items): return 1 + (items.map { depth($0) }.max() ?? 0)
        case .table(let table): return 1 + (table.entries.map { depth($0.value) }.max() ?? 0)
        default: return 0
        }
    }

    private func arrays(_ n: Int) -> String {
        "a = " + String(repeating: "[", count: n) + String(repeating: "]", count: n)
    }

    private func inlineTables(_ n: Int) -> String {
        "a = " + String(repeating: "{b = ", count: n - 1) + "{}" + String(repeating: "}", count: n - 1)
    }

    /// `t1.t2...tn`.
    private func dotted(_ n: Int) -> String {
        (1...n).map { "t\($0)" }.joined(separator: ".")
    }

    private func column(of needle: String, in text: String) -> Int {
        text.utf8.count - text.components(separatedBy: needle).dropFirst().joined(separator: needle).utf8.count - needle.utf8.count + 1
    }

    // MARK: - The nesting cap

    func testArrays_99And100Deep_parse_101IsAnErrorAtThe101stBracket() throws {
        XCTAssertEqual(depth(try TOMLParser.parse(arrays(99))["a"]), 99)
        XCTAssertEqual(depth(try TOMLParser.parse(arrays(100))["a"]), 100)
        assertError(arrays(101), at: 1, 105, tooDeep)
    }

    func testInlineTables_99And100Deep_parse_101IsAnErrorAtThe101stBrace() throws {
        XCTAssertEqual(depth(try TOMLParser.parse(inlineTables(99))["a"]), 99)
        XCTAssertEqual(depth(try TOMLParser.parse(inlineTables(100))["a"]), 100)
        assertError(inlineTables(101), at: 1, 505, tooDeep)
    }

    func testTableHeaders_99And100Parts_parse_101IsAnErrorAtThe101stPart() throws {
        XCTAssertEqual(depth(try TOMLParser.parse("[\(dotted(99))]\nk = 1\n")["t1"]), 99)
        XCTAssertEqual(depth(try TOMLParser.parse("[\(dotted(100))]\nk = 1\n")["t1"]), 100)
        let header = "[\(dotted(101))]"
        assertError("k = 1\n" + header + "\n", at: 2, column(of: ".t101", in: header) + 1, tooDeep)
    }

    func testArraysOfTables_countTheArrayAndItsTable() throws {
        // [[t1...t50]]: 49 tables, then an array and its table: 51 levels; one
        // more header part under it reaches 52.
        XCTAssertEqual(depth(try TOMLParser.parse("[[\(dotted(50))]]\n[\(dotted(50)).x]\n")["t1"]), 52)
        let header = "[[\(dotted(100))]]"
        assertError(header, at: 1, column(of: ".t100", in: header) + 1, tooDeep)
    }

    func testDottedKeys_countTheirTables_andTheValueUnderThem() throws {
        // t1...t100 = {}: 99 tables by dotted keys plus the inline table.
        XCTAssertEqual(depth(try TOMLParser.parse("\(dotted(100)) = {}")["t1"]), 100)
        XCTAssertEqual(depth(try TOMLParser.parse("\(dotted(101)) = 1")["t1"]), 100)
        let key = dotted(101)
        assertError("\(key) = {}", at: 1, key.utf8.count + 4, tooDeep)
        assertError("\(dotted(102)) = 1", at: 1, column(of: ".t101", in: dotted(102)) + 1, tooDeep)
    }

    func testMixedNesting_addsUp() throws {
        // a.b = [{c = [{c = ...: levels alternate arrays and inline tables under a.
        func mixed(_ pairs: Int) -> String {
            "a.b = " + String(repeating: "[{c = ", count: pairs) + "1" + String(repeating: "}]", count: pairs)
        }
        XCTAssertEqual(depth(try TOMLParser.parse(mixed(49))["a"]), 99)
        // 1 (a) + 2 × 50 = 101: the 50th inline table is too deep.
        let text = mixed(50)
        assertError(text, at: 1, 6 + 6 * 49 + 2, tooDeep)
    }

    func testTwentyThousandDeep_arraysInlineTablesHeadersAndDottedKeys_giveTheError() {
        for text in [arrays(20_000), inlineTables(20_000), "[\(dotted(20_000))]", "\(dotted(20_000)) = 1",
                     "a = " + String(repeating: "[{b = ", count: 10_000)] {
            let config = parseConfig(text)
            XCTAssertEqual(config.errors.count, 1)
            XCTAssertEqual(config.errors.first?.message, tooDeep)
            XCTAssertEqual(config.errors.first?.location?.line, 1)
        }
    }

    // MARK: - Hostile bytes

    /// Parses raw bytes through everything `tunnel config check` does; asserts
    /// that an invalid file has a positioned error.
    @discardableResult
    private func check(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> Config {
        let config = Config.parse(bytes: bytes, path: testPath, environment: testEnvironment)
        for error in config.errors {
            XCTAssertFalse(error.message.isEmpty, file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), "one line per error: \(error)", file: file, line: line)
        }
        for name in config.profileNames { _ = try? config.profile(named: name) }
        return config
    }

    func testInvalidUTF8_isAnErrorAtItsPosition_whereverItIs() {
        let bad: [[UInt8]] = [[0xFF], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC3], [0x80]]
        for sequence in bad {
            for (prefix, column) in [("a = \"", 6), ("# ", 3), ("", 1), ("[tunnels.", 10), ("x = 'ab", 8)] {
                let config = check(Array("ok = 1\n\(prefix)".utf8) + sequence + Array("\"\n".utf8))
                XCTAssertEqual(config.errors.map { "\($0.location!.line):\($0.location!.column)" }, ["2:\(column)"], "\(prefix) \(sequence)")
                XCTAssertTrue(config.errors.first?.message.hasPrefix("the file is not valid UTF-8") ?? false)
            }
        }
    }

    func testNULBytes_areErrorsEverywhere() {
        for text in ["a\0 = 1", "a = \"\0\"", "a = '\0'", "# \0", "a = 1\0", "a = [1, \0]", "a = {b = \0}", "[a\0]", "a = \"\"\"\0\"\"\""] {
            let config = check(Array(text.utf8))
            XCTAssertEqual(config.errors.count, 1, text)
            XCTAssertEqual(config.errors.first?.location?.line, 1, text)
        }
    }

    func testHugeNumbers_areRangeErrors() {
        let cases = [
            ("a = 9223372036854775808", "integer \"9223372036854775808\" does not fit in 64 bits"),
            ("a = -9223372036854775809", "integer \"-9223372036854775809\" does not fit in 64 bits"),
            ("a = 0x8000000000000000", "integer \"0x8000000000000000\" does not fit in 64 bits"),
            ("a = 0b" + String(repeating: "1", count: 200), "integer \"0b\(String(repeating: "1", count: 200))\" does not fit in 64 bits"),
            ("a = 1e400", "float \"1e400\" is out of range"),
            ("a = " + String(repeating: "9", count: 100_000), "integer \"\(String(repeating: "9", count: 100_000))\" does not fit in 64 bits"),
        ]
        for (text, message) in cases {
            XCTAssertEqual(check(Array(text.utf8)).errors.map(\.message), [message])
        }
        // In range: the extremes and a long float.
        XCTAssertEqual(try TOMLParser.parse("a = -9223372036854775808")["a"]?.integer, .min)
        XCTAssertEqual(try TOMLParser.parse("a = 0x7FFFFFFFFFFFFFFF")["a"]?.integer, .max)
        XCTAssertEqual(try TOMLParser.parse("a = 0." + String(repeating: "5", count: 100_000))["a"]?.float ?? 0, 0.5555, accuracy: 0.001)
        // A port far out of range is a config error, not a trap.
        let port = check(Array("[tunnels.db]\nhost = \"h\"\nport = 99999999999999999\nforward = \"1:a:2\"\n".utf8))
        XCTAssertEqual(port.errors.map(\.message), ["tunnels.db.port: 99999999999999999 is out of range (1-65535)"])
        let local = check(Array("[tunnels.db]\nhost = \"h\"\nforward = \"99999999999999999999999:a:2\"\n".utf8))
        XCTAssertEqual(local.errors.map(\.message), ["tunnels.db: forward \"99999999999999999999999:a:2\": local port 99999999999999999999999 is out of range (1-65535, or 0/auto for any free port)"])
    }

    func testLongLines_parseWhole_andErrorsAtTheirEndHaveTheRightColumn() throws {
        // About 1 MiB on one line: 350,000 array items, a long key, a long string.
        let items = 350_000
        let array = "a = [" + Array(repeating: "1", count: items).joined(separator: ",") + "]"
        XCTAssertEqual(try TOMLParser.parse(array)["a"]?.array?.count, items)
        let key = String(repeating: "k", count: 500_000)
        XCTAssertEqual(try TOMLParser.parse("\(key) = \"\(String(repeating: "é", count: 200_000))\"")[key]?.string?.count, 200_000)
        // Columns count scalars: "é" is one column.
        assertError("a = \"\(String(repeating: "é", count: 300_000))\" x", at: 1, 300_008, "expected the end of the line, found \"x\"")
        assertError("a = [" + Array(repeating: "1", count: 100_000).joined(separator: ",") + ",]]", at: 1, 200_006 + 1, "expected the end of the line, found \"]\"")
    }

    func testManyForwards_overlapsAreReportedAgainstTheEarliestOne() {
        // Random forwards over a few ports and addresses: each collision names
        // the first earlier forward it collides with (ForwardSpec.collides).
        var random = SplitMix64(seed: 7)
        let binds = ["127.0.0.1", "127.0.0.2", "0.0.0.0", "[::1]", "[::]", "*"]
        var text = ""
        var specs: [(spec: ForwardSpec, line: Int)] = []
        var line = 0
        for profile in 0..<40 {
            text += "[tunnels.p\(profile)]\nhost = \"h\"\npublic = true\nforward = [\n"
            line += 4
            for _ in 0..<Int.random(in: 1...5, using: &random) {
                let spec = "\(binds.randomElement(using: &random)!):\(Int.random(in: 0...3, using: &random)):x:1"
                text += "  \"\(spec)\",\n"
                line += 1
                specs.append((try! ForwardSpec.parse(spec), line))
            }
            text += "]\n"
            line += 1
        }
        var expected: [String] = []
        for (i, later) in specs.enumerated() {
            guard let earlier = specs[..<i].first(where: { $0.spec.collides(with: later.spec) }) else { continue }
            expected.append("\(later.line):3 overlaps \(testPath):\(earlier.line):3")
        }
        XCTAssertGreaterThan(expected.count, 20)
        let found = parseConfig(text).errors.map { error -> String in
            let earlier = error.message.components(separatedBy: "(").last!.dropLast()
            return "\(error.location!.line):\(error.location!.column) overlaps \(earlier)"
        }
        XCTAssertEqual(found, expected)
    }

    func testEverySingleByte_andEveryPrefixOfARichDocument_giveAResultOrAPositionedError() throws {
        for byte in UInt8.min...UInt8.max {
            for template in [[byte], Array("a = ".utf8) + [byte], Array("a = \"".utf8) + [byte, 0x22], Array("[".utf8) + [byte, 0x5D]] {
                let config = check(template)
                XCTAssertTrue(config.errors.allSatisfy { $0.location != nil }, "\(template)")
            }
        }
        let rich = Array(Self.richDocument.utf8)
        XCTAssertNoThrow(try TOMLParser.parse(bytes: rich))
        for end in 0...rich.count {
            let config = check(Array(rich.prefix(end)))
            XCTAssertTrue(config.errors.allSatisfy { $0.location.map { $0.line >= 1 && $0.column >= 1 } ?? false }, "prefix \(end)")
        }
    }

    func testRandomBytes_neverCrash() {
        var random = SplitMix64(seed: 42)
        let alphabet = Array("[]{}=\"'.,#\n\r\t \\uU0123456789abcdefxob+-_:eEinfatrsl".utf8) + [0, 0x7F, 0xC3, 0xA9, 0xFF]
        var errors = 0
        for _ in 0..<3_000 {
            let bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            errors += check(bytes).errors.isEmpty ? 0 : 1
        }
        XCTAssertGreaterThan(errors, 0, "random bytes are mostly invalid TOML")
    }

    /// Every TOML form the parser knows, and a profile.
    static let richDocument = #"""
        # comment
        title = "x"
        bare-key_1 = 'literal'
        "quoted key" = """
        multi \
          line "quotes" \u00e9 \U0001F600 \t\"\\"""
        raw = '''
        C:\path'''
        int = [+1, -0, 1_000, 0xDEAD_beef, 0o755, 0b1010]
        float = [1.0, -3.5e-2, 6E+1, inf, -inf, nan, 1_0.0_1]
        bool = [true, false]
        dates = [1979-05-27T07:32:00Z, 1979-05-27 00:32:00.999-07:00, 1979-05-27T07:32:00, 1979-05-27, 07:32:00.5]
        inline = { a = 1, b.c = { d = [[], [{}]] } }
        a.b.c = 1
        [x.y]
        z = 1
        [[arr]]
        n = 1
        [[arr]]
        n = 2
        [arr.sub]
        [tunnels.db]
        host = "[2001:db8::1]"
        forward = ["*:8080:localhost:http", "[::1]:8443:[::1]:https"]
        public = true
        """#
}
