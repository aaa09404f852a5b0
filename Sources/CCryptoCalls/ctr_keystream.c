// Batched AES-CTR keystream for libssh2 1.10.
//
// libssh2 1.10 encrypts and decrypts one 16-byte block per EVP_Cipher call.
// Through OpenSSL 3's provider dispatch that costs about as much CPU as the
// HMAC over the same bytes. CTR keystream does not depend on the data, so
// this file generates it 8 KiB at a time through the same context (one real
// EVP_Cipher call over zeros) and answers each 16-byte call with an XOR.
// The bytes produced are exactly those the context would have produced.
//
// It works by defining EVP_CipherInit, EVP_Cipher and the calls that could
// see or move a batched context's state (EVP_CipherInit_ex, _ex2,
// EVP_CIPHER_CTX_copy, _reset, _free) in the executable: the dynamic linker
// binds every caller's calls to these, and each forwards to libcrypto's own
// (RTLD_NEXT).
//
// Confinement. A context is batched only when libssh2's own code (the return
// address, tunnel_called_from_libssh2) sets it up through EVP_CipherInit
// with a provider AES-CTR cipher, a key and an IV, and the version gate is
// open; only libssh2's EVP_Cipher calls are answered from the batch. The
// batch is found through a side table keyed by the context's address, so a
// context's app_data is never read or written, and a copy of a context (a
// different address) never finds its source's batch.
//
// Detaching. Generating a batch moves the real context's counter up to 8 KiB
// past what was served. Before any other call on a batched context (a
// re-init with or without key or IV, a copy from or into it, an EVP_Cipher
// from outside libssh2) the context is put back where OpenSSL alone would
// have it: its IV is set again (which also restores the original IV
// OpenSSL reports) and the bytes already served are replayed through it;
// then the batch is wiped and released and the call is forwarded. Reset and
// free just wipe and release it: they end the state anyway.
// Not intercepted: EVP_CipherUpdate/Final, EVP_CIPHER_CTX_ctrl/set_params
// and the IV getters would see the counter ahead. libssh2 makes none of
// these calls, and no other code holds libssh2's contexts.
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { KEYSTREAM_SIZE = 8192, IV_SIZE = 16, WAYS = 8, BUCKET_BITS = 7, SLOTS = WAYS << BUCKET_BITS };

struct keystream {
    _Alignas(64) unsigned char bytes[KEYSTREAM_SIZE];
    unsigned used;             // bytes of `bytes` already served; KEYSTREAM_SIZE: none left
    uint64_t generated;        // keystream bytes the real context produced since `iv` was set
    unsigned char iv[IV_SIZE]; // the IV EVP_CipherInit set
};

/// Bytes served so far: what OpenSSL alone would have ciphered.
static uint64_t served(const struct keystream *ks) { return ks->generated - (KEYSTREAM_SIZE - ks->used); }

// The side table. Slot i belongs to the context owners[i] (NULL: free;
// RESERVED: being set up) and holds its batch in batches[i]. A context can
// only sit in the WAYS slots of its bucket, one cache line of owners. Slots
// are claimed with a compare-and-swap and released with a store, so lookups
// take no lock; a batch's memory is kept for the slot's next owner (wiped
// in between), so a lookup never reads freed memory. With every slot of a
// bucket taken, a context simply stays unbatched.
#define RESERVED ((const EVP_CIPHER_CTX *)(uintptr_t)1)
static _Alignas(64) _Atomic(const EVP_CIPHER_CTX *) owners[SLOTS];
static struct keystream *batches[SLOTS];

static const unsigned char zeros[KEYSTREAM_SIZE];

typedef int (*cipher_init_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, const unsigned char *, const unsigned char *, int);
typedef int (*cipher_init_ex_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, ENGINE *, const unsigned char *,
                                 const unsigned char *, int);
typedef int (*cipher_init_ex2_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, const unsigned char *, const unsigned char *, int,
                                  const OSSL_PARAM[]);
