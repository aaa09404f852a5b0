import Glibc
import Synchronization
import TunnelPOSIX

/// Who a descriptor watch, timer or task works for. Many tunnels share one
/// loop, so a tunnel's service hook (`addServiceHook`) runs only after a pass
/// in which something of its own ran, not after every pass of the loop.
/// Watches and timers created while an owner's code runs belong to it.
public struct LoopOwner: Hashable, Sendable {
    fileprivate let id: UInt64
    private static let counter = Atomic<UInt64>(1)
    public init() { id = LoopOwner.counter.wrappingAdd(1, ordering: .relaxed).oldValue }
    fileprivate init(raw: UInt64) { id = raw }
    fileprivate static let none = LoopOwner(raw: 0)
}

/// A single-threaded epoll loop. Everything registered with it is touched only
/// on its thread; `execute` is the one entry point for other threads.
public final class EventLoop: @unchecked Sendable {
    public struct Registration: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    public struct TimerID: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct Watch {
        let fd: Int32
        var events: IOEvents
        let owner: LoopOwner
        let handler: (IOEvents) -> Void
    }

    private let selector: Selector
    private let wakeup: EventFD
    private var watches: [UInt64: Watch] = [:]
    private var nextID: UInt64 = 1
    private let inbox = Locked<[(owner: LoopOwner, task: () -> Void)]>([])
    private var timers = TimerQueue()
    private var hooks: [UInt64: () -> Void] = [:]
    private var serviceHooks: [LoopOwner: () -> Void] = [:]
    /// Owners whose code ran in this pass: their service hooks run at its end.
    private var dirty: Set<LoopOwner> = []
    /// The owners whose hooks this pass runs; hooks may mark owners in `dirty` for the next.
    private var dueForHooks: Set<LoopOwner> = []
    /// The owner whose code runs now (`.none` for the loop's own or unowned code).
    private var currentOwner = LoopOwner.none
    private var callbacks: [UInt64: (repeats: Bool, owner: LoopOwner, body: (any Sendable) -> Void)] = [:]
    private var stopping = false
    private let wakeupID: UInt64 = 0
    /// The thread inside `run` (0 when none). Atomic: `perform` and the
    /// confinement checks read it from any thread while `run` sets it.
    private let loopThread = Atomic<pthread_t>(0)

    public init() throws(SystemError) {
        selector = try Selector()
        wakeup = try EventFD()
        try selector.add(fd: wakeup.fd, events: .readable, id: wakeupID)
    }

    deinit {
        selector.close()
        wakeup.close()
    }

    public var inLoopThread: Bool {
        let thread = loopThread.load(ordering: .acquiring)
        return thread != 0 && pthread_equal(thread, pthread_self()) != 0
    }

    // MARK: descriptors

    /// Watches `fd`; `handler` runs on the loop thread with the ready events.
    public func register(fd: Int32, events: IOEvents, handler: @escaping (IOEvents) -> Void) throws(SystemError) -> Registration {
        let id = nextID
        nextID += 1
        try selector.add(fd: fd, events: events, id: id)
        watches[id] = Watch(fd: fd, events: events, owner: currentOwner, handler: handler)
        return Registration(id: id)
    }

    /// Changes the events of interest; a no-op when unchanged.
    public func setInterest(_ registration: Registration, _ events: IOEvents) {
        guard var watch = watches[registration.id], watch.events != events else { return }
        watch.events = events
        watches[registration.id] = watch
        do {
            try selector.modify(fd: watch.fd, events: events, id: registration.id)
        } catch {
            preconditionFailure("epoll_ctl(MOD) on a registered descriptor failed: \(error)")
        }
    }

    public func interest(_ registration: Registration) -> IOEvents? { watches[registration.id]?.events }

    /// Stops watching. Call before closing the descriptor; events already
    /// collected for it in this batch are dropped.
    public func deregister(_ registration: Registration) {
        guard let watch = watches.removeValue(forKey: registration.id) else { return }
        selector.remove(fd: watch.fd)
    }

    // MARK: timers and hooks

    @discardableResult
    public func schedule(after seconds: Double, _ body: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        timers.insert(deadline: Instant.now().adding(seconds: seconds), id: id, owner: currentOwner.id, body: body)
        return TimerID(id: id)
    }

    public func cancel(_ timer: TimerID?) {
        guard let timer else { return }
        timers.cancel(timer.id)
    }

    /// Runs `body` after each batch of events and timers, before the loop
    /// sleeps again: where work that spans many descriptors is done once.
    public func addIterationHook(_ body: @escaping () -> Void) -> UInt64 {
        let id = nextID
        nextID += 1
        hooks[id] = body
        return id
    }

    public func removeIterationHook(_ id: UInt64) { hooks.removeValue(forKey: id) }

    /// Runs `body` at the end of each pass in which code of `owner` ran: a
    /// handler or timer it created, or a task sent with `perform(owner:)`.
    /// One thread serves many owners, and an idle one costs nothing per pass.
    public func addServiceHook(_ owner: LoopOwner, _ body: @escaping () -> Void) {
        precondition(owner != .none)
        serviceHooks[owner] = body
    }

