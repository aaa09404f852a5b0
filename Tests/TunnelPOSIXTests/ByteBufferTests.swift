import TunnelTestSupport
import XCTest
import TunnelPOSIX

final class ByteBufferTests: XCTestCase {
    private func contents(_ buffer: ByteBuffer) -> [UInt8] {
        guard let p = buffer.readable else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: buffer.count))
    }

    private func append(_ buffer: ByteBuffer, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer.append($0.baseAddress!, count: $0.count) }
    }

    private func pattern(_ count: Int, from start: Int = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 + start) &* 31 &+ 7) }
    }

    func testByteBuffer_new_isEmptyWithNoStorage() {
        let b = ByteBuffer()
        XCTAssertEqual(b.count, 0)
        XCTAssertTrue(b.isEmpty)
        XCTAssertNil(b.readable)
    }

    func testByteBuffer_appendZeroBytes_allocatesNothing() {
        let b = ByteBuffer()
        var byte: UInt8 = 1
        b.append(&byte, count: 0)
        XCTAssertNil(b.readable)
        XCTAssertEqual(b.count, 0)
    }

    func testByteBuffer_appendThenConsumePart_leavesTheTailReadable() {
        let b = ByteBuffer()
        append(b, Array("hello, world".utf8))
        XCTAssertEqual(b.count, 12)
        XCTAssertFalse(b.isEmpty)
        b.consume(7)
        XCTAssertEqual(contents(b), Array("world".utf8))
        XCTAssertEqual(b.count, 5)
    }

    func testByteBuffer_consumeEverything_releasesTheStorage() {
        XCTAssertFalse(ByteBuffer().keepsStorage, "the default frees storage when empty")
        let b = ByteBuffer()
        append(b, pattern(1000))
        b.consume(400)
        XCTAssertNotNil(b.readable)
        b.consume(600)
        XCTAssertEqual(b.count, 0)
        XCTAssertTrue(b.isEmpty)
        XCTAssertNil(b.readable)
    }

    func testByteBuffer_keepsStorage_reusesTheSameStorageAfterDraining_untilReleased() {
        let b = ByteBuffer()
        b.keepsStorage = true
        append(b, pattern(300_000))
        let storage = b.readable
        b.consume(300_000)
        XCTAssertTrue(b.isEmpty)
        XCTAssertTrue(b.hasStorage)
        append(b, pattern(200_000, from: 5))
        XCTAssertEqual(b.readable, storage, "refilled in place, not regrown")
        XCTAssertEqual(contents(b), pattern(200_000, from: 5))
        b.consume(200_000)
        b.release()
        XCTAssertFalse(b.hasStorage)
        XCTAssertNil(b.readable)
    }

    func testByteBuffer_consumeZeroWhenEmpty_staysEmpty() {
        let b = ByteBuffer()
        b.consume(0)
        XCTAssertNil(b.readable)
        XCTAssertEqual(b.count, 0)
    }

    func testByteBuffer_release_dropsHeldBytes() {
        let b = ByteBuffer()
        append(b, pattern(100))
        b.release()
        XCTAssertEqual(b.count, 0)
        XCTAssertNil(b.readable)
        append(b, [1, 2, 3])
        XCTAssertEqual(contents(b), [1, 2, 3])
    }

    func testByteBuffer_appendBeyondInitialCapacity_growsAndKeepsEveryByte() {
        let b = ByteBuffer()
        let first = pattern(16 * 1024 - 3)
        append(b, first)
        let second = pattern(10_000, from: 5)
        append(b, second)
        XCTAssertEqual(b.count, first.count + second.count)
        XCTAssertEqual(contents(b), first + second)
    }

    func testByteBuffer_singleHugeAppend_isHeldWhole() {
        let b = ByteBuffer()
        let big = pattern(1_000_003)
        append(b, big)
        XCTAssertEqual(contents(b), big)
    }

    func testByteBuffer_appendAfterConsumingTheFront_slidesAndKeepsOrder() {
        let b = ByteBuffer()
        let first = pattern(12_000)
        append(b, first)
        b.consume(11_000)
        // 1,000 live bytes + 10,000 new fit in 16 KiB only after sliding to the front.
        let second = pattern(10_000, from: 99)
        append(b, second)
        XCTAssertEqual(contents(b), Array(first[11_000...]) + second)
    }

    func testByteBuffer_growWhileHeadIsOffset_keepsOnlyUnconsumedBytes() {
        let b = ByteBuffer()
        let first = pattern(16 * 1024)
        append(b, first)
        b.consume(100)
        let second = pattern(20_000, from: 3)
        append(b, second)
        XCTAssertEqual(contents(b), Array(first[100...]) + second)
    }

    func testByteBuffer_randomAppendsAndConsumes_matchAByteArrayModel() {
        var generator = SplitMix64(seed: 2024)
        let b = ByteBuffer()
        var model: [UInt8] = []
        var counter = 0
        for step in 0..<3000 {
            if generator.next() % 2 == 0 {
                // Mostly small writes, sometimes large ones to force growth.
                let size = generator.next() % 10 == 0 ? Int(generator.next() % 40_000) : Int(generator.next() % 2_000)
                let chunk = pattern(size, from: counter)
                counter += size
                append(b, chunk)
                model += chunk
            } else if !model.isEmpty {
                let n = generator.next() % 5 == 0 ? model.count : Int(generator.next() % UInt64(model.count + 1))
                b.consume(n)
                model.removeFirst(n)
            }
            XCTAssertEqual(b.count, model.count, "step \(step)")
            XCTAssertEqual(b.isEmpty, model.isEmpty, "step \(step)")
            if model.isEmpty {
                XCTAssertNil(b.readable, "storage must be released when empty, step \(step)")
            } else if contents(b) != model {
                XCTFail("contents diverge from the model at step \(step)")
                return
            }
        }
    }
}