typedef int (*cipher_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, unsigned int);
typedef int (*ctx_copy_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER_CTX *);
typedef int (*ctx_reset_fn)(EVP_CIPHER_CTX *);
typedef void (*ctx_free_fn)(EVP_CIPHER_CTX *);

static struct {
    cipher_init_fn init;
    cipher_init_ex_fn init_ex;
    cipher_init_ex2_fn init_ex2;
    cipher_fn cipher;
    ctx_copy_fn copy;
    ctx_reset_fn reset;
    ctx_free_fn free;
    int enabled;
} libcrypto;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;
static _Atomic uint64_t generated_total;
static _Thread_local uint64_t attached_on_this_thread;

static void resolve(void) {
    tunnel_crypto_calls_resolve();
    libcrypto.init = (cipher_init_fn)tunnel_libcrypto_next("EVP_CipherInit");
    libcrypto.init_ex = (cipher_init_ex_fn)tunnel_libcrypto_next("EVP_CipherInit_ex");
    libcrypto.init_ex2 = (cipher_init_ex2_fn)tunnel_libcrypto_next("EVP_CipherInit_ex2");
    libcrypto.cipher = (cipher_fn)tunnel_libcrypto_next("EVP_Cipher");
    libcrypto.copy = (ctx_copy_fn)tunnel_libcrypto_next("EVP_CIPHER_CTX_copy");
    libcrypto.reset = (ctx_reset_fn)tunnel_libcrypto_next("EVP_CIPHER_CTX_reset");
    libcrypto.free = (ctx_free_fn)tunnel_libcrypto_next("EVP_CIPHER_CTX_free");
    libcrypto.enabled = tunnel_setting_enabled("TUNNEL_CTR_BATCH");
}

static inline unsigned bucket_of(const EVP_CIPHER_CTX *ctx) {
    return (unsigned)(((uint64_t)(uintptr_t)ctx * 0x9E3779B97F4A7C15u) >> (64 - BUCKET_BITS)) * WAYS;
}

/// The slot holding `ctx`'s batch, or -1. `ctx` must not be NULL.
static inline int slot_of(const EVP_CIPHER_CTX *ctx) {
    unsigned first = bucket_of(ctx);
    for (unsigned i = first; i < first + WAYS; i++) {
        if (atomic_load_explicit(&owners[i], memory_order_acquire) == ctx) return (int)i;
    }
    return -1;
}

static void attach(EVP_CIPHER_CTX *ctx, const unsigned char *iv) {
    unsigned first = bucket_of(ctx);
    for (unsigned i = first; i < first + WAYS; i++) {
        const EVP_CIPHER_CTX *free_slot = NULL;
        if (!atomic_compare_exchange_strong_explicit(&owners[i], &free_slot, RESERVED, memory_order_acquire,
                                                     memory_order_relaxed)) {
            continue;
        }
        if (batches[i] == NULL) batches[i] = aligned_alloc(_Alignof(struct keystream), sizeof(struct keystream));
        struct keystream *ks = batches[i];
        if (ks == NULL) { // unbatched still works
            atomic_store_explicit(&owners[i], NULL, memory_order_release);
            return;
        }
        ks->used = KEYSTREAM_SIZE;
        ks->generated = 0;
        memcpy(ks->iv, iv, IV_SIZE);
        atomic_store_explicit(&owners[i], ctx, memory_order_release);
        attached_on_this_thread += 1;
        return;
    }
}

/// Wipes the batch and frees its slot; the context's own state is left as it is.
static void release(int slot) {
    OPENSSL_cleanse(batches[slot], sizeof(struct keystream));
    atomic_store_explicit(&owners[slot], NULL, memory_order_release);
}

