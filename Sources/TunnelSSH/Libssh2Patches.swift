import Glibc

/// Which of tunnel's patches (Patches/libssh2) the libssh2 loaded in this
/// process carries, as its `libssh2_tunnel_patches()` says; empty for any
/// other build, such as the system's when `Scripts/libssh2` was not run.
public struct Libssh2Patches: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// One cipher call per packet (per-packet-cipher.patch).
    public static let wholePacketCipher = Libssh2Patches(rawValue: 1)
    /// An ed25519 certificate's signature named ssh-ed25519
    /// (ed25519-certificates.patch).
    public static let ed25519CertificateSignatures = Libssh2Patches(rawValue: 2)
    /// A window adjustment counted by what its packet granted, also when
    /// its sending waited out a key exchange (window-adjust-after-rekey.patch).
    public static let windowAdjustAfterRekey = Libssh2Patches(rawValue: 4)
    /// Every patch in Patches/libssh2/series.
    public static let all: Libssh2Patches = [.wholePacketCipher, .ed25519CertificateSignatures, .windowAdjustAfterRekey]

    public static let loaded: Libssh2Patches = {
        // RTLD_DEFAULT (a null handle): libssh2 is loaded with the executable.
        guard let symbol = dlsym(nil, "libssh2_tunnel_patches") else { return [] }
        return Libssh2Patches(rawValue: unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)())
    }()
}
