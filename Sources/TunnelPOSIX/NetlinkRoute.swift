import Glibc
import CLinuxShim

/// An IPv4 or IPv6 address as bytes (4 or 16, network order).
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses an IP literal (no brackets, no zone). Nil when not a literal.
    public init?(_ text: String) {
        var a4 = in_addr()
        if inet_pton(AF_INET, text, &a4) == 1 {
            bytes = withUnsafeBytes(of: &a4) { Array($0) }
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, text, &a6) == 1 {
            bytes = withUnsafeBytes(of: &a6) { Array($0) }
            return
        }
        return nil
    }

    /// The IP of a TCP socket address; nil for a Unix socket.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let host, _), .v6(let host, _): self.init(host)
        case .unix: return nil
        }
    }

    public var isV4: Bool { bytes.count == 4 }
    public var family: Int32 { isV4 ? AF_INET : AF_INET6 }

    /// ::ffff:a.b.c.d as a.b.c.d (a v6 socket talking to a v4 peer); else self.
    public var unmapped: IPAddress {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return self }
        return IPAddress(bytes: Array(bytes[12...]))!
    }

    public var description: String {
        if isV4 {
            var a = in_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: bytes) }
            return SocketAddress.format(a)
        }
        var a = in6_addr()
        withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: bytes) }
        return SocketAddress.format(a)
    }
}

/// An address on one of this machine's interfaces.
public struct InterfaceAddress: Equatable, Sendable {
    public var address: IPAddress
    public var prefixLength: Int
    public var interfaceIndex: Int
    public init(address: IPAddress, prefixLength: Int, interfaceIndex: Int) {
        self.address = address
        self.prefixLength = prefixLength
        self.interfaceIndex = interfaceIndex
    }
    public var family: Int32 { address.family }
}

/// A route of a routing table; a default route has prefix length 0.
public struct RouteEntry: Equatable, Sendable {
    /// 0.0.0.0 or :: for a default route.
    public var destination: IPAddress
    public var prefixLength: Int
    public var table: UInt32
    public init(destination: IPAddress, prefixLength: Int, table: UInt32) {
        self.destination = destination
        self.prefixLength = prefixLength
        self.table = table
    }
    public var family: Int32 { destination.family }
    public var isDefault: Bool { prefixLength == 0 }
}

/// An interface's state as RTM_NEWLINK reports it.
public struct LinkState: Equatable, Sendable {
    public var interfaceIndex: Int
    /// IFF_RUNNING: up and with a carrier. A cable pulled, Wi-Fi lost or
    /// `ip link set DEV down` clears it, and the kernel then drops the
    /// interface's routes without an RTM_DELROUTE.
    public var isRunning: Bool
    public init(interfaceIndex: Int, isRunning: Bool) {
        self.interfaceIndex = interfaceIndex
        self.isRunning = isRunning
    }
}

/// What the kernel's route netlink groups report.
public enum NetworkEvent: Equatable, Sendable {
    case link(LinkState)
    case addressAdded(InterfaceAddress)
    case addressRemoved(InterfaceAddress)
    case routeAdded(RouteEntry)
    case routeRemoved(RouteEntry)
    /// The socket's buffer overflowed (ENOBUFS) or a message was cut short:
    /// something changed, and nobody knows what.
    case overrun
}

