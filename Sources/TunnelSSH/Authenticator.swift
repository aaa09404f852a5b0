internal import CLibSSH2
import TunnelPOSIX

/// Why authentication failed, with every method tried and why each failed.
public struct AuthFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// Retrying will not help (refused keys); a transport failure might.
    public let isPermanent: Bool
    public let message: String
    /// What the attempts ran into that has a known fix.
    public var findings: Set<AuthFinding> = []
    public var description: String { message }

    init(isPermanent: Bool, message: String, findings: Set<AuthFinding> = []) {
        self.isPermanent = isPermanent
        self.message = message
        self.findings = findings
    }
}

/// A cause of failed authentication that `tunnel check` names a fix for.
public enum AuthFinding: Hashable, Sendable {
    /// An identity file is encrypted and tunnel never asks for passphrases.
    case encryptedKey
    /// An RSA key was signed with SHA-1, which the server may refuse.
    case sha1Signature
    /// An identity file the profile or ssh_config names does not exist (shown as written).
    case missingKey(String)
    /// ssh-agent (at this socket) did not answer: stopped, or waiting for a confirmation.
    case agentSilent(String)
    /// The server ended the login part-way, as sshd does after MaxAuthTries keys.
    case serverEndedLogin
}

/// What one authentication step needs next.
public enum AuthStep {
    case authenticated
    /// Waiting for the server: drive the session's socket.
    case wouldBlock
    /// Run this ssh-agent query off the loop thread, then hand its answer to
    /// `agentAnswered` and step again.
    case askAgent(AgentQuery)
}

/// Public-key authentication, non-blocking: ssh-agent identities first, then
/// identity files. ssh-agent is asked through `AgentQuery`s the caller runs
/// off its loop thread. Passphrases are never asked for: an encrypted key must be in the agent.
/// RSA keys are signed with rsa-sha2-512 by tunnel itself on OpenSSH servers
/// (see RSASignatureAlgorithm); libssh2 signs every other key.
public final class Authenticator {
    public enum Candidate: Equatable, Sendable {
        case agent(index: Int, label: String)
        case file(path: String, display: String)
        /// An identity file's certificate, `PATH-cert.pub` (as ssh offers it),
        /// signed for with the identity file's key.
        case certificate(key: String, certificate: String, display: String, label: String)
    }

    private let session: SSHSession
    private let user: String
    private let explicitIdentities: [(path: String, display: String)]
    private let defaultIdentities: [(path: String, display: String)]
    private let identitiesOnly: Bool
    private let certificates: [(path: String, display: String)]
    private let agentSocket: String?
    /// How long any ssh-agent query may take.
    private let agentTimeout: Double
    /// nil: the server is not known to take rsa-sha2 this way; libssh2 signs ssh-rsa.
    private lazy var rsaAlgorithm = RSASignatureAlgorithm.forServer(banner: session.serverBanner)
    /// The attempt tunnel signs (agent keys, RSA files), kept while libssh2 says EAGAIN.
    private var signing: SigningRequest?
    /// Causes with a known fix, for the final failure.
    private var findings: Set<AuthFinding> = []
    /// Identity files that are unencrypted RSA keys, read once: tunnel signs with these.
    private var rsaKeys: [String: RSAPrivateKey] = [:]

    private enum AgentListing {
        case notAsked
        case asked
        case answered(AgentAnswer)
        case done
    }
    private var agentListing = AgentListing.notAsked
    private var agentKeys: [AgentProtocol.Identity] = []
    /// An agent query went unanswered: the agent may answer next time, so
    /// the failure is not permanent.
    private var agentWasSilent = false
    private var candidates: [Candidate] = []
    private var index = 0
    private var serverMethods: [String]?
    private var attempts: [String] = []
    /// The finished attempt's rsa-sha2 signature (nil: libssh2 signed), and
    /// why it could not be made, if it could not.
    private var lastRSASignature: RSASignatureAlgorithm?
    private var signingFailure: String?

    /// What succeeded: "publickey with ~/.ssh/id_ed25519" or "publickey with agent key ...".
    public private(set) var succeededWith: String?

