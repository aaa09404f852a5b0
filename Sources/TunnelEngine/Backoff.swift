/// Reconnect delays: the first retry within 1 s, doubling up to 30 s, with
/// jitter so many tunnels to one bastion do not retry in step; reset once a
/// link stayed up for `resetAfter` seconds, so a link that flaps (a server
/// that drops every session at once) is retried ever more slowly while an
/// occasional drop is healed within a second.
public struct Backoff: Sendable, Equatable {
    public let initial: Double
    public let cap: Double
    public let resetAfter: Double
    public private(set) var attempt = 0

    public init(initial: Double = 1, cap: Double = 30, resetAfter: Double = 10) {
        self.initial = initial
        self.cap = cap
        self.resetAfter = resetAfter
    }

    /// The nominal delay of the next retry, before jitter.
    public var nominalDelay: Double { min(cap, initial * Double(1 << min(attempt, 20))) }

    /// The next delay, in [nominal/2, nominal]; advances the attempt count.
    public mutating func nextDelay(random: Double = Double.random(in: 0...1)) -> Double {
        let nominal = nominalDelay
        attempt += 1
        return nominal * (0.5 + 0.5 * random)
    }

    /// The link went down after being up for `upSeconds`.
    public mutating func linkDropped(afterUpFor upSeconds: Double) {
        if upSeconds >= resetAfter { attempt = 0 }
    }

    public mutating func reset() { attempt = 0 }
}

/// Failures that retrying cannot fix wait this long between attempts.
public let permanentFailureRetryInterval: Double = 300
