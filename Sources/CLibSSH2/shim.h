#ifndef TUNNEL_CLIBSSH2_SHIM_H
#define TUNNEL_CLIBSSH2_SHIM_H

// No _GNU_SOURCE here: it would make these headers disagree with Swift's Glibc
// module. The few GNU extensions needed are declared below.

#include <libssh2.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <malloc.h>

// epoll_event is packed on x86_64; reading and writing it here keeps Swift
// away from the packed layout.
static inline int tunnel_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

static inline size_t tunnel_epoll_event_size(void) { return sizeof(struct epoll_event); }

static inline int tunnel_epoll_wait(int epfd, void *buffer, int maxevents, int timeout) {
    return epoll_wait(epfd, (struct epoll_event *)buffer, maxevents, timeout);
}

static inline void tunnel_epoll_event_at(const void *buffer, int index, uint32_t *events, uint64_t *data) {
    const struct epoll_event *ev = ((const struct epoll_event *)buffer) + index;
    *events = ev->events;
    *data = ev->data.u64;
}

extern int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
extern int pthread_setname_np(pthread_t thread, const char *name);
#define TUNNEL_EAI_NODATA (-5)
#define TUNNEL_POSIX_SPAWN_SETSID 0x80

// Same layout as the kernel's struct ucred, which glibc hides behind _GNU_SOURCE.
struct tunnel_ucred { pid_t pid; uid_t uid; gid_t gid; };

static inline int tunnel_peer_credentials(int fd, uid_t *uid, pid_t *pid) {
    struct tunnel_ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *uid = cred.uid;
    *pid = cred.pid;
    return 0;
}

// For a listening TCP socket the kernel reports its accept queue in tcpi_unacked.
static inline int tunnel_listen_queue_length(int fd, uint32_t *length) {
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
    *length = info.tcpi_unacked;
    return 0;
}

static inline int tunnel_accept4(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

// libssh2 takes its I/O callbacks as void*; typed here so Swift passes a
// @convention(c) function without casts.
typedef ssize_t (*tunnel_ssh_send_fn)(libssh2_socket_t socket, const void *buffer, size_t length, int flags, void **abstract);
typedef ssize_t (*tunnel_ssh_recv_fn)(libssh2_socket_t socket, void *buffer, size_t length, int flags, void **abstract);

static inline void tunnel_ssh_set_send(LIBSSH2_SESSION *session, tunnel_ssh_send_fn fn) {
    libssh2_session_callback_set(session, LIBSSH2_CALLBACK_SEND, (void *)fn);
}

static inline void tunnel_ssh_set_recv(LIBSSH2_SESSION *session, tunnel_ssh_recv_fn fn) {
    libssh2_session_callback_set(session, LIBSSH2_CALLBACK_RECV, (void *)fn);
}

static inline void *tunnel_ssh_abstract(void **abstract) { return *abstract; }

// HMAC-SHA1, for hashed known_hosts entries (|1|salt|hash).
static inline int tunnel_hmac_sha1(const void *key, int keylen, const void *data, size_t datalen, unsigned char out[20]) {
    unsigned int len = 20;
    return HMAC(EVP_sha1(), key, keylen, (const unsigned char *)data, datalen, out, &len) != NULL ? 0 : -1;
}

// RSA signatures with SHA-2 (rsa-sha2-256/512, RFC 8332): libssh2 1.10 only
// makes SHA-1 ones, which OpenSSH 8.8 and later refuse, so tunnel signs itself.

// An RSA private key from OpenSSH's private fields (n, e, d, iqmp, p, q, as
// big-endian magnitudes); NULL when they do not make a key.
static inline EVP_PKEY *tunnel_rsa_from_fields(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
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
    return pkey;
}

static inline int tunnel_pem_no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

// An unencrypted PEM or PKCS#8 RSA private key; NULL for anything else.
static inline EVP_PKEY *tunnel_rsa_from_pem(const char *text, int length) {
    BIO *bio = BIO_new_mem_buf(text, length);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, tunnel_pem_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pkey && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return pkey;
}

// The big-endian magnitude of the key's "n" or "e" into out; its length, or -1.
static inline int tunnel_rsa_public_field(const EVP_PKEY *pkey, const char *name, uint8_t *out, int capacity) {
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return -1;
    int length = BN_num_bytes(bn) <= capacity ? BN_bn2bin(bn, out) : -1;
    BN_free(bn);
    return length;
}

static inline int tunnel_rsa_size(const EVP_PKEY *pkey) { return EVP_PKEY_get_size(pkey); }

// PKCS#1 v1.5 over SHA-512 or SHA-256; 0 on success.
static inline int tunnel_rsa_sign(EVP_PKEY *pkey, int sha512, const void *data, size_t length, uint8_t *sig, size_t *siglen) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, sha512 ? EVP_sha512() : EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)data, length) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static inline void tunnel_pkey_free(EVP_PKEY *pkey) { EVP_PKEY_free(pkey); }

// glibc hands the free top of the heap back to the kernel past 128 KiB, and
// libssh2 allocates every received packet: a bulk download grows the heap by
// up to a channel window (2 MiB), frees it, and then pays one page fault per
// 4 KiB when it grows again. A fixed 4 MiB trim threshold ends that churn, at
// the price of up to 4 MiB of free heap kept per thread arena after bulk
// transfers. Fixing it turns off glibc's adaptive mmap threshold, so that one
// is fixed too, above the 2 MiB an SSH send queue can reach.
static inline void tunnel_tune_malloc(void) {
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

static inline int tunnel_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

#endif
