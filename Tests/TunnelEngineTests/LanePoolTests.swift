import TunnelPOSIX
import XCTest
@testable import TunnelEngine

final class LanePoolTests: XCTestCase {
    private let t0 = Instant(nanoseconds: 1_000_000_000_000)

    private func at(_ seconds: Double) -> Instant { t0.adding(seconds: seconds) }

    /// Two kept lanes, both up.
    private func upPool(kept: Int = 2, max: Int = 4) -> LanePool {
        var pool = LanePool(kept: kept, maxSessions: max)
        _ = pool.start()
        for lane in 0..<kept { _ = pool.report(.up, from: lane, now: t0) }
        return pool
    }

    func testStart_launchesTheKeptLanes_connecting() {
        var pool = LanePool(kept: 2, maxSessions: 4)
        XCTAssertEqual(pool.start(), [.launch(lane: 0, isExtra: false), .launch(lane: 1, isExtra: false)])
        XCTAssertEqual(pool.summary, .init(phase: .connecting, sessionsUp: 0, sessionsConnecting: 2, extraSessionsUp: 0))
    }

    func testFirstLaneUp_resumesService_andFinishesTheAttempt() {
        var pool = LanePool(kept: 2, maxSessions: 4)
        _ = pool.start()
        let outcome = pool.report(.up, from: 0, now: t0)
        XCTAssertEqual(outcome.actions, [.resumeService])
        XCTAssertTrue(outcome.attemptFinished)
        XCTAssertEqual(pool.summary.phase, .up)
        XCTAssertEqual(pool.summary.sessionsConnecting, 1)
    }

    func testSecondLaneUp_asksTheFirstToShedHalfItsQueue() {
        var pool = LanePool(kept: 2, maxSessions: 4)
        _ = pool.start()
        _ = pool.report(.up, from: 0, now: t0)
        XCTAssertEqual(pool.report(.up, from: 1, now: t0).actions, [.resumeService, .shed(lanes: [0])])
    }

    func testAttempt_countsOnceEveryKeptLaneFailed() {
        var pool = LanePool(kept: 2, maxSessions: 2)
        _ = pool.start()
        let first = pool.report(.connectFailed(message: "refused", isPermanent: false), from: 0, now: t0)
        XCTAssertFalse(first.attemptFinished, "one lane of two answered")
        XCTAssertEqual(first.actions, [.holdClients])
        let second = pool.report(.connectFailed(message: "refused", isPermanent: false), from: 1, now: t0)
        XCTAssertTrue(second.attemptFinished)
        XCTAssertEqual(pool.summary.phase, .reconnecting)
    }

    func testPermanentFailureOfEveryKeptLane_isFailed() {
        var pool = LanePool(kept: 1, maxSessions: 1)
        _ = pool.start()
        _ = pool.report(.connectFailed(message: "host key", isPermanent: true), from: 0, now: t0)
        XCTAssertEqual(pool.summary.phase, .failed)
    }

    func testLaneDroppingWhileAnotherIsUp_keepsServing() {
        var pool = upPool()
        let outcome = pool.report(.dropped(reason: "EOF"), from: 0, now: t0)
        XCTAssertEqual(outcome.actions, [], "lane 1 still serves: no hold")
        XCTAssertEqual(pool.upLanes, [1])
        XCTAssertEqual(pool.summary, .init(phase: .up, sessionsUp: 1, sessionsConnecting: 0, extraSessionsUp: 0))
    }

    func testLastLaneDroppingWhileClientsQueue_holdsThem_andAssignsNothing() {
        var pool = upPool(kept: 1, max: 1)
        let outcome = pool.report(.dropped(reason: "EOF"), from: 0, now: t0)
        XCTAssertEqual(outcome.actions, [.holdClients])
        XCTAssertEqual(pool.summary.phase, .reconnecting)
        XCTAssertEqual(pool.assign(count: 3, loads: []), [], "no lane up: the runtime holds the clients")
        XCTAssertEqual(pool.report(.connecting, from: 0, now: t0).actions, [])
        XCTAssertEqual(pool.summary.phase, .reconnecting, "a reconnect after being up is not 'connecting'")
        XCTAssertEqual(pool.report(.up, from: 0, now: t0).actions, [.resumeService], "held clients are handed out on the next up")
    }

