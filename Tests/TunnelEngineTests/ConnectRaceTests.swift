import TunnelPOSIX
import XCTest
@testable import TunnelEngine

final class ConnectRaceTests: XCTestCase {
    func testStart_triesTheFirstAddress_andSchedulesTheNext() {
        var race = ConnectRace(count: 3, delay: 0.25)
        XCTAssertEqual(race.start(), [.scheduleNext(after: 0.25), .attempt(0)])
        XCTAssertEqual(race.inFlight, [0])
    }

    func testDelayElapsed_addsAttemptsBesideTheOnesUnderWay_untilNoneAreLeft() {
        var race = ConnectRace(count: 3, delay: 0.25)
        _ = race.start()
        XCTAssertEqual(race.delayElapsed(), [.scheduleNext(after: 0.25), .attempt(1)])
        XCTAssertEqual(race.delayElapsed(), [.attempt(2)], "the last address: nothing more to schedule")
        XCTAssertEqual(race.delayElapsed(), [])
        XCTAssertEqual(race.inFlight, [0, 1, 2])
    }

    func testFailure_startsTheNextAddressAtOnce() {
        var race = ConnectRace(count: 3)
        _ = race.start()
        XCTAssertEqual(race.failed(0), [.cancelNext, .scheduleNext(after: ConnectRace.attemptDelay), .attempt(1)])
        XCTAssertEqual(race.failed(1), [.cancelNext, .attempt(2)])
        XCTAssertEqual(race.failed(2), [.cancelNext, .exhausted])
        XCTAssertTrue(race.isFinished)
        XCTAssertEqual(race.delayElapsed(), [])
    }

    func testFailure_whileOthersAreUnderWayAndNoneLeft_waitsForThem() {
        var race = ConnectRace(count: 2)
        _ = race.start()
        _ = race.delayElapsed()
        XCTAssertEqual(race.failed(1), [], "attempt 0 may still connect")
        XCTAssertEqual(race.failed(0), [.cancelNext, .exhausted])
    }

    func testFirstToConnect_wins_andTheOthersAreClosed() {
        var race = ConnectRace(count: 4)
        _ = race.start()
        _ = race.delayElapsed()
        _ = race.delayElapsed()
        XCTAssertEqual(race.connected(1), [.cancelNext, .close(0), .close(2), .connected(1)])
        XCTAssertTrue(race.isFinished)
        XCTAssertEqual(race.connected(0), [], "a late winner is ignored")
        XCTAssertEqual(race.failed(2), [])
        XCTAssertEqual(race.delayElapsed(), [])
    }

    func testImmediateOutcome_ofAnAttemptNotUnderWay_isIgnored() {
        var race = ConnectRace(count: 2)
        _ = race.start()
        XCTAssertEqual(race.connected(1), [])
        XCTAssertEqual(race.failed(1), [])
        XCTAssertFalse(race.isFinished)
    }

    func testOneAddress_noStagger() {
        var race = ConnectRace(count: 1)
        XCTAssertEqual(race.start(), [.attempt(0)])
        XCTAssertEqual(race.failed(0), [.cancelNext, .exhausted])
    }

    func testNoAddress_isExhaustedAtOnce() {
        var race = ConnectRace(count: 0)
        XCTAssertEqual(race.start(), [.exhausted])
        XCTAssertEqual(race.start(), [], "reported once")
    }

    func testAttempt_isAlwaysLast_soItsImmediateOutcomeCanBeReportedInside() {
        var race = ConnectRace(count: 5)
        for actions in [race.start(), race.failed(0), race.delayElapsed()] {
            XCTAssertEqual(actions.last.map { if case .attempt = $0 { true } else { false } }, true, "\(actions)")
        }
    }

    func testInterleavingFamilies_alternatesFromTheFirstFamily() throws {
        func a(_ ip: String) throws -> SocketAddress { try XCTUnwrap(SocketAddress(ip: ip, port: 22)) }
        let v6a = try a("2001:db8::1"), v6b = try a("2001:db8::2"), v4a = try a("192.0.2.1"), v4b = try a("192.0.2.2"), v4c = try a("192.0.2.3")
        XCTAssertEqual(ConnectRace.interleavingFamilies([v6a, v6b, v4a, v4b]), [v6a, v4a, v6b, v4b])
        XCTAssertEqual(ConnectRace.interleavingFamilies([v4a, v4b, v4c, v6a]), [v4a, v6a, v4b, v4c])
        XCTAssertEqual(ConnectRace.interleavingFamilies([v4a, v4b]), [v4a, v4b])
        XCTAssertEqual(ConnectRace.interleavingFamilies([]), [])
    }
}
