import TunnelPOSIX

/// Deadlines in a binary heap; cancellation is lazy.
struct TimerQueue {
    private var heap: [(deadline: Instant, id: UInt64)] = []
    private var bodies: [UInt64: (owner: UInt64, body: () -> Void)] = [:]

    /// `owner`: whose code the body is (EventLoop's `LoopOwner`), carried back by `popDue`.
    mutating func insert(deadline: Instant, id: UInt64, owner: UInt64 = 0, body: @escaping () -> Void) {
        bodies[id] = (owner, body)
        heap.append((deadline, id))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent].deadline <= heap[i].deadline { break }
            heap.swapAt(parent, i)
            i = parent
        }
    }

    mutating func cancel(_ id: UInt64) { bodies.removeValue(forKey: id) }

    private mutating func popMin() -> (deadline: Instant, id: UInt64) {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].deadline < heap[m].deadline { m = l }
                if r < heap.count && heap[r].deadline < heap[m].deadline { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    mutating func millisecondsUntilNext(now: Instant) -> Int32 {
        while let top = heap.first, bodies[top.id] == nil { _ = popMin() }
        guard let top = heap.first else { return -1 }
        if top.deadline <= now { return 0 }
        // Round up so a timer never fires a hair early and spins.
        let ms = (top.deadline.nanoseconds - now.nanoseconds + 999_999) / 1_000_000
        return Int32(min(ms, UInt64(Int32.max)))
    }

    mutating func popDue(now: Instant) -> [(owner: UInt64, body: () -> Void)] {
        var due: [(owner: UInt64, body: () -> Void)] = []
        while let top = heap.first, top.deadline <= now {
            _ = popMin()
            if let body = bodies.removeValue(forKey: top.id) { due.append(body) }
        }
        return due
    }
}
