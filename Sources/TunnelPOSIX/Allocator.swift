import CLinuxShim

public enum Allocator {
    /// Called once at start, before any thread: see tunnel_tune_malloc.
    public static func keepFreedHeapForStreams() { tunnel_tune_malloc() }
}