    func testAssign_picksTheLeastLoaded_thenRoundRobin() {
        var pool = upPool()
        XCTAssertEqual(pool.assign(count: 3, loads: [5, 2]), [1, 1, 1])
        XCTAssertEqual(pool.assign(count: 4, loads: [0, 0]), [1, 0, 1, 0], "equal loads alternate, continuing the rotation")
        XCTAssertEqual(pool.assign(count: 1, loads: [1]), [], "loads must match the up lanes")
    }

    func testGrowth_needsTheBacklog_andOneLaneUp() {
        var pool = upPool(kept: 1, max: 3)
        XCTAssertEqual(pool.growIfBackedUp(pending: 15, now: t0), [])
        let grow = pool.growIfBackedUp(pending: 16, now: t0)
        XCTAssertEqual(grow.last, .launch(lane: 1, isExtra: true))
        XCTAssertEqual(pool.growIfBackedUp(pending: 100, now: t0), [], "one extra lane at a time")
        _ = pool.report(.up, from: 1, now: t0)
        XCTAssertEqual(pool.growIfBackedUp(pending: 100, now: t0).last, .launch(lane: 2, isExtra: true))
        _ = pool.report(.up, from: 2, now: t0)
        XCTAssertEqual(pool.growIfBackedUp(pending: 100, now: t0), [], "max_sessions reached")
        XCTAssertEqual(pool.summary.extraSessionsUp, 2)
        XCTAssertEqual(pool.summary.sessionsUp, 1, "extra lanes are counted apart")
    }

    func testAdmit_belowTheBusyMark_admitsEveryClient_andGrowsNothing() {
        var pool = upPool(kept: 1, max: 4)
        let (admitted, actions) = pool.admit(count: 3, loads: [1], now: t0)
        XCTAssertEqual(admitted, 3)
        XCTAssertEqual(actions, [])
        XCTAssertFalse(pool.isGrowing)
    }

    func testAdmit_aPoolOfEightOnOneBusyConnection_admitsFour_opensAnExtra_andHoldsTheRestUntilItIsUp() {
        var pool = upPool(kept: 1, max: 4)
        let (admitted, actions) = pool.admit(count: 8, loads: [0], now: t0)
        XCTAssertEqual(admitted, 4, "up to busyPerLane on the lane that is up")
        XCTAssertEqual(actions.last, .scheduleGrowthHoldEnd(after: 0.5))
        XCTAssertTrue(actions.contains(.launch(lane: 1, isExtra: true)))
        XCTAssertEqual(actions.first, .log(.info, "0 clients on 1 SSH connection(s), 8 more arriving: opening extra SSH connection 2"),
                       "a burst onto an idle connection says what made it grow")
        XCTAssertTrue(pool.isGrowing)
        // While it connects (within the hold), more clients wait too.
        XCTAssertEqual(pool.admit(count: 2, loads: [4], now: at(0.2)).admitted, 0)
        // It comes up: the held clients go out, and to it (the least loaded).
        let up = pool.report(.up, from: 1, now: at(0.3))
        XCTAssertTrue(up.actions.contains(.releaseHeldForGrowth))
        XCTAssertEqual(pool.admit(count: 6, loads: [4, 0], now: at(0.3)).admitted, 4)
        XCTAssertEqual(pool.assign(count: 4, loads: [4, 0]), [1, 1, 1, 1])
    }

    func testAdmit_onALaneWhoseOpenHangs_countedFull_opensAnExtra_andSaysWhy() {
        var pool = upPool(kept: 1, max: 4)
        // The runtime counts a stalled lane as full (busyPerLane), whatever its real load.
        let (admitted, actions) = pool.admit(count: 1, loads: [pool.busyPerLane], stalled: 1, now: t0)
        XCTAssertEqual(admitted, 0, "held for the extra connection")
        XCTAssertTrue(actions.contains(.launch(lane: 1, isExtra: true)))
        XCTAssertEqual(actions.first, .log(.info, "a channel open hangs on 1 of 1 SSH connection(s), 1 more client(s) arriving: opening extra SSH connection 2"))
    }

    func testAdmit_afterTheHoldRunsOut_orWithMaxSessionsReached_admitsEveryClient() {
        var pool = upPool(kept: 1, max: 2)
        _ = pool.admit(count: 8, loads: [0], now: t0)
        XCTAssertEqual(pool.admit(count: 3, loads: [4], now: at(0.5)).admitted, 3, "the hold is over: no more waiting")
        _ = pool.report(.up, from: 1, now: at(0.6))
        let full = pool.admit(count: 10, loads: [5, 5], now: at(1))
        XCTAssertEqual(full.admitted, 10, "max_sessions reached: nothing to wait for")
        XCTAssertEqual(full.actions, [])
    }

