/* rate_http: open-loop HTTP/1.1 load at a fixed request rate, for latency.
 *
 * Request i is scheduled at t0 + i / rate. N keep-alive connections are
 * opened first; whenever a connection is idle and a scheduled request is due
 * it sends the oldest due one (one request in flight per connection, no
 * pipelining). Latency is measured from the *scheduled* time to the last
 * byte of the response, so time spent waiting for a free connection (a slow
 * server) counts: this avoids coordinated omission.
 *
 * Requests scheduled during the first -w seconds are sent but not recorded.
 * After the schedule ends (-w + -d seconds), requests still queued or in
 * flight get up to -T seconds to finish; what is left then counts as
 * timeouts. Responses must be 200 with a Content-Length body of at least -b
 * bytes (chunked bodies are read too).
 *
 *   rate_http -p PORT -r RATE [-c CONNS] [-d SECS] [-w SECS] [-H HOST]
 *             [-P PATH] [-b MINBODY] [-T SECS]
 *
 * Prints one line:
 *   RATEHTTP rate=.. sent=.. ok=.. errors=.. timeouts=.. reconnects=..
 *            achieved=.. p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..
 *            late_max_us=..
 * (late_max_us: the largest delay between a request's scheduled time and
 * its send; non-zero means requests queued for a free connection.)
 *
 * Latencies go into a log-linear histogram: exact below 2048 us, above
 * that 1024 sub-buckets per power of two (relative error < 0.1 %).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define RBUF (64 * 1024)

/* ---- histogram ---------------------------------------------------------- */
#define SUB_BITS 10
#define SUB (1 << SUB_BITS)                 /* 1024 sub-buckets per octave */
#define OCTAVES 40
static uint64_t hist[(OCTAVES + 1) * SUB];
static uint64_t hist_n, hist_max;

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    int msb = 63 - __builtin_clzll(v);            /* >= SUB_BITS + 1 */
    int shift = msb - SUB_BITS;
    unsigned idx = (unsigned)(shift + 1) * SUB + (unsigned)((v >> shift) - SUB);
    unsigned lim = (OCTAVES + 1) * SUB - 1;
    return idx > lim ? lim : idx;
}

static uint64_t bucket_value(unsigned idx)         /* upper bound of a bucket */
{
    if (idx < 2 * SUB)
        return idx;
    unsigned shift = idx / SUB - 1;
    uint64_t base = (uint64_t)(idx % SUB + SUB) << shift;
    return base + ((uint64_t)1 << shift) - 1;
}

static void hist_add(uint64_t us)
{
    hist[bucket_of(us)]++;
    hist_n++;
    if (us > hist_max)
        hist_max = us;
}

static uint64_t hist_pct(double p)
{
    if (!hist_n)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)hist_n + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < sizeof(hist) / sizeof(hist[0]); i++) {
        seen += hist[i];
        if (seen >= want) {
            uint64_t v = bucket_value(i);
            return v > hist_max ? hist_max : v;
        }
    }
    return hist_max;
}

/* ---- time ---------------------------------------------------------------- */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- connections --------------------------------------------------------- */
enum { C_CONNECTING, C_IDLE, C_BUSY, C_DEAD };

struct conn {
    int fd;
    int state;
    uint64_t sched;         /* scheduled time of the request in flight */
    int record;             /* count it (not warm-up) */
    size_t wlen, woff;      /* request bytes left to write */
    char rbuf[RBUF];
    size_t rlen;
    /* response parser */
    int have_head;
    int status;
    long long body_left;    /* -1: chunked */
    long long body_seen;
    int chunk_state;        /* chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers */
    long long chunk_left;
};

static struct conn conns[MAX_CONNS];
static int nconns = 16;
static int epfd;
static struct sockaddr_in target;
static char req[1024];
static size_t req_len;
static long min_body;

static uint64_t c_ok, c_err, c_timeout, c_reconnect, c_sent, c_late_max;
static uint64_t c_err_status, c_err_short, c_err_proto, c_err_closed;

static void die(const char *m)
{
    perror(m);
    exit(2);
}

static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
        errno != EINPROGRESS)
        die("connect");
    c->state = C_CONNECTING;
    c->rlen = 0;
    c->have_head = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void conn_reset(struct conn *c, int count_error)
{
    if (c->state == C_BUSY && count_error && c->record) {
        c_err++;
        c_err_closed++;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c_reconnect++;
    conn_open(c);
}

static void want_out(struct conn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, req + c->woff, c->wlen - c->woff);
        if (n < 0) {
            if (errno == EAGAIN) {
                want_out(c, 1);
                return;
            }
            conn_reset(c, 1);
            return;
        }
        c->woff += (size_t)n;
    }
}

static void conn_send(struct conn *c, uint64_t sched, int record)
{
    c->state = C_BUSY;
    c->sched = sched;
    c->record = record;
    c->woff = 0;
    c->wlen = req_len;
    c->have_head = 0;
    c->body_seen = 0;
    c_sent++;
    conn_flush(c);
}

