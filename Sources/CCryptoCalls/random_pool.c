// Random bytes for libssh2 1.10, drawn from libcrypto in bulk.
//
// libssh2 asks RAND_bytes for every packet's padding (4 to 19 bytes for
// AES), and OpenSSL 3 pays a DRBG lock, a generate step and a getpid(2)
// (its fork check) per call: about 7 % of tunnel's CPU in a request/response
// workload. This RAND_bytes answers libssh2's calls, and only libssh2's (told
// apart by the return address, tunnel_called_from_libssh2) while the version
// gate is open, from a per-thread pool refilled with one RAND_bytes call per
// 1 KiB. The bytes are libcrypto's own, in order; every byte served is wiped
// from the pool, and a forked child starts with an empty pool, so no two
// processes or calls ever get the same bytes. Calls from anywhere else, and
// requests over 256 bytes, go to libcrypto as they came.
// libssh2's only RAND_bytes uses are padding and the KEXINIT cookie, both
// public; keys are generated inside libcrypto and never come through here.
// That is also why the unserved bytes of an exiting thread's pool are simply
// left to the freed thread memory.
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

enum { POOL_SIZE = 1024, LARGEST_POOLED = 256 };

typedef int (*rand_bytes_fn)(unsigned char *, int);

static struct {
    rand_bytes_fn rand_bytes;
    int enabled;
} libcrypto;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static _Thread_local struct {
    unsigned char bytes[POOL_SIZE];
    int left; // unserved bytes, at the end of `bytes`; 0 on a new thread
    uint64_t calls;
} pool;

static void empty_pool(void) {
    explicit_bzero(pool.bytes, sizeof pool.bytes);
    pool.left = 0;
}

static void resolve(void) {
    tunnel_crypto_calls_resolve();
    libcrypto.rand_bytes = (rand_bytes_fn)tunnel_libcrypto_next("RAND_bytes");
    // The child of a fork must not serve bytes its parent may also serve.
    pthread_atfork(NULL, NULL, empty_pool);
    libcrypto.enabled = tunnel_setting_enabled("TUNNEL_RANDOM_POOL");
}

// Requires resolve(). Served bytes are already zero, and a refill overwrites
// the unserved rest, so only a failed refill needs wiping.
static int draw(unsigned char *buffer, int count) {
    if (!libcrypto.enabled || !tunnel_crypto_calls_open() || buffer == NULL || count <= 0 || count > LARGEST_POOLED) {
        return libcrypto.rand_bytes(buffer, count);
    }
    if (pool.left < count) {
        if (libcrypto.rand_bytes(pool.bytes, POOL_SIZE) != 1) {
            empty_pool();
            return libcrypto.rand_bytes(buffer, count); // libcrypto reports its own failure
        }
        pool.left = POOL_SIZE;
    }
    unsigned char *next = pool.bytes + (POOL_SIZE - pool.left);
    memcpy(buffer, next, (size_t)count);
    explicit_bzero(next, (size_t)count);
    pool.left -= count;
    pool.calls += 1;
    return 1;
}

int tunnel_random_pool_draw(unsigned char *buffer, int count) {
    pthread_once(&resolved, resolve);
    return draw(buffer, count);
}

int RAND_bytes(unsigned char *buffer, int count) {
    pthread_once(&resolved, resolve);
    if (tunnel_called_from_libssh2(__builtin_return_address(0))) return draw(buffer, count);
    return libcrypto.rand_bytes(buffer, count);
}

uint64_t tunnel_random_pool_calls_on_this_thread(void) { return pool.calls; }

int tunnel_random_pool_unserved(void) { return pool.left; }

int tunnel_random_pool_served_bytes_wiped(void) {
    for (int i = 0; i < POOL_SIZE - pool.left; i++) {
        if (pool.bytes[i] != 0) return 0;
    }
    return 1;
}

int tunnel_random_pool_enabled(void) {
    pthread_once(&resolved, resolve);
    return libcrypto.enabled && tunnel_crypto_calls_open();
}
