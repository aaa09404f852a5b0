import Glibc
import CLinuxShim

/// Signals delivered as readable events instead of handlers.
public final class SignalFD {
    public let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.raw }

    /// Blocks `signals` for the calling thread (and threads it starts later)
    /// and reads them from a descriptor.
    public init(signals: [Int32]) throws(SystemError) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        _ = pthread_sigmask(SIG_BLOCK, &set, nil)
        let fd = try checked("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)) }
        descriptor = FileDescriptor(owning: fd)
    }

    /// The next pending signal number, or nil.
    public func next() -> Int32? {
        var info = signalfd_siginfo()
        let n = Glibc.read(fd, &info, MemoryLayout<signalfd_siginfo>.size)
        guard n == MemoryLayout<signalfd_siginfo>.size else { return nil }
        return Int32(info.ssi_signo)
    }

    public func close() { descriptor.close() }
}
