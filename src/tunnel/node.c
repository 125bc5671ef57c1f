/*
 * tunnel/node.c - tunnel settings from the node's options, the listener
 * services, and installing settings on worker 0 (see tunnel.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/err.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/service.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/tls.h"
#include "proxy/proxy.h"
#include "tunnel/authz.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"

struct tnode *wm_tnode;

/* A server node: clients attach to it (center_addr, or bind when
 * server_mode or tc, wmproxy's layout) and it may publish mappings on
 * public ports. */
static bool is_server(const struct wm_tunnel_opts *p)
{
    return p->center_addr != NULL || p->server_mode || p->tc || p->map_http_bind != NULL ||
           p->map_https_bind != NULL || p->map_tcp_bind != NULL || p->map_proxy_bind != NULL;
}

bool wm_tunnel_wanted(const struct wm_tunnel_opts *o)
{
    return o->server != NULL || is_server(o);
}

void wm_tunnel_settings_free(struct wm_tunnel_settings *s)
{
    if (s == NULL) {
        return;
    }
    if (s->pass != NULL) {
        explicit_bzero(s->pass, strlen(s->pass));
    }
    free(s->user);
    free(s->pass);
    wm_service_unref(s->proxy_svc);
    wm_service_unref(s->public_svc);
    SSL_CTX_free(s->client_ctx);
    SSL_CTX_free(s->server_ctx);
    SSL_CTX_free(s->map_ctx);
    free(s->reg);
    free(s->maps);
    free(s->allow_ports);
    wm_tunnel_clients_free(s->clients, s->nclients);
    free(s);
}

static int oom(struct wm_err *err)
{
    return wm_err_set(err, NULL, 0, 0, NULL, "out of memory");
}

/* ---- both roles ---- */

/* Credentials, timers, and the proxy services run on streams: the
 * configured one (two-level proxy, proxy mappings) and one for public
 * HTTP(S) (every protocol, no credentials, the same timeouts). */
static int prepare_common(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                          struct wm_err *err)
{
    struct wm_proxy_opts po;

    s->user = p->username != NULL ? strdup(p->username) : NULL;
    s->pass = p->password != NULL ? strdup(p->password) : NULL;
    s->connect_timeout_ms = p->connect_timeout_ms;
    s->idle_timeout_ms = p->idle_timeout_ms;
    s->head_timeout_ms = p->proxy->handshake_timeout_ms;
    s->ping_ms = p->ping_ms;
    s->dead_ms = p->dead_ms;
    /* The far end answers once it dialed its service (connect_timeout, the
     * same on both ends by default); the heartbeat timeout on top allows
     * for a slow link or a chain of nodes. */
    s->open_ms = p->connect_timeout_ms + p->dead_ms;
    s->max_streams = p->max_streams > 0 ? p->max_streams : WM_TUNNEL_MAX_STREAMS_DEFAULT;
    s->proxy_svc = wm_proxy_service_new(p->proxy);
    s->proxy_auth = p->proxy->auth;
    wm_proxy_opts_default(&po);
    po.connect_timeout_ms = p->proxy->connect_timeout_ms;
    po.idle_timeout_ms = p->proxy->idle_timeout_ms;
    po.handshake_timeout_ms = p->proxy->handshake_timeout_ms;
    po.flags = WM_PROXY_FLAG_ALL;
    s->public_svc = wm_proxy_service_new(&po);
    if (s->proxy_svc == NULL || s->public_svc == NULL ||
        (p->username != NULL && s->user == NULL) || (p->password != NULL && s->pass == NULL)) {
        return oom(err);
    }
    return 0;
}

static void copy_addr(char *dst, size_t cap, const char *addr);

/* ---- client part ---- */

static uint8_t mode_of(const char *m)
{
    if (strcmp(m, "http") == 0) {
        return WM_TUN_MODE_HTTP;
    }
    if (strcmp(m, "https") == 0) {
        return WM_TUN_MODE_HTTPS;
    }
    if (strcmp(m, "tcp") == 0) {
        return WM_TUN_MODE_TCP;
    }
    if (strcmp(m, "udp") == 0) {
        return WM_TUN_MODE_UDP;
    }
    return WM_TUN_MODE_PROXY;
}

