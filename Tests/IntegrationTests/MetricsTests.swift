import Foundation
import XCTest

/// The supervisor's Prometheus endpoint (`[daemon] metrics`), scraped with
/// real curl and checked with real promtool, against a real sshd.
final class MetricsTests: SSHTestCase {

    // MARK: helpers

    private func daemonTable(_ port: UInt16, host: String = "127.0.0.1", extra: String = "") -> String {
        "[daemon]\nmetrics = \"\(host):\(port)\"\n\(extra)\n"
    }

    private func tool(_ name: String) throws -> String {
        guard let path = Env.which(name) else { throw XCTSkip("\(name) is not installed (Scripts/lib.sh lists its package)") }
        return path
    }

    /// `curl` of /metrics; nil unless it answered 200.
    private func scrape(_ port: UInt16, file: StaticString = #filePath, line: UInt = #line) -> String? {
        let result = runCommand(Env.which("curl")!, ["-sS", "--fail", "--max-time", "20", "http://127.0.0.1:\(port)/metrics"], timeout: 30, file: file, line: line)
        return result.status == 0 ? result.stdout : nil
    }

    /// The value of one series, written exactly as the exposition writes it.
    private func value(_ text: String?, _ series: String) -> Double? {
        guard let text else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    private func sample(_ port: UInt16, _ series: String) -> Double? { value(scrape(port), series) }

    private static func roundTrip(_ port: UInt16, _ payload: [UInt8]) -> Bool {
        guard let fd = Net.connect(port, timeout: 20) else { return false }
        defer { close(fd) }
        guard Net.sendAll(fd, payload) else { return false }
        return Net.readExactly(fd, payload.count).map(checksum) == checksum(payload)
    }

    /// Lines of `ss -ltnH` (listening TCP sockets) whose local port is `port`.
    private func listeners(on port: UInt16) -> [String] {
        runCommand(Env.which("ss")!, ["-ltnH"]).stdout.split(separator: "\n").map(String.init).filter { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first?.hasSuffix(":\(port)") == true
        }
    }

    // MARK: (a) the format

    func testScrape_isValidPrometheusText_promtoolAcceptsIt_andTheSupervisorStartedByUpReadsTheConfigItWasGiven() throws {
        let curl = try tool("curl"), promtool = try tool("promtool")
        let metrics = Net.freePort(), local = Net.freePort()
        harness.writeConfig(daemonTable(metrics) + harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"])
                            + harness.profile("spare", server: server, forwards: ["0:127.0.0.1:\(echo.port)"], extra: "remote = \"0:127.0.0.1:\(echo.port)\""))
        // TUNNEL_CONFIG points nowhere: the supervisor `up` starts must take --config along.
        let up = harness.tunnel(["up", "db", "spare", "--config", harness.configPath], env: ["TUNNEL_CONFIG": harness.dir + "/absent.toml"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(Self.roundTrip(local, Array("x".utf8)))

        let piped = runCommand("/bin/bash", ["-c", "set -o pipefail; \"$0\" -sS --fail --max-time 20 http://127.0.0.1:$1/metrics | \"$2\" check metrics",
                                             curl, "\(metrics)", promtool])
        XCTAssertEqual(piped.status, 0, "promtool: \(piped.output)")
        XCTAssertFalse(piped.output.lowercased().contains("error"), piped.output)

        let text = try XCTUnwrap(scrape(metrics), harness.supervisorLog)
        XCTAssertEqual(value(text, #"tunnel_up{tunnel="db"}"#), 1, text)
        XCTAssertEqual(value(text, #"tunnel_state{tunnel="db",state="up"}"#), 1)
        XCTAssertEqual(value(text, #"tunnel_state{tunnel="db",state="reconnecting"}"#), 0)
        XCTAssertEqual(value(text, #"tunnel_forward_connections_total{tunnel="db",forward="127.0.0.1:\#(local)->127.0.0.1:\#(echo.port)"}"#), 1, text)
        XCTAssertNotNil(value(text, #"tunnel_forward_bytes_total{tunnel="spare",forward="remote 127.0.0.1:auto->127.0.0.1:\#(echo.port)",direction="in"}"#), text)
        XCTAssertEqual(value(text, #"tunnel_connect_duration_seconds_bucket{tunnel="db",le="+Inf"}"#),
                       value(text, #"tunnel_connect_duration_seconds_count{tunnel="db"}"#))
        // One successful connect so far, handshake through auth, and its time in the sum.
        XCTAssertEqual(value(text, #"tunnel_connect_duration_seconds_count{tunnel="db"}"#), 1, text)
        XCTAssertGreaterThan(value(text, #"tunnel_connect_duration_seconds_sum{tunnel="db"}"#) ?? 0, 0, text)
        // A ping goes out as soon as the connection is up: its round trip is known.
        XCTAssertTrue(eventually(timeout: 10) { (self.scrape(metrics).flatMap { self.value($0, #"tunnel_keepalive_rtt_seconds{tunnel="db"}"#) } ?? 0) > 0 },
                      "no round trip in \(self.scrape(metrics) ?? "")")

        let head = runCommand(curl, ["-sS", "-i", "--max-time", "20", "http://127.0.0.1:\(metrics)/metrics"]).stdout
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK\r\n"), head)
        XCTAssertTrue(head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), head)
        XCTAssertTrue(head.contains("\r\nConnection: close\r\n"), head)
        let code = { (args: [String]) in runCommand(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"] + args).stdout }
        XCTAssertEqual(code(["http://127.0.0.1:\(metrics)/"]), "404")
        XCTAssertEqual(code(["-X", "POST", "http://127.0.0.1:\(metrics)/metrics"]), "405")
        let headOnly = runCommand(curl, ["-sS", "-I", "--max-time", "20", "http://127.0.0.1:\(metrics)/metrics"]).stdout
        XCTAssertTrue(headOnly.hasPrefix("HTTP/1.1 200 OK\r\n") && headOnly.contains("\r\nContent-Length: "), headOnly)
        XCTAssertEqual(code(["-H", "X-Pad: " + String(repeating: "a", count: 9000), "http://127.0.0.1:\(metrics)/metrics"]), "431")
    }

    // MARK: (b) bytes

    func testBytesThroughAForward_raiseTheByteCounters_outByWhatWasSent_inByWhatCameBack() throws {
        _ = try tool("curl")
        let metrics = Net.freePort(), local = Net.freePort()
        harness.writeConfig(daemonTable(metrics) + harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let forward = "tunnel=\"db\",forward=\"127.0.0.1:\(local)->127.0.0.1:\(echo.port)\""
        let outSeries = "tunnel_forward_bytes_total{\(forward),direction=\"out\"}", inSeries = "tunnel_forward_bytes_total{\(forward),direction=\"in\"}"
        let before = try XCTUnwrap(scrape(metrics))
        let out0 = try XCTUnwrap(value(before, outSeries), before), in0 = try XCTUnwrap(value(before, inSeries))

        let n = 300_000
        XCTAssertTrue(Self.roundTrip(local, randomBytes(n, seed: 19)))
        XCTAssertTrue(eventually(timeout: 20) {
            let text = self.scrape(metrics)
            return (self.value(text, outSeries) ?? 0) >= out0 + Double(n) && (self.value(text, inSeries) ?? 0) >= in0 + Double(n)
        }, scrape(metrics) ?? "no scrape")
        XCTAssertEqual(sample(metrics, "tunnel_forward_connections_total{\(forward)}"), 1)
        XCTAssertTrue(eventually(timeout: 10) { self.sample(metrics, "tunnel_forward_connections_active{\(forward)}") == 0 })
    }

    // MARK: (c) up and down

    func testTunnelUp_goesToZeroWhileTheServerIsGone_andBackToOneWhenTheLinkHeals() throws {
        _ = try tool("curl")
        let metrics = Net.freePort(), local = Net.freePort()
        harness.writeConfig(daemonTable(metrics) + harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertEqual(sample(metrics, #"tunnel_up{tunnel="db"}"#), 1)
        XCTAssertEqual(sample(metrics, #"tunnel_restarts_total{tunnel="db"}"#), 0)

        server.stop()
        XCTAssertTrue(eventually(timeout: 30) { self.sample(metrics, #"tunnel_up{tunnel="db"}"#) == 0 }, harness.supervisorLog)
        let down = try XCTUnwrap(scrape(metrics))
        XCTAssertEqual(value(down, #"tunnel_state{tunnel="db",state="up"}"#), 0)
        XCTAssertEqual(["connecting", "reconnecting", "failed", "idle"].compactMap { value(down, #"tunnel_state{tunnel="db",state="\#($0)"}"#) }.reduce(0, +), 1, down)
        XCTAssertNil(value(down, #"tunnel_keepalive_rtt_seconds{tunnel="db"}"#), "no round trip is measured without a connection: \(down)")

        try server.start()
        XCTAssertTrue(eventually(timeout: 60) { self.sample(metrics, #"tunnel_up{tunnel="db"}"#) == 1 }, harness.supervisorLog)
        XCTAssertEqual(sample(metrics, #"tunnel_state{tunnel="db",state="up"}"#), 1)
        XCTAssertGreaterThanOrEqual(sample(metrics, #"tunnel_restarts_total{tunnel="db"}"#) ?? 0, 1)
    }

    // MARK: (d) loopback only

    func testEndpoint_listensOnLoopbackOnly_noneWithoutADaemonTable_andAWildcardWithoutPublicIsRefusedWithFileAndLine() throws {
        _ = try tool("curl")
        let local = Net.freePort(), metrics = Net.freePort()
        let profile = harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"])

        // No [daemon]: the supervisor listens on no TCP port at all.
        harness.writeConfig(profile)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        // Sockets this test process holds may be inherited by the children it spawns: not the supervisor's own.
        let own = runCommand(Env.which("ss")!, ["-ltnpH"]).stdout.split(separator: "\n")
            .filter { $0.contains("pid=\(pid),") && !$0.contains("pid=\(getpid()),") }
        // The forward listens on both loopbacks, like ssh -L.
        XCTAssertEqual(own.count, 2, "only the forward's listeners: \(own)")
        for address in ["127.0.0.1:\(local) ", "[::1]:\(local) "] {
            XCTAssertEqual(own.filter { $0.contains(address) }.count, 1, "\(address) in \(own)")
        }
        harness.stopSupervisor()

        // `localhost`: bound to 127.0.0.1, not to every interface.
        harness.writeConfig("[daemon]\nmetrics = \"localhost:\(metrics)\"\n" + profile)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertNotNil(scrape(metrics))
        let bound = listeners(on: metrics)
        XCTAssertEqual(bound.count, 1, "\(bound)")
        XCTAssertTrue(bound.first?.contains("127.0.0.1:\(metrics)") ?? false, "\(bound)")
        XCTAssertEqual(read("/proc/net/tcp").split(separator: "\n").filter { $0.contains(String(format: "00000000:%04X", metrics)) }.count, 0)
        harness.stopSupervisor()

        // 0.0.0.0 without public = true: file:line:column, non-zero, nothing bound, nothing started.
        harness.writeConfig("\n[daemon]\nmetrics = \"0.0.0.0:\(metrics)\"\n" + profile)
        let daemon = harness.tunnel(["daemon"], timeout: 20)
        XCTAssertNotEqual(daemon.status, 0)
        XCTAssertTrue(daemon.stderr.contains("tunnel: \(harness.configPath):3:11: daemon.metrics: 0.0.0.0:\(metrics) is not a loopback address"), daemon.output)
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("\(harness.configPath):3:11: daemon.metrics:"), up.output)
        // A tunnel no profile describes starts the same supervisor: refused alike, before it is spawned.
        let adHoc = harness.tunnel(["up", "-L", "\(local):127.0.0.1:\(echo.port)", "-p", "\(server.port)", "127.0.0.1"])
        XCTAssertNotEqual(adHoc.status, 0)
        XCTAssertTrue(adHoc.stderr.contains("\(harness.configPath):3:11: daemon.metrics:"), adHoc.output)
        XCTAssertFalse(Net.isListening(metrics))
        XCTAssertFalse(Net.isListening(local))
        XCTAssertNil(harness.supervisorPID.flatMap { kill($0, 0) == 0 ? $0 : nil }, "no supervisor may be running")

        // With public = true it is allowed.
        harness.writeConfig("[daemon]\nmetrics = \"0.0.0.0:\(metrics)\"\npublic = true\n" + profile)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertTrue(listeners(on: metrics).first?.contains("0.0.0.0:\(metrics)") ?? false, "\(listeners(on: metrics))")
    }

    func testMetricsPortInUseAtStart_theSupervisorRefusesToStart_andLeavesNoSocketBehind() throws {
        let (busyFD, busy) = loopbackListener(backlog: 1)
        defer { close(busyFD) }
        harness.writeConfig(daemonTable(busy) + harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        let daemon = harness.tunnel(["daemon"], timeout: 20)
        XCTAssertEqual(daemon.status, 1, daemon.output)
        XCTAssertTrue(daemon.stderr.contains("tunnel: cannot start the supervisor: metrics endpoint 127.0.0.1:\(busy): bind(127.0.0.1:\(busy)): "), daemon.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/control.sock"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.pid"))
        let up = harness.tunnel(["up", "db"])
        XCTAssertNotEqual(up.status, 0)
        XCTAssertTrue(up.stderr.contains("the supervisor exited at start (status 1): critical: cannot start: metrics endpoint 127.0.0.1:\(busy): bind(127.0.0.1:\(busy)): "), up.output)
    }

    func testDaemonIsNotAProfileName_upAndCheckSaySo() throws {
        harness.writeConfig(daemonTable(Net.freePort()) + harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        for command in [["up", "daemon"], ["check", "daemon"]] {
            let result = harness.tunnel(command)
            XCTAssertNotEqual(result.status, 0, result.output)
            XCTAssertTrue(result.output.contains("\"daemon\" is not a profile name: [daemon] in \(harness.configPath) holds the supervisor's settings"), result.output)
        }
    }

    // MARK: (e) a silent scraper

    func testSilentScraper_blocksNothing_andIsClosedByTheServerAfterTheDeadline() throws {
        _ = try tool("curl")
        let metrics = Net.freePort()
        harness.writeConfig(daemonTable(metrics) + harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        guard let silent = Net.connect(metrics, timeout: 60) else { return XCTFail("connect") }
        defer { close(silent) }
        // A second one that sends half a request and stops.
        guard let half = Net.connect(metrics, timeout: 60) else { return XCTFail("connect") }
        defer { close(half) }
        XCTAssertTrue(Net.sendAll(half, Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)))

        XCTAssertEqual(sample(metrics, #"tunnel_up{tunnel="db"}"#), 1, "another scrape is answered meanwhile")
        XCTAssertEqual(harness.list().map(\.name), ["db"], "and so is the control socket")

        for fd in [silent, half] {
            let (bytes, cleanEOF) = Net.readToEOF(fd)
            XCTAssertTrue(cleanEOF, "the server must close it (EOF), not leave it open")
            XCTAssertEqual(bytes, [], "nothing is sent to a scraper without a whole request")
        }
        XCTAssertEqual(sample(metrics, #"tunnel_up{tunnel="db"}"#), 1)
    }

    func testSixteenSilentConnections_cannotKeepAScrapeOut_theOldestMakesRoom() throws {
        let metrics = Net.freePort()
        harness.writeConfig(daemonTable(metrics) + harness.profile("db", server: server, forwards: ["\(Net.freePort()):127.0.0.1:\(echo.port)"]))
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        for _ in 0..<16 { held += Net.connect(metrics, timeout: 60).map { [$0] } ?? [] }
        XCTAssertEqual(held.count, 16)
        // A real scrape, with every place taken by a silent connection: answered.
        XCTAssertEqual(sample(metrics, #"tunnel_up{tunnel="db"}"#), 1)
        // The first silent one made room (the server closed it, sending nothing); the other 15 are still open.
        let (bytes, eof) = Net.readToEOF(held[0])
        XCTAssertTrue(eof || errno == ECONNRESET, "the oldest silent connection is closed by the server")
        XCTAssertEqual(bytes, [])
        var byte: UInt8 = 0
        let open = held.dropFirst().filter { recv($0, &byte, 1, Int32(MSG_DONTWAIT)) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) }
        XCTAssertEqual(open.count, 15)
    }

    // MARK: (f) counters across restarts

    func testCounters_neverGoBack_acrossAReloadThatRestartsTheTunnel_andDownThenUp() throws {
        _ = try tool("curl")
        let metrics = Net.freePort(), local = Net.freePort()
        let profile = harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"])
        harness.writeConfig(daemonTable(metrics) + profile)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let forward = "tunnel=\"db\",forward=\"127.0.0.1:\(local)->127.0.0.1:\(echo.port)\""
        let series = ["tunnel_forward_bytes_total{\(forward),direction=\"out\"}", "tunnel_forward_bytes_total{\(forward),direction=\"in\"}",
                      "tunnel_forward_connections_total{\(forward)}", #"tunnel_restarts_total{tunnel="db"}"#,
                      #"tunnel_connect_duration_seconds_count{tunnel="db"}"#]
        for i in 0..<3 { XCTAssertTrue(Self.roundTrip(local, randomBytes(50_000, seed: UInt64(i)))) }
        var before: [Double] = []
        XCTAssertTrue(eventually(timeout: 20) {
            before = series.map { self.sample(metrics, $0) ?? -1 }
            return before[0] >= 150_000 && before[1] >= 150_000 && before[2] == 3
        }, "\(before)")

        // A changed profile (same forward): the reload restarts the tunnel with fresh atomics.
        harness.writeConfig(daemonTable(metrics) + profile.replacingOccurrences(of: "keepalive = 2", with: "keepalive = 3"))
        let reload = harness.tunnel(["reload"])
        XCTAssertEqual(reload.status, 0, reload.output)
        XCTAssertTrue(reload.stdout.contains("db: restarted"), reload.output)
        XCTAssertTrue(eventually(timeout: 30) { self.harness.listed("db")?.state == "up" })
        XCTAssertEqual(harness.listed("db")?.forwards.first?.bytes_out, 0, "the runtime is new: `tunnel ls` counts from zero")
        let afterReload = try XCTUnwrap(scrape(metrics))
        for (name, old) in zip(series, before) {
            let now = try XCTUnwrap(value(afterReload, name), "\(name) missing:\n\(afterReload)")
            XCTAssertGreaterThanOrEqual(now, old, "\(name) went back across the reload")
        }

        // More traffic adds to the carried totals.
        XCTAssertTrue(Self.roundTrip(local, randomBytes(10_000, seed: 7)))
        XCTAssertTrue(eventually(timeout: 20) { (self.sample(metrics, series[0]) ?? 0) >= before[0] + 10_000 })

        // down, then up of the same name.
        let beforeDown = series.map { sample(metrics, $0) ?? -1 }
        XCTAssertEqual(harness.tunnel(["down", "db"]).status, 0)
        XCTAssertNil(sample(metrics, #"tunnel_up{tunnel="db"}"#), "a tunnel that is down has no series")
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        let afterUp = try XCTUnwrap(scrape(metrics))
        for (name, old) in zip(series, beforeDown) {
            XCTAssertGreaterThanOrEqual(value(afterUp, name) ?? -1, old, "\(name) went back across down and up")
        }
    }

    // MARK: reload of [daemon]

    func testReload_movesTheEndpoint_andABadTableOrABusyPortKeepsTheOldOne() throws {
        _ = try tool("curl")
        let first = Net.freePort(), second = Net.freePort(), local = Net.freePort()
        let profile = harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"])
        harness.writeConfig(daemonTable(first) + profile)
        XCTAssertEqual(harness.tunnel(["up", "db"]).status, 0)
        XCTAssertNotNil(scrape(first))

        // A bad table: the reply says so with file:line, the endpoint stays.
        harness.writeConfig("[daemon]\nmetrics = \"127.0.0.1:\(second)\"\nmetric = 1\n" + profile)
        let bad = harness.tunnel(["reload"])
        XCTAssertNotEqual(bad.status, 0, bad.output)
        XCTAssertTrue(bad.stderr.contains("[daemon]: failed: kept the metrics endpoint on 127.0.0.1:\(first): \(harness.configPath):3:1: daemon: unknown key"), bad.output)
        // Listed once, not again for each tunnel the same file's error keeps as it was.
        XCTAssertEqual(bad.stderr.components(separatedBy: "unknown key").count - 1, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("tunnel: db: failed: kept running: \(harness.configPath) has errors in [daemon] (above)\n"), bad.stderr)
        XCTAssertNotNil(scrape(first))
        XCTAssertFalse(Net.isListening(second))

        // A port another process holds: same.
        let (busyFD, busy) = loopbackListener(backlog: 1)
        defer { close(busyFD) }
        harness.writeConfig(daemonTable(busy) + profile)
        let taken = harness.tunnel(["reload"])
        XCTAssertNotEqual(taken.status, 0, taken.output)
        XCTAssertTrue(taken.stderr.contains("kept the metrics endpoint on 127.0.0.1:\(first): cannot listen on 127.0.0.1:\(busy)"), taken.output)
        XCTAssertNotNil(scrape(first))

        // The file moved away (an editor's save, a mistake): the endpoint stays, as the tunnels do.
        XCTAssertEqual(rename(harness.configPath, harness.configPath + ".moved"), 0)
        let gone = harness.tunnel(["reload"])
        XCTAssertNotEqual(gone.status, 0, gone.output)
        XCTAssertTrue(gone.stderr.contains("[daemon]: failed: kept the metrics endpoint on 127.0.0.1:\(first): cannot read config file"), gone.output)
        XCTAssertTrue(gone.stderr.contains("db: failed: kept running"), gone.output)
        XCTAssertNotNil(scrape(first))
        XCTAssertEqual(rename(harness.configPath + ".moved", harness.configPath), 0)

        // A good change: it moves.
        harness.writeConfig(daemonTable(second) + profile)
        let moved = harness.tunnel(["reload"])
        XCTAssertEqual(moved.status, 0, moved.output)
        XCTAssertTrue(moved.stdout.contains("[daemon]: restarted: metrics at http://127.0.0.1:\(second)/metrics"), moved.output)
        XCTAssertTrue(moved.stdout.contains("db: unchanged"), moved.output)
        XCTAssertEqual(sample(second, #"tunnel_up{tunnel="db"}"#), 1)
        XCTAssertFalse(Net.isListening(first))

        // SIGHUP does the same; a removed table turns it off.
        harness.writeConfig(profile)
        let pid = try XCTUnwrap(harness.supervisorPID)
        kill(pid, SIGHUP)
        XCTAssertTrue(eventually(timeout: 20) { !Net.isListening(second) }, harness.supervisorLog)
        XCTAssertTrue(harness.supervisorLog.contains("metrics endpoint closed"), harness.supervisorLog)
        XCTAssertEqual(harness.list().map(\.name), ["db"])
    }
}
