import TunnelTestSupport
import XCTest
import TunnelPOSIX

/// `KnownHosts.append` relies on `Files.append` to start a new line when the
/// file does not end with one; these pin that down at its source.
final class FilesAppendTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws { dir = try TemporaryDirectory() }
    override func tearDown() { dir = nil }

    func testFilesAppend_toFileEndingWithNewline_appendsDirectly() throws {
        try dir.write("f", "one\n")
        try Files.append("two\n", to: dir.file("f"))
        XCTAssertEqual(try dir.read("f"), "one\ntwo\n")
    }

    func testFilesAppend_toMissingFile_createsItWithTheMode() throws {
        try Files.append("one\n", to: dir.file("new"), mode: 0o600)
        XCTAssertEqual(try dir.read("new"), "one\n")
        XCTAssertEqual(Files.status(dir.file("new"))?.mode, 0o600)
    }

    func testFilesAppend_toFileWithoutTrailingNewline_insertsTheSeparatorFirst() throws {
        try dir.write("f", "one")
        try Files.append("two\n", to: dir.file("f"))
        XCTAssertEqual(try dir.read("f"), "one\ntwo\n")
    }

    func testFilesAppend_withoutSeparateLines_appendsRightAfterTheLastByte() throws {
        try dir.write("f", "one")
        try Files.append("two", to: dir.file("f"), separateLines: false)
        XCTAssertEqual(try dir.read("f"), "onetwo")
    }
}
