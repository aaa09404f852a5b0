import Synchronization

/// Clients sent to lanes that have not asked for a channel yet, counted on
/// the runtime's thread (sent) and the lanes' (taken). Beyond the accept
/// gate's cap, new clients wait in the kernel's accept queue; a lane that
/// takes the count below half the cap while accepting is paused says so.
final class PendingClients: Sendable {
    private let count = Atomic<Int>(0)
    private let acceptsPaused = Atomic<Bool>(false)
    let resumeBelow: Int

    init(resumeBelow: Int) { self.resumeBelow = resumeBelow }

    var value: Int { count.load(ordering: .relaxed) }
    func add(_ n: Int) { count.add(n, ordering: .relaxed) }
    func pauseAccepts() { acceptsPaused.store(true, ordering: .sequentiallyConsistent) }

    /// True when this removal should resume accepting.
    func remove(_ n: Int) -> Bool {
        let left = count.subtract(n, ordering: .relaxed).newValue
        return left < resumeBelow
            && acceptsPaused.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
    }
}
