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
}

/// Public-key authentication, non-blocking: ssh-agent identities first, then
/// identity files. Agent I/O itself is blocking (a local socket), as libssh2
/// does it. Passphrases are never asked for: an encrypted key must be in the agent.
/// RSA keys are signed with rsa-sha2-512 by tunnel itself on OpenSSH servers
/// (see RSASignatureAlgorithm); libssh2 signs every other key.
public final class Authenticator {
    public enum Candidate: Equatable, Sendable {
        case agent(index: Int, label: String)
        case file(path: String, display: String)
    }

    private let session: SSHSession
    private let user: String
    private let explicitIdentities: [(path: String, display: String)]
    private let defaultIdentities: [(path: String, display: String)]
    private let identitiesOnly: Bool
    private let agentSocket: String?
    /// How long any ssh-agent call may take: kept on the transport, whose
    /// callbacks carry libssh2's own agent I/O.
    private var agentTimeout: Double { session.transport.agentTimeout }
    /// nil: the server is not known to take rsa-sha2 this way; libssh2 signs ssh-rsa.
    private lazy var rsaAlgorithm = RSASignatureAlgorithm.forServer(banner: session.serverBanner)
    /// The RSA attempt in progress, kept while libssh2 says EAGAIN.
    private var rsaRequest: RSASigningRequest?
    /// Causes with a known fix, for the final failure.
    private var findings: Set<AuthFinding> = []
    /// Identity files that are unencrypted RSA keys, read once: tunnel signs with these.
    private var rsaKeys: [String: RSAPrivateKey] = [:]

    private var agent: OpaquePointer?
    private var agentIdentities: [UnsafeMutablePointer<libssh2_agent_publickey>] = []
    private var candidates: [Candidate] = []
    private var index = 0
    private var serverMethods: [String]?
    private var attempts: [String] = []
    /// The finished attempt's rsa-sha2 signature (nil: libssh2 signed), and
    /// why it could not be made, if it could not.
    private var lastRSASignature: RSASignatureAlgorithm?
    private var signingFailure: String?
    private var started = false

    /// What succeeded: "publickey with ~/.ssh/id_ed25519" or "publickey with agent key ...".
    public private(set) var succeededWith: String?

    /// `identities`: the key files configured, in order; `defaults`: files
    /// tried when there are none. With explicit identities the agent offers
    /// only those keys, and with `identitiesOnly` (ssh_config's IdentitiesOnly)
    /// it offers only keys whose public half is known to be one of the files.
    public init(session: SSHSession, user: String, identities: [(path: String, display: String)], identitiesOnly: Bool = false,
                defaults: [(path: String, display: String)], agentSocket: String?, agentTimeout: Double = 10) {
        self.session = session
        session.transport.agentTimeout = agentTimeout
        self.user = user
        self.explicitIdentities = identities
        self.identitiesOnly = identitiesOnly
        self.defaultIdentities = defaults
        self.agentSocket = agentSocket
    }

    deinit { closeAgent() }

    private func closeAgent() {
        if let agent {
            _ = libssh2_agent_disconnect(agent)
            libssh2_agent_free(agent)
        }
        agent = nil
        agentIdentities = []
    }

    /// One step; true once authenticated.
    public func step() throws(AuthFailure) -> Bool {
        if serverMethods == nil {
            let listed: IOResult<[String]>
            do { listed = try session.authMethods(user: user) } catch { throw transportFailure(error) }
            guard case .done(let methods) = listed else { return false }
            serverMethods = methods
            if methods.isEmpty && session.isAuthenticated {
                succeededWith = "none (the server asked for no authentication)"
                return true
            }
            guard methods.contains("publickey") else {
                throw AuthFailure(isPermanent: true, message: "authentication failed for \(user): the server accepts only \(methods.joined(separator: ", ")), and tunnel authenticates with keys (ssh-agent or identity files)")
            }
        }
        if !started {
            started = true
            prepareCandidates()
        }
        while index < candidates.count {
            let candidate = candidates[index]
            switch candidate {
            case .agent(let i, let label):
                let keyBlob = blob(agentIdentities[i])
                let keyType = Fingerprint.keyType(ofBlob: keyBlob)
                let rc: Int32
                if keyType == "ssh-rsa", let algorithm = rsaAlgorithm, let socket = agentSocket {
                    rc = rsaStep(.agent(socketPath: socket, keyBlob: keyBlob), algorithm)
                } else {
                    rc = libssh2_agent_userauth(agent, user, agentIdentities[i])
                }
                if rc == LIBSSH2_ERROR_EAGAIN { return false }
                if rc == 0 { return succeed("publickey with agent key \(label)" + rsaSuffix(keyType)) }
                try recordFailure(rc, what: "agent key \(label)", keyType: keyType)
            case .file(let path, let display):
                let rc: Int32
                if let rsaKey = rsaKeys[path], let algorithm = rsaAlgorithm {
                    rc = rsaStep(.key(rsaKey), algorithm)
                } else {
                    do {
                        rc = try session.authenticate(user: user, privateKey: path, passphrase: nil) ? 0 : LIBSSH2_ERROR_EAGAIN
                    } catch {
                        rc = error.code
                    }
                }
                if rc == LIBSSH2_ERROR_EAGAIN { return false }
                let keyType = rsaKeys[path] != nil ? "ssh-rsa" : (try? SecretBytes.read(path)).map { PrivateKeyInfo.inspect($0.bytes) }?.keyType
                if rc == 0 { return succeed("publickey with \(display)" + rsaSuffix(keyType)) }
                try recordFailure(rc, what: display, keyType: keyType)
            }
            index += 1
        }
        closeAgent()
        let methods = serverMethods?.joined(separator: ",") ?? "?"
        let tried = attempts.isEmpty ? "no keys to try" : attempts.joined(separator: "; ")
        throw AuthFailure(isPermanent: true, message: "authentication failed for \(user) (server accepts: \(methods)): \(tried)", findings: findings)
    }

