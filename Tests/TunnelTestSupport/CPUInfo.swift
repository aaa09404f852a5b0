import Foundation

/// The CPU as the kernel describes it in /proc/cpuinfo, so tests can check
/// tunnel's own CPU detection against something independent of it.
public enum CPUInfo {
    /// The words of the `flags` (x86) and `Features` (Arm) lines.
    public static let flags: Set<String> = {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        return Set(cpuinfo.split(separator: "\n")
            .filter { $0.hasPrefix("flags") || $0.hasPrefix("Features") }
            .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }) }
            .map(String.init))
    }()

    /// SHA-256 instructions: x86 `sha_ni`, Arm `sha2`.
    public static var hasSHA256Instructions: Bool { flags.contains("sha_ni") || flags.contains("sha2") }
}
