// Which HMAC digest is cheaper on this CPU, for the MAC preference.
//
// With SHA instructions (x86 SHA-NI, Armv8 SHA2), libcrypto's SHA-256 runs
// about three times as fast as its SHA-512 (1,306 against 465 MB/s in
// `openssl speed` on the bench machine); without them SHA-512's 64-bit rounds
// win. The answer is read from the CPU itself, once: it never changes while
// the process runs.
#define _GNU_SOURCE
#include "CCryptoCalls.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#endif

int tunnel_cpu_has_sha256_instructions(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned int eax, ebx, ecx, edx;
    // leaf 7, sub-leaf 0: EBX bit 29 is SHA (needs only SSE state, which
    // every x86-64 OS saves)
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 29) & 1;
#elif defined(__aarch64__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#else
    return 0;
#endif
}
