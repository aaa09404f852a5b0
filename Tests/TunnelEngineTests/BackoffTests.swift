import XCTest
import TunnelEngine

final class BackoffTests: XCTestCase {
    func testBackoff_defaults_areOneSecondInitialThirtySecondCapTenSecondReset() {
        let b = Backoff()
        XCTAssertEqual(b.initial, 1)
        XCTAssertEqual(b.cap, 30)
        XCTAssertEqual(b.resetAfter, 10)
        XCTAssertEqual(b.attempt, 0)
    }

    func testBackoff_firstDelayWithRandomJitter_isWithinHalfToOneSecond() {
        for _ in 0..<1000 {
            var b = Backoff()
            let d = b.nextDelay()
            XCTAssertGreaterThanOrEqual(d, 0.5)
            XCTAssertLessThanOrEqual(d, 1.0)
        }
    }

    func testBackoff_nominalDelays_doubleUpToThirtySecondCap() {
        var b = Backoff()
        var nominals: [Double] = []
        for _ in 0..<7 {
            nominals.append(b.nominalDelay)
            _ = b.nextDelay(random: 0.3)
        }
        XCTAssertEqual(nominals, [1, 2, 4, 8, 16, 30, 30])
        XCTAssertEqual(b.attempt, 7)
    }

    func testBackoff_nextDelayWithRandomOne_returnsTheNominalDelay() {
        var b = Backoff()
        let delays = (0..<7).map { _ in b.nextDelay(random: 1) }
        XCTAssertEqual(delays, [1, 2, 4, 8, 16, 30, 30])
    }

    func testBackoff_nextDelayWithRandomZero_returnsHalfTheNominalDelay() {
        var b = Backoff()
        let delays = (0..<7).map { _ in b.nextDelay(random: 0) }
        XCTAssertEqual(delays, [0.5, 1, 2, 4, 8, 15, 15])
    }

    func testBackoff_nextDelayWithRandomHalf_returnsThreeQuartersOfNominal() {
        var b = Backoff()
        _ = b.nextDelay(random: 1)
        _ = b.nextDelay(random: 1)
        XCTAssertEqual(b.nextDelay(random: 0.5), 3, accuracy: 1e-12)
    }

    func testBackoff_manyAttempts_neverExceedCapAndNeverOverflow() {
        var b = Backoff()
        for _ in 0..<200 {
            let d = b.nextDelay(random: 1)
            XCTAssertLessThanOrEqual(d, 30)
            XCTAssertGreaterThan(d, 0)
        }
        XCTAssertEqual(b.nominalDelay, 30)
        XCTAssertEqual(b.attempt, 200)
    }

    func testBackoff_customInitialAndCap_areHonoured() {
        var b = Backoff(initial: 0.25, cap: 1.5, resetAfter: 10)
        let delays = (0..<5).map { _ in b.nextDelay(random: 1) }
        XCTAssertEqual(delays, [0.25, 0.5, 1, 1.5, 1.5])
    }

    func testBackoff_linkDroppedBeforeResetAfter_keepsTheAttemptCount() {
        var b = Backoff()
        for _ in 0..<4 { _ = b.nextDelay(random: 1) }
        b.linkDropped(afterUpFor: 9.9)
        XCTAssertEqual(b.attempt, 4)
        XCTAssertEqual(b.nominalDelay, 16)
        b.linkDropped(afterUpFor: 0)
        XCTAssertEqual(b.attempt, 4)
    }

    func testBackoff_linkDroppedAfterExactlyResetAfter_resetsToTheFirstDelay() {
        var b = Backoff()
        for _ in 0..<4 { _ = b.nextDelay(random: 1) }
        b.linkDropped(afterUpFor: b.resetAfter)
        XCTAssertEqual(b.attempt, 0)
        XCTAssertEqual(b.nextDelay(random: 1), 1)
    }

    func testBackoff_linkDroppedAfterLongUptime_resets() {
        var b = Backoff(initial: 1, cap: 30, resetAfter: 5)
        for _ in 0..<3 { _ = b.nextDelay(random: 1) }
        b.linkDropped(afterUpFor: 3600)
        XCTAssertEqual(b.attempt, 0)
        XCTAssertEqual(b.nominalDelay, 1)
    }

    func testBackoff_reset_returnsToTheFirstDelay() {
        var b = Backoff()
        for _ in 0..<6 { _ = b.nextDelay(random: 1) }
        XCTAssertEqual(b.nominalDelay, 30)
        b.reset()
        XCTAssertEqual(b.attempt, 0)
        XCTAssertEqual(b.nominalDelay, 1)
        XCTAssertEqual(b, Backoff())
    }

    func testBackoff_permanentFailureRetryInterval_isFiveMinutes() {
        XCTAssertEqual(permanentFailureRetryInterval, 300)
    }
}
