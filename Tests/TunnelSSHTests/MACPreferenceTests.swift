import CCryptoCalls
import TunnelTestSupport
import XCTest
@testable import TunnelSSH

/// The MAC tunnel offers first follows the CPU: hmac-sha2-256 where it has
/// SHA-256 instructions, hmac-sha2-512 where it has none.
final class MACPreferenceTests: XCTestCase {
    func testMACOrder_followsTheSHAInstructions() {
        XCTAssertEqual(SSHAlgorithms.macs(sha256InHardware: true), "hmac-sha2-256,hmac-sha2-512")
        XCTAssertEqual(SSHAlgorithms.macs(sha256InHardware: false), "hmac-sha2-512,hmac-sha2-256")
    }

    /// CPUID (or the Arm hwcaps) against what the kernel reports in /proc/cpuinfo.
    func testCPUDetection_agreesWithTheKernel() {
        XCTAssertFalse(CPUInfo.flags.isEmpty, "/proc/cpuinfo lists no CPU flags")
        let kernelSays = CPUInfo.hasSHA256Instructions
        XCTAssertEqual(tunnel_cpu_has_sha256_instructions() != 0, kernelSays)
        XCTAssertEqual(SSHAlgorithms.macs, SSHAlgorithms.macs(sha256InHardware: kernelSays))
    }

    /// ssh_config's MACs keep their own order over tunnel's.
    func testSSHConfigOrder_winsOverTheCPUs() {
        XCTAssertEqual(SSHAlgorithms.chosen(["hmac-sha2-512", "hmac-sha2-256"], from: SSHAlgorithms.macs), ["hmac-sha2-512", "hmac-sha2-256"])
        XCTAssertEqual(SSHAlgorithms.chosen(["hmac-sha2-256", "hmac-sha2-512"], from: SSHAlgorithms.macs), ["hmac-sha2-256", "hmac-sha2-512"])
    }
}
