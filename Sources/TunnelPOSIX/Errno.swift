import Glibc

/// An errno value with the name of the call that produced it.
public struct Errno: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public static var current: Errno { Errno(errno) }

    public static let addressInUse = Errno(EADDRINUSE)
    public static let accessDenied = Errno(EACCES)
    public static let connectionRefused = Errno(ECONNREFUSED)
    public static let timedOut = Errno(ETIMEDOUT)
    public static let hostUnreachable = Errno(EHOSTUNREACH)
    public static let networkUnreachable = Errno(ENETUNREACH)
    public static let noEntry = Errno(ENOENT)
    public static let tooManyFiles = Errno(EMFILE)
    public static let tooManyFilesSystem = Errno(ENFILE)
    public static let addressNotAvailable = Errno(EADDRNOTAVAIL)
    public static let familyNotSupported = Errno(EAFNOSUPPORT)

    public var description: String { String(cString: strerror(rawValue)) }
}

/// A failed system call: which call, on what, and errno.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Errno
    public init(_ call: String, _ errno: Errno) {
        self.call = call
        self.errno = errno
    }
    public var description: String { "\(call): \(errno)" }
}

/// The outcome of a non-blocking call: EAGAIN is a state, not an error.
public enum IOResult<T> {
    case done(T)
    case wouldBlock
}

extension IOResult: Equatable where T: Equatable {}

/// Runs a raw call that reports failure as -1 with errno. Retries EINTR,
/// maps EAGAIN to `.wouldBlock`, throws everything else.
@inline(__always)
func retrying<T: BinaryInteger>(_ call: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> IOResult<T> {
    while true {
        let result = body()
        if result >= 0 { return .done(result) }
        let err = errno
        if err == EINTR { continue }
        if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
        throw SystemError(call(), Errno(err))
    }
}

/// Like `retrying`, for calls that never legitimately block.
@inline(__always)
func checked<T: BinaryInteger>(_ call: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = errno
        if err == EINTR { continue }
        throw SystemError(call(), Errno(err))
    }
}