/// A netlink socket subscribed to address and route changes (IPv4 and IPv6).
/// The only owner of its descriptor.
public final class NetlinkRouteSocket {
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.raw }
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init() throws(SystemError) {
        let fd = try checked("socket(AF_NETLINK)") { tunnel_netlink_route_socket() }
        descriptor = FileDescriptor(owning: fd)
        // Room for a burst (a VPN replacing a routing table); an overflow is survivable anyway.
        var size: Int32 = 1 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        do {
            _ = try checked("bind(NETLINK_ROUTE)") { tunnel_netlink_bind(fd, tunnel_netlink_route_groups()) }
        } catch {
            descriptor.close()
            throw error
        }
    }

    /// Reads one datagram. `.wouldBlock` once nothing is left; ENOBUFS (the
    /// kernel dropped messages) is an `.overrun` event, not an error.
    public func read() throws(SystemError) -> IOResult<[NetworkEvent]> {
        var sender: UInt32 = 0
        let result: IOResult<Int>
        do {
            result = try retrying("recvfrom(NETLINK_ROUTE)") {
                buffer.withUnsafeMutableBytes { tunnel_netlink_recv(fd, $0.baseAddress, $0.count, &sender) }
            }
        } catch {
            if error.errno.rawValue == ENOBUFS { return .done([.overrun]) }
            throw error
        }
        guard case .done(let length) = result else { return .wouldBlock }
        // Only the kernel speaks for the kernel: any process may send to our port.
        guard sender == 0 else { return .done([]) }
        if length > buffer.count { return .done([.overrun]) }
        return .done(buffer.withUnsafeBytes { NetlinkParser.parse(UnsafeRawBufferPointer(rebasing: $0[..<length])) })
    }

    public func close() { descriptor.close() }
}

/// Turns route netlink datagrams into events. Every length is checked: a
/// truncated or odd message ends the walk or is skipped, never read past.
public enum NetlinkParser {
    // linux/rtnetlink.h, linux/if_addr.h: message and attribute types.
    static let newLink: UInt16 = 16
    static let newAddress: UInt16 = 20, deleteAddress: UInt16 = 21
    static let newRoute: UInt16 = 24, deleteRoute: UInt16 = 25
    static let attributeAddress: UInt16 = 1, attributeLocal: UInt16 = 2 // IFA_ADDRESS, IFA_LOCAL
    static let attributeDestination: UInt16 = 1, attributeTable: UInt16 = 15 // RTA_DST, RTA_TABLE
    static let tableLocal: UInt32 = 255
    /// RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST: this host's own addresses, not paths out.
    static let ownAddressTypes: Set<UInt8> = [2, 3, 4, 5]
    /// RTM_F_CLONED: a cached exception route (PMTU, redirects), not a table change.
    static let clonedFlag: UInt32 = 0x200

