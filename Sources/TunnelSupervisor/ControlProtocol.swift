import FoundationEssentials
import Glibc
import TunnelConfig

/// The control protocol: one JSON request per connection, one JSON reply,
/// each on one line. `v` is checked on both sides so a CLI and a supervisor
/// of different versions say so instead of misreading each other.
public enum ControlProtocol {
    public static let version = 1

    /// What the supervisor makes of one request line (without its newline).
    public enum Decoded: Sendable {
        case request(ControlRequest)
        /// Valid JSON with another `v`: a CLI of another version.
        case otherVersion(Int)
        case malformed
    }

    /// The supervisor's reading of a request line: the version first, to tell
    /// a version mismatch from garbage, then the request itself.
    public static func decodeRequest(_ line: [UInt8]) -> Decoded {
        guard let version = JSONLine.version(of: line) else { return .malformed }
        guard version == ControlProtocol.version else { return .otherVersion(version) }
        guard let request = JSONLine.decode(ControlRequest.self, line) else { return .malformed }
        return .request(request)
    }
}

/// The release, shown by `tunnel --version` and reported by the supervisor.
public let tunnelVersion = "0.1.0"

public struct ControlRequest: Codable, Sendable {
    public enum Command: String, Codable, Sendable {
        case hello, up, down, list, reload, stop
        /// One tunnel in depth (`names[0]`).
        case status
    }
    public var v: Int = ControlProtocol.version
    public var command: Command
    public var names: [String] = []
    public var all: Bool = false
    /// Absolute path of the profiles file the CLI read.
    public var config: String?
    /// The CLI's ssh-agent socket, so the supervisor uses the caller's agent.
    public var agentSocket: String?
    public var home: String?
    public var clientVersion: String?
    /// `up` of a tunnel no profile describes (then `names` is empty).
    public var adHoc: AdHocTunnel?

    public init(command: Command) { self.command = command }

    // Absent fields take their defaults, so older or newer peers still decode.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        v = try c.decodeIfPresent(Int.self, forKey: .v) ?? 0
        command = try c.decode(Command.self, forKey: .command)
        names = try c.decodeIfPresent([String].self, forKey: .names) ?? []
        all = try c.decodeIfPresent(Bool.self, forKey: .all) ?? false
        config = try c.decodeIfPresent(String.self, forKey: .config)
        agentSocket = try c.decodeIfPresent(String.self, forKey: .agentSocket)
        home = try c.decodeIfPresent(String.self, forKey: .home)
        clientVersion = try c.decodeIfPresent(String.self, forKey: .clientVersion)
        adHoc = try c.decodeIfPresent(AdHocTunnel.self, forKey: .adHoc)
    }
}

/// The outcome for one tunnel named in a request.
public struct TunnelOutcome: Codable, Sendable, Equatable {
    public enum Result: String, Codable, Sendable {
        case up, alreadyUp = "already-up", down, notUp = "not-up", failed, retrying, restarted, unchanged, removed
        /// A lazy tunnel listening, with no SSH connection until a client arrives.
        case idle
    }
    public var name: String
    public var result: Result
    public var message: String?
    /// Local addresses, as bound (with the kernel's port for `auto`).
    public var local: [String] = []
    /// "127.0.0.1:5433 -> localhost:5432 (postgresql)" per forward, and the
    /// chain, of the profile as ssh_config completed it (which may have
    /// added the forwards); absent from older supervisors.
    public var routes: [String]?
    public var via: String?

    /// Remote forwards, "127.0.0.1:43127 -> localhost:3000" (with the port
    /// the server picked for port 0), those the server listens on; absent
    /// from older supervisors.
    public var remote: [String]?
    /// Why a remote forward is not listening, one line each (the tunnel
    /// stays up and keeps asking).
    public var remoteProblems: [String]?

