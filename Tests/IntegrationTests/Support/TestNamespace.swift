import Foundation
import XCTest

/// A network namespace this test made, joined to this one by a veth pair:
/// here 198.18.N.1, there 198.18.N.2 (a benchmarking range, used only for
/// these test hosts). Its loopback is its own, so a server listening on
/// 127.0.0.1 in it is reachable only from inside it.
final class TestNamespace: NamedNetworkNamespace {
    let name: String
    let hostAddress: String
    let insideAddress: String
    private let veth: String
    /// This side's end of the veth pair (it holds `hostAddress`).
    var hostInterface: String { veth + "a" }

    init() throws {
        let n = Int.random(in: 1...250)
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        name = "tunnel-test-\(tag)"
        veth = "tt\(tag)"
        hostAddress = "198.18.\(n).1"
        insideAddress = "198.18.\(n).2"
        let steps: [[String]] = [
            ["netns", "add", name],
            ["link", "add", veth + "a", "type", "veth", "peer", "name", veth + "b"],
            ["link", "set", veth + "b", "netns", name],
            ["addr", "add", hostAddress + "/30", "dev", veth + "a"],
            ["link", "set", veth + "a", "up"],
            ["netns", "exec", name, "ip", "addr", "add", insideAddress + "/30", "dev", veth + "b"],
            ["netns", "exec", name, "ip", "link", "set", veth + "b", "up"],
            ["netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ]
        for step in steps {
            let result = runCommand("/usr/bin/ip", step)
            guard result.status == 0 else {
                remove()
                throw NSError(domain: "netns", code: 1, userInfo: [NSLocalizedDescriptionKey: "ip \(step.joined(separator: " ")): \(result.output)"])
            }
        }
    }

    /// Deletes the namespace (its veth end goes with it, and so does ours).
    func remove() {
        runCommand("/usr/bin/ip", ["netns", "del", name])
        runCommand("/usr/bin/ip", ["link", "del", veth + "a"])
    }

    deinit { remove() }
}