/// Puts a batched context where OpenSSL alone would have it after the bytes
/// served (counter, position within the block, original IV), then releases
/// the batch. Requires resolve().
static void detach(EVP_CIPHER_CTX *ctx, int slot) {
    struct keystream *ks = batches[slot];
    uint64_t left = served(ks);
    // Unless every generated byte was served, the real counter is ahead:
    // set the IV again and replay the served bytes.
    if (left != ks->generated && libcrypto.init_ex(ctx, NULL, NULL, NULL, ks->iv, -1) == 1) {
        while (left > 0) {
            unsigned n = left < KEYSTREAM_SIZE ? (unsigned)left : KEYSTREAM_SIZE;
            if (libcrypto.cipher(ctx, ks->bytes, zeros, n) != (int)n) break;
            left -= n;
        }
    }
    release(slot);
}

/// Before a call that could see or change `ctx`'s state: detach its batch, if any.
static void detach_any(const EVP_CIPHER_CTX *ctx) {
    if (ctx == NULL) return;
    int slot = slot_of(ctx);
    // The API's const: the context itself is not const, and detaching
    // leaves it in the state OpenSSL alone would have.
    if (slot >= 0) detach((EVP_CIPHER_CTX *)ctx, slot);
}

/// Before a call that ends `ctx`'s state (reset, free): wipe and release its batch, if any.
static void drop_any(const EVP_CIPHER_CTX *ctx) {
    if (ctx == NULL) return;
    int slot = slot_of(ctx);
    if (slot >= 0) release(slot);
}

static int is_provider_ctr(const EVP_CIPHER_CTX *ctx) {
    const EVP_CIPHER *cipher = EVP_CIPHER_CTX_get0_cipher(ctx);
    return cipher != NULL && EVP_CIPHER_get0_provider(cipher) != NULL && EVP_CIPHER_get_mode(cipher) == EVP_CIPH_CTR_MODE &&
           EVP_CIPHER_CTX_get_iv_length(ctx) == IV_SIZE;
}

static int cipher_init(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const unsigned char *key, const unsigned char *iv,
                       int enc, int from_libssh2) {
    pthread_once(&resolved, resolve);
    detach_any(ctx);
    int ok = libcrypto.init(ctx, cipher, key, iv, enc);
    // A named cipher resets the context, so with key and IV its whole state
    // is known: the counter starts at `iv`. Without either it is not.
    if (ok == 1 && from_libssh2 && ctx != NULL && cipher != NULL && key != NULL && iv != NULL && libcrypto.enabled &&
        tunnel_crypto_calls_open() && is_provider_ctr(ctx)) {
        attach(ctx, iv);
    }
    return ok;
}

int EVP_CipherInit(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const unsigned char *key, const unsigned char *iv, int enc) {
    return cipher_init(ctx, cipher, key, iv, enc, tunnel_called_from_libssh2(__builtin_return_address(0)));
}

int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,
                      const unsigned char *iv, int enc) {
    pthread_once(&resolved, resolve);
    detach_any(ctx);
    return libcrypto.init_ex(ctx, cipher, impl, key, iv, enc);
}

int EVP_CipherInit_ex2(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const unsigned char *key, const unsigned char *iv,
                       int enc, const OSSL_PARAM params[]) {
    pthread_once(&resolved, resolve);
    detach_any(ctx);
    return libcrypto.init_ex2(ctx, cipher, key, iv, enc, params);
}

int EVP_CIPHER_CTX_copy(EVP_CIPHER_CTX *out, const EVP_CIPHER_CTX *in) {
    pthread_once(&resolved, resolve);
    detach_any(in);
    if (out != in) detach_any(out); // a failed copy leaves `out` as it was
    return libcrypto.copy(out, in);
}

typedef unsigned char block16 __attribute__((vector_size(16)));

// 16-byte loads and stores: libssh2 copies each output block with one
// 16-byte load, which narrower stores would stall (no store forwarding).
static inline void xor_into(unsigned char *out, const unsigned char *in, const unsigned char *key, unsigned n) {
    unsigned i = 0;
    for (; i + 16 <= n; i += 16) {
        block16 a, b;
        memcpy(&a, in + i, 16);
        memcpy(&b, key + i, 16);
        a ^= b;
        memcpy(out + i, &a, 16);
    }
    for (; i < n; i++) out[i] = in[i] ^ key[i];
}

