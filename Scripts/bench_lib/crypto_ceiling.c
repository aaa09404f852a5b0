/* The throughput ceiling libssh2 1.10 can reach on this CPU, next to the one
 * OpenSSH reaches: both use libcrypto's aes128-ctr and hmac-sha2-512, but
 * libssh2 hands AES one 16-byte block per EVP_Cipher call while OpenSSH
 * passes whole packets. Per-core MB/s of crypto alone, one direction.
 * Built with Sources/CKeystream linked in, so the 16-byte calls take
 * tunnel's batched keystream unless TUNNEL_CTR_BATCH=0. */
#include "CKeystream.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    static unsigned char key[16] = {1}, iv[16] = {2}, buf[32768], out[32768];
    const size_t packet = sizeof buf, total = (size_t)256 << 20;
    memset(buf, 7, sizeof buf);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_CipherInit(c, EVP_aes_128_ctr(), key, iv, 1);

    double t = now();
    for (size_t done = 0; done < total; done += packet)
        for (size_t i = 0; i < packet; i += 16) EVP_Cipher(c, buf + i, buf + i, 16);
    double aesBlock = total / (now() - t) / 1e6;

    t = now();
    for (size_t done = 0; done < total; done += packet) EVP_Cipher(c, out, buf, packet);
    double aesBulk = total / (now() - t) / 1e6;

    unsigned char md[64];
    unsigned int len;
    HMAC_CTX *h = HMAC_CTX_new();
    t = now();
    for (size_t done = 0; done < total; done += packet) {
        HMAC_Init_ex(h, key, 16, EVP_sha512(), NULL);
        HMAC_Update(h, buf, packet);
        HMAC_Final(h, md, &len);
    }
    double mac = total / (now() - t) / 1e6;

    double libssh2 = 1 / (1 / aesBlock + 1 / mac), openssh = 1 / (1 / aesBulk + 1 / mac);
    printf("{\"aes_16_byte_calls_mb_s\": %.0f, \"aes_bulk_mb_s\": %.0f, \"hmac_sha2_512_mb_s\": %.0f, "
           "\"libssh2_ceiling_mbit_s\": %.0f, \"openssh_ceiling_mbit_s\": %.0f, \"batched\": %s}\n",
           aesBlock, aesBulk, mac, libssh2 * 8, openssh * 8, tunnel_keystream_enabled() ? "true" : "false");
    return 0;
}
