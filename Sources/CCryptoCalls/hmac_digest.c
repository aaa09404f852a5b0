// HMAC digests fetched once, for libssh2 1.10's per-packet HMAC_Init_ex.
//
// libssh2 computes every packet's MAC on a fresh HMAC context keyed with
// HMAC_Init_ex(ctx, key, len, EVP_sha512(), NULL). Given a built-in digest
// like that, OpenSSL 3 fetches the provider's implementation by name for
// each of the context's three digest contexts: a locked name lookup per
// packet, about 4 % of tunnel's CPU in a request/response workload.
// This HMAC_Init_ex hands libcrypto's the same digest fetched once instead:
// the same algorithm from the same provider, without the lookups. Only
// libssh2's own calls (the return address, tunnel_called_from_libssh2) are
// changed, and only while the version gate is open; any other caller, any
// digest not in the table below, and any call without one, passes through
// as it came.
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <pthread.h>
#include <stdatomic.h>

typedef int (*hmac_init_fn)(HMAC_CTX *, const void *, int, const EVP_MD *, ENGINE *);

static struct {
    hmac_init_fn init;
    int enabled;
} libcrypto;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;
static _Thread_local uint64_t prefetched_inits;

// The digests libssh2 1.10 offers MACs with. Fetched on first use, kept for
// the life of the process.
static const int digest_nids[] = {NID_sha1, NID_sha256, NID_sha512, NID_md5, NID_ripemd160};
enum { DIGESTS = sizeof digest_nids / sizeof digest_nids[0] };
static _Atomic(EVP_MD *) fetched[DIGESTS];

static void resolve(void) {
    tunnel_crypto_calls_resolve();
    libcrypto.init = (hmac_init_fn)tunnel_libcrypto_next("HMAC_Init_ex");
    libcrypto.enabled = tunnel_setting_enabled("TUNNEL_HMAC_PREFETCH");
}

/// The provider's digest for a built-in one, or NULL to pass `md` through.
static const EVP_MD *provider_digest(const EVP_MD *md) {
    if (EVP_MD_get0_provider(md) != NULL) return NULL; // already fetched by the caller
    int nid = EVP_MD_get_type(md);
    for (int i = 0; i < DIGESTS; i++) {
        if (digest_nids[i] != nid) continue;
        EVP_MD *known = atomic_load_explicit(&fetched[i], memory_order_acquire);
        if (known != NULL) return known;
        EVP_MD *fresh = EVP_MD_fetch(NULL, OBJ_nid2sn(nid), NULL);
        if (fresh == NULL) return NULL; // e.g. a digest the loaded providers lack: libcrypto reports it
        EVP_MD *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&fetched[i], &expected, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            return fresh;
        }
        EVP_MD_free(fresh); // another thread fetched it first
        return expected;
    }
    return NULL;
}

static int hmac_init(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, ENGINE *impl, int from_libssh2) {
    pthread_once(&resolved, resolve);
    if (from_libssh2 && md != NULL && impl == NULL && libcrypto.enabled && tunnel_crypto_calls_open()) {
        const EVP_MD *same = provider_digest(md);
        if (same != NULL) {
            prefetched_inits += 1;
            return libcrypto.init(ctx, key, len, same, impl);
        }
    }
    return libcrypto.init(ctx, key, len, md, impl);
}

int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, ENGINE *impl) {
    return hmac_init(ctx, key, len, md, impl, tunnel_called_from_libssh2(__builtin_return_address(0)));
}

int tunnel_hmac_init_as_libssh2(struct hmac_ctx_st *ctx, const void *key, int len, const struct evp_md_st *md) {
    return hmac_init(ctx, key, len, md, NULL, 1);
}

uint64_t tunnel_hmac_prefetched_inits_on_this_thread(void) { return prefetched_inits; }

int tunnel_hmac_prefetch_enabled(void) {
    pthread_once(&resolved, resolve);
    return libcrypto.enabled && tunnel_crypto_calls_open();
}
