import Foundation
import XCTest

/// A network namespace a test made; `ip netns exec NAME` runs in it.
protocol NamedNetworkNamespace: AnyObject {
    var name: String { get }
}

/// A throwaway network namespace for reachability failures the sandbox's own
/// network would mask: inside it, 10.255.255.1 has no route, 10.9.9.2 is on a
/// link where nobody answers ARP (no route to host), and 10.9.9.3 has a fake
/// neighbour entry so SYNs leave and vanish (timed out).
final class NetworkNamespace: NamedNetworkNamespace {
    let name: String

    init() throws {
        name = "tunnel-test-\(getpid())-\(Int.random(in: 1000...9999))"
        let ip = "/usr/sbin/ip"
        let steps: [[String]] = [
            ["netns", "add", name],
            ["netns", "exec", name, ip, "link", "set", "lo", "up"],
            ["netns", "exec", name, ip, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            ["netns", "exec", name, ip, "addr", "add", "10.9.9.1/24", "dev", "v0"],
            ["netns", "exec", name, ip, "link", "set", "v0", "up"],
            ["netns", "exec", name, ip, "link", "set", "v1", "up"],
            ["netns", "exec", name, ip, "neigh", "add", "10.9.9.3", "lladdr", "02:00:00:00:00:99", "dev", "v0", "nud", "permanent"],
        ]
        for args in steps {
            let result = runCommand(ip, args)
            guard result.status == 0 else {
                runCommand(ip, ["netns", "del", name])
                throw NSError(domain: "netns", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: "ip \(args.joined(separator: " ")): \(result.output)"])
            }
        }
        // Fresh namespaces start with the kernel default (1024); set it in case this one inherits 0.
        _ = runCommand(ip, ["netns", "exec", name, "/usr/sbin/sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=1024"])
    }

    /// Runs a command inside the namespace.
    func run(_ path: String, _ args: [String], env: [String: String] = [:], timeout: Double = 60) -> Outcome {
        runCommand("/usr/sbin/ip", ["netns", "exec", name, path] + args, env: env, timeout: timeout)
    }

    /// Names for programs run in it: `ip netns exec` mounts /etc/netns/NAME/hosts
    /// over /etc/hosts. Each (name, addresses) resolves to those addresses in
    /// that order: a gai.conf ranks them, so glibc's own sorting (which puts the
    /// address nearest ours first) does not reorder them.
    func resolve(_ names: [(name: String, addresses: [String])]) {
        let dir = "/etc/netns/\(name)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var hosts = "127.0.0.1 localhost\n"
        // glibc's default table (gai.conf(5)) restated, since any precedence line replaces it.
        var gai = "precedence ::1/128 50\nprecedence ::/0 40\nprecedence 2002::/16 30\nprecedence ::/96 20\nprecedence ::ffff:0:0/96 10\n"
        for (host, addresses) in names {
            for (rank, address) in addresses.enumerated() {
                hosts += "\(address) \(host)\n"
                gai += "precedence ::ffff:\(address)/128 \(100 - rank)\n"
            }
        }
        write(hosts, to: dir + "/hosts")
        write(gai, to: dir + "/gai.conf")
    }

    deinit {
        runCommand("/usr/sbin/ip", ["netns", "del", name])
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(name)")
    }
}
