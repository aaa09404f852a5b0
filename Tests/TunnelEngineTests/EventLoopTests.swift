import Glibc
import XCTest
import TunnelEngine
import TunnelPOSIX

/// A value shared between the loop thread and the test thread.
private final class Shared<Value>: @unchecked Sendable {
    private let box: Locked<Value>
    init(_ value: Value) { box = Locked(value) }
    var value: Value {
        get { box.withLock { $0 } }
        set { box.withLock { $0 = newValue } }
    }
    func mutate(_ body: (inout Value) -> Void) { box.withLock { body(&$0) } }
}

final class EventLoopTests: XCTestCase {
    private var loop: EventLoop!
    private var finished: XCTestExpectation!
    private var fds: [Int32] = []

    override func setUpWithError() throws {
        loop = try EventLoop()
        finished = expectation(description: "run() returned")
        let loop = self.loop!, finished = self.finished!
        try startThread(name: "test-loop") {
            loop.run()
            finished.fulfill()
        }
    }

    override func tearDown() {
        if let loop {
            loop.execute { loop.stop() }
            wait(for: [finished], timeout: 5)
        }
        for fd in fds { close(fd) }
        fds = []
        loop = nil
    }

    /// A connected AF_UNIX stream pair; closed in tearDown after the loop stopped.
    private func socketPair() -> (Int32, Int32) {
        var pair: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair)
        XCTAssertEqual(rc, 0, "socketpair failed: errno \(errno)")
        fds += pair
        return (pair[0], pair[1])
    }

    private func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        XCTAssertEqual(write(fd, bytes, bytes.count), bytes.count)
    }

    /// Runs `body` on the loop thread and waits for it.
    private func onLoop<T>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Shared<T?>(nil)
        let done = expectation(description: "ran on loop")
        loop.execute {
            result.value = body()
            done.fulfill()
        }
        wait(for: [done], timeout: 5)
        return result.value!
    }

    func testEventLoop_executeFromAnotherThread_runsTheTaskOnTheLoopThread() {
        let loop = self.loop!
        let ran = expectation(description: "task ran")
        let onLoopThread = Shared(false)
        XCTAssertFalse(loop.inLoopThread, "the test thread is not the loop thread")
        loop.execute {
            onLoopThread.value = loop.inLoopThread
            ran.fulfill()
        }
        wait(for: [ran], timeout: 5)
        XCTAssertTrue(onLoopThread.value)
    }

    func testEventLoop_manyExecutesFromSeveralThreads_allRunInSubmissionOrderPerThread() throws {
        let loop = self.loop!
        let seen = Shared<[Int: [Int]]>([:])
        let all = expectation(description: "all tasks ran")
        all.expectedFulfillmentCount = 4 * 250
        for t in 0..<4 {
            try startThread(name: "submitter\(t)") {
                for i in 0..<250 {
                    loop.execute {
                        seen.mutate { $0[t, default: []].append(i) }
                        all.fulfill()
                    }
                }
            }
        }
        wait(for: [all], timeout: 10)
        for t in 0..<4 { XCTAssertEqual(seen.value[t], Array(0..<250)) }
    }

    /// Ordering, not punctuality (timer latency is the benchmark's): a 50 ms
    /// timer fires, on the loop thread, after a 10 ms one scheduled after it.
    func testEventLoop_scheduleAfter50ms_firesOnTheLoopThread_afterAShorterTimerScheduledLater() {
        let loop = self.loop!
        let fired = expectation(description: "both timers fired")
        fired.expectedFulfillmentCount = 2
        let order = Shared<[String]>([])
        let onLoopThread = Shared(false)
        loop.execute {
            loop.schedule(after: 0.05) {
                onLoopThread.value = loop.inLoopThread
                order.mutate { $0.append("50 ms") }
                fired.fulfill()
            }
            loop.schedule(after: 0.01) {
                order.mutate { $0.append("10 ms") }
                fired.fulfill()
            }
        }
        wait(for: [fired], timeout: 5)
        XCTAssertEqual(order.value, ["10 ms", "50 ms"])
        XCTAssertTrue(onLoopThread.value)
    }

    func testEventLoop_timersScheduledOutOfOrder_fireInDeadlineOrder() {
        let loop = self.loop!
        let order = Shared<[Int]>([])
        let fired = expectation(description: "timers fired")
        fired.expectedFulfillmentCount = 3
        loop.execute {
            for (delay, tag) in [(0.12, 3), (0.02, 1), (0.07, 2)] {
                loop.schedule(after: delay) {
                    order.mutate { $0.append(tag) }
                    fired.fulfill()
                }
            }
        }
        wait(for: [fired], timeout: 5)
        XCTAssertEqual(order.value, [1, 2, 3])
    }

    func testEventLoop_cancelledTimer_neverFires() {
        let loop = self.loop!
        let cancelledFired = expectation(description: "cancelled timer fired")
        cancelledFired.isInverted = true
        let later = expectation(description: "later timer fired")
        loop.execute {
            let id = loop.schedule(after: 0.05) { cancelledFired.fulfill() }
            loop.schedule(after: 0.2) { later.fulfill() }
            loop.cancel(id)
        }
        wait(for: [later], timeout: 5)
        wait(for: [cancelledFired], timeout: 0.2)
    }

    func testEventLoop_cancelNil_isHarmless() {
        let loop = self.loop!
        let fired = expectation(description: "timer fired")
        loop.execute {
            loop.cancel(nil)
            loop.schedule(after: 0) { fired.fulfill() }
        }
        wait(for: [fired], timeout: 5)
    }

    func testEventLoop_registeredSocket_handlerRunsWhenReadable() {
        let loop = self.loop!
        let (a, b) = socketPair()
        let received = Shared<String>("")
        let readable = expectation(description: "handler saw readable")
        let sawEvents = Shared<IOEvents>([])
        _ = onLoop {
            try! loop.register(fd: a, events: .readable) { events in
                sawEvents.value = events
                var buf = [UInt8](repeating: 0, count: 64)
                let n = read(a, &buf, buf.count)
                if n > 0 {
                    received.mutate { $0 += String(decoding: buf[0..<n], as: UTF8.self) }
                    readable.fulfill()
                }
            }
        }
        send(b, "ping")
        wait(for: [readable], timeout: 5)
        XCTAssertEqual(received.value, "ping")
        XCTAssertTrue(sawEvents.value.contains(.readable))
    }

    func testEventLoop_registeredSocket_handlerRunsOnTheLoopThread() {
        let loop = self.loop!
        let (a, b) = socketPair()
        let onLoopThread = Shared(false)
        let called = expectation(description: "handler called")
        _ = onLoop {
            try! loop.register(fd: a, events: .readable) { _ in
                var byte: UInt8 = 0
                _ = read(a, &byte, 1)
                onLoopThread.value = loop.inLoopThread
                called.fulfill()
            }
        }
        send(b, "x")
        wait(for: [called], timeout: 5)
        XCTAssertTrue(onLoopThread.value)
    }

    func testEventLoop_registerForWritable_reportsAnEmptySocketAsWritable() {
        let loop = self.loop!
        let (a, _) = socketPair()
        let writable = expectation(description: "writable")
        writable.assertForOverFulfill = false
        let registration = Shared<EventLoop.Registration?>(nil)
        onLoop {
            // Stored on the loop thread before the loop can report any event.
            registration.value = try! loop.register(fd: a, events: .writable) { events in
                if events.contains(.writable) {
                    loop.deregister(registration.value!)
                    writable.fulfill()
                }
            }
        }
        wait(for: [writable], timeout: 5)
    }

    func testEventLoop_setInterest_changesTheEventsReported() {
        let loop = self.loop!
        let (a, b) = socketPair()
        let writable = expectation(description: "writable after adding it to the interest")
        let readable = expectation(description: "readable after data arrived")
        let registration = Shared<EventLoop.Registration?>(nil)
        onLoop {
            registration.value = try! loop.register(fd: a, events: .readable) { events in
                if events.contains(.writable) {
                    // Back to readable only, or a writable socket would spin the loop.
                    loop.setInterest(registration.value!, .readable)
                    writable.fulfill()
                }
                if events.contains(.readable) {
                    var buf = [UInt8](repeating: 0, count: 16)
                    _ = read(a, &buf, buf.count)
                    readable.fulfill()
                }
            }
        }
        let reg = registration.value!
        XCTAssertEqual(onLoop { loop.interest(reg) }, .readable)
        onLoop { loop.setInterest(reg, [.readable, .writable]) }
        wait(for: [writable], timeout: 5)
        XCTAssertEqual(onLoop { loop.interest(reg) }, .readable)
        send(b, "z")
        wait(for: [readable], timeout: 5)
        onLoop { loop.deregister(reg) }
        XCTAssertNil(onLoop { loop.interest(reg) })
    }

    func testEventLoop_deregisteredSocket_handlerIsNoLongerCalled() {
        let loop = self.loop!
        let (a, b) = socketPair()
        let called = expectation(description: "handler called after deregister")
        called.isInverted = true
        _ = onLoop {
            let reg = try! loop.register(fd: a, events: .readable) { _ in called.fulfill() }
            loop.deregister(reg)
            return true
        }
        send(b, "data that nobody should hear about")
        // Let the loop go round a few times with the data pending.
        let settled = expectation(description: "loop settled")
        loop.execute { loop.schedule(after: 0.2) { settled.fulfill() } }
        wait(for: [settled], timeout: 5)
        wait(for: [called], timeout: 0.1)
    }

    func testEventLoop_deregisterTwice_isHarmless() {
        let loop = self.loop!
        let (a, b) = socketPair()
        let second = expectation(description: "second registration called")
        _ = onLoop {
            let reg = try! loop.register(fd: a, events: .readable) { _ in }
            loop.deregister(reg)
            loop.deregister(reg)
            // The fd can be registered again after being deregistered.
            _ = try! loop.register(fd: a, events: .readable) { _ in
                var buf = [UInt8](repeating: 0, count: 16)
                _ = read(a, &buf, buf.count)
                second.fulfill()
            }
            return true
        }
        send(b, "again")
        wait(for: [second], timeout: 5)
    }

    func testEventLoop_registerInvalidDescriptor_throws() {
        let loop = self.loop!
        let threw = onLoop { () -> Bool in
            do {
                _ = try loop.register(fd: 987_654, events: .readable) { _ in }
                return false
            } catch {
                return true
            }
        }
        XCTAssertTrue(threw)
    }

    func testEventLoop_iterationHook_runsAfterEventsAndStopsAfterRemoval() {
        let loop = self.loop!
        let count = Shared(0)
        let ranOnce = expectation(description: "hook ran")
        ranOnce.assertForOverFulfill = false
        let hookID: UInt64 = onLoop {
            loop.addIterationHook {
                count.mutate { $0 += 1 }
                ranOnce.fulfill()
            }
        }
        loop.execute {}
        wait(for: [ranOnce], timeout: 5)
        onLoop { loop.removeIterationHook(hookID) }
        let after = count.value
        // Several more iterations: the count must not move.
        for _ in 0..<3 { _ = onLoop { true } }
        XCTAssertGreaterThanOrEqual(after, 1)
        XCTAssertEqual(count.value, after)
    }

    // MARK: service hooks (many tunnels on one loop)

    /// Two owners with a socket pair each; returns their hooks' run counts.
    private func twoOwnersWithSockets() -> (counts: Shared<[Int]>, writers: [Int32], owners: [LoopOwner]) {
        let loop = self.loop!
        let counts = Shared([0, 0])
        let owners = [LoopOwner(), LoopOwner()]
        var writers: [Int32] = []
        for k in 0..<2 {
            let (reader, writer) = socketPair()
            writers.append(writer)
            let owner = owners[k]
            onLoop {
                loop.addServiceHook(owner) { counts.mutate { $0[k] += 1 } }
                // Registered as the owner's code: its events are the owner's.
                loop.run(as: owner) {
                    _ = try? loop.register(fd: reader, events: .readable) { _ in
                        var byte: UInt8 = 0
                        _ = read(reader, &byte, 1)
                    }
                }
            }
        }
        return (counts, writers, owners)
    }

    func testEventLoop_serviceHook_runsAfterItsOwnersEventsOnly() {
        let (counts, writers, _) = twoOwnersWithSockets()
        settle()
        let start = counts.value
        send(writers[0], "a")
        XCTAssertTrue(eventually { counts.value[0] > start[0] })
        // A few more passes for other reasons: neither hook runs again.
        settle()
        let after = counts.value
        XCTAssertEqual(after[1], start[1], "the other owner had no work")
        send(writers[1], "b")
        XCTAssertTrue(eventually { counts.value[1] > after[1] })
        settle()
        XCTAssertEqual(counts.value[0], after[0], "owner 0 had no work since")
    }

    func testEventLoop_timerAndCallbackMadeByAnOwner_runItsHook_andPerformFromAnotherThreadDoesToo() {
        let loop = self.loop!
        let (counts, _, owners) = twoOwnersWithSockets()
        _ = onLoop { true }
        // The timer's and the callback's bodies note owner 1's hook count when
        // they run (on the loop, before that pass's hooks): the hook must run after each.
        let atTimer = Shared<Int?>(nil), atCallback = Shared<Int?>(nil)
        let callback: LoopCallback<Int> = onLoop {
            var made: LoopCallback<Int>!
            loop.run(as: owners[1]) {
                loop.schedule(after: 0.01) { atTimer.value = counts.value[1] }
                made = loop.callback { (_: Int) in atCallback.value = counts.value[1] }
            }
            return made
        }
        XCTAssertTrue(eventually { atTimer.value.map { counts.value[1] > $0 } ?? false }, "the timer fired as owner 1's code")
        callback(7)
        XCTAssertTrue(eventually { atCallback.value.map { counts.value[1] > $0 } ?? false }, "the callback ran as owner 1's code")
        settle()
        let before = counts.value
        loop.perform(owner: owners[0]) {}
        XCTAssertTrue(eventually { counts.value[0] > before[0] })
        XCTAssertEqual(counts.value[1], before[1])
        // Removed: the owner's later work runs no hook.
        onLoop { loop.removeServiceHook(owners[0]) }
        let removed = counts.value[0]
        loop.perform(owner: owners[0]) {}
        settle()
        XCTAssertEqual(counts.value[0], removed)
    }

    /// Returns once every pass begun before has run its service hooks: a
    /// task may run in either inbox phase of a pass, so the third of three
    /// in a row runs in a later pass than the first.
    private func settle() {
        for _ in 0..<3 { _ = onLoop { true } }
    }

    private func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func testEventLoop_stop_makesRunReturn() {
        let loop = self.loop!
        loop.execute { loop.stop() }
        wait(for: [finished], timeout: 5)
        XCTAssertFalse(loop.inLoopThread)
        self.loop = nil // tearDown must not wait again
    }

    func testEventLoop_stopFromATimer_makesRunReturnAndLaterTasksWaitForTheNextRun() {
        let loop = self.loop!
        let ran = Shared(false)
        loop.execute {
            loop.schedule(after: 0.01) {
                loop.stop()
            }
        }
        wait(for: [finished], timeout: 5)
        // After run() returned, a task queued now is not run by anyone.
        loop.execute { ran.value = true }
        usleep(50_000)
        XCTAssertFalse(ran.value)
        self.loop = nil
    }

    func testEventLoop_runAgainAfterStop_processesWorkAgain() throws {
        let loop = self.loop!
        loop.execute { loop.stop() }
        wait(for: [finished], timeout: 5)

        let pendingRan = Shared(false)
        loop.execute { pendingRan.value = true }
        finished = expectation(description: "second run() returned")
        let finishedAgain = finished!
        try startThread(name: "test-loop-2") {
            loop.run()
            finishedAgain.fulfill()
        }
        let ran = expectation(description: "task on restarted loop")
        loop.execute { ran.fulfill() }
        wait(for: [ran], timeout: 5)
        XCTAssertTrue(pendingRan.value, "a task queued while stopped runs once the loop runs again")
    }
}
