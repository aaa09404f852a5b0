import Foundation
import Glibc
import XCTest

/// `tunnel daemon` as systemd runs it: sd_notify datagrams to a socket the
/// test owns (READY, WATCHDOG, RELOADING, STOPPING) and priority-prefixed
/// lines for the journal when JOURNAL_STREAM names its stderr.
final class SystemdTests: SSHTestCase {

    /// An AF_UNIX datagram socket standing in for systemd's notify socket:
    /// `path` on the filesystem, or `@name` in the abstract namespace.
    final class NotifySocket {
        let address: String
        let fd: Int32
        private(set) var received: [String] = []

        init(address: String) throws {
            self.address = address
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw NSError(domain: "socket", code: Int(errno)) }
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(address.utf8)
            let abstract = bytes.first == UInt8(ascii: "@")
            if abstract { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &sun.sun_path) { $0.copyBytes(from: bytes) }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
            let rc = withUnsafePointer(to: &sun) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            guard rc == 0 else {
                let error = errno
                close(fd)
                throw NSError(domain: "bind \(address)", code: Int(error))
            }
        }

        deinit { close(fd) }

        /// Receives datagrams for up to `seconds`, or until `until` says stop.
        /// Returns the messages received during this call.
        @discardableResult
        func receive(for seconds: Double, until: ([String]) -> Bool = { _ in false }) -> [String] {
            var fresh: [String] = []
            let deadline = Date().addingTimeInterval(seconds)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline && !until(fresh) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let left = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
                guard poll(&pfd, 1, left) > 0 else { continue }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { fresh.append(String(decoding: buffer[0..<n], as: UTF8.self)) }
            }
            received += fresh
            return fresh
        }

        static func has(_ messages: [String], _ line: String) -> Bool {
            messages.contains { $0.split(separator: "\n").contains(Substring(line)) }
        }
    }

    private func startDaemon(env: [String: String], log: String = "daemon.out") throws -> Background {
        try Background(Env.tunnelBinary, ["daemon"], env: harness.environment.merging(env) { $1 }, logPath: harness.dir + "/" + log)
    }

    func testDaemon_underNotifySocket_sendsReadyWatchdogReloadingAndStopping() throws {
        harness.writeConfig("")
        let notify = try NotifySocket(address: harness.dir + "/notify.sock")
        let daemon = try startDaemon(env: ["NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000"])
        defer { daemon.stop() }

        let beforeReady = notify.receive(for: 15) { NotifySocket.has($0, "READY=1") }
        XCTAssertTrue(NotifySocket.has(beforeReady, "READY=1"), "no READY=1: \(beforeReady)\n\(daemon.log)\n\(harness.supervisorLog)")

        // WATCHDOG_USEC=1 s: a ping every 0.5 s, so at least two in 3 s.
        let window = notify.receive(for: 3)
        let pings = window.filter { NotifySocket.has([$0], "WATCHDOG=1") }.count
        XCTAssertGreaterThanOrEqual(pings, 2, "\(window)")

        daemon.signal(SIGHUP)
        let reload = notify.receive(for: 10) { NotifySocket.has($0, "READY=1") }
        XCTAssertTrue(NotifySocket.has(reload, "RELOADING=1"), "\(reload)")
        let reloading = try XCTUnwrap(reload.firstIndex { NotifySocket.has([$0], "RELOADING=1") })
        XCTAssertTrue(NotifySocket.has(Array(reload[reloading...]), "READY=1"), "READY=1 follows the reload: \(reload)")
        XCTAssertTrue(reload[reloading].contains("MONOTONIC_USEC="), reload[reloading])

        // `tunnel reload` is a reload too.
        let viaControl = harness.tunnel(["reload"])
        XCTAssertEqual(viaControl.status, 0, viaControl.output)
        let second = notify.receive(for: 10) { NotifySocket.has($0, "READY=1") }
        XCTAssertTrue(NotifySocket.has(second, "RELOADING=1") && NotifySocket.has(second, "READY=1"), "\(second)")

        daemon.signal(SIGTERM)
        let stop = notify.receive(for: 10) { NotifySocket.has($0, "STOPPING=1") }
        XCTAssertTrue(NotifySocket.has(stop, "STOPPING=1"), "\(stop)")
        XCTAssertEqual(daemon.wait(timeout: 10), 0, daemon.log)
        // Without JOURNAL_STREAM it keeps its own log, as before.
        XCTAssertTrue(harness.supervisorLog.contains("supervisor stopped"), harness.supervisorLog)
    }

    func testDaemon_withAbstractNotifySocket_sendsReadyAndStopping() throws {
        harness.writeConfig("")
        let notify = try NotifySocket(address: "@tunnel-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let daemon = try startDaemon(env: ["NOTIFY_SOCKET": notify.address])
        defer { daemon.stop() }
        let ready = notify.receive(for: 15) { NotifySocket.has($0, "READY=1") }
        XCTAssertTrue(NotifySocket.has(ready, "READY=1"), "\(ready)\n\(daemon.log)\n\(harness.supervisorLog)")
        XCTAssertFalse(notify.received.contains { $0.contains("WATCHDOG=1") }, "no WATCHDOG_USEC, no pings: \(notify.received)")
        daemon.signal(SIGTERM)
        let stop = notify.receive(for: 10) { NotifySocket.has($0, "STOPPING=1") }
        XCTAssertTrue(NotifySocket.has(stop, "STOPPING=1"), "\(stop)")
        XCTAssertEqual(daemon.wait(timeout: 10), 0, daemon.log)
    }

    func testDaemon_readyComesOnceTheSavedTunnelsHaveStarted() throws {
        let port = Net.freePort()
        harness.writeConfig(harness.profile("db", server: server, forwards: ["\(port):127.0.0.1:\(echo.port)"]))
        let up = harness.tunnel(["up", "db"], timeout: 30)
        XCTAssertEqual(up.status, 0, up.output)
        harness.stopSupervisor()
        XCTAssertFalse(Net.isListening(port))

        let notify = try NotifySocket(address: harness.dir + "/notify.sock")
        let daemon = try startDaemon(env: ["NOTIFY_SOCKET": notify.address])
        defer { daemon.stop() }
        let ready = notify.receive(for: 20) { NotifySocket.has($0, "READY=1") }
        XCTAssertTrue(NotifySocket.has(ready, "READY=1"), "\(ready)\n\(harness.supervisorLog)")
        // By READY=1 the saved tunnel has answered its start: here, up.
        XCTAssertTrue(Net.isListening(port), harness.supervisorLog)
        XCTAssertEqual(harness.listed("db")?.state, "up", harness.supervisorLog)
    }

    func testDaemon_withJournalStreamOnItsStderr_prefixesEveryLineWithItsPriority() throws {
        harness.writeConfig("")
        // The daemon's stdout and stderr go to this file; JOURNAL_STREAM names it.
        let out = harness.dir + "/journal.out"
        write("", to: out)
        var st = stat()
        XCTAssertEqual(stat(out, &st), 0)
        // A notify socket nobody listens on: a debug line saying where, then a warning.
        let daemon = try startDaemon(env: ["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)", "TUNNEL_DEBUG": "1",
                                           "NOTIFY_SOCKET": harness.dir + "/nobody.sock"], log: "journal.out")
        defer { daemon.stop() }
        XCTAssertTrue(eventually(timeout: 15) { daemon.log.contains("started") }, daemon.log)
        XCTAssertEqual(harness.tunnel(["reload"]).status, 0)
        let logs = harness.tunnel(["logs"])
        XCTAssertTrue(logs.stderr.contains("the supervisor logs to the journal: journalctl"), logs.output)
        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.wait(timeout: 10), 0, daemon.log)

        let lines = daemon.log.split(separator: "\n")
        XCTAssertGreaterThan(lines.count, 2, daemon.log)
        for line in lines {
            XCTAssertNotNil(line.range(of: #"^<[0-7]>"#, options: .regularExpression), "no priority prefix: \(line)")
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("<6>") }, daemon.log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("<7>debug: notifying systemd") }, daemon.log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("<4>warning: cannot notify systemd") }, daemon.log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("<6>info: supervisor stopped") }, daemon.log)
        // Instead of its own file, not as well.
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.log"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: harness.runtimeDir + "/supervisor.journal"), "the note goes with the supervisor")
    }

    func testDaemon_withJournalStreamNamingAnotherFile_keepsItsOwnLog() throws {
        harness.writeConfig("")
        var st = stat()
        XCTAssertEqual(stat(harness.configPath, &st), 0)
        let daemon = try startDaemon(env: ["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)"])
        defer { daemon.stop() }
        XCTAssertTrue(eventually(timeout: 15) { self.harness.supervisorLog.contains("started") }, daemon.log)
        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.wait(timeout: 10), 0, daemon.log)
        XCTAssertFalse(daemon.log.hasPrefix("<"), daemon.log)
        XCTAssertTrue(daemon.log.contains("info: supervisor stopped"), daemon.log)
    }
}
