import TunnelConfig

/// What a name on the command line stands for when no profile has it: an
/// ssh_config alias with forward lines (`tunnel up ALIAS`).
enum SSHConfigAliasTunnel {
    enum Lookup {
        /// ssh_config says nothing that makes the name a tunnel.
        case none
        /// ssh_config cannot be read for it: what ssh said.
        case unreadable(SSHConfigError)
        /// The tunnel, and a note for each forward line left out.
        case tunnel(AdHocTunnel, notes: [String])
    }

    /// As for a profile naming the alias: the same checks on its
    /// LocalForward/DynamicForward lines, and RemoteForward lines tunnel
    /// cannot serve left out with a note. Throws a one-line message when
    /// its forwards are wrong or all left out.
    static func lookup(_ name: String, source: SSHConfigSource) throws(SSHConfigError) -> Lookup {
        // `daemon` names the [daemon] table, never an alias: the profile lookup says so.
        guard !Config.reservedProfileNames.contains(name) else { return .none }
        let found: SSHConfigEntry?
        do throws(SSHConfigError) { found = try SSHConfigLookup.query(name, source: source) } catch { return .unreadable(error) }
        // nil: ssh_config is off ("none") or ssh is not installed.
        guard let entry = found else { return .none }
        let local = entry.settings("localforward"), dynamic = entry.settings("dynamicforward")
        guard !local.isEmpty || !dynamic.isEmpty || !entry.settings("remoteforward").isEmpty else { return .none }
        _ = try entry.forwards(for: name, publicAllowed: false)
        var notes: [String] = []
        let remote = entry.servableRemoteForwards(for: name, label: name, publicAllowed: false, notes: &notes)
        guard !local.isEmpty || !dynamic.isEmpty || !remote.isEmpty else {
            throw SSHConfigError(message: "\(name): ssh_config's forwards for it are all left out (\(notes.joined(separator: "; "))), so there is nothing to bring up")
        }
        let adHoc = AdHocTunnel(name: nil, destination: name, forwards: AdHocTunnel.forwards(fromLocalForward: local),
                                dynamic: AdHocTunnel.forwards(fromDynamicForward: dynamic), remote: remote.map(\.text),
                                origin: .sshConfig, sshConfig: source)
        return .tunnel(adHoc, notes: notes)
    }
}

extension SSHConfigAliasTunnel {
    /// For a name that is neither a profile nor an alias with forward lines:
    /// when ~/.ssh/config has a `Host` block for it, what to say instead of
    /// "no profile named" (the user meant that host), and the fix.
    static func withoutForwards(_ name: String, source: SSHConfigSource, home: String) -> (problem: String, fix: String)? {
        let found: SSHConfigAlias?
        switch source {
        case .none: found = nil
        case .standard: found = SSHConfigAlias.find(host: name, home: home)
        case .file(let path): found = SSHConfigAlias.find(host: name, file: path, displayPath: path)
        }
        guard let alias = found else { return nil }
        return ("\(name) is a Host in ssh_config (\(alias.location)) with no LocalForward, DynamicForward or RemoteForward, and no profile",
                "say what to forward: `tunnel up -L PORT:HOST:HOSTPORT \(name)` (or -D PORT), or add a LocalForward line to that Host block")
    }
}
