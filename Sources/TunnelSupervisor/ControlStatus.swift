/// `tunnel status NAME`: one tunnel in depth, as the supervisor sends it.
public struct TunnelDetail: Codable, Sendable, Equatable {
    /// What `tunnel ls --json` shows for it.
    public var tunnel: TunnelInfo
    /// Each SSH connection, kept ones first.
    public var connections: [ConnectionInfo]
    /// The last state changes, oldest first.
    public var history: [HistoryEntry]
    public var lazy: Bool
    /// Seconds without a client before a lazy tunnel closes its connection.
    public var idle_timeout: Int?
    public var keepalive: Int
    public var keepalive_count: Int
}

public struct ConnectionInfo: Codable, Sendable, Equatable {
    /// 1-based, as the log numbers them.
    public var number: Int
    public var extra: Bool
    public var state: String
    /// ISO 8601 (UTC), while up.
    public var up_since: String?
    public var peer: String?
    public var auth: String?
    public var algorithms: String?
    public var host_key: String?
    public var rtt_ms: Double?
}

public struct HistoryEntry: Codable, Sendable, Equatable {
    /// ISO 8601 (UTC).
    public var time: String
    public var state: String
    public var reason: String?
}

/// Milliseconds to 0.1 ms, as `ls` and `status` show round trips; rounded
/// up, so a measured loopback round trip never shows as 0.
func milliseconds(_ seconds: Double?) -> Double? {
    seconds.map { ($0 * 10_000).rounded(.up) / 10 }
}
