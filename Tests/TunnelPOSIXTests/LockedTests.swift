import Glibc
import XCTest
import TunnelPOSIX

final class LockedTests: XCTestCase {
    /// Four threads each add 1 a hundred thousand times through a read and a
    /// separate write inside the lock: any update lost to a race shows in the sum.
    func testConcurrentUpdates_noneLost() throws {
        let counter = Locked(0)
        let threads = 4, rounds = 100_000
        let done = DispatchGroup()
        for _ in 0..<threads {
            done.enter()
            try startThread(name: "locked-test") {
                for _ in 0..<rounds {
                    counter.withLock { value in
                        let seen = value
                        yieldNowAndThen(seen)
                        value = seen + 1
                    }
                }
                done.leave()
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(counter.withLock { $0 }, threads * rounds)
    }

    func testWithLock_passesErrorsAndResultsThrough() {
        struct Refused: Error {}
        let box = Locked([1, 2])
        XCTAssertEqual(box.withLock { $0.append(3); return $0.count }, 3)
        XCTAssertThrowsError(try box.withLock { (_: inout [Int]) throws(Refused) -> Int in throw Refused() }) { XCTAssertTrue($0 is Refused) }
        XCTAssertEqual(box.withLock { $0 }, [1, 2, 3], "a throwing body leaves the value as it found it")
    }
}

/// Yields now and then inside the critical section, so that without the lock
/// another thread would run between the read and the write.
private func yieldNowAndThen(_ n: Int) {
    if n % 64 == 0 { sched_yield() }
}