/// A call on an unbatched context.
__attribute__((noinline)) static int cipher_pass_through(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
                                                        unsigned int len) {
    pthread_once(&resolved, resolve);
    return libcrypto.cipher(ctx, out, in, len);
}

/// Everything on a batched context but libssh2's common call: kept out of
/// line so that call pays for no register saves or stack frame.
__attribute__((noinline)) static int cipher_batched_slow_path(EVP_CIPHER_CTX *ctx, int slot, unsigned char *out,
                                                             const unsigned char *in, unsigned int len, int from_libssh2) {
    pthread_once(&resolved, resolve);
    if (!from_libssh2 || in == NULL || len > (unsigned)INT32_MAX) {
        detach(ctx, slot);
        return libcrypto.cipher(ctx, out, in, len);
    }
    struct keystream *ks = batches[slot];
    unsigned done = 0;
    while (done < len) {
        if (ks->used == KEYSTREAM_SIZE) {
            // Provider ciphers return the byte count, -1 on failure.
            if (libcrypto.cipher(ctx, ks->bytes, zeros, KEYSTREAM_SIZE) != KEYSTREAM_SIZE) return -1;
            ks->used = 0;
            ks->generated += KEYSTREAM_SIZE;
            atomic_fetch_add_explicit(&generated_total, KEYSTREAM_SIZE, memory_order_relaxed);
        }
        unsigned n = KEYSTREAM_SIZE - ks->used;
        if (n > len - done) n = len - done;
        xor_into(out + done, in + done, ks->bytes + ks->used, n);
        ks->used += n;
        done += n;
    }
    return (int)len;
}

static inline __attribute__((always_inline)) int cipher(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
                                                        unsigned int len, int from_libssh2) {
    int slot = ctx != NULL ? slot_of(ctx) : -1;
    if (slot < 0) return cipher_pass_through(ctx, out, in, len);
    struct keystream *ks = batches[slot];
    if (from_libssh2 && in != NULL && len == 16 && ks->used <= KEYSTREAM_SIZE - 16) {
        // libssh2's every call: one block, keystream on hand.
        xor_into(out, in, ks->bytes + ks->used, 16);
        ks->used += 16;
        return 16;
    }
    return cipher_batched_slow_path(ctx, slot, out, in, len, from_libssh2);
}

int EVP_Cipher(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in, unsigned int len) {
    return cipher(ctx, out, in, len, tunnel_called_from_libssh2(__builtin_return_address(0)));
}

int EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX *ctx) {
    pthread_once(&resolved, resolve);
    drop_any(ctx);
    return libcrypto.reset(ctx);
}

void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx) {
    pthread_once(&resolved, resolve);
    drop_any(ctx);
    libcrypto.free(ctx);
    // libssh2 frees its cipher contexts when a session ends or re-keys: the
    // MAC keys the thread kept for it go too (hmac_digest.c).
    if (tunnel_called_from_libssh2(__builtin_return_address(0))) tunnel_hmac_forget_kept_keys();
}

int tunnel_keystream_init_as_libssh2(struct evp_cipher_ctx_st *ctx, const struct evp_cipher_st *cipher_type,
                                     const unsigned char *key, const unsigned char *iv, int enc) {
    return cipher_init(ctx, cipher_type, key, iv, enc, 1);
}

int tunnel_keystream_cipher_as_libssh2(struct evp_cipher_ctx_st *ctx, unsigned char *out, const unsigned char *in,
                                       unsigned int len) {
    return cipher(ctx, out, in, len, 1);
}

int tunnel_keystream_batched(const struct evp_cipher_ctx_st *ctx) { return ctx != NULL && slot_of(ctx) >= 0; }

uint64_t tunnel_keystream_contexts_on_this_thread(void) { return attached_on_this_thread; }

uint64_t tunnel_keystream_bytes(void) { return atomic_load_explicit(&generated_total, memory_order_relaxed); }

int tunnel_keystream_enabled(void) {
    pthread_once(&resolved, resolve);
    return libcrypto.enabled && tunnel_crypto_calls_open();
}
