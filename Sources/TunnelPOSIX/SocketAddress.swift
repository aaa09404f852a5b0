import Glibc
import CLinuxShim

/// An IPv4, IPv6 or Unix socket address.
public enum SocketAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    case v4(host: String, port: UInt16)
    case v6(host: String, port: UInt16)
    case unix(path: String)

    /// Parses an IP literal (no brackets) and a port. Nil when not a literal.
    public init?(ip: String, port: UInt16) {
        var a4 = in_addr()
        if inet_pton(AF_INET, ip, &a4) == 1 {
            self = .v4(host: SocketAddress.format(a4), port: port)
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, ip, &a6) == 1 {
            self = .v6(host: SocketAddress.format(a6), port: port)
            return
        }
        return nil
    }

    public var family: Int32 {
        switch self {
        case .v4: return AF_INET
        case .v6: return AF_INET6
        case .unix: return AF_UNIX
        }
    }

    public var port: UInt16 {
        switch self {
        case .v4(_, let p), .v6(_, let p): return p
        case .unix: return 0
        }
    }

    public var host: String {
        switch self {
        case .v4(let h, _), .v6(let h, _): return h
        case .unix(let p): return p
        }
    }

    public var description: String {
        switch self {
        case .v4(let h, let p): return "\(h):\(p)"
        case .v6(let h, let p): return "[\(h)]:\(p)"
        case .unix(let path): return path
        }
    }

    /// Calls `body` with the C representation of the address.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch self {
        case .v4(let h, let p):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = p.bigEndian
            _ = inet_pton(AF_INET, h, &sin.sin_addr)
            return try withUnsafePointer(to: &sin) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(let h, let p):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = p.bigEndian
            _ = inet_pton(AF_INET6, h, &sin6.sin6_addr)
            return try withUnsafePointer(to: &sin6) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        case .unix(let path):
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            precondition(bytes.count <= SocketAddress.maxUnixPathBytes, "unix socket path too long: \(path)")
            withUnsafeMutableBytes(of: &sun.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            return try withUnsafePointer(to: &sun) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }

    /// The longest path a Unix socket address holds (sun_path less its NUL).
    public static let maxUnixPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Whether bind or connect can take this address (a Unix path may be too long).
    public var fitsSockaddr: Bool {
        if case .unix(let path) = self { return path.utf8.count <= SocketAddress.maxUnixPathBytes }
        return true
    }

    /// Decodes a sockaddr filled in by the kernel.
    public init?(storage: UnsafePointer<sockaddr>) {
        switch Int32(storage.pointee.sa_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(storage).load(as: sockaddr_in.self)
            self = .v4(host: SocketAddress.format(sin.sin_addr), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = UnsafeRawPointer(storage).load(as: sockaddr_in6.self)
            self = .v6(host: SocketAddress.format(sin6.sin6_addr), port: UInt16(bigEndian: sin6.sin6_port))
        case AF_UNIX:
            var raw = UnsafeRawPointer(storage).load(as: sockaddr_un.self).sun_path
            let capacity = MemoryLayout.size(ofValue: raw)
            let path = withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: CChar.self, capacity: capacity) { String(cString: $0) }
            }
            self = .unix(path: path)
        default:
            return nil
        }
    }

    static func format(_ a: in_addr) -> String {
        var a = a
        var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func format(_ a: in6_addr) -> String {
        var a = a
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// Why a host name could not be turned into addresses.
public struct ResolveError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable { case doesNotResolve, temporaryFailure, other }
    public let host: String
    public let kind: Kind
    public let message: String
    public init(host: String, kind: Kind, message: String) {
        self.host = host
        self.kind = kind
        self.message = message
    }
    public var description: String {
        switch kind {
        case .doesNotResolve: return "host \(host) does not resolve (\(message))"
        case .temporaryFailure: return "could not resolve \(host): DNS temporarily unavailable (\(message))"
        case .other: return "could not resolve \(host): \(message)"
        }
    }
}

/// getaddrinfo for TCP. Blocking: call it off the event-loop thread.
public func resolveTCP(host: String, port: UInt16) throws(ResolveError) -> [SocketAddress] {
    if let literal = SocketAddress(ip: host, port: port) { return [literal] }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var list: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &list)
    guard rc == 0 else {
        let message = String(cString: gai_strerror(rc))
        switch rc {
        case EAI_NONAME, TUNNEL_EAI_NODATA, EAI_FAIL: throw ResolveError(host: host, kind: .doesNotResolve, message: message)
        case EAI_AGAIN: throw ResolveError(host: host, kind: .temporaryFailure, message: message)
        default: throw ResolveError(host: host, kind: .other, message: message)
        }
    }
    defer { freeaddrinfo(list) }
    var out: [SocketAddress] = []
    var cursor = list
    while let entry = cursor {
        if let addr = entry.pointee.ai_addr, let decoded = SocketAddress(storage: addr), !out.contains(decoded) {
            out.append(decoded)
        }
        cursor = entry.pointee.ai_next
    }
    if out.isEmpty { throw ResolveError(host: host, kind: .doesNotResolve, message: "no addresses") }
    return out
}
