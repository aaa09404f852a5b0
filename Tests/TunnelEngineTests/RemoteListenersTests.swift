import TunnelConfig
import XCTest
@testable import TunnelEngine

final class RemoteListenersTests: XCTestCase {
    private let fixed = try! RemoteForwardSpec.parse("8080:localhost:3000")
    private let picked = try! RemoteForwardSpec.parse("0:localhost:3000")

    private let neverListenedReason = "the server refused the listener (remote forwarding is off there by AllowTcpForwarding or DisableForwarding, "
        + "PermitListen leaves this address out, or the port is in use on the server)"

    private func requests(_ actions: [RemoteListeners.Action]) -> [RemoteListeners.Action] {
        actions.filter { if case .request = $0 { return true } else { return false } }
    }

    private func retries(_ actions: [RemoteListeners.Action]) -> [Double] {
        actions.compactMap { if case .scheduleRetry(_, let after) = $0 { return after } else { return nil } }
    }

    func testLinkUp_asksForEveryListener_andPublishesThemUnsettled() {
        var listeners = RemoteListeners(forwards: [fixed, picked])
        XCTAssertEqual(listeners.linkUp(), [
            .publish(index: 0, RemoteListenerStatus()), .request(index: 0, port: 8080),
            .publish(index: 1, RemoteListenerStatus()), .request(index: 1, port: 0),
        ])
    }

    /// A restored tunnel asks for the port the server picked before, for a
    /// port-0 forward only; a fixed port stays as written.
    func testPreferredPorts_areAskedForFirst_forPortZeroForwardsOnly() {
        var listeners = RemoteListeners(forwards: [fixed, picked], preferredPorts: [9999, 43127])
        XCTAssertEqual(requests(listeners.linkUp()), [.request(index: 0, port: 8080), .request(index: 1, port: 43127)])
    }

    func testPreferredPorts_fromAStatus_andFilledFromWhatWasSaved() throws {
        let profile = Profile(name: "p", host: "h", user: "u", forwards: [try ForwardSpec.parse("auto:h:1"), try ForwardSpec.parse("5433:h:2")],
                              remoteForwards: [fixed, picked], knownHosts: "/k", location: SourceLocation(file: "t", line: 1, column: 1))
        var status = TunnelStatus()
        status.boundAddresses = ["127.0.0.1:40001", "127.0.0.1:5433"]
        status.remoteListeners = [RemoteListenerStatus(boundPort: 8080), RemoteListenerStatus()]
        let now = PreferredPorts(profile: profile, status: status)
        XCTAssertEqual(now, PreferredPorts(local: [40001, 0], remote: [0, 0]))
        // The remote one is not granted at the moment: what was saved stays.
        XCTAssertEqual(now.filling(from: PreferredPorts(local: [39999, 0], remote: [0, 43127])), PreferredPorts(local: [40001, 0], remote: [0, 43127]))
        XCTAssertTrue(PreferredPorts(local: [0], remote: [0]).isEmpty)
    }

    func testGranted_publishesTheBoundPort_andLogsTheRoute() {
        var listeners = RemoteListeners(forwards: [picked])
        _ = listeners.linkUp()
        XCTAssertEqual(listeners.granted(0, port: 43127), [
            .publish(index: 0, RemoteListenerStatus(boundPort: 43127, settled: true)),
            .log(.info, "remote 127.0.0.1:43127 -> localhost:3000: the server listens"),
        ])
        XCTAssertEqual(listeners.entries[0].state, .listening(port: 43127))
    }

    func testFirstRefusal_saysWhatTheServerMayRuleOut_andRetriesWithBackoff() {
        var listeners = RemoteListeners(forwards: [fixed])
        _ = listeners.linkUp()
        let message = "remote 127.0.0.1:8080: \(neverListenedReason); retrying in 1 s"
        XCTAssertEqual(listeners.refused(0), [
            .log(.error, message),
            .publish(index: 0, RemoteListenerStatus(problem: message, settled: true)),
            .scheduleRetry(index: 0, after: 1),
        ])
        XCTAssertEqual(listeners.retryDue(0), [.request(index: 0, port: 8080)])
        let again = listeners.refused(0)
        XCTAssertEqual(again.first, .log(.debug, "remote 127.0.0.1:8080: \(neverListenedReason); retrying in 2 s"), "one line per run of refusals")
        XCTAssertEqual(retries(again), [2])
    }

