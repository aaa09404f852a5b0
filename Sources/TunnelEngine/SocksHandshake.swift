import TunnelSSH

/// Where a SOCKS client asked to go: the caller opens a direct-tcpip channel
/// to `host`:`port`, so names are resolved by the SSH server, never here.
public struct SocksTarget: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case ipv4
        case ipv6
        case domainName
    }

    /// A dotted IPv4 literal, an IPv6 literal without brackets (RFC 5952
    /// form), or a host name of printable ASCII.
    public let host: String
    public let port: UInt16
    public let kind: Kind

    public init(host: String, port: UInt16, kind: Kind) {
        self.host = host
        self.port = port
        self.kind = kind
    }

    /// "host:port", IPv6 in brackets, for the log.
    public var description: String { kind == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why the channel to a SOCKS target could not be opened, as the SOCKS reply
/// says it.
public enum SocksFailure: Equatable, Sendable, CustomStringConvertible {
    case connectionRefused
    case notAllowed
    case hostUnreachable
    case general

    /// SSH's channel-open refusal (RFC 4254 5.1); nil (the open failed
    /// without the server's answer, e.g. the link dropped) is a general failure.
    /// The server's "connect failed" covers a refused port, a name that does
    /// not resolve and an unreachable host alike (libssh2 1.10 keeps sshd's
    /// words to itself), so it is a general failure too: "connection
    /// refused" would send someone with a DNS typo after a closed port.
    public init(_ refusal: ChannelOpenRefusal?) {
        switch refusal {
        case .connectFailed: self = .general
        case .administrativelyProhibited: self = .notAllowed
        case .unknownChannelType, .resourceShortage, .unspecified, nil: self = .general
        }
    }

    public var description: String {
        switch self {
        case .connectionRefused: return "connection refused"
        case .notAllowed: return "not allowed"
        case .hostUnreachable: return "host unreachable"
        case .general: return "general failure"
        }
    }
}

/// The server side of a SOCKS handshake (dynamic forwarding, `ssh -D`), as a
/// value whose transitions return the actions its owner performs: SOCKS5
/// (RFC 1928, no authentication), SOCKS4 and SOCKS4a, CONNECT only.
///
/// The caller feeds what it reads from the client to `receive`. Once it gets
/// `.openChannel(target)` it opens the channel and reports with
/// `channelOpened()` or `channelFailed(_:)`. The machine never holds payload:
/// `Outcome.consumed` says how many of the bytes given belonged to the
/// handshake, and everything after them, and every byte given while
/// `state` is `.awaitingChannel` (for which `receive` consumes nothing), is
/// payload the caller keeps and writes to the channel first (or drops on a
/// close). The simplest caller stops reading the client while it waits for
/// the channel.
///
/// What ends in a reply and a close (SOCKS4 replies 0x5B to each): no method
/// without authentication (0x05 0xFF), BIND, UDP ASSOCIATE and unknown
/// commands (0x07), an unknown SOCKS5 address type (0x08), port 0 (0x02: nothing
/// listens there, so it is refused before it costs the server a connect), a
/// host name with bytes outside printable ASCII (0x04: sshd reads the name as
/// a C string, so a NUL would cut it, and control bytes would reach the log).
/// What ends in a close without reply, as not SOCKS at all: an unknown
/// version byte, NMETHODS 0, a request whose version byte is not 5 or whose
/// reserved byte is not 0, a zero-length name, a SOCKS4 user id or SOCKS4a
/// host name over 255 bytes.
///
/// Buffering is bounded by the longest message accepted: `maxBuffered`.
public struct SocksHandshake: Sendable {
    public enum Version: Equatable, Sendable {
        case socks4
        case socks5
    }

    public enum State: Equatable, Sendable {
        /// Reading the greeting and the request: the greeting timer applies.
        case negotiating
        /// `.openChannel` was returned; the channel's result is awaited.
        case awaitingChannel
        /// The success reply is out: bytes flow both ways.
        case forwarding
        /// `.close` was returned.
        case closed
    }

    public enum Action: Equatable, Sendable {
        /// Write these bytes to the client, before any action after it.
        case send([UInt8])
        /// Open a direct-tcpip channel to the target, then call
        /// `channelOpened()` or `channelFailed(_:)`.
        case openChannel(SocksTarget)
        /// The handshake is over: pump bytes both ways, the payload kept
        /// since `.openChannel` first.
        case forward
        /// Close the client once the bytes sent before are written. The
        /// reason is for the log: it holds no text from the client.
        case close(reason: String)
    }

    /// What one `receive` produced.
    public struct Outcome: Equatable, Sendable {
        /// How many bytes at the front of the input were handshake; the rest
        /// is payload (meaningful once `.openChannel` was returned).
        public var consumed: Int
        public var actions: [Action]

        public init(consumed: Int = 0, actions: [Action] = []) {
            self.consumed = consumed
            self.actions = actions
        }
    }

    /// Seconds a client has to complete its request; the caller's timer
    /// calls `timedOut()` after it.
    public static let greetingTimeout: Double = 10
    /// SOCKS4 user id and SOCKS4a host name, NUL excluded: SOCKS5's own
    /// limit for a name, and more than any real client sends.
    public static let maxUserIDLength = 255
    public static let maxHostnameLength = 255
    /// The longest message held: a SOCKS4a request (8 fixed bytes, the user
    /// id and the name, each with its NUL). SOCKS5's largest is 262 bytes
    /// (4 + 1 + 255 + 2), its greeting 257.
    public static let maxBuffered = 8 + (maxUserIDLength + 1) + (maxHostnameLength + 1)

    public private(set) var state: State = .negotiating
    /// Known after the first byte.
    public private(set) var version: Version?

    private enum Phase: Equatable, Sendable {
        case versionByte
        case socks5Greeting
        case socks5Request
        case socks4Header
        case socks4UserID
        /// The name starts at this offset of the buffer.
        case socks4Hostname(start: Int)
    }

    private var phase: Phase = .versionByte
    /// The message being read, from its first byte.
    private var buffer: [UInt8] = []

    public init() {}

    /// Whether the request is still being read (the greeting timer's concern).
    public var isNegotiating: Bool { state == .negotiating }

    /// Bytes held of a message not yet complete; never above `maxBuffered`.
    public var bufferedCount: Int { buffer.count }

    // MARK: transitions

    /// Bytes read from the client. Consumes exactly the handshake's bytes;
    /// in any state but `.negotiating` it consumes nothing and does nothing.
    public mutating func receive<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Outcome {
        var outcome = Outcome()
        var index = bytes.startIndex
        reading: while state == .negotiating {
            switch parse() {
            case .progress(let actions):
                outcome.actions += actions
            case .readUpTo(let total):
                guard index != bytes.endIndex else { break reading }
                let end = bytes.index(index, offsetBy: total - buffer.count, limitedBy: bytes.endIndex) ?? bytes.endIndex
                buffer.append(contentsOf: bytes[index..<end])
                outcome.consumed += bytes.distance(from: index, to: end)
                index = end
            case .readThroughNUL(let limit):
                guard index != bytes.endIndex else { break reading }
                // Stop after the first NUL: what follows is the next field
                // or payload, and the NUL is then always the buffer's last byte.
                var end = index
                var room = limit - buffer.count
                while end != bytes.endIndex && room > 0 {
                    let byte = bytes[end]
                    bytes.formIndex(after: &end)
                    room -= 1
                    if byte == 0 { break }
                }
                buffer.append(contentsOf: bytes[index..<end])
                outcome.consumed += bytes.distance(from: index, to: end)
                index = end
            }
            assert(buffer.count <= Self.maxBuffered)
        }
        return outcome
    }

    /// The channel to the target is open.
    public mutating func channelOpened() -> [Action] {
        guard state == .awaitingChannel, let version else { return [] }
        state = .forwarding
        return [.send(Self.reply(version, socks5: 0x00, socks4: 0x5A)), .forward]
    }

    /// The channel to the target could not be opened.
    public mutating func channelFailed(_ failure: SocksFailure) -> [Action] {
        guard state == .awaitingChannel else { return [] }
        let code: UInt8
        switch failure {
        case .general: code = 0x01
        case .notAllowed: code = 0x02
        case .hostUnreachable: code = 0x04
        case .connectionRefused: code = 0x05
        }
        return refuse(socks5: code, reason: "channel open failed: \(failure)")
    }

    /// The greeting timer fired: a client still negotiating is closed.
    public mutating func timedOut() -> [Action] {
        guard state == .negotiating else { return [] }
        return close("no complete SOCKS request within \(Int(Self.greetingTimeout)) s")
    }

    // MARK: parsing

    private enum Parse {
        /// The phase or state moved on.
        case progress([Action])
        /// The buffer must reach this many bytes.
        case readUpTo(Int)
        /// Bytes up to and including a NUL, the buffer staying within this many.
        case readThroughNUL(limit: Int)
    }

    /// Looks at the buffer in the current phase: what to read next, or what it means.
    private mutating func parse() -> Parse {
        switch phase {
        case .versionByte:
            guard let first = buffer.first else { return .readUpTo(1) }
            switch first {
            case 5:
                version = .socks5
                phase = .socks5Greeting
                return .progress([])
            case 4:
                version = .socks4
                phase = .socks4Header
                return .progress([])
            default:
                return .progress(close("not SOCKS4 or SOCKS5: first byte \(Self.hex(first))"))
            }

        case .socks5Greeting:
            // VER NMETHODS METHODS...
            guard buffer.count >= 2 else { return .readUpTo(2) }
            let methods = Int(buffer[1])
            guard methods > 0 else { return .progress(close("SOCKS5 greeting lists no methods")) }
            guard buffer.count >= 2 + methods else { return .readUpTo(2 + methods) }
            guard buffer[2...].contains(0x00) else {
                // RFC 1928 3: 0xFF, and the client closes; so do we.
                return .progress([.send([0x05, 0xFF])] + close("SOCKS5 client offers no method without authentication"))
            }
            nextMessage(.socks5Request)
            return .progress([.send([0x05, 0x00])])

        case .socks5Request:
            // VER CMD RSV ATYP DST.ADDR DST.PORT
            guard buffer.count >= 4 else { return .readUpTo(4) }
            guard buffer[0] == 5 else { return .progress(close("SOCKS5 request with version byte \(Self.hex(buffer[0]))")) }
            guard buffer[2] == 0 else { return .progress(close("SOCKS5 request with reserved byte \(Self.hex(buffer[2]))")) }
            let addressEnd: Int
            switch buffer[3] {
            case 1:
                addressEnd = 4 + 4
            case 4:
                addressEnd = 4 + 16
            case 3:
                guard buffer.count >= 5 else { return .readUpTo(5) }
                guard buffer[4] > 0 else { return .progress(close("SOCKS5 request with an empty host name")) }
                addressEnd = 5 + Int(buffer[4])
            default:
                // The length is unknown, so the request cannot be read to its end.
                return .progress(refuse(socks5: 0x08, reason: "SOCKS5 address type \(Self.hex(buffer[3])) not supported"))
            }
            guard buffer.count >= addressEnd + 2 else { return .readUpTo(addressEnd + 2) }
            let port = UInt16(buffer[addressEnd]) << 8 | UInt16(buffer[addressEnd + 1])
            switch buffer[3] {
            case 1:
                return .progress(request(command: buffer[1], host: Self.ipv4Text(buffer[4..<8]), kind: .ipv4, port: port))
            case 4:
                return .progress(request(command: buffer[1], host: Self.ipv6Text(buffer[4..<20]), kind: .ipv6, port: port))
            default:
                return .progress(request(command: buffer[1], name: buffer[5..<addressEnd], port: port))
            }

        case .socks4Header:
            // VN CD DSTPORT DSTIP, then USERID NUL [HOSTNAME NUL]
            guard buffer.count >= 8 else { return .readUpTo(8) }
            phase = .socks4UserID
            return .progress([])

        case .socks4UserID:
            if buffer.count > 8 && buffer.last == 0 {
                // SOCKS4a: 0.0.0.x with x != 0, an address no one connects to, says a name follows.
                if buffer[4] == 0 && buffer[5] == 0 && buffer[6] == 0 && buffer[7] != 0 {
                    phase = .socks4Hostname(start: buffer.count)
                    return .progress([])
                }
                return .progress(request(command: buffer[1], host: Self.ipv4Text(buffer[4..<8]), kind: .ipv4, port: socks4Port))
            }
            let limit = 8 + Self.maxUserIDLength + 1
            guard buffer.count < limit else {
                return .progress(close("SOCKS4 user id longer than \(Self.maxUserIDLength) bytes"))
            }
            return .readThroughNUL(limit: limit)

        case .socks4Hostname(let start):
            if buffer.count > start && buffer.last == 0 {
                guard buffer.count > start + 1 else { return .progress(close("SOCKS4a request with an empty host name")) }
                return .progress(request(command: buffer[1], name: buffer[start..<(buffer.count - 1)], port: socks4Port))
            }
            let limit = start + Self.maxHostnameLength + 1
            guard buffer.count < limit else {
                return .progress(close("SOCKS4a host name longer than \(Self.maxHostnameLength) bytes"))
            }
            return .readThroughNUL(limit: limit)
        }
    }

    private var socks4Port: UInt16 { UInt16(buffer[2]) << 8 | UInt16(buffer[3]) }

    /// A complete request naming a host.
    private mutating func request(command: UInt8, name: ArraySlice<UInt8>, port: UInt16) -> [Action] {
        // Checked before the name, so BIND with an odd name still gets "command not supported".
        if let refused = refusal(command: command, port: port) { return refused }
        guard name.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return refuse(socks5: 0x04, reason: "\(versionName) host name with bytes outside printable ASCII")
        }
        return connect(SocksTarget(host: String(decoding: name, as: UTF8.self), port: port, kind: .domainName))
    }

    /// A complete request naming an address.
    private mutating func request(command: UInt8, host: String, kind: SocksTarget.Kind, port: UInt16) -> [Action] {
        if let refused = refusal(command: command, port: port) { return refused }
        return connect(SocksTarget(host: host, port: port, kind: kind))
    }

    private mutating func refusal(command: UInt8, port: UInt16) -> [Action]? {
        guard command == 1 else {
            let name: String
            switch (version, command) {
            case (_, 2): name = "BIND"
            case (.socks5, 3): name = "UDP ASSOCIATE"
            default: name = "command \(Self.hex(command))"
            }
            return refuse(socks5: 0x07, reason: "\(versionName) \(name) not supported")
        }
        guard port != 0 else { return refuse(socks5: 0x02, reason: "\(versionName) CONNECT to port 0") }
        return nil
    }

    private mutating func connect(_ target: SocksTarget) -> [Action] {
        state = .awaitingChannel
        buffer = []
        return [.openChannel(target)]
    }

    /// A failure reply (SOCKS4 has one code for every failure), then close.
    private mutating func refuse(socks5 code: UInt8, reason: String) -> [Action] {
        let reply = Self.reply(version ?? .socks5, socks5: code, socks4: 0x5B)
        return [.send(reply)] + close(reason)
    }

    private mutating func close(_ reason: String) -> [Action] {
        state = .closed
        buffer = []
        return [.close(reason: reason)]
    }

    private mutating func nextMessage(_ next: Phase) {
        phase = next
        buffer.removeAll(keepingCapacity: true)
    }

    private var versionName: String { version == .socks4 ? "SOCKS4" : "SOCKS5" }

    /// A reply with the bound address 0.0.0.0:0: the client does not need
    /// the server's end of a direct-tcpip channel, and SSH does not tell it.
    private static func reply(_ version: Version, socks5 code: UInt8, socks4 code4: UInt8) -> [UInt8] {
        switch version {
        case .socks5: return [0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]
        case .socks4: return [0x00, code4, 0, 0, 0, 0, 0, 0]
        }
    }

    // MARK: text

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
    }

    static func ipv4Text(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String($0) }.joined(separator: ".")
    }

    /// RFC 5952: lowercase hex, no leading zeros, the longest run of two or
    /// more zero groups (the first of equals) as "::".
    static func ipv6Text(_ bytes: ArraySlice<UInt8>) -> String {
        let base = bytes.startIndex
        func group(_ i: Int) -> UInt16 { UInt16(bytes[base + 2 * i]) << 8 | UInt16(bytes[base + 2 * i + 1]) }
        var bestStart = -1
        var bestLength = 1
        var runStart = -1
        for i in 0..<8 {
            guard group(i) == 0 else {
                runStart = -1
                continue
            }
            if runStart < 0 { runStart = i }
            if i - runStart + 1 > bestLength {
                bestStart = runStart
                bestLength = i - runStart + 1
            }
        }
        var text = ""
        var i = 0
        while i < 8 {
            if i == bestStart {
                text += "::"
                i += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(group(i), radix: 16)
            i += 1
        }
        return text
    }
}
