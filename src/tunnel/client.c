/*
 * tunnel/client.c - the client part of a tunnel node: keeps one carrier to
 * the parent server (reconnecting with exponential backoff and jitter),
 * registers the mappings, and serves the streams the server opens.
 */
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "proxy/proxy.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000

struct tclient {
    struct tnode *n;
    struct wm_tunnel_settings *s; /* borrowed from the node */
    struct wm_tun *t;
    struct wm_dial *dial;
    struct event *retry_ev;
    unsigned backoff_ms;
    bool draining;
    bool connected_once;
    uint64_t attempts;
    size_t srv;         /* failover: index of the server address tried now */
    uint64_t unknown_opens; /* streams opened by the server for no mapping of ours */
    uint64_t unknown_log_ms; /* the last line saying so: one per second at most */
};

/* The parent address tried now (s->servers, in turn). */
#define SRV_HOST(c) ((c)->s->servers[(c)->srv % (c)->s->nservers])
#define SRV_PORT(c) ((c)->s->server_ports[(c)->srv % (c)->s->nservers])

static void connect_now(struct tclient *c);

static void schedule_retry(struct tclient *c)
{
    uint32_t r = 0;
    unsigned ms;
    struct timeval tv;

    if (c->draining) {
        return;
    }
    RAND_bytes((unsigned char *)&r, sizeof(r));
    /* Full jitter in [backoff/2, backoff]. */
    ms = c->backoff_ms / 2 + (c->backoff_ms > 1 ? r % (c->backoff_ms / 2 + 1) : 0);
    /* failover: the next address; the backoff grows once all were tried */
    c->srv = (c->srv + 1) % c->s->nservers;
    if (c->srv == 0) {
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    evtimer_add(c->retry_ev, &tv);
    wm_log(WM_LOG_DEBUG, 0, "tunnel: reconnecting to %s:%u in %u ms", SRV_HOST(c),
           SRV_PORT(c), ms);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

/* ---- carrier callbacks ---- */

static void on_ready(struct wm_tun *t, void *arg)
{
    struct tclient *c = arg;

    c->backoff_ms = BACKOFF_MIN_MS;
    c->connected_once = true;
    wm_log(WM_LOG_INFO, wm_tun_id(t), "tunnel: connected to %s:%u (%s), %zu mapping(s) offered",
           SRV_HOST(c), SRV_PORT(c), wm_tun_transport(t), c->s->nmaps);
}

static void on_register_result(struct wm_tun *t, const uint8_t *ok,
                               const struct wm_tun_str *reason, size_t n, void *arg)
{
    struct tclient *c = arg;
    char r[256];

    for (size_t i = 0; i < n && i < c->s->nmaps; i++) {
        if (!ok[i]) {
            wm_tun_str_copy(r, sizeof(r), reason[i]);
            wm_log(WM_LOG_WARN, wm_tun_id(t), "tunnel: mapping \"%s\" refused by the server: %s",
                   c->s->maps[i].name, r);
        }
    }
}

static const struct tmap *find_map(struct tclient *c, struct wm_tun_str name)
{
    for (size_t i = 0; i < c->s->nmaps; i++) {
        if (wm_tun_str_eq(name, c->s->maps[i].name)) {
            return &c->s->maps[i];
        }
    }
    return NULL;
}

/* The server opens a stream: a public connection for one of our mappings. */
static void on_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                    void *arg)
{
    struct tclient *c = arg;
    char peer[WM_ADDR_STR_MAX] = "-";
    struct wm_tun_peer pe;
    const struct tmap *m;

    wm_tun_peer_parse(o->peer, &pe);
    const struct sockaddr *src = pe.srclen > 0 ? (struct sockaddr *)&pe.src : NULL;
    const struct sockaddr *dst = pe.dstlen > 0 ? (struct sockaddr *)&pe.dst : NULL;
    if (src != NULL) {
        wm_addr_format(src, peer, sizeof(peer));
    }
    if (o->kind == WM_TUN_OPEN_PROXY) {
        /* A middle node's parent does not send PROXY streams down. */
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "no proxy service here");
        return;
    }
    m = find_map(c, o->name);
    if (m == NULL) {
        uint64_t now = wm_now_coarse_ms();
        if (c->unknown_opens++ == 0 || now - c->unknown_log_ms >= 1000) {
            /* a server that keeps opening them would be a line per stream */
            char name[TUN_NAME_MAX];
            wm_tun_str_copy(name, sizeof(name), o->name);
            wm_log(WM_LOG_WARN, wm_tun_id(t), "tunnel: server %s:%u opened a stream for unknown "
                   "mapping \"%s\", refused (%llu in all, one line per second at most)",
                   SRV_HOST(c), SRV_PORT(c), name, (unsigned long long)c->unknown_opens);
            c->unknown_log_ms = now;
        }
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NO_MAPPING, "no such mapping");
        return;
    }
    if (m->mode == WM_TUN_MODE_UDP) {
        tudp_client_accept(c->n->w, s, m->host, m->port, peer);
        return;
    }
    if (m->mode == WM_TUN_MODE_PROXY) {
        /* The public port reaches a proxy running here, inside. */
        struct bufferevent *outer = wm_tun_stream_accept(s);
        if (outer != NULL) {
            wm_proxy_serve_origin(c->s->proxy_svc, c->n->w, outer, src, dst, m->pp);
        }
        return;
    }
    /* Dial first: a refused or unreachable service is told to the opener. */
    struct bridge *b = bridge_new_stream(s, peer, "tunnel-map", c->s->idle_timeout_ms);
    if (b != NULL && (m->pp == 0 || bridge_set_proxy_protocol(b, m->pp, src, dst) == 0)) {
        bridge_dial(b, m->host, m->port, c->s->connect_timeout_ms);
    }
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    struct tclient *c = arg;

    (void)t;
    c->t = NULL;
    if (c->draining) {
        wm_log(WM_LOG_INFO, 0, "tunnel: carrier closed (%s)", why);
        return;
    }
    /* A carrier that ends is worth a warning, even before it first worked
     * (refused credentials, a server that does not check them...). */
    wm_log(WM_LOG_WARN, 0, "tunnel: carrier to %s:%u closed: %s", SRV_HOST(c), SRV_PORT(c),
           why);
    schedule_retry(c);
}

