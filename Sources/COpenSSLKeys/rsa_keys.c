// RSA private keys for SHA-2 signatures (RFC 8332), and the two digests
// TunnelSSH needs. See COpenSSLKeys.h.

#include "COpenSSLKeys.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

// The opaque key is the EVP_PKEY itself.
static EVP_PKEY *pkey_of(const tunnel_rsa_key *key) { return (EVP_PKEY *)key; }

tunnel_rsa_key *tunnel_rsa_from_fields(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
                                       const uint8_t *d, size_t dlen, const uint8_t *iqmp, size_t iqmplen,
                                       const uint8_t *p, size_t plen, const uint8_t *q, size_t qlen) {
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    OSSL_PARAM *params = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BN_CTX *bnctx = BN_CTX_new();
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    BIGNUM *bd = BN_bin2bn(d, (int)dlen, NULL), *bi = BN_bin2bn(iqmp, (int)iqmplen, NULL);
    BIGNUM *bp = BN_bin2bn(p, (int)plen, NULL), *bq = BN_bin2bn(q, (int)qlen, NULL);
    BIGNUM *dmp1 = BN_new(), *dmq1 = BN_new(), *t = BN_new();
    if (!bld || !bnctx || !bn || !be || !bd || !bi || !bp || !bq || !dmp1 || !dmq1 || !t) goto out;
    // OpenSSH's file has no CRT exponents; OpenSSL wants them.
    if (!BN_sub(t, bp, BN_value_one()) || !BN_mod(dmp1, bd, t, bnctx) ||
        !BN_sub(t, bq, BN_value_one()) || !BN_mod(dmq1, bd, t, bnctx)) goto out;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, bd) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, bp) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, bq) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, bi)) goto out;
    if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL) goto out;
    if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL) goto out;
    if (EVP_PKEY_fromdata_init(pctx) <= 0 || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0) pkey = NULL;
out:
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_CTX_free(bnctx);
    BN_free(bn); BN_free(be); BN_clear_free(bd); BN_clear_free(bi); BN_clear_free(bp); BN_clear_free(bq);
    BN_clear_free(dmp1); BN_clear_free(dmq1); BN_clear_free(t);
    return (tunnel_rsa_key *)pkey;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

tunnel_rsa_key *tunnel_rsa_from_pem(const char *text, int length) {
    BIO *bio = BIO_new_mem_buf(text, length);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pkey && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return (tunnel_rsa_key *)pkey;
}

int tunnel_rsa_public_field(const tunnel_rsa_key *key, const char *name, uint8_t *out, int capacity) {
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(pkey_of(key), name, &bn) != 1) return -1;
    int length = BN_num_bytes(bn) <= capacity ? BN_bn2bin(bn, out) : -1;
    BN_free(bn);
    return length;
}

int tunnel_rsa_size(const tunnel_rsa_key *key) { return EVP_PKEY_get_size(pkey_of(key)); }

int tunnel_rsa_sign(tunnel_rsa_key *key, int sha512, const void *data, size_t length, uint8_t *sig, size_t *siglen) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, sha512 ? EVP_sha512() : EVP_sha256(), NULL, pkey_of(key)) == 1 &&
             EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)data, length) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

void tunnel_rsa_free(tunnel_rsa_key *key) { EVP_PKEY_free(pkey_of(key)); }

// The opaque HMAC context is the EVP_MAC_CTX itself.
static EVP_MAC_CTX *mac_of(tunnel_hmac_sha1_ctx *ctx) { return (EVP_MAC_CTX *)ctx; }

tunnel_hmac_sha1_ctx *tunnel_hmac_sha1_new(void) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); // the context holds its own reference
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx && EVP_MAC_CTX_set_params(ctx, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return (tunnel_hmac_sha1_ctx *)ctx;
}

int tunnel_hmac_sha1(tunnel_hmac_sha1_ctx *ctx, const void *key, size_t keylen, const void *data, size_t datalen,
                     uint8_t out[20]) {
    // A NULL key would mean "the previous key" to EVP_MAC_init; an empty salt is an empty key.
    static const unsigned char empty[1];
    size_t len = 0;
    int ok = EVP_MAC_init(mac_of(ctx), keylen > 0 ? key : empty, keylen, NULL) == 1 &&
             EVP_MAC_update(mac_of(ctx), (const unsigned char *)data, datalen) == 1 &&
             EVP_MAC_final(mac_of(ctx), out, &len, 20) == 1 && len == 20;
    return ok ? 0 : -1;
}

void tunnel_hmac_sha1_free(tunnel_hmac_sha1_ctx *ctx) { EVP_MAC_CTX_free(mac_of(ctx)); }

void tunnel_sha256(const void *data, size_t length, uint8_t out[32]) {
    SHA256((const unsigned char *)data, length, out);
}

void tunnel_cleanse(void *pointer, size_t length) { OPENSSL_cleanse(pointer, length); }

int tunnel_random_bytes(uint8_t *out, int length) { return RAND_bytes(out, length); }
