import Glibc
internal import CLibSSH2
internal import CCryptoCalls
import TunnelPOSIX

/// Algorithm preferences. libssh2 1.10 has no AES-GCM or chacha20: the fastest
/// it offers are aes-ctr. Of its MACs, hmac-sha2-256 runs about three times
/// as fast as hmac-sha2-512 on CPUs with SHA instructions (and is OpenSSH's
/// own first choice of the two); without them hmac-sha2-512 is faster.
public enum SSHAlgorithms {
    public static let ciphers = "aes128-ctr,aes256-ctr,aes192-ctr"
    public static let macs = macs(sha256InHardware: tunnel_cpu_has_sha256_instructions() != 0)

    /// The MAC list for a CPU with or without SHA-256 instructions.
    public static func macs(sha256InHardware: Bool) -> String {
        sha256InHardware ? "hmac-sha2-256,hmac-sha2-512" : "hmac-sha2-512,hmac-sha2-256"
    }
    public static let kex = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,diffie-hellman-group-exchange-sha256"
    /// OpenSSH's own order; callers move the types already in known_hosts first,
    /// because 1.10 would otherwise negotiate ECDSA while known_hosts holds ed25519.
    public static let hostKeys = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]

    /// The ones of `wanted` (ssh_config's list, its order kept) that tunnel
    /// offers; nil when `wanted` is nil (tunnel's own list), [] when it
    /// leaves nothing.
    public static func chosen(_ wanted: [String]?, from offered: String) -> [String]? {
        guard let wanted else { return nil }
        let ours = offered.split(separator: ",").map(String.init)
        return wanted.filter { ours.contains($0) }
    }
}

/// The server's host key as presented during the handshake.
public struct HostKey: Equatable, Sendable {
    public let type: HostKeyType
    public let blob: [UInt8]
    /// "SHA256:..." as OpenSSH prints it.
    public var fingerprint: String { Fingerprint.sha256(blob) }
    /// The known_hosts key field.
    public var base64: String { Base64.encode(blob) }
}

public enum HostKeyType: String, Sendable, CaseIterable {
    case rsa = "ssh-rsa"
    case dss = "ssh-dss"
    case ecdsa256 = "ecdsa-sha2-nistp256"
    case ecdsa384 = "ecdsa-sha2-nistp384"
    case ecdsa521 = "ecdsa-sha2-nistp521"
    case ed25519 = "ssh-ed25519"
    case unknown = "unknown"

    init(libssh2 type: Int32) {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: self = .rsa
        case LIBSSH2_HOSTKEY_TYPE_DSS: self = .dss
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: self = .ecdsa256
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: self = .ecdsa384
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: self = .ecdsa521
        case LIBSSH2_HOSTKEY_TYPE_ED25519: self = .ed25519
        default: self = .unknown
        }
    }
}

/// One libssh2 session in non-blocking mode over a connected TCP socket.
/// Owns the socket (through its transport) and frees everything exactly once
/// in `close()`. Channels hold the session alive; the session tracks them so
/// it can free them first.
public final class SSHSession {
    let handle: OpaquePointer
    let transport: SSHTransport
    private var channels: [ObjectIdentifier: Unmanaged<SSHChannel>] = [:]
    /// Remote-forward listeners; libssh2 frees them with the session.
    private var listeners: [ObjectIdentifier: Unmanaged<SSHListener>] = [:]
    /// The server shut down its sending side (EPOLLRDHUP).
    var peerHungUp = false
    private var closed = false
    /// This thread's CCryptoCalls counters when the handshake began.
    private var shortcutBaseline: (contexts: UInt64, digests: UInt64, keys: UInt64, randoms: UInt64)?
    /// Which of CCryptoCalls' shortcuts libssh2's calls took during the
    /// handshake, for the log: both AES-CTR contexts batched, the packet MACs
    /// keyed with a digest fetched once, the padding drawn from the pool.
    private var shortcuts: [String] = []

