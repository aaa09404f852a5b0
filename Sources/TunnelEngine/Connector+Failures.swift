import TunnelPOSIX
import TunnelSSH

/// Why a TCP connect to `address` failed, worded for a message (the
/// server's address here, a remote forward's target in `LocalDialer`).
func describeTCP(_ errno: Errno, _ address: SocketAddress) -> String {
    switch errno {
    case .connectionRefused: return "connection refused by \(address)"
    case .hostUnreachable, .networkUnreachable: return "no route to host \(address) (\(errno))"
    case .timedOut: return "connection to \(address) timed out"
    default: return "cannot connect to \(address): \(errno)"
    }
}

/// How a failed attempt is worded: which address refused, what timed out, why a handshake failed.
extension Connector {

    /// All addresses failed: the message names each; a refusal anywhere
    /// outranks no route, which outranks a timeout.
    func failTCP() {
        let message = tcpErrors.map { describeTCP($0.errno, $0.address) }.joined(separator: "; ")
        let errnos = tcpErrors.map(\.errno)
        let kind: ConnectFailure.Kind
        if errnos.contains(.connectionRefused) { kind = .refused }
        else if errnos.contains(where: { $0 == .hostUnreachable || $0 == .networkUnreachable }) { kind = .unreachable }
        else if errnos.contains(.timedOut) { kind = .timedOut }
        else { kind = .network }
        fail(ConnectFailure(kind: kind, message: message.isEmpty ? "cannot connect to \(target)" : message, isPermanent: false))
    }

    func handshakeFailure(_ error: SSHError, peer address: String, session: SSHSession) -> ConnectFailure {
        if let exited = proxy?.exitReason(waitingUpTo: 0.2) {
            return ConnectFailure(kind: .network, message: "\(exited) (before the SSH handshake with \(target) finished)", isPermanent: false)
        }
        let banner = session.serverBanner
        let shown = banner.count > 80 ? banner.prefix(80) + "…" : banner
        if session.identificationOverflow {
            return ConnectFailure(kind: .ssh, message: "the server at \(address) sent more than \(SSHTransport.identificationLimit / 1024) KiB without an SSH identification line: it is not an SSH server", isPermanent: false)
        }
        if !banner.isEmpty && !banner.hasPrefix("SSH-") {
            // Its first line says what answered (an HTTP proxy's status line); libssh2 keeps its last.
            let first = session.firstLineReceived
            let said = first.isEmpty ? shown : first.count > 80 ? first.prefix(80) + "…" : first
            return ConnectFailure(kind: .ssh, message: "the server at \(address) is not an SSH server: it sent \"\(said)\" and no SSH identification line", isPermanent: false)
        }
        if banner.hasPrefix("SSH-1.") && !banner.hasPrefix("SSH-1.99-") {
            return ConnectFailure(kind: .ssh, message: "the server at \(address) speaks only SSH protocol 1 (\"\(shown)\"), which tunnel, like OpenSSH, does not support", isPermanent: true)
        }
        if let loss = session.connectionLoss {
            // It hung up (or reset) rather than disagree on algorithms: after its identification, most
            // likely sshd's MaxStartups or an access rule turning this client away.
            let detail = banner.isEmpty ? "the server at \(address) closed the connection during the SSH handshake (is it an SSH server?)"
                : "the server at \(address) sent its identification (\"\(shown)\") and then ended the connection (\(loss)) during the key exchange (MaxStartups, or an access rule on the server?)"
            return ConnectFailure(kind: .ssh, message: detail, isPermanent: false)
        }
        if error.isTransportFailure {
            let detail = banner.isEmpty ? "the server at \(address) closed the connection during the SSH handshake (is it an SSH server?)" : "the SSH handshake with \(address) failed: \(error.message)"
            return ConnectFailure(kind: .ssh, message: detail, isPermanent: false)
        }
        return ConnectFailure(kind: .ssh, message: "the SSH handshake with \(address) failed: \(error.message) (no common algorithms? libssh2 1.10 offers \(SSHAlgorithms.ciphers) with \(SSHAlgorithms.macs))", isPermanent: false)
    }

    func timedOut() {
        timeout = nil
        let seconds = profile.connectTimeout
        switch phase {
        case .resolving:
            fail(ConnectFailure(kind: .timedOut, message: "cannot connect to \(target): resolving \(profile.host) timed out after \(seconds) s", isPermanent: false))
        case .connecting:
            // Addresses that already failed are named too: a refusal there is the likelier fix.
            let earlier = addressesFailed.map { describeTCP($0.errno, $0.address) + "; " }.joined()
            let waiting = addressesInFlight.map(\.description).joined(separator: ", ")
            fail(ConnectFailure(kind: .timedOut, message: "\(earlier)connection to \(waiting.isEmpty ? target : waiting) timed out after \(seconds) s", isPermanent: false))
        case .readingKnownHosts:
            fail(ConnectFailure(kind: .hostKey, message: "reading known_hosts (\(profile.login.knownHosts.joined(separator: ", "))) took longer than \(seconds) s", isPermanent: false))
        case .handshaking(let address, _, _):
            if let exited = proxy?.exitReason(waitingUpTo: 0) {
                return fail(ConnectFailure(kind: .network, message: "\(exited) (before the SSH handshake with \(target) finished)", isPermanent: false))
            }
            fail(ConnectFailure(kind: .timedOut, message: "the SSH handshake with \(address) timed out after \(seconds) s (is it an SSH server?)", isPermanent: false))
        case .authenticating(let address, _, _, let auth, _, _):
            if let failure = auth.timedOutWaitingForAgent() { return fail(authenticationFailure(failure)) }
            fail(ConnectFailure(kind: .timedOut, message: "authentication with \(address) timed out after \(seconds) s", isPermanent: false))
        default:
            break
        }
    }
}
