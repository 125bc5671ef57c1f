/*
 * tunnel/http_map.c - the server's public HTTP(S) side: every request is
 * routed by its Host to the client that registered the domain (keep-alive
 * requests are routed one by one), forwarded over a tunnel stream by the
 * HTTP engine (http/fwd.h), with the mapping's header rules applied.
 * HTTP/2 (ALPN h2, h2c) is answered publicly, each stream a request of
 * the same engine (h2/h2.h). With [cluster], a Host held on another node
 * is carried there, and http streams carried here from another node are
 * served by the same engine with our client's rules.
 */
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "h2/h2.h"
#include "http/head.h"
#include "http/util.h"
#include "net/addr.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "http/fwd.h"
#include "net/conn.h"
#include "tunnel/mux.h"
#include "tunnel/server_int.h"

/* Per request: where it goes, and a reference to the rules (the mapping
 * may vanish with its carrier while the response still flows). */
struct route_data {
    uint64_t tun_id;
    char name[TUN_NAME_MAX];
    char host[256]; /* to route again if the chosen client is gone */
    struct rule_block *rules;
    uint32_t m_in, m_out; /* the mapping's byte counters */
    char node[64]; /* cluster: "" local, else the node whose client holds key */
    char key[WM_HOST_MAX + 8];
};

static struct tserver *server_of(void)
{
    return wm_tnode != NULL ? wm_tnode->server : NULL;
}

/* An absolute-form request-target (http://host[:port]/path): its path goes
 * as the target, its authority as Host (into t and host). host stays ""
 * for origin-form. -1 when it cannot be parsed. */
static int absolute_form(struct wm_http_head *req, struct wm_hfwd_target *t, char *host,
                         size_t cap)
{
    size_t ulen;
    const char *u = wm_http_head_url(req, &ulen);
    uint16_t port;
    bool https;
    char name[WM_HOST_MAX];

    host[0] = '\0';
    if (ulen == 0 || u[0] == '/' || u[0] == '*') {
        return 0;
    }
    if (wm_http_parse_absolute(u, ulen, name, sizeof(name), &port, &https, &t->path,
                               &t->pathlen) < 0) {
        return -1;
    }
    wm_addr_join(name, (https && port == 443) || (!https && port == 80) ? 0 : port,
                 t->host_hdr, sizeof(t->host_hdr));
    snprintf(host, cap, "%s", t->host_hdr);
    return 0;
}

/* The 404 body and access log target for a Host no client serves: the
 * name, with anything but host characters shown as '?'. The text lives in
 * a buffer of worker 0 (all tunnel work runs there) until the engine
 * writes the answer, right after route() returns. */
static const char *no_host_detail(const char *host, size_t hlen, struct wm_hfwd_target *t)
{
    static char detail[WM_HOST_MAX + 64];
    char name[WM_HOST_MAX];
    size_t k = 0;

    for (size_t i = 0; i < hlen && k + 1 < sizeof(name); i++) {
        char ch = host[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || (ch != '\0' && strchr("-._:[]*", ch) != NULL);
        name[k++] = ok ? ch : '?';
    }
    name[k] = '\0';
    snprintf(t->log, sizeof(t->log), "%s", name);
    snprintf(detail, sizeof(detail), "no tunnel client serves the host \"%s\"", name);
    return detail;
}

/* t for r, a mapping of a local client, with its header rules (host:
 * to route again if the client goes, may be empty). 0, or -1 on OOM. */
static int local_target(struct rmap *r, const char *host, size_t hlen, struct wm_hfwd_target *t)
{
    struct route_data *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        return -1;
    }
    d->tun_id = wm_tun_id(r->owner->t);
    snprintf(d->name, sizeof(d->name), "%s", r->name);
    snprintf(d->host, sizeof(d->host), "%.*s", (int)(hlen < sizeof(d->host) ? hlen : 0), host);
    d->rules = rule_block_ref(r->owner->rules);
    d->m_in = r->m_in;
    d->m_out = r->m_out;
    t->data = d;
    t->rules = r->rules;
    t->nrules = r->nrules;
    snprintf(t->key, sizeof(t->key), "tun:%llu/%s", (unsigned long long)d->tun_id, r->name);
    return 0;
}

