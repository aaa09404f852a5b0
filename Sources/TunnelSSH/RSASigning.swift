import Glibc
internal import CLibSSH2
internal import COpenSSLKeys
import TunnelPOSIX

/// RSA public-key authentication with SHA-2 signatures (RFC 8332).
///
/// libssh2 1.10 signs RSA keys only as "ssh-rsa" (SHA-1), which OpenSSH 8.8
/// and later refuse by default. It does take a sign callback, and it names the
/// algorithm after the first string of the public key blob it is given: a blob
/// whose type reads "rsa-sha2-512" makes the request say rsa-sha2-512, and the
/// callback then signs with SHA-512 itself (key file) or asks ssh-agent to.
/// OpenSSH (7.2 and later) reads such a blob as the same RSA key; other servers
/// may not, so they keep libssh2's own "ssh-rsa" path.
public enum RSASignatureAlgorithm: String, Sendable {
    case sha512 = "rsa-sha2-512"
    case sha256 = "rsa-sha2-256"

    /// SSH_AGENT_RSA_SHA2_512 / _256 in a sign request's flags.
    var agentFlag: UInt32 { self == .sha512 ? 4 : 2 }

    /// rsa-sha2-512 for OpenSSH 7.2 and later (read from the server's
    /// version banner), nil for servers the blob rewrite is not known to suit.
    public static func forServer(banner: String) -> RSASignatureAlgorithm? {
        // "SSH-2.0-OpenSSH_9.2p1 Debian-2", "SSH-2.0-OpenSSH_for_Windows_8.1"
        guard let range = banner.firstRange(of: "OpenSSH_") else { return nil }
        var rest = banner[range.upperBound...]
        if rest.hasPrefix("for_Windows_") { rest = rest.dropFirst("for_Windows_".count) }
        let numbers = rest.prefix { $0.isNumber || $0 == "." }.split(separator: ".").compactMap { Int($0) }
        guard numbers.count >= 2 else { return nil }
        return (numbers[0], numbers[1]) >= (7, 2) ? .sha512 : nil
    }

    /// The blob handed to libssh2: the key's blob with its type string
    /// ("ssh-rsa") replaced by this algorithm's name.
    func requestBlob(for keyBlob: [UInt8]) -> [UInt8]? {
        var reader = SSHReader(keyBlob)
        guard let type = reader.string(), type == Array("ssh-rsa".utf8) else { return nil }
        var blob: [UInt8] = []
        blob.appendSSHString(rawValue)
        blob += keyBlob[(4 + type.count)...]
        return blob
    }
}

/// An RSA private key read from an unencrypted file (OpenSSH, PEM or PKCS#8).
final class RSAPrivateKey {
    private let pkey: OpaquePointer  // tunnel_rsa_key
    /// "ssh-rsa", e, n: the key as the server's authorized_keys knows it.
    let publicBlob: [UInt8]

    /// nil when `file` is not an unencrypted RSA private key OpenSSL or this
    /// parser can read. The private numbers are read from `file` (and its
    /// base64-decoded copy, wiped on release) without other copies.
    init?(file: SecretBytes) {
        let loaded: OpaquePointer?
        if let body = file.bytes.pemBody(label: "OPENSSH PRIVATE KEY") {
            guard let decoded = body.base64Decoded() else { return nil }
            loaded = RSAPrivateKey.fromOpenSSH(decoded.bytes)
        } else {
            loaded = file.bytes.withMemoryRebound(to: CChar.self) { tunnel_rsa_from_pem($0.baseAddress, Int32($0.count)) }
        }
        guard let loaded else { return nil }
        var e = [UInt8](repeating: 0, count: 1024), n = [UInt8](repeating: 0, count: 2048)
        let elen = tunnel_rsa_public_field(loaded, "e", &e, Int32(e.count))
        let nlen = tunnel_rsa_public_field(loaded, "n", &n, Int32(n.count))
        guard elen > 0, nlen > 0 else {
            tunnel_rsa_free(loaded)
            return nil
        }
        var blob: [UInt8] = []
        blob.appendSSHString("ssh-rsa")
        blob.appendMPInt(e[0..<Int(elen)])
        blob.appendMPInt(n[0..<Int(nlen)])
        pkey = loaded
        publicBlob = blob
    }

