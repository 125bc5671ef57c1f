/*
 * tunnel/udp_map.c - UDP mappings (mode "udp", docs/tunnel.md "UDP
 * mappings"): the server's public UDP port gives each peer address a
 * session, and each session one tunnel stream to the mapping; on the
 * client the stream ends at a UDP socket connected to local_addr. A stream
 * carries datagrams as records: a 2-byte big-endian length, then the
 * datagram. A session ends after the idle timeout without a datagram either
 * way, when its stream ends, or (server) when the table is full and it is
 * the least recently active one.
 *
 * Everything runs on the tunnel's worker (0). A session owns its stream's
 * bufferevent, its timer and (client side) its socket.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/addr.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"

#define TUDP_HDR 2
#define TUDP_MAX_DGRAM 65535
#define TUDP_QUEUE_MAX (512 * 1024) /* a stream's output beyond this: datagrams dropped */
#define TUDP_SESSIONS 1024          /* per public port */
#define TUDP_BUCKETS 2048           /* the table's hash of peer addresses */
#define TUDP_IDLE_MS 60000

struct tudp_tab;

struct tudp {
    struct tudp *prev;          /* the table's LRU list (server side), oldest first */
    struct tudp *next;
    struct tudp *hnext;         /* the table's hash chain (server side) */
    struct tudp_tab *tab;       /* server side; NULL on the client */
    struct wm_worker *w;
    uint64_t id;
    int fd;                     /* client side: connected to local_addr; else -1 */
    struct sockaddr_storage peer; /* server side: the visitor */
    socklen_t plen;
    char peer_str[WM_ADDR_STR_MAX];
    char target[WM_HOST_MAX + 8];
    struct wm_tun_stream *opening; /* server side, until the open answers */
    struct bufferevent *bev;    /* the stream */
    struct evbuffer *pending;   /* records queued before the stream opened */
    struct event *ev;           /* fd readable (client side) */
    struct event *timer;
    uint64_t start_ms;
    uint64_t last_ms;
    uint64_t in;                /* bytes from the visitor */
    uint64_t out;
};

/* The sessions of one public UDP port (its listener's dgram state). */
struct tudp_tab {
    int fd;
    struct wm_worker *w;
    char key[WM_ADDR_STR_MAX + 8];
    struct wm_listen_stats *stats;
    struct tudp *oldest;
    struct tudp *newest;
    struct tudp *buckets[TUDP_BUCKETS]; /* sessions by peer address */
    size_t n;
    uint64_t evicted;           /* sessions evicted for room, in all */
    uint64_t evict_log_ms;      /* the last line saying so: one per second at most */
};

struct tudp_svc {
    struct wm_service base;
    char key[WM_ADDR_STR_MAX + 8];
};

static __thread uint8_t dbuf[TUDP_MAX_DGRAM + TUDP_HDR];
static __thread uint64_t local_refused;        /* client: ICMP errors of local services */
static __thread uint64_t local_refused_log_ms; /* the last line saying so */

static void lru_unlink(struct tudp *u)
{
    struct tudp_tab *t = u->tab;

    if (u->prev != NULL) {
        u->prev->next = u->next;
    } else {
        t->oldest = u->next;
    }
    if (u->next != NULL) {
        u->next->prev = u->prev;
    } else {
        t->newest = u->prev;
    }
    u->prev = u->next = NULL;
}

static void lru_push(struct tudp *u)
{
    struct tudp_tab *t = u->tab;

    u->prev = t->newest;
    if (t->newest != NULL) {
        t->newest->next = u;
    } else {
        t->oldest = u;
    }
    t->newest = u;
}

static struct tudp **bucket(struct tudp_tab *t, const struct sockaddr_storage *ss, socklen_t len)
{
    return &t->buckets[wm_addr_hash(ss, len) % TUDP_BUCKETS];
}

static struct tudp *session_find(struct tudp_tab *t, const struct sockaddr_storage *ss,
                                 socklen_t len)
{
    struct tudp *u = *bucket(t, ss, len);

    while (u != NULL && (u->plen != len || memcmp(&u->peer, ss, len) != 0)) {
        u = u->hnext;
    }
    return u;
}

static void hash_unlink(struct tudp *u)
{
    struct tudp **pp = bucket(u->tab, &u->peer, u->plen);

    while (*pp != NULL && *pp != u) {
        pp = &(*pp)->hnext;
    }
    if (*pp == u) {
        *pp = u->hnext;
    }
}

