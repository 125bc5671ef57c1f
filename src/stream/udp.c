/*
 * stream/udp.c - UDP servers: a session per client address, each with its
 * own connected socket to the upstream, so replies find their client.
 *
 * Affinity: every worker has a socket on the address (SO_REUSEPORT); the
 * kernel picks one by a hash of the datagram's addresses and ports, which
 * stays the same for a client as long as the group of sockets does: a
 * reload keeps the sockets (net/lset.h), so a client's datagrams keep
 * reaching the worker that holds its session. The table (per worker and
 * socket) is bounded by max_sessions; when full, the least recently
 * active session is evicted (logged). A session ends after client_timeout
 * without a datagram either way.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/addr.h"
#include "reverse/upstream.h"
#include "stream/stream.h"
#include "stream/stream_int.h"

#define UDP_BATCH 64          /* datagrams read per wake-up, per socket */
#define UDP_BUCKETS_MIN 64
#define UDP_SOCKBUF (4 << 20) /* a burst rides out a scheduling delay instead of dropping */

struct session {
    struct session *hnext;      /* hash chain */
    struct session *prev;       /* LRU: head is the oldest */
    struct session *next;
    struct udp_state *u;
    struct wm_service *svc;     /* reference: the settings it started under */
    uint64_t id;
    struct sockaddr_storage client;
    socklen_t clen;
    char client_str[WM_ADDR_STR_MAX];
    char target[WM_ADDR_STR_MAX];
    int fd;                     /* connected to the upstream */
    int idx;                    /* upstream server index */
    struct event *ev;
    struct event *timer;
    uint64_t start_ms;
    uint64_t last_ms;
    int idle_ms;
    uint64_t in;                /* bytes from the client */
    uint64_t out;
};

struct udp_state {
    int fd;                     /* the listening socket */
    struct wm_worker *w;
    struct wm_listen_stats *stats;
    struct session **buckets;
    size_t nbuckets;
    size_t n;
    struct session *oldest;
    struct session *newest;
    uint64_t evicted;        /* sessions evicted for room, in all */
    uint64_t evict_log_ms;   /* the last "table full" line: one per second at most */
    uint64_t unserved;       /* datagrams dropped for want of an upstream server, in all */
    uint64_t unserved_log_ms; /* the last line saying so: one per second at most */
    uint64_t refused;        /* ICMP errors from upstream servers, in all */
    uint64_t refused_log_ms; /* the last line saying so: one per second at most */
    uint64_t too_large;      /* datagrams too large for the upstream's family, in all */
    uint64_t too_large_log_ms;
};

static __thread uint8_t dgram[65536]; /* IPv6 payloads reach 65527 */

static size_t hash_addr(const struct sockaddr_storage *ss, socklen_t len, size_t nb)
{
    return (size_t)(wm_addr_hash(ss, len) % nb);
}

static void lru_unlink(struct udp_state *u, struct session *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        u->oldest = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    } else {
        u->newest = s->prev;
    }
    s->prev = s->next = NULL;
}

static void lru_push(struct udp_state *u, struct session *s)
{
    s->prev = u->newest;
    s->next = NULL;
    if (u->newest != NULL) {
        u->newest->next = s;
    } else {
        u->oldest = s;
    }
    u->newest = s;
}

static void session_end(struct session *s, const char *reason)
{
    struct udp_state *u = s->u;
    struct session **pp = &u->buckets[hash_addr(&s->client, s->clen, u->nbuckets)];
    const struct st_service *ss = (const struct st_service *)s->svc;

    while (*pp != s) {
        pp = &(*pp)->hnext;
    }
    *pp = s->hnext;
    lru_unlink(u, s);
    u->n--;
    wm_log(WM_LOG_INFO, s->id,
           "access proto=udp client=%s user=- target=%s code=0 in=%llu out=%llu ms=%llu end=%s",
           s->client_str, s->target, (unsigned long long)s->in, (unsigned long long)s->out,
           (unsigned long long)(wm_now_ms() - s->start_ms), reason);
    st_alog(ss->srv, "udp", s->client_str, s->target, 0, s->in, s->out,
            wm_now_ms() - s->start_ms, reason);
    wm_listen_stats_conn_close(u->stats, s->in, s->out);
    wm_upstream_active(ss->srv->up, s->idx, -1);
    event_free(s->ev);
    event_free(s->timer);
    close(s->fd);
    wm_service_unref(s->svc);
    free(s);
}

