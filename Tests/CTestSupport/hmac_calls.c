#define OPENSSL_SUPPRESS_DEPRECATED
#include "CTestSupport.h"

#include <openssl/hmac.h>

test_hmac_ctx test_hmac_ctx_new(void) { return HMAC_CTX_new(); }

void test_hmac_ctx_free(test_hmac_ctx ctx) { HMAC_CTX_free(ctx); }

int test_hmac_init_ex(test_hmac_ctx ctx, const void *key, int key_length, const EVP_MD *md) {
    return HMAC_Init_ex(ctx, key, key_length, md, NULL);
}

int test_hmac_update(test_hmac_ctx ctx, const unsigned char *data, size_t length) { return HMAC_Update(ctx, data, length); }

int test_hmac_final(test_hmac_ctx ctx, unsigned char *mac, unsigned int *length) { return HMAC_Final(ctx, mac, length); }

const EVP_MD *test_hmac_ctx_get_md(test_hmac_ctx ctx) { return HMAC_CTX_get_md(ctx); }

int test_hmac_ctx_copy(test_hmac_ctx destination, test_hmac_ctx source) { return HMAC_CTX_copy(destination, source); }

int test_hmac_ctx_reset(test_hmac_ctx ctx) { return HMAC_CTX_reset(ctx); }
