import Foundation

/// What tunnel should negotiate with a test sshd that offers everything,
/// worked out from /proc/cpuinfo rather than from tunnel's own code: with
/// SHA-256 instructions (x86 `sha_ni`, Arm `sha2`) hmac-sha2-256 comes first,
/// without them hmac-sha2-512.
enum DefaultAlgorithms {
    static let cpuHasSHA256Instructions: Bool = {
        let cpuinfo = read("/proc/cpuinfo")
        let words = cpuinfo.split(separator: "\n")
            .filter { $0.hasPrefix("flags") || $0.hasPrefix("Features") }
            .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }) }
        return words.contains("sha_ni") || words.contains("sha2")
    }()

    static var mac: String { cpuHasSHA256Instructions ? "hmac-sha2-256" : "hmac-sha2-512" }
    static var macList: String { cpuHasSHA256Instructions ? "hmac-sha2-256,hmac-sha2-512" : "hmac-sha2-512,hmac-sha2-256" }
    /// The `tunnel check` and log form: "aes128-ctr/hmac-sha2-256".
    static var pair: String { "aes128-ctr/\(mac)" }
}
