/// A FIFO of bytes that owns heap storage only while it holds bytes, so an
/// idle connection costs no buffer memory.
public final class ByteBuffer {
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0
    private var head = 0
    private var tail = 0
    /// Keep the storage when the buffer empties (the owner calls `release()`
    /// when it goes quiet): for a queue that fills and drains on every pass
    /// of a bulk transfer, where regrowing it costs a copy per doubling and a
    /// page fault per 4 KiB of fresh memory.
    public var keepsStorage = false

    public init() {}

    deinit { storage?.deallocate() }

    public var count: Int { tail - head }
    public var isEmpty: Bool { tail == head }
    public var hasStorage: Bool { storage != nil }

    /// The bytes waiting to be consumed.
    public var readable: UnsafeRawPointer? { storage.map { UnsafeRawPointer($0 + head) } }

    public func append(_ bytes: UnsafeRawPointer, count n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (storage! + tail).copyMemory(from: bytes, byteCount: n)
        tail += n
    }

    /// Drops `n` bytes from the front. Frees the storage once empty.
    public func consume(_ n: Int) {
        precondition(n <= count)
        head += n
        if head == tail {
            if keepsStorage {
                head = 0
                tail = 0
            } else {
                release()
            }
        }
    }

    public func release() {
        storage?.deallocate()
        storage = nil
        capacity = 0
        head = 0
        tail = 0
    }

    private func reserve(_ n: Int) {
        if storage == nil {
            capacity = max(n, 16 * 1024)
            storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            head = 0
            tail = 0
            return
        }
        if tail + n <= capacity { return }
        let live = count
        if live + n <= capacity {
            // Slide to the front instead of growing (copyMemory is memmove).
            storage!.copyMemory(from: storage! + head, byteCount: live)
        } else {
            var newCapacity = capacity * 2
            while newCapacity < live + n { newCapacity *= 2 }
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: storage! + head, byteCount: live)
            storage!.deallocate()
            storage = fresh
            capacity = newCapacity
        }
        head = 0
        tail = live
    }
}
