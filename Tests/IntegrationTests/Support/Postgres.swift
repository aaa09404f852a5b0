import Foundation
import XCTest

/// A throwaway PostgreSQL cluster (initdb -A trust) on a free loopback port,
/// run as the `postgres` user. In a `namespace` it listens on that
/// namespace's own loopback and on no Unix socket: only processes inside the
/// namespace reach it.
final class Postgres {
    let dir: String
    let port: UInt16
    let namespace: TestNamespace?
    private let bin: String

    init(namespace: TestNamespace? = nil) throws {
        self.namespace = namespace
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.sorted().last else { throw NSError(domain: "pg", code: 0, userInfo: [NSLocalizedDescriptionKey: "postgresql is not installed (.ci/run installs it)"]) }
        bin = "/usr/lib/postgresql/\(version)/bin"
        dir = makeTempDir("pg")
        port = Net.freePort()
        chown(dir, Postgres.uid, Postgres.gid)
        let initdb = asPostgres([bin + "/initdb", "-D", dir + "/data", "-A", "trust", "-U", "postgres"])
        guard initdb.status == 0 else { throw NSError(domain: "pg", code: 1, userInfo: [NSLocalizedDescriptionKey: "initdb: \(initdb.output)"]) }
        let sockets = namespace == nil ? "-k \(dir)" : "-c unix_socket_directories="
        let start = asPostgres([bin + "/pg_ctl", "-D", dir + "/data", "-l", dir + "/log", "-w", "-t", "30",
                                "-o", "-p \(port) \(sockets) -c listen_addresses=127.0.0.1", "start"], in: namespace)
        guard start.status == 0 else { throw NSError(domain: "pg", code: 2, userInfo: [NSLocalizedDescriptionKey: "pg_ctl start: \(start.output) \(read(dir + "/log"))"]) }
    }

    static var uid: uid_t { getpwnam("postgres")?.pointee.pw_uid ?? 0 }
    static var gid: gid_t { getpwnam("postgres")?.pointee.pw_gid ?? 0 }

    private func asPostgres(_ command: [String], in namespace: TestNamespace? = nil) -> Outcome {
        let user = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + command : command
        let full = namespace.map { ["/usr/bin/ip", "netns", "exec", $0.name] + user } ?? user
        return runCommand(full[0], Array(full.dropFirst()), timeout: 60)
    }

    /// Runs one query through psql against `port` and returns its output.
    static func query(_ sql: String, port: UInt16) -> Outcome {
        runCommand("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", "postgres", "-At", "-c", sql],
            env: ["PGCONNECT_TIMEOUT": "10"], timeout: 30)
    }

    func stop() {
        _ = asPostgres([bin + "/pg_ctl", "-D", dir + "/data", "-m", "immediate", "stop"])
    }

    deinit { stop() }
}
