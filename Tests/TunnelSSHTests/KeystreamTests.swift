import XCTest

import CCryptoCalls
import CTestSupport

/// The batched AES-CTR keystream (Sources/CCryptoCalls) must give exactly the
/// bytes OpenSSL gives, whatever the call sizes, and leave other ciphers alone.
/// Reference output comes from EVP_CipherInit_ex + EVP_CipherUpdate, which
/// the batching does not touch.
final class KeystreamTests: XCTestCase {
    private func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    /// One EVP_CipherUpdate over the whole input, on a context set up without EVP_CipherInit.
    private func reference(_ cipher: OpaquePointer?, key: [UInt8], iv: [UInt8], input: [UInt8]) throws -> [UInt8] {
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(ctx) }
        XCTAssertEqual(EVP_CipherInit_ex(ctx, cipher, nil, key, iv, 1), 1)
        var out = [UInt8](repeating: 0, count: input.count + 32)
        var length: Int32 = 0
        XCTAssertEqual(EVP_CipherUpdate(ctx, &out, &length, input, Int32(input.count)), 1)
        return Array(out[..<Int(length)])
    }

    /// EVP_Cipher in pieces of `sizes`, cycling, as libssh2 calls it.
    private func inPieces(_ ctx: OpaquePointer, _ input: [UInt8], sizes: [Int]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        var offset = 0, turn = 0
        while offset < input.count {
            let n = min(sizes[turn % sizes.count], input.count - offset)
            turn += 1
            let rc = input.withUnsafeBufferPointer { i in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_Cipher(ctx, o.baseAddress! + offset, i.baseAddress! + offset, UInt32(n))
                }
            }
            XCTAssertEqual(rc, Int32(n), "EVP_Cipher returns the byte count, as OpenSSL 3 does for provider ciphers")
            offset += n
        }
        return out
    }

    func testCTR_inAnyPieceSizes_givesOpenSSLsBytes_andIsBatched() throws {
        XCTAssertEqual(tunnel_keystream_enabled(), 1)
        let input = bytes(300_000, seed: 1)
        for (cipher, keyLength) in [(EVP_aes_128_ctr(), 16), (EVP_aes_192_ctr(), 24), (EVP_aes_256_ctr(), 32)] {
            for sizes in [[16], [1], [7, 16, 9], [8192], [8193, 3], [40_000, 16, 5]] {
                let key = bytes(keyLength, seed: UInt64(keyLength)), iv = bytes(16, seed: 99)
                let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
                defer { EVP_CIPHER_CTX_free(ctx) }
                let contexts = tunnel_keystream_contexts_on_this_thread()
                let generated = tunnel_keystream_bytes()
                XCTAssertEqual(EVP_CipherInit(ctx, cipher, key, iv, 0), 1)
                XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts + 1, "an AES-CTR context is batched")
                XCTAssertTrue(try inPieces(ctx, input, sizes: sizes) == reference(cipher, key: key, iv: iv, input: input), "key \(keyLength), pieces \(sizes)")
                XCTAssertGreaterThanOrEqual(tunnel_keystream_bytes() - generated, UInt64(input.count), "the bytes came from the batched keystream")
            }
        }
    }

    /// libssh2 never does this, but a context keyed again must not reuse
    /// keystream prefetched under the old key: neither when the cipher is
    /// named again (OpenSSL resets the context) nor when it is kept (nil).
    func testCTR_keyedAgainMidStream_startsTheNewKeystream() throws {
        for again in [EVP_aes_128_ctr(), nil] {
            let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
            defer { EVP_CIPHER_CTX_free(ctx) }
            let first = bytes(16, seed: 2), second = bytes(16, seed: 3), iv = bytes(16, seed: 4)
            let input = bytes(4096, seed: 5)
            XCTAssertEqual(EVP_CipherInit(ctx, EVP_aes_128_ctr(), first, iv, 1), 1)
            _ = inPieces(ctx, Array(input[..<48]), sizes: [16])
            XCTAssertEqual(EVP_CipherInit(ctx, again, second, iv, 1), 1)
            XCTAssertTrue(try inPieces(ctx, input, sizes: [16]) == reference(EVP_aes_128_ctr(), key: second, iv: iv, input: input),
                           again == nil ? "cipher kept" : "cipher named again")
        }
    }

    func testOtherModes_passThrough_unbatched() throws {
        let key = bytes(16, seed: 6), iv = bytes(16, seed: 7), input = bytes(4096, seed: 8)
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(ctx) }
        let contexts = tunnel_keystream_contexts_on_this_thread()
        XCTAssertEqual(EVP_CipherInit(ctx, EVP_aes_128_cbc(), key, iv, 1), 1)
        XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts, "CBC is not a keystream cipher")
        EVP_CIPHER_CTX_set_padding(ctx, 0)
        var out = [UInt8](repeating: 0, count: input.count)
        XCTAssertEqual(EVP_Cipher(ctx, &out, input, UInt32(input.count)), Int32(input.count))
        let expected = try reference(EVP_aes_128_cbc(), key: key, iv: iv, input: input)
        XCTAssertTrue(out == expected, "CBC output differs from OpenSSL's")
    }
}
