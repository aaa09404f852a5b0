// Batched AES-CTR keystream for libssh2 1.10.
//
// libssh2 1.10 encrypts and decrypts one 16-byte block per EVP_Cipher call.
// Through OpenSSL 3's provider dispatch that costs about as much CPU as the
// HMAC over the same bytes. CTR keystream does not depend on the data, so
// this file generates it 8 KiB at a time through the same context (one real
// EVP_Cipher call over zeros) and answers each 16-byte call with an XOR.
// The bytes produced are exactly those the context would have produced.
//
// It works by defining EVP_CipherInit, EVP_Cipher, EVP_CIPHER_CTX_reset and
// EVP_CIPHER_CTX_free in the executable: the dynamic linker binds libssh2's
// calls to these, and each forwards to libcrypto's own (RTLD_NEXT).
// Only contexts set up for a provider AES-CTR cipher through EVP_CipherInit
// with a key are batched; every other call passes through untouched.
// A batched context must be driven by EVP_Cipher alone (libssh2 does): a
// mix with EVP_CipherUpdate would desynchronise the prefetched keystream.
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { KEYSTREAM_SIZE = 8192 };

struct keystream {
    _Alignas(64) unsigned char bytes[KEYSTREAM_SIZE];
    const void *owner; // &keystream_owner: tells our app_data from anyone else's
    unsigned used;     // bytes of `bytes` already consumed
};

static const char keystream_owner;
static const unsigned char zeros[KEYSTREAM_SIZE];

typedef int (*cipher_init_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, const unsigned char *, const unsigned char *, int);
typedef int (*cipher_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, unsigned int);
typedef int (*ctx_reset_fn)(EVP_CIPHER_CTX *);
typedef void (*ctx_free_fn)(EVP_CIPHER_CTX *);

static struct {
    cipher_init_fn init;
    cipher_fn cipher;
    ctx_reset_fn reset;
    ctx_free_fn free;
    int enabled;
} libcrypto;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;
static _Atomic uint64_t generated;
static _Thread_local uint64_t attached_on_this_thread;

static void resolve(void) {
    libcrypto.init = (cipher_init_fn)tunnel_libcrypto_next("EVP_CipherInit");
    libcrypto.cipher = (cipher_fn)tunnel_libcrypto_next("EVP_Cipher");
    libcrypto.reset = (ctx_reset_fn)tunnel_libcrypto_next("EVP_CIPHER_CTX_reset");
    libcrypto.free = (ctx_free_fn)tunnel_libcrypto_next("EVP_CIPHER_CTX_free");
    libcrypto.enabled = tunnel_setting_enabled("TUNNEL_CTR_BATCH");
}

static struct keystream *batched(const EVP_CIPHER_CTX *ctx) {
    struct keystream *ks = EVP_CIPHER_CTX_get_app_data(ctx);
    return ks != NULL && ks->owner == &keystream_owner ? ks : NULL;
}

static void detach(EVP_CIPHER_CTX *ctx) {
    struct keystream *ks = batched(ctx);
    if (ks == NULL) return;
    EVP_CIPHER_CTX_set_app_data(ctx, NULL);
    OPENSSL_cleanse(ks, sizeof *ks);
    free(ks);
}

static int is_provider_ctr(const EVP_CIPHER_CTX *ctx) {
    const EVP_CIPHER *cipher = EVP_CIPHER_CTX_get0_cipher(ctx);
    return cipher != NULL && EVP_CIPHER_get0_provider(cipher) != NULL && EVP_CIPHER_get_mode(cipher) == EVP_CIPH_CTR_MODE;
}

int EVP_CipherInit(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const unsigned char *key, const unsigned char *iv, int enc) {
    pthread_once(&resolved, resolve);
    if (ctx != NULL) detach(ctx); // a re-keyed context starts its keystream over
    int ok = libcrypto.init(ctx, cipher, key, iv, enc);
    if (ok != 1 || ctx == NULL || key == NULL || !libcrypto.enabled || !is_provider_ctr(ctx)) return ok;
    if (EVP_CIPHER_CTX_get_app_data(ctx) != NULL) return ok; // someone else's
    struct keystream *ks = aligned_alloc(_Alignof(struct keystream), sizeof *ks);
    if (ks == NULL) return ok; // unbatched still works
    ks->owner = &keystream_owner;
    ks->used = KEYSTREAM_SIZE;
    EVP_CIPHER_CTX_set_app_data(ctx, ks);
    attached_on_this_thread += 1;
    return ok;
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

// Everything but libssh2's common call: kept out of line so that call pays
// for no register saves or stack frame.
__attribute__((noinline)) static int cipher_slow_path(EVP_CIPHER_CTX *ctx, struct keystream *ks, unsigned char *out,
                                                     const unsigned char *in, unsigned int len) {
    if (ks == NULL || in == NULL || len > (unsigned)INT32_MAX) {
        pthread_once(&resolved, resolve);
        return libcrypto.cipher(ctx, out, in, len);
    }
    unsigned done = 0;
    while (done < len) {
        if (ks->used == KEYSTREAM_SIZE) {
            // Provider ciphers return the byte count, -1 on failure.
            if (libcrypto.cipher(ctx, ks->bytes, zeros, KEYSTREAM_SIZE) != KEYSTREAM_SIZE) return -1;
            ks->used = 0;
            atomic_fetch_add_explicit(&generated, KEYSTREAM_SIZE, memory_order_relaxed);
        }
        unsigned n = KEYSTREAM_SIZE - ks->used;
        if (n > len - done) n = len - done;
        xor_into(out + done, in + done, ks->bytes + ks->used, n);
        ks->used += n;
        done += n;
    }
    return (int)len;
}

int EVP_Cipher(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in, unsigned int len) {
    struct keystream *ks = ctx != NULL ? batched(ctx) : NULL;
    if (ks != NULL && in != NULL && len == 16 && ks->used <= KEYSTREAM_SIZE - 16) {
        // libssh2's every call: one block, keystream on hand.
        xor_into(out, in, ks->bytes + ks->used, 16);
        ks->used += 16;
        return 16;
    }
    return cipher_slow_path(ctx, ks, out, in, len);
}

int EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX *ctx) {
    pthread_once(&resolved, resolve);
    if (ctx != NULL) detach(ctx);
    return libcrypto.reset(ctx);
}

void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx) {
    pthread_once(&resolved, resolve);
    if (ctx != NULL) detach(ctx);
    libcrypto.free(ctx);
}

uint64_t tunnel_keystream_contexts_on_this_thread(void) { return attached_on_this_thread; }

uint64_t tunnel_keystream_bytes(void) { return atomic_load_explicit(&generated, memory_order_relaxed); }

int tunnel_keystream_enabled(void) {
    pthread_once(&resolved, resolve);
    return libcrypto.enabled;
}
