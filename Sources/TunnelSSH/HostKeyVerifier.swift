/// Checks the key a server presented against known_hosts before any byte is
/// forwarded. Nothing ever prompts: an unknown key is refused under strict and
/// learnt under accept-new; a changed or revoked key is always refused.
public enum HostKeyVerifier {
    public enum Outcome: Equatable, Sendable {
        case trusted(line: Int)
        case learned(line: String)
    }

    /// Host key algorithms to offer, the ones already trusted for this host first.
    public static func preferredAlgorithms(knownHosts: KnownHosts, host: String, port: UInt16) -> [String] {
        let known = knownHosts.knownKeyTypes(for: KnownHosts.lookupName(host: host, port: port))
        return known.filter { SSHAlgorithms.hostKeys.contains($0) } + SSHAlgorithms.hostKeys.filter { !known.contains($0) }
    }

    /// `record: false` (for `tunnel check`) reports what accept-new would add without writing it.
    public static func verify(_ key: HostKey, knownHosts: KnownHosts, host: String, port: UInt16, acceptNew: Bool, record: Bool = true) throws(HostKeyFailure) -> Outcome {
        let name = KnownHosts.lookupName(host: host, port: port)
        let type = key.type.rawValue
        switch knownHosts.verify(name: name, keyType: type, key: key.blob) {
        case .trusted(let line):
            return .trusted(line: line)
        case .revoked(let line):
            throw HostKeyFailure(kind: .revoked, message: "host key for \(name) is REVOKED (\(type) \(key.fingerprint), \(knownHosts.path):\(line)); refusing to connect")
        case .changed(let known):
            let old = known.map { "\($0.type) \($0.fingerprint) at \(knownHosts.path):\($0.line)" }.joined(separator: ", ")
            let lines = known.map { String($0.line) }.joined(separator: ",")
            throw HostKeyFailure(kind: .changed, message: "WARNING: HOST KEY CHANGED for \(name): the server presented \(type) \(key.fingerprint) but known_hosts has \(old); refusing to connect (this could be a man-in-the-middle attack); if the change is expected, remove line \(lines) of \(knownHosts.path) and connect again")
        case .unknown:
            let line = KnownHosts.line(name: name, keyType: type, key: key.blob)
            guard acceptNew else {
                var message = "host key for \(name) is not known (\(type) \(key.fingerprint)); refusing under host_key = \"strict\"; to trust it, add this line to \(knownHosts.path): \(line)"
                let authorities = knownHosts.certAuthorityLines(matching: name)
                if !authorities.isEmpty {
                    message += " (line \(authorities.map(String.init).joined(separator: ",")) trusts a @cert-authority for this host, but libssh2 1.10 cannot negotiate host certificates, so tunnel needs the host's own key)"
                }
                throw HostKeyFailure(kind: .unknown, message: message)
            }
            if record { try KnownHosts.append(line: line, to: knownHosts.path) }
            return .learned(line: line)
        }
    }
}