    /// `identities`: the key files configured, in order; `defaults`: files
    /// tried when there are none. With explicit identities the agent offers
    /// only those keys, and with `identitiesOnly` (ssh_config's IdentitiesOnly)
    /// it offers only keys whose public half is known to be one of the files.
    /// `certificates` (ssh_config's CertificateFile) go with the identity
    /// file whose key each certifies.
    public init(session: SSHSession, user: String, identities: [(path: String, display: String)], identitiesOnly: Bool = false,
                certificates: [(path: String, display: String)] = [],
                defaults: [(path: String, display: String)], agentSocket: String?, agentTimeout: Double = 10) {
        self.session = session
        self.certificates = certificates
        self.agentTimeout = agentTimeout
        self.user = user
        self.explicitIdentities = identities
        self.identitiesOnly = identitiesOnly
        self.defaultIdentities = defaults
        self.agentSocket = agentSocket
    }

    /// The answer to the query the last step asked for.
    public func agentAnswered(_ answer: AgentAnswer) {
        if case .asked = agentListing {
            agentListing = .answered(answer)
        } else {
            signing?.agentAnswered(answer)
        }
    }

    /// Waiting on ssh-agent when the attempt's time ran out: the failure
    /// that names it (not permanent: the agent may answer next time).
    public func timedOutWaitingForAgent() -> AuthFailure? {
        let waiting: String
        if case .asked = agentListing, let socket = agentSocket {
            waiting = "ssh-agent at \(socket): did not answer within \(Int(agentTimeout)) s"
        } else if let signing, signing.isWaitingForAgent, index < candidates.count, case .agent(_, let label) = candidates[index] {
            waiting = "agent key \(label): ssh-agent did not answer within \(Int(agentTimeout)) s"
        } else {
            return nil
        }
        return AuthFailure(isPermanent: false, message: "authentication failed for \(user): \((attempts + [waiting]).joined(separator: "; "))",
                           findings: findings.union([.agentSilent(agentSocket ?? "?")]))
    }

    /// One step.
    public func step() throws(AuthFailure) -> AuthStep {
        if serverMethods == nil {
            let listed: IOResult<[String]>
            do { listed = try session.authMethods(user: user) } catch { throw transportFailure(error) }
            guard case .done(let methods) = listed else { return .wouldBlock }
            serverMethods = methods
            if methods.isEmpty && session.isAuthenticated {
                succeededWith = "none (the server asked for no authentication)"
                return .authenticated
            }
            guard methods.contains("publickey") else {
                throw AuthFailure(isPermanent: true, message: "authentication failed for \(user): the server accepts only \(methods.joined(separator: ", ")), and tunnel authenticates with keys (ssh-agent or identity files)")
            }
        }
        switch agentListing {
        case .notAsked:
            if let socket = agentSocket, !socket.isEmpty {
                agentListing = .asked
                return .askAgent(AgentQuery(socketPath: socket, purpose: .listKeys, body: AgentProtocol.listRequest(),
                                            deadline: Instant.now().adding(seconds: agentTimeout)))
            }
            agentListing = .done
            prepareCandidates(agentAnswer: nil)
        case .asked:
            return .wouldBlock
        case .answered(let answer):
            agentListing = .done
            prepareCandidates(agentAnswer: answer)
        case .done:
            break
        }
        while index < candidates.count {
            let candidate = candidates[index]
            switch candidate {
            case .agent(let i, let label):
                let keyBlob = agentKeys[i].blob
                let keyType = Fingerprint.keyType(ofBlob: keyBlob)
                guard let socket = agentSocket else { break }
                let rc = signedStep(.agent(socketPath: socket, keyBlob: keyBlob), keyType == "ssh-rsa" ? rsaAlgorithm : nil)
                if rc == LIBSSH2_ERROR_EAGAIN { return signing?.takeQuery().map { .askAgent($0) } ?? .wouldBlock }
                if rc == 0 { return succeed("publickey with agent key \(label)" + rsaSuffix(keyType)) }
                try recordFailure(rc, what: "agent key \(label)", keyType: keyType)
            case .file(let path, let display):
                let rc: Int32
                if let rsaKey = rsaKeys[path], let algorithm = rsaAlgorithm {
                    rc = signedStep(.key(rsaKey), algorithm)
                } else {
                    do {
                        rc = try session.authenticate(user: user, privateKey: path, passphrase: nil) ? 0 : LIBSSH2_ERROR_EAGAIN
                    } catch {
                        rc = error.code
                    }
                }
                if rc == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
                let keyType = rsaKeys[path] != nil ? "ssh-rsa" : (try? SecretBytes.read(path)).map { PrivateKeyInfo.inspect($0.bytes) }?.keyType
                if rc == 0 { return succeed("publickey with \(display)" + rsaSuffix(keyType)) }
                try recordFailure(rc, what: display, keyType: keyType)
            case .certificate(let key, let certificate, let display, let label):
                let rc: Int32
                do {
                    rc = try session.authenticate(user: user, privateKey: key, publicKey: certificate, passphrase: nil) ? 0 : LIBSSH2_ERROR_EAGAIN
                } catch {
                    rc = error.code
                }
                if rc == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
                if rc == 0 { return succeed("publickey with \(display) (\(label))") }
                try recordFailure(rc, what: "\(display) (\(label))", keyType: nil)
            }
            index += 1
        }
        let methods = serverMethods?.joined(separator: ",") ?? "?"
        let tried = attempts.isEmpty ? "no keys to try" : attempts.joined(separator: "; ")
        throw AuthFailure(isPermanent: !agentWasSilent, message: "authentication failed for \(user) (server accepts: \(methods)): \(tried)", findings: findings)
    }

