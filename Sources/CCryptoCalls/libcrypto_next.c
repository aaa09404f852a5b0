// What every hook shares: libcrypto's own definitions, the "0" switches,
// where libssh2's code lies (the only caller the shortcuts act for) and the
// version gate (the only libssh2 and OpenSSL versions they were checked
// against).
#define _GNU_SOURCE
#include "CCryptoCalls.h"
#include "libcrypto_next.h"

#include <dlfcn.h>
#include <link.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tunnel_libcrypto_next(const char *name) {
    void *f = dlvsym(RTLD_NEXT, name, "OPENSSL_3.0.0");
    if (f == NULL) f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        fprintf(stderr, "tunnel: libcrypto has no %s: %s\n", name, dlerror());
        abort();
    }
    return f;
}

int tunnel_setting_enabled(const char *name) {
    const char *setting = getenv(name);
    return !(setting != NULL && strcmp(setting, "0") == 0);
}

// Written once inside resolve(), read by any thread with relaxed loads: a
// thread that sees the old zeros takes the call for someone else's and
// passes it through.
_Atomic uintptr_t tunnel_libssh2_code_start, tunnel_libssh2_code_end;
_Atomic int tunnel_crypto_calls_gate;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static struct {
    char libssh2[32];      // libssh2_version(0), "" when libssh2 is not loaded
    unsigned long openssl; // OpenSSL_version_num()
    int located;           // libssh2's executable segments were found
    char status[160];      // tunnel_crypto_calls_status() for these
    int open;
} real;

// The verdict tunnel_crypto_calls_gate_for_testing() last gave.
static char injected_status[160];

static _Atomic(const char *) status = "off: not resolved yet";

static int find_libssh2_code(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const char *path = data;
    if (info->dlpi_name == NULL || strcmp(info->dlpi_name, path) != 0) return 0;
    uintptr_t start = 0, end = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        if (segment->p_type != PT_LOAD || !(segment->p_flags & PF_X)) continue;
        uintptr_t from = info->dlpi_addr + segment->p_vaddr;
        if (end == 0 || from < start) start = from;
        if (from + segment->p_memsz > end) end = from + segment->p_memsz;
    }
    atomic_store_explicit(&tunnel_libssh2_code_start, start, memory_order_relaxed);
    atomic_store_explicit(&tunnel_libssh2_code_end, end, memory_order_relaxed);
    return 1;
}

/// Writes the gate's verdict for these versions into `out`; 1 when open.
static int judge(const char *libssh2, unsigned long openssl, int located, char *out, size_t size) {
    // 0xMNN00PP0 from 3.0 on, 0xMNNFFPPS (fix, then letter) before.
    unsigned long major = openssl >> 28, minor = (openssl >> 20) & 0xff;
    unsigned long patch = major >= 3 ? (openssl >> 4) & 0xff : (openssl >> 12) & 0xff;
    if (libssh2 == NULL || libssh2[0] == 0) {
        snprintf(out, size, "off: libssh2 is not loaded");
    } else if (strncmp(libssh2, "1.10.", 5) != 0 && strncmp(libssh2, "1.11.", 5) != 0) {
        snprintf(out, size, "off: libssh2 %.24s is not 1.10.x or 1.11.x", libssh2);
    } else if (major != 3) {
        snprintf(out, size, "off: OpenSSL %lu.%lu.%lu is not 3.x", major, minor, patch);
    } else if (!located) {
        snprintf(out, size, "off: libssh2's code was not located");
    } else {
        snprintf(out, size, "on: libssh2 %.24s, OpenSSL %lu.%lu.%lu", libssh2, major, minor, patch);
        return 1;
    }
    return 0;
}

static void resolve(void) {
    Dl_info where;
    void *libssh2_function = dlsym(RTLD_DEFAULT, "libssh2_session_init_ex");
    if (libssh2_function != NULL && dladdr(libssh2_function, &where) != 0 && where.dli_fname != NULL) {
        dl_iterate_phdr(find_libssh2_code, (void *)where.dli_fname);
    }
    real.located = atomic_load_explicit(&tunnel_libssh2_code_end, memory_order_relaxed) != 0;
    const char *(*version)(int) = (const char *(*)(int))dlsym(RTLD_DEFAULT, "libssh2_version");
    const char *reported = version != NULL ? version(0) : NULL;
    snprintf(real.libssh2, sizeof real.libssh2, "%s", reported != NULL ? reported : "");
    real.openssl = OpenSSL_version_num();
    real.open = judge(real.libssh2, real.openssl, real.located, real.status, sizeof real.status);
    atomic_store_explicit(&status, real.status, memory_order_release);
    atomic_store_explicit(&tunnel_crypto_calls_gate, real.open, memory_order_relaxed);
}

void tunnel_crypto_calls_resolve(void) { pthread_once(&resolved, resolve); }

int tunnel_crypto_calls_active(void) {
    tunnel_crypto_calls_resolve();
    return tunnel_crypto_calls_open();
}

const char *tunnel_crypto_calls_status(void) {
    tunnel_crypto_calls_resolve();
    return atomic_load_explicit(&status, memory_order_acquire);
}

const char *tunnel_crypto_calls_gate_for_testing(const char *libssh2_version, unsigned long openssl_version) {
    tunnel_crypto_calls_resolve();
    if (libssh2_version == NULL) {
        atomic_store_explicit(&status, real.status, memory_order_release);
        atomic_store_explicit(&tunnel_crypto_calls_gate, real.open, memory_order_relaxed);
        return real.status;
    }
    int open = judge(libssh2_version, openssl_version, real.located, injected_status, sizeof injected_status);
    // It can close the gate, never open one the real versions keep closed.
    atomic_store_explicit(&status, open ? real.status : injected_status, memory_order_release);
    atomic_store_explicit(&tunnel_crypto_calls_gate, open && real.open, memory_order_relaxed);
    return tunnel_crypto_calls_status();
}
