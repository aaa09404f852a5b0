import TunnelPOSIX

/// A `Host` alias from the user's ~/.ssh/config, found by a plain scan when
/// `ssh -G` did not resolve it (ssh_config turned off, openssh-client not
/// installed, or ssh reading another home directory): the "does not
/// resolve" error then says what the alias stands for and why tunnel did not
/// follow it. The real lookup is `SSHConfigLookup`.
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

    /// The `Host` blocks naming `host` literally, merged as ssh merges them
    /// (the first value of a keyword wins; the location is the first
    /// block's). Wildcard patterns and Match blocks are not followed: the
    /// hint must not guess.
    public static func find(host: String, configText: String, displayPath: String) -> SSHConfigAlias? {
        var lineNumber = 0
        var found: (line: Int, settings: [(key: String, value: String)])?
        var inMatchingBlock = false
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
                let patterns = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { trim($0, "\"") }
                inMatchingBlock = patterns.contains(host)
                if inMatchingBlock && found == nil { found = (lineNumber, []) }
            case "match":
                inMatchingBlock = false
            default:
                guard inMatchingBlock, let name = keywords.first(where: { $0.lowercased() == keyword.lowercased() }),
                      !found!.settings.contains(where: { $0.key == name }) else { continue }
                found!.settings.append((name, trim(value[...], "\"")))
            }
        }
        return found.map { SSHConfigAlias(location: "\(displayPath):\($0.line)", settings: $0.settings) }
    }

    private static func trim(_ text: Substring, _ characters: String) -> String {
        var trimmed = text
        while let c = trimmed.first, characters.contains(c) { trimmed.removeFirst() }
        while let c = trimmed.last, characters.contains(c) { trimmed.removeLast() }
        return String(trimmed)
    }

    /// Reads `home`/.ssh/config; nil when it has no such alias or cannot be read.
    public static func find(host: String, home: String) -> SSHConfigAlias? {
        find(host: host, file: home + "/.ssh/config", displayPath: "~/.ssh/config")
    }

    /// Reads `file` (shown as `displayPath`); nil when it has no such alias or cannot be read.
    public static func find(host: String, file: String, displayPath: String) -> SSHConfigAlias? {
        guard let bytes = try? Files.readRegularFile(file, limit: Config.maxFileSize) else { return nil }
        return find(host: host, configText: String(decoding: bytes, as: UTF8.self), displayPath: displayPath)
    }

    /// Why ssh_config did not resolve the alias.
    public enum Unresolved: Equatable, Sendable {
        case turnedOff
        case sshMissing
        /// ssh was asked and did not see it (it reads the password database's
        /// home directory, not $HOME).
        case notSeenBySSH

        public init(source: SSHConfigSource) {
            self = source == .none ? .turnedOff : ProcessControl.which("ssh") == nil ? .sshMissing : .notSeenBySSH
        }

        var reason: String {
            switch self {
            case .turnedOff: "ssh_config = \"none\" keeps tunnel from reading ssh_config"
            case .sshMissing: "tunnel reads ssh_config through `ssh -G`, and ssh is not installed (apt-get install openssh-client)"
            case .notSeenBySSH: "`ssh -G` did not see it (ssh reads ~/.ssh/config of the password database's home directory, not $HOME)"
            }
        }
    }

    /// "\"bastion\" is a Host alias in ~/.ssh/config:3 (HostName 10.0.1.50, User rahul);
    /// tunnel reads ssh_config through `ssh -G`, and ssh is not installed (apt-get install openssh-client);
    /// or in the profile, set host = "10.0.1.50", user = "rahul"".
    public func hint(for host: String, _ why: Unresolved) -> String {
        var text = "\"\(host)\" is a Host alias in \(location)"
        if !settings.isEmpty { text += " (" + settings.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")" }
        text += "; " + why.reason
        let keys = settings.compactMap { setting in
            SSHConfigAlias.profileKeys[setting.key].map { key in key == "port" && Int(setting.value) != nil ? "\(key) = \(setting.value)" : "\(key) = \"\(setting.value)\"" }
        }
        let jumps = settings.filter { $0.key == "ProxyJump" || $0.key == "ProxyCommand" }
            .map { $0.key == "ProxyJump" ? "jump = \"\($0.value)\"" : "proxy_command = \"\($0.value)\"" }
        if !keys.isEmpty || !jumps.isEmpty { text += "; or in the profile, set " + (keys + jumps).joined(separator: ", ") }
        return text
    }

    /// The hint when no alias was found either.
    public static func hint(unresolved why: Unresolved) -> String? {
        why == .sshMissing ? "if it is an ssh_config alias: " + why.reason : nil
    }
}