    public func removeServiceHook(_ owner: LoopOwner) {
        serviceHooks.removeValue(forKey: owner)
        dirty.remove(owner)
    }

    /// Runs `body` now as `owner`'s code: what it registers or schedules is
    /// `owner`'s, and `owner`'s service hook runs at the end of the pass.
    public func run(as owner: LoopOwner, _ body: () -> Void) {
        within(owner, body)
        if owner != .none { dirty.insert(owner) }
    }

    /// `body` with `owner` current, without marking it for its hook.
    private func within(_ owner: LoopOwner, _ body: () -> Void) {
        let saved = currentOwner
        currentOwner = owner
        body()
        currentOwner = saved
    }

    // MARK: cross-thread

    /// Runs `task` on the loop thread. Safe from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        execute(owner: .none, task)
    }

    /// Runs `task` on the loop thread as `owner`'s code (see `run(as:)`). Safe from any thread.
    public func execute(owner: LoopOwner, _ task: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.append((owner, task)) }
        wakeup.signal()
    }

    /// A one-shot callback that stays on the loop thread: another thread
    /// fires it with a Sendable value, and `body` runs on the loop. Lets
    /// loop-confined objects hand work to a helper thread without the helper
    /// ever holding them.
    /// With `repeats`, it may fire any number of times until cancelled.
    /// `body` runs as the owner whose code created the callback.
    public func callback<Value: Sendable>(repeats: Bool = false, _ body: @escaping (Value) -> Void) -> LoopCallback<Value> {
        precondition(inLoopThread || loopThread.load(ordering: .acquiring) == 0)
        let id = nextID
        nextID += 1
        callbacks[id] = (repeats, currentOwner, { body($0 as! Value) })
        return LoopCallback(loop: self, id: id)
    }

    fileprivate func fire(_ id: UInt64, _ value: any Sendable) {
        guard let (repeats, owner, body) = callbacks[id] else { return }
        if !repeats { callbacks.removeValue(forKey: id) }
        run(as: owner) { body(value) }
    }

    fileprivate func cancelCallback(_ id: UInt64) { callbacks.removeValue(forKey: id) }

    /// Runs `task` now when called on the loop thread, else like `execute`.
    public func perform(_ task: @escaping @Sendable () -> Void) {
        if inLoopThread { task() } else { execute(task) }
    }

    /// Runs `task` as `owner`'s code: now on the loop thread, else like `execute(owner:)`.
    public func perform(owner: LoopOwner, _ task: @escaping @Sendable () -> Void) {
        if inLoopThread { run(as: owner, task) } else { execute(owner: owner, task) }
    }

    // MARK: running

    /// Runs until `stop()`. Sleeps in epoll_wait until a descriptor, a timer or
    /// `execute` wakes it: no polling.
    public func run() {
        loopThread.store(pthread_self(), ordering: .releasing)
        defer { loopThread.store(0, ordering: .releasing) }
        stopping = false
        while !stopping {
            // A hook's work may have made more for another owner: no sleeping then.
            let timeout = dirty.isEmpty ? timers.millisecondsUntilNext(now: Instant.now()) : 0
            do {
                try selector.wait(timeoutMilliseconds: timeout) { id, events in
                    if id == wakeupID {
                        wakeup.drain()
                        return
                    }
                    // Stale events (deregistered earlier in this batch) have no watch.
                    guard let watch = watches[id] else { return }
                    run(as: watch.owner) { watch.handler(events) }
                }
            } catch {
                preconditionFailure("\(error)")
            }
            runInbox()
            // Bodies run outside the queue's mutation: they may schedule timers.
            for due in timers.popDue(now: Instant.now()) { run(as: LoopOwner(raw: due.owner), due.body) }
            runInbox()
            for hook in hooks.values { hook() }
            runServiceHooks()
        }
        runInbox()
    }

    private func runInbox() {
        let tasks = inbox.withLock { tasks -> [(owner: LoopOwner, task: () -> Void)] in
            let out = tasks
            tasks.removeAll()
            return out
        }
        for (owner, task) in tasks { run(as: owner, task) }
    }

    private func runServiceHooks() {
        guard !dirty.isEmpty else { return }
        // Swapped, not copied: a copy of a set still in use would allocate on every pass.
        swap(&dirty, &dueForHooks)
        for owner in dueForHooks {
            guard let hook = serviceHooks[owner] else { continue }
            within(owner, hook)
        }
        dueForHooks.removeAll(keepingCapacity: true)
    }

    /// Makes `run` return after the current iteration. From the loop thread.
    public func stop() { stopping = true }
}

/// See `EventLoop.callback`.
public struct LoopCallback<Value: Sendable>: Sendable {
    fileprivate let loop: EventLoop
    fileprivate let id: UInt64

    /// From any thread; runs the body on the loop, once.
    public func callAsFunction(_ value: Value) {
        loop.execute { [loop, id] in loop.fire(id, value) }
    }

    /// Drops the body (from any thread); later fires do nothing.
    public func cancel() {
        loop.execute { [loop, id] in loop.cancelCallback(id) }
    }
}

/// Moves loop-confined values (connections, events) to another loop's thread.
/// Safe because the sender lets go of them: exactly one thread owns them at a time.
struct Handoff<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