static const struct wm_tun_cbs client_cbs = {
    .ready = on_ready,
    .register_result = on_register_result,
    .open = on_open,
    .closed = on_closed,
};

/* ---- connecting ---- */

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer, socklen_t plen,
                    void *arg)
{
    struct tclient *c = arg;
    struct bufferevent *bev;
    struct wm_tun_conf tc;
    char host[256];

    (void)plen;
    c->dial = NULL;
    if (st != WM_DIAL_OK) {
        wm_log(c->connected_once ? WM_LOG_WARN : WM_LOG_INFO, 0,
               "tunnel: cannot reach %s:%u: %s", SRV_HOST(c), SRV_PORT(c),
               wm_dial_status_str(st));
        schedule_retry(c);
        return;
    }
    if (c->s->client_ctx != NULL) {
        char peer_s[WM_ADDR_STR_MAX];
        wm_addr_format(peer, peer_s, sizeof(peer_s));
        bev = wm_tls_wrap(wm_worker_base(c->n->w), c->s->client_ctx, fd, false,
                          c->s->sni_set ? c->s->sni : SRV_HOST(c), peer_s);
    } else {
        bev = bufferevent_socket_new(wm_worker_base(c->n->w), fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            close(fd);
        }
    }
    if (bev == NULL) {
        schedule_retry(c);
        return;
    }
    memset(&tc, 0, sizeof(tc));
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "client");
    }
    host[sizeof(host) - 1] = '\0';
    tc.role = WM_TUN_ROLE_CLIENT;
    tc.user = c->s->user;
    tc.pass = c->s->pass;
    tc.name = host;
    tc.reg = c->s->reg;
    tc.ping_ms = c->s->ping_ms;
    tc.max_streams = (uint32_t)c->s->max_streams;
    tc.dead_ms = c->s->dead_ms;
    tc.open_ms = c->s->open_ms;
    tc.reglen = c->s->reglen;
    uint64_t id = wm_log_next_id();
    wm_tls_pump_set_id(bev, id); /* its handshake lines share the carrier's c= */
    c->t = wm_tun_new(c->n->w, bev, &tc, &client_cbs, c, id);
    if (c->t == NULL) {
        schedule_retry(c);
    }
}

static void connect_now(struct tclient *c)
{
    if (c->draining || c->t != NULL || c->dial != NULL) {
        return;
    }
    c->attempts++;
    c->dial = wm_dial_start(c->n->w, SRV_HOST(c), SRV_PORT(c),
                            c->s->connect_timeout_ms, dial_cb, c);
    if (c->dial == NULL) {
        schedule_retry(c);
    }
}

struct tclient *tclient_new(struct tnode *n, struct wm_tunnel_settings *s)
{
    struct tclient *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->n = n;
    c->s = s;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->retry_ev = evtimer_new(wm_worker_base(n->w), retry_cb, c);
    if (c->retry_ev == NULL) {
        free(c);
        return NULL;
    }
    connect_now(c);
    return c;
}

void tclient_drain(struct tclient *c)
{
    c->draining = true;
    evtimer_del(c->retry_ev);
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
        c->dial = NULL;
    }
    if (c->t != NULL && wm_tun_nstreams(c->t) == 0) {
        wm_tun_close(c->t, WM_TUN_ERR_SHUTDOWN, "shutting down");
    }
}

void tclient_free(struct tclient *c)
{
    if (c == NULL) {
        return;
    }
    c->draining = true;
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
    }
    if (c->t != NULL) {
        wm_tun_destroy(c->t);
        c->t = NULL;
    }
    event_free(c->retry_ev);
    free(c);
}

uint64_t tclient_attempts(const struct tclient *c)
{
    return c != NULL ? c->attempts : 0;
}

struct wm_tun *tclient_carrier(struct tclient *c)
{
    return c != NULL && c->t != NULL && wm_tun_is_ready(c->t) ? c->t : NULL;
}

/* Streams the client may keep: those of a mapping it still has. */
static bool keep_stream(uint32_t tag, void *arg)
{
    const struct tclient *c = arg;

    for (size_t i = 0; i < c->s->nmaps; i++) {
        if (wm_tun_tag(c->s->maps[i].name, strlen(c->s->maps[i].name)) == tag) {
            return true;
        }
    }
    return false;
}

void tclient_rebind(struct tclient *c, struct wm_tunnel_settings *s, bool remap)
{
    c->s = s;
    if (!remap || c->t == NULL) {
        return; /* not connected: the next carrier registers the new ones */
    }
    if (wm_tun_reregister(c->t, s->reg, s->reglen) < 0) {
        wm_log(WM_LOG_ERROR, wm_tun_id(c->t), "tunnel: out of memory re-registering; "
                                              "reconnecting");
        wm_tun_close(c->t, WM_TUN_ERR_SHUTDOWN, "out of memory");
        return;
    }
    size_t ended = wm_tun_reset_streams(c->t, keep_stream, c, "mapping removed");
    wm_log(WM_LOG_INFO, wm_tun_id(c->t),
           "tunnel: mappings changed: %zu mapping(s) registered again over the live carrier, "
           "%zu stream(s) of removed mappings ended", s->nmaps, ended);
}