    /// One step of an rsa-sha2 attempt; the request lives until it ends.
    private func rsaStep(_ signer: RSASigningRequest.Signer, _ algorithm: RSASignatureAlgorithm) -> Int32 {
        if rsaRequest == nil {
            rsaRequest = RSASigningRequest(signer: signer, algorithm: algorithm, agentTimeout: agentTimeout)
        }
        guard let request = rsaRequest else { return LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED }
        let rc: Int32
        do {
            rc = try session.authenticate(user: user, rsa: request) ? 0 : LIBSSH2_ERROR_EAGAIN
        } catch {
            rc = error.code
        }
        if rc != LIBSSH2_ERROR_EAGAIN {
            rsaRequest = nil
            lastRSASignature = request.algorithm
            signingFailure = request.failure
        }
        return rc
    }

    private func rsaSuffix(_ keyType: String?) -> String {
        keyType == "ssh-rsa" ? ", " + (lastRSASignature?.rawValue ?? "ssh-rsa") : ""
    }

    private func succeed(_ how: String) -> Bool {
        succeededWith = how
        closeAgent()
        return true
    }

    private func blob(_ identity: UnsafeMutablePointer<libssh2_agent_publickey>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: identity.pointee.blob, count: identity.pointee.blob_len))
    }

    private func recordFailure(_ rc: Int32, what: String, keyType: String?) throws(AuthFailure) {
        defer {
            signingFailure = nil
            lastRSASignature = nil
        }
        let err = session.handle.lastError("userauth")
        if err.isTransportFailure || session.connectionLoss != nil {
            // The server dropped us (for example after MaxAuthTries).
            attempts.append("\(what): the server closed the connection")
            throw AuthFailure(isPermanent: false, message: "authentication failed for \(user): \(attempts.joined(separator: "; "))")
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

    private func prepareCandidates() {
        let files = explicitIdentities.isEmpty ? defaultIdentities : explicitIdentities
        // ssh-agent: all its keys; with explicit identities only those keys
        // (when their .pub says which they are); under IdentitiesOnly only
        // keys known to be one of the files.
        var wantedBlobs: Set<[UInt8]>?
        var offeredByAgent: Set<[UInt8]> = []
        if !explicitIdentities.isEmpty || identitiesOnly {
            let known = Set(files.compactMap { publicBlob(ofIdentity: $0.path) })
            if !known.isEmpty || identitiesOnly { wantedBlobs = known }
        }
        if let socket = agentSocket, !socket.isEmpty {
            if let agent = libssh2_agent_init(session.handle) {
                self.agent = agent
                libssh2_agent_set_identity_path(agent, socket)
                if libssh2_agent_connect(agent) == 0 && libssh2_agent_list_identities(agent) == 0 {
                    var previous: UnsafeMutablePointer<libssh2_agent_publickey>?
                    var current: UnsafeMutablePointer<libssh2_agent_publickey>?
                    while libssh2_agent_get_identity(agent, &current, previous) == 0, let identity = current {
                        let keyBlob = blob(identity)
                        offeredByAgent.insert(keyBlob)
                        if wantedBlobs?.contains(keyBlob) ?? true {
                            let comment = identity.pointee.comment.map { String(cString: $0) } ?? ""
                            let type = Fingerprint.keyType(ofBlob: keyBlob) ?? "key"
                            let label = "\(type) \(Fingerprint.sha256(keyBlob))" + (comment.isEmpty ? "" : " (\(comment))")
                            candidates.append(.agent(index: agentIdentities.count, label: label))
                            agentIdentities.append(identity)
                        }
                        previous = identity
                    }
                    if agentIdentities.isEmpty && wantedBlobs == nil { attempts.append("ssh-agent: holds no keys") }
                } else {
                    attempts.append("ssh-agent at \(socket): " + (session.transport.agentTimedOut ? "did not answer within \(Int(agentTimeout)) s" : "not reachable"))
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
            candidates.append(.file(path: file.path, display: file.display))
        }
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