    /// One step of an attempt tunnel signs; the request lives until it ends.
    private func signedStep(_ signer: SigningRequest.Signer, _ algorithm: RSASignatureAlgorithm?) -> Int32 {
        if signing == nil {
            signing = SigningRequest(signer: signer, algorithm: algorithm, agentTimeout: agentTimeout)
        }
        guard let request = signing else { return LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED }
        let rc: Int32
        do {
            rc = try session.authenticate(user: user, signedBy: request) ? 0 : LIBSSH2_ERROR_EAGAIN
        } catch {
            rc = error.code
        }
        if rc != LIBSSH2_ERROR_EAGAIN {
            signing = nil
            lastRSASignature = request.algorithm
            signingFailure = request.failure
            if request.agentSilent {
                agentWasSilent = true
                if let agentSocket { findings.insert(.agentSilent(agentSocket)) }
            }
        }
        return rc
    }

    private func rsaSuffix(_ keyType: String?) -> String {
        keyType == "ssh-rsa" ? ", " + (lastRSASignature?.rawValue ?? "ssh-rsa") : ""
    }

    private func succeed(_ how: String) -> AuthStep {
        succeededWith = how
        return .authenticated
    }

    private func recordFailure(_ rc: Int32, what: String, keyType: String?) throws(AuthFailure) {
        defer {
            signingFailure = nil
            lastRSASignature = nil
        }
        let err = session.handle.lastError("userauth")
        if err.isTransportFailure || session.connectionLoss != nil {
            // The server dropped us (sshd does after MaxAuthTries keys).
            attempts.append("\(what): \(session.connectionLoss?.description ?? "the server closed the connection")")
            findings.insert(.serverEndedLogin)
            throw AuthFailure(isPermanent: false, message: "authentication failed for \(user): \(attempts.joined(separator: "; "))", findings: findings)
        }
        if let signingFailure {
            attempts.append("\(what): \(signingFailure)")
            return
        }
        var reason: String
        switch rc {
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
            reason = "refused by the server"
        case LIBSSH2_ERROR_FILE:
            reason = "could not be read by libssh2 (\(err.message))"
        default:
            reason = err.message
        }
        if keyType == "ssh-rsa" && (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
            if let algorithm = lastRSASignature {
                reason += " (signed with \(algorithm.rawValue))"
            } else {
                let banner = session.serverBanner
                let why = rsaAlgorithm == nil ? "this server says \"\(banner.isEmpty ? "?" : banner)\", not OpenSSH 7.2 or later" : "tunnel could not read this RSA key itself"
                findings.insert(.sha1Signature)
                reason += " (signed with ssh-rsa, i.e. SHA-1, which many servers refuse: \(why), so the signature was libssh2 1.10's; use an ed25519 key: ssh-keygen -t ed25519)"
            }
        }
        attempts.append("\(what): \(reason)")
    }

    private func transportFailure(_ error: SSHError) -> AuthFailure {
        AuthFailure(isPermanent: !error.isTransportFailure, message: "authentication failed for \(user): \(error.message)")
    }

