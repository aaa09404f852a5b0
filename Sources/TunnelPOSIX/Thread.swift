import Glibc
import CLinuxShim

private final class ThreadBody {
    let name: String
    let body: () -> Void
    init(_ name: String, _ body: @escaping () -> Void) {
        self.name = String(name.prefix(15)) // the kernel keeps 15 bytes
        self.body = body
    }
}

/// Starts a detached pthread. Used for event-loop threads and the blocking
/// resolver; Foundation's Thread is avoided to keep Foundation out of the daemon.
/// Throws when the system has no thread to give (RLIMIT_NPROC, memory): the
/// caller fails what needed it, as it would for any other resource.
public func startThread(name: String, _ body: @escaping () -> Void) throws(SystemError) {
    let box = Unmanaged.passRetained(ThreadBody(name, body)).toOpaque()
    var thread = pthread_t()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    let rc = pthread_create(&thread, &attr, { raw in
        let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        _ = tunnel_set_thread_name(body.name)
        body.body()
        return nil
    }, box)
    pthread_attr_destroy(&attr)
    if rc != 0 {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw SystemError("pthread_create(\(name))", Errno(rc))
    }
}
