internal import CLibSSH2
import TunnelPOSIX

/// A failed libssh2 call: which call, its error code and libssh2's message.
public struct SSHError: Error, Equatable, Sendable, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let message: String
    /// For a channel open the server refused: its RFC 4254 reason.
    public internal(set) var refusal: ChannelOpenRefusal?

    public init(call: String, code: Int32, message: String) {
        self.call = call
        self.code = code
        self.message = message
    }

    public var description: String { "\(call): \(message)" }

    /// libssh2 waited its fixed 60 s (LIBSSH2_READ_TIMEOUT) for the server's
    /// answer and gave up. After a channel open it forgets that open, not the
    /// session: the server is alive but slow to answer that one request (its
    /// connect to the target hangs).
    public var isUnansweredRequest: Bool { code == LIBSSH2_ERROR_TIMEOUT }

    /// The server closed the connection or the socket failed.
    public var isTransportFailure: Bool {
        code == LIBSSH2_ERROR_SOCKET_DISCONNECT || code == LIBSSH2_ERROR_SOCKET_RECV
            || code == LIBSSH2_ERROR_SOCKET_SEND || code == LIBSSH2_ERROR_SOCKET_TIMEOUT
            || code == LIBSSH2_ERROR_TIMEOUT || code == LIBSSH2_ERROR_BANNER_RECV
            || code == LIBSSH2_ERROR_BANNER_SEND
    }

}

/// Why the server refused a channel open (RFC 4254 5.1 reason codes).
public enum ChannelOpenRefusal: Equatable, Sendable {
    case administrativelyProhibited
    case connectFailed
    case unknownChannelType
    case resourceShortage
    case unspecified

    /// libssh2 1.10 keeps the reason code to itself and reports it only as
    /// one of these fixed texts: this is the one place that reads them.
    init(libssh2Message message: String) {
        switch message {
        case "Channel open failure (administratively prohibited)": self = .administrativelyProhibited
        case "Channel open failure (connect failed)": self = .connectFailed
        case "Channel open failure (unknown channel type)": self = .unknownChannelType
        case "Channel open failure (resource shortage)": self = .resourceShortage
        default: self = .unspecified
        }
    }
}

/// libssh2 is initialised once per process before any thread uses it.
enum SSHLibrary {
    static let initialized: Bool = {
        libssh2_init(0) == 0
    }()
}

extension OpaquePointer {
    /// The session's last error as an SSHError for `call`.
    func lastError(_ call: String) -> SSHError {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        let code = libssh2_session_last_error(self, &message, &length, 0)
        // May quote the server (a disconnect reason): control characters are made visible.
        let text = message.map { String(cString: $0).escapingControlCharacters } ?? "error \(code)"
        return SSHError(call: call, code: code, message: text.isEmpty ? "error \(code)" : text)
    }
}

/// Maps a libssh2 return code: EAGAIN is a state, negative is an error.
@inline(__always)
func step(_ rc: Int32, _ session: OpaquePointer, _ call: @autoclosure () -> String) throws(SSHError) -> Bool {
    if rc == LIBSSH2_ERROR_EAGAIN { return false }
    if rc < 0 { throw session.lastError(call()) }
    return true
}
