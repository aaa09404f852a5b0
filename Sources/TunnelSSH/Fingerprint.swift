internal import COpenSSLKeys

public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8], padded: Bool = true) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(v >> 18)], alphabet[Int((v >> 12) & 63)], alphabet[Int((v >> 6) & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int(v >> 18)])
            out.append(alphabet[Int((v >> 12) & 63)])
            if rest == 2 { out.append(alphabet[Int((v >> 6) & 63)]) }
            if padded { out += Array(repeating: UInt8(ascii: "="), count: 3 - rest) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes standard base64, ignoring whitespace. Nil on any other character.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var text = String(text)
        return text.withUTF8 { input in
            var out = [UInt8](repeating: 0, count: input.count * 3 / 4 + 3)
            let n = out.withUnsafeMutableBytes { decode(UnsafeRawBufferPointer(input), into: $0) }
            return n.map { Array(out[0..<$0]) }
        }
    }

    /// Decodes into `output` (at least 3/4 of the input long); the bytes
    /// written, or nil for anything but base64 and white space.
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        values.withUnsafeBufferPointer { values in
            var count = 0
            var acc: UInt32 = 0
            var bits = 0
            for c in input {
                let v = values[Int(c)]
                if v >= 64 {
                    if v == skipped { continue }
                    return nil
                }
                acc = acc << 6 | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    guard count < output.count else { return nil }
                    output[count] = UInt8((acc >> UInt32(bits)) & 0xff)
                    count += 1
                }
            }
            return count
        }
    }

    private static let skipped: UInt8 = 64
    private static let invalid: UInt8 = 255

    /// Each byte's 6-bit value, `skipped` for padding and white space, else
    /// `invalid`. A table: branching on ranges mispredicted on every random
    /// character, which made hashed known_hosts names (salt and hash) slow.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: invalid, count: 256)
        for (value, c) in alphabet.enumerated() { table[Int(c)] = UInt8(value) }
        for c in "= \n\r\t".utf8 { table[Int(c)] = skipped }
        return table
    }()
}

public enum Fingerprint {
    /// "SHA256:<unpadded base64>" as ssh-keygen -l prints it.
    public static func sha256(_ blob: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        blob.withUnsafeBufferPointer { tunnel_sha256($0.baseAddress, blob.count, &digest) }
        return "SHA256:" + Base64.encode(digest, padded: false)
    }

    /// For an OpenSSH certificate blob, the certified key's own blob (what
    /// `ssh-add -l` and sshd fingerprint); nil for anything else.
    /// PROTOCOL.certkeys: type, nonce, then the key's fields as in its plain blob.
    public static func certifiedKey(ofBlob blob: [UInt8]) -> [UInt8]? {
        var reader = SSHReader(blob)
        guard let typeBytes = reader.string() else { return nil }
        let type = String(decoding: typeBytes, as: UTF8.self)
        let suffix = "-cert-v01@openssh.com"
        guard type.hasSuffix(suffix), reader.string() != nil else { return nil }
        let plain = String(type.dropLast(suffix.count))
        let fields: Int
        switch plain {
        case "ssh-ed25519": fields = 1
        case "ssh-rsa": fields = 2
        case "ssh-dss": fields = 4
        case _ where plain.hasPrefix("ecdsa-sha2-"): fields = 2
        default: return nil
        }
        var out: [UInt8] = []
        out.appendSSHString(plain)
        for _ in 0..<fields {
            guard let field = reader.string() else { return nil }
            out.appendSSHBytes(field)
        }
        return out
    }

    /// The key type named inside an SSH public key blob (its first string).
    public static func keyType(ofBlob blob: [UInt8]) -> String? {
        var reader = SSHReader(blob)
        return reader.string().map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Reads SSH wire-format fields (RFC 4251 5).
struct SSHReader {
    private let bytes: [UInt8]
    private var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func uint32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    mutating func string() -> [UInt8]? {
        guard let n = uint32(), Int(n) <= remaining else { return nil }
        defer { offset += Int(n) }
        return Array(bytes[offset..<offset + Int(n)])
    }

    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n <= remaining else { return nil }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
}
