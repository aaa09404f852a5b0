import Foundation
import XCTest

/// A profiles file plus helpers to run the `tunnel` binary against it.
final class TunnelHarness {
    let dir: String
    let configPath: String
    let runtimeDir: String
    let knownHosts: String

    init() {
        dir = makeTempDir("tunnel")
        configPath = dir + "/tunnels.toml"
        runtimeDir = dir + "/run"
        knownHosts = dir + "/known_hosts"
        write("", to: knownHosts, mode: 0o600)
    }

    /// A profile block for `server`, at the address it listens on, with its
    /// own user key; no `forward` line when `forwards` is empty (`extra` then
    /// says what it forwards).
    func profile(_ name: String, server: SSHServer, forwards: [String], extra: String = "") -> String {
        let forwardLine = forwards.isEmpty ? "" : "forward = [\(forwards.map { "\"\($0)\"" }.joined(separator: ", "))]\n"
        return """
        [tunnels.\(name)]
        host = "\(server.address)"
        port = \(server.port)
        user = "\(Env.userName)"
        identity = "\(server.userKey)"
        known_hosts = "\(knownHosts)"
        \(forwardLine)keepalive = 2
        keepalive_count = 3
        connect_timeout = 5
        \(extra)

        """
    }

    func trust(_ server: SSHServer) {
        let existing = read(knownHosts)
        write(existing + server.knownHostsLine + "\n", to: knownHosts, mode: 0o600)
    }

    func writeConfig(_ text: String) { write(text, to: configPath) }

    var environment: [String: String] {
        // No agent: tests pick their keys explicitly.
        ["TUNNEL_CONFIG": configPath, "TUNNEL_RUNTIME_DIR": runtimeDir, "SSH_AUTH_SOCK": "", "HOME": dir]
    }

    /// Runs `tunnel ARGS` to completion.
    @discardableResult
    func tunnel(_ args: [String], timeout: Double = 60, env: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> Outcome {
        runCommand(Env.tunnelBinary, args, env: environment.merging(env) { $1 }, timeout: timeout, file: file, line: line)
    }

    /// Starts `tunnel up NAME --foreground` and waits until the port accepts.
    func foreground(_ name: String, waitFor port: UInt16?, env: [String: String] = [:]) throws -> Background {
        let p = try Background(Env.tunnelBinary, ["up", name, "--foreground"], env: environment.merging(env) { $1 },
                               logPath: dir + "/fg-\(name)-\(UUID().uuidString.prefix(6)).log")
        if let port {
            let ok = eventually(timeout: 15) { p.log.contains("(up;") || !p.isRunning }
            XCTAssertTrue(ok && p.isRunning, "tunnel did not come up: \(p.log)")
            XCTAssertTrue(Net.isListening(port), "port \(port) is not listening: \(p.log)")
        }
        return p
    }
}

/// `tunnel ls --json`, as the contract names its fields.
struct ListedTunnel: Decodable {
    struct Forward: Decodable {
        let kind: String?
        let local: String
        let remote: String
        let active: Int
        let total: Int
        let bytes_in: UInt64
        let bytes_out: UInt64
        let also_local: String?
    }
    let name: String
    let state: String
    let via: String
    let since: String
    let restarts: Int
    let last_error: String?
    let last_error_at: String?
    let forwards: [Forward]
    let sessions: Int?
    let sessions_up: Int?
    let sessions_extra: Int?
    let hops: [String]?
    let origin: String?
    let rtt_ms: Double?
}

extension TunnelHarness {
    /// `tunnel ls --json`, decoded.
    func list(file: StaticString = #filePath, line: UInt = #line) -> [ListedTunnel] {
        let result = tunnel(["ls", "--json"], file: file, line: line)
        XCTAssertEqual(result.status, 0, result.output, file: file, line: line)
        guard let decoded = try? JSONDecoder().decode([ListedTunnel].self, from: Data(result.stdout.utf8)) else {
            XCTFail("ls --json is not the documented array: \(result.stdout)", file: file, line: line)
            return []
        }
        return decoded
    }

    func listed(_ name: String) -> ListedTunnel? { list().first { $0.name == name } }

    var supervisorPID: Int32? {
        Int32(read(runtimeDir + "/supervisor.pid").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Stops the supervisor, forcefully if it does not go.
    func stopSupervisor() {
        let pid = supervisorPID
        tunnel(["daemon", "stop"], timeout: 10)
        if let pid, kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
        }
    }

    var supervisorLog: String { read(runtimeDir + "/supervisor.log") }
}