static struct wm_tun_str S(const char *s)
{
    struct wm_tun_str r = {s != NULL ? s : "", s != NULL ? strlen(s) : 0};
    return r;
}

/* Mapping i: its local record t (what to dial) and its wire form m. */
static int mapping_of(const struct wm_tunnel_mapping *cm, size_t i, struct tmap *t,
                      struct wm_tun_mapping *m, struct wm_err *err)
{
    char key[64];

    snprintf(t->name, sizeof(t->name), "%s", cm->name);
    t->mode = mode_of(cm->mode);
    t->pp = (uint8_t)cm->proxy_protocol;
    if (cm->local_addr != NULL &&
        wm_addr_split(cm->local_addr, strlen(cm->local_addr), t->host, sizeof(t->host),
                      &t->port) < 0) {
        snprintf(key, sizeof(key), "mappings[%zu].local_addr", i);
        return wm_err_set(err, NULL, 0, 0, key, "bad address");
    }
    if (cm->nrules > WM_TUN_MAX_RULES) {
        snprintf(key, sizeof(key), "mappings[%zu].headers", i);
        return wm_err_set(err, NULL, 0, 0, key, "at most %d rules", WM_TUN_MAX_RULES);
    }
    m->name = S(cm->name);
    m->mode = t->mode;
    m->domain = S(cm->domain);
    m->remote_port = cm->remote_port;
    m->bind = S(cm->bind);
    m->group = S(cm->group);
    m->nrules = (uint16_t)cm->nrules;
    for (size_t k = 0; k < cm->nrules; k++) {
        m->rules[k].request = cm->rules[k].request ? 1 : 0;
        m->rules[k].op = (uint8_t)cm->rules[k].op;
        m->rules[k].name = S(cm->rules[k].name);
        m->rules[k].value = S(cm->rules[k].value);
    }
    return 0;
}

/* Mappings -> REGISTER payload and the local table. */
static int prepare_mappings(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                            struct wm_err *err)
{
    size_t n = p->nmappings;
    struct wm_tun_mapping *m;
    size_t len = 0;

    if (n > WM_TUN_MAX_MAPPINGS) {
        return wm_err_set(err, NULL, 0, 0, "mappings", "at most %d mappings",
                          WM_TUN_MAX_MAPPINGS);
    }
    m = calloc(n ? n : 1, sizeof(*m));
    s->maps = calloc(n ? n : 1, sizeof(*s->maps));
    s->reg = malloc(WM_TUN_MAX_PAYLOAD);
    if (m == NULL || s->maps == NULL || s->reg == NULL) {
        free(m);
        return oom(err);
    }
    for (size_t i = 0; i < n; i++) {
        if (mapping_of(&p->mappings[i], i, &s->maps[i], &m[i], err) < 0) {
            free(m);
            return -1;
        }
    }
    len = wm_tun_register_encode(s->reg, WM_TUN_MAX_PAYLOAD, m, n);
    free(m);
    if (len == 0) {
        return wm_err_set(err, NULL, 0, 0, "mappings",
                          "too large to announce (names, domains and header rules must fit "
                          "in %d bytes)", WM_TUN_MAX_PAYLOAD);
    }
    s->reglen = len;
    s->nmaps = n;
    return 0;
}

/* Everything a client carrier depends on, hashed: same value, keep it. */
static void fingerprint(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdlen = 0;
    const char *fields[] = {p->server, p->domain, p->ca, p->cert, p->key, p->username,
                            p->password, p->ts ? "ts" : "", p->two_way_tls ? "mtls" : "",
                            p->known_hosts, p->server_fingerprint};

    s->fingerprint[0] = '\0';
    if (ctx == NULL) {
        return;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *f = fields[i] != NULL ? fields[i] : "";
        EVP_DigestUpdate(ctx, f, strlen(f) + 1);
    }
    /* not the mappings (s->reg): a change there is re-registered over the
     * live carrier (tclient_rebind) */
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < mdlen; i++) {
        snprintf(s->fingerprint + 2 * i, 3, "%02x", md[i]);
    }
}

/* A client node: its parent, the carrier's TLS, the mappings it offers,
 * its local proxy entry. */
