import ArgumentParser
import FoundationEssentials
import TunnelPOSIX
import TunnelSupervisor

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one tunnel in depth: its SSH connections, hops, forwards and last state changes.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The tunnel's name, as `tunnel ls` shows it.") var name: String
    @Flag(name: .long, help: "Print it as JSON.") var json = false

    func run() throws {
        var request = ControlRequest(command: .status)
        request.names = [name]
        guard let response = try global.ask(request) else { throw fail("\(name) is not up (no supervisor is running)") }
        guard let detail = response.detail else { throw fail("the supervisor did not describe \(name); is it older than this tunnel command?") }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(detail)) ?? Data("{}".utf8)
            return say(String(decoding: data, as: UTF8.self))
        }
        say(StatusText.render(detail, now: wallClockSeconds()))
    }
}

/// `tunnel status NAME` as text.
enum StatusText {
    static func render(_ d: TunnelDetail, now: Double) -> String {
        let t = d.tunnel
        let age = ListTable.duration(now - (ListTable.parseISO8601(t.since) ?? now))
        var lines = ["\(t.name): \(t.state) for \(age) (since \(t.since)), via \(t.via)"]
        var settings = ["restarts \(t.restarts)", "keepalive \(d.keepalive) s × \(d.keepalive_count)"]
        if d.lazy, let idle = d.idle_timeout { settings.append("lazy, idle after \(idle) s") }
        if let origin = t.origin { settings.append("from \(origin)") }
        lines.append("  " + settings.joined(separator: ", "))
        if t.last_error != nil { lines.append("  last error: \(ListTable.lastError(t, now: now))") }

        lines.append("")
        lines.append("SSH connections:")
        if d.connections.isEmpty { lines.append("  none" + (t.state == "idle" ? " (idle: the next client opens one)" : "")) }
        for c in d.connections {
            var head = "  #\(c.number)\(c.extra ? " (extra)" : "") \(c.state)"
            if let since = c.up_since { head += " for \(ListTable.duration(now - (ListTable.parseISO8601(since) ?? now)))" }
            if let peer = c.peer { head += ", \(peer)" }
            if let auth = c.auth { head += ", \(auth)" }
            if let rtt = c.rtt_ms { head += ", rtt \(rtt) ms" }
            lines.append(head)
            if let algorithms = c.algorithms { lines.append("      \(algorithms)") }
            if let key = c.host_key { lines.append("      host key \(key)") }
        }

        if let hops = t.hops, !hops.isEmpty {
            lines.append("")
            lines.append("Hops (first first, the target last):")
            for (i, hop) in hops.enumerated() { lines.append("  \(i + 1). \(hop)") }
        }

        lines.append("")
        lines.append("Forwards:")
        for f in t.forwards {
            let local = f.local + (f.also_local.map { " and \($0)" } ?? "")
            let arrow = f.kind == "remote" ? "\(f.remote) (on the server) -> \(f.local)" : "\(local) -> \(f.remote)"
            lines.append("  \(f.kind ?? "local") \(arrow)\(f.public ? " (public)" : ""): \(f.active) open, \(f.total) total, "
                         + "in \(ListTable.bytes(f.bytes_in)), out \(ListTable.bytes(f.bytes_out))"
                         + (f.problem.map { "; not listening: \($0)" } ?? ""))
        }

        lines.append("")
        lines.append("Last state changes:")
        for h in d.history { lines.append("  \(h.time)  \(h.state)" + (h.reason.map { "  \($0)" } ?? "")) }
        return lines.joined(separator: "\n")
    }
}
