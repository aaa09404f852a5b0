import TunnelPOSIX

/// A fixed set of event loops, one thread each, that tunnels and their SSH
/// connections share: one per core by default, instead of a thread per
/// tunnel. Whatever is placed on a loop stays there for its life, so each
/// libssh2 session is still touched by one thread only. Loops start on first
/// use and run for the life of the process.
public final class EventLoopGroup: @unchecked Sendable {
    private struct Slot {
        var loop: EventLoop?
        /// Tunnels and SSH connections placed here and not yet released.
        var load = 0
    }

    public let size: Int
    private let name: String
    /// `Locked`, not `Mutex`: TSan sees its lock (docs/DEVELOPMENT.md).
    private let slots: Locked<[Slot]>

    /// `name`: the threads' name prefix (the kernel keeps 15 bytes).
    public init(size: Int = ProcessControl.onlineCores, name: String = "tunnel-loop") {
        self.size = max(1, size)
        self.name = name
        slots = Locked(Array(repeating: Slot(), count: max(1, size)))
    }

    /// The least-loaded loop, started if it was not yet; counts one more on it
    /// until `release`. Safe from any thread.
    public func acquire() throws(SystemError) -> EventLoop {
        let result: Result<EventLoop, SystemError> = slots.withLock { slots in
            var best = 0
            for k in slots.indices where slots[k].load < slots[best].load { best = k }
            if let loop = slots[best].loop {
                slots[best].load += 1
                return .success(loop)
            }
            do throws(SystemError) {
                let loop = try EventLoop()
                try startThread(name: "\(name)-\(best + 1)") { loop.run() }
                slots[best].loop = loop
                slots[best].load = 1
                return .success(loop)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// `loop` carries one fewer tunnel or connection. Safe from any thread.
    public func release(_ loop: EventLoop) {
        slots.withLock { slots in
            guard let k = slots.firstIndex(where: { $0.loop === loop }) else { return }
            slots[k].load = max(0, slots[k].load - 1)
        }
    }

    /// Each started loop's load, in order: for tests and `tunnel status`.
    public var loads: [Int] { slots.withLock { $0.compactMap { $0.loop == nil ? nil : $0.load } } }
}