    func testAdmit_aFailedExtraConnection_releasesTheHeldClients_andPausesGrowth() {
        var pool = upPool(kept: 1, max: 4)
        _ = pool.admit(count: 8, loads: [0], now: t0)
        let failed = pool.report(.connectFailed(message: "refused", isPermanent: false), from: 1, now: at(0.1))
        XCTAssertEqual(failed.actions.last, .releaseHeldForGrowth)
        let again = pool.admit(count: 8, loads: [4], now: at(0.2))
        XCTAssertEqual(again.admitted, 8, "growth is paused: every client goes to the lane up")
        XCTAssertEqual(again.actions, [])
    }

    func testAdmit_withMaxSessionsOne_neverHolds() {
        var pool = upPool(kept: 1, max: 1)
        XCTAssertEqual(pool.admit(count: 50, loads: [10], now: t0).admitted, 50)
        XCTAssertFalse(pool.isGrowing)
    }

    func testGrowthIsPaused_afterAFailedExtraConnection() {
        var pool = upPool(kept: 1, max: 3)
        _ = pool.growIfBackedUp(pending: 20, now: at(0))
        let failed = pool.report(.connectFailed(message: "refused", isPermanent: false), from: 1, now: at(1))
        XCTAssertTrue(failed.actions.contains(.retire(lane: 1)))
        XCTAssertFalse(failed.actions.contains(.holdClients), "the kept lane is still up")
        XCTAssertFalse(failed.attemptFinished, "an extra lane's failure is not the tunnel's attempt")
        XCTAssertEqual(pool.growIfBackedUp(pending: 20, now: at(30.9)), [], "paused for 30 s")
        XCTAssertEqual(pool.growIfBackedUp(pending: 20, now: at(31)).last, .launch(lane: 2, isExtra: true))
    }

    func testExtraLaneRetiringWhileTheKeptLanesReconnect_holdsClients() {
        var pool = upPool(kept: 1, max: 2)
        _ = pool.growIfBackedUp(pending: 20, now: t0)
        _ = pool.report(.up, from: 1, now: t0)
        XCTAssertEqual(pool.report(.dropped(reason: "EOF"), from: 0, now: t0).actions, [], "the extra lane still serves")
        XCTAssertEqual(pool.summary.phase, .reconnecting, "the tunnel's state follows its kept lanes")
        let idle = pool.checkIdle(now: at(0.5)) { _ in 0 }
        XCTAssertFalse(idle.contains(.retire(lane: 1)), "idle, but not for 15 s yet")
        let retired = pool.checkIdle(now: at(15)) { _ in 0 }
        XCTAssertTrue(retired.contains(.retire(lane: 1)))
        XCTAssertTrue(retired.contains(.holdClients), "it was the only lane up")
        XCTAssertNil(pool.lane(1))
        XCTAssertEqual(pool.report(.up, from: 1, now: t0).actions, [], "reports from a retired lane are ignored")
    }

    func testExtraLaneWithClients_isNotIdle() {
        var pool = upPool(kept: 1, max: 2)
        _ = pool.growIfBackedUp(pending: 20, now: t0)
        _ = pool.report(.up, from: 1, now: t0)
        XCTAssertFalse(pool.checkIdle(now: at(60)) { _ in 3 }.contains(.retire(lane: 1)))
        XCTAssertFalse(pool.checkIdle(now: at(70)) { _ in 0 }.contains(.retire(lane: 1)), "idle counts from when the clients left")
        XCTAssertTrue(pool.checkIdle(now: at(85)) { _ in 0 }.contains(.retire(lane: 1)))
    }

    func testStopWhileConnecting_stopsEveryLane_andIgnoresLaterReports() {
        var pool = LanePool(kept: 2, maxSessions: 4)
        _ = pool.start()
        XCTAssertEqual(pool.stop(), [0, 1])
        XCTAssertEqual(pool.report(.up, from: 0, now: t0), .init())
        XCTAssertEqual(pool.growIfBackedUp(pending: 100, now: t0), [])
        XCTAssertEqual(pool.summary, .init(phase: .stopped, sessionsUp: 0, sessionsConnecting: 0, extraSessionsUp: 0))
    }
}
