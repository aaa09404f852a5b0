import TunnelEngine

// The Prometheus text format (0.0.4), written by hand. The values live in
// each tunnel's atomics and status and are read at scrape time; a client
// library's registry (swift-prometheus) would need every byte count pushed
// into it from the pump's hot path instead.

/// What one scrape shows: every tunnel with its totals already carried over
/// earlier runtimes of the same name.
public struct MetricsSnapshot: Sendable, Equatable {
    public struct Forward: Sendable, Equatable {
        /// "127.0.0.1:5433->localhost:5432": stable across restarts.
        public var label: String
        public var active: Int
        public var total: UInt64
        public var bytesIn: UInt64
        public var bytesOut: UInt64
        public init(label: String, active: Int = 0, total: UInt64 = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0) {
            self.label = label
            self.active = active
            self.total = total
            self.bytesIn = bytesIn
            self.bytesOut = bytesOut
        }
    }

    public struct Tunnel: Sendable, Equatable {
        public var name: String
        public var phase: LinkPhase
        public var restarts: UInt64
        public var rttSeconds: Double?
        public var connectDurations: Histogram
        public var forwards: [Forward]
        public init(name: String, phase: LinkPhase, restarts: UInt64 = 0, rttSeconds: Double? = nil,
                    connectDurations: Histogram = Histogram(), forwards: [Forward] = []) {
            self.name = name
            self.phase = phase
            self.restarts = restarts
            self.rttSeconds = rttSeconds
            self.connectDurations = connectDurations
            self.forwards = forwards
        }
    }

    /// A `DurationHistogram` that can be added to (carried totals of ended runtimes).
    public struct Histogram: Sendable, Equatable {
        /// Per bucket, not cumulative; one more than `DurationHistogram.bounds` (+Inf).
        public var counts: [UInt64] = Array(repeating: 0, count: DurationHistogram.bounds.count + 1)
        public var sum: Double = 0
        public var count: UInt64 = 0
        public init() {}
        public init(_ h: DurationHistogram) {
            counts = h.counts
            sum = h.sum
            count = h.count
        }
        public static func + (a: Histogram, b: Histogram) -> Histogram {
            var out = a
            for i in out.counts.indices where i < b.counts.count { out.counts[i] += b.counts[i] }
            out.sum += b.sum
            out.count += b.count
            return out
        }
    }

    public var tunnels: [Tunnel]
    public init(tunnels: [Tunnel]) { self.tunnels = tunnels }
}

public enum MetricsExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The state label values, as `tunnel ls` names them: `.stopped` reads
    /// "reconnecting" there, so it is not a state of its own here.
    public static let states: [String] = {
        var seen = Set<String>()
        return LinkPhase.allCases.map(stateName).filter { seen.insert($0).inserted }
    }()

    public static func stateName(_ phase: LinkPhase) -> String {
        phase == .stopped ? LinkPhase.reconnecting.rawValue : phase.rawValue
    }

    public static func render(_ snapshot: MetricsSnapshot) -> String {
        var out = ""
        let tunnels = snapshot.tunnels.sorted { $0.name < $1.name }
        func family(_ name: String, _ type: String, _ help: String, _ samples: () -> Void) {
            out += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
            samples()
        }
        func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " \(value)\n"
        }

        family("tunnel_up", "gauge", "1 while the tunnel's SSH link is up, else 0.") {
            for t in tunnels { sample("tunnel_up", [("tunnel", t.name)], t.phase == .up ? "1" : "0") }
        }
        family("tunnel_state", "gauge", "1 for the tunnel's current state, 0 for the others.") {
            for t in tunnels {
                let current = stateName(t.phase)
                for state in states { sample("tunnel_state", [("tunnel", t.name), ("state", state)], state == current ? "1" : "0") }
            }
        }
        family("tunnel_restarts_total", "counter", "Times the tunnel's SSH link was lost and reconnected.") {
            for t in tunnels { sample("tunnel_restarts_total", [("tunnel", t.name)], "\(t.restarts)") }
        }
        family("tunnel_forward_connections_active", "gauge", "Client connections open through the forward.") {
            for t in tunnels { for f in t.forwards { sample("tunnel_forward_connections_active", [("tunnel", t.name), ("forward", f.label)], "\(f.active)") } }
        }
        family("tunnel_forward_connections_total", "counter", "Client connections accepted by the forward.") {
            for t in tunnels { for f in t.forwards { sample("tunnel_forward_connections_total", [("tunnel", t.name), ("forward", f.label)], "\(f.total)") } }
        }
        family("tunnel_forward_bytes_total", "counter", "Bytes through the forward: out from clients to the target, in from the target to clients.") {
            for t in tunnels {
                for f in t.forwards {
                    sample("tunnel_forward_bytes_total", [("tunnel", t.name), ("forward", f.label), ("direction", "in")], "\(f.bytesIn)")
                    sample("tunnel_forward_bytes_total", [("tunnel", t.name), ("forward", f.label), ("direction", "out")], "\(f.bytesOut)")
                }
            }
        }
        family("tunnel_keepalive_rtt_seconds", "gauge", "Round trip of the last keepalive of the tunnel's first SSH connection up.") {
            for t in tunnels { if let rtt = t.rttSeconds { sample("tunnel_keepalive_rtt_seconds", [("tunnel", t.name)], number(rtt)) } }
        }
        let histogram = "tunnel_connect_duration_seconds"
        family(histogram, "histogram", "Time from TCP connect to authenticated, of the tunnel's SSH connections.") {
            for t in tunnels {
                let h = t.connectDurations
                var cumulative: UInt64 = 0
                for (i, bound) in DurationHistogram.bounds.enumerated() {
                    cumulative += i < h.counts.count ? h.counts[i] : 0
                    sample(histogram + "_bucket", [("tunnel", t.name), ("le", number(bound))], "\(cumulative)")
                }
                // +Inf is every observation, whatever the buckets hold.
                sample(histogram + "_bucket", [("tunnel", t.name), ("le", "+Inf")], "\(h.count)")
                sample(histogram + "_sum", [("tunnel", t.name)], number(h.sum))
                sample(histogram + "_count", [("tunnel", t.name)], "\(h.count)")
            }
        }
        return out
    }

    /// A label value: backslash, double quote and line feed escaped.
    public static func escapeLabel(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// HELP text: backslash and line feed escaped.
    static func escapeHelp(_ text: String) -> String {
        text.replacingBackslashAndNewline()
    }

    /// A float as Prometheus reads it: "0.05", "1", "2.5", "NaN", "+Inf".
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

private extension String {
    func replacingBackslashAndNewline() -> String {
        var out = ""
        for c in unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