    public init(socket: Socket) throws(SSHError) {
        precondition(SSHLibrary.initialized, "libssh2_init failed")
        transport = SSHTransport(socket: socket)
        guard let session = libssh2_session_init_ex(nil, nil, nil, Unmanaged.passUnretained(transport).toOpaque()) else {
            throw SSHError(call: "libssh2_session_init_ex", code: LIBSSH2_ERROR_ALLOC, message: "out of memory")
        }
        handle = session
        transport.install(on: session)
        libssh2_session_set_blocking(session, 0)
    }

    deinit {
        assert(closed, "SSHSession was not closed by its owner")
        if !closed { close(graceful: false) }
    }

    public var isClosed: Bool { closed }

    /// Sets the algorithm preferences before the handshake.
    /// `ciphers`, `macs`: a non-empty subset of tunnel's own lists, in the
    /// order wanted (see `SSHAlgorithms.chosen`); nil: tunnel's lists.
    public func preferAlgorithms(hostKeys: [String], ciphers: [String]? = nil, macs: [String]? = nil) throws(SSHError) {
        let cipherList = ciphers?.joined(separator: ",") ?? SSHAlgorithms.ciphers
        let macList = macs?.joined(separator: ",") ?? SSHAlgorithms.macs
        try prefer(LIBSSH2_METHOD_KEX, SSHAlgorithms.kex)
        try prefer(LIBSSH2_METHOD_HOSTKEY, hostKeys.joined(separator: ","))
        try prefer(LIBSSH2_METHOD_CRYPT_CS, cipherList)
        try prefer(LIBSSH2_METHOD_CRYPT_SC, cipherList)
        try prefer(LIBSSH2_METHOD_MAC_CS, macList)
        try prefer(LIBSSH2_METHOD_MAC_SC, macList)
    }

    private func prefer(_ method: Int32, _ list: String) throws(SSHError) {
        let rc = libssh2_session_method_pref(handle, method, list)
        if rc != 0 { throw handle.lastError("libssh2_session_method_pref(\(list))") }
    }

    /// One step of the key exchange. True when done.
    public func handshake() throws(SSHError) -> Bool {
        let baseline = shortcutBaseline ?? (tunnel_keystream_contexts_on_this_thread(),
                                            tunnel_hmac_prefetched_inits_on_this_thread(),
                                            tunnel_hmac_kept_key_inits_on_this_thread(),
                                            tunnel_random_pool_calls_on_this_thread())
        shortcutBaseline = baseline
        // libssh2 reads the identification line only inside this call.
        transport.huntsIdentification = true
        defer { transport.huntsIdentification = false }
        let done = try step(libssh2_session_handshake(handle, transport.socket.fd), handle, "libssh2_session_handshake")
        // libssh2 creates the two cipher contexts on this thread, inside the
        // last step, and sends its first encrypted packet (the service request).
        if done {
            shortcuts = [(Libssh2Patches.loaded.contains(.wholePacketCipher), "whole-packet cipher"),
                         (tunnel_keystream_contexts_on_this_thread() - baseline.contexts >= 2, "batched keystream"),
                         (tunnel_hmac_prefetched_inits_on_this_thread() > baseline.digests, "prefetched HMAC digest"),
                         (tunnel_hmac_kept_key_inits_on_this_thread() > baseline.keys, "kept HMAC keys"),
                         (tunnel_random_pool_calls_on_this_thread() > baseline.randoms, "pooled padding")]
                .filter(\.0).map(\.1)
        }
        return done
    }

    /// The negotiated algorithms, for the log: "aes128-ctr/hmac-sha2-512
    /// (whole-packet cipher, batched keystream, prefetched HMAC digest, kept
    /// HMAC keys, pooled padding)"; "whole-packet cipher" when the libssh2
    /// loaded is tunnel's build (Patches/libssh2).
    public var negotiatedAlgorithms: String {
        func name(_ m: Int32) -> String { libssh2_session_methods(handle, m).map { String(cString: $0) } ?? "?" }
        let taken = shortcuts.isEmpty ? "" : " (\(shortcuts.joined(separator: ", ")))"
        return "\(name(LIBSSH2_METHOD_KEX)) \(name(LIBSSH2_METHOD_HOSTKEY)) \(name(LIBSSH2_METHOD_CRYPT_CS))/\(name(LIBSSH2_METHOD_MAC_CS))\(taken)"
    }

