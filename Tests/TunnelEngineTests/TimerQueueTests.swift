import TunnelTestSupport
import XCTest
@testable import TunnelEngine
import TunnelPOSIX

/// Collects the ids of the timer bodies that ran, in order.
private final class FiredLog {
    var ids: [UInt64] = []
}

final class TimerQueueTests: XCTestCase {
    private let base = Instant(nanoseconds: 1_000_000_000_000)

    private func at(ms: Int) -> Instant { base.adding(milliseconds: ms) }

    private func insert(_ q: inout TimerQueue, ms: Int, id: UInt64, log: FiredLog) {
        q.insert(deadline: at(ms: ms), id: id) { log.ids.append(id) }
    }

    func testTimerQueue_manyTimersInsertedOutOfOrder_popInDeadlineOrder() {
        var q = TimerQueue()
        let log = FiredLog()
        var generator = SplitMix64(seed: 42)
        var deadlines = Array(1...200).map { $0 * 7 }
        deadlines.shuffle(using: &generator)
        for ms in deadlines { insert(&q, ms: ms, id: UInt64(ms), log: log) }

        for due in q.popDue(now: at(ms: 10_000)) { due.body() }

        XCTAssertEqual(log.ids, Array(1...200).map { UInt64($0 * 7) })
        XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: 0)), -1)
    }

    func testTimerQueue_popDue_returnsOnlyDueTimersInDeadlineOrder() {
        var q = TimerQueue()
        let log = FiredLog()
        for (ms, id) in [(50, 5), (10, 1), (40, 4), (30, 3), (60, 6), (20, 2)] {
            insert(&q, ms: ms, id: UInt64(id), log: log)
        }

        for due in q.popDue(now: at(ms: 30)) { due.body() }
        XCTAssertEqual(log.ids, [1, 2, 3], "deadline == now counts as due; later ones stay")

        XCTAssertTrue(q.popDue(now: at(ms: 39)).isEmpty)
        for due in q.popDue(now: at(ms: 1000)) { due.body() }
        XCTAssertEqual(log.ids, [1, 2, 3, 4, 5, 6])
        XCTAssertTrue(q.popDue(now: at(ms: 2000)).isEmpty)
    }

    func testTimerQueue_popDueBeforeAnyDeadline_returnsNothingAndKeepsTimers() {
        var q = TimerQueue()
        let log = FiredLog()
        insert(&q, ms: 100, id: 1, log: log)
        XCTAssertTrue(q.popDue(now: at(ms: 99)).isEmpty)
        XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: 99)), 1)
        XCTAssertEqual(q.popDue(now: at(ms: 100)).count, 1)
    }

    func testTimerQueue_cancel_removesTheTimerAndKeepsTheOthers() {
        var q = TimerQueue()
        let log = FiredLog()
        for id in 1...5 { insert(&q, ms: id * 10, id: UInt64(id), log: log) }
        q.cancel(1)
        q.cancel(4)

        for due in q.popDue(now: at(ms: 1000)) { due.body() }

        XCTAssertEqual(log.ids, [2, 3, 5])
    }

    func testTimerQueue_cancelUnknownID_isHarmless() {
        var q = TimerQueue()
        let log = FiredLog()
        insert(&q, ms: 10, id: 1, log: log)
        q.cancel(99)
        for due in q.popDue(now: at(ms: 10)) { due.body() }
        XCTAssertEqual(log.ids, [1])
    }

    func testTimerQueue_millisecondsUntilNext_isMinusOneWhenEmpty() {
        var q = TimerQueue()
        XCTAssertEqual(q.millisecondsUntilNext(now: base), -1)
    }

    func testTimerQueue_millisecondsUntilNext_isMinusOneWhenEveryTimerIsCancelled() {
        var q = TimerQueue()
        let log = FiredLog()
        insert(&q, ms: 10, id: 1, log: log)
        insert(&q, ms: 20, id: 2, log: log)
        q.cancel(1)
        q.cancel(2)
        XCTAssertEqual(q.millisecondsUntilNext(now: base), -1)
        XCTAssertTrue(q.popDue(now: at(ms: 100)).isEmpty)
    }

    func testTimerQueue_millisecondsUntilNext_skipsACancelledEarliestTimer() {
        var q = TimerQueue()
        let log = FiredLog()
        insert(&q, ms: 10, id: 1, log: log)
        insert(&q, ms: 250, id: 2, log: log)
        q.cancel(1)
        XCTAssertEqual(q.millisecondsUntilNext(now: base), 250)
    }

    func testTimerQueue_millisecondsUntilNext_isZeroWhenDueOrOverdue() {
        var q = TimerQueue()
        let log = FiredLog()
        insert(&q, ms: 10, id: 1, log: log)
        XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: 10)), 0)
        XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: 5000)), 0)
    }

    func testTimerQueue_millisecondsUntilNext_roundsPartialMillisecondsUp() {
        var q = TimerQueue()
        q.insert(deadline: Instant(nanoseconds: base.nanoseconds + 1), id: 1) {}
        XCTAssertEqual(q.millisecondsUntilNext(now: base), 1, "1 ns away must not read as 0 ms and spin")

        var exact = TimerQueue()
        exact.insert(deadline: Instant(nanoseconds: base.nanoseconds + 3_000_000), id: 1) {}
        XCTAssertEqual(exact.millisecondsUntilNext(now: base), 3)

        var over = TimerQueue()
        over.insert(deadline: Instant(nanoseconds: base.nanoseconds + 3_000_001), id: 1) {}
        XCTAssertEqual(over.millisecondsUntilNext(now: base), 4)
    }

    func testTimerQueue_millisecondsUntilNext_reportsTheEarliestOfManyTimers() {
        var q = TimerQueue()
        let log = FiredLog()
        for ms in [900, 300, 700, 120, 450] { insert(&q, ms: ms, id: UInt64(ms), log: log) }
        XCTAssertEqual(q.millisecondsUntilNext(now: base), 120)
        XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: 100)), 20)
    }

    func testTimerQueue_veryDistantDeadline_clampsToInt32Max() {
        var q = TimerQueue()
        q.insert(deadline: Instant(nanoseconds: base.nanoseconds + UInt64(Int32.max) * 1_000_000 * 4), id: 1) {}
        XCTAssertEqual(q.millisecondsUntilNext(now: base), Int32.max)
    }

    func testTimerQueue_randomInsertsCancelsAndPops_matchASortedModel() {
        var generator = SplitMix64(seed: 7)
        var q = TimerQueue()
        let log = FiredLog()
        var model: [UInt64: Int] = [:] // id -> deadline ms
        var nextID: UInt64 = 1
        var now = 0
        for _ in 0..<2000 {
            switch generator.next() % 4 {
            case 0, 1:
                let ms = now + Int(generator.next() % 500)
                insert(&q, ms: ms, id: nextID, log: log)
                model[nextID] = ms
                nextID += 1
            case 2:
                if let victim = model.keys.randomElement(using: &generator) {
                    q.cancel(victim)
                    model.removeValue(forKey: victim)
                }
            default:
                now += Int(generator.next() % 100)
                log.ids.removeAll()
                for due in q.popDue(now: at(ms: now)) { due.body() }
                let due = model.filter { $0.value <= now }
                XCTAssertEqual(Set(log.ids), Set(due.keys))
                let firedDeadlines = log.ids.map { due[$0] ?? -1 }
                XCTAssertEqual(firedDeadlines, firedDeadlines.sorted(), "fired out of deadline order")
                for id in due.keys { model.removeValue(forKey: id) }
            }
            let expected: Int32 = model.values.min().map { Int32(max(0, $0 - now)) } ?? -1
            XCTAssertEqual(q.millisecondsUntilNext(now: at(ms: now)), expected)
        }
    }
}