static const struct wm_h2_front h2_http_front;
/* cluster: route by Host to a node whose client holds the domain (that
 * node applies the mapping's header rules: tserver_http_node_stream). */
static int route_remote(const char *host, size_t hlen, struct wm_hfwd_target *t,
                        const char **detail)
{
    struct route_data *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        *detail = "out of memory";
        return 500;
    }
    struct wm_tun *k = tcluster_route_host(host, hlen, d->key, sizeof(d->key), d->node,
                                           sizeof(d->node));
    if (k == NULL && d->node[0] != '\0') {
        /* held by a client of a node we have no carrier to (yet) */
        static __thread char why[128]; /* read by the caller at once */
        snprintf(t->log, sizeof(t->log), "node:%s/%s", d->node, d->key);
        snprintf(why, sizeof(why), "the cluster node %s serving this host is unreachable",
                 d->node);
        *detail = why;
        free(d);
        return 502;
    }
    if (k == NULL) {
        free(d);
        *detail = no_host_detail(host, hlen, t);
        return 404;
    }
    d->tun_id = wm_tun_id(k);
    t->data = d;
    snprintf(t->key, sizeof(t->key), "tun:%llu/%s", (unsigned long long)d->tun_id, d->key);
    snprintf(t->log, sizeof(t->log), "node:%s/%s", d->node, d->key);
    return 0;
}

static int route(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                 struct wm_hfwd_target *t, const char **detail, const char **extra)
{
    struct tserver *sv = server_of();
    size_t hlen;
    const char *host = wm_http_head_get(req, "host", &hlen);
    char abs_host[WM_HOST_MAX + 8]; /* = t->host_hdr */
    struct rmap *r;

    (void)extra;
    if (wm_tls_pump_ssl(c->bev) == NULL && wm_h2_wants_upgrade(req) &&
        wm_h2_upgrade(f, c, req, &h2_http_front) == WM_HFWD_TAKEN) {
        return WM_HFWD_TAKEN; /* "Upgrade: h2c" on the plain port */
    }
    if (sv == NULL) {
        *detail = "the tunnel is not configured";
        return 503;
    }
    if (absolute_form(req, t, abs_host, sizeof(abs_host)) < 0) {
        *detail = "malformed absolute request-target";
        return 400;
    }
    if (abs_host[0] != '\0') {
        /* RFC 9112 3.2.2: the target's authority replaces Host; the private
         * service gets origin-form with the Host it was routed by. */
        host = abs_host;
        hlen = strlen(abs_host);
    } else if (host != NULL && !wm_http_host_valid(host, hlen)) {
        /* as the reverse proxy: the lookup would route a part of it */
        *detail = "malformed Host";
        return 400;
    }
    if (host == NULL || hlen == 0) {
        *detail = "a Host header is required";
        return 400;
    }
    r = tserver_pick_host(sv, host, hlen);
    if (r == NULL && wm_tunnel_cluster != NULL) { /* cluster: a client of another node */
        return route_remote(host, hlen, t, detail);
    }
    if (r == NULL) {
        *detail = no_host_detail(host, hlen, t);
        return 404;
    }
    if (local_target(r, host, hlen, t) < 0) {
        *detail = "out of memory";
        return 500;
    }
    snprintf(t->log, sizeof(t->log), "%s/%s", r->owner->name, r->name);
    return 0; /* origin-form as the client sent it, or made from absolute-form */
}

static void release(struct wm_hfwd_target *t)
{
    struct route_data *d = t->data;

    if (d != NULL) {
        rule_block_unref(d->rules);
    }
    free(d);
    t->data = NULL;
}

static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct wm_hfwd *f = arg;

    if (outer == NULL) {
        wm_hfwd_connected(f, NULL, code == WM_TUN_OPEN_TIMEOUT ? 504 : 502, reason);
        return;
    }
    wm_hfwd_connected(f, outer, 0, NULL);
}

/* The carrier d was routed to, if it is still there and ready. */
static struct wm_tun *routed_carrier(struct tserver *sv, const struct route_data *d)
{
    struct tcarrier *k = tserver_carrier_by_id(sv, d->tun_id);

