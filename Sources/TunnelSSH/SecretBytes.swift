internal import COpenSSLKeys
import TunnelPOSIX

/// Key material in memory that is wiped when released. Swift arrays and
/// strings copy their storage freely and free it unwiped, so private keys are
/// read, decoded and parsed in these buffers only, and handed to OpenSSL as
/// pointers into them.
final class SecretBytes {
    private let storage: UnsafeMutableRawBufferPointer
    let count: Int

    /// Takes ownership of `buffer` (allocated with `allocate`).
    init(adopting buffer: UnsafeMutableRawBufferPointer) {
        storage = buffer
        count = buffer.count
    }

    init(count: Int) {
        storage = .allocate(byteCount: max(1, count), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        self.count = count
    }

    /// The file's bytes (a regular file of at most 1 MiB).
    static func read(_ path: String) throws(FileReadError) -> SecretBytes {
        SecretBytes(adopting: try Files.readUnmanaged(path))
    }

    deinit {
        if let base = storage.baseAddress { tunnel_cleanse(base, storage.count) }
        storage.deallocate()
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }
    var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]) }
}

extension UnsafeRawBufferPointer {
    /// The offset of `needle`'s first occurrence at or after `from`.
    func firstOffset(of needle: some StringProtocol, from: Int = 0) -> Int? {
        let pattern = Array(needle.utf8)
        guard !pattern.isEmpty, count >= pattern.count else { return nil }
        var i = from
        while i + pattern.count <= count {
            if self[i] == pattern[0] {
                var j = 1
                while j < pattern.count && self[i + j] == pattern[j] { j += 1 }
                if j == pattern.count { return i }
            }
            i += 1
        }
        return nil
    }

    func contains(_ needle: some StringProtocol) -> Bool { firstOffset(of: needle) != nil }

    func hasPrefix(_ prefix: some StringProtocol) -> Bool {
        let pattern = Array(prefix.utf8)
        return count >= pattern.count && zip(self, pattern).allSatisfy { $0 == $1 }
    }

    /// The bytes between `-----BEGIN LABEL-----` and `-----END LABEL-----`.
    func pemBody(label: String) -> UnsafeRawBufferPointer? {
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        guard let start = firstOffset(of: begin) else { return nil }
        let bodyStart = start + begin.utf8.count
        guard let stop = firstOffset(of: end, from: bodyStart) else { return nil }
        return UnsafeRawBufferPointer(rebasing: self[bodyStart..<stop])
    }

    /// Base64 (whitespace ignored) decoded into a wiped-on-release buffer; nil if not base64.
    func base64Decoded() -> SecretBytes? {
        let out = SecretBytes(count: count * 3 / 4 + 3)
        guard let n = Base64.decode(self, into: out.mutableBytes) else { return nil }
        return out.prefix(n)
    }
}

extension SecretBytes {
    /// The first `n` bytes, in a new wiped-on-release buffer.
    func prefix(_ n: Int) -> SecretBytes {
        let out = SecretBytes(count: min(n, count))
        out.mutableBytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<out.count]))
        return out
    }
}

/// Reads SSH wire-format fields from a buffer as views into it (no copies).
struct SSHBufferReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func uint32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    mutating func string() -> UnsafeRawBufferPointer? {
        guard let n = uint32(), Int(n) <= remaining else { return nil }
        defer { offset += Int(n) }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(n)])
    }

    mutating func skip(_ n: Int) -> Bool {
        guard n <= remaining else { return false }
        offset += n
        return true
    }
}

extension UnsafeRawBufferPointer {
    func equals(_ text: some StringProtocol) -> Bool { count == text.utf8.count && hasPrefix(text) }
}
