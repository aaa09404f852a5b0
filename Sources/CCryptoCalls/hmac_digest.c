// HMAC for libssh2 1.10's per-packet MACs: digests fetched once, keys kept.
//
// 1. Digests fetched once.
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
//
// 2. Keys kept. libssh2 makes, keys, uses and frees a context inside each
// packet's MAC (mac.c: HMAC_CTX_new, HMAC_Init_ex with the session's key,
// HMAC_Update, HMAC_Final, HMAC_CTX_free). Creating and freeing the
// context's three digest contexts and hashing the key pads is half the cost
// of a small packet's MAC: 2.7 against 1.3 us for 116 bytes of HMAC-SHA-512
// here. OpenSSH keys once per session and restarts from the keyed state for
// each packet; this does the same for libssh2's calls, on each thread:
// - HMAC_CTX_new from libssh2 lends one of the thread's handles: a real
//   HMAC_CTX that is never keyed while lent.
// - HMAC_Init_ex from libssh2 on a lent handle, with a key and no engine:
//   the thread keeps a context keyed with that key and digest (found by the
//   key's address, confirmed by its bytes in constant time), restarts it
//   with HMAC_Init_ex(kept, NULL, 0, NULL, NULL), and the handle stands for
//   it until freed.
// - HMAC_Update and HMAC_Final on a handle that stands for a kept context
//   go to that context; HMAC_CTX_free of a lent handle returns it.
// - Anything else on such a handle (HMAC_CTX_copy from or into it, reset,
//   an init without a key or from outside libssh2) first copies the kept
//   state into the handle, which from then on is an ordinary context.
// Not intercepted: HMAC_CTX_get_md, HMAC_size and HMAC_CTX_set_flags would
// see a standing-in handle unkeyed; libssh2 makes none of these calls, and
// only libssh2 holds its handles.
// The kept state is the session's MAC key in another form, which libssh2
// holds for the session's life anyway. It is wiped (HMAC_CTX_free and
// OPENSSL_cleanse) when evicted for another key, when libssh2 frees a
// cipher context on the thread (a session ending or re-keying: every key
// of the thread is dropped, live sessions key again on their next packet),
// and when the thread exits.
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

typedef int (*hmac_init_fn)(HMAC_CTX *, const void *, int, const EVP_MD *, ENGINE *);
typedef HMAC_CTX *(*hmac_new_fn)(void);
typedef void (*hmac_free_fn)(HMAC_CTX *);
typedef int (*hmac_reset_fn)(HMAC_CTX *);
typedef int (*hmac_copy_fn)(HMAC_CTX *, HMAC_CTX *);
typedef int (*hmac_update_fn)(HMAC_CTX *, const unsigned char *, size_t);
typedef int (*hmac_final_fn)(HMAC_CTX *, unsigned char *, unsigned int *);