/* Parse what is in rbuf. Returns 1 when a full response was consumed, 0 if
 * more bytes are needed, -1 on a protocol error. */
static int parse(struct conn *c)
{
    if (!c->have_head) {
        char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!end) {
            if (c->rlen >= RBUF)
                return -1;
            return 0;
        }
        size_t hlen = (size_t)(end - c->rbuf) + 4;
        if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.", 7) != 0)
            return -1;
        c->status = atoi(c->rbuf + 9);
        c->body_left = -2;
        /* headers: Content-Length / Transfer-Encoding */
        char *p = memchr(c->rbuf, '\n', hlen);
        while (p && p < c->rbuf + hlen - 2) {
            p++;
            char *eol = memchr(p, '\n', (size_t)(c->rbuf + hlen - p));
            if (!eol)
                break;
            if (!strncasecmp(p, "content-length:", 15))
                c->body_left = atoll(p + 15);
            else if (!strncasecmp(p, "transfer-encoding:", 18) &&
                     memmem(p, (size_t)(eol - p), "chunked", 7))
                c->body_left = -1;
            p = eol;
        }
        if (c->body_left == -2)
            return -1;          /* need a framed body on a keep-alive connection */
        c->have_head = 1;
        c->chunk_state = 0;
        memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
        c->rlen -= hlen;
    }
    if (c->body_left >= 0) {
        size_t take = c->rlen < (size_t)c->body_left ? c->rlen : (size_t)c->body_left;
        c->body_left -= (long long)take;
        c->body_seen += (long long)take;
        memmove(c->rbuf, c->rbuf + take, c->rlen - take);
        c->rlen -= take;
        return c->body_left == 0 ? 1 : 0;
    }
    /* chunked */
    for (;;) {
        if (c->chunk_state == 0 || c->chunk_state == 2 || c->chunk_state == 3) {
            char *eol = memmem(c->rbuf, c->rlen, "\r\n", 2);
            if (!eol)
                return c->rlen >= RBUF ? -1 : 0;
            size_t ll = (size_t)(eol - c->rbuf) + 2;
            int done = 0;
            if (c->chunk_state == 0) {
                c->chunk_left = strtoll(c->rbuf, NULL, 16);
                c->chunk_state = c->chunk_left ? 1 : 3;
            } else if (c->chunk_state == 2) {
                c->chunk_state = 0;
            } else if (ll == 2) {
                done = 1;       /* empty line after the last chunk */
            }
            memmove(c->rbuf, c->rbuf + ll, c->rlen - ll);
            c->rlen -= ll;
            if (done)
                return 1;
        } else {
            if (!c->rlen)
                return 0;
            size_t take = c->rlen < (size_t)c->chunk_left ? c->rlen : (size_t)c->chunk_left;
            c->chunk_left -= (long long)take;
            c->body_seen += (long long)take;
            memmove(c->rbuf, c->rbuf + take, c->rlen - take);
            c->rlen -= take;
            if (!c->chunk_left)
                c->chunk_state = 2;
        }
    }
}