static void session_end(struct tudp *u, const char *reason)
{
    if (u->tab == NULL) {
        /* client side: what came through the stream is the visitor's */
        uint64_t x = u->in;
        u->in = u->out;
        u->out = x;
    }
    wm_log(WM_LOG_INFO, u->id,
           "access proto=tunnel-udp client=%s user=- target=%s code=0 in=%llu out=%llu "
           "ms=%llu end=%s",
           u->peer_str, u->target, (unsigned long long)u->in, (unsigned long long)u->out,
           (unsigned long long)(wm_now_ms() - u->start_ms), reason);
    if (u->tab != NULL) {
        lru_unlink(u);
        hash_unlink(u);
        u->tab->n--;
        wm_listen_stats_conn_close(u->tab->stats, u->in, u->out);
    }
    if (u->opening != NULL) {
        wm_tun_open_cancel(u->opening);
    }
    wm_bev_free(u->bev);
    if (u->pending != NULL) {
        evbuffer_free(u->pending);
    }
    if (u->ev != NULL) {
        event_free(u->ev);
    }
    if (u->timer != NULL) {
        event_free(u->timer);
    }
    if (u->fd >= 0) {
        close(u->fd);
    }
    free(u);
}

static void touch(struct tudp *u)
{
    u->last_ms = wm_now_coarse_ms();
    if (u->tab != NULL && u->tab->newest != u) {
        lru_unlink(u);
        lru_push(u);
    }
}

static void arm(struct tudp *u, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(u->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tudp *u = arg;
    uint64_t idle = wm_now_coarse_ms() - u->last_ms;

    (void)fd;
    (void)what;
    if (idle >= TUDP_IDLE_MS) {
        session_end(u, "idle");
    } else {
        arm(u, TUDP_IDLE_MS - idle);
    }
}

/* A datagram towards the stream, as a record; dropped past the bound. */
static void record_out(struct tudp *u, const uint8_t *p, size_t n)
{
    struct evbuffer *out = u->bev != NULL ? bufferevent_get_output(u->bev) : u->pending;
    uint8_t h[TUDP_HDR] = {(uint8_t)(n >> 8), (uint8_t)n};

    if (evbuffer_get_length(out) + n > TUDP_QUEUE_MAX) {
        return; /* UDP: a datagram the carrier cannot take now is lost */
    }
    evbuffer_add(out, h, sizeof(h));
    evbuffer_add(out, p, n);
    u->in += n;
    touch(u);
}

/* Client: the local service answered a datagram with an ICMP error
 * (nothing listens at local_addr), which the connected socket reports on
 * its next call. The session stays (local_addr is all there is to try);
 * the loss is said once per second at most, with a count. */
static void local_error(struct tudp *u, int err)
{
    uint64_t now = wm_now_coarse_ms();

    if (local_refused++ == 0 || now - local_refused_log_ms >= 1000) {
        /* a visitor that keeps sending would be a line per datagram */
        wm_log(WM_LOG_WARN, u->id,
               "tunnel: udp local_addr %s: %s: datagrams of %s lost (%llu in all, one line per "
               "second at most)",
               u->target, strerror(err), u->peer_str, (unsigned long long)local_refused);
        local_refused_log_ms = now;
    }
}

/* Records from the stream: each goes out as one datagram. */
static void stream_read_cb(struct bufferevent *bev, void *arg)
{
    struct tudp *u = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t h[TUDP_HDR];

    while (evbuffer_copyout(in, h, sizeof(h)) == sizeof(h)) {
        size_t n = (size_t)h[0] << 8 | h[1];
        if (evbuffer_get_length(in) < TUDP_HDR + n) {
            return;
        }
        evbuffer_drain(in, TUDP_HDR);
        evbuffer_remove(in, dbuf, n);
        ssize_t r = u->tab != NULL ? sendto(u->tab->fd, dbuf, n, MSG_DONTWAIT,
                                            (struct sockaddr *)&u->peer, u->plen)
                                   : send(u->fd, dbuf, n, MSG_DONTWAIT);
        if (r == (ssize_t)n) {
            u->out += n;
        } else if (r < 0 && u->tab == NULL &&
                   (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)) {
            local_error(u, errno); /* an earlier datagram's answer; this one is lost too */
        }
        touch(u);
    }
}

static void stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    session_end(arg, (what & BEV_EVENT_ERROR) ? "stream-error" : "stream-closed");
}

