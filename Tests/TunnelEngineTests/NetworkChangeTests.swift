import XCTest
import TunnelEngine
import TunnelPOSIX

final class NetworkChangeTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }
    private let local = IPAddress("198.18.7.1")!, server = IPAddress("198.18.7.2")!

    private func up(_ change: NetworkChange, local: IPAddress? = IPAddress("198.18.7.1"), server: IPAddress? = IPAddress("198.18.7.2")) -> NetworkChange.Reaction {
        change.reaction(state: .up, local: local, server: server)
    }

    private func waiting(_ change: NetworkChange, server: IPAddress? = IPAddress("198.18.7.2")) -> NetworkChange.Reaction {
        change.reaction(state: .waiting, local: nil, server: server)
    }

    // MARK: up

    func testUp_ownLocalAddressRemoved_probes() {
        XCTAssertEqual(up(.addressRemoved(local, prefixLength: 30)), .probe)
    }

    func testUp_anotherAddressRemoved_nothing() {
        XCTAssertEqual(up(.addressRemoved(ip("192.0.2.2"), prefixLength: 24)), .nothing)
        XCTAssertEqual(up(.addressAdded(ip("192.0.2.3"), prefixLength: 24)), .nothing)
    }

    func testUp_routeCoveringServer_addedOrRemoved_probes() {
        XCTAssertEqual(up(.routeRemoved(ip("198.18.7.0"), prefixLength: 30)), .probe)
        XCTAssertEqual(up(.routeAdded(ip("198.18.0.0"), prefixLength: 16)), .probe)
        XCTAssertEqual(up(.routeAdded(ip("0.0.0.0"), prefixLength: 0)), .probe, "a default route covers every server")
        XCTAssertEqual(up(.routeRemoved(ip("198.18.7.2"), prefixLength: 32)), .probe)
    }

    func testUp_routeNotCoveringServer_orOtherFamily_nothing() {
        XCTAssertEqual(up(.routeAdded(ip("198.18.7.4"), prefixLength: 30)), .nothing)
        XCTAssertEqual(up(.routeAdded(ip("10.0.0.0"), prefixLength: 8)), .nothing)
        XCTAssertEqual(up(.routeAdded(ip("::"), prefixLength: 0)), .nothing)
    }

    func testUp_resumeOrOverrun_probes() {
        XCTAssertEqual(up(.resumed(afterSeconds: 60)), .probe)
        XCTAssertEqual(up(.overrun), .probe)
    }

    func testUp_unknownEnds_probeOnAnyRemovalOrRouteChange() {
        XCTAssertEqual(up(.addressRemoved(ip("192.0.2.2"), prefixLength: 24), local: nil, server: nil), .probe)
        XCTAssertEqual(up(.routeAdded(ip("10.0.0.0"), prefixLength: 8), local: nil, server: nil), .probe)
        XCTAssertEqual(up(.addressAdded(ip("192.0.2.2"), prefixLength: 24), local: nil, server: nil), .nothing)
    }

    func testUp_ipv4MappedEnds_matchIPv4Changes() {
        let mappedLocal = ip("::ffff:198.18.7.1"), mappedServer = ip("::ffff:198.18.7.2")
        XCTAssertEqual(up(.addressRemoved(local, prefixLength: 30), local: mappedLocal, server: mappedServer), .probe)
        XCTAssertEqual(up(.routeRemoved(ip("198.18.7.0"), prefixLength: 30), local: mappedLocal, server: mappedServer), .probe)
        XCTAssertEqual(up(.routeRemoved(ip("::"), prefixLength: 0), local: mappedLocal, server: mappedServer), .nothing)
    }

    func testUp_ipv6Prefixes() {
        let v6server = ip("2001:db8:5:6::22")
        XCTAssertEqual(up(.routeAdded(ip("2001:db8::"), prefixLength: 32), local: nil, server: v6server), .probe)
        XCTAssertEqual(up(.routeAdded(ip("2001:db8:5:4::"), prefixLength: 62), local: nil, server: v6server), .probe)
        XCTAssertEqual(up(.routeAdded(ip("2001:db8:5:4::"), prefixLength: 63), local: nil, server: v6server), .nothing)
        XCTAssertEqual(up(.routeRemoved(ip("::"), prefixLength: 0), local: nil, server: v6server), .probe)
        XCTAssertEqual(up(.addressRemoved(ip("2001:db8:5:6::1"), prefixLength: 64), local: ip("2001:db8:5:6::1"), server: v6server), .probe)
    }

    // MARK: waiting

    func testRetrySpacing_aBurstRetriesOnce_thenAgainOnlyTenSecondsAfterTheLastRetry() {
        var spacing = NetworkRetrySpacing()
        let start = Instant(nanoseconds: 5_000_000_000)
        XCTAssertTrue(spacing.mayRetry(now: start))
        for ms in [1, 50, 3_000, 9_999] { XCTAssertFalse(spacing.mayRetry(now: start.adding(milliseconds: ms)), "\(ms) ms later") }
        XCTAssertTrue(spacing.mayRetry(now: start.adding(milliseconds: 10_000)))
        // Counted from the retry that went ahead, not from the refused ones.
        XCTAssertFalse(spacing.mayRetry(now: start.adding(milliseconds: 19_999)))
        XCTAssertTrue(spacing.mayRetry(now: start.adding(milliseconds: 20_500)))
    }

    func testWaiting_addressOrDefaultRouteAppears_retriesNow() {
        XCTAssertEqual(waiting(.addressAdded(local, prefixLength: 30)), .retryNow)
        XCTAssertEqual(waiting(.addressAdded(ip("192.0.2.7"), prefixLength: 24)), .retryNow)
        XCTAssertEqual(waiting(.routeAdded(ip("0.0.0.0"), prefixLength: 0)), .retryNow)
        XCTAssertEqual(waiting(.routeAdded(ip("198.18.7.0"), prefixLength: 30)), .retryNow)
        XCTAssertEqual(waiting(.routeAdded(ip("0.0.0.0"), prefixLength: 0), server: nil), .retryNow)
    }

    /// A server never reached is in no known network: only a default route
    /// is news for it, not every subnet a container or VPN brings up.
    func testWaiting_serverNotKnownYet_onlyADefaultRouteRetries() {
        XCTAssertEqual(waiting(.routeAdded(ip("10.0.0.0"), prefixLength: 8), server: nil), .nothing)
        XCTAssertEqual(waiting(.routeAdded(ip("fe80::"), prefixLength: 64), server: nil), .nothing)
        XCTAssertEqual(waiting(.routeAdded(ip("::"), prefixLength: 0), server: nil), .retryNow)
    }

    func testWaiting_resumeOrOverrun_retriesNow() {
        XCTAssertEqual(waiting(.resumed(afterSeconds: 3600)), .retryNow)
        XCTAssertEqual(waiting(.overrun), .retryNow)
    }

    func testWaiting_removalsUnrelatedRoutesAndLinkLocal_nothing() {
        XCTAssertEqual(waiting(.addressRemoved(local, prefixLength: 30)), .nothing)
        XCTAssertEqual(waiting(.routeRemoved(ip("0.0.0.0"), prefixLength: 0)), .nothing)
        XCTAssertEqual(waiting(.routeAdded(ip("10.0.0.0"), prefixLength: 8)), .nothing)
        XCTAssertEqual(waiting(.routeAdded(ip("::"), prefixLength: 0)), .nothing, "an IPv6 default route does not reach an IPv4 server")
        XCTAssertEqual(waiting(.addressAdded(ip("fe80::1"), prefixLength: 64)), .nothing)
        XCTAssertEqual(waiting(.addressAdded(ip("127.0.0.2"), prefixLength: 8)), .nothing)
        XCTAssertEqual(waiting(.addressAdded(ip("fe80::1"), prefixLength: 64), server: ip("fe80::2")), .retryNow)
    }

    func testConnecting_startsOverOnlyWhenThePathToTheServerChanged() {
        let connecting = { (change: NetworkChange) in change.reaction(state: .connecting, local: nil, server: IPAddress("198.18.7.2")) }
        XCTAssertEqual(connecting(.routeAdded(ip("198.18.7.0"), prefixLength: 30)), .retryNow)
        XCTAssertEqual(connecting(.routeAdded(ip("0.0.0.0"), prefixLength: 0)), .retryNow)
        XCTAssertEqual(connecting(.resumed(afterSeconds: 5)), .retryNow)
        XCTAssertEqual(connecting(.overrun), .retryNow)
        XCTAssertEqual(connecting(.addressAdded(ip("198.18.7.1"), prefixLength: 30)), .nothing)
        XCTAssertEqual(connecting(.routeAdded(ip("10.0.0.0"), prefixLength: 8)), .nothing)
        XCTAssertEqual(connecting(.routeRemoved(ip("198.18.7.0"), prefixLength: 30)), .nothing)
    }

    func testUp_linkDown_probesTheConnectionsWhoseLocalAddressItHolds() {
        let own = NetworkChange.linkDown(interface: "eth0", addresses: [ip("fe80::1"), local])
        let other = NetworkChange.linkDown(interface: "docker0", addresses: [ip("172.17.0.1")])
        XCTAssertEqual(up(own), .probe)
        XCTAssertEqual(up(other), .nothing)
        XCTAssertEqual(up(.linkDown(interface: "veth9", addresses: [])), .nothing)
        // A v4 connection through a v6 socket still matches.
        XCTAssertEqual(up(own, local: ip("::ffff:198.18.7.1")), .probe)
        // Ends unknown (a proxy command): any interface may carry it.
        XCTAssertEqual(up(other, local: nil, server: nil), .probe)
        // Only a connection that is up has anything to lose.
        XCTAssertEqual(waiting(own), .nothing)
        XCTAssertEqual(own.reaction(state: .connecting, local: nil, server: server), .nothing)
        XCTAssertEqual(own.description, "link eth0 down")
        XCTAssertNil(NetworkChange(.link(LinkState(interfaceIndex: 3, isRunning: false))))
    }

    func testOtherStates_leftAlone() {
        for change: NetworkChange in [.overrun, .resumed(afterSeconds: 10), .addressAdded(local, prefixLength: 30),
                                      .addressRemoved(local, prefixLength: 30), .routeAdded(ip("0.0.0.0"), prefixLength: 0)] {
            XCTAssertEqual(change.reaction(state: .other, local: local, server: server), .nothing)
        }
    }

    func testDescriptions_nameTheChange() {
        XCTAssertEqual(NetworkChange.addressRemoved(local, prefixLength: 30).description, "address 198.18.7.1/30 removed")
        XCTAssertEqual(NetworkChange.routeAdded(ip("0.0.0.0"), prefixLength: 0).description, "default route (0.0.0.0/0) added")
        XCTAssertEqual(NetworkChange.routeRemoved(ip("198.18.7.0"), prefixLength: 30).description, "route 198.18.7.0/30 removed")
        XCTAssertEqual(NetworkChange(.addressAdded(InterfaceAddress(address: local, prefixLength: 30, interfaceIndex: 4))),
                       .addressAdded(local, prefixLength: 30))
        XCTAssertEqual(NetworkChange.linkDown(interface: "wlan0", addresses: []).description, "link wlan0 down")
    }

    func testPrefixMatch_edges() {
        XCTAssertTrue(ip("10.1.2.3").isIn(ip("10.1.2.3"), prefixLength: 32))
        XCTAssertFalse(ip("10.1.2.3").isIn(ip("10.1.2.2"), prefixLength: 32))
        XCTAssertTrue(ip("10.1.2.3").isIn(ip("10.1.2.2"), prefixLength: 31))
        XCTAssertTrue(ip("10.255.0.1").isIn(ip("10.128.0.0"), prefixLength: 9))
        XCTAssertFalse(ip("10.127.0.1").isIn(ip("10.128.0.0"), prefixLength: 9))
        XCTAssertFalse(ip("10.1.2.3").isIn(ip("10.1.2.3"), prefixLength: 33))
        XCTAssertFalse(ip("10.1.2.3").isIn(ip("::"), prefixLength: 0))
    }

    // MARK: suspend

    /// An injected clock: boottime runs ahead of monotonic only while "asleep".
    private struct FakeClock {
        var monotonic: UInt64 = 5_000_000_000
        var asleep: UInt64 = 1_000_000_000
        var boottime: UInt64 { monotonic + asleep }
        mutating func run(_ seconds: Double) { monotonic += UInt64(seconds * 1e9) }
        mutating func sleep(_ seconds: Double) { asleep += UInt64(seconds * 1e9) }
    }

    func testSuspend_firstSampleOnlySetsTheBaseline() {
        var detector = SuspendDetector()
        let clock = FakeClock()
        XCTAssertNil(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
    }

    func testSuspend_awakeSamples_reportNothing() {
        var detector = SuspendDetector()
        var clock = FakeClock()
        for _ in 0..<10 {
            XCTAssertNil(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
            clock.run(1)
        }
    }

    func testSuspend_gapGrowingPastThreshold_reportsTheSleepOnce() throws {
        var detector = SuspendDetector(threshold: 2)
        var clock = FakeClock()
        _ = detector.sample(boottime: clock.boottime, monotonic: clock.monotonic)
        clock.run(1)
        clock.sleep(45)
        let slept = try XCTUnwrap(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
        XCTAssertEqual(slept, 45, accuracy: 0.001)
        clock.run(1)
        XCTAssertNil(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
    }

    func testSuspend_shortDriftBelowThreshold_isIgnored() {
        var detector = SuspendDetector(threshold: 2)
        var clock = FakeClock()
        _ = detector.sample(boottime: clock.boottime, monotonic: clock.monotonic)
        clock.sleep(1.5)
        XCTAssertNil(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
        // Each step is judged alone: two small ones do not add up.
        clock.sleep(1.5)
        XCTAssertNil(detector.sample(boottime: clock.boottime, monotonic: clock.monotonic))
    }
}
