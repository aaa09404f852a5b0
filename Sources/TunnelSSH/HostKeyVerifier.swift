/// Checks the key a server presented against known_hosts before any byte is
/// forwarded. Nothing ever prompts: an unknown key is refused under strict and
/// learnt under accept-new; a changed or revoked key is always refused.
public enum HostKeyVerifier {
    public enum Outcome: Equatable, Sendable {
        case trusted(line: Int)
        case learned(line: String)
    }

    /// Where and how a hop's host key is looked up and recorded.
    public struct Lookup: Sendable {
        /// Read in order; learned keys go to the first. Never empty.
        public let files: [KnownHosts]
        /// The name in known_hosts: HostKeyAlias, else host or [host]:port.
        public let name: String
        /// HashKnownHosts: record learned keys under a hashed name.
        public let hashed: Bool
        /// Each file's entries for `name`, found once for the preferred
        /// algorithms and the verdict alike.
        public let matching: [[KnownHosts.Entry]]

        public init(files: [KnownHosts], host: String, port: UInt16, alias: String? = nil, hashed: Bool = false) {
            precondition(!files.isEmpty)
            self.files = files
            self.name = alias ?? KnownHosts.lookupName(host: host, port: port)
            self.hashed = hashed
            self.matching = files.map { [name] in $0.entries(matching: name) }
        }

        /// Reads every file (a missing one is empty).
        public static func load(paths: [String], host: String, port: UInt16, alias: String? = nil, hashed: Bool = false) throws(HostKeyFailure) -> Lookup {
            var files: [KnownHosts] = []
            for path in paths { files.append(try KnownHosts.load(path: path)) }
            return Lookup(files: files, host: host, port: port, alias: alias, hashed: hashed)
        }

        /// The file learned keys are written to.
        public var path: String { files[0].path }
    }

    /// Host key algorithms to offer, the ones already trusted for this host first.
    public static func preferredAlgorithms(_ lookup: Lookup) -> [String] {
        var known: [String] = []
        for entries in lookup.matching {
            for type in KnownHosts.keyTypes(of: entries) where !known.contains(type) { known.append(type) }
        }
        return known.filter { SSHAlgorithms.hostKeys.contains($0) } + SSHAlgorithms.hostKeys.filter { !known.contains($0) }
    }

    /// Trusted when any file trusts the key; refused when any file revokes it,
    /// or when it is unknown and a file knows other keys for the name.
    /// `record: false` (for `tunnel check`) reports what accept-new would add without writing it.
    public static func verify(_ key: HostKey, _ lookup: Lookup, acceptNew: Bool, record: Bool = true) throws(HostKeyFailure) -> Outcome {
        let name = lookup.name
        let type = key.type.rawValue
        let verdicts = zip(lookup.files, lookup.matching).map { file, matching in
            (file, file.verify(matching: matching, keyType: type, key: key.blob))
        }
        for (file, verdict) in verdicts {
            if case .revoked(let line) = verdict {
                throw HostKeyFailure(kind: .revoked, message: "host key for \(name) is REVOKED (\(type) \(key.fingerprint), \(file.path):\(line)); refusing to connect")
            }
        }
        for (_, verdict) in verdicts {
            if case .trusted(let line) = verdict { return .trusted(line: line) }
        }
        let changed = verdicts.compactMap { file, verdict in
            if case .changed(let known) = verdict { (file, known) } else { nil }
        }
        if !changed.isEmpty {
            let old = changed.flatMap { file, known in known.map { "\($0.type) \($0.fingerprint) at \(file.path):\($0.line)" } }.joined(separator: ", ")
            let lines = changed.map { file, known in "line \(known.map { String($0.line) }.joined(separator: ",")) of \(file.path)" }.joined(separator: " and ")
            throw HostKeyFailure(kind: .changed, message: "WARNING: HOST KEY CHANGED for \(name): the server presented \(type) \(key.fingerprint) but known_hosts has \(old); refusing to connect (this could be a man-in-the-middle attack); if the change is expected, remove \(lines) and connect again")
        }
        let line = KnownHosts.line(name: name, keyType: type, key: key.blob)
        guard acceptNew else {
            var message = "host key for \(name) is not known (\(type) \(key.fingerprint)); refusing under host_key = \"strict\"; to trust it, add this line to \(lookup.path): \(line)"
            let authorities = lookup.files.flatMap { $0.certAuthorityLines(matching: name) }
            if !authorities.isEmpty {
                message += " (line \(authorities.map(String.init).joined(separator: ",")) trusts a @cert-authority for this host, but libssh2 1.10 cannot negotiate host certificates, so tunnel needs the host's own key)"
            }
            throw HostKeyFailure(kind: .unknown, message: message)
        }
        let recorded = lookup.hashed ? KnownHosts.hashedLine(name: name, keyType: type, key: key.blob) : line
        if record { try KnownHosts.append(line: recorded, to: lookup.path) }
        return .learned(line: recorded)
    }
}