static void attach(struct tudp *u, struct bufferevent *bev)
{
    u->bev = bev;
    if (u->pending != NULL) {
        evbuffer_add_buffer(bufferevent_get_output(bev), u->pending);
    }
    bufferevent_setcb(bev, stream_read_cb, NULL, stream_event_cb, u);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static struct tudp *session_alloc(struct wm_worker *w)
{
    struct tudp *u = calloc(1, sizeof(*u));

    if (u == NULL) {
        return NULL;
    }
    u->fd = -1;
    u->w = w;
    u->id = wm_log_next_id();
    u->start_ms = wm_now_ms();
    u->last_ms = wm_now_coarse_ms();
    u->timer = evtimer_new(wm_worker_base(w), timer_cb, u);
    if (u->timer == NULL) {
        free(u);
        return NULL;
    }
    arm(u, TUDP_IDLE_MS);
    return u;
}

/* ---- server: the public UDP port ---- */

static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct tudp *u = arg;

    u->opening = NULL;
    if (outer == NULL) {
        wm_log(WM_LOG_INFO, u->id, "tunnel: udp mapping %s refused the session: %s (%u)",
               u->target, reason != NULL ? reason : "-", code);
        session_end(u, "open-refused");
        return;
    }
    attach(u, outer);
}

/* A new session for the visitor at ss: a stream to the mapping that holds
 * the port. NULL when none does (the datagram is dropped) or on OOM. */
static struct tudp *server_session(struct tudp_tab *t, const struct sockaddr_storage *ss,
                                   socklen_t len)
{
    struct wm_tun *tun;
    char name[TUN_NAME_MAX];
    char field[WM_TUN_PEER_MAX];
    struct tudp *u;

    if (tserver_route_udp(t->key, &tun, name, sizeof(name)) < 0) {
        return NULL;
    }
    if (t->n >= TUDP_SESSIONS && t->oldest != NULL) {
        uint64_t now = wm_now_coarse_ms();
        if (t->evicted++ == 0 || now - t->evict_log_ms >= 1000) {
            /* a flood from many ports would be a line per datagram */
            wm_log(WM_LOG_WARN, t->oldest->id,
                   "tunnel: udp port %s: %zu sessions, evicting %s (%llu evicted in all, one "
                   "line per second at most)",
                   t->key, t->n, t->oldest->peer_str, (unsigned long long)t->evicted);
            t->evict_log_ms = now;
        }
        session_end(t->oldest, "evicted");
    }
    if ((u = session_alloc(t->w)) == NULL || (u->pending = evbuffer_new()) == NULL) {
        if (u != NULL) {
            session_end(u, "out-of-memory");
        }
        return NULL;
    }
    u->tab = t;
    memcpy(&u->peer, ss, len);
    u->plen = len;
    wm_addr_format((const struct sockaddr *)ss, u->peer_str, sizeof(u->peer_str));
    snprintf(u->target, sizeof(u->target), "%s/%s", wm_tun_peer_name(tun), name);
    lru_push(u);
    u->hnext = *bucket(t, ss, len);
    *bucket(t, ss, len) = u;
    t->n++;
    wm_listen_stats_conn_open(t->stats);
    wm_tun_peer_format(field, sizeof(field), (const struct sockaddr *)ss, NULL);
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {name, strlen(name)}, {field, strlen(field)}};
    u->opening = wm_tun_open(tun, &o, open_cb, u);
    if (u->opening == NULL) {
        session_end(u, "carrier-unavailable");
        return NULL;
    }
    return u;
}

static void tab_free(void *arg)
{
    struct tudp_tab *t = arg;

    if (t == NULL) {
        return;
    }
    while (t->oldest != NULL) {
        session_end(t->oldest, "port-closed");
    }
    wm_listen_stats_unref(t->stats);
    free(t);
}

static void port_readable(struct wm_service *svc, struct wm_worker *w, int fd,
                          struct wm_listen_stats *stats, void **state)
{
    struct tudp_svc *ps = (struct tudp_svc *)svc;
    struct tudp_tab *t = *state;

    if (t == NULL) {
        if ((t = calloc(1, sizeof(*t))) == NULL) {
            recv(fd, dbuf, 1, MSG_DONTWAIT);
            return;
        }
        t->fd = fd;
        t->w = w;
        t->stats = wm_listen_stats_ref(stats);
        snprintf(t->key, sizeof(t->key), "%s", ps->key);
        *state = t;
    }
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        ssize_t n = recvfrom(fd, dbuf, TUDP_MAX_DGRAM, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
        struct tudp *u;
        if (n < 0) {
            return;
        }
        u = session_find(t, &ss, len);
        if (u == NULL && (u = server_session(t, &ss, len)) == NULL) {
            continue;
        }
        record_out(u, dbuf, (size_t)n);
    }
}