    return k != NULL && k->t != NULL && wm_tun_is_ready(k->t) ? k->t : NULL;
}

/* Open d's mapping stream on carrier t for f (the visitor in field). */
static void *open_mapping(struct wm_tun *t, const struct route_data *d, const char *field,
                          struct wm_hfwd *f)
{
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {d->name, strlen(d->name)},
                            {field, strlen(field)}};

    return wm_tun_open(t, &o, open_cb, f);
}

static void *connect_op(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t)
{
    struct tserver *sv = server_of();
    const struct route_data *d = t->data;
    char field[WM_TUN_PEER_MAX];

    if (sv == NULL || d == NULL) {
        return NULL;
    }
    /* The visitor and the public address it reached (a TLS connection's
     * socket may not be at hand: then the visitor alone). */
    tnode_peer_field(c->bev != NULL ? bufferevent_getfd(c->bev) : -1,
                     c->peerlen > 0 ? (struct sockaddr *)&c->peer : NULL, field, sizeof(field));
    if (d->node[0] != '\0') { /* cluster */
        char node[64];
        char name[WM_HOST_MAX + 16];
        struct wm_tun *k = wm_tunnel_cluster != NULL
                               ? wm_tunnel_cluster->route("web", d->key, node, sizeof(node))
                               : NULL;
        snprintf(name, sizeof(name), "web %s", d->key);
        struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {name, strlen(name)}, {field, strlen(field)}};
        return k != NULL ? wm_tun_open(k, &o, open_cb, f) : NULL;
    }
    struct wm_tun *k = routed_carrier(sv, d);
    if (k != NULL) {
        return open_mapping(k, d, field, f);
    }
    /* The client went away since routing: another member of its group
     * (or a new owner of the domain) takes the request, if there is one. */
    struct rmap *r = d->host[0] != '\0' ? tserver_pick_host(sv, d->host, strlen(d->host)) : NULL;
    if (r != NULL && wm_tun_id(r->owner->t) != d->tun_id && wm_tun_is_ready(r->owner->t)) {
        struct wm_tun_open o = {WM_TUN_OPEN_MAPPING,
                                {r->name, strlen(r->name)},
                                {field, strlen(field)}};
        return wm_tun_open(r->owner->t, &o, open_cb, f);
    }
    return NULL;
}

static void cancel_op(void *handle)
{
    wm_tun_open_cancel(handle);
}

static void logged_op(struct wm_hfwd *f, const struct wm_hfwd_log *l)
{
    const struct route_data *d = l->t->data;

    (void)f;
    if (d != NULL) {
        wm_metrics_add(d->m_in, l->bytes_in);
        wm_metrics_add(d->m_out, l->bytes_out);
    }
}

static const struct wm_hfwd_ops http_ops = {
    .proto = "tunnel-http",
    .route = route,
    .connect = connect_op,
    .cancel = cancel_op,
    .release = release,
    .logged = logged_op,
};

static const struct wm_hfwd_ops https_ops = {
    .proto = "tunnel-https",
    .route = route,
    .connect = connect_op,
    .cancel = cancel_op,
    .release = release,
    .logged = logged_op,
};

/* HTTP/2 on the public ports: each stream is a request of the same engine
 * (h2/h2.h), so the private service still gets HTTP/1.1. */
static const struct wm_hfwd_ops h2_ops = {
    .proto = "tunnel-h2",
    .queue_max = WM_H2_QUEUE_MAX,
    .route = route,
    .connect = connect_op,
    .cancel = cancel_op,
    .release = release,
    .logged = logged_op, /* the mapping's byte counters, as for HTTP/1 */
};

static const struct wm_h2_front h2_http_front = {.ops = &h2_ops, .conn_size = sizeof(struct wm_conn)};
static const struct wm_h2_front h2_https_front = {.ops = &h2_ops,
                                                  .conn_size = sizeof(struct wm_conn),
                                                  .tls = true};

/* ---- cluster: http streams from another node ---- */

/* One stream from another node: the requests A routed to our route key
 * (one key per stream: A keys its upstream connections by route). */
