import Foundation
import Glibc
import XCTest

/// Paths and process helpers shared by the integration tests.
enum Env {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `tunnel` binary under test: $TUNNEL_BIN, else next to the test bundle.
    static var tunnelBinary: String {
        if let explicit = ProcessInfo.processInfo.environment["TUNNEL_BIN"] { return explicit }
        let bundleDir = Bundle.main.bundleURL.deletingLastPathComponent()
        for candidate in [Bundle.main.bundleURL.appendingPathComponent("tunnel"), bundleDir.appendingPathComponent("tunnel")] {
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
        }
        return packageRoot.appendingPathComponent(".build/debug/tunnel").path
    }

    static var userName: String {
        ProcessInfo.processInfo.environment["USER"] ?? String(cString: getpwuid(getuid())!.pointee.pw_name)
    }

    static func which(_ name: String) -> String? {
        for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

/// A finished command.
struct Outcome {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double
    var output: String { stdout + stderr }
}

/// A child started with posix_spawn (Foundation's Process loses track of
/// children on Linux when many run at once), output going to files.
final class Spawned {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private(set) var status: Int32?

    init(_ path: String, _ args: [String], env: [String: String], stdoutPath: String, stderrPath: String, stdinPath: String = "/dev/null") throws {
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        if stderrPath == stdoutPath {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A clean signal state: the test runner may block or ignore some.
        var none = sigset_t(); sigemptyset(&none)
        var all = sigset_t(); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw NSError(domain: "spawn", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: "posix_spawn \(path): \(String(cString: strerror(rc)))"]) }
        pid = child
    }

    /// Reaps the child if it exited.
    var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = Spawned.decode(st)
            return false
        }
        return r == 0
    }

    static func decode(_ st: Int32) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG by hand: the macros are not imported.
        let sig = st & 0x7f
        return sig == 0 ? (st >> 8) & 0xff : 128 + sig
    }

    /// Waits up to `timeout`; nil if still running.
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(5_000) }
        return isRunning ? nil : status
    }

    func kill(_ signo: Int32) { if status == nil { Glibc.kill(pid, signo) } }
}

/// Runs a command to completion (killed after `timeout`), capturing output.
@discardableResult
func runCommand(_ path: String, _ args: [String], env: [String: String] = [:], timeout: Double = 60, stdin: String? = nil,
         file: StaticString = #filePath, line: UInt = #line) -> Outcome {
    let dir = makeTempDir("run")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var stdinPath = "/dev/null"
    if let stdin {
        stdinPath = dir + "/stdin"
        write(stdin, to: stdinPath)
    }
    let start = Date()
    let child: Spawned
    do {
        child = try Spawned(path, args, env: env, stdoutPath: dir + "/out", stderrPath: dir + "/err", stdinPath: stdinPath)
    } catch {
        XCTFail("cannot run \(path): \(error)", file: file, line: line)
        return Outcome(status: -1, stdout: "", stderr: "\(error)", seconds: 0)
    }
    var status = child.wait(timeout: timeout)
    if status == nil {
        child.kill(SIGKILL)
        status = child.wait(timeout: 5)
        XCTFail("\(path) \(args.joined(separator: " ")) did not finish within \(timeout) s", file: file, line: line)
    }
    return Outcome(status: status ?? -1, stdout: read(dir + "/out"), stderr: read(dir + "/err"), seconds: Date().timeIntervalSince(start))
}

/// A long-running child whose output is collected into a file.
final class Background {
    let child: Spawned
    let logPath: String

    init(_ path: String, _ args: [String], env: [String: String] = [:], logPath: String) throws {
        self.logPath = logPath
        child = try Spawned(path, args, env: env, stdoutPath: logPath, stderrPath: logPath)
    }

    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }
    var log: String { read(logPath) }

    func signal(_ signo: Int32) { child.kill(signo) }

    /// Waits for exit; nil if still running at the deadline.
    func wait(timeout: Double) -> Int32? { child.wait(timeout: timeout) }

    func stop() {
        if child.isRunning {
            child.kill(SIGKILL)
            _ = child.wait(timeout: 10)
        }
    }
}

/// Polls `condition` until true or the deadline; returns whether it became true.
@discardableResult
func eventually(timeout: Double, interval: Double = 0.05, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(UInt32(interval * 1_000_000))
    }
    return condition()
}

/// A directory under /tmp, removed when the test that made it passes (a
/// failed test keeps its logs and configs for a look).
func makeTempDir(_ prefix: String = "tunnel-test") -> String {
    var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    chmod(path, 0o755)
    TempDirCleaner.shared.track(path)
    return path
}

/// Its list of paths is behind `lock`.
final class TempDirCleaner: NSObject, XCTestObservation, @unchecked Sendable {
    static let shared: TempDirCleaner = {
        let cleaner = TempDirCleaner()
        XCTestObservationCenter.shared.addTestObserver(cleaner)
        return cleaner
    }()
    private let lock = NSLock()
    private var paths: [String] = []

    func track(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        paths.append(path)
    }

    // Called after tearDown, when the test's processes are stopped.
    func testCaseDidFinish(_ testCase: XCTestCase) {
        lock.lock()
        let made = paths
        paths = []
        lock.unlock()
        guard testCase.testRun?.hasSucceeded ?? false else { return }
        for path in made { try? FileManager.default.removeItem(atPath: path) }
    }
}

func write(_ text: String, to path: String, mode: Int = 0o644) {
    _ = FileManager.default.createFile(atPath: path, contents: text.data(using: .utf8), attributes: [.posixPermissions: mode])
}

/// The whole file, read until EOF: Foundation's String(contentsOfFile:)
/// reads a /proc file (size 0) only up to its first page, which cut
/// /proc/net/tcp short on a busy machine.
func read(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// The names (comm) of a process's threads.
func threadNames(of pid: Int32) -> [String] {
    let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return threads.map { read("/proc/\(pid)/task/\($0)/comm").trimmingCharacters(in: .whitespacesAndNewlines) }
}
