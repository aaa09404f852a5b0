import FuzzSupport
import TunnelSSH

/// known_hosts as the connector uses it. The input's first line is the server
/// ("host" or "host port"), the rest is the file: parse it, then look the
/// server up (plain and hashed names, wildcards, negations, @revoked,
/// @cert-authority) and verify each listed key and an unlisted one.
func fuzzKnownHosts(_ bytes: [UInt8]) {
    let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
    let server = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: " ", maxSplits: 1)
    let host = server.first.map(String.init) ?? ""
    let port = server.count > 1 ? UInt16(server[1]) ?? 22 : 22
    let name = KnownHosts.lookupName(host: host, port: port)
    let text = String(decoding: bytes[min(newline + 1, bytes.count)...], as: UTF8.self)

    let knownHosts = KnownHosts(path: "/fuzz/known_hosts", text: text)
    var seen: [String] = []
    seen.append("\(knownHosts.entries(matching: name).map(\.line))")
    seen.append("\(knownHosts.certAuthorityLines(matching: name))")
    seen.append("\(knownHosts.knownKeyTypes(for: name))")
    for entry in knownHosts.entries.prefix(16) {
        seen.append(Fingerprint.sha256(entry.key))
        seen.append("\(knownHosts.verify(name: name, keyType: entry.keyType, key: entry.key))")
    }
    seen.append("\(knownHosts.verify(name: name, keyType: "ssh-ed25519", key: Array(bytes.prefix(51))))")

    // The line tunnel writes for a newly trusted key must match that key again.
    if let entry = knownHosts.entries.first, isPlain(name), entry.keyType.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
        let line = KnownHosts.line(name: name, keyType: entry.keyType, key: entry.key)
        let written = KnownHosts(path: "/fuzz/new", text: line + "\n")
        let verdict = written.verify(name: name, keyType: entry.keyType, key: entry.key)
        precondition(verdict == .trusted(line: 1), "\(line) does not trust \(name): \(verdict)")
    }
    blackHole(seen)
}

/// A lookup name that is a literal pattern of itself: lower-case letters,
/// digits, ".", "-", ":" and the brackets of "[host]:port".
func isPlain(_ name: String) -> Bool {
    guard let first = name.utf8.first, first != UInt8(ascii: "#"), first != UInt8(ascii: "@") else { return false }
    return name.utf8.allSatisfy { c in
        (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
            || c == UInt8(ascii: ":") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
    }
}

@main
enum Main {
    static func main() { fuzzMain(fuzzKnownHosts) }
}
