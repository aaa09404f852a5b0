import Foundation
import XCTest

/// A supervisor runs for months: cycles of up and down, reloads and killed
/// links must leave its descriptors and threads where they started. These
/// count /proc/PID/fd and /proc/PID/task (not timing); RSS is printed beside
/// them for the record, not asserted (memory figures belong to the bench).
final class ResourceTests: SSHTestCase {
    private let tunnels = 20

    private func names(_ count: Int? = nil) -> [String] { (0..<(count ?? tunnels)).map { "t\($0)" } }

    /// `count` profiles forwarding kernel-picked ports to the echo server.
    private func writeProfiles(count: Int? = nil, keepalive: Int = 2) {
        harness.writeConfig(names(count).map {
            harness.profile($0, server: server, forwards: ["0:127.0.0.1:\(echo.port)"])
                .replacingOccurrences(of: "keepalive = 2\n", with: "keepalive = \(keepalive)\n")
        }.joined())
    }

    private struct Resources: Equatable, CustomStringConvertible {
        let fds: Int
        let threads: Int
        var description: String { "\(fds) fds, \(threads) threads" }
    }

    private func resources(_ pid: Int32) -> Resources {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? -1
        return Resources(fds: fds, threads: threads)
    }

    /// The supervisor's resources once it is quiet: the control connection
    /// of the command just run may still be open for a moment, and counting
    /// it would make the baseline one too high.
    private func settled(_ pid: Int32) -> Resources {
        var lowest = resources(pid)
        _ = eventually(timeout: 1, interval: 0.1) {
            let now = self.resources(pid)
            if now.fds < lowest.fds { lowest = now }
            return false
        }
        return lowest
    }

    private func rssKiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    /// The supervisor back at `baseline` once what a cycle started has ended
    /// (a resolver thread may still be on its way out).
    private func assertBack(at baseline: Resources, _ pid: Int32, after what: String, file: StaticString = #filePath, line: UInt = #line) {
        _ = eventually(timeout: 10) { self.resources(pid) == baseline }
        XCTAssertEqual(resources(pid), baseline, "after \(what)", file: file, line: line)
    }

    /// `tunnel up` of the first `count` profiles; false (and a failure) if it failed.
    @discardableResult
    private func upAll(_ count: Int? = nil, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let up = harness.tunnel(["up"] + names(count), timeout: 120)
        XCTAssertEqual(up.status, 0, up.output, file: file, line: line)
        return up.status == 0
    }

    func testHundredUpDownCyclesOfTwentyTunnels_leaveDescriptorsAndThreadsAtBaseline() throws {
        writeProfiles()
        upAll()
        XCTAssertEqual(harness.tunnel(["down", "--all"]).status, 0)
        let pid = try XCTUnwrap(harness.supervisorPID)
        let baseline = settled(pid), rssBefore = rssKiB(pid)
        for cycle in 1...100 {
            guard upAll() else { return }
            let down = harness.tunnel(["down", "--all"])
            XCTAssertEqual(down.status, 0, "cycle \(cycle): \(down.output)")
            guard down.status == 0 else { return }
        }
        assertBack(at: baseline, pid, after: "100 up/down cycles of \(tunnels) tunnels")
        print("resources: 100 up/down cycles of \(tunnels) tunnels: \(baseline) before, \(resources(pid)) after; RSS \(rssBefore) KiB before, \(rssKiB(pid)) KiB after")
    }

    func testHundredReloadsOfAChangedProfile_leaveDescriptorsAndThreadsAtBaseline() throws {
        writeProfiles(count: 1, keepalive: 2)
        upAll(1)
        let pid = try XCTUnwrap(harness.supervisorPID)
        // One restart first, so whatever a reload sets up once is in the baseline.
        writeProfiles(count: 1, keepalive: 3)
        XCTAssertEqual(harness.tunnel(["reload"]).status, 0)
        XCTAssertTrue(eventually(timeout: 15) { self.harness.listed("t0")?.state == "up" })
        let baseline = settled(pid), rssBefore = rssKiB(pid)
        for reload in 1...100 {
            writeProfiles(count: 1, keepalive: reload % 2 == 0 ? 3 : 2)
            let result = harness.tunnel(["reload"])
            XCTAssertEqual(result.status, 0, "reload \(reload): \(result.output)")
            XCTAssertTrue(result.stdout.contains("t0: restarted"), "reload \(reload): \(result.stdout)")
            guard result.status == 0, result.stdout.contains("t0: restarted") else { return }
        }
        XCTAssertTrue(eventually(timeout: 15) { self.harness.listed("t0")?.state == "up" })
        assertBack(at: baseline, pid, after: "100 reloads")
        print("resources: 100 reloads of a changed profile: \(baseline) before, \(resources(pid)) after; RSS \(rssBefore) KiB before, \(rssKiB(pid)) KiB after")
    }

    func testHundredKilledLinks_healed_leaveDescriptorsAndThreadsAtBaseline() throws {
        writeProfiles()
        upAll()
        let pid = try XCTUnwrap(harness.supervisorPID)
        let baseline = settled(pid), rssBefore = rssKiB(pid)
        // Five rounds of killing every tunnel's sshd session: 100 links lost.
        for round in 1...5 {
            let sessions = server.sessionPIDs
            XCTAssertGreaterThanOrEqual(sessions.count, tunnels, "round \(round): an sshd session per tunnel")
            server.killSessions()
            let healed = eventually(timeout: 60, interval: 0.2) {
                let listed = self.harness.list()
                return listed.count == self.tunnels && listed.allSatisfy { $0.state == "up" && $0.restarts == round }
            }
            XCTAssertTrue(healed, "round \(round): \(harness.list().map { "\($0.name) \($0.state) restarts \($0.restarts)" })")
            if !healed { return }
        }
        assertBack(at: baseline, pid, after: "100 killed links")
        print("resources: 100 killed links: \(baseline) before, \(resources(pid)) after; RSS \(rssBefore) KiB before, \(rssKiB(pid)) KiB after")
    }
}
