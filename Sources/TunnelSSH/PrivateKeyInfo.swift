/// What can be learnt from a private key file without decrypting it: its
/// format, its key type and whether a passphrase protects it. Used to explain
/// an authentication failure instead of repeating libssh2's generic message.
public struct PrivateKeyInfo: Equatable, Sendable {
    public enum Format: String, Sendable { case openssh, pem, pkcs8, putty, unknown }
    public let format: Format
    /// "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ... when known.
    public let keyType: String?
    public let isEncrypted: Bool

    public var isRSA: Bool { keyType == "ssh-rsa" }

    public static func inspect(_ text: String) -> PrivateKeyInfo {
        if text.hasPrefix("PuTTY-User-Key-File") {
            return PrivateKeyInfo(format: .putty, keyType: nil, isEncrypted: !text.contains("Encryption: none"))
        }
        if let body = pemBody(text, label: "OPENSSH PRIVATE KEY") {
            return inspectOpenSSH(Base64.decode(body) ?? [])
        }
        if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pem, keyType: "ssh-rsa", isEncrypted: text.contains("ENCRYPTED"))
        }
        if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pem, keyType: "ecdsa", isEncrypted: text.contains("ENCRYPTED"))
        }
        if text.contains("-----BEGIN DSA PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pem, keyType: "ssh-dss", isEncrypted: text.contains("ENCRYPTED"))
        }
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: true)
        }
        if text.contains("-----BEGIN PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: false)
        }
        return PrivateKeyInfo(format: .unknown, keyType: nil, isEncrypted: false)
    }

    /// openssh-key-v1: magic, cipher name, kdf name, kdf options, key count,
    /// then the public key blobs in clear even when the private part is encrypted.
    static func inspectOpenSSH(_ data: [UInt8]) -> PrivateKeyInfo {
        let magic = Array("openssh-key-v1".utf8) + [0]
        guard data.count > magic.count, Array(data[0..<magic.count]) == magic else {
            return PrivateKeyInfo(format: .openssh, keyType: nil, isEncrypted: false)
        }
        var reader = SSHReader(Array(data[magic.count...]))
        let cipher = reader.string().map { String(decoding: $0, as: UTF8.self) } ?? "none"
        _ = reader.string() // kdf name
        _ = reader.string() // kdf options
        _ = reader.uint32() // number of keys
        let keyType = reader.string().flatMap { Fingerprint.keyType(ofBlob: $0) }
        return PrivateKeyInfo(format: .openssh, keyType: keyType, isEncrypted: cipher != "none")
    }

    static func pemBody(_ text: String, label: String) -> Substring? {
        guard let start = text.firstRange(of: "-----BEGIN \(label)-----"),
              let end = text[start.upperBound...].firstRange(of: "-----END \(label)-----") else { return nil }
        return text[start.upperBound..<end.lowerBound]
    }
}
