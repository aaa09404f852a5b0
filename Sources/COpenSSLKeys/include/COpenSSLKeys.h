#ifndef TUNNEL_COPENSSLKEYS_H
#define TUNNEL_COPENSSLKEYS_H

// The few libcrypto operations TunnelSSH needs beside libssh2: RSA keys signed
// with SHA-2 (libssh2 1.10 only makes SHA-1 RSA signatures, which OpenSSH 8.8
// and later refuse), SHA-256 fingerprints and HMAC-SHA1 for hashed
// known_hosts lines. OpenSSL's types stay behind this header.

#include <stddef.h>
#include <stdint.h>

typedef struct tunnel_rsa_key tunnel_rsa_key;

/// An RSA private key from OpenSSH's private fields (n, e, d, iqmp, p, q, as
/// big-endian magnitudes); NULL when they do not make a key.
tunnel_rsa_key *tunnel_rsa_from_fields(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
                                       const uint8_t *d, size_t dlen, const uint8_t *iqmp, size_t iqmplen,
                                       const uint8_t *p, size_t plen, const uint8_t *q, size_t qlen);

/// An unencrypted PEM or PKCS#8 RSA private key; NULL for anything else.
tunnel_rsa_key *tunnel_rsa_from_pem(const char *text, int length);

/// The big-endian magnitude of the key's "n" or "e" into out; its length, or -1.
int tunnel_rsa_public_field(const tunnel_rsa_key *key, const char *name, uint8_t *out, int capacity);

/// The signature size in bytes.
int tunnel_rsa_size(const tunnel_rsa_key *key);

/// PKCS#1 v1.5 over SHA-512 (sha512 != 0) or SHA-256; 0 on success.
int tunnel_rsa_sign(tunnel_rsa_key *key, int sha512, const void *data, size_t length, uint8_t *sig, size_t *siglen);

void tunnel_rsa_free(tunnel_rsa_key *key);

typedef struct tunnel_hmac_sha1_ctx tunnel_hmac_sha1_ctx;

/// HMAC-SHA1 for hashed known_hosts entries (|1|salt|hash), one salt after
/// another: HMAC and SHA-1 are fetched once per context, where the one-shot
/// HMAC() fetches them on every call. NULL on failure.
tunnel_hmac_sha1_ctx *tunnel_hmac_sha1_new(void);

/// HMAC-SHA1 of data under key into out; 0 on success.
int tunnel_hmac_sha1(tunnel_hmac_sha1_ctx *ctx, const void *key, size_t keylen, const void *data, size_t datalen,
                     uint8_t out[20]);

void tunnel_hmac_sha1_free(tunnel_hmac_sha1_ctx *ctx);

/// Overwrites memory with zeros in a way the compiler cannot elide (OPENSSL_cleanse).
void tunnel_cleanse(void *pointer, size_t length);

/* OpenSSL's CSPRNG (RAND_bytes): 1 on success. For known_hosts salts. */
int tunnel_random_bytes(uint8_t *out, int length);

/// SHA-256 of data into out.
void tunnel_sha256(const void *data, size_t length, uint8_t out[32]);

#endif
