import Glibc
import XCTest
import TunnelEngine
import TunnelPOSIX

final class EventLoopGroupTests: XCTestCase {
    func testGroup_startsLoopsOnDemand_placesOnTheLeastLoaded_andReleaseFreesAPlace() throws {
        let group = EventLoopGroup(size: 2, name: "test-group")
        XCTAssertEqual(group.loads, [], "no loop before the first tunnel")
        let a = try group.acquire()
        XCTAssertEqual(group.loads, [1])
        let b = try group.acquire()
        XCTAssertFalse(a === b, "the second goes to the idle second loop")
        let c = try group.acquire()
        XCTAssertEqual(group.loads, [2, 1])
        XCTAssertTrue(c === a)
        group.release(a)
        group.release(a)
        XCTAssertEqual(group.loads, [0, 1])
        XCTAssertTrue(try group.acquire() === a, "the least loaded again")
        // Each loop runs on its own thread, and runs what it is given.
        let ran = expectation(description: "ran on both loops")
        ran.expectedFulfillmentCount = 2
        let threads = Locked<Set<UInt>>([])
        for loop in [a, b] {
            loop.execute {
                XCTAssertTrue(loop.inLoopThread)
                threads.withLock { _ = $0.insert(UInt(pthread_self())) }
                ran.fulfill()
            }
        }
        wait(for: [ran], timeout: 5)
        XCTAssertEqual(threads.withLock { $0.count }, 2)
    }

    func testGroup_sizeIsAtLeastOne() {
        XCTAssertEqual(EventLoopGroup(size: 0).size, 1)
        XCTAssertGreaterThanOrEqual(EventLoopGroup().size, 1)
    }
}