    /// From the text of a key file (tests).
    convenience init?(text: String) {
        let file = SecretBytes(count: text.utf8.count)
        file.mutableBytes.copyBytes(from: text.utf8)
        self.init(file: file)
    }

    deinit { tunnel_rsa_free(pkey) }

    /// openssh-key-v1, unencrypted: after the public blobs comes a section of
    /// check ints, then "ssh-rsa", n, e, d, iqmp, p, q, comment.
    private static func fromOpenSSH(_ data: UnsafeRawBufferPointer) -> OpaquePointer? {
        let magic = "openssh-key-v1"
        guard data.hasPrefix(magic), data.count > magic.utf8.count, data[magic.utf8.count] == 0 else { return nil }
        var reader = SSHBufferReader(UnsafeRawBufferPointer(rebasing: data[(magic.utf8.count + 1)...]))
        guard reader.string()?.equals("none") == true, reader.string() != nil, reader.string() != nil,
              reader.uint32() == 1, reader.string() != nil, let section = reader.string() else { return nil }
        var key = SSHBufferReader(section)
        guard let check1 = key.uint32(), key.uint32() == check1, key.string()?.equals("ssh-rsa") == true,
              let n = key.string(), let e = key.string(), let d = key.string(),
              let iqmp = key.string(), let p = key.string(), let q = key.string() else { return nil }
        func base(_ b: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? { b.baseAddress?.assumingMemoryBound(to: UInt8.self) }
        return tunnel_rsa_from_fields(base(n), n.count, base(e), e.count, base(d), d.count,
                                      base(iqmp), iqmp.count, base(p), p.count, base(q), q.count)
    }

    /// The raw PKCS#1 v1.5 signature over `data`.
    func sign(_ data: UnsafeRawBufferPointer, with algorithm: RSASignatureAlgorithm) -> [UInt8]? {
        var signature = [UInt8](repeating: 0, count: Int(tunnel_rsa_size(pkey)))
        var length = signature.count
        guard tunnel_rsa_sign(pkey, algorithm == .sha512 ? 1 : 0, data.baseAddress, data.count, &signature, &length) == 0 else { return nil }
        return Array(signature[0..<length])
    }
}

/// Asks ssh-agent for an rsa-sha2 signature (libssh2 1.10's agent code only
/// asks for ssh-rsa). Bounded by a deadline: an agent waiting for a
/// confirmation nobody gives must not hang the supervisor.
enum AgentSigner {
    struct Failure: Error { let message: String }

    private static let signRequest: UInt8 = 13, signResponse: UInt8 = 14

    static func sign(socketPath: String, keyBlob: [UInt8], data: UnsafeRawBufferPointer,
                     algorithm: RSASignatureAlgorithm, timeout: Double) throws(Failure) -> [UInt8] {
        let deadline = Instant.now().adding(seconds: timeout)
        var body: [UInt8] = [signRequest]
        body.appendSSHBytes(keyBlob)
        body.appendSSHBytes(Array(data))
        body.appendUInt32(algorithm.agentFlag)
        var request: [UInt8] = []
        request.appendUInt32(UInt32(body.count))
        request += body

        let answer: [UInt8]?
        do {
            answer = try exchange(request, socketPath: socketPath, deadline: deadline)
        } catch {
            throw Failure(message: "ssh-agent at \(socketPath): \(error.errno)")
        }
        guard let reply = answer else { throw Failure(message: "ssh-agent did not answer within \(Int(timeout)) s") }
        guard reply.first == signResponse else {
            throw Failure(message: "ssh-agent refused to sign with \(algorithm.rawValue)")
        }
        var reader = SSHReader(Array(reply.dropFirst()))
        guard let blob = reader.string() else { throw Failure(message: "ssh-agent sent a malformed signature") }
        var signature = SSHReader(blob)
        let name = signature.string().map { String(decoding: $0, as: UTF8.self) } ?? "?"
        // An agent older than OpenSSH 7.2 ignores the flag and signs with SHA-1.
        guard name == algorithm.rawValue, let raw = signature.string() else {
            throw Failure(message: "ssh-agent signed with \(name), not \(algorithm.rawValue): it is too old for SHA-2 RSA signatures")
        }
        return raw
    }