    /// libssh2 1.10 names a certificate's signature after the certificate
    /// type except for ECDSA (`plain_method_len`), so the server refuses
    /// RSA certificates' signatures ("key type does not match"), and ed25519
    /// ones unless tunnel's libssh2 (Patches/libssh2) is the one loaded.
    static func isUnsignableCertificate(_ type: String, patches: Libssh2Patches = .loaded) -> Bool {
        guard type.hasSuffix("-cert-v01@openssh.com"), !type.hasPrefix("ecdsa-sha2-") else { return false }
        return !(type == "ssh-ed25519-cert-v01@openssh.com" && patches.contains(.ed25519CertificateSignatures))
    }

    /// Why such a certificate is not offered, for the failure message.
    static func unsignableCertificateNote(patches: Libssh2Patches = .loaded) -> String {
        patches.contains(.ed25519CertificateSignatures)
            ? "is a certificate of a key type libssh2 1.10 cannot sign certificates for (only ECDSA and ed25519 ones); not offered"
            : "is a certificate of a key type libssh2 1.10 cannot sign certificates for (only ECDSA ones; tunnel's own build of libssh2, Scripts/libssh2, signs ed25519 ones too); not offered"
    }

    /// `agentAnswer`: the agent's reply to the key list, nil without an agent.
    private func prepareCandidates(agentAnswer: AgentAnswer?) {
        let files = explicitIdentities.isEmpty ? defaultIdentities : explicitIdentities
        // ssh-agent: all its keys, as ssh offers them: those the identity
        // files are (by their public half) first, then the others; under
        // IdentitiesOnly only the ones the files are.
        var wantedBlobs: Set<[UInt8]>?
        var offeredByAgent: Set<[UInt8]> = []
        let known = explicitIdentities.isEmpty && !identitiesOnly ? [] : Set(files.compactMap { publicBlob(ofIdentity: $0.path) })
        if identitiesOnly { wantedBlobs = known }
        if let socket = agentSocket, let agentAnswer {
            switch agentAnswer {
            case .silent:
                agentWasSilent = true
                findings.insert(.agentSilent(socket))
                attempts.append("ssh-agent at \(socket): did not answer within \(Int(agentTimeout)) s")
            case .failed(let why):
                attempts.append("ssh-agent at \(socket): \(why)")
            case .reply(let reply):
                if let listed = AgentProtocol.identities(from: reply) {
                    let keys = listed.filter { known.contains($0.blob) } + listed.filter { !known.contains($0.blob) }
                    for key in keys {
                        // An agent may list a key twice: each try counts against the server's MaxAuthTries.
                        guard offeredByAgent.insert(key.blob).inserted else { continue }
                        guard wantedBlobs?.contains(key.blob) ?? true else { continue }
                        let type = Fingerprint.keyType(ofBlob: key.blob) ?? "key"
                        // A certificate is shown by its key's fingerprint, as ssh-add -l shows it.
                        let label = "\(type) \(Fingerprint.sha256(Fingerprint.certifiedKey(ofBlob: key.blob) ?? key.blob))" + (key.comment.isEmpty ? "" : " (\(key.comment))")
                        if Authenticator.isUnsignableCertificate(type) {
                            attempts.append("agent key \(label): \(Authenticator.unsignableCertificateNote())")
                            continue
                        }
                        candidates.append(.agent(index: agentKeys.count, label: label))
                        agentKeys.append(key)
                    }
                    if agentKeys.isEmpty && wantedBlobs == nil { attempts.append("ssh-agent: holds no keys") }
                } else {
                    attempts.append("ssh-agent at \(socket): " + (reply.first == AgentProtocol.failure ? "refused to list its keys" : "sent a malformed key list"))
                }
            }
        }
        for file in files {
            let key: SecretBytes
            do { key = try SecretBytes.read(file.path) } catch {
                switch error.reason {
                case .missing:
                    // Missing default keys are normal; a missing explicit one is worth saying.
                    attempts.append("\(file.display): not found")
                    if !explicitIdentities.isEmpty { findings.insert(.missingKey(file.display)) }
                case .system(let failure):
                    attempts.append("\(file.display): \(failure.errno)")
                case .notRegular(let kind):
                    attempts.append("\(file.display): is \(kind), not a regular file")
                case .tooLarge:
                    attempts.append("\(file.display): is too large to be a private key")
                }
                continue
            }
            let info = PrivateKeyInfo.inspect(key.bytes)
            if info.isEncrypted {
                findings.insert(.encryptedKey)
                let inAgent = candidates.contains { if case .agent = $0 { return true } else { return false } }
                attempts.append("\(file.display): is encrypted and tunnel never asks for passphrases; add it to ssh-agent (ssh-add \(file.display))" + (inAgent ? "" : (agentSocket == nil ? " — no agent is running (SSH_AUTH_SOCK is not set)" : "")))
                continue
            }
            switch info.format {
            case .putty:
                attempts.append("\(file.display): is a PuTTY key; convert it with puttygen -O private-openssh")
                continue
            case .unknown:
                // ssh's way to pick one of the agent's keys: IdentityFile names its public key.
                if let blob = Authenticator.publicKeyFileBlob(key.bytes) {
                    if !offeredByAgent.contains(blob) {
                        attempts.append("\(file.display): is a public key, which picks a key of ssh-agent's, and " + (agentSocket == nil ? "no agent is running (SSH_AUTH_SOCK is not set)" : "the agent does not hold it"))
                    }
                } else {
                    attempts.append("\(file.display): is not a private key tunnel can read")
                }
                continue
            default:
                break
            }
            // PKCS#8 does not say its key type outside the encoded key: OpenSSL reads it.
            if rsaAlgorithm != nil && (info.isRSA || (info.format == .pkcs8 && info.keyType == nil)), let rsaKey = RSAPrivateKey(file: key) {
                rsaKeys[file.path] = rsaKey
            }
            candidates += certificateCandidates(for: file, key: info)
            candidates.append(.file(path: file.path, display: file.display))
        }
    }

