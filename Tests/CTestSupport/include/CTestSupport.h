#ifndef TUNNEL_CTESTSUPPORT_H
#define TUNNEL_CTESTSUPPORT_H

// The HMAC_CTX calls libssh2 1.10 makes per packet, for PacketCryptoTests.
// OpenSSL 3 marks them deprecated; these wrappers keep the warnings out of
// the Swift tests while making exactly the same calls.

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

typedef struct hmac_ctx_st *test_hmac_ctx;

test_hmac_ctx test_hmac_ctx_new(void);
void test_hmac_ctx_free(test_hmac_ctx ctx);
int test_hmac_init_ex(test_hmac_ctx ctx, const void *key, int key_length, const EVP_MD *md);
int test_hmac_update(test_hmac_ctx ctx, const unsigned char *data, size_t length);
int test_hmac_final(test_hmac_ctx ctx, unsigned char *mac, unsigned int *length);
const EVP_MD *test_hmac_ctx_get_md(test_hmac_ctx ctx);
int test_hmac_ctx_copy(test_hmac_ctx destination, test_hmac_ctx source);
int test_hmac_ctx_reset(test_hmac_ctx ctx);

#endif