    func testRefusalAfterAReconnect_blamesTheOldSession() {
        var listeners = RemoteListeners(forwards: [fixed])
        _ = listeners.linkUp()
        _ = listeners.granted(0, port: 8080)
        _ = listeners.linkDown()
        XCTAssertEqual(requests(listeners.linkUp()), [.request(index: 0, port: 8080)])
        var delays: [Double] = []
        var messages: [String] = []
        for _ in 0..<7 {
            let actions = listeners.refused(0)
            delays += retries(actions)
            if case .log(_, let message)? = actions.first { messages.append(message) }
            XCTAssertEqual(requests(listeners.retryDue(0)), [.request(index: 0, port: 8080)])
        }
        XCTAssertEqual(delays, [1, 2, 4, 8, 16, 30, 30])
        XCTAssertEqual(messages[2], "remote 127.0.0.1:8080: server refused the listener (still held by the old session?); retrying in 4 s")
        let granted = listeners.granted(0, port: 8080)
        XCTAssertEqual(granted.last, .log(.info, "remote 127.0.0.1:8080 -> localhost:3000: the server listens again"))
        // The backoff starts over.
        _ = listeners.linkDown()
        _ = listeners.linkUp()
        XCTAssertEqual(retries(listeners.refused(0)), [1])
    }

    func testPickedPort_isAskedForAgainAfterAReconnect_untilRefusedThreeTimes() {
        var listeners = RemoteListeners(forwards: [picked])
        _ = listeners.linkUp()
        _ = listeners.granted(0, port: 43127)
        _ = listeners.linkDown()
        XCTAssertEqual(requests(listeners.linkUp()), [.request(index: 0, port: 43127)])
        XCTAssertEqual(listeners.refused(0).first, .log(.warning, "remote 127.0.0.1:43127: server refused the listener (still held by the old session?); retrying in 1 s"))
        XCTAssertEqual(listeners.retryDue(0), [.request(index: 0, port: 43127)])
        _ = listeners.refused(0)
        XCTAssertEqual(listeners.retryDue(0), [.request(index: 0, port: 43127)])
        XCTAssertTrue(listeners.refused(0).contains(.log(.info, "remote 127.0.0.1:43127: asking the server for any free port instead")))
        XCTAssertEqual(listeners.retryDue(0), [.request(index: 0, port: 0)])
        XCTAssertEqual(listeners.granted(0, port: 50000).first, .publish(index: 0, RemoteListenerStatus(boundPort: 50000, settled: true)))
    }

    func testFailedRequest_isRetriedLikeARefusal_namingTheFailure() {
        var listeners = RemoteListeners(forwards: [fixed])
        _ = listeners.linkUp()
        let actions = listeners.failed(0, "Unknown")
        XCTAssertEqual(actions.first, .log(.error, "remote 127.0.0.1:8080: the listen request failed: Unknown; retrying in 1 s"))
        XCTAssertEqual(retries(actions), [1])
    }

    func testLinkDown_dropsWaitingRetries_andAnswersForAnOldLinkAreIgnored() {
        var listeners = RemoteListeners(forwards: [fixed, picked])
        _ = listeners.linkUp()
        _ = listeners.refused(0)
        XCTAssertEqual(listeners.linkDown(), [.publish(index: 0, RemoteListenerStatus()), .publish(index: 1, RemoteListenerStatus())])
        XCTAssertEqual(listeners.retryDue(0), [], "a retry timer of the old link")
        XCTAssertEqual(listeners.granted(1, port: 1234), [], "an answer on the old link")
        XCTAssertEqual(listeners.refused(1), [])
        XCTAssertEqual(listeners.linkDown(), [], "nothing left to publish")
    }

    func testRetryDue_whileListening_doesNothing() {
        var listeners = RemoteListeners(forwards: [fixed])
        _ = listeners.linkUp()
        _ = listeners.granted(0, port: 8080)
        XCTAssertEqual(listeners.retryDue(0), [])
        XCTAssertEqual(listeners.granted(0, port: 8080), [], "granted twice")
    }

    func testLinkFailed_settlesEveryListenerSoTunnelUpNeedNotWait() {
        var listeners = RemoteListeners(forwards: [fixed])
        XCTAssertEqual(listeners.linkFailed(), [
            .publish(index: 0, RemoteListenerStatus(problem: "remote 127.0.0.1:8080: not listening until the SSH connection is up", settled: true)),
        ])
        XCTAssertEqual(requests(listeners.linkUp()), [.request(index: 0, port: 8080)])
    }
}