    /// The server sent more than `SSHTransport.identificationLimit` bytes
    /// without an SSH identification line.
    public var identificationOverflow: Bool { transport.identificationOverflow }

    /// The first line the server sent before (or instead of) its
    /// identification, with control characters made visible.
    public var firstLineReceived: String {
        String(decoding: transport.firstLine, as: UTF8.self).escapingControlCharacters
    }

    /// The server's identification string, with control characters made visible.
    public var serverBanner: String {
        (libssh2_session_banner_get(handle).map { String(cString: $0) } ?? "").escapingControlCharacters
    }

    public func hostKey() -> HostKey? {
        var length = 0
        var type: Int32 = 0
        guard let raw = libssh2_session_hostkey(handle, &length, &type), length > 0 else { return nil }
        let blob = raw.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
        return HostKey(type: HostKeyType(libssh2: type), blob: blob)
    }

    public var isAuthenticated: Bool { libssh2_userauth_authenticated(handle) != 0 }

    /// The methods the server accepts for `user`; nil while waiting, [] when
    /// "none" authentication already succeeded.
    public func authMethods(user: String) throws(SSHError) -> IOResult<[String]> {
        let list = libssh2_userauth_list(handle, user, UInt32(user.utf8.count))
        if let list {
            return .done(String(cString: list).split(separator: ",").map(String.init))
        }
        if isAuthenticated { return .done([]) }
        if libssh2_session_last_errno(handle) == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        throw handle.lastError("libssh2_userauth_list")
    }

    /// One step of public-key authentication from a private key file.
    /// `publicKey`: the file whose key (or certificate) is offered; nil for the private key's own.
    public func authenticate(user: String, privateKey: String, publicKey: String? = nil, passphrase: String?) throws(SSHError) -> Bool {
        let rc = libssh2_userauth_publickey_fromfile_ex(handle, user, UInt32(user.utf8.count), publicKey, privateKey, passphrase)
        return try step(rc, handle, "libssh2_userauth_publickey_fromfile(\(publicKey ?? privateKey))")
    }

    // MARK: keepalive and channels

    /// A keepalive@ global request without want-reply: keeps NAT and
    /// firewall state alive when no ping channel is available. (With
    /// want-reply, 1.10 queues every answer forever.)
    public func sendKeepalive() {
        libssh2_keepalive_config(handle, 0, 1)
        var next: Int32 = 0
        _ = libssh2_keepalive_send(handle, &next)
    }