static void touch(struct session *s)
{
    s->last_ms = wm_now_coarse_ms();
    if (s->u->newest != s) {
        lru_unlink(s->u, s);
        lru_push(s->u, s);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    uint64_t idle = wm_now_coarse_ms() - s->last_ms;

    (void)fd;
    (void)what;
    if (idle >= (uint64_t)s->idle_ms) {
        session_end(s, "idle");
        return;
    }
    uint64_t left = (uint64_t)s->idle_ms - idle;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    evtimer_add(s->timer, &tv);
}

/* An ICMP error that says the upstream is not there (not, say, a smaller
 * path MTU). */
static bool is_unreachable(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* The upstream answered with an ICMP error (port or host unreachable),
 * which the connected socket reports on its next call: a failure of that
 * server, as a refused TCP connect (passive health). With other servers to
 * try, the session ends, so the client's next datagram starts one on a
 * server that is up; with one, it stays (nothing else to try). Returns
 * true when s is gone. */
static bool upstream_refused(struct session *s, int err)
{
    struct udp_state *u = s->u;
    const struct st_service *ss = (const struct st_service *)s->svc;
    uint64_t now = wm_now_coarse_ms();

    wm_upstream_failed(ss->srv->up, s->idx, strerror(err));
    if (u->refused++ == 0 || now - u->refused_log_ms >= 1000) {
        /* a client that keeps sending would be a line per datagram */
        wm_log(WM_LOG_WARN, s->id,
               "udp client=%s target=%s: %s (%llu in all, one line per second at most)",
               s->client_str, s->target, strerror(err), (unsigned long long)u->refused);
        u->refused_log_ms = now;
    }
    if (wm_upstream_count(ss->srv->up) > 1) {
        session_end(s, "upstream-unreachable");
        return true;
    }
    return false;
}

/* A datagram larger than the upstream's family can carry (over 65,507
 * bytes from an IPv6 client to an IPv4 server) is lost: said once per
 * second per worker at most, with a count. */
static void too_large(struct session *s, size_t n)
{
    struct udp_state *u = s->u;
    uint64_t now = wm_now_coarse_ms();

    if (u->too_large++ == 0 || now - u->too_large_log_ms >= 1000) {
        wm_log(WM_LOG_WARN, s->id,
               "udp client=%s target=%s: a datagram of %zu bytes is too large for the target's "
               "address family: dropped (%llu in all, one line per second at most)",
               s->client_str, s->target, n, (unsigned long long)u->too_large);
        u->too_large_log_ms = now;
    }
}

/* Replies from the upstream go back to the client from the listening socket. */
static void upstream_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    (void)what;
    for (int i = 0; i < UDP_BATCH; i++) {
        ssize_t n = recv(fd, dgram, sizeof(dgram), MSG_DONTWAIT);
        if (n < 0) {
            if (is_unreachable(errno)) {
                upstream_refused(s, errno);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                wm_log(WM_LOG_DEBUG, s->id, "udp target=%s: %s", s->target, strerror(errno));
            }
            return;
        }
        if (s->out == 0) {
            /* an answer: the failures of this server are no longer in a row */
            wm_upstream_ok(((const struct st_service *)s->svc)->srv->up, s->idx);
        }
        if (sendto(s->u->fd, dgram, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&s->client,
                   s->clen) == n) {
            s->out += (uint64_t)n;
        }
        touch(s);
    }
}

static struct session *session_find(struct udp_state *u, const struct sockaddr_storage *ss,
                                    socklen_t len)
{
    struct session *s = u->buckets[hash_addr(ss, len, u->nbuckets)];

    while (s != NULL && (s->clen != len || memcmp(&s->client, ss, len) != 0)) {
        s = s->hnext;
    }
    return s;
}

/* A socket connected to an upstream server for a new session, or -1 with
 * *why: no server usable, or our own socket() failed (out of descriptors:
 * not the server's fault, so it is not marked failed). */
static int upstream_socket(const struct st_server *srv, const struct sockaddr *client, int *idx,
                           const char **why)
{
    uint64_t tried = 0;
    const char *host;
    uint16_t port;

    for (;;) {
        int i = wm_upstream_pick(srv->up, client, tried, &host, &port);
        if (i < 0 || i >= ST_UDP_ADDRS) {
            *why = NULL;
            return -1;
        }
        const struct sockaddr *to = (const struct sockaddr *)&srv->udp_to[i];
        int fd = socket(to->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int sz = UDP_SOCKBUF;
        if (fd < 0) {
            *why = strerror(errno);
            return -1;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        if (connect(fd, to, srv->udp_tolen[i]) == 0) {
            *idx = i;
            return fd;
        }
        wm_upstream_failed(srv->up, i, strerror(errno));
        close(fd);
        tried |= 1ULL << i;
    }
}

static struct session *session_new(struct udp_state *u, struct wm_service *svc,
                                   const struct sockaddr_storage *ss, socklen_t len)
{
    const struct st_service *st = (const struct st_service *)svc;
    struct session *s;
    struct timeval tv = {st->srv->udp_idle_ms / 1000, (st->srv->udp_idle_ms % 1000) * 1000};

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    const char *why;
    s->fd = upstream_socket(st->srv, (const struct sockaddr *)ss, &s->idx, &why);
    if (s->fd < 0) {
        uint64_t now = wm_now_coarse_ms();
        if (u->unserved++ == 0 || now - u->unserved_log_ms >= 1000) {
            /* every datagram of a flood would be a line */
            char cs[WM_ADDR_STR_MAX];
            wm_addr_format((const struct sockaddr *)ss, cs, sizeof(cs));
            if (why != NULL) {
                wm_log(WM_LOG_WARN, 0, "udp: no socket for a session of %s (%s): datagram of "
                       "client=%s dropped (%llu dropped in all, one line per second at most)",
                       wm_upstream_name(st->srv->up), why, cs, (unsigned long long)u->unserved);
            } else {
                wm_log(WM_LOG_WARN, 0,
                       "udp: no upstream server of %s is usable: datagram of client=%s dropped "
                       "(%llu dropped in all, one line per second at most)",
                       wm_upstream_name(st->srv->up), cs, (unsigned long long)u->unserved);
            }
            u->unserved_log_ms = now;
        }
        free(s);
        return NULL;
    }
    /* only now: a datagram that cannot start a session never evicts one */
    if (u->n >= st->srv->max_sessions && u->oldest != NULL) {
        uint64_t now = wm_now_coarse_ms();
        u->evicted++;
        if (u->evicted == 1 || now - u->evict_log_ms >= 1000) {
            /* a flood from many ports would be a line per datagram */
            wm_log(WM_LOG_WARN, u->oldest->id,
                   "udp: session table full (%zu): evicting client=%s (%llu evicted in all, "
                   "one line per second at most)",
                   u->n, u->oldest->client_str, (unsigned long long)u->evicted);
            u->evict_log_ms = now;
        }
        session_end(u->oldest, "evicted");
    }
    s->ev = event_new(wm_worker_base(u->w), s->fd, EV_READ | EV_PERSIST, upstream_cb, s);
    s->timer = evtimer_new(wm_worker_base(u->w), timer_cb, s);
    if (s->ev == NULL || s->timer == NULL) {
        if (s->ev != NULL) {
            event_free(s->ev);
        }
        if (s->timer != NULL) {
            event_free(s->timer);
        }
        close(s->fd);
        free(s);
        return NULL;
    }
    event_add(s->ev, NULL);
    evtimer_add(s->timer, &tv);
    s->u = u;
    s->svc = wm_service_ref(svc);
    s->id = wm_log_next_id();
    memcpy(&s->client, ss, len);
    s->clen = len;
    wm_addr_format((const struct sockaddr *)ss, s->client_str, sizeof(s->client_str));
    wm_addr_format((const struct sockaddr *)&st->srv->udp_to[s->idx], s->target,
                   sizeof(s->target));
    s->start_ms = wm_now_ms();
    s->last_ms = wm_now_coarse_ms();
    s->idle_ms = st->srv->udp_idle_ms;
    wm_upstream_active(st->srv->up, s->idx, 1);
    size_t b = hash_addr(ss, len, u->nbuckets);
    s->hnext = u->buckets[b];
    u->buckets[b] = s;
    lru_push(u, s);
    u->n++;
    wm_listen_stats_conn_open(u->stats);
    wm_log(WM_LOG_DEBUG, s->id, "udp session client=%s target=%s", s->client_str, s->target);
    return s;
}

static struct udp_state *state_new(struct wm_worker *w, int fd, struct wm_listen_stats *stats,
                                   size_t max)
{
    struct udp_state *u = calloc(1, sizeof(*u));
    size_t nb = max < UDP_BUCKETS_MIN ? UDP_BUCKETS_MIN : max;

    if (u == NULL || (u->buckets = calloc(nb, sizeof(*u->buckets))) == NULL) {
        free(u);
        return NULL;
    }
    u->nbuckets = nb;
    u->fd = fd;
    int sz = UDP_SOCKBUF;
    /* best effort: the kernel caps it at net.core.rmem_max / wmem_max */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    u->w = w;
    u->stats = wm_listen_stats_ref(stats);
    return u;
}

void st_udp_state_free(void *arg)
{
    struct udp_state *u = arg;

    if (u == NULL) {
        return;
    }
    while (u->oldest != NULL) {
        session_end(u->oldest, "shutdown");
    }
    wm_listen_stats_unref(u->stats);
    free(u->buckets);
    free(u);
}

void st_udp_readable(struct wm_service *svc, struct wm_worker *w, int fd,
                     struct wm_listen_stats *stats, void **state)
{
    const struct st_service *st = (const struct st_service *)svc;
    struct udp_state *u = *state;

    if (u == NULL && (u = *state = state_new(w, fd, stats, st->srv->max_sessions)) == NULL) {
        recv(fd, dgram, 1, MSG_DONTWAIT); /* drop it rather than spin */
        return;
    }
    for (int i = 0; i < UDP_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        ssize_t n = recvfrom(fd, dgram, sizeof(dgram), MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
        if (n < 0) {
            return;
        }
        struct session *s = session_find(u, &ss, len);
        if (s == NULL && (s = session_new(u, svc, &ss, len)) == NULL) {
            continue;
        }
        ssize_t r = send(s->fd, dgram, (size_t)n, MSG_DONTWAIT);
        if (r == n) {
            s->in += (uint64_t)n;
        } else if (r < 0 && is_unreachable(errno) && upstream_refused(s, errno)) {
            continue; /* the error of an earlier datagram; this one is lost */
        } else if (r < 0 && errno == EMSGSIZE) {
            too_large(s, (size_t)n);
        }
        touch(s);
    }
}
