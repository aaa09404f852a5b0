import TunnelTestSupport
import Foundation
import XCTest
@testable import TunnelSSH


struct CommandFailed: Error, CustomStringConvertible {
    let description: String
}

/// Runs ssh-keygen with `arguments` and returns its standard output.
@discardableResult
func sshKeygen(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(description: "ssh-keygen \(arguments.joined(separator: " ")) failed: "
            + String(decoding: errors, as: UTF8.self))
    }
    return String(decoding: output, as: UTF8.self)
}

/// A key pair made by ssh-keygen in `directory`.
struct GeneratedKey {
    let privatePath: String
    let publicPath: String
    /// The private key file as written.
    let privateText: String
    /// The type field of the .pub line, e.g. "ssh-ed25519".
    let publicType: String
    /// The decoded public key blob from the .pub line.
    let blob: [UInt8]
    /// The base64 field of the .pub line, exactly as written.
    let publicBase64: String

    var hostKey: HostKey { HostKey(type: HostKeyType(rawValue: publicType) ?? .unknown, blob: blob) }

    /// `ssh-keygen -l -E sha256` on the public key: "SHA256:...".
    func opensshFingerprint() throws -> String {
        let line = try sshKeygen(["-l", "-E", "sha256", "-f", publicPath])
        let fields = line.split(separator: " ")
        guard fields.count >= 2 else { throw CommandFailed(description: "unexpected ssh-keygen -l output: \(line)") }
        return String(fields[1])
    }
}

/// Generates a key: `type` as for `ssh-keygen -t`, optional `-b bits`, `-m format`, `-N passphrase`.
func generateKey(in directory: TemporaryDirectory, name: String, type: String, bits: Int? = nil,
                 format: String? = nil, passphrase: String = "") throws -> GeneratedKey {
    let path = directory.file(name)
    var args = ["-q", "-t", type, "-N", passphrase, "-C", "test@\(name)", "-f", path]
    if let bits { args += ["-b", String(bits)] }
    if let format { args += ["-m", format] }
    try sshKeygen(args)
    let privateText = try String(contentsOfFile: path, encoding: .utf8)
    let pub = try String(contentsOfFile: path + ".pub", encoding: .utf8)
    let fields = pub.split(separator: " ")
    guard fields.count >= 2, let blob = Base64.decode(fields[1]) else {
        throw CommandFailed(description: "unreadable public key \(pub)")
    }
    return GeneratedKey(privatePath: path, publicPath: path + ".pub", privateText: privateText,
                        publicType: String(fields[0]), blob: blob, publicBase64: String(fields[1]))
}

/// One known_hosts file looked up under host and port: the form most tests need.
extension HostKeyVerifier {
    static func preferredAlgorithms(knownHosts: KnownHosts, host: String, port: UInt16) -> [String] {
        preferredAlgorithms(Lookup(files: [knownHosts], host: host, port: port))
    }

    static func verify(_ key: HostKey, knownHosts: KnownHosts, host: String, port: UInt16, acceptNew: Bool, record: Bool = true) throws(HostKeyFailure) -> Outcome {
        try verify(key, Lookup(files: [knownHosts], host: host, port: port), acceptNew: acceptNew, record: record)
    }
}
