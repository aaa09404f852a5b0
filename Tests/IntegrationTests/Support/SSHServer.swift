import Foundation
import XCTest

/// A real OpenSSH sshd on a free loopback port, with host and user keys
/// generated into a temp dir. Runs in the foreground (-D) as a child.
final class SSHServer {
    let dir: String
    let port: UInt16
    let hostKey: String
    let userKey: String
    let logPath: String
    private(set) var process: Background?
    private var extraConfig: String
    /// The network namespace it runs in (nil: this one).
    let namespace: (any NamedNetworkNamespace)?
    /// The address known_hosts names it by.
    let address: String

    init(extraConfig: String = "", port: UInt16? = nil, namespace: (any NamedNetworkNamespace)? = nil, listenAddress: String = "127.0.0.1") throws {
        self.namespace = namespace
        self.address = listenAddress
        guard let keygen = Env.which("ssh-keygen"), Env.which("sshd") != nil else {
            throw NSError(domain: "sshd", code: 0, userInfo: [NSLocalizedDescriptionKey: "openssh-server is not installed (.ci/run installs it)"])
        }
        dir = makeTempDir("sshd")
        self.port = port ?? Net.freePort()
        hostKey = dir + "/host_ed25519"
        userKey = dir + "/id_ed25519"
        logPath = dir + "/sshd.log"
        self.extraConfig = listenAddress == "127.0.0.1" ? extraConfig : "ListenAddress \(listenAddress)\n" + extraConfig
        runCommand(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f", hostKey])
        runCommand(keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "test-user", "-f", userKey])
        try FileManager.default.copyItem(atPath: userKey + ".pub", toPath: dir + "/authorized_keys")
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        writeConfig()
        try start()
    }

    /// The same sshd_config the scripts use (Scripts/lib.sh), extras first.
    private func writeConfig() {
        let lib = Env.packageRoot.appendingPathComponent("Scripts/lib.sh").path
        let result = runCommand("/bin/bash", ["-c", #"source "$0" && write_sshd_config "$1" "$2" "$3""#, lib, dir, "\(port)", extraConfig])
        XCTAssertEqual(result.status, 0, "write_sshd_config: \(result.output)")
    }

    /// The known_hosts line for this server.
    var knownHostsLine: String {
        let pub = read(hostKey + ".pub").split(separator: " ")
        return "[\(address)]:\(port) \(pub[0]) \(pub[1])"
    }

    var hostKeyFingerprint: String {
        let out = runCommand(Env.which("ssh-keygen")!, ["-l", "-E", "sha256", "-f", hostKey + ".pub"]).stdout
        return String(out.split(separator: " ")[1])
    }

    func start() throws {
        let sshd = [Env.which("sshd")!, "-D", "-f", dir + "/sshd_config", "-E", logPath]
        let p = try namespace.map { try Background("/usr/bin/ip", ["netns", "exec", $0.name] + sshd, logPath: dir + "/sshd.stdout") }
            ?? Background(sshd[0], Array(sshd.dropFirst()), logPath: dir + "/sshd.stdout")
        process = p
        // sshd logs this line once it listens; reading it is cheaper than
        // parsing /proc/net/tcp, which many sockets (a bench nearby) make large.
        let listening = { read(self.logPath).contains("Server listening on \(self.address) port \(self.port)") }
        guard eventually(timeout: 10, listening) else {
            throw NSError(domain: "sshd", code: 1, userInfo: [NSLocalizedDescriptionKey: "sshd did not start: \(read(logPath))"])
        }
    }

    /// pids of the sshd processes serving connections (children of the listener).
    var sessionPIDs: [Int32] {
        guard let listener = process?.pid else { return [] }
        return descendants(of: listener)
    }

    /// Kills every process serving a connection; the listener stays.
    func killSessions(signal signo: Int32 = SIGKILL) {
        for pid in sessionPIDs { kill(pid, signo) }
    }

    /// Stops the listener and every session.
    func stop() {
        for pid in sessionPIDs { kill(pid, SIGKILL) }
        process?.stop()
        process = nil
    }

    var log: String { read(logPath) }

    /// Replaces the authorized key (to make authentication fail).
    func authorize(publicKeyFile: String) throws {
        try? FileManager.default.removeItem(atPath: dir + "/authorized_keys")
        try FileManager.default.copyItem(atPath: publicKeyFile, toPath: dir + "/authorized_keys")
    }

    /// Adds a key to the authorized ones.
    func alsoAuthorize(publicKeyFile: String) {
        write(read(dir + "/authorized_keys") + read(publicKeyFile), to: dir + "/authorized_keys")
    }

    deinit { stop() }
}

/// All descendants of `pid`, read from /proc.
func descendants(of pid: Int32) -> [Int32] {
    var children: [Int32: [Int32]] = [:]
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for entry in entries {
        guard let p = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8) else { continue }
        // The field after the ")" that closes the command name: state, then ppid.
        guard let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, let ppid = Int32(fields[1]) { children[ppid, default: []].append(p) }
    }
    var out: [Int32] = []
    var stack = children[pid] ?? []
    while let next = stack.popLast() {
        out.append(next)
        stack += children[next] ?? []
    }
    return out
}
