#ifndef TUNNEL_CCRYPTOCALLS_H
#define TUNNEL_CCRYPTOCALLS_H

// libssh2 1.10 calls into libcrypto once per 16-byte cipher block and several
// times per packet. The executable defines a few of those libcrypto functions
// itself, so the dynamic linker binds libssh2's calls to them (and every
// other caller's); each forwards to libcrypto's own definition and shortens
// only libssh2's own calls, only for libssh2 1.10.x/1.11.x on OpenSSL 3.x.

#include <stddef.h>
#include <stdint.h>

// OpenSSL's types, without OpenSSL's headers (Swift sees OpaquePointer).
struct evp_cipher_ctx_st;
struct evp_cipher_st;
struct hmac_ctx_st;
struct evp_md_st;

// MARK: the version gate (libcrypto_next.c)

/// 1 when the shortcuts act for libssh2's calls: libssh2_version(0) reports
/// 1.10.x or 1.11.x, its code was located, and OpenSSL_version_num() is 3.x.
/// 0 otherwise: every hook then passes every call through.
int tunnel_crypto_calls_active(void);

/// Why, for the log: "on: libssh2 1.10.0, OpenSSL 3.0.19" or e.g.
/// "off: libssh2 1.9.0 is not 1.10.x or 1.11.x". A static string.
const char *tunnel_crypto_calls_status(void);

/// Tests only (not thread-safe): decides the gate as if libssh2 and OpenSSL
/// reported these versions; it can close the gate, never open one the real
/// versions keep closed. NULL restores the real verdict. Contexts batched
/// before keep their batch (it stays exact); new ones follow the new gate.
/// Returns the new status.
const char *tunnel_crypto_calls_gate_for_testing(const char *libssh2_version, unsigned long openssl_version);

// MARK: batched AES-CTR keystream (ctr_keystream.c)

/// AES-CTR contexts this thread has switched to the batched keystream.
/// A session compares it across its handshake: the thread that runs the
/// handshake is the one libssh2 creates the session's cipher contexts on.
uint64_t tunnel_keystream_contexts_on_this_thread(void);

/// Keystream bytes generated in batches so far, all threads.
uint64_t tunnel_keystream_bytes(void);

/// 0 when TUNNEL_CTR_BATCH=0 switched batching off for this process, or the
/// version gate is closed.
int tunnel_keystream_enabled(void);

/// EVP_CipherInit and EVP_Cipher as libssh2's calls take them (tests cannot
/// call from inside libssh2): the same code, with the caller taken for
/// libssh2's. The gate and TUNNEL_CTR_BATCH still apply.
int tunnel_keystream_init_as_libssh2(struct evp_cipher_ctx_st *ctx, const struct evp_cipher_st *cipher,
                                     const unsigned char *key, const unsigned char *iv, int enc);
int tunnel_keystream_cipher_as_libssh2(struct evp_cipher_ctx_st *ctx, unsigned char *out, const unsigned char *in,
                                       unsigned int len);

/// 1 while `ctx` has a batched keystream.
int tunnel_keystream_batched(const struct evp_cipher_ctx_st *ctx);

// MARK: HMAC for libssh2: digests fetched once, keys kept (hmac_digest.c)

/// HMAC_Init_ex calls on this thread that were given a built-in digest and
/// handed libcrypto the same digest fetched from the provider once.
uint64_t tunnel_hmac_prefetched_inits_on_this_thread(void);

/// 0 when TUNNEL_HMAC_PREFETCH=0 switched it off for this process, or the
/// version gate is closed.
int tunnel_hmac_prefetch_enabled(void);

/// HMAC_Init_ex(ctx, key, len, md, NULL) as libssh2's calls take it, for
/// tests. The gate and TUNNEL_HMAC_PREFETCH still apply.
int tunnel_hmac_init_as_libssh2(struct hmac_ctx_st *ctx, const void *key, int len, const struct evp_md_st *md);

/// HMAC_CTX_new as libssh2's calls take it, for tests: one of the thread's
/// lent handles while keys are kept.
struct hmac_ctx_st *tunnel_hmac_ctx_new_as_libssh2(void);

/// libssh2's keyed HMAC_Init_ex calls on this thread answered from a kept
/// key (a keyed context restarted, or keyed once and kept).
uint64_t tunnel_hmac_kept_key_inits_on_this_thread(void);

/// Keyed contexts this thread keeps.
int tunnel_hmac_kept_keys_on_this_thread(void);

/// 1 while `ctx` is a lent handle standing for a kept context.
int tunnel_hmac_stands_for_kept_key(const struct hmac_ctx_st *ctx);

/// Wipes and frees every key this thread keeps. Called when libssh2 frees a
/// cipher context (a session ending or re-keying).
void tunnel_hmac_forget_kept_keys(void);

/// 0 when TUNNEL_HMAC_KEYS=0 switched kept keys off for this process, or
/// the version gate is closed.
int tunnel_hmac_keys_kept(void);

// MARK: random bytes for libssh2, drawn in bulk (random_pool.c)

/// Calls answered from this thread's pool (libssh2's, and tests' draws).
uint64_t tunnel_random_pool_calls_on_this_thread(void);

/// 0 when TUNNEL_RANDOM_POOL=0 switched it off for this process, or the
/// version gate is closed (then every call passes through).
int tunnel_random_pool_enabled(void);

/// RAND_bytes as libssh2's calls take it; for tests, which cannot call
/// RAND_bytes from inside libssh2. The gate and TUNNEL_RANDOM_POOL still
/// apply. Same result convention as RAND_bytes: 1 on success.
int tunnel_random_pool_draw(unsigned char *buffer, int count);

/// Bytes this thread's pool holds that were drawn from libcrypto and not yet
/// served; every served byte is wiped from the pool.
int tunnel_random_pool_unserved(void);

/// 1 when every byte this thread's pool has served reads zero.
int tunnel_random_pool_served_bytes_wiped(void);

// MARK: the CPU (cpu_sha.c)

/// 1 when the CPU has SHA-256 instructions (x86 SHA-NI, Armv8 SHA2): then
/// hmac-sha2-256 costs about a third of hmac-sha2-512, otherwise more.
int tunnel_cpu_has_sha256_instructions(void);

#endif
