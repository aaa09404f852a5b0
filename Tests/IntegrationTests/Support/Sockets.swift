import Foundation
import Glibc
import Synchronization
import XCTest

/// Blocking loopback sockets for test clients and test servers.
enum Net {
    /// A free loopback port below the kernel's ephemeral range, never the same one twice in a run. A port
    /// from bind(0) is ephemeral, so an outgoing connection (the tunnel's own, to sshd) could take it between
    /// this call and the tunnel binding it: `tunnel up` then fails with "address in use".
    ///
    /// `TUNNEL_TEST_PORTS=FIRST-LAST` narrows the range: Scripts/test runs two test processes at once and
    /// gives each a range of its own, so neither can take a port the other has picked but not yet bound.
    static func freePort() -> UInt16 {
        let range = portRange()
        return handedOut.withLock { given in
            if let range {
                for _ in 0..<1_000 {
                    let port = UInt16.random(in: range)
                    if !given.contains(port) && bindAndRelease(port) != nil && !isListening(port) {
                        given.insert(port)
                        return port
                    }
                }
            }
            while true {
                if let port = bindAndRelease(0), given.insert(port).inserted { return port }
            }
        }
    }

    private static let handedOut = Mutex<Set<UInt16>>([])

    /// 10000 up to the ephemeral range, or the part of it TUNNEL_TEST_PORTS names; nil if too narrow.
    private static func portRange() -> ClosedRange<UInt16>? {
        let below = ephemeralRangeStart()
        var first: UInt16 = 10_000, last = below &- 1
        if let given = ProcessInfo.processInfo.environment["TUNNEL_TEST_PORTS"] {
            let bounds = given.split(separator: "-").compactMap { UInt16($0) }
            precondition(bounds.count == 2 && bounds[0] <= bounds[1], "TUNNEL_TEST_PORTS=\(given): expected FIRST-LAST")
            first = max(first, bounds[0])
            last = min(last, bounds[1])
        }
        return below > 12_000 && Int(last) >= Int(first) + 1_000 ? first...last : nil
    }

    private static func ephemeralRangeStart() -> UInt16 {
        let text = read("/proc/sys/net/ipv4/ip_local_port_range")
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { UInt16($0) } ?? 32_768
    }

    /// Binds 127.0.0.1:`port` (0: the kernel picks) and releases it; the port it got, or nil if taken.
    private static func bindAndRelease(_ port: UInt16) -> UInt16? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = loopback(port)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { return nil }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: addr.sin_port)
    }

    private static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        return addr
    }

    /// Connects to 127.0.0.1:port; nil on failure.
    static func connect(_ port: UInt16, host: String = "127.0.0.1", timeout: Double = 10) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(host)
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { close(fd); return nil }
        setTimeout(fd, timeout)
        return fd
    }

    /// Connects to [::1]:port; nil on failure.
    static func connect6(_ port: UInt16, timeout: Double = 10) -> Int32? {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = port.bigEndian
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        if rc != 0 { close(fd); return nil }
        setTimeout(fd, timeout)
        return fd
    }

    /// Listens on [::1]:port (nil if taken); the caller closes it.
    static func listen6(_ port: UInt16) -> Int32? {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = port.bigEndian
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        guard rc == 0, listen(fd, 4) == 0 else { close(fd); return nil }
        return fd
    }

    static func setTimeout(_ fd: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Whether a socket is in LISTEN state on the port, read from /proc/net/tcp{,6}
    /// without connecting (a probe connection would be forwarded like any client).
    static func isListening(_ port: UInt16) -> Bool {
        let hexPort = String(format: ":%04X", port)
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in read(table).split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                if fields.count > 3 && fields[1].hasSuffix(hexPort) && fields[3] == "0A" { return true }
            }
        }
        return false
    }

    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }

    static func sendAll(_ fd: Int32, _ data: [UInt8]) -> Bool { data.withUnsafeBytes { sendAll(fd, $0) } }

    /// Reads until EOF (or error/timeout); returns the bytes and whether EOF was clean.
    static func readToEOF(_ fd: Int32, limit: Int = 1 << 30) -> (bytes: [UInt8], cleanEOF: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (out, true) }
            if n < 0 { if errno == EINTR { continue }; return (out, false) }
            out += buf[0..<n]
        }
        return (out, false)
    }

    enum StreamEnd: Equatable { case eof, reset, other(Int32) }

    /// Reads until the stream ends, and how it ended: a clean EOF, a reset,
    /// or another error (our read timeout is EAGAIN).
    static func readToEnd(_ fd: Int32) -> (bytes: [UInt8], end: StreamEnd) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (out, .eof) }
            if n < 0 {
                if errno == EINTR { continue }
                return (out, errno == ECONNRESET ? .reset : .other(errno))
            }
            out += buf[0..<n]
        }
    }

    /// The peer's FIN has arrived (whether or not its bytes were read).
    static func peerHasEnded(_ fd: Int32) -> Bool {
        let rdhup: Int16 = 0x2000 // POLLRDHUP: Glibc exports it only under _GNU_SOURCE
        var p = pollfd(fd: fd, events: rdhup, revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & rdhup != 0
    }

    /// Reads exactly `count` bytes.
    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return nil }
            got += n
        }
        return out
    }
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            // xorshift64*: fast and reproducible
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            words[i] = state &* 2685821657736338717
        }
    }
    return out
}

