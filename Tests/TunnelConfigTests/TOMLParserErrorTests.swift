import XCTest
@testable import TunnelConfig

/// Malformed TOML: each error names the problem at the right line and column.
final class TOMLParserErrorTests: XCTestCase {
    /// Asserts that `text` fails at `line:column` with a message containing `message`.
    private func assertError(
        _ text: String, at line: Int, _ column: Int, contains message: String,
        file: StaticString = #filePath, testLine: UInt = #line
    ) {
        do {
            let table = try TOMLParser.parse(text)
            XCTFail("expected an error, parsed \(table)", file: file, line: testLine)
        } catch {
            XCTAssertEqual(error.position, TOMLPosition(line: line, column: column), "\(error)", file: file, line: testLine)
            XCTAssertTrue(error.message.contains(message), "\"\(error.message)\" does not contain \"\(message)\"", file: file, line: testLine)
        }
    }

    // MARK: - Strings

    func testUnterminatedBasicString_isReportedAtItsOpeningQuote() {
        assertError("a = 1\nname = \"abc\n", at: 2, 8, contains: "unterminated string")
        assertError("name = \"abc", at: 1, 8, contains: "unterminated string")
    }

    func testUnterminatedLiteralString_isAnError() {
        assertError("name = 'abc\n", at: 1, 8, contains: "unterminated string")
    }

    func testUnterminatedMultilineStrings_areAnError() {
        assertError("a = \"\"\"\nabc\n", at: 1, 5, contains: "unterminated multi-line string")
        assertError("a = '''\nabc''\n", at: 1, 5, contains: "unterminated multi-line string")
    }

