#ifndef TUNNEL_CLINUXSHIM_H
#define TUNNEL_CLINUXSHIM_H

// The Linux calls Swift's Glibc module does not export, for TunnelPOSIX only.
// No _GNU_SOURCE here: it would make these headers disagree with Swift's Glibc
// module. The few GNU extensions needed are declared below.

#include <sys/ioctl.h>
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
#include <pthread.h>
#include <spawn.h>
#include <malloc.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

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
extern int pipe2(int fds[2], int flags);
#define TUNNEL_EAI_NODATA (-5)
#define TUNNEL_POSIX_SPAWN_SETSID 0x80
// glibc 2.34; declared in spawn.h behind __USE_MISC.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

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

// Netlink route socket. NLMSG_*/RTA_* are macros Swift cannot import; the
// parser (NetlinkRoute.swift) walks the bytes itself with bounds checks and
// takes its layout from these.
static inline uint32_t tunnel_netlink_route_groups(void) {
    return RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
}

static inline int tunnel_netlink_route_socket(void) {
    return socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
}

static inline int tunnel_netlink_bind(int fd, uint32_t groups) {
    struct sockaddr_nl addr;
    memset(&addr, 0, sizeof addr);
    addr.nl_family = AF_NETLINK;
    addr.nl_groups = groups;
    return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

// One datagram; *sender is the port id it came from (0: the kernel).
// MSG_TRUNC makes the result the datagram's full length even when cut short.
static inline ssize_t tunnel_netlink_recv(int fd, void *buffer, size_t length, uint32_t *sender) {
    struct sockaddr_nl addr;
    socklen_t len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    ssize_t n = recvfrom(fd, buffer, length, MSG_TRUNC, (struct sockaddr *)&addr, &len);
    *sender = addr.nl_pid;
    return n;
}

static inline uint32_t tunnel_nlmsg_align(uint32_t length) { return NLMSG_ALIGN(length); }
static inline uint32_t tunnel_nlmsg_header_length(void) { return NLMSG_HDRLEN; }
static inline uint32_t tunnel_rta_align(uint32_t length) { return RTA_ALIGN(length); }
static inline uint32_t tunnel_ifaddrmsg_length(void) { return NLMSG_ALIGN(sizeof(struct ifaddrmsg)); }
static inline uint32_t tunnel_rtmsg_length(void) { return NLMSG_ALIGN(sizeof(struct rtmsg)); }
static inline uint32_t tunnel_ifinfomsg_length(void) { return NLMSG_ALIGN(sizeof(struct ifinfomsg)); }

// The terminal's size (ioctl is variadic, which Swift cannot call); 0 on success.
static inline int tunnel_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    memset(&size, 0, sizeof size);
    int rc = ioctl(fd, TIOCGWINSZ, &size);
    *rows = size.ws_row;
    *columns = size.ws_col;
    return rc;
}

#endif