static int prepare_client(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                          struct wm_err *err)
{
    for (const char *a = p->server; *a != '\0';) { /* "h1:p1 h2:p2" (failover) */
        size_t n = strcspn(a, " ,\t");
        if (n > 0 && s->nservers == WM_TUNNEL_SERVERS_MAX) {
            return wm_err_set(err, NULL, 0, 0, "server", "more than %d addresses",
                              WM_TUNNEL_SERVERS_MAX);
        }
        if (n > 0 && wm_addr_split(a, n, s->servers[s->nservers], WM_HOST_MAX,
                                   &s->server_ports[s->nservers]) < 0) {
            return wm_err_set(err, NULL, 0, 0, "server", "expected \"host:port\"");
        }
        s->nservers += n > 0;
        a += n + (a[n] != '\0');
    }
    if (s->nservers == 0) {
        return wm_err_set(err, NULL, 0, 0, "server", "expected \"host:port\"");
    }
    snprintf(s->server_host, sizeof(s->server_host), "%s", s->servers[0]);
    s->server_port = s->server_ports[0];
    s->sni_set = p->domain != NULL;
    snprintf(s->sni, sizeof(s->sni), "%s", p->domain != NULL ? p->domain : s->server_host);
    if (p->ts && tnode_client_tls(p, s, err) < 0) {
        return -1;
    }
    if (prepare_mappings(p, s, err) < 0) {
        return -1;
    }
    fingerprint(p, s);
    copy_addr(s->entry, sizeof(s->entry), p->bind); /* NULL: no local entry */
    return 0;
}

/* ---- server part ---- */

static void ip_of(const char *addr, char *out, size_t cap)
{
    uint16_t port;

    if (wm_addr_split(addr, strlen(addr), out, cap, &port) < 0) {
        snprintf(out, cap, "0.0.0.0");
    }
}

/* A center anyone can reach and attach to without credentials deserves a
 * line in the log. */
static void warn_open_center(const struct wm_tunnel_opts *p, const char *center)
{
    char cip[WM_HOST_MAX];

    ip_of(center, cip, sizeof(cip));
    bool loopback = strncmp(cip, "127.", 4) == 0 || strcmp(cip, "::1") == 0 ||
                    strcasecmp(cip, "localhost") == 0;
    if (p->username == NULL && p->nclients == 0 && !(p->tc && p->two_way_tls) && !loopback) {
        wm_log(WM_LOG_WARN, 0, "proxy: tunnel server without username/password (or "
                               "tc + two_way_tls): any host that reaches %s can attach and "
                               "register domains and ports", center);
    }
}

static void copy_addr(char *dst, size_t cap, const char *addr)
{
    snprintf(dst, cap, "%s", addr != NULL ? addr : "");
}

/* A server node: where children attach, its TLS, the public listeners and
 * the ports clients may claim. */
static int prepare_server(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                          struct wm_err *err)
{
    const char *center = p->center_addr != NULL ? p->center_addr : p->bind;

    if (p->center_addr == NULL && s->client) {
        return wm_err_set(err, NULL, 0, 0, "center_addr",
                          "a node with both a parent (`server`) and children needs "
                          "center_addr (bind_addr is its local proxy entry)");
    }
    copy_addr(s->center, sizeof(s->center), center);
    warn_open_center(p, center);
    if (p->tc && tnode_server_tls(p, s, err) < 0) {
        return -1;
    }
    if (p->map_https_bind != NULL && tnode_map_tls(p, s, err) < 0) {
        return -1;
    }
    copy_addr(s->map_http, sizeof(s->map_http), p->map_http_bind);
    copy_addr(s->map_https, sizeof(s->map_https), p->map_https_bind);
    copy_addr(s->map_tcp, sizeof(s->map_tcp), p->map_tcp_bind);
    copy_addr(s->map_proxy, sizeof(s->map_proxy), p->map_proxy_bind);
    ip_of(p->map_tcp_bind != NULL ? p->map_tcp_bind : center, s->port_ip, sizeof(s->port_ip));
    if (p->allow_ports != NULL) {
        s->allow_ports = malloc(WM_TUNNEL_PORT_BYTES);
        if (s->allow_ports == NULL) {
            return oom(err);
        }
        memcpy(s->allow_ports, p->allow_ports, WM_TUNNEL_PORT_BYTES);
    }
    if (p->nclients > 0) {
        s->clients = wm_tunnel_clients_copy(p->clients, p->nclients);
        if (s->clients == NULL) {
            return oom(err);
        }
        s->nclients = p->nclients;
    }
    s->max_unauth = p->max_unauth > 0 ? p->max_unauth : WM_TUNNEL_UNAUTH_MAX_DEFAULT;
    s->max_unauth_per_ip =
        p->max_unauth_per_ip > 0 ? p->max_unauth_per_ip : WM_TUNNEL_UNAUTH_PER_IP_DEFAULT;
    return 0;
}

