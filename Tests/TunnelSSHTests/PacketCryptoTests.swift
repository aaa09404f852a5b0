import XCTest
import Glibc

import CCryptoCalls
import CTestSupport
import TunnelPOSIX
import TunnelSSH

/// libssh2 1.10 keys an HMAC context and draws padding from RAND_bytes for
/// every packet. CCryptoCalls answers both more cheaply: the HMAC digest is
/// fetched from the provider once, and libssh2's random bytes come from a
/// per-thread pool. Both must give what libcrypto alone gives, and act only
/// for libssh2's calls (this test code is outside libssh2; the
/// *_as_libssh2 and tunnel_random_pool_draw entries take libssh2's path).
final class PacketCryptoTests: XCTestCase {
    private let data = Array("one SSH packet's worth of bytes, more or less".utf8)
    private let key = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }

    /// The reference: EVP_MAC, which does not go through HMAC_Init_ex.
    private static func referenceMAC(_ digest: String, key: [UInt8], data: [UInt8]) throws -> [UInt8] {
        let mac = try XCTUnwrap(EVP_MAC_fetch(nil, "HMAC", nil))
        defer { EVP_MAC_free(mac) }
        let ctx = try XCTUnwrap(EVP_MAC_CTX_new(mac))
        defer { EVP_MAC_CTX_free(ctx) }
        // The parameter keeps both C strings' addresses: they must outlive EVP_MAC_init.
        var name = Array(digest.utf8CString)
        let ok = OSSL_MAC_PARAM_DIGEST.withCString { parameter in
            name.withUnsafeMutableBufferPointer { n -> Int32 in
                var params = [OSSL_PARAM_construct_utf8_string(parameter, n.baseAddress, 0), OSSL_PARAM_construct_end()]
                return EVP_MAC_init(ctx, key, key.count, &params)
            }
        }
        XCTAssertEqual(ok, 1)
        XCTAssertEqual(EVP_MAC_update(ctx, data, data.count), 1)
        var out = [UInt8](repeating: 0, count: 64)
        var length = 0
        XCTAssertEqual(EVP_MAC_final(ctx, &out, &length, out.count), 1)
        return Array(out[..<length])
    }

    /// libssh2's per-packet sequence: keyed init, update, final, with the
    /// init made as libssh2's calls are (`asLibssh2`) or from this test's
    /// code, outside libssh2 (CTestSupport's HMAC_Init_ex call).
    private func libssh2StyleMAC(_ md: OpaquePointer?, key: [UInt8]?, data: [UInt8], on ctx: test_hmac_ctx, asLibssh2: Bool = true) -> [UInt8] {
        let keyLength = Int32(key?.count ?? 0)
        XCTAssertEqual(asLibssh2 ? tunnel_hmac_init_as_libssh2(ctx, key, keyLength, md) : test_hmac_init_ex(ctx, key, keyLength, md), 1)
        XCTAssertEqual(test_hmac_update(ctx, data, data.count), 1)
        var out = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        XCTAssertEqual(test_hmac_final(ctx, &out, &length), 1)
        return Array(out[..<Int(length)])
    }

    func testHMAC_libssh2sInit_withABuiltInDigest_usesTheFetchedOne_andGivesTheSameMAC() throws {
        XCTAssertEqual(tunnel_hmac_prefetch_enabled(), 1)
        for (md, name) in [(EVP_sha1(), "SHA1"), (EVP_sha256(), "SHA256"), (EVP_sha512(), "SHA512")] {
            let ctx = try XCTUnwrap(test_hmac_ctx_new())
            defer { test_hmac_ctx_free(ctx) }
            let before = tunnel_hmac_prefetched_inits_on_this_thread()
            XCTAssertEqual(libssh2StyleMAC(md, key: key, data: data, on: ctx), try Self.referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before + 1, name)
            let used = try XCTUnwrap(test_hmac_ctx_get_md(ctx))
            XCTAssertNotEqual(used, md, "\(name): libcrypto got the built-in digest and looked it up again")
            XCTAssertNotNil(EVP_MD_get0_provider(used), name)
            // Restarting with the same key (no key, same or no digest) still works.
            XCTAssertEqual(libssh2StyleMAC(md, key: nil, data: data, on: ctx), try Self.referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(libssh2StyleMAC(nil, key: nil, data: data, on: ctx), try Self.referenceMAC(name, key: key, data: data), name)
        }
    }

    /// HMAC_Init_ex from anywhere but libssh2 gets libcrypto exactly as called.
    func testHMAC_initFromOutsideLibssh2_isNotSwapped() throws {
        for (md, name) in [(EVP_sha1(), "SHA1"), (EVP_sha256(), "SHA256"), (EVP_sha512(), "SHA512")] {
            let ctx = try XCTUnwrap(test_hmac_ctx_new())
            defer { test_hmac_ctx_free(ctx) }
            let before = tunnel_hmac_prefetched_inits_on_this_thread()
            XCTAssertEqual(libssh2StyleMAC(md, key: key, data: data, on: ctx, asLibssh2: false), try Self.referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(test_hmac_ctx_get_md(ctx), md, "\(name): another caller's digest was swapped")
            XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before, name)
            XCTAssertEqual(libssh2StyleMAC(nil, key: nil, data: data, on: ctx, asLibssh2: false), try Self.referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(test_hmac_ctx_get_md(ctx), md, name)
        }
    }

    func testHMAC_digestsOutsideTheTable_passThroughUntouched() throws {
        let ctx = try XCTUnwrap(test_hmac_ctx_new())
        defer { test_hmac_ctx_free(ctx) }
        let before = tunnel_hmac_prefetched_inits_on_this_thread()
        XCTAssertEqual(libssh2StyleMAC(EVP_sha384(), key: key, data: data, on: ctx), try Self.referenceMAC("SHA384", key: key, data: data))
        XCTAssertEqual(test_hmac_ctx_get_md(ctx), EVP_sha384())
        let fetched = try XCTUnwrap(EVP_MD_fetch(nil, "SHA256", nil))
        defer { EVP_MD_free(fetched) }
        XCTAssertEqual(libssh2StyleMAC(fetched, key: key, data: data, on: ctx), try Self.referenceMAC("SHA256", key: key, data: data))
        XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before, "only built-in digests in the table are swapped")
    }

    // MARK: kept keys

    /// A key where libssh2 keeps one: at an address that stays put.
    private final class KeyBuffer: @unchecked Sendable {
        let bytes: UnsafeMutableBufferPointer<UInt8>
        init(_ content: [UInt8]) {
            bytes = .allocate(capacity: content.count)
            _ = bytes.initialize(from: content)
        }
        func overwrite(with content: [UInt8]) {
            precondition(content.count == bytes.count)
            _ = bytes.update(fromContentsOf: content)
        }
        var array: [UInt8] { Array(bytes) }
        deinit { bytes.deallocate() }
    }

    private static func packetData(_ seqno: UInt32, _ packet: [UInt8]) -> [UInt8] {
        [UInt8(seqno >> 24), UInt8(truncatingIfNeeded: seqno >> 16), UInt8(truncatingIfNeeded: seqno >> 8), UInt8(truncatingIfNeeded: seqno)] + packet
    }

    /// One packet's MAC made as libssh2 1.10's mac.c makes it: HMAC_CTX_new,
    /// HMAC_Init_ex with the session's key, HMAC_Update with the sequence
    /// number and with the packet, HMAC_Final, HMAC_CTX_free.
    private static func packetMAC(_ md: OpaquePointer?, _ key: KeyBuffer, seqno: UInt32, packet: [UInt8]) throws -> (mac: [UInt8], keptKey: Bool, handle: test_hmac_ctx) {
        let ctx = try XCTUnwrap(tunnel_hmac_ctx_new_as_libssh2())
        defer { test_hmac_ctx_free(ctx) }
        XCTAssertEqual(tunnel_hmac_init_as_libssh2(ctx, key.bytes.baseAddress, Int32(key.bytes.count), md), 1)
        let kept = tunnel_hmac_stands_for_kept_key(ctx) == 1
        let data = Self.packetData(seqno, packet)
        XCTAssertEqual(test_hmac_update(ctx, data, 4), 1)
        XCTAssertEqual(test_hmac_update(ctx, Array(data[4...]), data.count - 4), 1)
        var out = [UInt8](repeating: 0, count: 64)
        var length: UInt32 = 0
        XCTAssertEqual(test_hmac_final(ctx, &out, &length), 1)
        return (Array(out[..<Int(length)]), kept, ctx)
    }

    private func packet(_ i: Int) -> [UInt8] { (0..<(16 + i % 97)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }

    func testHMAC_libssh2sPacketMACs_keepEachKey_andMatchOpenSSL() throws {
        XCTAssertEqual(tunnel_hmac_keys_kept(), 1)
        tunnel_hmac_forget_kept_keys()
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 0)
        // A session's two directions, as libssh2 alternates them.
        let send = KeyBuffer(key), receive = KeyBuffer(key.reversed())
        var handles = Set<UInt>()
        for (md, name) in [(EVP_sha1(), "SHA1"), (EVP_sha256(), "SHA256"), (EVP_sha512(), "SHA512")] {
            let before = tunnel_hmac_kept_key_inits_on_this_thread()
            for i in 0..<40 {
                let key = i % 2 == 0 ? send : receive
                let result = try Self.packetMAC(md, key, seqno: UInt32(i / 2), packet: packet(i))
                XCTAssertEqual(result.mac, try Self.referenceMAC(name, key: key.array, data: Self.packetData(UInt32(i / 2), packet(i))), "\(name) packet \(i)")
                XCTAssertTrue(result.keptKey, "\(name) packet \(i)")
                XCTAssertEqual(tunnel_hmac_stands_for_kept_key(result.handle), 0, "a returned handle still stands for a key")
                handles.insert(UInt(bitPattern: result.handle))
            }
            XCTAssertEqual(tunnel_hmac_kept_key_inits_on_this_thread(), before + 40, name)
        }
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 6, "one kept context per key and digest")
        XCTAssertEqual(handles.count, 1, "libssh2's HMAC_CTX_new did not get the thread's handle back")
    }

    /// A re-key can put new key bytes where the old ones were: the kept
    /// context is keyed again, never reused for the old key.
    func testHMAC_keptKey_newBytesAtTheSameAddress_areKeyedAgain() throws {
        tunnel_hmac_forget_kept_keys()
        let buffer = KeyBuffer(key)
        XCTAssertEqual(try Self.packetMAC(EVP_sha512(), buffer, seqno: 1, packet: data).mac, try Self.referenceMAC("SHA512", key: key, data: Self.packetData(1, data)))
        let fresh = key.map { $0 ^ 0x5A }
        buffer.overwrite(with: fresh)
        let result = try Self.packetMAC(EVP_sha512(), buffer, seqno: 2, packet: data)
        XCTAssertTrue(result.keptKey)
        XCTAssertEqual(result.mac, try Self.referenceMAC("SHA512", key: fresh, data: Self.packetData(2, data)), "the old key's MAC")
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 1)
    }

    func testHMAC_keptKeys_evictTheLeastRecentlyUsed_andStayExact() throws {
        tunnel_hmac_forget_kept_keys()
        let keys = (0..<40).map { i in KeyBuffer(key.map { $0 &+ UInt8(i) }) }
        for round in 0..<2 {
            for (i, k) in keys.enumerated() {
                let result = try Self.packetMAC(EVP_sha256(), k, seqno: UInt32(round), packet: packet(i))
                XCTAssertEqual(result.mac, try Self.referenceMAC("SHA256", key: k.array, data: Self.packetData(UInt32(round), packet(i))), "round \(round) key \(i)")
                XCTAssertTrue(result.keptKey)
            }
        }
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 32, "the thread keeps at most 32 keys")
        tunnel_hmac_forget_kept_keys()
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 0)
        XCTAssertEqual(try Self.packetMAC(EVP_sha256(), keys[7], seqno: 9, packet: data).mac, try Self.referenceMAC("SHA256", key: keys[7].array, data: Self.packetData(9, data)))
        XCTAssertEqual(tunnel_hmac_kept_keys_on_this_thread(), 1)
    }

    /// Any call but update and final on a handle standing for a kept key
    /// (copy from or into it, reset, an init without key or from outside
    /// libssh2) sees the state OpenSSL alone would have given it.
    func testHMAC_aHandleStandingForAKeptKey_becomesAnOrdinaryContext_beforeOtherCalls() throws {
        let buffer = KeyBuffer(key)
        let first = Array(data[..<10]), rest = Array(data[10...])
        let expected = try Self.referenceMAC("SHA256", key: key, data: data)
        func final(_ ctx: test_hmac_ctx) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 64)
            var length: UInt32 = 0
            XCTAssertEqual(test_hmac_final(ctx, &out, &length), 1)
            return Array(out[..<Int(length)])
        }
        func standing() throws -> test_hmac_ctx {
            let h = try XCTUnwrap(tunnel_hmac_ctx_new_as_libssh2())
            XCTAssertEqual(tunnel_hmac_init_as_libssh2(h, buffer.bytes.baseAddress, Int32(buffer.bytes.count), EVP_sha256()), 1)
            XCTAssertEqual(tunnel_hmac_stands_for_kept_key(h), 1)
            return h
        }
        // Copied from, halfway through a message: both finish it alike.
        let h = try standing()
        XCTAssertEqual(test_hmac_update(h, first, first.count), 1)
        let copy = try XCTUnwrap(test_hmac_ctx_new())
        XCTAssertEqual(test_hmac_ctx_copy(copy, h), 1)
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(h), 0)
        XCTAssertEqual(test_hmac_update(h, rest, rest.count), 1)
        XCTAssertEqual(test_hmac_update(copy, rest, rest.count), 1)
        XCTAssertEqual(final(h), expected)
        XCTAssertEqual(final(copy), expected)
        test_hmac_ctx_free(h)
        test_hmac_ctx_free(copy)
        // Copied into: it holds the source's state, not the kept key's.
        let other = try XCTUnwrap(test_hmac_ctx_new())
        let otherKey = key.map { $0 ^ 1 }
        XCTAssertEqual(test_hmac_init_ex(other, otherKey, Int32(otherKey.count), EVP_sha256()), 1)
        let into = try standing()
        XCTAssertEqual(test_hmac_ctx_copy(into, other), 1)
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(into), 0)
        XCTAssertEqual(test_hmac_update(into, data, data.count), 1)
        XCTAssertEqual(final(into), try Self.referenceMAC("SHA256", key: otherKey, data: data))
        test_hmac_ctx_free(into)
        test_hmac_ctx_free(other)
        // Restarted without a key, from outside libssh2: the same key again.
        let restarted = try standing()
        XCTAssertEqual(test_hmac_update(restarted, first, first.count), 1)
        XCTAssertEqual(test_hmac_init_ex(restarted, nil, 0, nil), 1)
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(restarted), 0)
        XCTAssertEqual(test_hmac_update(restarted, data, data.count), 1)
        XCTAssertEqual(final(restarted), expected)
        test_hmac_ctx_free(restarted)
        // Reset: the handle is empty, as after OpenSSL's reset, and can be keyed again.
        let reset = try standing()
        XCTAssertEqual(test_hmac_ctx_reset(reset), 1)
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(reset), 0)
        XCTAssertNil(test_hmac_ctx_get_md(reset))
        XCTAssertEqual(tunnel_hmac_init_as_libssh2(reset, buffer.bytes.baseAddress, Int32(buffer.bytes.count), EVP_sha256()), 1)
        XCTAssertEqual(test_hmac_update(reset, data, data.count), 1)
        XCTAssertEqual(final(reset), expected)
        test_hmac_ctx_free(reset)
        // The kept key itself was not disturbed.
        XCTAssertEqual(try Self.packetMAC(EVP_sha256(), buffer, seqno: 3, packet: data).mac, try Self.referenceMAC("SHA256", key: key, data: Self.packetData(3, data)))
    }

    /// Contexts made outside libssh2, and inits from outside it, get
    /// libcrypto as called: nothing is kept or lent.
    func testHMAC_callsFromOutsideLibssh2_neverUseKeptKeys() throws {
        let buffer = KeyBuffer(key)
        let kept = tunnel_hmac_kept_key_inits_on_this_thread()
        let outside = try XCTUnwrap(test_hmac_ctx_new())
        defer { test_hmac_ctx_free(outside) }
        XCTAssertEqual(libssh2StyleMAC(EVP_sha512(), key: buffer.array, data: data, on: outside), try Self.referenceMAC("SHA512", key: key, data: data))
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(outside), 0)
        let lent = try XCTUnwrap(tunnel_hmac_ctx_new_as_libssh2())
        defer { test_hmac_ctx_free(lent) }
        XCTAssertEqual(libssh2StyleMAC(EVP_sha512(), key: buffer.array, data: data, on: lent, asLibssh2: false), try Self.referenceMAC("SHA512", key: key, data: data))
        XCTAssertEqual(tunnel_hmac_stands_for_kept_key(lent), 0)
        XCTAssertEqual(test_hmac_ctx_get_md(lent), EVP_sha512())
        XCTAssertEqual(tunnel_hmac_kept_key_inits_on_this_thread(), kept)
    }

    /// Each thread keeps its own keys; MACs made at once on several threads
    /// stay exact.
    func testHMAC_keptKeys_onSeveralThreadsAtOnce_stayExact() throws {
        let failures = Locked(0)
        let done = DispatchGroup()
        for t in 0..<3 {
            done.enter()
            Thread.detachNewThread { [key, data] in
                defer { done.leave() }
                let buffers = [KeyBuffer(key.map { $0 &+ UInt8(t) }), KeyBuffer(key.map { $0 &- UInt8(t + 1) })]
                for i in 0..<300 {
                    let k = buffers[i % 2]
                    let result = try? PacketCryptoTests.packetMAC(EVP_sha512(), k, seqno: UInt32(i), packet: data)
                    let expected = try? PacketCryptoTests.referenceMAC("SHA512", key: k.array, data: PacketCryptoTests.packetData(UInt32(i), data))
                    if result == nil || result?.mac != expected || result?.keptKey != true { failures.withLock { $0 += 1 } }
                }
                if tunnel_hmac_kept_keys_on_this_thread() != 2 { failures.withLock { $0 += 1 } }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(failures.withLock { $0 }, 0)
    }

    func testRandomPool_servesFreshBytes_andWipesWhatItServed() throws {
        XCTAssertEqual(tunnel_random_pool_enabled(), 1, "libssh2's code was not located")
        let calls = tunnel_random_pool_calls_on_this_thread()
        var seen = Set<[UInt8]>()
        for _ in 0..<200 {
            var padding = [UInt8](repeating: 0, count: 16)
            XCTAssertEqual(tunnel_random_pool_draw(&padding, 16), 1)
            XCTAssertTrue(seen.insert(padding).inserted, "the pool served the same 16 bytes twice")
            XCTAssertEqual(tunnel_random_pool_served_bytes_wiped(), 1, "served bytes are still in the pool")
        }
        XCTAssertEqual(tunnel_random_pool_calls_on_this_thread(), calls + 200)
        // Across refills (1 KiB each) the bytes keep changing: count bits set over all of them.
        var all = [UInt8]()
        for _ in 0..<100 {
            var chunk = [UInt8](repeating: 0, count: 19)
            XCTAssertEqual(tunnel_random_pool_draw(&chunk, 19), 1)
            all += chunk
        }
        let ones = all.reduce(0) { $0 + $1.nonzeroBitCount }
        XCTAssertEqual(Double(ones) / Double(all.count * 8), 0.5, accuracy: 0.05)
    }

    func testRandomPool_largeRequests_andCallsFromOutsideLibssh2_passThrough() throws {
        var first = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(tunnel_random_pool_draw(&first, 16), 1)
        let calls = tunnel_random_pool_calls_on_this_thread()
        let unserved = tunnel_random_pool_unserved()
        var big = [UInt8](repeating: 0, count: 4096)
        XCTAssertEqual(tunnel_random_pool_draw(&big, Int32(big.count)), 1)
        XCTAssertGreaterThan(big.reduce(0) { $0 + $1.nonzeroBitCount }, 4096 * 8 / 3)
        var small = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(RAND_bytes(&small, 16), 1, "a call from this test, not from libssh2")
        XCTAssertNotEqual(small, [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(tunnel_random_pool_calls_on_this_thread(), calls)
        XCTAssertEqual(tunnel_random_pool_unserved(), unserved)
    }

    /// libssh2's own RAND_bytes calls (here the KEXINIT cookie, sent once the
    /// server's banner has arrived) come from the pool.
    func testLibssh2sRandomBytes_comeFromThePool() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        let banner = Array("SSH-2.0-OpenSSH_9.2p1\r\n".utf8)
        XCTAssertEqual(write(fds[1], banner, banner.count), banner.count)
        let session = try SSHSession(socket: Socket(owning: fds[0]))
        defer { session.close(graceful: false) }
        let calls = tunnel_random_pool_calls_on_this_thread()
        var done = false
        for _ in 0..<20 {
            session.socketEvents(.readable)
            done = try session.handshake()
            if done || tunnel_random_pool_calls_on_this_thread() > calls { break }
        }
        XCTAssertFalse(done, "the handshake waits for the server's KEXINIT")
        XCTAssertGreaterThan(tunnel_random_pool_calls_on_this_thread(), calls, "libssh2's RAND_bytes did not reach the pool")
    }

    /// A forked child must not serve bytes its parent may serve too.
    func testRandomPool_isEmptyInAForkedChild() throws {
        var padding = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(tunnel_random_pool_draw(&padding, 16), 1)
        XCTAssertGreaterThan(tunnel_random_pool_unserved(), 0)
        let pid = fork()
        if pid == 0 { _exit(tunnel_random_pool_unserved() == 0 ? 0 : 1) }
        XCTAssertGreaterThan(pid, 0)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        XCTAssertEqual(status, 0, "the child inherited unserved pool bytes")
        XCTAssertGreaterThan(tunnel_random_pool_unserved(), 0, "the parent's pool is its own")
    }
}
