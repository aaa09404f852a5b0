import Glibc
import XCTest
import TunnelPOSIX

/// Route netlink messages built by hand, as the kernel lays them out
/// (native byte order, 4-byte alignment).
final class NetlinkParserTests: XCTestCase {
    private static let newAddr: UInt16 = 20, delAddr: UInt16 = 21, newRoute: UInt16 = 24, delRoute: UInt16 = 25
    private static let done: UInt16 = 3, multi: UInt16 = 0x2

    private func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    private func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    private func pad(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }

    private func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        pad(le16(UInt16(4 + payload.count)) + le16(type) + payload)
    }

    private func message(_ type: UInt16, flags: UInt16 = 0, _ body: [UInt8]) -> [UInt8] {
        le32(UInt32(16 + body.count)) + le16(type) + le16(flags) + le32(1) + le32(0) + body
    }

    private func ip(_ text: String) -> [UInt8] { IPAddress(text)!.bytes }

    /// struct ifaddrmsg + IFA_ADDRESS (and IFA_LOCAL when given).
    private func address(_ type: UInt16, family: UInt8, _ addr: String, prefix: UInt8, index: UInt32, local: String? = nil) -> [UInt8] {
        var body: [UInt8] = [family, prefix, 0, 0] + le32(index)
        body += attribute(1, ip(addr))
        if let local { body += attribute(2, ip(local)) }
        return message(type, body)
    }

    /// struct rtmsg + RTA_TABLE, RTA_DST (absent for a default route), RTA_OIF.
    private func route(_ type: UInt16, family: UInt8, _ dst: String?, prefix: UInt8, table: UInt8 = 254, routeType: UInt8 = 1,
                       flags: UInt32 = 0, flags16: UInt16 = 0) -> [UInt8] {
        var body: [UInt8] = [family, prefix, 0, 0, table, 3, 0, routeType] + le32(flags)
        body += attribute(15, le32(UInt32(table)))
        if let dst { body += attribute(1, ip(dst)) }
        body += attribute(4, le32(7))
        return message(type, flags: flags16, body)
    }

    private func parse(_ bytes: [UInt8]) -> [NetworkEvent] {
        bytes.withUnsafeBytes { NetlinkParser.parse($0) }
    }

    private let v4 = UInt8(AF_INET), v6 = UInt8(AF_INET6)

    /// struct ifinfomsg (family, pad, type, index, flags, change) + IFLA_IFNAME.
    private func link(index: Int32, flags: UInt32) -> [UInt8] {
        var body: [UInt8] = [0, 0] + le16(1) + withUnsafeBytes(of: index) { Array($0) } + le32(flags) + le32(0xffff_ffff)
        body += attribute(3, Array("veth0".utf8) + [0])
        return message(16, body)
    }

    func testNewLink_reportsWhetherTheInterfaceRuns() {
        let up: UInt32 = 0x1, running: UInt32 = 0x40, lowerUp: UInt32 = 0x10000
        let events = parse(link(index: 7, flags: up | running | lowerUp) + link(index: 7, flags: up) + link(index: 9, flags: 0))
        XCTAssertEqual(events, [.link(LinkState(interfaceIndex: 7, isRunning: true)),
                                .link(LinkState(interfaceIndex: 7, isRunning: false)),
                                .link(LinkState(interfaceIndex: 9, isRunning: false))])
        // Cut short: skipped, not read past.
        let short = message(16, [0, 0] + le16(1) + le32(7))
        XCTAssertEqual(parse(short), [])
    }

    func testNewAndDeleteAddress_v4_giveAddressPrefixAndInterface() {
        let events = parse(address(Self.newAddr, family: v4, "198.18.7.1", prefix: 30, index: 12)
                           + address(Self.delAddr, family: v4, "198.18.7.1", prefix: 30, index: 12))
        let a = InterfaceAddress(address: IPAddress("198.18.7.1")!, prefixLength: 30, interfaceIndex: 12)
        XCTAssertEqual(events, [.addressAdded(a), .addressRemoved(a)])
        XCTAssertEqual(a.family, AF_INET)
        XCTAssertEqual(a.address.description, "198.18.7.1")
    }

    func testAddress_pointToPoint_prefersLocalOverPeer() {
        let events = parse(address(Self.newAddr, family: v4, "10.8.0.1", prefix: 32, index: 3, local: "10.8.0.2"))
        XCTAssertEqual(events, [.addressAdded(InterfaceAddress(address: IPAddress("10.8.0.2")!, prefixLength: 32, interfaceIndex: 3))])
    }

    func testNewAddress_v6() {
        let events = parse(address(Self.newAddr, family: v6, "fd00::5", prefix: 64, index: 2))
        guard case .addressAdded(let a)? = events.first else { return XCTFail("\(events)") }
        XCTAssertEqual(a.address.description, "fd00::5")
        XCTAssertEqual(a.family, AF_INET6)
        XCTAssertEqual(a.prefixLength, 64)
    }

    func testRoutes_mainTable_includingDefault() {
        let events = parse(route(Self.newRoute, family: v4, nil, prefix: 0)
                           + route(Self.delRoute, family: v4, "198.18.7.0", prefix: 30)
                           + route(Self.newRoute, family: v6, nil, prefix: 0))
        XCTAssertEqual(events, [
            .routeAdded(RouteEntry(destination: IPAddress("0.0.0.0")!, prefixLength: 0, table: 254)),
            .routeRemoved(RouteEntry(destination: IPAddress("198.18.7.0")!, prefixLength: 30, table: 254)),
            .routeAdded(RouteEntry(destination: IPAddress("::")!, prefixLength: 0, table: 254)),
        ])
    }

    func testRoutes_localTableBroadcastAndClonedOnes_areIgnored() {
        let events = parse(route(Self.newRoute, family: v4, "198.18.7.1", prefix: 32, table: 255, routeType: 2)
                           + route(Self.newRoute, family: v4, "198.18.7.3", prefix: 32, table: 254, routeType: 3)
                           + route(Self.newRoute, family: v6, "fd00::9", prefix: 128, flags: 0x200)
                           + route(Self.newRoute, family: v4, "10.0.0.0", prefix: 8, table: 100))
        // Another table (policy routing, a VPN's own) still counts.
        XCTAssertEqual(events, [.routeAdded(RouteEntry(destination: IPAddress("10.0.0.0")!, prefixLength: 8, table: 100))])
    }

    func testMultipart_everyMessageUpToDone() {
        let batch = route(Self.newRoute, family: v4, "10.1.0.0", prefix: 16, flags16: Self.multi)
            + route(Self.newRoute, family: v4, "10.2.0.0", prefix: 16, flags16: Self.multi)
            + message(Self.done, flags: Self.multi, le32(0))
        XCTAssertEqual(parse(batch).count, 2)
    }

    func testTruncatedInput_atEveryLength_neverCrashesAndKeepsWholeMessages() {
        let first = address(Self.newAddr, family: v4, "198.18.7.1", prefix: 30, index: 12)
        let all = first + route(Self.delRoute, family: v6, "fd00::", prefix: 64)
        for n in 0...all.count {
            let events = parse(Array(all[..<n]))
            XCTAssertEqual(events.count, n < first.count ? 0 : n < all.count ? 1 : 2, "length \(n)")
        }
    }

    func testOddMessages_areSkippedOrEndTheWalk() {
        // A header claiming less than itself ends the walk.
        XCTAssertEqual(parse(le32(4) + le16(Self.newAddr) + le16(0) + le32(0) + le32(0)), [])
        // A body too short for ifaddrmsg, then a good message: the good one survives.
        let good = address(Self.newAddr, family: v4, "192.0.2.9", prefix: 24, index: 1)
        XCTAssertEqual(parse(message(Self.newAddr, [2, 24]) + [0, 0] + good).count, 1)
        XCTAssertEqual(parse(message(Self.newAddr, [2, 24, 0, 0]) + good).count, 1)
        // An attribute longer than its message: no address.
        var body: [UInt8] = [v4, 24, 0, 0] + le32(1)
        body += le16(64) + le16(1) + ip("192.0.2.9")
        XCTAssertEqual(parse(message(Self.newAddr, body)), [])
        // An address of the wrong width, a prefix past the width, an unknown family.
        XCTAssertEqual(parse(message(Self.newAddr, [v4, 24, 0, 0] + le32(1) + attribute(1, [1, 2]))), [])
        XCTAssertEqual(parse(address(Self.newAddr, family: v4, "192.0.2.9", prefix: 33, index: 1)), [])
        XCTAssertEqual(parse(message(Self.newRoute, [99, 0, 0, 0, 254, 0, 0, 1] + le32(0))), [])
        // A route without RTA_DST that is not a default route.
        XCTAssertEqual(parse(route(Self.newRoute, family: v4, nil, prefix: 8)), [])
    }

    func testIPAddress_unmapsIPv4MappedIPv6() {
        XCTAssertEqual(IPAddress("::ffff:198.18.7.2")!.unmapped, IPAddress("198.18.7.2")!)
        XCTAssertEqual(IPAddress("fd00::1")!.unmapped, IPAddress("fd00::1")!)
        XCTAssertNil(IPAddress("example.com"))
        XCTAssertEqual(IPAddress(SocketAddress.v4(host: "127.0.0.1", port: 22)), IPAddress("127.0.0.1"))
        XCTAssertNil(IPAddress(SocketAddress.unix(path: "/tmp/x")))
    }

    /// The real socket, when this process may open one (skipped elsewhere):
    /// reading never blocks, and ends in `.wouldBlock`.
    func testSocket_opensAndReadsUntilWouldBlock() throws {
        let socket: NetlinkRouteSocket
        do { socket = try NetlinkRouteSocket() } catch { throw XCTSkip("no netlink route socket here: \(error)") }
        defer { socket.close() }
        // Other processes may be changing the network meanwhile: drain what came.
        for _ in 0..<1000 {
            if try socket.read() == .wouldBlock { return }
        }
        XCTFail("the socket never ran dry")
    }
}