int wm_tunnel_prepare(const struct wm_tunnel_opts *p, struct wm_tunnel_settings **out,
                      struct wm_err *err)
{
    struct wm_tunnel_settings *s = calloc(1, sizeof(*s));

    *out = NULL;
    wm_err_clear(err);
    if (s == NULL) {
        return oom(err);
    }
    s->server = is_server(p);
    s->client = p->server != NULL;
    if (prepare_common(p, s, err) < 0 || (s->client && prepare_client(p, s, err) < 0) ||
        (s->server && prepare_server(p, s, err) < 0)) {
        wm_tunnel_settings_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

size_t wm_tunnel_listeners(const struct wm_tunnel_settings *s, const char **addr,
                           enum wm_tunnel_listen *kind, size_t max)
{
    size_t n = 0;

#define ADD(a, k)                                                                         \
    do {                                                                                  \
        if ((a)[0] != '\0' && n < max) {                                                  \
            addr[n] = (a);                                                                \
            kind[n++] = (k);                                                              \
        }                                                                                 \
    } while (0)
    if (s->client) {
        ADD(s->entry, WM_TUNNEL_LISTEN_ENTRY);
    }
    if (s->server) {
        ADD(s->center, WM_TUNNEL_LISTEN_CENTER);
        ADD(s->map_http, WM_TUNNEL_LISTEN_MAP_HTTP);
        ADD(s->map_https, WM_TUNNEL_LISTEN_MAP_HTTPS);
        ADD(s->map_tcp, WM_TUNNEL_LISTEN_MAP_TCP);
        ADD(s->map_proxy, WM_TUNNEL_LISTEN_MAP_PROXY);
    }
#undef ADD
    return n;
}

/* ---- listener services ---- */

struct tsvc {
    struct wm_service base;
    enum wm_tunnel_listen kind;
};

static const char *const kind_names[WM_TUNNEL_LISTEN_COUNT] = {
    "tunnel-entry", "tunnel-center", "tunnel-http", "tunnel-https", "tunnel-tcp", "tunnel-proxy",
};

static void entry_accept(int fd, const struct sockaddr *peer, socklen_t plen,
                         struct wm_listen_stats *stats)
{
    struct tnode *n = wm_tnode;
    char ps[WM_ADDR_STR_MAX] = "-";
    struct wm_tun *t = n != NULL ? tclient_carrier(n->client) : NULL;

    (void)plen;
    if (peer != NULL && n != NULL && wm_proxy_refuse_client(n->s->proxy_svc, fd, peer)) {
        return; /* allow_clients / deny_clients of this node's [proxy] */
    }
    if (peer != NULL) {
        wm_addr_format(peer, ps, sizeof(ps));
    }
    if (t == NULL) {
        /* Told in the client's protocol, never a bare reset. */
        tnode_refuse_proxy(fd, ps, "tunnel-entry", "the tunnel to the server is down", stats,
                           true);
        return;
    }
    char field[WM_TUN_PEER_MAX];
    tnode_peer_field(fd, peer, field, sizeof(field));
    struct bridge *b = bridge_new_fd(fd, ps, "tunnel-entry", stats, n->s->idle_timeout_ms);
    if (b != NULL) {
        bridge_answer_failures(b);
        struct wm_tun_open o = {WM_TUN_OPEN_PROXY, {"", 0}, {field, strlen(field)}};
        bridge_open_stream(b, t, &o, "parent");
    }
}

/* Route an accepted socket to its part of the node; false when that part
 * is not installed (yet). */
static bool tsvc_route(enum wm_tunnel_listen kind, int fd, const struct sockaddr *peer,
                       socklen_t plen, struct wm_listen_stats *stats)
{
    struct tnode *n = wm_tnode;

    if (n == NULL) {
        return false;
    }
    if (kind == WM_TUNNEL_LISTEN_ENTRY) {
        entry_accept(fd, peer, plen, stats);
        return true;
    }
    if (n->server == NULL) {
        return false;
    }
    if (kind == WM_TUNNEL_LISTEN_CENTER) {
        tserver_accept_carrier(n->server, fd, peer, plen, stats);
    } else {
        tserver_accept_public(n->server, kind, fd, peer, plen, stats);
    }
    return true;
}

/* Sockets accepted between a listener opening and its settings reaching
 * worker 0 (wm_tunnel_install() runs right after the listeners are in
 * place): held here and routed by install_on_worker(), never closed on a
 * client that came a moment early. Worker 0 only. */
#define TSVC_EARLY_MAX 64
static struct early {
    int fd;
    enum wm_tunnel_listen kind;
    struct sockaddr_storage peer;
    socklen_t plen;
    struct wm_listen_stats *stats;
} early[TSVC_EARLY_MAX];
static size_t nearly;

static void tsvc_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                        const struct sockaddr *peer, socklen_t plen,
                        struct wm_listen_stats *stats)
{
    struct tsvc *ts = (struct tsvc *)svc;
    struct tnode *n = wm_tnode;
    struct early *e;

