import TunnelPOSIX
import XCTest
@testable import TunnelEngine

/// A lazy tunnel's pool: asleep with no lane, woken once, asleep again when idle.
final class LanePoolLazyTests: XCTestCase {
    private let t0 = Instant(nanoseconds: 1_000_000_000_000)

    func testAsleep_hasNoLane_isIdle_andWakesOnceIntoItsKeptLanes() {
        var pool = LanePool(kept: 2, maxSessions: 4, asleep: true)
        XCTAssertEqual(pool.summary, .init(phase: .idle, sessionsUp: 0, sessionsConnecting: 0, extraSessionsUp: 0))
        XCTAssertEqual(pool.wake(), [.launch(lane: 0, isExtra: false), .launch(lane: 1, isExtra: false)])
        XCTAssertEqual(pool.summary.phase, .connecting)
        XCTAssertEqual(pool.wake(), [], "a second client shares the attempt under way")
        XCTAssertEqual(pool.summary.sessionsConnecting, 2)
    }

    func testSleep_stopsEveryLane_incExtra_thenWakesWithFreshLanesAsConnecting() {
        var pool = LanePool(kept: 1, maxSessions: 2, asleep: true)
        _ = pool.wake()
        _ = pool.report(.up, from: 0, now: t0)
        XCTAssertEqual(pool.growIfBackedUp(pending: 100, now: t0).last, .launch(lane: 1, isExtra: true))
        XCTAssertEqual(pool.sleep(), [0, 1])
        XCTAssertTrue(pool.isAsleep)
        XCTAssertEqual(pool.summary.phase, .idle)
        XCTAssertEqual(pool.report(.up, from: 0, now: t0).actions, [], "a stopped lane's late report is ignored")
        XCTAssertEqual(pool.wake(), [.launch(lane: 2, isExtra: false)], "new indices: the old lanes' reports cannot be confused with these")
        XCTAssertEqual(pool.summary.phase, .connecting, "a fresh start, not a reconnect")
        XCTAssertFalse(pool.isGrowing)
    }

    func testFailed_staysFailed_insteadOfSleeping_soNewClientsDoNotRetryIt() {
        var pool = LanePool(kept: 1, maxSessions: 1, asleep: true)
        _ = pool.wake()
        _ = pool.report(.connectFailed(message: "auth", isPermanent: true), from: 0, now: t0)
        XCTAssertEqual(pool.summary.phase, .failed)
        XCTAssertEqual(pool.sleep(), [])
        XCTAssertFalse(pool.isAsleep)
        XCTAssertEqual(pool.wake(), [], "only a sleeping pool wakes")
        XCTAssertEqual(pool.summary.phase, .failed)
    }

    func testReconnecting_sleeps() {
        var pool = LanePool(kept: 1, maxSessions: 1, asleep: true)
        _ = pool.wake()
        _ = pool.report(.up, from: 0, now: t0)
        _ = pool.report(.dropped(reason: "eof"), from: 0, now: t0)
        XCTAssertEqual(pool.summary.phase, .reconnecting)
        XCTAssertEqual(pool.sleep(), [0])
        XCTAssertEqual(pool.summary.phase, .idle)
    }

    func testStopped_neitherSleepsNorWakes() {
        var pool = LanePool(kept: 1, maxSessions: 1, asleep: true)
        XCTAssertEqual(pool.stop(), [])
        XCTAssertEqual(pool.wake(), [])
        XCTAssertEqual(pool.summary.phase, .stopped)
    }

    func testEagerPool_neverSleepsUnlessAsked_andIgnoresWake() {
        var pool = LanePool(kept: 1, maxSessions: 1)
        XCTAssertFalse(pool.isAsleep)
        XCTAssertEqual(pool.wake(), [])
    }
}
