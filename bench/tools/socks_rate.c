/*
 * socks_rate: SOCKS5 short-connection rate load client (single thread, epoll).
 *
 * Each of N concurrent slots loops over one cycle:
 *   connect to the proxy, send greeting 05 01 00 + CONNECT 127.0.0.1:TARGET
 *   in one write, read the method reply and the CONNECT reply, send a small
 *   HTTP/1.0 request, read the reply until EOF (the target closes), check it
 *   is a 200 ending with the expected body, close.
 * With -S the greeting and the CONNECT request are sent in two writes (wait
 * for the method reply in between), for servers that drop pipelined bytes.
 * With -D the slot connects to the target directly (no SOCKS): that is the
 * ceiling of client + target on this machine.
 *
 * usage: socks_rate -p PROXY_PORT -t TARGET_PORT [-c CONC] [-d SECS] [-w WARMUP]
 *                   [-S] [-D] [-u PATH] [-e EXPECTED_BODY_TAIL]
 * prints: cycles=N errors=N secs=S rate=R connect=N proto=N resp=N timeout=N
 *         busy_connect=N busy_socks=N busy_resp=N all_cycles=N
 *         (busy_*: slots mid-cycle at the end; all_cycles: every cycle completed,
 *         warm-up included, to divide a server's CPU time over the whole run)
 * (rate counts only cycles completed after the warm-up, within SECS).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_RESP };
enum { E_CONNECT, E_PROTO, E_RESP, E_TIMEOUT, E_MAX };

#define BUFSZ 4096
#define CYCLE_TIMEOUT_MS 5000
#define RETRY_MS 10

struct slot {
    int fd;
    int state;
    int sent_connect;   /* -S: CONNECT request written */
    uint32_t gen;
    int64_t deadline;   /* ms: cycle timeout, or retry time when idle */
    size_t len;         /* bytes in buf */
    size_t total;       /* response bytes seen */
    char head[16];      /* first bytes of the response */
    char buf[BUFSZ];
};

