import Glibc
import TunnelPOSIX
import TunnelSupervisor

/// `tunnel ls --watch`: the table once a second with rates, redrawn in place
/// on a terminal (ANSI home and clear, no TUI library) or printed one after
/// another when stdout is a file or a pipe.
struct Watch {
    let global: GlobalOptions
    var interval = 1.0

    func run() throws {
        let inPlace = isatty(1) == 1
        var previous: (at: Instant, bytes: [String: (in: UInt64, out: UInt64)])?
        if inPlace { write("\u{1B}[2J") }
        while true {
            let tunnels = try global.ask(ControlRequest(command: .list))?.tunnels
            let now = Instant.now()
            var bytes: [String: (in: UInt64, out: UInt64)] = [:]
            for t in tunnels ?? [] { for f in t.forwards { bytes[ListTable.rateKey(t, f)] = (f.bytes_in, f.bytes_out) } }
            var rates: [String: (in: Double, out: Double)] = [:]
            if let previous {
                let elapsed = max(0.001, now.seconds(since: previous.at))
                for (key, current) in bytes {
                    // A forward that restarted its counters (a reload) shows no rate for one round.
                    guard let before = previous.bytes[key], current.in >= before.in, current.out >= before.out else { continue }
                    rates[key] = (Double(current.in - before.in) / elapsed, Double(current.out - before.out) / elapsed)
                }
            }
            previous = (now, bytes)
            let clock = ListTable.clockTime(wallClockSeconds())
            let body = tunnels.map { $0.isEmpty ? "no tunnels are up" : ListTable.render($0, now: wallClockSeconds(), rates: rates) }
                ?? "no supervisor is running"
            var frame = "tunnel ls --watch   \(clock)   every \(Int(interval)) s, Ctrl-C to stop\n\n\(body)\n"
            // Drawn in place only if it fits: a wrapped line or a frame taller
            // than the screen would scroll it away.
            if inPlace, let size = Terminal.size(1) { frame = Self.clipped(frame, to: size) }
            // Home, the frame, then clear what a longer previous frame left below.
            write(inPlace ? "\u{1B}[H" + frame.replacingNewlines(with: "\u{1B}[K\n") + "\u{1B}[J" : frame + "\n")
            usleep(UInt32(interval * 1_000_000))
        }
    }

    /// Each line cut to `columns` (the last visible character a "…") and at
    /// most `rows - 2` lines, the last saying how many were left out.
    static func clipped(_ frame: String, to size: (rows: Int, columns: Int)) -> String {
        var lines = frame.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        // Rows less one for the cursor line the frame ends on.
        let room = max(1, size.rows - 2)
        if lines.count > room {
            let hidden = lines.count - room + 1
            lines = Array(lines.prefix(room - 1)) + ["(\(hidden) more line\(hidden == 1 ? "" : "s"): make the terminal taller, or use tunnel ls)"]
        }
        return lines.map { $0.count > size.columns ? String($0.prefix(max(0, size.columns - 1))) + "…" : $0 }.joined(separator: "\n") + "\n"
    }

    private func write(_ text: String) {
        _ = writeLine(1, text.hasSuffix("\n") ? String(text.dropLast()) : text)
    }
}

private extension String {
    func replacingNewlines(with replacement: String) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