    func testBadEscape_isReportedAtTheBackslash() {
        assertError(#"a = "x\qy""#, at: 1, 7, contains: #"invalid escape sequence \q"#)
        assertError(#"a = "\x41""#, at: 1, 6, contains: #"invalid escape sequence \x"#)
        assertError("a = \"\"\"\nok\n  \\e\"\"\"", at: 3, 3, contains: "invalid escape")
    }

    func testShortUnicodeEscape_isAnError() {
        assertError(#"a = "\u12""#, at: 1, 6, contains: "4 hexadecimal digits")
        assertError(#"a = "\U0001F60""#, at: 1, 6, contains: "8 hexadecimal digits")
    }

    func testSurrogateOrOutOfRangeEscape_isAnError() {
        assertError(#"a = "\uD800""#, at: 1, 6, contains: "not a Unicode scalar value")
        assertError(#"a = "\U00110000""#, at: 1, 6, contains: "not a Unicode scalar value")
    }

    func testControlCharacterInString_mustBeEscaped() {
        assertError("a = \"x\u{01}y\"", at: 1, 7, contains: "U+0001 must be escaped")
        assertError("a = 'x\u{7F}'", at: 1, 7, contains: "U+007F")
    }

    func testNewlineInSingleLineString_isAnError() {
        assertError("a = \"abc\ndef\"\n", at: 1, 5, contains: "unterminated string")
    }

    func testTooManyQuotesAtTheEndOfAMultilineString_isAnError() {
        assertError("a = \"\"\"x\"\"\"\"\"\"\n", at: 1, 14, contains: "too many quotes")
    }

    func testMultilineStringAsKey_isAnError() {
        assertError("\"\"\"key\"\"\" = 1", at: 1, 1, contains: "multi-line")
    }

    // MARK: - Keys and values

    func testMissingEquals_isReportedAfterTheKey() {
        assertError("host \"x\"\n", at: 1, 6, contains: "expected \"=\" after the key \"host\"")
        assertError("[t]\nport\n", at: 2, 5, contains: "expected \"=\"")
    }

    func testKeyWithNoValue_isAnError() {
        assertError("host = \n", at: 1, 8, contains: "expected a value")
        assertError("host =", at: 1, 7, contains: "expected a value, found the end of the file")
        assertError("host = # comment\n", at: 1, 8, contains: "expected a value, found a comment")
    }

    func testMissingKey_isAnError() {
        assertError("= 1\n", at: 1, 1, contains: "expected a key")
        assertError("a. = 1\n", at: 1, 4, contains: "expected a key")
    }

    func testBareKeyWithInvalidCharacter_isAnError() {
        assertError("a!b = 1\n", at: 1, 2, contains: "expected \"=\"")
        assertError("ключ = 1\n", at: 1, 1, contains: "quote other keys")
    }

    func testUnquotedStringValue_suggestsQuotes() {
        assertError("host = localhost\n", at: 1, 8, contains: "invalid value \"localhost\" (strings must be in quotes)")
    }

    func testTwoValuesOnOneLine_isAnError() {
        assertError("a = 1 b = 2\n", at: 1, 7, contains: "expected the end of the line")
        assertError("a = \"x\" \"y\"\n", at: 1, 9, contains: "expected the end of the line")
    }

    func testDuplicateKey_isReportedAtTheSecondDefinition() {
        assertError("host = \"a\"\nport = 1\nhost = \"b\"\n", at: 3, 1, contains: "duplicate key \"host\" (first defined at 1:1)")
    }

    func testDuplicateKeyInsideATable_namesTheFullPath() {
        assertError("[tunnels.db]\nhost = \"a\"\n  host = \"b\"\n", at: 3, 3, contains: "duplicate key \"tunnels.db.host\"")
    }

    func testDuplicateKeyThroughDottedKeys_isAnError() {
        assertError("a.b = 1\na.b = 2\n", at: 2, 3, contains: "duplicate key \"a.b\"")
        assertError("a = 1\na.b = 2\n", at: 2, 1, contains: "already an integer")
    }

    // MARK: - Numbers

    func testIntegerPrefixWithoutDigits_isAnError() {
        assertError("a = 0x\n", at: 1, 5, contains: "expected hexadecimal digits after \"0x\"")
        assertError("a = 0o\n", at: 1, 5, contains: "octal digits")
        assertError("a = 0b\n", at: 1, 5, contains: "binary digits")
    }

    func testInvalidDigitsForTheRadix_areAnError() {
        assertError("a = 0o8\n", at: 1, 5, contains: "octal digits")
        assertError("a = 0b102\n", at: 1, 5, contains: "binary digits")
        assertError("a = 0xG\n", at: 1, 5, contains: "hexadecimal digits")
    }

    func testUppercaseRadixPrefix_isAnError() {
        assertError("a = 0X1F\n", at: 1, 5, contains: "invalid number")
    }

    func testSignedHexInteger_isAnError() {
        assertError("a = -0x1\n", at: 1, 5, contains: "a sign is not allowed")
    }

    func testLeadingZeros_areAnError() {
        assertError("port = 022\n", at: 1, 8, contains: "leading zeros are not allowed")
        assertError("a = -01\n", at: 1, 5, contains: "leading zeros")
        assertError("a = 00.5\n", at: 1, 5, contains: "leading zeros")
    }

    func testMisplacedUnderscores_areAnError() {
        assertError("a = 1__000\n", at: 1, 5, contains: "\"_\" must be between digits")
        assertError("a = 1000_\n", at: 1, 5, contains: "\"_\" must be between digits")
        assertError("a = _1000\n", at: 1, 5, contains: "invalid value")
        assertError("a = 0x_1\n", at: 1, 5, contains: "hexadecimal digits")
    }

    func testIntegerOverflow_isAnError() {
        assertError("a = 9223372036854775808\n", at: 1, 5, contains: "does not fit in 64 bits")
        assertError("a = 0xFFFFFFFFFFFFFFFF\n", at: 1, 5, contains: "does not fit in 64 bits")
    }

    func testMalformedFloats_areAnError() {
        assertError("a = 1.\n", at: 1, 5, contains: "expected digits after \".\"")
        assertError("a = .5\n", at: 1, 5, contains: "invalid value")
        assertError("a = 1e\n", at: 1, 5, contains: "exponent")
        assertError("a = 1.2.3\n", at: 1, 5, contains: "invalid number")
        assertError("a = 1e400\n", at: 1, 5, contains: "out of range")
        assertError("a = Inf\n", at: 1, 5, contains: "invalid value")
    }

    func testMalformedBooleans_areAnError() {
        assertError("a = True\n", at: 1, 5, contains: "invalid value \"True\"")
        assertError("a = truthy\n", at: 1, 5, contains: "invalid value")
    }

    func testInvalidDates_areAnError() {
        assertError("a = 2023-02-30\n", at: 1, 5, contains: "invalid date")
        assertError("a = 2023-13-01\n", at: 1, 5, contains: "invalid date")
        assertError("a = 1979-05-27T25:00:00Z\n", at: 1, 5, contains: "invalid date")
        assertError("a = 1979-05-27T07:32Z\n", at: 1, 5, contains: "invalid date")
        assertError("a = 07:32\n", at: 1, 5, contains: "invalid time")
        assertError("a = 1979-05-27T07:32:00+7:00\n", at: 1, 5, contains: "invalid date")
    }

    // MARK: - Arrays and inline tables

    func testUnterminatedArray_isReportedAtItsOpeningBracket() {
        assertError("a = [1, 2\n\nb = 3\n", at: 3, 1, contains: "expected \",\" or \"]\"")
        assertError("a = [1, 2,\n", at: 1, 5, contains: "unterminated array")
    }

    func testArraySeparators_areRequiredAndSingle() {
        assertError("a = [1 2]\n", at: 1, 8, contains: "expected \",\" or \"]\"")
        assertError("a = [1,,2]\n", at: 1, 8, contains: "expected a value, found \",\"")
        assertError("a = [,]\n", at: 1, 6, contains: "expected a value")
    }

    func testInlineTable_mustBeOnOneLine() {
        assertError("a = { b = 1,\n c = 2 }\n", at: 1, 13, contains: "one line")
    }

    func testInlineTable_rejectsATrailingComma() {
        assertError("a = { b = 1, }\n", at: 1, 14, contains: "trailing comma")
    }

    func testInlineTable_rejectsDuplicateKeys() {
        assertError("a = { b = 1, b = 2 }\n", at: 1, 14, contains: "duplicate key \"b\"")
    }

    func testInlineTable_cannotBeExtendedLater() {
        assertError("a = { b = 1 }\n[a.c]\n", at: 2, 2, contains: "\"a\" is already an inline table")
        assertError("a = { b = 1 }\na.c = 2\n", at: 2, 1, contains: "already an inline table")
        assertError("[t]\na = { b = 1 }\n[t.a]\n", at: 3, 1, contains: "already an inline table")
    }

    func testUnterminatedInlineTable_isAnError() {
        assertError("a = { b = 1", at: 1, 5, contains: "unterminated inline table")
    }

    // MARK: - Tables

    func testDuplicateTable_isAnError() {
        assertError("[tunnels.db]\nhost = \"a\"\n\n[tunnels.db]\nhost = \"b\"\n", at: 4, 1,
                    contains: "table [tunnels.db] is already defined at 1:1")
    }

    func testDefiningAnImplicitTableTwice_isAnError() {
        assertError("[a.b]\n[a]\n[a]\n", at: 3, 1, contains: "table [a] is already defined at 2:1")
    }

    func testTableHeaderOverAValue_isAnError() {
        assertError("a = 1\n[a]\n", at: 2, 1, contains: "\"a\" is already an integer")
        assertError("[a]\nb = 1\n[a.b]\n", at: 3, 1, contains: "\"a.b\" is already an integer")
    }

    func testTableHeaderOverDottedKeys_isAnError() {
        assertError("[fruit]\napple.color = \"red\"\n[fruit.apple]\n", at: 3, 1, contains: "already defined by dotted keys")
    }

    func testDottedKeyIntoAHeaderTable_isAnError() {
        assertError("[a.b]\nx = 1\n[a]\nb.y = 2\n", at: 4, 1, contains: "defined by a header at 1:1")
    }

    func testArrayOfTablesOverAStaticArray_isAnError() {
        assertError("fruits = []\n[[fruits]]\n", at: 2, 1, contains: "already an array")
    }

    func testTableHeaderOverAnArrayOfTables_isAnError() {
        assertError("[[a]]\n[a]\n", at: 2, 1, contains: "already an array of tables")
        assertError("[a]\n[[a]]\n", at: 2, 1, contains: "already a table")
    }

    func testMalformedHeaders_areAnError() {
        assertError("[a\nb = 1\n", at: 1, 3, contains: "expected \"]\"")
        assertError("[]\n", at: 1, 2, contains: "expected a key")
        assertError("[[a]\n", at: 1, 5, contains: "expected \"]]\"")
        assertError("[a] b = 1\n", at: 1, 5, contains: "expected the end of the line")
        assertError("[a.]\n", at: 1, 4, contains: "expected a key")
    }

    // MARK: - Whitespace, comments, encoding

    func testBareCarriageReturn_isAnError() {
        assertError("a = 1\rb = 2\n", at: 1, 6, contains: "carriage return")
    }

    func testControlCharacterInComment_isAnError() {
        assertError("# bad \u{07} bell\n", at: 1, 7, contains: "not allowed in a comment")
    }

    func testInvalidUTF8_isReportedAtTheBadByte() {
        let bytes = Array("a = 1\nb = \"".utf8) + [0xFF] + Array("\"\n".utf8)
        XCTAssertThrowsError(try TOMLParser.parse(bytes: bytes)) { error in
            let e = error as! TOMLError
            XCTAssertEqual(e.position, TOMLPosition(line: 2, column: 6))
            XCTAssertTrue(e.message.contains("not valid UTF-8"))
        }
    }

    func testErrorPositions_workWithCRLFLineEndings() {
        assertError("a = 1\r\nb = 2\r\nc = \r\n", at: 3, 5, contains: "expected a value")
    }

    func testErrorDescription_isLineColonColumnColonMessage() {
        XCTAssertEqual(TOMLError(position: TOMLPosition(line: 3, column: 7), message: "boom").description, "3:7: boom")
    }
}