static struct sockaddr_in g_proxy, g_target;
static int g_direct, g_stepwise, g_ep;
static char g_req[512];
static size_t g_reqlen;
static unsigned char g_hello[13];
static const char *g_expect = "0123456789abcdef";
static int g_counting;
static unsigned long long g_cycles, g_all, g_err[E_MAX]; /* g_all: warm-up included */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void slot_close(struct slot *s, int abort_conn)
{
    if (s->fd >= 0) {
        if (abort_conn) {   /* RST: no TIME_WAIT pile-up on errors */
            struct linger l = { 1, 0 };
            setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(s->fd);
        s->fd = -1;
    }
}

static void slot_fail(struct slot *s, int kind)
{
    if (g_counting)
        g_err[kind]++;
    slot_close(s, 1);
    s->state = S_IDLE;
    s->deadline = now_ms() + RETRY_MS;
}

static void slot_watch(struct slot *s, int idx, uint32_t events, int op)
{
    struct epoll_event ev = { .events = events };
    ev.data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)idx;
    if (epoll_ctl(g_ep, op, s->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(2);
    }
}

static void slot_send_first(struct slot *s, int idx)
{
    const void *p = g_direct ? (const void *)g_req : (const void *)g_hello;
    size_t n = g_direct ? g_reqlen : g_stepwise ? 3 : sizeof g_hello;
    s->sent_connect = !g_stepwise;
    if (write(s->fd, p, n) != (ssize_t)n) {
        slot_fail(s, E_CONNECT);
        return;
    }
    s->state = g_direct ? S_RESP : S_HANDSHAKE;
    s->len = s->total = 0;
    slot_watch(s, idx, EPOLLIN, EPOLL_CTL_MOD);
}

static void slot_start(struct slot *s, int idx)
{
    s->gen++;
    s->len = s->total = 0;
    s->deadline = now_ms() + CYCLE_TIMEOUT_MS;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        slot_fail(s, E_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct sockaddr_in *dst = g_direct ? &g_target : &g_proxy;
    int r = connect(s->fd, (const struct sockaddr *)dst, sizeof *dst);
    if (r < 0 && errno != EINPROGRESS) {
        slot_fail(s, E_CONNECT);
        return;
    }
    s->state = S_CONNECTING;
    slot_watch(s, idx, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Total length of method reply + CONNECT reply, 0 if not known yet,
 * -1 if malformed / refused. */
static long handshake_len(const unsigned char *b, size_t n)
{
    if (n < 2)
        return 0;
    if (b[0] != 5 || b[1] != 0)
        return -1;
    if (n < 2 + 5)
        return 0;
    if (b[2] != 5 || b[3] != 0)
        return -1;
    switch (b[5]) {
    case 1: return 2 + 4 + 4 + 2;
    case 4: return 2 + 4 + 16 + 2;
    case 3: return 2 + 4 + 1 + b[6] + 2;
    default: return -1;
    }
}

static void resp_bytes(struct slot *s, const char *p, size_t n)
{
    size_t keep = s->total < sizeof s->head ? sizeof s->head - s->total : 0;
    if (keep > n)
        keep = n;
    memcpy(s->head + s->total, p, keep);
    s->total += n;
    /* keep the tail of the response in buf for the body check */
    if (n >= BUFSZ) {
        memcpy(s->buf, p + n - BUFSZ, BUFSZ);
        s->len = BUFSZ;
    } else {
        if (s->len + n > BUFSZ) {
            size_t drop = s->len + n - BUFSZ;
            memmove(s->buf, s->buf + drop, s->len - drop);
            s->len -= drop;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += n;
    }
}

static int resp_ok(const struct slot *s)
{
    size_t el = strlen(g_expect);
    if (s->total < 12 || memcmp(s->head, "HTTP/1.", 7) != 0 ||
        memcmp(s->head + 9, "200", 3) != 0)
        return 0;
    return s->len >= el && memcmp(s->buf + s->len - el, g_expect, el) == 0;
}

static void slot_event(struct slot *s, int idx, uint32_t ev)
{
    char tmp[BUFSZ];
    if (s->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            slot_fail(s, E_CONNECT);
            return;
        }
        slot_send_first(s, idx);
        return;
    }
    for (;;) {
        ssize_t n = read(s->fd, tmp, sizeof tmp);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            slot_fail(s, s->state == S_HANDSHAKE ? E_PROTO : E_RESP);
            return;
        }
        if (n == 0) {                       /* EOF */
            if (s->state == S_HANDSHAKE || !resp_ok(s)) {
                slot_fail(s, s->state == S_HANDSHAKE ? E_PROTO : E_RESP);
                return;
            }
            if (g_counting)
                g_cycles++;
            g_all++;
            slot_close(s, 0);
            slot_start(s, idx);
            return;
        }
        if (s->state == S_HANDSHAKE) {
            if (s->len + n > BUFSZ) {
                slot_fail(s, E_PROTO);
                return;
            }
            memcpy(s->buf + s->len, tmp, n);
            s->len += n;
            if (!s->sent_connect && s->len >= 2) {
                /* -S: method reply seen, now send the CONNECT request */
                if (s->buf[0] != 5 || s->buf[1] != 0 ||
                    write(s->fd, g_hello + 3, sizeof g_hello - 3) !=
                        (ssize_t)(sizeof g_hello - 3)) {
                    slot_fail(s, E_PROTO);
                    return;
                }
                s->sent_connect = 1;
            }
            long need = handshake_len((unsigned char *)s->buf, s->len);
            if (need < 0) {
                slot_fail(s, E_PROTO);
                return;
            }
            if (need == 0 || s->len < (size_t)need)
                continue;
            size_t extra = s->len - need;
            char rest[BUFSZ];
            memcpy(rest, s->buf + need, extra);
            s->len = s->total = 0;
            s->state = S_RESP;
            if (write(s->fd, g_req, g_reqlen) != (ssize_t)g_reqlen) {
                slot_fail(s, E_PROTO);
                return;
            }
            if (extra)
                resp_bytes(s, rest, extra);
        } else {
            resp_bytes(s, tmp, n);
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: socks_rate -p PROXY_PORT -t TARGET_PORT [-c CONC] "
                    "[-d SECS] [-w WARMUP] [-S] [-D] [-u PATH] [-e BODY_TAIL]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int pport = 0, tport = 0, conc = 128, opt;
    double secs = 10, warm = 1;
    const char *path = "/tiny";
    while ((opt = getopt(argc, argv, "p:t:c:d:w:SDu:e:")) != -1) {
        switch (opt) {
        case 'p': pport = atoi(optarg); break;
        case 't': tport = atoi(optarg); break;
        case 'c': conc = atoi(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'D': g_direct = 1; break;
        case 'S': g_stepwise = 1; break;
        case 'u': path = optarg; break;
        case 'e': g_expect = optarg; break;
        default: usage();
        }
    }
    if (tport <= 0 || (!g_direct && pport <= 0) || conc <= 0 || secs <= 0)
        usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conc + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    g_proxy.sin_family = g_target.sin_family = AF_INET;
    g_proxy.sin_addr.s_addr = g_target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_proxy.sin_port = htons(pport);
    g_target.sin_port = htons(tport);
    g_reqlen = snprintf(g_req, sizeof g_req,
                        "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, tport);
    unsigned char hello[13] = { 5, 1, 0,  5, 1, 0, 1,  127, 0, 0, 1,
                                (unsigned char)(tport >> 8), (unsigned char)tport };
    memcpy(g_hello, hello, sizeof hello);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot *slots = calloc(conc, sizeof *slots);
    if (g_ep < 0 || !slots) {
        perror("init");
        return 2;
    }
    for (int i = 0; i < conc; i++) {
        slots[i].fd = -1;
        slot_start(&slots[i], i);
    }

    int64_t t0 = now_ms(), tcount = t0 + (int64_t)(warm * 1000);
    int64_t tend = tcount + (int64_t)(secs * 1000), last_scan = t0;
    struct epoll_event evs[256];
    for (;;) {
        int64_t now = now_ms();
        if (!g_counting && now >= tcount)
            g_counting = 1;
        if (now >= tend)
            break;
        int n = epoll_wait(g_ep, evs, 256, 20);
        for (int i = 0; i < n; i++) {
            uint32_t idx = (uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            struct slot *s = &slots[idx];
            if (s->gen != gen || s->fd < 0)
                continue;                   /* stale event of a closed fd */
            slot_event(s, idx, evs[i].events);
        }
        now = now_ms();
        if (now - last_scan >= 5) {
            last_scan = now;
            for (int i = 0; i < conc; i++) {
                struct slot *s = &slots[i];
                if (s->state == S_IDLE && now >= s->deadline)
                    slot_start(s, i);
                else if (s->state != S_IDLE && now >= s->deadline)
                    slot_fail(s, E_TIMEOUT);
            }
        }
    }
    double dur = (now_ms() - tcount) / 1000.0;
    unsigned long long errs = 0;
    for (int k = 0; k < E_MAX; k++)
        errs += g_err[k];
    printf("cycles=%llu errors=%llu secs=%.3f rate=%.1f connect=%llu proto=%llu "
           "resp=%llu timeout=%llu\n", g_cycles, errs, dur, g_cycles / dur,
           g_err[E_CONNECT], g_err[E_PROTO], g_err[E_RESP], g_err[E_TIMEOUT]);
    int busy[4] = { 0 };
    for (int i = 0; i < conc; i++) {
        busy[slots[i].state]++;
        slot_close(&slots[i], 1);
    }
    printf("busy_connect=%d busy_socks=%d busy_resp=%d all_cycles=%llu\n", busy[S_CONNECTING],
           busy[S_HANDSHAKE], busy[S_RESP], g_all);
    return 0;
}
