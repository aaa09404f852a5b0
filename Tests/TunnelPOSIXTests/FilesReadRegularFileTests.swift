import Glibc
import TunnelPOSIX
import TunnelTestSupport
import XCTest

/// `Files.readRegularFile`: what a file the user names (a profiles file) may
/// be. Anything but a regular file is refused at once, without blocking on a
/// FIFO or reading from a device, and the size is capped.
final class FilesReadRegularFileTests: XCTestCase {
    private var dir: TemporaryDirectory!

    override func setUpWithError() throws { dir = try TemporaryDirectory() }
    override func tearDown() { dir = nil }

    private func refusal(_ path: String, limit: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line) -> FileReadError? {
        do {
            let bytes = try Files.readRegularFile(path, limit: limit)
            XCTFail("read \(bytes.count) bytes from \(path)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    func testRegularFile_andASymlinkToOne_areReadWhole() throws {
        try dir.write("f", "one\ntwo\n")
        XCTAssertEqual(try Files.readRegularFile(dir.file("f"), limit: 100), Array("one\ntwo\n".utf8))
        XCTAssertEqual(symlink(dir.file("f"), dir.file("link")), 0)
        XCTAssertEqual(try Files.readRegularFile(dir.file("link"), limit: 100), Array("one\ntwo\n".utf8))
    }

    func testFIFOWithoutAWriter_isRefusedWithoutBlocking() throws {
        XCTAssertEqual(mkfifo(dir.file("fifo"), 0o600), 0)
        let error = refusal(dir.file("fifo"))
        XCTAssertEqual(error?.reason, .notRegular("a FIFO"))
        XCTAssertEqual(error?.description, "\(dir.file("fifo")) is a FIFO, not a regular file")
        XCTAssertNil(error?.errno)
    }

    func testDirectory_characterDevice_andSocket_areNamed() throws {
        XCTAssertEqual(refusal(dir.path)?.description, "\(dir.path) is a directory, not a regular file")
        XCTAssertEqual(refusal("/dev/zero")?.description, "/dev/zero is a character device, not a regular file")
        XCTAssertEqual(refusal("/dev/null")?.reason, .notRegular("a character device"))
        let socket = try Socket.unix()
        defer { socket.close() }
        try socket.bind(.unix(path: dir.file("sock")))
        XCTAssertEqual(refusal(dir.file("sock"))?.description, "\(dir.file("sock")) is a socket, not a regular file")
        // Through a symbolic link, the target is what counts.
        XCTAssertEqual(symlink("/dev/zero", dir.file("zero")), 0)
        XCTAssertEqual(refusal(dir.file("zero"))?.reason, .notRegular("a character device"))
    }

    func testSizeLimit_theLimitIsAllowed_oneByteMoreIsRefused() throws {
        try dir.write("exact", String(repeating: "x", count: 1024))
        XCTAssertEqual(try Files.readRegularFile(dir.file("exact"), limit: 1024).count, 1024)
        try dir.write("over", String(repeating: "x", count: 1025))
        let error = refusal(dir.file("over"), limit: 1024)
        XCTAssertEqual(error?.reason, .tooLarge(limit: 1024))
        XCTAssertEqual(error?.description, "\(dir.file("over")) is too large: more than 1 KiB")
        try dir.write("big", String(repeating: "x", count: 2 << 20))
        XCTAssertEqual(refusal(dir.file("big"))?.description, "\(dir.file("big")) is too large: more than 1 MiB")
    }

    func testFileWhoseSizeIsReportedAsZero_isStillReadToItsEnd_withinTheLimit() throws {
        // /proc files report st_size 0.
        let status = try Files.readRegularFile("/proc/self/status", limit: 1 << 20)
        XCTAssertTrue(String(decoding: status, as: UTF8.self).contains("Pid:"))
        XCTAssertEqual(refusal("/proc/self/status", limit: 16)?.reason, .tooLarge(limit: 16))
    }

    func testMissingFile_andMissingDirectory_sayWhy() {
        let missing = refusal(dir.file("nope"))
        XCTAssertEqual(missing?.reason, .missing)
        XCTAssertEqual(missing?.errno, .noEntry)
        XCTAssertEqual(missing?.description, "cannot read \(dir.file("nope")): No such file or directory")
        XCTAssertEqual(refusal(dir.file("nope/x"))?.reason, .missing)
    }
}
