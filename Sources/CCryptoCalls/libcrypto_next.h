#ifndef TUNNEL_LIBCRYPTO_NEXT_H
#define TUNNEL_LIBCRYPTO_NEXT_H

#include <stdatomic.h>
#include <stdint.h>

/// libcrypto's own definition of `name` (the next one after the executable's),
/// OpenSSL 3 version first. Aborts when there is none: without it no call
/// could be answered.
void *tunnel_libcrypto_next(const char *name);

/// False when the environment variable `name` is "0".
int tunnel_setting_enabled(const char *name);

/// Once per process, from any thread, as often as wanted: locates libssh2's
/// executable code and decides the version gate. Every hook calls it before
/// it relies on either.
void tunnel_crypto_calls_resolve(void);

/// 1 when the shortcuts may act: libssh2 1.10.x or 1.11.x is loaded and its
/// code located, and libcrypto is OpenSSL 3.x. 0 before resolving and
/// whenever the gate is closed; then no context is batched, no digest
/// swapped, no random byte pooled. (A batch attached earlier stays exact.)
static inline int tunnel_crypto_calls_open(void) {
    extern _Atomic int tunnel_crypto_calls_gate;
    return atomic_load_explicit(&tunnel_crypto_calls_gate, memory_order_relaxed);
}

/// 1 when `return_address` lies in libssh2's executable segments: the call
/// was made by libssh2's own code. Pass __builtin_return_address(0) from the
/// hook itself. 0 for everything before resolving or when libssh2 was not
/// located. Inline: EVP_Cipher asks once per 16-byte block.
static inline int tunnel_called_from_libssh2(const void *return_address) {
    extern _Atomic uintptr_t tunnel_libssh2_code_start, tunnel_libssh2_code_end;
    uintptr_t a = (uintptr_t)return_address;
    return a >= atomic_load_explicit(&tunnel_libssh2_code_start, memory_order_relaxed) &&
           a < atomic_load_explicit(&tunnel_libssh2_code_end, memory_order_relaxed);
}

#endif
