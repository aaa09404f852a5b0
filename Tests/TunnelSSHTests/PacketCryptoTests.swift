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
    private func referenceMAC(_ digest: String, key: [UInt8], data: [UInt8]) throws -> [UInt8] {
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
            XCTAssertEqual(libssh2StyleMAC(md, key: key, data: data, on: ctx), try referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before + 1, name)
            let used = try XCTUnwrap(test_hmac_ctx_get_md(ctx))
            XCTAssertNotEqual(used, md, "\(name): libcrypto got the built-in digest and looked it up again")
            XCTAssertNotNil(EVP_MD_get0_provider(used), name)
            // Restarting with the same key (no key, same or no digest) still works.
            XCTAssertEqual(libssh2StyleMAC(md, key: nil, data: data, on: ctx), try referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(libssh2StyleMAC(nil, key: nil, data: data, on: ctx), try referenceMAC(name, key: key, data: data), name)
        }
    }

    /// HMAC_Init_ex from anywhere but libssh2 gets libcrypto exactly as called.
    func testHMAC_initFromOutsideLibssh2_isNotSwapped() throws {
        for (md, name) in [(EVP_sha1(), "SHA1"), (EVP_sha256(), "SHA256"), (EVP_sha512(), "SHA512")] {
            let ctx = try XCTUnwrap(test_hmac_ctx_new())
            defer { test_hmac_ctx_free(ctx) }
            let before = tunnel_hmac_prefetched_inits_on_this_thread()
            XCTAssertEqual(libssh2StyleMAC(md, key: key, data: data, on: ctx, asLibssh2: false), try referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(test_hmac_ctx_get_md(ctx), md, "\(name): another caller's digest was swapped")
            XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before, name)
            XCTAssertEqual(libssh2StyleMAC(nil, key: nil, data: data, on: ctx, asLibssh2: false), try referenceMAC(name, key: key, data: data), name)
            XCTAssertEqual(test_hmac_ctx_get_md(ctx), md, name)
        }
    }

    func testHMAC_digestsOutsideTheTable_passThroughUntouched() throws {
        let ctx = try XCTUnwrap(test_hmac_ctx_new())
        defer { test_hmac_ctx_free(ctx) }
        let before = tunnel_hmac_prefetched_inits_on_this_thread()
        XCTAssertEqual(libssh2StyleMAC(EVP_sha384(), key: key, data: data, on: ctx), try referenceMAC("SHA384", key: key, data: data))
        XCTAssertEqual(test_hmac_ctx_get_md(ctx), EVP_sha384())
        let fetched = try XCTUnwrap(EVP_MD_fetch(nil, "SHA256", nil))
        defer { EVP_MD_free(fetched) }
        XCTAssertEqual(libssh2StyleMAC(fetched, key: key, data: data, on: ctx), try referenceMAC("SHA256", key: key, data: data))
        XCTAssertEqual(tunnel_hmac_prefetched_inits_on_this_thread(), before, "only built-in digests in the table are swapped")
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
