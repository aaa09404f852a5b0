import Glibc

/// Monotonic time in nanoseconds: deadlines and durations never follow the wall clock.
public struct Instant: Comparable, Hashable, Sendable {
    public let nanoseconds: UInt64
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public func adding(seconds: Double) -> Instant {
        Instant(nanoseconds: nanoseconds &+ UInt64(max(0, seconds) * 1e9))
    }

    public func adding(milliseconds: Int) -> Instant {
        Instant(nanoseconds: nanoseconds &+ UInt64(max(0, milliseconds)) &* 1_000_000)
    }

    /// Seconds from `earlier` to self, 0 if negative.
    public func seconds(since earlier: Instant) -> Double {
        nanoseconds > earlier.nanoseconds ? Double(nanoseconds - earlier.nanoseconds) / 1e9 : 0
    }
}

/// Wall-clock seconds since the epoch, for display and persisted timestamps.
public func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CLOCK_BOOTTIME and CLOCK_MONOTONIC in nanoseconds, read together: their
/// difference grows only while the machine is suspended.
public func suspendClocks() -> (boottime: UInt64, monotonic: UInt64) {
    func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
    return (read(CLOCK_BOOTTIME), read(CLOCK_MONOTONIC))
}
