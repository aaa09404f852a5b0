import XCTest
@testable import TunnelConfig

/// Valid TOML 1.0: every value type, key form and table form, with positions.
final class TOMLParserTests: XCTestCase {
    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> TOMLTable {
        do {
            return try TOMLParser.parse(text)
        } catch {
            XCTFail("unexpected error: \(error)", file: file, line: line)
            throw error
        }
    }

    private func value(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> TOMLValue {
        let table = try parse("v = \(text)\n", file: file, line: line)
        return try XCTUnwrap(table["v"], file: file, line: line)
    }

    // MARK: - Documents and keys

    func testEmptyDocument_parsesToAnEmptyTable() throws {
        XCTAssertTrue(try parse("").isEmpty)
        XCTAssertTrue(try parse("\n\n  \n").isEmpty)
        XCTAssertTrue(try parse("# only a comment\n   # another\n").isEmpty)
    }

    func testBareKeys_mayUseLettersDigitsUnderscoresAndDashes() throws {
        let t = try parse("key = 1\nbare_key = 2\nbare-key = 3\n1234 = 4\n")
        XCTAssertEqual(t.keys, ["key", "bare_key", "bare-key", "1234"])
        XCTAssertEqual(t["1234"]?.integer, 4)
    }

    func testQuotedKeys_mayContainAnyCharacterIncludingEscapes() throws {
        let t = try parse(#"""
        "127.0.0.1" = "a"
        "character encoding" = "b"
        'key2' = "c"
        'quoted "value"' = "d"
        "ʎǝʞ" = "e"
        "tab\tkey" = "f"
        "" = "empty"
        """#)
        XCTAssertEqual(t["127.0.0.1"]?.string, "a")
        XCTAssertEqual(t["character encoding"]?.string, "b")
        XCTAssertEqual(t["key2"]?.string, "c")
        XCTAssertEqual(t["quoted \"value\""]?.string, "d")
        XCTAssertEqual(t["ʎǝʞ"]?.string, "e")
        XCTAssertEqual(t["tab\tkey"]?.string, "f")
        XCTAssertEqual(t[""]?.string, "empty")
    }

    func testDottedKeys_createNestedTables() throws {
        let t = try parse("""
        name = "Orange"
        physical.color = "orange"
        physical.shape = "round"
        site."google.com" = true
        fruit . flavor = "sweet"
        """)
        XCTAssertEqual(t[path: ["physical", "color"]]?.string, "orange")
        XCTAssertEqual(t[path: ["physical", "shape"]]?.string, "round")
        XCTAssertEqual(t[path: ["site", "google.com"]]?.boolean, true)
        XCTAssertEqual(t[path: ["fruit", "flavor"]]?.string, "sweet")
    }

    func testKeys_keepDefinitionOrder() throws {
        let t = try parse("z = 1\na = 2\nm = 3\n")
        XCTAssertEqual(t.keys, ["z", "a", "m"])
    }

    func testWhitespaceAroundKeysAndEquals_isIgnored() throws {
        let t = try parse("  \tkey\t=\t\"v\"  # trailing comment\n")
        XCTAssertEqual(t["key"]?.string, "v")
    }

    func testCRLFLineEndings_areAccepted() throws {
        let t = try parse("a = 1\r\n[t]\r\nb = \"x\" # c\r\nc = \"\"\"\r\nline1\r\nline2\"\"\"\r\n")
        XCTAssertEqual(t["a"]?.integer, 1)
        XCTAssertEqual(t[path: ["t", "b"]]?.string, "x")
        XCTAssertEqual(t[path: ["t", "c"]]?.string, "line1\nline2")
        XCTAssertEqual(t.entry("t")?.value.table?.entry("c")?.keyPosition, TOMLPosition(line: 4, column: 1))
    }

    func testByteOrderMark_isSkipped() throws {
        let t = try TOMLParser.parse(bytes: [0xEF, 0xBB, 0xBF] + Array("a = 1\n".utf8))
        XCTAssertEqual(t["a"]?.integer, 1)
        XCTAssertEqual(t.entry("a")?.keyPosition, TOMLPosition(line: 1, column: 1))
    }

    func testDocumentWithoutFinalNewline_parses() throws {
        XCTAssertEqual(try parse("a = 1")["a"]?.integer, 1)
        XCTAssertEqual(try parse("a = 1 # c")["a"]?.integer, 1)
    }

    // MARK: - Positions

    func testPositions_recordLineAndColumnOfEveryKeyAndValue() throws {
        let t = try parse("""
        # comment
        title = "x"
          [server]
          port   =   8080
        list = [ 1,
                 2 ]
        """)
        XCTAssertEqual(t.entry("title")?.keyPosition, TOMLPosition(line: 2, column: 1))
        XCTAssertEqual(t["title"]?.position, TOMLPosition(line: 2, column: 9))
        let server = try XCTUnwrap(t.entry("server"))
        XCTAssertEqual(server.keyPosition, TOMLPosition(line: 3, column: 4))
        XCTAssertEqual(server.value.position, TOMLPosition(line: 3, column: 3), "a header table starts at its [")
        let port = try XCTUnwrap(server.value.table?.entry("port"))
        XCTAssertEqual(port.keyPosition, TOMLPosition(line: 4, column: 3))
        XCTAssertEqual(port.value.position, TOMLPosition(line: 4, column: 14))
        let list = try XCTUnwrap(server.value.table?["list"]?.array)
        XCTAssertEqual(list.map(\.position), [TOMLPosition(line: 5, column: 10), TOMLPosition(line: 6, column: 10)])
    }

    func testColumns_countUnicodeScalarsNotBytes() throws {
        let t = try parse("\"ключ\" = \"значение\"\n")
        XCTAssertEqual(t["ключ"]?.position, TOMLPosition(line: 1, column: 10))
    }

    func testDottedKeyPosition_isTheLastPart() throws {
        let t = try parse("a.b.c = 1\n")
        XCTAssertEqual(t.entry("a")?.keyPosition, TOMLPosition(line: 1, column: 1))
        XCTAssertEqual(t[path: ["a"]]?.table?.entry("b")?.keyPosition, TOMLPosition(line: 1, column: 3))
        XCTAssertEqual(t[path: ["a", "b"]]?.table?.entry("c")?.keyPosition, TOMLPosition(line: 1, column: 5))
    }

    // MARK: - Strings

    func testBasicString_decodesAllEscapes() throws {
        let v = try value(#""b\b t\t n\n f\f r\r q\" s\\ u\u00E9 U\U0001F600 end""#)
        XCTAssertEqual(v.string, "b\u{08} t\t n\n f\u{0C} r\r q\" s\\ u\u{E9} U\u{1F600} end")
    }

    func testBasicString_keepsTabsAndUnicode() throws {
        XCTAssertEqual(try value("\"a\tb ünï 日本\"").string, "a\tb ünï 日本")
    }

    func testLiteralString_takesBackslashesVerbatim() throws {
        XCTAssertEqual(try value(#"'C:\Users\nodejs\templates'"#).string, #"C:\Users\nodejs\templates"#)
        XCTAssertEqual(try value(#"'<\i\c*\s*>'"#).string, #"<\i\c*\s*>"#)
        XCTAssertEqual(try value("''").string, "")
    }

    func testMultilineBasicString_trimsFirstNewlineAndKeepsOthers() throws {
        let t = try parse("s = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n")
        XCTAssertEqual(t["s"]?.string, "Roses are red\nViolets are blue")
    }

    func testMultilineBasicString_lineEndingBackslashJoinsLines() throws {
        let t = try parse("s = \"\"\"\\\n       The quick brown \\\n\n\n       fox jumps over \\   \n       the lazy dog.\\\n       \"\"\"\n")
        XCTAssertEqual(t["s"]?.string, "The quick brown fox jumps over the lazy dog.")
    }

    func testMultilineBasicString_allowsUpToTwoQuotesBeforeTheClosingDelimiter() throws {
        let q3 = "\"\"\""
        XCTAssertEqual(try value(q3 + "Here are two quotation marks: \"\". Simple enough." + q3).string,
                       "Here are two quotation marks: \"\". Simple enough.")
        XCTAssertEqual(try value(q3 + "Here are three quotation marks: \"\"\\\"." + q3).string,
                       "Here are three quotation marks: \"\"\".")
        XCTAssertEqual(try value(q3 + "\"This,\" she said, \"is just a pointless statement.\"" + q3).string,
                       "\"This,\" she said, \"is just a pointless statement.\"")
        XCTAssertEqual(try value(q3 + "a" + "\"\"" + q3).string, "a\"\"")
        XCTAssertEqual(try value(q3 + q3).string, "")
    }

    func testMultilineBasicString_decodesEscapes() throws {
        XCTAssertEqual(try value("\"\"\"tab\\there \\u0041\"\"\"").string, "tab\there A")
    }

    func testMultilineLiteralString_keepsEverythingVerbatim() throws {
        let t = try parse("re = '''I [dw]on't need \\d{2} apples'''\nlines = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''\n")
        XCTAssertEqual(t["re"]?.string, #"I [dw]on't need \d{2} apples"#)
        XCTAssertEqual(t["lines"]?.string, "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n")
        XCTAssertEqual(try value("''''That,' she said, 'is still pointless.'''''").string, "'That,' she said, 'is still pointless.''")
    }

    // MARK: - Numbers

    func testIntegers_acceptSignsAndUnderscores() throws {
        XCTAssertEqual(try value("+99").integer, 99)
        XCTAssertEqual(try value("42").integer, 42)
        XCTAssertEqual(try value("0").integer, 0)
        XCTAssertEqual(try value("-17").integer, -17)
        XCTAssertEqual(try value("+0").integer, 0)
        XCTAssertEqual(try value("-0").integer, 0)
        XCTAssertEqual(try value("1_000").integer, 1000)
        XCTAssertEqual(try value("5_349_221").integer, 5_349_221)
        XCTAssertEqual(try value("1_2_3_4_5").integer, 12345)
    }

    func testIntegers_acceptHexOctalAndBinary() throws {
        XCTAssertEqual(try value("0xDEADBEEF").integer, 0xDEADBEEF)
        XCTAssertEqual(try value("0xdeadbeef").integer, 0xDEADBEEF)
        XCTAssertEqual(try value("0xdead_beef").integer, 0xDEADBEEF)
        XCTAssertEqual(try value("0o01234567").integer, 0o1234567)
        XCTAssertEqual(try value("0o755").integer, 0o755)
        XCTAssertEqual(try value("0b11010110").integer, 0b11010110)
        XCTAssertEqual(try value("0x00").integer, 0)
    }

    func testIntegers_coverTheFull64BitRange() throws {
        XCTAssertEqual(try value("9223372036854775807").integer, Int64.max)
        XCTAssertEqual(try value("-9223372036854775808").integer, Int64.min)
        XCTAssertEqual(try value("0x7FFFFFFFFFFFFFFF").integer, Int64.max)
    }

    func testFloats_acceptFractionsAndExponents() throws {
        XCTAssertEqual(try value("+1.0").float, 1.0)
        XCTAssertEqual(try value("3.1415").float, 3.1415)
        XCTAssertEqual(try value("-0.01").float, -0.01)
        XCTAssertEqual(try value("5e+22").float, 5e+22)
        XCTAssertEqual(try value("1e06").float, 1e6)
        XCTAssertEqual(try value("-2E-2").float, -2e-2)
        XCTAssertEqual(try value("6.626e-34").float, 6.626e-34)
        XCTAssertEqual(try value("224_617.445_991_228").float, 224_617.445_991_228)
        XCTAssertEqual(try value("0e0").float, 0)
        XCTAssertEqual(try value("-0.0").float?.sign, .minus)
    }

    func testFloats_acceptInfinityAndNaN() throws {
        XCTAssertEqual(try value("inf").float, .infinity)
        XCTAssertEqual(try value("+inf").float, .infinity)
        XCTAssertEqual(try value("-inf").float, -.infinity)
        XCTAssertEqual(try value("nan").float?.isNaN, true)
        XCTAssertEqual(try value("+nan").float?.isNaN, true)
        XCTAssertEqual(try value("-nan").float?.isNaN, true)
    }

    // MARK: - Booleans and dates

    func testBooleans_parse() throws {
        XCTAssertEqual(try value("true").boolean, true)
        XCTAssertEqual(try value("false").boolean, false)
    }

    func testDatesAndTimes_areKeptAsWritten() throws {
        XCTAssertEqual(try value("1979-05-27T07:32:00Z").datetime, "1979-05-27T07:32:00Z")
        XCTAssertEqual(try value("1979-05-27T00:32:00-07:00").datetime, "1979-05-27T00:32:00-07:00")
        XCTAssertEqual(try value("1979-05-27T00:32:00.999999-07:00").datetime, "1979-05-27T00:32:00.999999-07:00")
        XCTAssertEqual(try value("1979-05-27 07:32:00Z").datetime, "1979-05-27 07:32:00Z")
        XCTAssertEqual(try value("1979-05-27t07:32:00z").datetime, "1979-05-27t07:32:00z")
        XCTAssertEqual(try value("1979-05-27T07:32:00").datetime, "1979-05-27T07:32:00")
        XCTAssertEqual(try value("1979-05-27").datetime, "1979-05-27")
        XCTAssertEqual(try value("07:32:00").datetime, "07:32:00")
        XCTAssertEqual(try value("00:32:00.999999").datetime, "00:32:00.999999")
        XCTAssertEqual(try value("2024-02-29").datetime, "2024-02-29", "leap day")
    }

    func testDateTypeNames_distinguishDatesTimesAndDateTimes() throws {
        XCTAssertEqual(try value("1979-05-27T07:32:00Z").typeName, "a date-time")
        XCTAssertEqual(try value("1979-05-27").typeName, "a date")
        XCTAssertEqual(try value("07:32:00").typeName, "a time")
    }

    // MARK: - Arrays

    func testArrays_holdAnyValuesIncludingMixedTypes() throws {
        XCTAssertEqual(try value("[ 1, 2, 3 ]").array?.compactMap(\.integer), [1, 2, 3])
        XCTAssertEqual(try value("[ \"red\", 'yellow', \"\"\"green\"\"\" ]").array?.compactMap(\.string), ["red", "yellow", "green"])
        XCTAssertEqual(try value("[ [ 1, 2 ], [3, 4, 5] ]").array?.map { $0.array?.count }, [2, 3])
        let mixed = try XCTUnwrap(value("[ 0.1, 0.2, 1, \"x\", true, 1979-05-27 ]").array)
        XCTAssertEqual(mixed.map(\.typeName), ["a float", "a float", "an integer", "a string", "a boolean", "a date"])
        XCTAssertEqual(try value("[]").array?.count, 0)
    }

    func testArrays_mayBeMultilineWithTrailingCommaAndComments() throws {
        let t = try parse("""
        ports = [ # first
          22,   # ssh
          # nothing here
          80,
          443, # trailing comma next

        ]
        """)
        XCTAssertEqual(t["ports"]?.array?.compactMap(\.integer), [22, 80, 443])
    }

    func testArrays_mayContainInlineTables() throws {
        let t = try parse("points = [ { x = 1, y = 2 }, { x = 7, y = 8 } ]\n")
        XCTAssertEqual(t["points"]?.array?.compactMap { $0.table?["x"]?.integer }, [1, 7])
    }

    // MARK: - Tables

    func testTableHeaders_createTablesAndNestedTables() throws {
        let t = try parse("""
        [table-1]
        key1 = "some string"

        [dog."tater.man"]
        type.name = "pug"

        [ j . "ʞ" . 'l' ]
        x = 1
        """)
        XCTAssertEqual(t[path: ["table-1", "key1"]]?.string, "some string")
        XCTAssertEqual(t[path: ["dog", "tater.man", "type", "name"]]?.string, "pug")
        XCTAssertEqual(t[path: ["j", "ʞ", "l", "x"]]?.integer, 1)
    }

    func testImplicitSuperTables_mayBeDefinedLater() throws {
        let t = try parse("[x.y.z.w]\na = 1\n[x]\nb = 2\n")
        XCTAssertEqual(t[path: ["x", "y", "z", "w", "a"]]?.integer, 1)
        XCTAssertEqual(t[path: ["x", "b"]]?.integer, 2)
        XCTAssertEqual(t["x"]?.position, TOMLPosition(line: 3, column: 1), "the explicit header is the table's position")
    }

    func testEmptyTables_areTables() throws {
        let t = try parse("[empty]\n[other]\nk = 1\n")
        XCTAssertEqual(t["empty"]?.table?.isEmpty, true)
    }

    func testSubTables_mayExtendTablesCreatedByDottedKeys() throws {
        let t = try parse("""
        [fruit]
        apple.color = "red"
        apple.taste.sweet = true

        [fruit.apple.texture]
        smooth = true
        """)
        XCTAssertEqual(t[path: ["fruit", "apple", "texture", "smooth"]]?.boolean, true)
        XCTAssertEqual(t[path: ["fruit", "apple", "taste", "sweet"]]?.boolean, true)
    }

    func testInlineTables_parseOnOneLineWithDottedKeys() throws {
        let t = try parse("""
        name = { first = "Tom", last = "Preston-Werner" }
        point = { x = 1, y = 2 }
        animal = { type.name = "pug" }
        empty = {}
        nested = { a = { b = [1, 2] } }
        """)
        XCTAssertEqual(t[path: ["name", "last"]]?.string, "Preston-Werner")
        XCTAssertEqual(t[path: ["animal", "type", "name"]]?.string, "pug")
        XCTAssertEqual(t["empty"]?.table?.isEmpty, true)
        XCTAssertEqual(t[path: ["nested", "a", "b"]]?.array?.count, 2)
        XCTAssertEqual(t[path: ["point", "y"]]?.position, TOMLPosition(line: 2, column: 22))
    }

    func testArrayOfTables_appendsOneTablePerHeader() throws {
        let t = try parse("""
        [[products]]
        name = "Hammer"
        sku = 738594937

        [[products]]  # empty table within the array

        [[products]]
        name = "Nail"
        color = "gray"
        """)
        let products = try XCTUnwrap(t["products"]?.array)
        XCTAssertEqual(products.count, 3)
        XCTAssertEqual(products[0].table?["name"]?.string, "Hammer")
        XCTAssertEqual(products[1].table?.isEmpty, true)
        XCTAssertEqual(products[2].table?["color"]?.string, "gray")
        XCTAssertEqual(products.map(\.position.line), [1, 5, 7])
        XCTAssertEqual(t["products"]?.typeName, "an array of tables")
    }

    func testArrayOfTables_subTablesAttachToTheLastElement() throws {
        let t = try parse("""
        [[fruits]]
        name = "apple"

        [fruits.physical]  # subtable
        color = "red"

        [[fruits.varieties]]  # nested array of tables
        name = "red delicious"

        [[fruits.varieties]]
        name = "granny smith"

        [[fruits]]
        name = "banana"

        [[fruits.varieties]]
        name = "plantain"
        """)
        let fruits = try XCTUnwrap(t["fruits"]?.array)
        XCTAssertEqual(fruits.count, 2)
        XCTAssertEqual(fruits[0].table?[path: ["physical", "color"]]?.string, "red")
        XCTAssertEqual(fruits[0].table?["varieties"]?.array?.compactMap { $0.table?["name"]?.string }, ["red delicious", "granny smith"])
        XCTAssertEqual(fruits[1].table?["varieties"]?.array?.compactMap { $0.table?["name"]?.string }, ["plantain"])
    }

    func testDottedKeys_mayExtendTablesCreatedImplicitlyByHeaders() throws {
        let t = try parse("[a.b.c]\nx = 1\n[a]\nb.d = 2\n")
        XCTAssertEqual(t[path: ["a", "b", "d"]]?.integer, 2)
        XCTAssertEqual(t[path: ["a", "b", "c", "x"]]?.integer, 1)
    }

    func testPartialParse_returnsWhatPrecedesTheError() {
        let result = TOMLParser.parsePartially(bytes: Array("a = 1\n[t]\nb = 2\nc = \n".utf8))
        XCTAssertEqual(result.error?.position, TOMLPosition(line: 4, column: 5))
        XCTAssertEqual(result.table["a"]?.integer, 1)
        XCTAssertEqual(result.table[path: ["t", "b"]]?.integer, 2)
    }
}