static void conn_readable(struct conn *c, uint64_t *now)
{
    for (;;) {
        if (c->rlen >= RBUF) {
            conn_reset(c, 1);
            return;
        }
        ssize_t n = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            conn_reset(c, 1);
            return;
        }
        if (n < 0)
            return;
        c->rlen += (size_t)n;
        if (c->state != C_BUSY) {      /* unsolicited bytes */
            conn_reset(c, 0);
            return;
        }
        int r = parse(c);
        if (r < 0) {
            if (c->record) {
                c_err++;
                c_err_proto++;
            }
            c->state = C_IDLE;
            conn_reset(c, 0);
            return;
        }
        if (r == 1) {
            *now = now_ns();
            if (c->record) {
                if (c->status != 200) {
                    c_err++;
                    c_err_status++;
                } else if (c->body_seen < min_body) {
                    c_err++;
                    c_err_short++;
                } else {
                    c_ok++;
                    hist_add((*now - c->sched) / 1000);
                }
            }
            c->state = C_IDLE;
            if (c->rlen) {                 /* extra bytes: not HTTP/1.1 keep-alive */
                conn_reset(c, 0);
            }
            return;
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: rate_http -p PORT -r RATE [-c CONNS] [-d SECS] [-w SECS] "
                    "[-H HOST] [-P PATH] [-b MINBODY] [-T SECS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0, opt;
    double rate = 0, dur = 10, warm = 1, drain = 5;
    const char *host = NULL, *path = "/1k";
    while ((opt = getopt(argc, argv, "p:r:c:d:w:H:P:b:T:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'H': host = optarg; break;
        case 'P': path = optarg; break;
        case 'b': min_body = atol(optarg); break;
        case 'T': drain = atof(optarg); break;
        default: usage();
        }
    }
    if (!port || rate <= 0 || nconns < 1 || nconns > MAX_CONNS || dur <= 0)
        usage();
    char hostbuf[64];
    if (!host) {
        snprintf(hostbuf, sizeof(hostbuf), "127.0.0.1:%d", port);
        host = hostbuf;
    }
    req_len = (size_t)snprintf(req, sizeof(req),
                               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rate_http\r\n\r\n",
                               path, host);
    if (req_len >= sizeof(req))
        usage();
    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        die("timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    /* open all connections and wait (up to 5 s) until they are connected */
    for (int i = 0; i < nconns; i++)
        conn_open(&conns[i]);
    struct epoll_event evs[256];
    uint64_t deadline = now_ns() + 5000000000ull;
    int connected = 0;
    while (connected < nconns) {
        if (now_ns() > deadline) {
            fprintf(stderr, "rate_http: only %d of %d connections after 5 s\n",
                    connected, nconns);
            return 1;
        }
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c || c->state != C_CONNECTING)
                continue;
            int err = 0;
            socklen_t el = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
                fprintf(stderr, "rate_http: connect: %s\n", strerror(err ? err : ECONNRESET));
                return 1;
            }
            c->state = C_IDLE;
            want_out(c, 0);
            connected++;
        }
    }

    const uint64_t interval = (uint64_t)(1e9 / rate);
    const uint64_t t0 = now_ns() + 1000000;         /* first request in 1 ms */
    const uint64_t warm_ns = (uint64_t)(warm * 1e9);
    const uint64_t end_sched = t0 + warm_ns + (uint64_t)(dur * 1e9);
    const uint64_t total = (end_sched - t0) / interval;   /* requests scheduled */
    const uint64_t first_rec = (warm_ns + interval - 1) / interval;
    const uint64_t hard_end = end_sched + (uint64_t)(drain * 1e9);
    uint64_t next = 0;          /* index of the next request to send */
    uint64_t now = now_ns();

    for (;;) {
        /* hand due requests to idle connections, oldest first */
        now = now_ns();
        for (int i = 0; i < nconns && next < total; i++) {
            uint64_t due = t0 + next * interval;
            if (due > now)
                break;
            struct conn *c = &conns[i];
            if (c->state != C_IDLE)
                continue;
            if (next >= first_rec && now - due > c_late_max * 1000)
                c_late_max = (now - due) / 1000;
            conn_send(c, due, next >= first_rec);
            next++;
        }
        int busy = 0;
        for (int i = 0; i < nconns; i++)
            busy += conns[i].state == C_BUSY;
        if (next >= total && !busy)
            break;
        if (now >= hard_end)
            break;
        /* sleep until the next scheduled request (if a connection is free)
         * or the end; timerfd gives sub-millisecond wakeups */
        uint64_t wake = hard_end;
        int idle = 0;
        for (int i = 0; i < nconns; i++)
            idle += conns[i].state == C_IDLE;
        if (next < total && idle) {
            uint64_t due = t0 + next * interval;
            if (due < wake)
                wake = due;
        }
        if (wake > now) {
            struct itimerspec its = {0};
            its.it_value.tv_sec = (time_t)(wake / 1000000000ull);
            its.it_value.tv_nsec = (long)(wake % 1000000000ull);
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                uint64_t exp;
                if (read(tfd, &exp, sizeof(exp)) < 0) { /* spurious */ }
                continue;
            }
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    conn_open(c);
                    continue;
                }
                c->state = C_IDLE;
                want_out(c, 0);
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && c->state == C_BUSY && c->woff < c->wlen) {
                conn_flush(c);
                if (c->state == C_BUSY && c->woff >= c->wlen)
                    want_out(c, 0);
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
                conn_readable(c, &now);
        }
    }
    /* whatever is still queued or in flight has exceeded the drain time */
    uint64_t recorded = total > first_rec ? total - first_rec : 0;
    uint64_t sent_rec = next > first_rec ? next - first_rec : 0;
    uint64_t unsent = recorded - sent_rec;
    uint64_t inflight = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == C_BUSY && conns[i].record)
            inflight++;
    c_timeout = unsent + inflight;
    printf("RATEHTTP rate=%.0f conns=%d scheduled=%llu sent=%llu ok=%llu errors=%llu "
           "timeouts=%llu reconnects=%llu achieved=%.1f p50_us=%llu p90_us=%llu "
           "p99_us=%llu p999_us=%llu max_us=%llu late_max_us=%llu "
           "err_status=%llu err_short=%llu err_proto=%llu err_closed=%llu\n",
           rate, nconns, (unsigned long long)recorded, (unsigned long long)c_sent,
           (unsigned long long)c_ok, (unsigned long long)c_err,
           (unsigned long long)c_timeout, (unsigned long long)c_reconnect,
           (double)c_ok / dur, (unsigned long long)hist_pct(50),
           (unsigned long long)hist_pct(90), (unsigned long long)hist_pct(99),
           (unsigned long long)hist_pct(99.9), (unsigned long long)hist_max,
           (unsigned long long)c_late_max, (unsigned long long)c_err_status,
           (unsigned long long)c_err_short, (unsigned long long)c_err_proto,
           (unsigned long long)c_err_closed);
    return 0;
}