    /// One request, one length-prefixed reply; nil if the agent is silent
    /// until `deadline`, hangs up, or announces an absurd length.
    private static func exchange(_ request: [UInt8], socketPath: String, deadline: Instant) throws(SystemError) -> [UInt8]? {
        let socket = try Socket.unix()
        defer { socket.close() }
        guard case .done = try socket.connect(.unix(path: socketPath), until: deadline),
              case .done = try socket.sendAll(request, until: deadline),
              case .done(let header) = try socket.receive(exactly: 4, until: deadline) else { return nil }
        var reader = SSHReader(header)
        let length = Int(reader.uint32() ?? 0)
        guard length > 0 && length <= 256 * 1024, case .done(let payload) = try socket.receive(exactly: length, until: deadline) else { return nil }
        return payload
    }
}

/// What the libssh2 sign callback reaches through its `abstract` pointer.
final class RSASigningRequest {
    enum Signer {
        case key(RSAPrivateKey)
        case agent(socketPath: String, keyBlob: [UInt8])
    }

    let signer: Signer
    let algorithm: RSASignatureAlgorithm
    let requestBlob: [UInt8]
    private let agentTimeout: Double
    /// Why signing failed, for the error message (libssh2 only says "Callback returned error").
    private(set) var failure: String?
    /// The `void *` libssh2 hands back to the callback; stable while a request runs.
    let abstract = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1)

    init?(signer: Signer, algorithm: RSASignatureAlgorithm, agentTimeout: Double) {
        let keyBlob: [UInt8]
        switch signer {
        case .key(let key): keyBlob = key.publicBlob
        case .agent(_, let blob): keyBlob = blob
        }
        guard let requestBlob = algorithm.requestBlob(for: keyBlob) else { return nil }
        self.signer = signer
        self.algorithm = algorithm
        self.requestBlob = requestBlob
        self.agentTimeout = agentTimeout
        abstract.initialize(to: nil)
        abstract.pointee = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { abstract.deallocate() }

    fileprivate func sign(_ data: UnsafeRawBufferPointer) -> [UInt8]? {
        switch signer {
        case .key(let key):
            guard let signature = key.sign(data, with: algorithm) else {
                failure = "OpenSSL could not sign with \(algorithm.rawValue)"
                return nil
            }
            return signature
        case .agent(let socketPath, let keyBlob):
            do {
                return try AgentSigner.sign(socketPath: socketPath, keyBlob: keyBlob, data: data, algorithm: algorithm, timeout: agentTimeout)
            } catch {
                failure = error.message
                return nil
            }
        }
    }
}

extension SSHSession {
    /// One step of public-key authentication signed by `request`.
    func authenticate(user: String, rsa request: RSASigningRequest) throws(SSHError) -> Bool {
        let rc = request.requestBlob.withUnsafeBufferPointer { blob in
            libssh2_userauth_publickey(handle, user, blob.baseAddress, blob.count, { _, signature, signatureLength, data, dataLength, abstract in
                guard let signature, let signatureLength, let context = abstract?.pointee else { return -1 }
                let request = Unmanaged<RSASigningRequest>.fromOpaque(context).takeUnretainedValue()
                guard let bytes = request.sign(UnsafeRawBufferPointer(start: data, count: dataLength)),
                      let out = malloc(max(1, bytes.count))?.assumingMemoryBound(to: UInt8.self) else { return -1 }
                // libssh2 frees it with its allocator: the default, free().
                out.initialize(from: bytes, count: bytes.count)
                signature.pointee = out
                signatureLength.pointee = bytes.count
                return 0
            }, request.abstract)
        }
        return try step(rc, handle, "libssh2_userauth_publickey(\(request.algorithm.rawValue))")
    }
}

extension Array where Element == UInt8 {
    /// An SSH mpint from a big-endian magnitude: a leading zero keeps it positive.
    mutating func appendMPInt(_ magnitude: ArraySlice<UInt8>) {
        let trimmed = magnitude.drop { $0 == 0 }
        let pad = (trimmed.first ?? 0) & 0x80 != 0
        appendUInt32(UInt32(trimmed.count + (pad ? 1 : 0)))
        if pad { append(0) }
        append(contentsOf: trimmed)
    }
}