    public static func parse(_ bytes: UnsafeRawBufferPointer) -> [NetworkEvent] {
        var events: [NetworkEvent] = []
        let header = Int(tunnel_nlmsg_header_length())
        var offset = 0
        while offset + header <= bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            guard length >= header, length <= bytes.count - offset else { break }
            let body = UnsafeRawBufferPointer(rebasing: bytes[(offset + header)..<(offset + length)])
            switch type {
            case newLink:
                if let l = link(body) { events.append(.link(l)) }
            case newAddress, deleteAddress:
                if let a = address(body) { events.append(type == newAddress ? .addressAdded(a) : .addressRemoved(a)) }
            case newRoute, deleteRoute:
                if let r = route(body) { events.append(type == newRoute ? .routeAdded(r) : .routeRemoved(r)) }
            default:
                break // NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE (end of a multipart batch), others
            }
            offset += Int(tunnel_nlmsg_align(UInt32(length)))
        }
        return events
    }

    /// IFF_RUNNING (net/if.h).
    static let runningFlag: UInt32 = 0x40

    /// struct ifinfomsg: family, pad (u8 each), type (u16), index (i32), flags, change (u32 each).
    static func link(_ body: UnsafeRawBufferPointer) -> LinkState? {
        guard body.count >= Int(tunnel_ifinfomsg_length()) else { return nil }
        let index = Int(body.loadUnaligned(fromByteOffset: 4, as: Int32.self))
        let flags = body.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard index > 0 else { return nil }
        return LinkState(interfaceIndex: index, isRunning: flags & runningFlag != 0)
    }

    /// struct ifaddrmsg: family, prefixlen, flags, scope (u8 each), index (u32).
    static func address(_ body: UnsafeRawBufferPointer) -> InterfaceAddress? {
        let fixed = Int(tunnel_ifaddrmsg_length())
        guard body.count >= fixed else { return nil }
        let family = Int32(body[0]), prefix = Int(body[1])
        let index = Int(body.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        var local: IPAddress?, peer: IPAddress?
        for (type, payload) in attributes(body, from: fixed) {
            switch type {
            case attributeLocal: local = ip(payload, family: family)
            case attributeAddress: peer = ip(payload, family: family)
            default: break
            }
        }
        // IFA_LOCAL is this end of a point-to-point link; elsewhere IFA_ADDRESS is.
        guard let address = local ?? peer, prefix <= address.bytes.count * 8 else { return nil }
        return InterfaceAddress(address: address, prefixLength: prefix, interfaceIndex: index)
    }

    /// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags (u32).
    static func route(_ body: UnsafeRawBufferPointer) -> RouteEntry? {
        let fixed = Int(tunnel_rtmsg_length())
        guard body.count >= fixed else { return nil }
        let family = Int32(body[0]), prefix = Int(body[1])
        var table = UInt32(body[4])
        let type = body[7]
        let flags = body.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        var destination: IPAddress?
        for (kind, payload) in attributes(body, from: fixed) {
            switch kind {
            case attributeDestination: destination = ip(payload, family: family)
            case attributeTable where payload.count >= 4: table = payload.loadUnaligned(as: UInt32.self)
            default: break
            }
        }
        // The local table and its types hold this host's own and broadcast addresses.
        guard table != tableLocal, !ownAddressTypes.contains(type), flags & clonedFlag == 0 else { return nil }
        let width = family == AF_INET ? 4 : 16
        guard prefix <= width * 8 else { return nil }
        if destination == nil && prefix == 0 { destination = IPAddress(bytes: [UInt8](repeating: 0, count: width)) }
        guard let destination else { return nil }
        return RouteEntry(destination: destination, prefixLength: prefix, table: table)
    }

    /// The rtattrs after the fixed part: (type, payload), stopping at the first malformed one.
    static func attributes(_ body: UnsafeRawBufferPointer, from start: Int) -> [(UInt16, UnsafeRawBufferPointer)] {
        var out: [(UInt16, UnsafeRawBufferPointer)] = []
        var offset = start
        while offset + 4 <= body.count {
            let length = Int(body.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = body.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
            guard length >= 4, length <= body.count - offset else { break }
            out.append((type, UnsafeRawBufferPointer(rebasing: body[(offset + 4)..<(offset + length)])))
            offset += Int(tunnel_rta_align(UInt32(length)))
        }
        return out
    }

    static func ip(_ payload: UnsafeRawBufferPointer, family: Int32) -> IPAddress? {
        let width = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0
        guard width > 0, payload.count >= width else { return nil }
        return IPAddress(bytes: Array(payload[0..<width]))
    }
}

/// This machine's interfaces, as `ip addr` lists them.
public enum Interfaces {
    /// The name and IP addresses of the interface with this index (getifaddrs);
    /// nil when there is no such interface any more.
    public static func addresses(ofIndex index: Int) -> (name: String, addresses: [IPAddress])? {
        var nameBuffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard index > 0, if_indextoname(UInt32(index), &nameBuffer) != nil else { return nil }
        let name = String(cString: nameBuffer)
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return (name, []) }
        defer { freeifaddrs(list) }
        var found: [IPAddress] = []
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let ifaName = current.pointee.ifa_name, String(cString: ifaName) == name,
                  let storage = current.pointee.ifa_addr,
                  // Only IPv4 and IPv6 entries: the link-layer one (AF_PACKET) is not a socket address.
                  [AF_INET, AF_INET6].contains(Int32(storage.pointee.sa_family)),
                  let ip = SocketAddress(storage: storage).flatMap(IPAddress.init) else { continue }
            found.append(ip)
        }
        return (name, found)
    }
}
