#ifndef TUNNEL_CCRYPTOCALLS_H
#define TUNNEL_CCRYPTOCALLS_H

// libssh2 1.10 calls into libcrypto once per 16-byte cipher block and several
// times per packet. The executable defines a few of those libcrypto functions
// itself, so the dynamic linker binds libssh2's calls to them; each forwards
// to libcrypto's own definition and only shortens the common case.

#include <stddef.h>
#include <stdint.h>

// MARK: batched AES-CTR keystream (ctr_keystream.c)

/// AES-CTR contexts this thread has switched to the batched keystream.
/// A session compares it across its handshake: the thread that runs the
/// handshake is the one libssh2 creates the session's cipher contexts on.
uint64_t tunnel_keystream_contexts_on_this_thread(void);

/// Keystream bytes generated in batches so far, all threads.
uint64_t tunnel_keystream_bytes(void);

/// 0 when TUNNEL_CTR_BATCH=0 switched batching off for this process.
int tunnel_keystream_enabled(void);

// MARK: HMAC digests fetched once (hmac_digest.c)

/// HMAC_Init_ex calls on this thread that were given a built-in digest and
/// handed libcrypto the same digest fetched from the provider once.
uint64_t tunnel_hmac_prefetched_inits_on_this_thread(void);

/// 0 when TUNNEL_HMAC_PREFETCH=0 switched it off for this process.
int tunnel_hmac_prefetch_enabled(void);

// MARK: random bytes for libssh2, drawn in bulk (random_pool.c)

/// Calls answered from this thread's pool (libssh2's, and tests' draws).
uint64_t tunnel_random_pool_calls_on_this_thread(void);

/// 0 when TUNNEL_RANDOM_POOL=0 switched it off for this process, or when
/// libssh2's code could not be located (then every call passes through).
int tunnel_random_pool_enabled(void);

/// The pooled path itself, as libssh2's RAND_bytes calls take it; for tests,
/// which cannot call RAND_bytes from inside libssh2. Same result convention
/// as RAND_bytes: 1 on success.
int tunnel_random_pool_draw(unsigned char *buffer, int count);

/// Bytes this thread's pool holds that were drawn from libcrypto and not yet
/// served; every served byte is wiped from the pool.
int tunnel_random_pool_unserved(void);

/// 1 when every byte this thread's pool has served reads zero.
int tunnel_random_pool_served_bytes_wiped(void);

#endif