static struct {
    hmac_init_fn init;
    hmac_new_fn new_ctx;
    hmac_free_fn free_ctx;
    hmac_reset_fn reset;
    hmac_copy_fn copy;
    hmac_update_fn update;
    hmac_final_fn final;
    int enabled;
    int keep_keys;
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
    libcrypto.new_ctx = (hmac_new_fn)tunnel_libcrypto_next("HMAC_CTX_new");
    libcrypto.free_ctx = (hmac_free_fn)tunnel_libcrypto_next("HMAC_CTX_free");
    libcrypto.reset = (hmac_reset_fn)tunnel_libcrypto_next("HMAC_CTX_reset");
    libcrypto.copy = (hmac_copy_fn)tunnel_libcrypto_next("HMAC_CTX_copy");
    libcrypto.update = (hmac_update_fn)tunnel_libcrypto_next("HMAC_Update");
    libcrypto.final = (hmac_final_fn)tunnel_libcrypto_next("HMAC_Final");
    libcrypto.enabled = tunnel_setting_enabled("TUNNEL_HMAC_PREFETCH");
    libcrypto.keep_keys = tunnel_setting_enabled("TUNNEL_HMAC_KEYS");
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

// MARK: kept keys

enum { KEPT = 32, LENT = 4, LONGEST_KEY = 128 };

struct kept_key {
    HMAC_CTX *ctx;           // keyed with `key` under `md`; NULL: a free entry
    const EVP_MD *md;        // the digest libcrypto was given
    const void *key_address; // where libssh2 keeps the key: the first check
    int key_length;
    unsigned char key[LONGEST_KEY];
    uint64_t last_use;
};

struct lent_handle {
    HMAC_CTX *handle;            // kept for the next packet while untouched
    int lent;
    int touched;                 // a call reached the handle itself: freed, not kept, when returned
    struct kept_key *stands_for; // set by a kept init, until freed
};

static _Thread_local struct {
    struct kept_key kept[KEPT];
    struct lent_handle handles[LENT];
    uint64_t clock;
    int registered; // for the thread-exit wipe
} thread_keys;

static _Thread_local uint64_t kept_key_inits;
static pthread_key_t exit_wipe;

static void wipe_entry(struct kept_key *entry) {
    if (entry->ctx != NULL) libcrypto.free_ctx(entry->ctx); // cleanses its digest states
    OPENSSL_cleanse(entry, sizeof *entry);
}

/// The lent handle `ctx`, or NULL when it is not one of this thread's.
static inline struct lent_handle *lent_handle(const HMAC_CTX *ctx) {
    if (ctx == NULL) return NULL;
    for (int i = 0; i < LENT; i++) {
        if (thread_keys.handles[i].lent && thread_keys.handles[i].handle == ctx) return &thread_keys.handles[i];
    }
    return NULL;
}

/// Makes a standing-in handle an ordinary context holding the kept state,
/// before a call that could see the handle itself. 0 when the copy failed.
static int materialize(struct lent_handle *h) {
    if (h == NULL) return 1;
    h->touched = 1;
    if (h->stands_for == NULL) return 1;
    struct kept_key *entry = h->stands_for;
    h->stands_for = NULL;
    return libcrypto.copy(h->handle, entry->ctx);
}

static void forget_entry(struct kept_key *entry) {
    for (int i = 0; i < LENT; i++) {
        if (thread_keys.handles[i].stands_for == entry) (void)materialize(&thread_keys.handles[i]);
    }
    wipe_entry(entry);
}

static void forget_all(void) {
    for (int i = 0; i < KEPT; i++) {
        if (thread_keys.kept[i].ctx != NULL) forget_entry(&thread_keys.kept[i]);
    }
}

static void thread_exit(void *unused) {
    (void)unused;
    forget_all();
    for (int i = 0; i < LENT; i++) {
        if (thread_keys.handles[i].handle != NULL) libcrypto.free_ctx(thread_keys.handles[i].handle);
        thread_keys.handles[i] = (struct lent_handle){0};
    }
}

static void create_exit_wipe(void) { pthread_key_create(&exit_wipe, thread_exit); }

static int keep_keys_now(void) { return libcrypto.keep_keys && tunnel_crypto_calls_open(); }

/// HMAC_CTX_new for libssh2: one of the thread's handles, or a new context
/// when all are lent.
static HMAC_CTX *lend_handle(void) {
    pthread_once(&resolved, resolve);
    if (!keep_keys_now()) return libcrypto.new_ctx();
    if (!thread_keys.registered) {
        static pthread_once_t created = PTHREAD_ONCE_INIT;
        pthread_once(&created, create_exit_wipe);
        if (pthread_setspecific(exit_wipe, &thread_keys) != 0) return libcrypto.new_ctx();
        thread_keys.registered = 1;
    }
    for (int i = 0; i < LENT; i++) {
        struct lent_handle *h = &thread_keys.handles[i];
        if (h->lent) continue;
        if (h->handle == NULL && (h->handle = libcrypto.new_ctx()) == NULL) return NULL;
        h->lent = 1;
        h->touched = 0;
        h->stands_for = NULL;
        return h->handle;
    }
    return libcrypto.new_ctx();
}

/// The thread's context keyed with `key` under `md`, restarted, or NULL.
/// Requires 0 < len <= LONGEST_KEY.
static struct kept_key *restarted_kept_key(const void *key, int len, const EVP_MD *md) {
    struct kept_key *found = NULL, *oldest = &thread_keys.kept[0];
    for (int i = 0; i < KEPT; i++) {
        struct kept_key *entry = &thread_keys.kept[i];
        if (entry->ctx != NULL && entry->key_address == key && entry->md == md && entry->key_length == len) {
            found = entry;
            break;
        }
        if (entry->ctx == NULL || (oldest->ctx != NULL && entry->last_use < oldest->last_use)) oldest = entry;
    }
    thread_keys.clock += 1;
    if (found != NULL && CRYPTO_memcmp(found->key, key, (size_t)len) == 0) {
        if (libcrypto.init(found->ctx, NULL, 0, NULL, NULL) != 1) {
            forget_entry(found);
            return NULL;
        }
        found->last_use = thread_keys.clock;
        return found;
    }
    // New to this thread, or new bytes at a known address (a re-key): key a
    // fresh context in the entry, wiping what it held.
    struct kept_key *entry = found != NULL ? found : oldest;
    if (entry->ctx != NULL) forget_entry(entry);
    HMAC_CTX *ctx = libcrypto.new_ctx();
    if (ctx == NULL) return NULL;
    if (libcrypto.init(ctx, key, len, md, NULL) != 1) {
        libcrypto.free_ctx(ctx);
        return NULL;
    }
    entry->ctx = ctx;
    entry->md = md;
    entry->key_address = key;
    entry->key_length = len;
    memcpy(entry->key, key, (size_t)len);
    entry->last_use = thread_keys.clock;
    return entry;
}

static int hmac_init(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, ENGINE *impl, int from_libssh2) {
    pthread_once(&resolved, resolve);
    const EVP_MD *given = md;
    if (from_libssh2 && md != NULL && impl == NULL && libcrypto.enabled && tunnel_crypto_calls_open()) {
        const EVP_MD *same = provider_digest(md);
        if (same != NULL) {
            prefetched_inits += 1;
            given = same;
        }
    }
    struct lent_handle *h = lent_handle(ctx);
    if (h != NULL && from_libssh2 && key != NULL && len > 0 && len <= LONGEST_KEY && given != NULL && impl == NULL &&
        keep_keys_now()) {
        struct kept_key *entry = restarted_kept_key(key, len, given);
        if (entry != NULL) {
            h->stands_for = entry;
            kept_key_inits += 1;
            return 1;
        }
    }
    if (materialize(h) != 1) return 0;
    return libcrypto.init(ctx, key, len, given, impl);
}

int HMAC_Init_ex(HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, ENGINE *impl) {
    return hmac_init(ctx, key, len, md, impl, tunnel_called_from_libssh2(__builtin_return_address(0)));
}

HMAC_CTX *HMAC_CTX_new(void) {
    if (tunnel_called_from_libssh2(__builtin_return_address(0))) return lend_handle();
    pthread_once(&resolved, resolve);
    return libcrypto.new_ctx();
}

void HMAC_CTX_free(HMAC_CTX *ctx) {
    pthread_once(&resolved, resolve);
    struct lent_handle *h = lent_handle(ctx);
    if (h == NULL) {
        libcrypto.free_ctx(ctx);
        return;
    }
    // Returned. Untouched, it holds no state and serves the next packet;
    // touched, it may hold a key: freed (which cleanses it) like any context.
    h->stands_for = NULL;
    if (h->touched) {
        libcrypto.free_ctx(h->handle);
        h->handle = NULL;
    }
    h->lent = 0;
}

int HMAC_CTX_reset(HMAC_CTX *ctx) {
    pthread_once(&resolved, resolve);
    struct lent_handle *h = lent_handle(ctx);
    if (h != NULL) {
        h->stands_for = NULL; // the reset ends the state the handle stood for
        h->touched = 1;
    }
    return libcrypto.reset(ctx);
}

int HMAC_CTX_copy(HMAC_CTX *dctx, HMAC_CTX *sctx) {
    pthread_once(&resolved, resolve);
    if (materialize(lent_handle(sctx)) != 1) return 0;
    struct lent_handle *d = lent_handle(dctx);
    if (d != NULL) {
        d->stands_for = NULL; // overwritten by the copy
        d->touched = 1;
    }
    return libcrypto.copy(dctx, sctx);
}

/// The context a call on `ctx` acts on: the kept one `ctx` stands for, or `ctx`.
static inline HMAC_CTX *acting_context(HMAC_CTX *ctx) {
    struct lent_handle *h = lent_handle(ctx);
    if (h == NULL) return ctx;
    if (h->stands_for != NULL) return h->stands_for->ctx;
    h->touched = 1;
    return ctx;
}

int HMAC_Update(HMAC_CTX *ctx, const unsigned char *data, size_t len) {
    pthread_once(&resolved, resolve);
    return libcrypto.update(acting_context(ctx), data, len);
}

int HMAC_Final(HMAC_CTX *ctx, unsigned char *out, unsigned int *len) {
    pthread_once(&resolved, resolve);
    return libcrypto.final(acting_context(ctx), out, len);
}

void tunnel_hmac_forget_kept_keys(void) {
    pthread_once(&resolved, resolve);
    forget_all();
}

int tunnel_hmac_init_as_libssh2(struct hmac_ctx_st *ctx, const void *key, int len, const struct evp_md_st *md) {
    return hmac_init(ctx, key, len, md, NULL, 1);
}

struct hmac_ctx_st *tunnel_hmac_ctx_new_as_libssh2(void) { return lend_handle(); }

int tunnel_hmac_stands_for_kept_key(const struct hmac_ctx_st *ctx) {
    struct lent_handle *h = lent_handle(ctx);
    return h != NULL && h->stands_for != NULL;
}

int tunnel_hmac_kept_keys_on_this_thread(void) {
    int n = 0;
    for (int i = 0; i < KEPT; i++) n += thread_keys.kept[i].ctx != NULL;
    return n;
}

uint64_t tunnel_hmac_kept_key_inits_on_this_thread(void) { return kept_key_inits; }

uint64_t tunnel_hmac_prefetched_inits_on_this_thread(void) { return prefetched_inits; }

int tunnel_hmac_prefetch_enabled(void) {
    pthread_once(&resolved, resolve);
    return libcrypto.enabled && tunnel_crypto_calls_open();
}

int tunnel_hmac_keys_kept(void) {
    pthread_once(&resolved, resolve);
    return keep_keys_now();
}