    /// The certificates for an identity file, offered before the key itself
    /// (a server that trusts only the certificate's CA then takes the first
    /// try): `PATH-cert.pub` beside it, as ssh looks for it, and those of
    /// ssh_config's CertificateFile that certify its key. One libssh2 cannot
    /// sign for is left out, and the attempts say why.
    private func certificateCandidates(for file: (path: String, display: String), key: PrivateKeyInfo) -> [Candidate] {
        var found: [Candidate] = []
        var seen = Set<[UInt8]>()
        // Read only when there are CertificateFiles to pair with the key.
        let keyBlob = certificates.isEmpty ? nil : key.publicBlob ?? publicBlob(ofIdentity: file.path)
        for (path, display, mustMatch) in [(file.path + "-cert.pub", file.display + "-cert.pub", false)] + certificates.map({ ($0.path, $0.display, true) }) {
            guard let bytes = (try? Files.read(path)) ?? nil, let blob = Authenticator.publicKeyFileBlob(bytes),
                  let type = Fingerprint.keyType(ofBlob: blob), type.hasSuffix("-cert-v01@openssh.com"),
                  let certified = Fingerprint.certifiedKey(ofBlob: blob) else { continue }
            // A CertificateFile goes only with the key it certifies (a key whose public half is not known takes none).
            if mustMatch && certified != keyBlob { continue }
            guard seen.insert(blob).inserted else { continue }
            let label = "\(type) \(Fingerprint.sha256(certified))"
            if Authenticator.isUnsignableCertificate(type) {
                attempts.append("\(display) (\(label)): \(Authenticator.unsignableCertificateNote())")
                continue
            }
            found.append(.certificate(key: file.path, certificate: path, display: display, label: label))
        }
        return found
    }

    /// The public key blob of an identity file: the file itself when it is a
    /// `.pub` (ssh's way to pick an agent key), else its PATH.pub. A private
    /// key is never read here: only SecretBytes holds one.
    private func publicBlob(ofIdentity path: String) -> [UInt8]? {
        let pub = path.hasSuffix(".pub") ? path : path + ".pub"
        guard let bytes = (try? Files.read(pub)) ?? nil else { return nil }
        return Authenticator.publicKeyFileBlob(bytes)
    }

    /// The key blob of a public key file's first line (`TYPE BASE64 [comment]`)
    /// whose blob is a key of that type; nil for anything else.
    static func publicKeyFileBlob(_ bytes: some Collection<UInt8>) -> [UInt8]? {
        guard bytes.count < 64 * 1024 else { return nil }
        let line = String(decoding: bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard fields.count >= 2, let blob = Base64.decode(fields[1]), Fingerprint.keyType(ofBlob: blob) == String(fields[0]) else { return nil }
        return blob
    }
}
