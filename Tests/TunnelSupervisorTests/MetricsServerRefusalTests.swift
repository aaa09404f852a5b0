import Foundation
import Glibc
import Logging
import XCTest
import TunnelConfig
import TunnelEngine
import TunnelPOSIX
@testable import TunnelSupervisor

/// The metrics endpoint holds at most `MetricsServer.maxScrapers` scrapes.
/// When every place is answering a whole request (clients that asked and do
/// not read a reply too large for the socket buffers), a further scrape is
/// closed at once and logged: the first refusal at once, then at most one
/// line a minute with the count. Real sockets, a real event loop.
final class MetricsServerRefusalTests: XCTestCase {
    /// The server, touched on the loop thread only.
    private final class Holder: @unchecked Sendable { var server: MetricsServer? }

    private var loop: EventLoop!
    private var finished: XCTestExpectation!
    private let holder = Holder()
    private var logRead: Int32 = -1, logWrite: Int32 = -1
    private var clients: [Int32] = []

    override func setUpWithError() throws {
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pair), 0)
        (logRead, logWrite) = (pair[0], pair[1])
        XCTAssertNotEqual(fcntl(logRead, F_SETFL, fcntl(logRead, F_GETFL) | O_NONBLOCK), -1)
        loop = try EventLoop()
        finished = expectation(description: "run() returned")
        let loop = self.loop!, finished = self.finished!
        try startThread(name: "metrics-test-loop") {
            loop.run()
            finished.fulfill()
        }
    }

    override func tearDown() {
        let holder = self.holder
        if let loop {
            loop.execute {
                holder.server?.close()
                holder.server = nil
                loop.stop()
            }
            wait(for: [finished], timeout: 10)
        }
        clients.forEach { close($0) }
        close(logRead)
        close(logWrite)
    }

    private func logged() -> String {
        var out: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
        while case let n = read(logRead, &buffer, buffer.count), n > 0 { out += buffer[0..<n] }
        return String(decoding: out, as: UTF8.self)
    }

    /// A loopback port nothing listens on now.
    private func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: address.sin_port)
    }

    /// A client with the smallest receive buffer, connected to `port`.
    private func connectClient(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(rc, 0, "connect: errno \(errno)")
        clients.append(fd)
        return fd
    }

    private func sendRequest(_ fd: Int32) {
        let request = Array("GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".utf8)
        XCTAssertEqual(send(fd, request, request.count, 0), request.count)
    }

    /// True once the server has started answering `fd` (it read the whole request).
    private func replyStarted(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 1
    }

    /// True when the server closed `fd` without a byte of reply.
    private func closedWithoutReply(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    func testEveryPlaceAnsweringAWholeRequest_furtherScrapesAreClosedAtOnce_andLoggedOnceAMinute() throws {
        let port = freePort()
        let holder = self.holder, loop = self.loop!
        let sink = LogSink(fd: logWrite, minimumLevel: .info)
        let logger = Logger(label: "metrics-test") { LineLogHandler(label: $0, sink: sink) }
        // Far more than a client's 4 KiB window and the server's largest send buffer (4 MiB): the replies stay under way.
        let body = String(repeating: "tunnel_test_padding 1\n", count: (6 << 20) / 22)
        let listened = expectation(description: "listening")
        loop.execute {
            // A deadline no slow machine reaches: the slow scrapes must still be there when the others arrive.
            let server = MetricsServer(loop: loop, logger: logger, scrapeDeadline: 600) { body }
            holder.server = server
            do { try server.listen(on: MetricsAddress(host: "127.0.0.1", isIPv6: false, port: port)) } catch { XCTFail("listen: \(error)") }
            listened.fulfill()
        }
        wait(for: [listened], timeout: 10)

        let slow = (0..<MetricsServer.maxScrapers).map { _ in connectClient(port) }
        slow.forEach(sendRequest)
        XCTAssertTrue(eventually(timeout: 60) { slow.allSatisfy(self.replyStarted) }, "the server did not start answering every request")
        XCTAssertFalse(logged().contains("refused"), "nothing refused yet")

        // Every place answers a whole request: the next two are closed unread, one line logged.
        for _ in 0..<2 {
            let refused = connectClient(port)
            sendRequest(refused)
            XCTAssertTrue(closedWithoutReply(refused), "a scrape beyond the \(MetricsServer.maxScrapers) places was served")
        }
        let log = logged()
        XCTAssertEqual(log.components(separatedBy: "metrics: refused a scrape: all \(MetricsServer.maxScrapers) places were answering requests (clients slow to read their replies)").count - 1, 1, log)
        XCTAssertEqual(log.components(separatedBy: "metrics: refused").count - 1, 1, "the second refusal within a minute is counted, not logged: \(log)")
        // The slow scrapes were left alone.
        XCTAssertTrue(slow.allSatisfy(replyStarted))
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` seconds pass.
    private func eventually(timeout: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