    /// Opens a channel; one open may be in flight per session and must be
    /// retried with the same arguments while it would block.
    func openChannel(type: String, message: [UInt8], window: UInt32, packetSize: UInt32) throws(SSHError) -> IOResult<SSHChannel> {
        let raw = message.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) {
                libssh2_channel_open_ex(handle, type, UInt32(type.utf8.count), window, packetSize, message.isEmpty ? nil : $0.baseAddress, UInt32(message.count))
            }
        }
        guard let raw else {
            let errno = libssh2_session_last_errno(handle)
            if errno == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
            var error = handle.lastError("libssh2_channel_open(\(type))")
            if error.code == LIBSSH2_ERROR_CHANNEL_FAILURE { error.refusal = ChannelOpenRefusal(libssh2Message: error.message) }
            throw error
        }
        return .done(adopt(raw))
    }

    /// Wraps a channel libssh2 created (an open, or a forwarded-tcpip
    /// channel accepted from a listener) and tracks it until it is freed.
    func adopt(_ raw: OpaquePointer) -> SSHChannel {
        let channel = SSHChannel(handle: raw, session: self)
        channels[ObjectIdentifier(channel)] = .passUnretained(channel)
        return channel
    }

    func track(_ listener: SSHListener) {
        listeners[ObjectIdentifier(listener)] = .passUnretained(listener)
    }

    func forget(_ listener: SSHListener) {
        listeners.removeValue(forKey: ObjectIdentifier(listener))
    }

    /// Opens a direct-tcpip channel (what `ssh -L` asks the server for).
    public func openDirectTCPIP(host: String, port: UInt16, originHost: String, originPort: UInt16,
                                window: UInt32 = SSHChannel.defaultWindow) throws(SSHError) -> IOResult<SSHChannel> {
        // RFC 4254 7.2: host to connect, port, originator address, originator port.
        var message: [UInt8] = []
        message.appendSSHString(host)
        message.appendUInt32(UInt32(port))
        message.appendSSHString(originHost)
        message.appendUInt32(UInt32(originPort))
        return try openChannel(type: "direct-tcpip", message: message, window: window, packetSize: SSHChannel.packetSize)
    }

    /// Opens a "session" channel with no command: used to ping the server.
    public func openSessionChannel() throws(SSHError) -> IOResult<SSHChannel> {
        try openChannel(type: "session", message: [], window: 32 * 1024, packetSize: SSHChannel.packetSize)
    }

    /// A channel no data is read from (the link's ping channel), set by its
    /// owner: the safest one for `readIncoming`'s zero-length reads.
    public weak var dataFreeChannel: SSHChannel?

    /// What `readIncoming` reads the socket through: the data-free channel,
    /// else a channel that owes no window adjust (`mayOweWindowAdjust`),
    /// else any that is neither freed nor waiting to be.
    var transportReadingChannel: SSHChannel? {
        if let channel = dataFreeChannel, !channel.isFreeing { return channel }
        var fallback: SSHChannel?
        for entry in channels.values {
            let channel = entry.takeUnretainedValue()
            guard !channel.isFreeing else { continue }
            if !channel.mayOweWindowAdjust { return channel }
            fallback = fallback ?? channel
        }
        return fallback
    }

    func forget(_ channel: SSHChannel) {
        channels.removeValue(forKey: ObjectIdentifier(channel))
    }

    /// Channels whose free waited on the peer; retained here until freed.
    private var deferredFrees: [SSHChannel] = []

    func deferFree(_ channel: SSHChannel) {
        channel.isFreeing = true
        deferredFrees.append(channel)
    }

    /// Retries frees that waited on the peer's CLOSE. Call after reading the socket.
    public func reapChannels() {
        guard !deferredFrees.isEmpty else { return }
        deferredFrees.removeAll { channel in
            guard channel.tryFree() else { return false }
            forget(channel)
            return true
        }
    }

    /// Frees the channels, then the session, then closes the socket. A graceful
    /// close sends SSH_MSG_DISCONNECT first (best effort, never waits).
    public func close(graceful: Bool) {
        guard !closed else { return }
        closed = true
        if graceful && transport.failure == nil && !transport.peerClosed {
            _ = libssh2_session_disconnect_ex(handle, SSH_DISCONNECT_BY_APPLICATION, "tunnel closed", "")
            transport.flush()
        }
        // From here on every send and recv fails at once, so no free waits on the network.
        transport.kill()
        transport.socket.shutdown(Socket.shutdownBoth)
        for channel in channels.values { channel.takeUnretainedValue().freeHandle() }
        channels.removeAll()
        for listener in listeners.values { listener.takeUnretainedValue().invalidate() }
        listeners.removeAll()
        deferredFrees.removeAll()
        _ = libssh2_session_free(handle)
        transport.socket.close()
    }
}

extension Array where Element == UInt8 {
    mutating func appendUInt32(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xff)); append(UInt8((v >> 8) & 0xff)); append(UInt8(v & 0xff))
    }
    mutating func appendSSHString(_ s: String) {
        appendSSHBytes(Array(s.utf8))
    }
    mutating func appendSSHBytes(_ bytes: [UInt8]) {
        appendUInt32(UInt32(bytes.count))
        append(contentsOf: bytes)
    }
}
