internal import CCryptoCalls
import Synchronization

/// Whether CCryptoCalls' libcrypto shortcuts act for libssh2's calls in this
/// process: only for libssh2 1.10.x or 1.11.x on OpenSSL 3.x, each unless its
/// switch (TUNNEL_CTR_BATCH, TUNNEL_HMAC_PREFETCH, TUNNEL_HMAC_KEYS,
/// TUNNEL_RANDOM_POOL) is 0.
public enum CryptoShortcuts {
    /// "libcrypto shortcuts for libssh2: on: libssh2 1.10.0, OpenSSL 3.0.19",
    /// with "; switched off: …" for those a switch turned off, or
    /// "libcrypto shortcuts for libssh2: off: libssh2 1.9.0 is not 1.10.x or 1.11.x".
    public static var status: String {
        var line = "libcrypto shortcuts for libssh2: " + String(cString: tunnel_crypto_calls_status())
        if tunnel_crypto_calls_active() != 0 {
            let off = [(tunnel_keystream_enabled(), "batched keystream"), (tunnel_hmac_prefetch_enabled(), "prefetched HMAC digest"),
                       (tunnel_hmac_keys_kept(), "kept HMAC keys"), (tunnel_random_pool_enabled(), "pooled padding")].filter { $0.0 == 0 }.map(\.1)
            if !off.isEmpty { line += "; switched off: " + off.joined(separator: ", ") }
        }
        return line
    }

    private static let reported = Atomic<Bool>(false)

    /// `status` for the first caller in the process, nil for every later one,
    /// so the process logs it once.
    public static func statusOnce() -> String? {
        reported.exchange(true, ordering: .relaxed) ? nil : status
    }
}
