import XCTest
import TunnelEngine
@testable import TunnelSupervisor

/// The Prometheus text the endpoint serves, and the HTTP exchange around it.
final class MetricsExpositionTests: XCTestCase {
    private func lines(_ snapshot: MetricsSnapshot) -> [String] {
        MetricsExposition.render(snapshot).split(separator: "\n").map(String.init)
    }

    func testEmptySnapshot_hasEveryFamilyWithHelpAndType_andNoSamples() {
        let out = lines(MetricsSnapshot(tunnels: []))
        let families = ["tunnel_up gauge", "tunnel_state gauge", "tunnel_restarts_total counter", "tunnel_forward_connections_active gauge",
                        "tunnel_forward_connections_total counter", "tunnel_forward_bytes_total counter", "tunnel_keepalive_rtt_seconds gauge",
                        "tunnel_connect_duration_seconds histogram"]
        XCTAssertEqual(out.filter { $0.hasPrefix("# TYPE ") }, families.map { "# TYPE " + $0 })
        XCTAssertEqual(out.filter { $0.hasPrefix("# HELP ") }.count, families.count)
        XCTAssertTrue(out.allSatisfy { $0.hasPrefix("#") })
    }

    func testOneTunnel_samplesWithLabelsAndValues() {
        var histogram = DurationHistogram()
        histogram.record(0.03)
        histogram.record(0.3)
        histogram.record(42)
        let tunnel = MetricsSnapshot.Tunnel(
            name: "db", phase: .up, restarts: 3, rttSeconds: 0.0125, connectDurations: MetricsSnapshot.Histogram(histogram),
            forwards: [.init(label: "127.0.0.1:5433->localhost:5432", active: 2, total: 7, bytesIn: 100, bytesOut: 2000)])
        let out = lines(MetricsSnapshot(tunnels: [tunnel]))
        for expected in [
            #"tunnel_up{tunnel="db"} 1"#,
            #"tunnel_state{tunnel="db",state="up"} 1"#,
            #"tunnel_state{tunnel="db",state="connecting"} 0"#,
            #"tunnel_state{tunnel="db",state="reconnecting"} 0"#,
            #"tunnel_state{tunnel="db",state="failed"} 0"#,
            #"tunnel_state{tunnel="db",state="idle"} 0"#,
            #"tunnel_restarts_total{tunnel="db"} 3"#,
            #"tunnel_forward_connections_active{tunnel="db",forward="127.0.0.1:5433->localhost:5432"} 2"#,
            #"tunnel_forward_connections_total{tunnel="db",forward="127.0.0.1:5433->localhost:5432"} 7"#,
            #"tunnel_forward_bytes_total{tunnel="db",forward="127.0.0.1:5433->localhost:5432",direction="in"} 100"#,
            #"tunnel_forward_bytes_total{tunnel="db",forward="127.0.0.1:5433->localhost:5432",direction="out"} 2000"#,
            #"tunnel_keepalive_rtt_seconds{tunnel="db"} 0.0125"#,
            #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="0.05"} 1"#,
            #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="0.1"} 1"#,
            #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="0.5"} 2"#,
            #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="30"} 2"#,
            #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="+Inf"} 3"#,
            #"tunnel_connect_duration_seconds_sum{tunnel="db"} 42.33"#,
            #"tunnel_connect_duration_seconds_count{tunnel="db"} 3"#,
        ] {
            XCTAssertTrue(out.contains(expected), "missing \(expected) in\n\(out.joined(separator: "\n"))")
        }
        // One state sample per state, "stopped" not among them.
        XCTAssertEqual(out.filter { $0.hasPrefix("tunnel_state{") }.count, 5)
        XCTAssertFalse(out.contains { $0.contains(#"state="stopped""#) })
        XCTAssertEqual(out.filter { $0.hasPrefix("tunnel_connect_duration_seconds_bucket{") }.count, DurationHistogram.bounds.count + 1)
    }

    func testBuckets_areCumulativeAndNeverDecrease() {
        var histogram = DurationHistogram()
        for seconds in [0.01, 0.07, 0.2, 0.2, 0.9, 3, 7, 20, 100] { histogram.record(seconds) }
        let out = lines(MetricsSnapshot(tunnels: [.init(name: "t", phase: .up, connectDurations: .init(histogram))]))
        let values = out.filter { $0.hasPrefix("tunnel_connect_duration_seconds_bucket{") }.compactMap { UInt64($0.split(separator: " ").last!) }
        XCTAssertEqual(values, [1, 2, 4, 4, 5, 5, 6, 7, 8, 9])
    }

    func testStoppedPhase_readsReconnecting_likeTunnelLs_andUpIsZero() {
        let out = lines(MetricsSnapshot(tunnels: [.init(name: "t", phase: .stopped)]))
        XCTAssertTrue(out.contains(#"tunnel_up{tunnel="t"} 0"#))
        XCTAssertTrue(out.contains(#"tunnel_state{tunnel="t",state="reconnecting"} 1"#))
        XCTAssertEqual(out.filter { $0.hasPrefix("tunnel_state{") && $0.hasSuffix(" 1") }.count, 1)
    }

    func testRTT_isOmittedWhileUnknown() {
        let out = lines(MetricsSnapshot(tunnels: [.init(name: "t", phase: .connecting, rttSeconds: nil)]))
        XCTAssertFalse(out.contains { $0.hasPrefix("tunnel_keepalive_rtt_seconds{") })
        XCTAssertTrue(out.contains("# TYPE tunnel_keepalive_rtt_seconds gauge"))
    }

    func testLabelValues_escapeBackslashQuoteAndNewline() {
        XCTAssertEqual(MetricsExposition.escapeLabel("a\\b\"c\nd"), #"a\\b\"c\nd"#)
        let out = lines(MetricsSnapshot(tunnels: [.init(name: "t", phase: .up, forwards: [.init(label: "/run/a\"b\\c\nd:h:1")])]))
        XCTAssertTrue(out.contains(#"tunnel_forward_connections_total{tunnel="t",forward="/run/a\"b\\c\nd:h:1"} 0"#), out.joined(separator: "\n"))
    }

    func testTunnels_areSortedByName_samplesGroupedUnderTheirFamily() {
        let out = lines(MetricsSnapshot(tunnels: [.init(name: "b", phase: .up), .init(name: "a", phase: .failed)]))
        XCTAssertEqual(out.filter { $0.hasPrefix("tunnel_up{") }, [#"tunnel_up{tunnel="a"} 0"#, #"tunnel_up{tunnel="b"} 1"#])
        // Every sample follows its own family's TYPE line and precedes the next.
        var family = ""
        for line in out {
            if line.hasPrefix("# TYPE ") { family = String(line.split(separator: " ")[2]); continue }
            if line.hasPrefix("#") { continue }
            XCTAssertTrue(line.hasPrefix(family), "\(line) outside \(family)")
        }
    }

    func testHistogramSum_addsCarriedTotals() {
        var a = DurationHistogram(), b = DurationHistogram()
        a.record(0.2)
        b.record(0.2)
        b.record(50)
        let sum = MetricsSnapshot.Histogram(a) + MetricsSnapshot.Histogram(b)
        XCTAssertEqual(sum.count, 3)
        XCTAssertEqual(sum.sum, 50.4, accuracy: 1e-9)
        XCTAssertEqual(sum.counts[2], 2)
        XCTAssertEqual(sum.counts.last, 1)
    }

    // MARK: - the HTTP exchange

    private func exchange(_ chunks: [String]) -> ScrapeExchange.Action {
        var e = ScrapeExchange()
        var action = ScrapeExchange.Action.readMore
        for chunk in chunks { action = e.received(Array(chunk.utf8)) }
        return action
    }

    func testGetMetrics_isServed_evenWhenTheHeadArrivesInPieces() {
        XCTAssertEqual(exchange(["GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"]), .reply(.metrics))
        XCTAssertEqual(exchange(["GET /metrics?x=1 HTTP/1.0\r\n\r\n"]), .reply(.metrics))
        XCTAssertEqual(exchange(["GET /metr", "ics HTTP/1.1\r\nAccept: */*\r", "\n\r", "\n"]), .reply(.metrics))
        XCTAssertEqual(exchange(["GET /metrics HTTP/1.1\n\n"]), .reply(.metrics))
        XCTAssertEqual(exchange(["GET /metrics HTTP/1.1\r\nHost: x\r\n"]), .readMore)
    }

    func testOtherPaths_404_otherMethods_405_garbage_400_andHEADIsGETWithoutTheBody() {
        XCTAssertEqual(exchange(["GET / HTTP/1.1\r\n\r\n"]), .reply(.notFound))
        XCTAssertEqual(exchange(["GET /metricsx HTTP/1.1\r\n\r\n"]), .reply(.notFound))
        XCTAssertEqual(exchange(["POST /metrics HTTP/1.1\r\n\r\n"]), .reply(.methodNotAllowed))
        XCTAssertEqual(exchange(["HEAD /metrics HTTP/1.1\r\n\r\n"]), .reply(.metrics, headOnly: true))
        XCTAssertEqual(exchange(["HEAD /other HTTP/1.1\r\n\r\n"]), .reply(.notFound, headOnly: true))
        XCTAssertEqual(exchange(["PUT /metrics HTTP/1.1\r\n\r\n"]), .reply(.methodNotAllowed))
        XCTAssertEqual(exchange(["hello\r\n\r\n"]), .reply(.badRequest))
        XCTAssertEqual(exchange(["GET metrics HTTP/1.1\r\n\r\n"]), .reply(.badRequest))
    }

    func testHeadOver8KiB_is431_atTheLimitStillServed() {
        let line = "GET /metrics HTTP/1.1\r\n"
        let filler = "X-Pad: " + String(repeating: "a", count: ScrapeExchange.headLimit) + "\r\n"
        XCTAssertEqual(exchange([line, filler]), .reply(.headTooLarge))
        XCTAssertEqual(exchange([line + filler + "\r\n"]), .reply(.headTooLarge), "a whole head in one read is measured too")
        let exact = line + "X: " + String(repeating: "a", count: ScrapeExchange.headLimit - line.utf8.count - 7) + "\r\n\r\n"
        XCTAssertEqual(exact.utf8.count, ScrapeExchange.headLimit)
        XCTAssertEqual(exchange([exact]), .reply(.metrics))
    }

    func testPeerClosingBeforeAWholeHead_closesWithoutReply_andBytesAfterTheReplyAreIgnored() {
        var e = ScrapeExchange()
        XCTAssertEqual(e.received(Array("GET /met".utf8)), .readMore)
        XCTAssertEqual(e.peerClosed(), .close)
        XCTAssertEqual(e.state, .closed)
        var served = ScrapeExchange()
        XCTAssertEqual(served.received(Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)), .reply(.metrics))
        XCTAssertEqual(served.received(Array("GET / HTTP/1.1\r\n\r\n".utf8)), .readMore)
        XCTAssertEqual(served.state, .replying)
    }

    func testResponse_hasStatusContentTypeLengthAndConnectionClose() {
        let text = String(decoding: ScrapeExchange.response(.metrics) { "a 1\n" }, as: UTF8.self)
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n")
        var rendered = false
        let refused = String(decoding: ScrapeExchange.response(.headTooLarge) { rendered = true; return "" }, as: UTF8.self)
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"), refused)
        XCTAssertTrue(refused.contains("Connection: close\r\n"))
        XCTAssertFalse(rendered, "only a scrape renders the metrics")
        XCTAssertTrue(String(decoding: ScrapeExchange.response(.methodNotAllowed) { "" }, as: UTF8.self).contains("\r\nAllow: GET, HEAD\r\n"))
        let head = String(decoding: ScrapeExchange.response(.metrics, headOnly: true) { "a 1\n" }, as: UTF8.self)
        XCTAssertEqual(head, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
    }
}

import TunnelConfig

final class ForwardLabelTests: XCTestCase {
    func testLabels_describeEachForward_fromTheProfile_uniqueWithinATunnel() throws {
        let config = Config.parse(text: """
        [tunnels.db]
        host = "h"
        forward = ["5433:localhost:5432", "[::1]:8081:[::1]:80", "0:db:5432", "0:db:5432"]
        dynamic = "1080"
        remote = ["8080:localhost:3000", "0:127.0.0.1:22"]
        """, path: "/t.toml", environment: ["HOME": "/home/t", "USER": "t"])
        let profile = try config.profile(named: "db")
        XCTAssertEqual(SupervisorMetrics.forwardLabels(profile), [
            "127.0.0.1:5433->localhost:5432",
            "[::1]:8081->[::1]:80",
            "127.0.0.1:auto->db:5432",
            "127.0.0.1:auto->db:5432 #2",
            "127.0.0.1:1080->socks",
            "remote 127.0.0.1:8080->localhost:3000",
            "remote 127.0.0.1:auto->127.0.0.1:22",
        ])
    }
}
