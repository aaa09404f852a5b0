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
}