    (void)w;
    if (n != NULL && n->draining) {
        close(fd);
        return;
    }
    if (tsvc_route(ts->kind, fd, peer, plen, stats)) {
        return;
    }
    if (nearly == TSVC_EARLY_MAX || plen > sizeof(early[0].peer)) {
        close(fd);
        return;
    }
    e = &early[nearly++];
    e->fd = fd;
    e->kind = ts->kind;
    e->plen = peer != NULL ? plen : 0;
    if (e->plen > 0) {
        memcpy(&e->peer, peer, plen);
    }
    e->stats = wm_listen_stats_ref(stats);
}

/* After an install: route what came early; what still has no home closes. */
static void route_early(void)
{
    for (size_t i = 0; i < nearly; i++) {
        struct early *e = &early[i];
        const struct sockaddr *peer = e->plen > 0 ? (struct sockaddr *)&e->peer : NULL;
        if (!tsvc_route(e->kind, e->fd, peer, e->plen, e->stats)) {
            close(e->fd);
        }
        wm_listen_stats_unref(e->stats);
    }
    nearly = 0;
}

static void tsvc_destroy(struct wm_service *svc)
{
    free(svc);
}

struct wm_service *wm_tunnel_service_new(enum wm_tunnel_listen kind)
{
    struct tsvc *ts = calloc(1, sizeof(*ts));

    if (ts == NULL) {
        return NULL;
    }
    wm_service_init(&ts->base, kind_names[kind], tsvc_accept, tsvc_destroy);
    ts->kind = kind;
    return &ts->base;
}

/* ---- install / drain ---- */

static void install_on_worker(struct wm_worker *w, void *arg)
{
    struct wm_tunnel_settings *s = arg;
    struct tnode *n = wm_tnode;

    if (s == NULL) {
        if (n != NULL) {
            tclient_free(n->client);
            tserver_free(n->server);
            wm_tunnel_settings_free(n->s);
            free(n);
            __atomic_store_n(&wm_tnode, NULL, __ATOMIC_RELAXED);
        }
        route_early(); /* nothing to route to: they close */
        return;
    }
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL) {
            wm_log(WM_LOG_ERROR, 0, "tunnel: out of memory");
            wm_tunnel_settings_free(s);
            return;
        }
        n->w = w;
        __atomic_store_n(&wm_tnode, n, __ATOMIC_RELAXED);
    }
    struct wm_tunnel_settings *old = n->s;
    bool keep_client = old != NULL && old->client && s->client && n->client != NULL &&
                       strcmp(old->fingerprint, s->fingerprint) == 0;
    if (!keep_client) {
        tclient_free(n->client);
        n->client = NULL;
    }
    n->s = s;
    if (s->client && n->client == NULL) {
        n->client = tclient_new(n, s);
    } else if (keep_client) {
        bool remap = old->reglen != s->reglen || memcmp(old->reg, s->reg, s->reglen) != 0;
        tclient_rebind(n->client, s, remap);
    }
    if (s->server && n->server == NULL) {
        n->server = tserver_new(n);
    } else if (s->server) {
        tserver_reconfigured(n->server);
    } else if (!s->server && n->server != NULL) {
        tserver_free(n->server);
        n->server = NULL;
    }
    wm_tunnel_settings_free(old);
    route_early();
}

