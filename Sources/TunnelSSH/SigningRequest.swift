import Glibc
internal import CLibSSH2
import TunnelPOSIX

/// What the libssh2 sign callback reaches through its `abstract` pointer:
/// an RSA key tunnel signs with itself (rsa-sha2, which libssh2 1.10 cannot),
/// or a key of ssh-agent's, whose signature comes from an `AgentQuery` the
/// Authenticator's driver runs off the loop thread. Until its answer is in,
/// the callback says EAGAIN, and libssh2 calls it again with the same data.
final class SigningRequest {
    enum Signer {
        case key(RSAPrivateKey)
        case agent(socketPath: String, keyBlob: [UInt8])
    }

    enum Outcome {
        case signed([UInt8])
        case waitingForAgent
        case failed
    }

    let signer: Signer
    /// rsa-sha2 for RSA keys on servers known to take it; nil: the key's own type.
    let algorithm: RSASignatureAlgorithm?
    /// The public key blob handed to libssh2: its type string names the signature.
    let requestBlob: [UInt8]
    private let agentTimeout: Double
    /// Why signing failed, for the error message (libssh2 only says "Callback returned error").
    private(set) var failure: String?
    /// The agent did not answer by its deadline.
    private(set) var agentSilent = false
    /// The data the agent was asked to sign, and its answer once in.
    private var askedToSign: [UInt8]?
    private var answer: AgentAnswer?
    private var unsentQuery: AgentQuery?
    /// The `void *` libssh2 hands back to the callback; stable while a request runs.
    let abstract = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1)

    init?(signer: Signer, algorithm: RSASignatureAlgorithm?, agentTimeout: Double) {
        let keyBlob: [UInt8]
        switch signer {
        case .key(let key): keyBlob = key.publicBlob
        case .agent(_, let blob): keyBlob = blob
        }
        if let algorithm {
            guard let blob = algorithm.requestBlob(for: keyBlob) else { return nil }
            requestBlob = blob
        } else {
            guard case .agent = signer else { return nil }
            requestBlob = keyBlob
        }
        self.signer = signer
        self.algorithm = algorithm
        self.agentTimeout = agentTimeout
        abstract.initialize(to: nil)
        abstract.pointee = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { abstract.deallocate() }

    /// The agent query the last EAGAIN is waiting for, once: the driver runs it.
    func takeQuery() -> AgentQuery? {
        defer { unsentQuery = nil }
        return unsentQuery
    }

    func agentAnswered(_ answer: AgentAnswer) {
        if askedToSign != nil { self.answer = answer }
    }

    var isWaitingForAgent: Bool { askedToSign != nil && answer == nil }

    fileprivate func sign(_ data: UnsafeRawBufferPointer) -> Outcome {
        switch signer {
        case .key(let key):
            guard let algorithm, let signature = key.sign(data, with: algorithm) else {
                failure = "OpenSSL could not sign with \(algorithm?.rawValue ?? "?")"
                return .failed
            }
            return .signed(signature)
        case .agent(let socketPath, let keyBlob):
            let bytes = Array(data)
            guard let asked = askedToSign, asked == bytes else {
                askedToSign = bytes
                answer = nil
                let body = AgentProtocol.signRequest(keyBlob: keyBlob, data: bytes, flags: algorithm?.agentFlag ?? 0)
                unsentQuery = AgentQuery(socketPath: socketPath, purpose: .sign, body: body, deadline: Instant.now().adding(seconds: agentTimeout))
                return .waitingForAgent
            }
            guard let answer else { return .waitingForAgent }
            askedToSign = nil
            self.answer = nil
            switch answer {
            case .silent:
                agentSilent = true
                failure = "ssh-agent did not answer within \(Int(agentTimeout)) s"
            case .failed(let why):
                failure = "ssh-agent at \(socketPath): \(why)"
            case .reply(let reply):
                do {
                    return .signed(try AgentProtocol.signature(from: reply, algorithm: algorithm?.rawValue))
                } catch {
                    switch error {
                    case .refused: failure = "ssh-agent refused to sign" + (algorithm.map { " with \($0.rawValue)" } ?? "")
                    case .malformed: failure = "ssh-agent sent a malformed signature"
                    // An agent older than OpenSSH 7.2 ignores the flag and signs with SHA-1.
                    case .algorithm(let name): failure = "ssh-agent signed with \(name), not \(algorithm?.rawValue ?? "?"): it is too old for SHA-2 RSA signatures"
                    }
                }
            }
            return .failed
        }
    }
}

extension SSHSession {
    /// One step of public-key authentication signed by `request`.
    func authenticate(user: String, signedBy request: SigningRequest) throws(SSHError) -> Bool {
        let rc = request.requestBlob.withUnsafeBufferPointer { blob in
            libssh2_userauth_publickey(handle, user, blob.baseAddress, blob.count, { _, signature, signatureLength, data, dataLength, abstract in
                guard let signature, let signatureLength, let context = abstract?.pointee else { return -1 }
                let request = Unmanaged<SigningRequest>.fromOpaque(context).takeUnretainedValue()
                switch request.sign(UnsafeRawBufferPointer(start: data, count: dataLength)) {
                case .failed: return -1
                // libssh2 1.10 returns EAGAIN from the userauth call and calls back with the same data.
                case .waitingForAgent: return LIBSSH2_ERROR_EAGAIN
                case .signed(let bytes):
                    guard let out = malloc(max(1, bytes.count))?.assumingMemoryBound(to: UInt8.self) else { return -1 }
                    // libssh2 frees it with its allocator: the default, free().
                    out.initialize(from: bytes, count: bytes.count)
                    signature.pointee = out
                    signatureLength.pointee = bytes.count
                    return 0
                }
            }, request.abstract)
        }
        return try step(rc, handle, "libssh2_userauth_publickey(\(request.algorithm?.rawValue ?? "agent"))")
    }
}
