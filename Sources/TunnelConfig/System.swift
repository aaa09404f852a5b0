#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small libc wrappers that touch no errno (file reading is TunnelPOSIX's).
enum System {
    /// $USER, else the password database, else the numeric uid.
    static func userName(_ environment: [String: String]) -> String {
        if let user = environment["USER"], !user.isEmpty { return user }
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name {
            let user = String(cString: name)
            if !user.isEmpty { return user }
        }
        return String(getuid())
    }

    static var userID: UInt32 { getuid() }

    /// This machine's name as gethostname gives it (ssh's %l); "" if unknown.
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(cString: buffer)
    }

    /// The home directory the password database gives `name`, or nil.
    static func homeDirectory(ofUser name: String) -> String? {
        guard let pw = getpwnam(name), let dir = pw.pointee.pw_dir else { return nil }
        let path = String(cString: dir)
        return path.isEmpty ? nil : path
    }

    /// Parses an IP literal with inet_pton; returns its bytes (4 or 16) and canonical text.
    static func parseIP(_ text: String, ipv6: Bool) -> (bytes: [UInt8], canonical: String)? {
        let family = ipv6 ? AF_INET6 : AF_INET
        var address = [UInt8](repeating: 0, count: 16)
        let ok = text.withCString { cText in
            address.withUnsafeMutableBytes { inet_pton(family, cText, $0.baseAddress) }
        }
        guard ok == 1 else { return nil }
        var out = [CChar](repeating: 0, count: 64)
        let converted = address.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { inet_ntop(family, raw.baseAddress, $0.baseAddress, socklen_t($0.count)) }
        }
        guard converted != nil else { return nil }
        let canonical = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (Array(address.prefix(ipv6 ? 16 : 4)), canonical)
    }
}

/// Expands `~` and `~/...` with the home directory; other paths are returned unchanged.
func expandTilde(_ path: String, home: String) -> String {
    if path == "~" { return home }
    guard path.hasPrefix("~/") else { return path }
    let rest = path.dropFirst(2)
    return home.hasSuffix("/") ? home + rest : home + "/" + rest
}
