import Foundation
import Glibc
import Logging
import XCTest
import TunnelPOSIX
import TunnelSupervisor

final class LineLogHandlerTests: XCTestCase {
    private var readEnd: Int32 = -1
    private var writeEnd: Int32 = -1

    override func setUpWithError() throws {
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pair), 0)
        readEnd = pair[0]
        writeEnd = pair[1]
        // Non-blocking reads: "nothing was written" must not hang the test.
        XCTAssertNotEqual(fcntl(readEnd, F_SETFL, fcntl(readEnd, F_GETFL) | O_NONBLOCK), -1)
    }

    override func tearDown() {
        close(readEnd)
        close(writeEnd)
    }

    private func written() -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(readEnd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func logger(minimum: Logger.Level = .info) -> Logger {
        let sink = LogSink(fd: writeEnd, minimumLevel: minimum)
        return Logger(label: "test") { LineLogHandler(label: $0, sink: sink) }
    }

    /// "YYYY-MM-DD HH:MM:SS " then the rest.
    private func splitTimestamp(_ line: Substring) -> (timestamp: String, rest: String) {
        (String(line.prefix(19)), String(line.dropFirst(20)))
    }

    func testLineLogHandler_withTunnelMetadata_writesNameInBracketsLevelAndMessage() throws {
        var log = logger()
        log[metadataKey: "tunnel"] = "db"
        log.warning("link lost")
        let text = written()
        XCTAssertTrue(text.hasSuffix("\n"))
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        let (timestamp, rest) = splitTimestamp(lines[0])
        XCTAssertEqual(rest, "[db] warning: link lost")
        XCTAssertNotNil(try timestamp.wholeMatch(of: Regex(#"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"#)), timestamp)
    }

    func testLineLogHandler_withoutTunnelMetadata_hasNoBrackets() {
        let log = logger()
        log.info("daemon started")
        let (_, rest) = splitTimestamp(written().split(separator: "\n")[0])
        XCTAssertEqual(rest, "info: daemon started")
    }

    func testLineLogHandler_otherMetadata_isAppendedSortedAsKeyValuePairs() {
        var log = logger()
        log[metadataKey: "tunnel"] = "web"
        log[metadataKey: "zeta"] = "1"
        log.error("forward failed", metadata: ["alpha": "x", "port": "8080"])
        let (_, rest) = splitTimestamp(written().split(separator: "\n")[0])
        XCTAssertEqual(rest, "[web] error: forward failed alpha=x port=8080 zeta=1")
    }

    func testLineLogHandler_explicitTunnelMetadata_overridesTheLoggersOwn() {
        var log = logger()
        log[metadataKey: "tunnel"] = "old"
        log.notice("renamed", metadata: ["tunnel": "new"])
        let (_, rest) = splitTimestamp(written().split(separator: "\n")[0])
        XCTAssertEqual(rest, "[new] notice: renamed")
    }

    func testLineLogHandler_messagesBelowTheMinimumLevel_areNotWritten() {
        let log = logger(minimum: .warning)
        log.info("too quiet")
        log.debug("quieter")
        log.warning("loud enough")
        let lines = written().split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        XCTAssertEqual(splitTimestamp(lines[0]).rest, "warning: loud enough")
    }

    func testLogSink_withSeveralDescriptors_writesEachLineToAll() {
        var other: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&other), 0)
        defer { close(other[0]); close(other[1]) }
        let sink = LogSink(fds: [writeEnd, other[1]], minimumLevel: .info)
        sink.write("first")
        sink.write("second\n")
        XCTAssertEqual(written(), "first\nsecond\n")
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(other[0], &buf, buf.count)
        XCTAssertEqual(String(decoding: buf[0..<max(0, n)], as: UTF8.self), "first\nsecond\n")
    }

    func testControlCharactersInAMessage_staySingleLineAndInert() {
        logger().warning("server said \u{1b}[2Jhello\nforged 2026-01-01 [db] error: x\u{9b}31m")
        let out = written()
        XCTAssertEqual(out.filter { $0 == "\n" }.count, 1, out)
        XCTAssertTrue(out.hasSuffix("warning: server said \\x1b[2Jhello\\nforged 2026-01-01 [db] error: x\\u{9b}31m\n"), out)
    }

    func testLogFile_rotatesBySizeWhileWriting_keepingThree() throws {
        let dir = NSTemporaryDirectory() + "/tunnel-rotate-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        XCTAssertEqual(mkdir(dir, 0o700), 0)
        defer { for suffix in ["", ".1", ".2", ".3", ".4"] { unlink(dir + "/log" + suffix) }; rmdir(dir) }
        let file = try RotatingLogFile(path: dir + "/log", limit: 1000, keep: 3)
        let sink = LogSink(fds: [], file: file, minimumLevel: .info)
        let logger = Logger(label: "test") { LineLogHandler(label: $0, sink: sink) }
        for i in 0..<100 { logger.info("line \(i) \(String(repeating: "x", count: 60))") }
        func lines(_ suffix: String) -> [String] {
            ((try? String(contentsOfFile: dir + "/log" + suffix, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/log.4"), "only three rotated files are kept")
        for suffix in ["", ".1", ".2", ".3"] {
            var st = stat()
            XCTAssertEqual(stat(dir + "/log" + suffix, &st), 0, suffix)
            XCTAssertLessThanOrEqual(Int(st.st_size), 1000 + 120, "a file ends at the first line past the limit: \(suffix)")
        }
        // Newest last: the four files hold the latest lines, in order, without a gap.
        let kept = lines(".3") + lines(".2") + lines(".1") + lines("")
        let numbers = kept.compactMap { line in line.split(separator: " ").firstIndex(of: "line").map { Int(line.split(separator: " ")[$0 + 1])! } }
        XCTAssertEqual(numbers.last, 99)
        XCTAssertEqual(numbers, Array((numbers.first ?? 0)...99), "lines lost or reordered across rotations")
        XCTAssertGreaterThan(numbers.count, 30, "four files of 1000 bytes hold more than 30 of these lines")
    }
}
