import TunnelPOSIX
import XCTest
@testable import TunnelEngine

final class AcceptGateTests: XCTestCase {
    private let t0 = Instant(nanoseconds: 1_000_000_000_000)

    private func at(_ seconds: Double) -> Instant { t0.adding(seconds: seconds) }

    func testNewGate_holds_untilALinkIsUp() {
        var gate = AcceptGate(holdTimeout: 10)
        XCTAssertFalse(gate.isAccepting)
        XCTAssertEqual(gate.mayAccept(pending: 0).0, false)
        XCTAssertEqual(gate.linkUp(), [.watchListeners(true)])
        XCTAssertEqual(gate.linkUp(), [], "already accepting")
        XCTAssertEqual(gate.mayAccept(pending: 0).0, true)
    }

    func testLinkDown_stopsAccepting_andArmsOneHoldTick() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkUp()
        XCTAssertEqual(gate.linkDown(), [.watchListeners(false), .scheduleHoldTick(after: AcceptGate.holdTickSeconds)])
        XCTAssertEqual(gate.linkDown(), [], "no second timer while one is armed")
    }

    func testHoldTimeout_closesClientsInTheKernelQueue_oldestFirst() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkDown()
        // Two clients seen at 0 s, one more at 5 s.
        XCTAssertEqual(gate.holdTick(now: at(0), kernelQueue: [0: 2]).acceptAndClose, [:])
        XCTAssertEqual(gate.holdTick(now: at(5), kernelQueue: [0: 3]).acceptAndClose, [:])
        let first = gate.holdTick(now: at(10), kernelQueue: [0: 3])
        XCTAssertEqual(first.acceptAndClose, [0: 2], "the two that waited 10 s")
        XCTAssertEqual(first.actions, [.scheduleHoldTick(after: AcceptGate.holdTickSeconds)])
        XCTAssertEqual(gate.holdTick(now: at(14.9), kernelQueue: [0: 1]).acceptAndClose, [:])
        XCTAssertEqual(gate.holdTick(now: at(15), kernelQueue: [0: 1]).acceptAndClose, [0: 1])
    }

    func testLazyFirstAttempt_expiresNoClient_untilItEnds_thenHoldTimeoutCountsFromArrival() {
        var gate = AcceptGate(holdTimeout: 0)
        _ = gate.linkUp()
        _ = gate.linkDown()
        gate.firstAttemptStarted()
        XCTAssertEqual(gate.holdTick(now: at(0), kernelQueue: [0: 2]).acceptAndClose, [:], "hold_timeout = 0, yet the first clients wait for the attempt")
        XCTAssertEqual(gate.holdTick(now: at(3), kernelQueue: [0: 2]).acceptAndClose, [:])
        XCTAssertFalse(gate.isExpired(since: at(0), now: at(3)))
        gate.firstAttemptEnded()
        XCTAssertTrue(gate.isExpired(since: at(0), now: at(3)))
        XCTAssertEqual(gate.holdTick(now: at(3.25), kernelQueue: [0: 2]).acceptAndClose, [0: 2], "the attempt failed: closed as any held client")
    }

    func testHoldTimeout_clientsThatGaveUp_leaveFromTheFront() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkDown()
        _ = gate.holdTick(now: at(0), kernelQueue: [0: 2])
        _ = gate.holdTick(now: at(8), kernelQueue: [0: 3])
        // One of the two oldest gave up: two remain, stamped 0 s and 8 s.
        XCTAssertEqual(gate.holdTick(now: at(9), kernelQueue: [0: 2]).acceptAndClose, [:])
        XCTAssertEqual(gate.holdTick(now: at(10), kernelQueue: [0: 2]).acceptAndClose, [0: 1])
    }

    func testHoldTick_afterTheLinkCameBack_doesNothing() {
        var gate = AcceptGate(holdTimeout: 1)
        _ = gate.linkDown()
        _ = gate.holdTick(now: at(0), kernelQueue: [0: 5])
        _ = gate.linkUp()
        XCTAssertEqual(gate.holdTick(now: at(30), kernelQueue: [0: 5]), .init(), "accepting again: nothing expires, no new tick")
    }

    func testHeldClient_expiresAtHoldTimeout() {
        let gate = AcceptGate(holdTimeout: 10)
        XCTAssertFalse(gate.isExpired(since: at(0), now: at(9.99)))
        XCTAssertTrue(gate.isExpired(since: at(0), now: at(10)))
    }

    func testQueueCap_pausesAccepting_untilHalfDrained() {
        var gate = AcceptGate(holdTimeout: 10, maxQueued: 100)
        _ = gate.linkUp()
        XCTAssertEqual(gate.mayAccept(pending: 99).0, true)
        let full = gate.mayAccept(pending: 100)
        XCTAssertEqual(full.0, false)
        XCTAssertEqual(full.1, [.watchListeners(false)])
        XCTAssertEqual(gate.state, .full)
        XCTAssertEqual(gate.queueShrank(pending: 50), [], "not below half yet")
        XCTAssertEqual(gate.queueShrank(pending: 49), [.watchListeners(true)])
        XCTAssertTrue(gate.isAccepting)
    }

    func testLinkDownWhileFull_holds_andADrainDoesNotReopen() {
        var gate = AcceptGate(holdTimeout: 10, maxQueued: 10)
        _ = gate.linkUp()
        _ = gate.mayAccept(pending: 10)
        XCTAssertEqual(gate.linkDown(), [.watchListeners(false), .scheduleHoldTick(after: AcceptGate.holdTickSeconds)])
        XCTAssertEqual(gate.queueShrank(pending: 0), [])
        XCTAssertFalse(gate.isAccepting)
    }

    func testOutOfDescriptors_pausesBriefly() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkUp()
        XCTAssertEqual(gate.outOfDescriptors(), [.watchListeners(false), .scheduleAcceptRetry(after: AcceptGate.descriptorPauseSeconds)])
        XCTAssertEqual(gate.mayAccept(pending: 0).0, false)
        XCTAssertEqual(gate.descriptorPauseOver(), [.watchListeners(true)])
        XCTAssertEqual(gate.descriptorPauseOver(), [], "already accepting")
    }

    func testDescriptorPauseOver_afterTheLinkDropped_staysHolding() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkUp()
        _ = gate.outOfDescriptors()
        _ = gate.linkDown()
        XCTAssertEqual(gate.descriptorPauseOver(), [])
        XCTAssertEqual(gate.state, .holding)
    }

    func testStopWhileConnecting_isFinal() {
        var gate = AcceptGate(holdTimeout: 10)
        XCTAssertEqual(gate.stop(), [], "never watched, nothing to unwatch")
        XCTAssertEqual(gate.linkUp(), [])
        XCTAssertEqual(gate.linkDown(), [])
        XCTAssertEqual(gate.state, .stopped)
    }

    func testStopWhileAccepting_unwatches() {
        var gate = AcceptGate(holdTimeout: 10)
        _ = gate.linkUp()
        XCTAssertEqual(gate.stop(), [.watchListeners(false)])
        XCTAssertEqual(gate.stop(), [])
    }
}
