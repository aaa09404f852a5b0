import TunnelTestSupport

/// What tunnel should negotiate with a test sshd that offers everything,
/// worked out from /proc/cpuinfo rather than from tunnel's own code: with
/// SHA-256 instructions hmac-sha2-256 comes first, without them hmac-sha2-512.
enum DefaultAlgorithms {
    static var mac: String { CPUInfo.hasSHA256Instructions ? "hmac-sha2-256" : "hmac-sha2-512" }
    static var macList: String { CPUInfo.hasSHA256Instructions ? "hmac-sha2-256,hmac-sha2-512" : "hmac-sha2-512,hmac-sha2-256" }
    /// The `tunnel check` and log form: "aes128-ctr/hmac-sha2-256".
    static var pair: String { "aes128-ctr/\(mac)" }
}
