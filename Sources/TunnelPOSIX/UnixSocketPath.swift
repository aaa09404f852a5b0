import Glibc

/// A filesystem path a Unix-socket listener is to claim.
public enum UnixSocketPath {
    public enum Occupant: Equatable, Sendable {
        case nothing
        /// A socket file nobody listens on (left by a killed process).
        case stale
        /// A socket something still accepts on.
        case live
        /// A regular file, a directory, ...: never removed.
        case other(kind: String)
    }

    /// What is at `path`: a connect attempt tells a live socket from a stale one.
    public static func occupant(_ path: String) -> Occupant {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .nothing }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .other(kind: FileReadError.kind(of: st.st_mode) ?? "a regular file") }
        guard let probe = try? Socket.unix() else { return .live }
        defer { probe.close() }
        do {
            guard case .done = try probe.connect(.unix(path: path), until: Instant.now().adding(seconds: 1)) else { return .live }
            return .live
        } catch {
            // Refused: no listener behind it. Anything else (EACCES, ...): leave it be.
            return error.errno == .connectionRefused ? .stale : .live
        }
    }

    public static func setMode(_ path: String, _ mode: mode_t) throws(SystemError) {
        if chmod(path, mode) != 0 { throw SystemError("chmod(\(path))", .current) }
    }
}
