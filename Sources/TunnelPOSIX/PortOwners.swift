import Glibc

/// Who holds a TCP port, read from /proc the way `ss -tlnp` does: the
/// listening socket's inode from /proc/net/tcp{,6}, then the process whose
/// /proc/PID/fd links to that socket.
public enum PortOwners {
    public struct Owner: Equatable, Sendable, CustomStringConvertible {
        public let pid: pid_t
        public let name: String
        public let commandLine: String
        public var description: String { "pid \(pid) (\(name)): \(commandLine)" }
    }

    /// A listening socket on `port`, with the inode that identifies it.
    struct Listening: Equatable {
        let address: String
        let port: UInt16
        let inode: UInt64
    }

    /// Processes holding a listening socket on `port`. Empty when nothing
    /// listens, or when the holder's /proc entries are not readable (another
    /// user's process, without root): `listenerExists` tells those apart.
    /// `ipv6`: only that family's listeners; nil for both.
    public static func owners(ofPort port: UInt16, ipv6: Bool? = nil) -> (owners: [Owner], listenerExists: Bool) {
        let sockets = listening().filter { $0.port == port && (ipv6 == nil || $0.address.hasPrefix("v6:") == ipv6) }
        guard !sockets.isEmpty else { return ([], false) }
        let inodes = Set(sockets.map(\.inode))
        // A process holds the port if one of its descriptors links to "socket:[INODE]".
        let owners = processIDs().filter { pid in
            Files.directoryEntries("/proc/\(pid)/fd").contains { fd in
                guard let link = Files.readLink("/proc/\(pid)/fd/\(fd)"), link.hasPrefix("socket:["),
                      let inode = UInt64(link.dropFirst(8).dropLast()) else { return false }
                return inodes.contains(inode)
            }
        }.map(describe)
        return (owners, true)
    }

    /// The name and command line of a process.
    public static func describe(_ pid: pid_t) -> Owner {
        let comm = (try? Files.readText("/proc/\(pid)/comm"))??.split(separator: "\n").first.map(String.init) ?? "?"
        let raw = (try? Files.read("/proc/\(pid)/cmdline")) ?? nil
        let args = (raw ?? []).split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        // Another process's words go into one error line: no newline or escape sequence of theirs reaches the terminal.
        let line = (args.isEmpty ? comm : args.joined(separator: " ")).escapingControlCharacters
        return Owner(pid: pid, name: comm.escapingControlCharacters, commandLine: line.count > 200 ? line.prefix(200) + "…" : line)
    }

    static func listening() -> [Listening] {
        var out: [Listening] = []
        for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
            guard let text = (try? Files.readText(table)) ?? nil else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st ... uid timeout inode
                guard fields.count > 9, fields[3] == "0A" else { continue }
                let local = fields[1].split(separator: ":")
                guard local.count == 2, let port = UInt16(local[1], radix: 16), let inode = UInt64(fields[9]) else { continue }
                out.append(Listening(address: (v6 ? "v6:" : "") + local[0], port: port, inode: inode))
            }
        }
        return out
    }

    static func processIDs() -> [pid_t] {
        Files.directoryEntries("/proc").compactMap { pid_t($0) }
    }
}

/// What this process may bind.
public enum Privileges {
    /// Ports below this need CAP_NET_BIND_SERVICE (the sysctl, default 1024).
    public static var unprivilegedPortStart: Int {
        guard let text = (try? Files.readText("/proc/sys/net/ipv4/ip_unprivileged_port_start")) ?? nil,
              let value = Int(text.split(whereSeparator: \.isWhitespace).first ?? "") else { return 1024 }
        return value
    }

    public static var isRoot: Bool { geteuid() == 0 }

    /// CAP_NET_BIND_SERVICE (bit 10) in the effective set, from /proc/self/status.
    public static var hasNetBindService: Bool {
        guard let text = (try? Files.readText("/proc/self/status")) ?? nil else { return false }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            if let hex = line.split(whereSeparator: \.isWhitespace).last, let mask = UInt64(hex, radix: 16) {
                return mask & (1 << 10) != 0
            }
        }
        return false
    }
}
