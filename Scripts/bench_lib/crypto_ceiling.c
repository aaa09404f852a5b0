/* The throughput ceiling libssh2 1.10 can reach on this CPU, next to the one
 * OpenSSH reaches: both use libcrypto's aes128-ctr and the HMAC named as the
 * argument (hmac-sha2-256 or hmac-sha2-512, what tunnel negotiates), but
 * libssh2 hands AES one 16-byte block per EVP_Cipher call while OpenSSH
 * passes whole packets. Per-core MB/s of crypto alone, one direction.
 * Built with Sources/CCryptoCalls and libssh2 linked in: a context set up and
 * driven through tunnel_keystream_*_as_libssh2 (the path libssh2's own calls
 * take; this program's own EVP_CipherInit calls are not libssh2's and pass
 * through) takes tunnel's batched keystream, one set up with
 * EVP_CipherInit_ex is libssh2's plain path. */
#include "CCryptoCalls.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const size_t packet = 32768, total = (size_t)256 << 20;
static unsigned char key[16] = {1}, iv[16] = {2}, buf[32768], out[32768];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

const char *libssh2_version(int req_version_num); /* the version gate asks libssh2 */

typedef int (*cipher_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, unsigned int);

/* MB/s of `total` bytes in EVP_Cipher calls of `step` bytes. */
static double aes(cipher_fn cipher, EVP_CIPHER_CTX *c, size_t step) {
    double t = now();
    for (size_t done = 0; done < total; done += packet)
        for (size_t i = 0; i < packet; i += step) cipher(c, out + i, buf + i, step);
    return total / (now() - t) / 1e6;
}

int main(int argc, char **argv) {
    const char *macName = argc > 1 ? argv[1] : "hmac-sha2-512";
    const EVP_MD *md_type = strcmp(macName, "hmac-sha2-256") == 0 ? EVP_sha256()
                          : strcmp(macName, "hmac-sha2-512") == 0 ? EVP_sha512() : NULL;
    if (md_type == NULL) {
        fprintf(stderr, "crypto_ceiling: unknown MAC %s\n", macName);
        return 2;
    }
    memset(buf, 7, sizeof buf);
    if (libssh2_version(0) == NULL) return 1;
    EVP_CIPHER_CTX *plain = EVP_CIPHER_CTX_new(), *batched = EVP_CIPHER_CTX_new();
    EVP_CipherInit_ex(plain, EVP_aes_128_ctr(), NULL, key, iv, 1);
    tunnel_keystream_init_as_libssh2(batched, EVP_aes_128_ctr(), key, iv, 1);

    double aesBlock = aes(EVP_Cipher, plain, 16);
    double aesBatched = aes(tunnel_keystream_cipher_as_libssh2, batched, 16);
    double aesBulk = aes(EVP_Cipher, plain, packet);

    unsigned char md[64];
    unsigned int len;
    HMAC_CTX *h = HMAC_CTX_new();
    double t = now();
    for (size_t done = 0; done < total; done += packet) {
        HMAC_Init_ex(h, key, 16, md_type, NULL);
        HMAC_Update(h, buf, packet);
        HMAC_Final(h, md, &len);
    }
    double mac = total / (now() - t) / 1e6;

    double libssh2 = 1 / (1 / aesBlock + 1 / mac), tunnel = 1 / (1 / aesBatched + 1 / mac);
    double openssh = 1 / (1 / aesBulk + 1 / mac);
    printf("{\"aes_16_byte_calls_mb_s\": %.0f, \"aes_16_byte_calls_batched_mb_s\": %.0f, \"aes_bulk_mb_s\": %.0f, "
           "\"mac\": \"%s\", \"hmac_mb_s\": %.0f, \"libssh2_ceiling_mbit_s\": %.0f, \"tunnel_ceiling_mbit_s\": %.0f, "
           "\"openssh_ceiling_mbit_s\": %.0f, \"batched\": %s}\n",
           aesBlock, aesBatched, aesBulk, macName, mac, libssh2 * 8, tunnel * 8, openssh * 8,
           tunnel_keystream_bytes() >= total ? "true" : "false");
    return 0;
}