/// FNV-1a 64-bit: cheap, and any corruption, loss or reordering changes it.
func checksum(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf29ce484222325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
    return h
}

/// A loopback TCP server in the test process; one thread per connection.
/// Its state is behind `lock`: the accept and serve threads share it.
final class TestServer: @unchecked Sendable {
    enum Behaviour {
        /// Echo every byte until the client's EOF, then close.
        case echo
        /// Read until EOF, then send `reply` and close (half-close test).
        case replyAfterEOF(reply: [UInt8])
        /// Send `data`, shut down the write side, then read until EOF; `received` collects it.
        case sendThenRead(data: [UInt8])
        /// Wait `delay` seconds with nothing said, then like `sendThenRead`.
        case sendLater(delay: Double, data: [UInt8])
        /// Shut down the write side at once, read nothing for `delay` seconds
        /// (the sender's window closes), then read until EOF into `received`.
        case endThenReadLater(delay: Double)
        /// Relay to 127.0.0.1:`port`, the k-th accepted client (from 0) after
        /// `delays[k]` seconds (none past the end): a slow path to a server.
        case relay(port: UInt16, delays: [Double])
    }

    let port: UInt16
    private let fd: Int32
    private let behaviour: Behaviour
    private let lock = NSLock()
    private var _received: [[UInt8]] = []
    private var _accepted = 0
    private var stopped = false

    init(_ behaviour: Behaviour, port: UInt16 = 0) {
        self.behaviour = behaviour
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 1024)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        self.port = UInt16(bigEndian: addr.sin_port)
        let t = Thread { [unowned self] in self.acceptLoop() }
        t.stackSize = 1 << 20
        t.start()
    }

    var received: [[UInt8]] { lock.lock(); defer { lock.unlock() }; return _received }
    var accepted: Int { lock.lock(); defer { lock.unlock() }; return _accepted }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            lock.lock(); _accepted += 1; let index = _accepted - 1; let done = stopped; lock.unlock()
            if done { close(client); return }
            let t = Thread { [behaviour] in
                self.serve(client, behaviour, index: index)
            }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private func serve(_ client: Int32, _ behaviour: Behaviour, index: Int) {
        defer { close(client) }
        switch behaviour {
        case .echo:
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                if !buf.withUnsafeBytes({ Net.sendAll(client, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) { return }
            }
        case .replyAfterEOF(let reply):
            let (request, _) = Net.readToEOF(client)
            lock.lock(); _received.append(request); lock.unlock()
            _ = Net.sendAll(client, reply)
        case .sendThenRead(let data):
            _ = Net.sendAll(client, data)
            shutdown(client, Int32(SHUT_WR))
            let (rest, _) = Net.readToEOF(client)
            lock.lock(); _received.append(rest); lock.unlock()
        case .sendLater(let delay, let data):
            usleep(useconds_t(delay * 1_000_000))
            _ = Net.sendAll(client, data)
            shutdown(client, Int32(SHUT_WR))
            let (rest, _) = Net.readToEOF(client)
            lock.lock(); _received.append(rest); lock.unlock()
        case .endThenReadLater(let delay):
            shutdown(client, Int32(SHUT_WR))
            usleep(useconds_t(delay * 1_000_000))
            let (rest, _) = Net.readToEOF(client)
            lock.lock(); _received.append(rest); lock.unlock()
        case .relay(let port, let delays):
            if index < delays.count { usleep(useconds_t(delays[index] * 1_000_000)) }
            guard let upstream = Net.connect(port) else { return }
            defer { close(upstream) }
            Self.relay(client, upstream)
        }
    }

    /// Copies bytes both ways until both sides have sent EOF (or one fails).
    private static func relay(_ a: Int32, _ b: Int32) {
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 65536)
        var open = 2
        while open > 0 {
            if poll(&fds, 2, -1) < 0 { if errno == EINTR { continue }; return }
            for i in 0..<2 where fds[i].revents != 0 {
                let other = fds[1 - i].fd
                let n = buf.withUnsafeMutableBytes { recv(fds[i].fd, $0.baseAddress, $0.count, 0) }
                if n < 0 { return }
                if n == 0 {
                    shutdown(other, Int32(SHUT_WR))
                    fds[i].fd = -1   // poll ignores it from now on
                    open -= 1
                    continue
                }
                if !buf.withUnsafeBytes({ Net.sendAll(other, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) { return }
            }
        }
    }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

/// A listening loopback socket on a free port.
/// `port`: that one (0: any); the port it got, 0 if the bind failed.
func loopbackListener(backlog: Int32, port: UInt16 = 0) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    listen(fd, backlog)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// A loopback port whose accept queue is full, so a new connection's SYN is
/// dropped and connect() times out (a black hole the sandbox cannot short-cut).
final class BlackHole {
    let port: UInt16
    private let listener: Int32
    private let filler: Int32

    init() {
        (listener, port) = loopbackListener(backlog: 0)
        filler = Net.connect(port, timeout: 2) ?? -1
    }

    func close() {
        Glibc.close(filler)
        Glibc.close(listener)
    }
}

/// A TCP server that accepts and then says nothing (not an SSH server).
final class SilentServer {
    let port: UInt16
    private let listener: Int32

    init() { (listener, port) = loopbackListener(backlog: 16) }

    func close() { Glibc.close(listener) }
}