    public init(name: String, result: Result, message: String? = nil, local: [String] = [], routes: [String]? = nil, via: String? = nil,
                remote: [String]? = nil, remoteProblems: [String]? = nil) {
        self.name = name
        self.result = result
        self.message = message
        self.local = local
        self.routes = routes
        self.via = via
        self.remote = remote
        self.remoteProblems = remoteProblems
    }

    public var isFailure: Bool { result == .failed || result == .retrying }
}

/// One forward as `tunnel ls --json` shows it.
public struct ForwardInfo: Codable, Sendable, Equatable {
    /// "local" (-L), "dynamic" (-D, whose remote is "socks") or "remote"
    /// (-R); absent from older supervisors. For a remote forward, `remote`
    /// is where the server listens (with the port it picked) and `local` the
    /// target on this machine.
    public var kind: String?
    public var local: String
    public var remote: String
    public var active: Int
    public var total: Int
    public var bytes_in: UInt64
    public var bytes_out: UInt64
    public var `public`: Bool
    /// A remote forward the server does not listen for (it refused, or the
    /// request failed): why; absent while it listens or waits for an answer.
    public var problem: String? = nil
    /// The IPv6 counterpart a `localhost` or `*` forward also listens on
    /// ("[::1]:5433"); absent when it listens on `local` only.
    public var also_local: String? = nil
}

/// One tunnel as `tunnel ls --json` shows it.
public struct TunnelInfo: Codable, Sendable, Equatable {
    public var name: String
    public var state: String
    public var via: String
    /// ISO 8601 (UTC) time the current state began.
    public var since: String
    public var restarts: Int
    public var last_error: String?
    /// ISO 8601 (UTC) time of `last_error`; absent from older supervisors.
    public var last_error_at: String?
    public var forwards: [ForwardInfo]
    /// SSH connections configured and up; absent from older supervisors.
    public var sessions: Int?
    public var sessions_up: Int?
    /// Extra SSH connections up, opened while clients queued (`max_sessions`).
    public var sessions_extra: Int?
    /// Through jump hosts: every hop, first first, the target last.
    public var hops: [String]?
    /// "profile FILE:LINE", "ssh_config" or "command line".
    public var origin: String?
    /// The last keepalive round trip in milliseconds, rounded up to 0.1 ms
    /// (so a measured one never shows as 0), while up; absent from older supervisors.
    public var rtt_ms: Double?
}

public struct ControlResponse: Codable, Sendable {
    public var v: Int = ControlProtocol.version
    public var ok: Bool
    public var error: String?
    public var supervisorVersion: String?
    public var pid: Int32?
    public var outcomes: [TunnelOutcome] = []
    public var tunnels: [TunnelInfo] = []
    /// The answer to `status`.
    public var detail: TunnelDetail?

    public init(ok: Bool, error: String? = nil) {
        self.ok = ok
        self.error = error
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        v = try c.decodeIfPresent(Int.self, forKey: .v) ?? 0
        ok = try c.decodeIfPresent(Bool.self, forKey: .ok) ?? false
        error = try c.decodeIfPresent(String.self, forKey: .error)
        supervisorVersion = try c.decodeIfPresent(String.self, forKey: .supervisorVersion)
        pid = try c.decodeIfPresent(Int32.self, forKey: .pid)
        outcomes = try c.decodeIfPresent([TunnelOutcome].self, forKey: .outcomes) ?? []
        tunnels = try c.decodeIfPresent([TunnelInfo].self, forKey: .tunnels) ?? []
        detail = try c.decodeIfPresent(TunnelDetail.self, forKey: .detail)
    }
}

enum JSONLine {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Array(data) + [UInt8(ascii: "\n")]
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }

    /// Just the version field, to tell a version mismatch from garbage.
    struct Versioned: Decodable { var v: Int? }
    static func version(of bytes: [UInt8]) -> Int? {
        (try? JSONDecoder().decode(Versioned.self, from: Data(bytes)))?.v
    }
}

/// ISO 8601 UTC from epoch seconds, without Foundation's formatters.
func iso8601(_ seconds: Double) -> String {
    var t = Int(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
