import XCTest
import TunnelEngine

final class DirectionTests: XCTestCase {
    func testDirection_newDirection_isOpen() {
        let d = Direction()
        XCTAssertEqual(d.state, .open)
        XCTAssertTrue(d.isOpen)
        XCTAssertFalse(d.isClosed)
    }

    func testDirection_sourceEndsWithNothingPending_closesAndPropagatesEOFAtOnce() {
        var d = Direction()
        XCTAssertEqual(d.sourceEnded(pendingBytes: 0), .propagateEOF)
        XCTAssertEqual(d.state, .closed)
        XCTAssertTrue(d.isClosed)
        XCTAssertFalse(d.isOpen)
    }

    func testDirection_sourceEndsWithBytesPending_drainsWithoutPropagatingEOF() {
        var d = Direction()
        XCTAssertEqual(d.sourceEnded(pendingBytes: 17), .none)
        XCTAssertEqual(d.state, .draining)
        XCTAssertFalse(d.isOpen)
        XCTAssertFalse(d.isClosed)
    }

    func testDirection_sourceEndsWithBytesPending_drainsBeforePropagatingEOF() {
        var d = Direction()
        XCTAssertEqual(d.sourceEnded(pendingBytes: 1), .none)
        XCTAssertEqual(d.flushed(), .propagateEOF)
        XCTAssertEqual(d.state, .closed)
    }

    func testDirection_flushedWhileDrainingTwice_propagatesEOFOnlyOnce() {
        var d = Direction()
        _ = d.sourceEnded(pendingBytes: 4)
        XCTAssertEqual(d.flushed(), .propagateEOF)
        XCTAssertEqual(d.flushed(), .none)
        XCTAssertEqual(d.state, .closed)
    }

    func testDirection_flushedWhileOpen_doesNothing() {
        var d = Direction()
        XCTAssertEqual(d.flushed(), .none)
        XCTAssertEqual(d.state, .open)
    }

    func testDirection_flushedWhenClosed_doesNothing() {
        var d = Direction()
        _ = d.sourceEnded(pendingBytes: 0)
        XCTAssertEqual(d.flushed(), .none)
        XCTAssertEqual(d.state, .closed)
    }

    func testDirection_sourceEndedTwiceWithNothingPending_propagatesEOFOnlyOnce() {
        var d = Direction()
        XCTAssertEqual(d.sourceEnded(pendingBytes: 0), .propagateEOF)
        XCTAssertEqual(d.sourceEnded(pendingBytes: 0), .none)
        XCTAssertEqual(d.state, .closed)
    }

    func testDirection_sourceEndedTwiceWhileDraining_staysDrainingWithoutEOF() {
        var d = Direction()
        XCTAssertEqual(d.sourceEnded(pendingBytes: 8), .none)
        XCTAssertEqual(d.sourceEnded(pendingBytes: 0), .none)
        XCTAssertEqual(d.state, .draining)
        XCTAssertEqual(d.flushed(), .propagateEOF)
    }

    func testDirection_abortWhileOpen_closesWithoutEOF() {
        var d = Direction()
        d.abort()
        XCTAssertEqual(d.state, .closed)
        XCTAssertEqual(d.sourceEnded(pendingBytes: 0), .none)
        XCTAssertEqual(d.flushed(), .none)
    }

    func testDirection_abortWhileDraining_closesAndLaterFlushDoesNotPropagateEOF() {
        var d = Direction()
        _ = d.sourceEnded(pendingBytes: 100)
        d.abort()
        XCTAssertEqual(d.state, .closed)
        XCTAssertEqual(d.flushed(), .none)
    }

    func testDirection_abortWhenClosed_staysClosed() {
        var d = Direction()
        _ = d.sourceEnded(pendingBytes: 0)
        d.abort()
        XCTAssertEqual(d.state, .closed)
        XCTAssertEqual(d.sourceEnded(pendingBytes: 3), .none)
    }

    func testDirection_twoDirectionsInDifferentStates_areNotEqual() {
        var a = Direction()
        let b = Direction()
        XCTAssertEqual(a, b)
        _ = a.sourceEnded(pendingBytes: 1)
        XCTAssertNotEqual(a, b)
    }
}