struct node_conn {
    struct wm_conn c; /* first: freed as a wm_conn */
    char key[WM_HOST_MAX + 8];
    char node[TUN_NAME_MAX];
    char field[WM_TUN_PEER_MAX]; /* the visitor as A's OPEN named it, passed on */
};

static int node_route(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                      struct wm_hfwd_target *t, const char **detail, const char **extra)
{
    struct node_conn *nc = (struct node_conn *)c;
    struct tserver *sv = server_of();
    struct rmap *r = sv != NULL ? tcluster_pick_local(sv, "web", nc->key) : NULL;

    (void)f;
    (void)req;
    (void)extra;
    if (r == NULL) {
        snprintf(t->log, sizeof(t->log), "%s(from %s)", nc->key, nc->node);
        *detail = "no client of this node holds the route any more";
        return 502;
    }
    if (local_target(r, "", 0, t) < 0) {
        *detail = "out of memory";
        return 500;
    }
    snprintf(t->log, sizeof(t->log), "%s/%s(from %s)", r->owner->name, r->name, nc->node);
    return 0;
}

static void *node_connect(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t)
{
    struct tserver *sv = server_of();
    const struct node_conn *nc = (const struct node_conn *)c;
    const struct route_data *d = t->data;

    struct wm_tun *k = sv != NULL && d != NULL ? routed_carrier(sv, d) : NULL;

    return k != NULL ? open_mapping(k, d, nc->field, f) : NULL;
}

static const struct wm_hfwd_ops node_ops = {
    .proto = "tunnel-node",
    .route = node_route,
    .connect = node_connect,
    .cancel = cancel_op,
    .release = release,
    .logged = logged_op,
};

void tserver_http_node_stream(struct tserver *sv, struct wm_tun_stream *s, const char *key,
                              const char *node, const char *field)
{
    const struct wm_tunnel_settings *st = sv->n->s;
    struct wm_conn_limits lim = {.head_ms = st->head_timeout_ms, .idle_ms = st->idle_timeout_ms};
    struct node_conn *nc = calloc(1, sizeof(*nc));
    struct wm_tun_peer pe;
    struct bufferevent *bev;

    if (nc == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "out of memory");
        return;
    }
    if ((bev = wm_tun_stream_accept(s)) == NULL) { /* refused by itself */
        free(nc);
        return;
    }
    snprintf(nc->key, sizeof(nc->key), "%s", key);
    snprintf(nc->node, sizeof(nc->node), "%s", node);
    snprintf(nc->field, sizeof(nc->field), "%s", field);
    wm_tun_peer_parse((struct wm_tun_str){field, strlen(field)}, &pe);
    /* the visitor's address: {client_ip} in the rules and the access line */
    wm_conn_init(&nc->c, st->public_svc, sv->n->w, bev,
                 pe.srclen > 0 ? (struct sockaddr *)&pe.src : NULL, pe.srclen, NULL, &lim);
    nc->c.proto = "http";
    wm_hfwd_start(&nc->c, &node_ops);
}

void tserver_http_accept(struct tserver *sv, bool tls, int fd, const struct sockaddr *peer,
                         socklen_t plen, struct wm_listen_stats *stats)
{
    const struct wm_tunnel_settings *s = sv->n->s;
    struct wm_conn_limits lim = {.head_ms = s->head_timeout_ms, .idle_ms = s->idle_timeout_ms};
    struct bufferevent *bev;
    struct wm_conn *c;

    if (tls) {
        if (s->map_ctx == NULL) {
            close(fd);
            return;
        }
        char ps[WM_ADDR_STR_MAX] = "-";
        if (peer != NULL) {
            wm_addr_format(peer, ps, sizeof(ps));
        }
        bev = wm_tls_wrap(wm_worker_base(sv->n->w), s->map_ctx, fd, true, NULL, ps);
    } else {
        bev = bufferevent_socket_new(wm_worker_base(sv->n->w), fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            close(fd);
        }
    }
    if (bev == NULL) {
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        wm_bev_free(bev);
        return;
    }
    wm_conn_init(c, s->public_svc, sv->n->w, bev, peer, plen, stats, &lim);
    c->proto = "http";
    wm_h2_serve(c, tls ? &https_ops : &http_ops, tls ? &h2_https_front : &h2_http_front);
}
