import CLinuxShim

public enum Allocator {
    /// Called once at start, before any thread: see tunnel_tune_malloc.
    public static func keepFreedHeapForStreams() { tunnel_tune_malloc() }

    /// Hands the free memory of every malloc arena back to the kernel. The
    /// fixed trim threshold (above) lets each thread's arena keep up to
    /// 4 MiB; a supervisor whose tunnel threads come and go would otherwise
    /// hold that much per arena after they are gone.
    public static func releaseFreeMemory() { _ = malloc_trim(0) }
}