void wm_tunnel_install(struct wm_tunnel_settings *s)
{
    if (s == NULL && !wm_tnode_present()) {
        return;
    }
    if (wm_worker_call(wm_worker_get(0), install_on_worker, s) < 0) {
        wm_log(WM_LOG_ERROR, 0, "tunnel: cannot reach worker 0");
        wm_tunnel_settings_free(s);
    }
}

void wm_tunnel_drain(struct wm_worker *w)
{
    struct tnode *n = wm_tnode;

    (void)w;
    if (n == NULL) {
        return;
    }
    n->draining = true;
    if (n->client != NULL) {
        tclient_drain(n->client);
    }
    if (n->server != NULL) {
        tserver_drain(n->server);
    }
}

void wm_tunnel_worker_exit(struct wm_worker *w, void *arg)
{
    (void)arg;
    if (wm_worker_index(w) == 0) {
        install_on_worker(w, NULL);
    }
}

/* ---- status ---- */

static void status_on_worker(struct wm_worker *w, void *arg)
{
    struct evbuffer *out = arg;
    struct tnode *n = wm_tnode;

    (void)w;
    if (n == NULL) {
        return;
    }
    evbuffer_add_printf(out, ",\"tunnel\":{\"client\":%s,\"server\":%s",
                        n->s->client ? "true" : "false", n->s->server ? "true" : "false");
    if (n->s->client) {
        struct wm_tun *t = tclient_carrier(n->client);
        evbuffer_add_printf(out, ",\"parent\":{\"addr\":\"%s:%u\",\"connected\":%s,",
                            n->s->server_host, n->s->server_port, t != NULL ? "true" : "false");
        evbuffer_add_printf(out, "\"transport\":\"%s\",\"streams\":%zu}",
                            t != NULL ? wm_tun_transport(t) : "", t != NULL ? wm_tun_nstreams(t) : 0);
    }
    if (n->server != NULL) {
        size_t nc = 0;
        tserver_status_json(n->server, out);
        evbuffer_add(out, ",\"clients\":[", 12);
        for (struct tcarrier *c = n->server->carriers; c != NULL; c = c->next) {
            if (!c->ready) {
                continue;
            }
            evbuffer_add_printf(out, "%s{\"addr\":", nc++ ? "," : "");
            wm_json_string(out, c->peer);
            evbuffer_add_printf(out, ",\"name\":");
            wm_json_string(out, wm_tun_peer_name(c->t));
            evbuffer_add_printf(out, ",\"transport\":\"%s\",\"streams\":%zu,\"mappings\":[",
                                wm_tun_transport(c->t), wm_tun_nstreams(c->t));
            size_t nm = 0;
            for (size_t i = 0; i < c->nmaps; i++) {
                if (!c->maps[i].active) {
                    continue;
                }
                evbuffer_add_printf(out, "%s{\"name\":", nm++ > 0 ? "," : "");
                wm_json_string(out, c->maps[i].name);
                evbuffer_add(out, ",\"route\":", 9);
                wm_json_string(out, c->maps[i].key);
                evbuffer_add(out, "}", 1);
            }
            evbuffer_add(out, "]}", 2);
        }
        evbuffer_add(out, "]", 1);
    }
    evbuffer_add(out, "}", 1);
}

void wm_tunnel_status_json(struct evbuffer *out)
{
    if (!wm_tnode_present()) {
        return; /* read without the lock: worst case a status without tunnel */
    }
    wm_worker_call(wm_worker_get(0), status_on_worker, out);
}
