import ArgumentParser
import Glibc
import FoundationEssentials
import TunnelPOSIX
import TunnelSupervisor

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List active forwards with state and stats.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print a JSON array of tunnels.") var json = false
    @Flag(name: .long, help: "Redraw the table every second, with bytes per second per forward, until Ctrl-C (one table per second when stdout is not a terminal).")
    var watch = false

    func validate() throws {
        if watch && json { throw ValidationError("--watch and --json do not go together") }
    }

    func run() throws {
        if watch { return try Watch(global: global).run() }
        guard let response = try global.ask(ControlRequest(command: .list)) else {
            try noSupervisor()
            if json { say("[]") }
            return
        }
        let tunnels = response.tunnels
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(tunnels)) ?? Data("[]".utf8)
            say(String(decoding: data, as: UTF8.self))
            return
        }
        say(ListTable.render(tunnels, now: wallClockSeconds()))
    }

    /// Nothing runs: say so (on stderr, so `--json` stays `[]`), and what a
    /// supervisor would bring back. A runtime directory that cannot be one is an error.
    private func noSupervisor() throws {
        let dir = global.runtimeDirectory
        switch Files.kind(of: dir.path) {
        case .regularFile: throw fail("runtime directory \(dir.path) is a regular file, not a directory")
        case .other(let kind): throw fail("runtime directory \(dir.path) is \(kind), not a directory")
        case .missing, .directory: break
        }
        let saved = SavedTunnels.names(in: dir)
        let list = saved.prefix(5).joined(separator: ", ") + (saved.count > 5 ? ", ..." : "")
        note(saved.isEmpty ? "no supervisor is running; nothing is up"
                           : "no supervisor is running; \(saved.count) saved tunnel\(saved.count == 1 ? "" : "s") (\(list)) come back with the next `tunnel up` or `tunnel daemon`")
    }
}

/// The `tunnel ls` table: one row per forward. KIND is "local" (-L: LOCAL
/// listens here, REMOTE is reached from the server) or "remote" (-R: REMOTE
/// is where the server listens, LOCAL is reached from here).
enum ListTable {
    static let headers = ["NAME", "KIND", "LOCAL", "REMOTE", "VIA", "STATE", "UPTIME", "RTT", "CONN", "IN", "OUT", "RESTARTS", "LAST ERROR"]

    /// `rates`: bytes per second in and out per forward (keyed by `rateKey`),
    /// for `--watch`; nil leaves those columns out.
    static func render(_ tunnels: [TunnelInfo], now: Double, rates: [String: (in: Double, out: Double)]? = nil) -> String {
        var headers = self.headers
        if rates != nil { headers.insert(contentsOf: ["IN/s", "OUT/s"], at: headers.firstIndex(of: "RESTARTS")!) }
        var rows: [[String]] = [headers]
        var anyPublic = false
        for t in tunnels {
            let age = duration(now - (parseISO8601(t.since) ?? now))
            // "up 1/2": with several SSH connections, how many carry clients;
            // "+2": extra connections opened while clients queued.
            var state = (t.sessions ?? 1) > 1 ? "\(t.state) \(t.sessions_up ?? 0)/\(t.sessions ?? 1)" : t.state
            if let extra = t.sessions_extra, extra > 0 { state += " +\(extra)" }
            for f in t.forwards {
                anyPublic = anyPublic || f.public
                // "!" marks the listening side.
                let mark = f.public ? " !" : ""
                let (local, remote) = f.kind == "remote" ? (f.local, f.remote + mark) : (f.local + mark, f.remote)
                // A remote forward the server refused is not up, whatever the link is; its row says why.
                let refused = f.problem != nil && t.state == "up"
                var row = [t.name, f.kind ?? "local", local, remote, t.via, refused ? "not listening" : state, t.state == "up" ? age : "(\(age))",
                           t.rtt_ms.map { "\($0) ms" } ?? "-", "\(f.active)/\(f.total)", bytes(f.bytes_in), bytes(f.bytes_out), "\(t.restarts)",
                           f.problem ?? lastError(t, now: now)]
                if let rates {
                    let rate = rates[rateKey(t, f)]
                    row.insert(contentsOf: [rate.map { bytes(UInt64($0.in)) + "/s" } ?? "-", rate.map { bytes(UInt64($0.out)) + "/s" } ?? "-"], at: 11)
                }
                rows.append(row)
            }
        }
        var widths = [Int](repeating: 0, count: headers.count)
        for row in rows { for (i, cell) in row.enumerated() where i < headers.count - 1 { widths[i] = max(widths[i], cell.count) } }
        var out = rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(widths[i]) }.joined(separator: "  ")
        }
        if anyPublic { out.append("! listens on a non-loopback address (here; for a remote forward, the address asked of the server, whose GatewayPorts has the last word): reachable from the network; protect it with a firewall") }
        return out.joined(separator: "\n")
    }

    /// The last error with how long ago it happened ("5m ago: ..."), so one
    /// from before a recovery is not taken for the current state.
    static func lastError(_ t: TunnelInfo, now: Double) -> String {
        guard let error = t.last_error else { return "-" }
        guard let at = t.last_error_at.flatMap(parseISO8601) else { return error }
        return "\(duration(max(0, now - at))) ago: \(error)"
    }

    /// "14:03:07" in local time, for `--watch`'s header.
    static func clockTime(_ seconds: Double) -> String {
        var t = Int(seconds)
        var parts = tm()
        localtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }

    /// One forward across refreshes.
    static func rateKey(_ t: TunnelInfo, _ f: ForwardInfo) -> String { "\(t.name)\u{0}\(f.kind ?? "local")\u{0}\(f.local)\u{0}\(f.remote)" }

    static func duration(_ seconds: Double) -> String {
        let s = max(0, Int(seconds))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86400)d\((s % 86400) / 3600)h"
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : "\(Double(Int(value * 10)) / 10) \(units[unit])"
    }

    /// Parses the supervisor's "YYYY-MM-DDTHH:MM:SSZ".
    static func parseISO8601(_ text: String) -> Double? {
        let digits = text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        guard digits.count >= 6 else { return nil }
        return utcSeconds(year: digits[0], month: digits[1], day: digits[2], hour: digits[3], minute: digits[4], second: digits[5])
    }

    /// Days-from-civil (Howard Hinnant), so no calendar library is needed.
    static func utcSeconds(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Double {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + hour * 3600 + minute * 60 + second)
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
