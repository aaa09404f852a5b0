/// What can be learnt from a private key file without decrypting it: its
/// format, its key type and whether a passphrase protects it. Used to explain
/// an authentication failure instead of repeating libssh2's generic message.
public struct PrivateKeyInfo: Equatable, Sendable {
    public enum Format: String, Sendable { case openssh, pem, pkcs8, putty, unknown }
    public let format: Format
    /// "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ... when known.
    public let keyType: String?
    public let isEncrypted: Bool
    /// The public key's blob, which an OpenSSH key file holds in clear.
    public var publicBlob: [UInt8]? = nil

    public var isRSA: Bool { keyType == "ssh-rsa" }

    public static func inspect(_ text: String) -> PrivateKeyInfo {
        var text = text
        return text.withUTF8 { inspect(UnsafeRawBufferPointer($0)) }
    }

    /// Reads only the headers and, for OpenSSH keys, the clear public part
    /// (decoded into a buffer wiped on release, as the rest is private).
    static func inspect(_ file: UnsafeRawBufferPointer) -> PrivateKeyInfo {
        if file.hasPrefix("PuTTY-User-Key-File") {
            return PrivateKeyInfo(format: .putty, keyType: nil, isEncrypted: !file.contains("Encryption: none"))
        }
        if let body = file.pemBody(label: "OPENSSH PRIVATE KEY") {
            guard let decoded = body.base64Decoded() else { return inspectOpenSSH(UnsafeRawBufferPointer(start: nil, count: 0)) }
            return inspectOpenSSH(decoded.bytes)
        }
        for (label, keyType) in [("RSA", "ssh-rsa"), ("EC", "ecdsa"), ("DSA", "ssh-dss")] where file.contains("-----BEGIN \(label) PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pem, keyType: keyType, isEncrypted: file.contains("ENCRYPTED"))
        }
        if file.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: true)
        }
        if file.contains("-----BEGIN PRIVATE KEY-----") {
            return PrivateKeyInfo(format: .pkcs8, keyType: nil, isEncrypted: false)
        }
        return PrivateKeyInfo(format: .unknown, keyType: nil, isEncrypted: false)
    }

    /// openssh-key-v1: magic, cipher name, kdf name, kdf options, key count,
    /// then the public key blobs in clear even when the private part is encrypted.
    static func inspectOpenSSH(_ data: UnsafeRawBufferPointer) -> PrivateKeyInfo {
        let magic = "openssh-key-v1"
        guard data.count > magic.utf8.count + 1, data.hasPrefix(magic), data[magic.utf8.count] == 0 else {
            return PrivateKeyInfo(format: .openssh, keyType: nil, isEncrypted: false)
        }
        var reader = SSHBufferReader(UnsafeRawBufferPointer(rebasing: data[(magic.utf8.count + 1)...]))
        let cipher = reader.string().map { String(decoding: $0, as: UTF8.self) } ?? "none"
        _ = reader.string() // kdf name
        _ = reader.string() // kdf options
        _ = reader.uint32() // number of keys
        let blob = reader.string().map { Array($0) }
        let keyType = blob.flatMap { Fingerprint.keyType(ofBlob: $0) }
        return PrivateKeyInfo(format: .openssh, keyType: keyType, isEncrypted: cipher != "none", publicBlob: blob)
    }
}
