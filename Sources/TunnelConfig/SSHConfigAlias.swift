import TunnelPOSIX

/// A `Host` alias from the user's ~/.ssh/config. tunnel does not read
/// ssh_config (its profiles say everything), but a profile whose `host` is
/// such an alias fails to resolve; this lets that error say what the alias
/// stands for instead of only "does not resolve".
public struct SSHConfigAlias: Equatable, Sendable {
    /// Where the matching `Host` line is: "~/.ssh/config:12".
    public let location: String
    /// Settings of that block, first value wins as in ssh: ("HostName", "10.0.1.50").
    public let settings: [(key: String, value: String)]

    public static func == (a: SSHConfigAlias, b: SSHConfigAlias) -> Bool {
        a.location == b.location && a.settings.map(\.key) == b.settings.map(\.key) && a.settings.map(\.value) == b.settings.map(\.value)
    }

    /// The keywords worth repeating in the hint, in this order.
    static let keywords = ["HostName", "User", "Port", "IdentityFile", "ProxyJump", "ProxyCommand"]
    /// The profile key each one becomes.
    static let profileKeys = ["HostName": "host", "User": "user", "Port": "port", "IdentityFile": "identity"]

    /// The first `Host` block naming `host` literally (wildcard patterns are
    /// not followed: the hint must not guess).
    public static func find(host: String, configText: String, displayPath: String) -> SSHConfigAlias? {
        var lineNumber = 0
        var current: (line: Int, settings: [(key: String, value: String)])?
        for raw in configText.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let line = trim(raw, " \t\r")
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            // "Keyword value", "Keyword=value" or "Keyword = value".
            let keyEnd = line.firstIndex { $0 == " " || $0 == "\t" || $0 == "=" } ?? line.endIndex
            let keyword = String(line[..<keyEnd])
            var value = trim(line[keyEnd...], " \t")
            if value.hasPrefix("=") { value = trim(value.dropFirst(), " \t") }
            switch keyword.lowercased() {
            case "host":
                if let current { return SSHConfigAlias(location: "\(displayPath):\(current.line)", settings: current.settings) }
                let patterns = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { trim($0, "\"") }
                current = patterns.contains(host) ? (lineNumber, []) : nil
            case "match":
                if let current { return SSHConfigAlias(location: "\(displayPath):\(current.line)", settings: current.settings) }
            default:
                guard current != nil, let name = keywords.first(where: { $0.lowercased() == keyword.lowercased() }),
                      !current!.settings.contains(where: { $0.key == name }) else { continue }
                current!.settings.append((name, trim(value[...], "\"")))
            }
        }
        return current.map { SSHConfigAlias(location: "\(displayPath):\($0.line)", settings: $0.settings) }
    }

    private static func trim(_ text: Substring, _ characters: String) -> String {
        var trimmed = text
        while let c = trimmed.first, characters.contains(c) { trimmed.removeFirst() }
        while let c = trimmed.last, characters.contains(c) { trimmed.removeLast() }
        return String(trimmed)
    }

    /// Reads `home`/.ssh/config; nil when it has no such alias or cannot be read.
    public static func find(host: String, home: String) -> SSHConfigAlias? {
        guard let bytes = try? Files.readRegularFile(home + "/.ssh/config", limit: Config.maxFileSize) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        return find(host: host, configText: text, displayPath: "~/.ssh/config")
    }

    /// "\"bastion\" is a Host alias in ~/.ssh/config:3 (HostName 10.0.1.50, User rahul);
    /// tunnel does not read ssh_config: in the profile, set host = "10.0.1.50", user = "rahul"".
    public func hint(for host: String) -> String {
        var text = "\"\(host)\" is a Host alias in \(location)"
        if !settings.isEmpty { text += " (" + settings.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")" }
        text += "; tunnel does not read ssh_config"
        let keys = settings.compactMap { setting in
            SSHConfigAlias.profileKeys[setting.key].map { key in key == "port" && Int(setting.value) != nil ? "\(key) = \(setting.value)" : "\(key) = \"\(setting.value)\"" }
        }
        if !keys.isEmpty { text += ": in the profile, set " + keys.joined(separator: ", ") }
        if settings.contains(where: { $0.key == "ProxyJump" || $0.key == "ProxyCommand" }) {
            text += "; tunnel cannot go through a ProxyJump or ProxyCommand: the profile's host must be reachable directly"
        }
        return text
    }
}
