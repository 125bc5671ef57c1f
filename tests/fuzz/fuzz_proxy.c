/*
 * tests/fuzz/fuzz_proxy.c - libFuzzer target: one client connection to the
 * forward proxy (proxy/proxy.h: sniffing, HTTP proxy, CONNECT, SOCKS5 with
 * and without user/password, SOCKS4/4a) talking to an origin the fuzzer
 * also plays.
 *
 * Input: byte 0 sets the scene
 *   bit 0      credentials required (user "u", password "p")
 *   bit 1      the client half-closes after its bytes
 *   bit 2      the origin closes after its bytes
 *   bit 3      dials are refused instead of reaching the origin
 *   bits 4-6   piece size of the client's bytes (1..8 KiB)
 * then a 16-bit length L, L bytes from the client, and the rest is what
 * the origin answers to every connection it gets.
 *
 * No packet leaves the process: connect() is replaced here, so every TCP
 * dial the proxy makes lands on the harness's origin on 127.0.0.1 (or is
 * refused), and evdns_getaddrinfo() answers 127.0.0.1 for every name
 * without a query. ASan/UBSan and the leak checker do the judging.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core/log.h"
#include "core/service.h"
#include "core/worker.h"
#include "proxy/proxy.h"
#include "fuzz_feed.h"

#define MAX_ORIGIN 32

static struct event_base *base;
static struct evconnlistener *origin;
static struct sockaddr_in origin_addr;
static bool refuse_dials;

/* this input's origin behaviour */
static const uint8_t *answer;
static size_t answer_len;
static bool origin_closes;
static int origin_fds[MAX_ORIGIN];
static size_t norigin;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- no packet leaves: dials go to the origin, names resolve locally ---- */

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);

    if (real_connect == NULL) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT,
                                                                              "connect");
    }
    if (sa != NULL && sa->sa_family == AF_UNIX) {
        return real_connect(fd, sa, len);
    }
    if (sa == NULL || sa->sa_family != AF_INET || refuse_dials) {
        errno = sa != NULL && sa->sa_family == AF_INET6 ? ENETUNREACH : ECONNREFUSED;
        return -1;
    }
    return real_connect(fd, (const struct sockaddr *)&origin_addr, sizeof(origin_addr));
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
               socklen_t len)
{
    (void)fd;
    (void)buf;
    (void)flags;
    (void)sa;
    (void)len;
    return (ssize_t)n; /* UDP relay datagrams: "sent" */
}

struct evdns_getaddrinfo_request *evdns_getaddrinfo(struct evdns_base *dns, const char *name,
                                                    const char *service,
                                                    const struct evutil_addrinfo *hints,
                                                    evdns_getaddrinfo_cb cb, void *arg)
{
    struct addrinfo h = {.ai_family = AF_INET,
                         .ai_socktype = SOCK_STREAM,
                         .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai = NULL;

    (void)dns;
    (void)service;
    (void)hints;
    if (name == NULL || name[0] == '\0' || name[0] == 'x' ||
        getaddrinfo("127.0.0.1", NULL, &h, &ai) != 0) {
        cb(EVUTIL_EAI_FAIL, NULL, arg); /* names starting with x do not exist */
        return NULL;
    }
    cb(0, (struct evutil_addrinfo *)ai, arg);
    return NULL;
}

/* ---- the origin ---- */

static void on_origin(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    if (norigin >= MAX_ORIGIN) {
        close(fd);
        return;
    }
    origin_fds[norigin++] = fd;
    if (answer_len > 0 && write(fd, answer, answer_len) < 0) {
        /* a full socket buffer: the rest is not needed */
    }
    if (origin_closes) {
        shutdown(fd, SHUT_WR);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    socklen_t len = sizeof(origin_addr);

    (void)argc;
    (void)argv;
    base = fuzz_start();
    origin_addr.sin_family = AF_INET;
    origin_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    origin = evconnlistener_new_bind(base, on_origin, NULL,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
                                     (struct sockaddr *)&origin_addr, sizeof(origin_addr));
    if (origin == NULL ||
        getsockname(evconnlistener_get_fd(origin), (struct sockaddr *)&origin_addr, &len) != 0) {
        abort();
    }
    return 0;
}

static void spin(int fd, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        fuzz_drain(fd);
        for (size_t k = 0; k < norigin; k++) {
            fuzz_drain(origin_fds[k]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wm_proxy_opts opts;
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    int sv[2];

    if (size < 3) {
        return 0;
    }
    uint8_t ctl = data[0];
    size_t clen = (size_t)data[1] << 8 | data[2];
    const uint8_t *cdata = data + 3;
    if (clen > size - 3) {
        clen = size - 3;
    }
    answer = cdata + clen;
    answer_len = size - 3 - clen;
    origin_closes = (ctl & 4) != 0;
    refuse_dials = (ctl & 8) != 0;
    norigin = 0;
    size_t piece = (size_t)(((ctl >> 4) & 7) + 1) * 1024;

    wm_proxy_opts_default(&opts);
    if (ctl & 1) {
        opts.auth = true;
        strcpy(opts.user, "u");
        strcpy(opts.pass, "p");
    }
    opts.connect_timeout_ms = 50;
    opts.idle_timeout_ms = 50;
    opts.handshake_timeout_ms = 50;
    struct wm_service *svc = wm_proxy_service_new(&opts);
    if (svc == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        wm_service_unref(svc);
        return 0;
    }
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    svc->accept(svc, wm_worker_get(0), sv[0], (struct sockaddr *)&peer, sizeof(peer), NULL);
    spin(sv[1], 2);
    fuzz_feed(sv[1], cdata, clen, piece, spin, NULL);
    if (ctl & 2) {
        shutdown(sv[1], SHUT_WR);
    }
    spin(sv[1], 8);
    /* the client and the origin go away; the proxy must follow */
    close(sv[1]);
    for (size_t k = 0; k < norigin; k++) {
        close(origin_fds[k]);
    }
    norigin = 0;
    spin(-1, 6);
    for (size_t k = 0; k < norigin; k++) { /* accepted during the last spin */
        close(origin_fds[k]);
    }
    norigin = 0;
    wm_service_unref(svc);
    return 0;
}
