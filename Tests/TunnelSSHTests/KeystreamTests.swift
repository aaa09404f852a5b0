import XCTest

import CCryptoCalls
import CTestSupport

/// The batched AES-CTR keystream (Sources/CCryptoCalls) must give exactly the
/// bytes OpenSSL gives, act only for libssh2's own calls on contexts libssh2
/// set up, and leave every other context exactly as OpenSSL would.
/// Reference output comes from EVP_CipherInit_ex + EVP_CipherUpdate on a
/// separate context, which is never batched. This test code is outside
/// libssh2: its EVP_ calls take the hooks as any other caller's would, and
/// tunnel_keystream_*_as_libssh2 take them as libssh2's calls do. (That
/// libssh2's real calls are batched is checked end to end by the integration
/// tests: ForwardingTests and PortTests look for "batched keystream".)
final class KeystreamTests: XCTestCase {
    private func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    /// A context set up without EVP_CipherInit, as OpenSSL alone sets it up.
    private func referenceContext(_ cipher: OpaquePointer?, key: [UInt8], iv: [UInt8]) throws -> OpaquePointer {
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        XCTAssertEqual(EVP_CipherInit_ex(ctx, cipher, nil, key, iv, 1), 1)
        return ctx
    }

    /// EVP_CipherUpdate over the whole input.
    private func update(_ ctx: OpaquePointer, _ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count + 32)
        var length: Int32 = 0
        XCTAssertEqual(EVP_CipherUpdate(ctx, &out, &length, input, Int32(input.count)), 1)
        return Array(out[..<Int(length)])
    }

    /// One EVP_CipherUpdate over the whole input, on a fresh reference context.
    private func reference(_ cipher: OpaquePointer?, key: [UInt8], iv: [UInt8], input: [UInt8]) throws -> [UInt8] {
        let ctx = try referenceContext(cipher, key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(ctx) }
        return update(ctx, input)
    }

    /// EVP_Cipher in pieces of `sizes`, cycling, as libssh2 calls it
    /// (`asLibssh2`) or as any other caller does.
    private func inPieces(_ ctx: OpaquePointer, _ input: [UInt8], sizes: [Int], asLibssh2: Bool = true) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        var offset = 0, turn = 0
        while offset < input.count {
            let n = min(sizes[turn % sizes.count], input.count - offset)
            turn += 1
            let rc = input.withUnsafeBufferPointer { i in
                out.withUnsafeMutableBufferPointer { o in
                    asLibssh2 ? tunnel_keystream_cipher_as_libssh2(ctx, o.baseAddress! + offset, i.baseAddress! + offset, UInt32(n))
                        : EVP_Cipher(ctx, o.baseAddress! + offset, i.baseAddress! + offset, UInt32(n))
                }
            }
            XCTAssertEqual(rc, Int32(n), "EVP_Cipher returns the byte count, as OpenSSL 3 does for provider ciphers")
            offset += n
        }
        return out
    }

    /// What OpenSSL reports of a context's state: original IV, counter, position in the block.
    private func state(_ ctx: OpaquePointer) -> [UInt8] {
        var original = [UInt8](repeating: 0, count: 16), updated = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(EVP_CIPHER_CTX_get_original_iv(ctx, &original, 16), 1)
        XCTAssertEqual(EVP_CIPHER_CTX_get_updated_iv(ctx, &updated, 16), 1)
        return original + updated + [UInt8(EVP_CIPHER_CTX_get_num(ctx))]
    }

    /// A context set up as libssh2 sets it up, which is batched.
    private func libssh2Context(_ cipher: OpaquePointer?, key: [UInt8], iv: [UInt8]) throws -> OpaquePointer {
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        let contexts = tunnel_keystream_contexts_on_this_thread()
        XCTAssertEqual(tunnel_keystream_init_as_libssh2(ctx, cipher, key, iv, 1), 1)
        XCTAssertEqual(tunnel_keystream_batched(ctx), 1, "libssh2's AES-CTR context is batched")
        XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts + 1)
        return ctx
    }

    // MARK: libssh2's calls

    func testCTR_libssh2sCalls_inAnyPieceSizes_giveOpenSSLsBytes_andAreBatched() throws {
        XCTAssertEqual(tunnel_keystream_enabled(), 1)
        let input = bytes(300_000, seed: 1)
        for (cipher, keyLength) in [(EVP_aes_128_ctr(), 16), (EVP_aes_192_ctr(), 24), (EVP_aes_256_ctr(), 32)] {
            for sizes in [[16], [1], [7, 16, 9], [8192], [8193, 3], [40_000, 16, 5]] {
                let key = bytes(keyLength, seed: UInt64(keyLength)), iv = bytes(16, seed: 99)
                let ctx = try libssh2Context(cipher, key: key, iv: iv)
                defer { EVP_CIPHER_CTX_free(ctx) }
                let generated = tunnel_keystream_bytes()
                XCTAssertTrue(try inPieces(ctx, input, sizes: sizes) == reference(cipher, key: key, iv: iv, input: input), "key \(keyLength), pieces \(sizes)")
                XCTAssertGreaterThanOrEqual(tunnel_keystream_bytes() - generated, UInt64(input.count), "the bytes came from the batched keystream")
                XCTAssertEqual(tunnel_keystream_batched(ctx), 1)
            }
        }
    }

    /// libssh2 never does this, but a context keyed again must not reuse
    /// keystream prefetched under the old key: neither when the cipher is
    /// named again (OpenSSL resets the context; batched anew) nor when it is
    /// kept (nil; the context stays unbatched).
    func testCTR_keyedAgainMidStream_startsTheNewKeystream() throws {
        for again in [EVP_aes_128_ctr(), nil] {
            let first = bytes(16, seed: 2), second = bytes(16, seed: 3), iv = bytes(16, seed: 4)
            let ctx = try libssh2Context(EVP_aes_128_ctr(), key: first, iv: iv)
            defer { EVP_CIPHER_CTX_free(ctx) }
            let input = bytes(4096, seed: 5)
            _ = inPieces(ctx, Array(input[..<48]), sizes: [16])
            XCTAssertEqual(tunnel_keystream_init_as_libssh2(ctx, again, second, iv, 1), 1)
            XCTAssertEqual(tunnel_keystream_batched(ctx), again == nil ? 0 : 1)
            XCTAssertTrue(try inPieces(ctx, input, sizes: [16]) == reference(EVP_aes_128_ctr(), key: second, iv: iv, input: input),
                          again == nil ? "cipher kept" : "cipher named again")
        }
    }

    func testOtherModes_passThrough_unbatched() throws {
        let key = bytes(16, seed: 6), iv = bytes(16, seed: 7), input = bytes(4096, seed: 8)
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(ctx) }
        let contexts = tunnel_keystream_contexts_on_this_thread()
        XCTAssertEqual(tunnel_keystream_init_as_libssh2(ctx, EVP_aes_128_cbc(), key, iv, 1), 1)
        XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts, "CBC is not a keystream cipher")
        XCTAssertEqual(tunnel_keystream_batched(ctx), 0)
        EVP_CIPHER_CTX_set_padding(ctx, 0)
        var out = [UInt8](repeating: 0, count: input.count)
        XCTAssertEqual(tunnel_keystream_cipher_as_libssh2(ctx, &out, input, UInt32(input.count)), Int32(input.count))
        let expected = try reference(EVP_aes_128_cbc(), key: key, iv: iv, input: input)
        XCTAssertTrue(out == expected, "CBC output differs from OpenSSL's")
    }

    // MARK: everyone else's calls

    /// EVP_CipherInit and EVP_Cipher from outside libssh2 are libcrypto's own.
    func testCTR_setUpOutsideLibssh2_isNotBatched() throws {
        let key = bytes(16, seed: 9), iv = bytes(16, seed: 10), input = bytes(20_000, seed: 11)
        let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(ctx) }
        let contexts = tunnel_keystream_contexts_on_this_thread(), generated = tunnel_keystream_bytes()
        XCTAssertEqual(EVP_CipherInit(ctx, EVP_aes_128_ctr(), key, iv, 1), 1)
        XCTAssertEqual(tunnel_keystream_batched(ctx), 0, "a context this test set up was batched")
        XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts)
        XCTAssertTrue(try inPieces(ctx, input, sizes: [16, 7], asLibssh2: false) == reference(EVP_aes_128_ctr(), key: key, iv: iv, input: input))
        XCTAssertEqual(tunnel_keystream_bytes(), generated, "keystream was generated for this test's calls")
    }

    /// libssh2's context, then a call from elsewhere: the context is put
    /// back where OpenSSL would have it and unbatched, and that call and
    /// every later one give OpenSSL's bytes.
    func testCTR_libssh2sContext_calledFromElsewhere_continuesExactly_unbatched() throws {
        let key = bytes(16, seed: 12), iv = bytes(16, seed: 13), input = bytes(20_000, seed: 14)
        let ctx = try libssh2Context(EVP_aes_128_ctr(), key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(ctx) }
        let ref = try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(ref) }
        XCTAssertTrue(inPieces(ctx, Array(input[..<50]), sizes: [16, 16, 16, 2]) == update(ref, Array(input[..<50])))
        XCTAssertTrue(inPieces(ctx, Array(input[50..<1000]), sizes: [16, 5], asLibssh2: false) == update(ref, Array(input[50..<1000])))
        XCTAssertEqual(tunnel_keystream_batched(ctx), 0, "another caller's EVP_Cipher was answered from libssh2's batch")
        XCTAssertEqual(state(ctx), state(ref))
        XCTAssertTrue(inPieces(ctx, Array(input[1000...]), sizes: [16]) == update(ref, Array(input[1000...])))
    }

    /// EVP_CipherInit, some blocks, then a new IV (or none: the counter goes
    /// on) through EVP_CipherInit_ex, _ex2 or EVP_EncryptInit_ex: OpenSSL's
    /// bytes after it, never a keystream block served twice. Both for a
    /// context set up by this test and for one set up as libssh2's.
    func testCTR_cipherInit_thenReIV_givesOpenSSLsBytes() throws {
        let key = bytes(16, seed: 15), iv = bytes(16, seed: 16), newIV = bytes(16, seed: 17), input = bytes(20_000, seed: 18)
        let reIVs: [(String, (OpaquePointer) -> Int32)] = [
            ("EVP_CipherInit_ex, new IV", { EVP_CipherInit_ex($0, nil, nil, nil, newIV, -1) }),
            ("EVP_CipherInit_ex, no IV", { EVP_CipherInit_ex($0, nil, nil, nil, nil, -1) }),
            ("EVP_CipherInit_ex2, new IV", { EVP_CipherInit_ex2($0, nil, nil, newIV, -1, nil) }),
            ("EVP_EncryptInit_ex, new IV", { EVP_EncryptInit_ex($0, nil, nil, nil, newIV) }),
        ]
        for (name, reIV) in reIVs {
            for asLibssh2 in [false, true] {
                let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
                defer { EVP_CIPHER_CTX_free(ctx) }
                XCTAssertEqual(asLibssh2 ? tunnel_keystream_init_as_libssh2(ctx, EVP_aes_128_ctr(), key, iv, 1)
                                         : EVP_CipherInit(ctx, EVP_aes_128_ctr(), key, iv, 1), 1)
                XCTAssertEqual(tunnel_keystream_batched(ctx), asLibssh2 ? 1 : 0)
                let ref = try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)
                defer { EVP_CIPHER_CTX_free(ref) }
                let label = "\(name), \(asLibssh2 ? "libssh2's context" : "this test's context")"
                XCTAssertTrue(inPieces(ctx, Array(input[..<50]), sizes: [16, 16, 16, 2], asLibssh2: asLibssh2) == update(ref, Array(input[..<50])), label)
                XCTAssertEqual(reIV(ctx), 1, label)
                XCTAssertEqual(reIV(ref), 1, label)
                XCTAssertEqual(tunnel_keystream_batched(ctx), 0, label)
                XCTAssertEqual(state(ctx), state(ref), label)
                XCTAssertTrue(inPieces(ctx, Array(input[50...]), sizes: [16], asLibssh2: asLibssh2) == update(ref, Array(input[50...])), label)
            }
        }
    }

    /// EVP_CipherInit(ctx, NULL, key, NULL, -1): a new key, the counter goes
    /// on from where OpenSSL alone would have it.
    func testCTR_reKeyWithoutIV_givesOpenSSLsBytes() throws {
        let key = bytes(16, seed: 19), newKey = bytes(16, seed: 20), iv = bytes(16, seed: 21), input = bytes(20_000, seed: 22)
        for byLibssh2 in [false, true] {
            let ctx = try libssh2Context(EVP_aes_128_ctr(), key: key, iv: iv)
            defer { EVP_CIPHER_CTX_free(ctx) }
            let ref = try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)
            defer { EVP_CIPHER_CTX_free(ref) }
            XCTAssertTrue(inPieces(ctx, Array(input[..<50]), sizes: [16, 16, 16, 2]) == update(ref, Array(input[..<50])))
            XCTAssertEqual(byLibssh2 ? tunnel_keystream_init_as_libssh2(ctx, nil, newKey, nil, -1) : EVP_CipherInit(ctx, nil, newKey, nil, -1), 1)
            XCTAssertEqual(EVP_CipherInit_ex(ref, nil, nil, newKey, nil, -1), 1)
            XCTAssertEqual(tunnel_keystream_batched(ctx), 0, "a context keyed without an IV has a counter nobody tracked")
            XCTAssertEqual(state(ctx), state(ref))
            XCTAssertTrue(inPieces(ctx, Array(input[50...]), sizes: [16]) == update(ref, Array(input[50...])), byLibssh2 ? "libssh2's re-key" : "this test's re-key")
        }
    }

    /// EVP_CIPHER_CTX_copy of libssh2's context: both are unbatched and
    /// exact, and freeing either leaves the other working.
    func testCTR_copy_thenFreeEither_theOtherGivesOpenSSLsBytes() throws {
        let key = bytes(16, seed: 23), iv = bytes(16, seed: 24), input = bytes(20_000, seed: 25)
        for freeTheSource in [true, false] {
            let source = try libssh2Context(EVP_aes_128_ctr(), key: key, iv: iv)
            let ref = try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)
            defer { EVP_CIPHER_CTX_free(ref) }
            XCTAssertTrue(inPieces(source, Array(input[..<40]), sizes: [16, 16, 8]) == update(ref, Array(input[..<40])))
            let copy = try XCTUnwrap(EVP_CIPHER_CTX_new())
            XCTAssertEqual(EVP_CIPHER_CTX_copy(copy, source), 1)
            XCTAssertEqual(tunnel_keystream_batched(source), 0, "the source kept a batch that was copied")
            XCTAssertEqual(tunnel_keystream_batched(copy), 0)
            XCTAssertEqual(state(copy), state(ref))
            XCTAssertEqual(state(source), state(ref))
            let (kept, freed) = freeTheSource ? (copy, source) : (source, copy)
            EVP_CIPHER_CTX_free(freed)
            let label = freeTheSource ? "the copy, source freed" : "the source, copy freed"
            XCTAssertTrue(inPieces(kept, Array(input[40..<5000]), sizes: [16], asLibssh2: false) == update(ref, Array(input[40..<5000])), label)
            XCTAssertTrue(inPieces(kept, Array(input[5000...]), sizes: [16]) == update(ref, Array(input[5000...])), label)
            EVP_CIPHER_CTX_free(kept)
        }
    }

    /// Copying into libssh2's context replaces it wholly, as in OpenSSL.
    func testCTR_copyIntoLibssh2sContext_givesTheCopiedStream() throws {
        let key = bytes(16, seed: 26), otherKey = bytes(16, seed: 27), iv = bytes(16, seed: 28), input = bytes(10_000, seed: 29)
        let target = try libssh2Context(EVP_aes_128_ctr(), key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(target) }
        _ = inPieces(target, Array(input[..<48]), sizes: [16])
        let source = try referenceContext(EVP_aes_128_ctr(), key: otherKey, iv: iv)
        defer { EVP_CIPHER_CTX_free(source) }
        XCTAssertEqual(EVP_CIPHER_CTX_copy(target, source), 1)
        XCTAssertEqual(tunnel_keystream_batched(target), 0)
        XCTAssertTrue(try inPieces(target, input, sizes: [16]) == reference(EVP_aes_128_ctr(), key: otherKey, iv: iv, input: input))
    }

    /// A context's app_data is its owner's: never read, written or taken for
    /// a batch, whether set before init (OpenSSL's EVP_CipherInit clears
    /// it) or after, on this test's contexts and on libssh2's. Its memory
    /// here starts with the context's own address, as a wrapper struct's would.
    func testCTR_appDataOfItsOwn_isLeftAlone_andTheBytesAreOpenSSLs() throws {
        let key = bytes(16, seed: 30), iv = bytes(16, seed: 31), input = bytes(20_000, seed: 32)
        for asLibssh2 in [false, true] {
            for setBeforeInit in [true, false] {
                let label = "\(asLibssh2 ? "libssh2's context" : "this test's context"), app_data set \(setBeforeInit ? "before" : "after") init"
                let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
                let ref = try XCTUnwrap(EVP_CIPHER_CTX_new())
                defer { EVP_CIPHER_CTX_free(ref) }
                let mine = UnsafeMutablePointer<UInt>.allocate(capacity: 4)
                defer { mine.deallocate() }
                let contents: [UInt] = [UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(ctx))), 0, 0, 0]
                mine.initialize(from: contents, count: 4)
                if setBeforeInit {
                    EVP_CIPHER_CTX_set_app_data(ctx, mine)
                    EVP_CIPHER_CTX_set_app_data(ref, mine)
                }
                XCTAssertEqual(asLibssh2 ? tunnel_keystream_init_as_libssh2(ctx, EVP_aes_128_ctr(), key, iv, 1)
                                         : EVP_CipherInit(ctx, EVP_aes_128_ctr(), key, iv, 1), 1, label)
                XCTAssertEqual(EVP_CipherInit(ref, EVP_aes_128_ctr(), key, iv, 1), 1, label)
                XCTAssertEqual(EVP_CIPHER_CTX_get_app_data(ctx), EVP_CIPHER_CTX_get_app_data(ref), label)
                XCTAssertEqual(tunnel_keystream_batched(ctx), asLibssh2 ? 1 : 0, label)
                var expected = update(ref, Array(input[..<100]))
                XCTAssertTrue(inPieces(ctx, Array(input[..<100]), sizes: [16], asLibssh2: asLibssh2) == expected, label)
                EVP_CIPHER_CTX_set_app_data(ctx, mine)
                EVP_CIPHER_CTX_set_app_data(ref, mine)
                expected = update(ref, Array(input[100...]))
                XCTAssertTrue(inPieces(ctx, Array(input[100...]), sizes: [16, 3], asLibssh2: asLibssh2) == expected, label)
                XCTAssertEqual(EVP_CIPHER_CTX_get_app_data(ctx), UnsafeMutableRawPointer(mine), label)
                EVP_CIPHER_CTX_free(ctx)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: mine, count: 4)), contents, "\(label): app_data's memory was written")
            }
        }
    }

    /// Many of libssh2's contexts at once share the side table's buckets:
    /// each finds its own batch (or, in a full bucket, none), and no other
    /// context ever finds one of theirs.
    func testCTR_manyContexts_eachFindsOnlyItsOwnBatch() throws {
        let input = bytes(1000, seed: 36)
        var contexts: [(OpaquePointer, OpaquePointer)] = []
        defer { for (ctx, ref) in contexts { EVP_CIPHER_CTX_free(ctx); EVP_CIPHER_CTX_free(ref) } }
        for n in 0..<400 {
            let key = bytes(16, seed: UInt64(1000 + n)), iv = bytes(16, seed: UInt64(5000 + n))
            let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
            XCTAssertEqual(tunnel_keystream_init_as_libssh2(ctx, EVP_aes_128_ctr(), key, iv, 1), 1)
            contexts.append((ctx, try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)))
        }
        let batched = contexts.filter { tunnel_keystream_batched($0.0) == 1 }.count
        XCTAssertGreaterThan(batched, 300, "most contexts are batched")
        for (n, (ctx, ref)) in contexts.enumerated() {
            XCTAssertTrue(inPieces(ctx, input, sizes: [16]) == update(ref, input), "context \(n)")
        }
        for n in 0..<50 {
            let key = bytes(16, seed: UInt64(9000 + n)), iv = bytes(16, seed: UInt64(9500 + n))
            let other = try XCTUnwrap(EVP_CIPHER_CTX_new())
            defer { EVP_CIPHER_CTX_free(other) }
            XCTAssertEqual(EVP_CipherInit(other, EVP_aes_128_ctr(), key, iv, 1), 1)
            XCTAssertEqual(tunnel_keystream_batched(other), 0, "context \(n) found another context's batch")
            XCTAssertTrue(try inPieces(other, input, sizes: [16]) == reference(EVP_aes_128_ctr(), key: key, iv: iv, input: input), "other context \(n)")
        }
        for (n, (ctx, ref)) in contexts.enumerated() {
            XCTAssertTrue(inPieces(ctx, input, sizes: [16]) == update(ref, input), "context \(n), again")
        }
    }

    // MARK: the version gate

    /// With libssh2 or OpenSSL at a version the shortcuts were not checked
    /// against, every call passes through: nothing batched, swapped or pooled.
    func testGateClosed_everythingPassesThrough() throws {
        XCTAssertEqual(tunnel_crypto_calls_active(), 1)
        XCTAssertTrue(String(cString: tunnel_crypto_calls_status()).hasPrefix("on: libssh2 1.1"), String(cString: tunnel_crypto_calls_status()))
        defer { XCTAssertEqual(String(cString: tunnel_crypto_calls_gate_for_testing(nil, 0)).prefix(3), "on:") }
        let key = bytes(16, seed: 33), iv = bytes(16, seed: 34), input = bytes(20_000, seed: 35)
        // Batched while the gate was open: it stays exact after it closes.
        let earlier = try libssh2Context(EVP_aes_128_ctr(), key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(earlier) }
        let earlierRef = try referenceContext(EVP_aes_128_ctr(), key: key, iv: iv)
        defer { EVP_CIPHER_CTX_free(earlierRef) }
        XCTAssertTrue(inPieces(earlier, Array(input[..<48]), sizes: [16]) == update(earlierRef, Array(input[..<48])))

        let cases: [(String, UInt, String)] = [
            ("1.9.0", 0x3000_0130, "off: libssh2 1.9.0 is not 1.10.x or 1.11.x"),
            ("1.12.0", 0x3000_0130, "off: libssh2 1.12.0 is not 1.10.x or 1.11.x"),
            ("1.10.0", 0x1010_117F, "off: OpenSSL 1.1.1 is not 3.x"),
            ("1.11.1", 0x4000_0000, "off: OpenSSL 4.0.0 is not 3.x"),
        ]
        for (libssh2, openssl, why) in cases {
            XCTAssertEqual(String(cString: tunnel_crypto_calls_gate_for_testing(libssh2, openssl)), why)
            XCTAssertEqual(tunnel_crypto_calls_active(), 0, why)
            XCTAssertEqual(tunnel_keystream_enabled(), 0, why)
            XCTAssertEqual(tunnel_hmac_prefetch_enabled(), 0, why)
            XCTAssertEqual(tunnel_random_pool_enabled(), 0, why)

            let ctx = try XCTUnwrap(EVP_CIPHER_CTX_new())
            defer { EVP_CIPHER_CTX_free(ctx) }
            let contexts = tunnel_keystream_contexts_on_this_thread(), generated = tunnel_keystream_bytes()
            XCTAssertEqual(tunnel_keystream_init_as_libssh2(ctx, EVP_aes_128_ctr(), key, iv, 1), 1)
            XCTAssertEqual(tunnel_keystream_batched(ctx), 0, why)
            XCTAssertEqual(tunnel_keystream_contexts_on_this_thread(), contexts, why)
            XCTAssertTrue(try inPieces(ctx, input, sizes: [16]) == reference(EVP_aes_128_ctr(), key: key, iv: iv, input: input), why)
            XCTAssertEqual(tunnel_keystream_bytes(), generated, why)

            let hmac = try XCTUnwrap(test_hmac_ctx_new())
            defer { test_hmac_ctx_free(hmac) }
            let inits = tunnel_hmac_prefetched_inits_on_this_thread()
            XCTAssertEqual(tunnel_hmac_init_as_libssh2(hmac, key, Int32(key.count), EVP_sha512()), 1)
            XCTAssertEqual(test_hmac_ctx_get_md(hmac), EVP_sha512(), "\(why): the digest was swapped")
            XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), inits, why)

            XCTAssertEqual(tunnel_hmac_keys_kept(), 0, why)
            let kept = tunnel_hmac_kept_key_inits_on_this_thread()
            let handle = try XCTUnwrap(tunnel_hmac_ctx_new_as_libssh2())
            defer { test_hmac_ctx_free(handle) }
            XCTAssertEqual(tunnel_hmac_init_as_libssh2(handle, key, Int32(key.count), EVP_sha512()), 1)
            XCTAssertEqual(tunnel_hmac_stands_for_kept_key(handle), 0, "\(why): a key was kept")
            XCTAssertEqual(tunnel_hmac_kept_key_inits_on_this_thread(), kept, why)
            XCTAssertEqual(test_hmac_ctx_get_md(handle), EVP_sha512(), why)

            let draws = tunnel_random_pool_calls_on_this_thread(), unserved = tunnel_random_pool_unserved()
            var padding = [UInt8](repeating: 0, count: 16)
            XCTAssertEqual(tunnel_random_pool_draw(&padding, 16), 1)
            XCTAssertNotEqual(padding, [UInt8](repeating: 0, count: 16))
            XCTAssertEqual(tunnel_random_pool_calls_on_this_thread(), draws, "\(why): the padding came from the pool")
            XCTAssertEqual(tunnel_random_pool_unserved(), unserved, why)
        }
        XCTAssertTrue(inPieces(earlier, Array(input[48...]), sizes: [16]) == update(earlierRef, Array(input[48...])))
        // Supported versions re-open it (it cannot open wider than the real versions allow).
        XCTAssertEqual(String(cString: tunnel_crypto_calls_gate_for_testing("1.11.0", 0x3020_0000)).prefix(3), "on:")
        XCTAssertEqual(tunnel_crypto_calls_active(), 1)
    }
}