static void svc_destroy(struct wm_service *svc)
{
    free(svc);
}

struct wm_service *tudp_port_service_new(const char *key)
{
    struct tudp_svc *ps = calloc(1, sizeof(*ps));

    if (ps == NULL) {
        return NULL;
    }
    wm_service_init(&ps->base, "tunnel-udp", NULL, svc_destroy);
    ps->base.dgram = port_readable;
    ps->base.dgram_free = tab_free;
    snprintf(ps->key, sizeof(ps->key), "%s", key);
    return &ps->base;
}

/* ---- client: the stream ends at local_addr ---- */

static void local_readable(evutil_socket_t fd, short what, void *arg)
{
    struct tudp *u = arg;

    (void)what;
    for (int i = 0; i < 64 && u->bev != NULL; i++) {
        ssize_t n = recv(fd, dbuf, TUDP_MAX_DGRAM, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                local_error(u, errno);
            }
            return;
        }
        record_out(u, dbuf, (size_t)n);
    }
}

/* The session for s, its socket connected to sa (local_addr resolved). */
static void client_session(struct wm_worker *w, struct wm_tun_stream *s, const struct sockaddr *sa,
                           socklen_t salen, const char *host, uint16_t port, const char *peer)
{
    struct tudp *u = session_alloc(w);

    if (u == NULL || (u->fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                     0)) < 0 ||
        connect(u->fd, sa, salen) < 0 ||
        (u->ev = event_new(wm_worker_base(w), u->fd, EV_READ | EV_PERSIST, local_readable, u)) ==
            NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_UNREACHABLE, strerror(errno));
        if (u != NULL) {
            session_end(u, "local-socket-failed");
        }
        return;
    }
    snprintf(u->peer_str, sizeof(u->peer_str), "%s", peer);
    wm_addr_join(host, port, u->target, sizeof(u->target));
    struct bufferevent *bev = wm_tun_stream_accept(s);
    if (bev == NULL) {
        session_end(u, "out-of-memory");
        return;
    }
    attach(u, bev);
    event_add(u->ev, NULL);
}

/* A local_addr given as a name, resolved by evdns (a worker never blocks
 * on DNS): the stream waits, pending, for the answer. */
struct tudp_resolve {
    struct wm_worker *w;
    struct wm_tun_stream *s; /* NULL once it went away (res_gone) */
    struct evdns_getaddrinfo_request *req;
    uint16_t port;
    char host[WM_HOST_MAX];
    char peer[WM_ADDR_STR_MAX];
};

static void res_gone(void *arg)
{
    struct tudp_resolve *r = arg;

    r->s = NULL; /* res_dns_cb frees r when evdns reports the cancel */
    evdns_getaddrinfo_cancel(r->req);
}

static void res_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct tudp_resolve *r = arg;
    struct evutil_addrinfo *ai = res;

    r->req = NULL;
    while (ai != NULL && ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
        ai = ai->ai_next;
    }
    if (r->s != NULL) {
        wm_tun_stream_watch(r->s, NULL, NULL);
        if (result != 0 || ai == NULL) {
            wm_tun_stream_refuse(r->s, WM_TUN_OPEN_UNREACHABLE, "cannot resolve local_addr");
        } else {
            client_session(r->w, r->s, ai->ai_addr, (socklen_t)ai->ai_addrlen, r->host, r->port,
                           r->peer);
        }
    }
    if (res != NULL) {
        evutil_freeaddrinfo(res);
    }
    free(r);
}

void tudp_client_accept(struct wm_worker *w, struct wm_tun_stream *s, const char *host,
                        uint16_t port, const char *peer)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                                    .ai_protocol = IPPROTO_UDP};
    struct tudp_resolve *r;

    if (wm_addr_from_ip(host, port, &ss, &sslen) == 0) {
        client_session(w, s, (struct sockaddr *)&ss, sslen, host, port, peer);
        return;
    }
    if (!wm_addr_name_resolvable(host) || (r = calloc(1, sizeof(*r))) == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_UNREACHABLE, "cannot resolve local_addr");
        return;
    }
    r->w = w;
    r->s = s;
    r->port = port;
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->peer, sizeof(r->peer), "%s", peer);
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    wm_tun_stream_watch(s, res_gone, r);
    /* r->s is still s: res_dns_cb may run (and free r) before this returns */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(wm_worker_dns(w), host, ps, &hints, res_dns_cb, r);
    if (req != NULL) {
        r->req = req;
    }
}
