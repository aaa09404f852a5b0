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
