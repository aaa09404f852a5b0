#ifndef TUNNEL_CLIBSSH2_SHIM_H
#define TUNNEL_CLIBSSH2_SHIM_H

// No _GNU_SOURCE here: it would make these headers disagree with Swift's Glibc
// module. The few GNU extensions needed are declared below.

#include <libssh2.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
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

static inline int tunnel_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

#endif
