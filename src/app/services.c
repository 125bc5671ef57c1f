/*
 * app/services.c - turn a configuration (or the command line) into the
 * services and listening addresses of the process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/app_int.h"
#include "cluster/cluster.h"
#include "conf/config_cluster.h"
#include "conf/config.h"
#include "core/err.h"
#include "core/service.h"
#include "net/acl.h"
#include "net/addr.h"
#include "proxy/proxy.h"
#include "reverse/rev.h"
#include "stream/stream.h"
#include "tunnel/tunnel.h"

_Static_assert(WM_PORT_BITS_BYTES == WM_TUNNEL_PORT_BYTES, "allow_ports bitmaps agree");
_Static_assert(WM_CONF_MAP_NAME_MAX <= WM_TUNNEL_NAME_MAX, "mapping names fit the tunnel");
_Static_assert(WM_CONF_DOMAIN_MAX <= WM_TUNNEL_DOMAIN_MAX, "domains fit the tunnel");

static int add(struct wm_app_services *s, const char *addr, struct wm_service *svc, bool pinned,
               char *msg, size_t cap)
{
    struct wm_lspec *ns = realloc(s->specs, (s->n + 1) * sizeof(*ns));
    char(*na)[64] = NULL;

    if (ns != NULL) {
        s->specs = ns;
        na = realloc(s->addrs, (s->n + 1) * sizeof(*na));
    }
    if (ns == NULL || na == NULL) {
        wm_service_unref(svc);
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    s->addrs = na;
    snprintf(s->addrs[s->n], sizeof(s->addrs[s->n]), "%s", addr);
    for (size_t i = 0; i < s->n; i++) {
        s->specs[i].addr = s->addrs[i]; /* storage may have moved */
    }
    /* Whole-struct assignment: fields added to wm_lspec later start zeroed
     * (realloc leaves them uninitialised). */
    s->specs[s->n] = (struct wm_lspec){.addr = s->addrs[s->n], .svc = svc, .pinned = pinned};
    s->n++;
    return 0;
}

/* bind_addr when the section opens it, else NULL: a file's tunnel server
 * with its own center_addr opens a forward proxy only on a bind_addr it
 * names (wmproxy's `bind` has no default either). */
static const char *bind_of(const struct wm_conf_proxy *p)
{
    return p->bind_set || p->center_addr == NULL ? p->bind : NULL;
}

/* Does the proxy of p serve clients beyond loopback? Any listener of the
 * section on another address, or a client node's `proxy` mapping (its
 * proxy is published on the server's public port). */
static bool proxy_exposed(const struct wm_conf_proxy *p)
{
    const char *addrs[] = {bind_of(p),       p->center_addr,  p->map_http_bind,
                           p->map_https_bind, p->map_tcp_bind, p->map_proxy_bind};

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        if (addrs[i] != NULL && !wm_addr_listen_is_loopback(addrs[i])) {
            return true;
        }
    }
    for (size_t i = 0; p->server != NULL && i < p->nmappings; i++) {
        if (p->mappings[i].mode != NULL && strcmp(p->mappings[i].mode, "proxy") == 0) {
            return true;
        }
    }
    return false;
}

/* The compiled rules of p (a reference), or NULL with msg filled. */
static struct wm_acl *acl_of(const struct wm_conf_proxy *p, char *msg, size_t cap)
{
    struct wm_acl_spec spec = {
        .deny_targets = p->deny_targets, .ndeny_targets = p->ndeny_targets,
        .allow_targets = p->allow_targets, .nallow_targets = p->nallow_targets,
        .deny_clients = p->deny_clients, .ndeny_clients = p->ndeny_clients,
        .allow_clients = p->allow_clients, .nallow_clients = p->nallow_clients,
        .guard_local = proxy_exposed(p)};

    return wm_acl_new(&spec, msg, cap);
}

/* The forward proxy's options from a [proxy] section (the plain proxy, and
 * the one the tunnel serves on its streams). Holds the password: bzero it.
 * acl is borrowed (the services take references). */
static void proxy_opts_of(const struct wm_conf_proxy *p, struct wm_acl *acl,
                          struct wm_proxy_opts *po)
{
    wm_proxy_opts_default(po);
    po->acl = acl;
    po->flags = p->flags;
    po->connect_timeout_ms = (int)p->connect_timeout_ms;
    po->idle_timeout_ms = (int)p->idle_timeout_ms;
    po->handshake_timeout_ms = (int)p->handshake_timeout_ms;
    if (p->username != NULL) {
        po->auth = true;
        snprintf(po->user, sizeof(po->user), "%s", p->username);
        snprintf(po->pass, sizeof(po->pass), "%s", p->password != NULL ? p->password : "");
    }
}

static int plain_proxy(const struct wm_conf_proxy *p, struct wm_acl *acl,
                       struct wm_app_services *out, char *msg, size_t cap)
{
    struct wm_proxy_opts po;

    proxy_opts_of(p, acl, &po);
    struct wm_service *svc = wm_proxy_service_new(&po);
    explicit_bzero(&po, sizeof(po));
    if (svc == NULL) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return add(out, p->bind, svc, false, msg, cap);
}

/* ---- the tunnel's options (tunnel/tunnel.h) from a [proxy] section ---- */

/* The options and what they point into, owned here. */
struct tunnel_build {
    struct wm_tunnel_opts o;
    struct wm_proxy_opts po;
    struct wm_tunnel_mapping *maps; /* one block: the mappings, then their rules */
    uint8_t *ports;                 /* the allow_ports bitmap */
    struct wm_tunnel_client *clients; /* [[proxy.clients]], then their port bitmaps */
};

/* Everything but the arrays (enough for wm_tunnel_wanted()). */
static void tunnel_scalars(const struct wm_conf_proxy *p, struct wm_tunnel_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->server = p->server;
    o->server_mode = p->mode != NULL && strcmp(p->mode, "server") == 0;
    o->bind = bind_of(p);
    o->center_addr = p->center_addr;
    o->map_http_bind = p->map_http_bind;
    o->map_https_bind = p->map_https_bind;
    o->map_tcp_bind = p->map_tcp_bind;
    o->map_proxy_bind = p->map_proxy_bind;
    o->username = p->username;
    o->password = p->password;
    o->ts = p->ts;
    o->tc = p->tc;
    o->two_way_tls = p->two_way_tls;
    o->domain = p->domain;
    o->cert = p->cert;
    o->key = p->key;
    o->ca = p->ca;
    o->map_cert = p->map_cert;
    o->map_key = p->map_key;
    o->connect_timeout_ms = (int)p->connect_timeout_ms;
    o->idle_timeout_ms = (int)p->idle_timeout_ms;
    o->ping_ms = (int)p->heartbeat_ms;
    o->dead_ms = (int)p->heartbeat_timeout_ms;
    o->max_unauth = (int)p->max_unauth_carriers;
    o->max_unauth_per_ip = (int)p->max_unauth_carriers_per_ip;
    o->max_streams = (int)p->max_streams;
    o->state_dir = p->state_dir;
    o->known_hosts = p->known_hosts;
    o->server_fingerprint = p->server_fingerprint;
}

/* [[proxy.clients]]: entries and their port bitmaps, in one block. */
static int tunnel_clients(const struct wm_conf_proxy *p, struct tunnel_build *b,
                          struct wm_err *err)
{
    size_t n = p->nclients;
    char msg[256];

    if (n == 0) {
        return 0;
    }
    b->clients = calloc(1, n * (sizeof(*b->clients) + WM_PORT_BITS_BYTES));
    if (b->clients == NULL) {
        return wm_err_set(err, NULL, 0, 0, NULL, "out of memory");
    }
    uint8_t *bits = (uint8_t *)(b->clients + n);
    for (size_t i = 0; i < n; i++, bits += WM_PORT_BITS_BYTES) {
        const struct wm_conf_tclient *c = &p->clients[i];
        b->clients[i] = (struct wm_tunnel_client){
            .name = c->name, .password = c->password, .subject = c->subject,
            .domains = c->domains, .ndomains = c->ndomains, .groups = c->groups,
            .ngroups = c->ngroups};
        if (c->ports != NULL) {
            if (wm_parse_port_list(c->ports, bits, msg, sizeof(msg)) < 0) {
                return wm_err_set(err, NULL, 0, 0, "clients.ports", "%s", msg);
            }
            b->clients[i].ports = bits;
        }
    }
    b->o.clients = b->clients;
    b->o.nclients = n;
    return 0;
}

/* The mappings and their header rules, in one block. */
static int tunnel_mappings(const struct wm_conf_proxy *p, struct tunnel_build *b)
{
    size_t nrules = 0;

    for (size_t i = 0; i < p->nmappings; i++) {
        nrules += p->mappings[i].nheaders;
    }
    b->maps = calloc(1, p->nmappings * sizeof(*b->maps) + nrules * sizeof(struct wm_tunnel_rule) + 1);
    if (b->maps == NULL) {
        return -1;
    }
    struct wm_tunnel_rule *r = (struct wm_tunnel_rule *)(b->maps + p->nmappings);
    for (size_t i = 0; i < p->nmappings; i++) {
        const struct wm_conf_mapping *cm = &p->mappings[i];
        b->maps[i] = (struct wm_tunnel_mapping){
            .name = cm->name, .mode = cm->mode, .local_addr = cm->local_addr,
            .domain = cm->domain, .rules = r, .nrules = cm->nheaders,
            .remote_port = (uint16_t)cm->remote_port, .bind = cm->bind, .group = cm->group,
            .proxy_protocol = cm->proxy_protocol};
        for (size_t k = 0; k < cm->nheaders; k++, r++) {
            *r = (struct wm_tunnel_rule){cm->headers[k].request, cm->headers[k].op,
                                         cm->headers[k].name, cm->headers[k].value};
        }
    }
    b->o.mappings = b->maps;
    b->o.nmappings = p->nmappings;
    return 0;
}

static void tunnel_build_free(struct tunnel_build *b)
{
    explicit_bzero(&b->po, sizeof(b->po));
    free(b->maps);
    free(b->ports);
    free(b->clients);
}

static int tunnel_build(const struct wm_conf_proxy *p, struct wm_acl *acl, struct tunnel_build *b,
                        struct wm_err *err)
{
    char msg[256];

    memset(b, 0, sizeof(*b));
    tunnel_scalars(p, &b->o);
    proxy_opts_of(p, acl, &b->po);
    b->o.proxy = &b->po;
    if (tunnel_mappings(p, b) < 0) {
        return wm_err_set(err, NULL, 0, 0, NULL, "out of memory");
    }
    if (tunnel_clients(p, b, err) < 0) {
        return -1;
    }
    if (p->allow_ports != NULL) {
        b->ports = calloc(1, WM_PORT_BITS_BYTES);
        if (b->ports == NULL) {
            return wm_err_set(err, NULL, 0, 0, NULL, "out of memory");
        }
        if (wm_parse_port_list(p->allow_ports, b->ports, msg, sizeof(msg)) < 0) {
            return wm_err_set(err, NULL, 0, 0, "allow_ports", "%s", msg);
        }
        b->o.allow_ports = b->ports;
    }
    return 0;
}

/* wm_tunnel_prepare() for p; the error's key is put in the [proxy] section. */
static int tunnel_prepare(const struct wm_conf_proxy *p, struct wm_acl *acl, bool dry_run,
                          struct wm_tunnel_settings **out, struct wm_err *err)
{
    struct tunnel_build b;
    char key[WM_ERR_KEY_MAX];
    int r;

    *out = NULL;
    wm_err_clear(err);
    r = tunnel_build(p, acl, &b, err);
    if (r == 0) {
        b.o.dry_run = dry_run;
        r = wm_tunnel_prepare(&b.o, out, err);
    }
    tunnel_build_free(&b);
    if (r < 0) {
        snprintf(key, sizeof(key), "%s", err->key);
        snprintf(err->key, sizeof(err->key), "proxy%s%.*s", key[0] ? "." : "",
                 (int)(sizeof(err->key) - 7), key);
    }
    return r;
}

bool wm_app_tunnel_wanted(const struct wm_conf_proxy *p)
{
    struct wm_tunnel_opts o;

    tunnel_scalars(p, &o);
    return wm_tunnel_wanted(&o);
}

int wm_app_tunnel_check(const struct wm_conf_proxy *p, struct wm_err *err)
{
    struct wm_tunnel_settings *ts = NULL;
    int r = tunnel_prepare(p, NULL, true, &ts, err);

    wm_tunnel_settings_free(ts);
    return r;
}

/* The listeners of one [proxy] section: a plain forward proxy, or the
 * tunnel's (pinned to worker 0) and, for a server node with its own
 * center_addr, the forward proxy on bind_addr too when it names one. */
static int from_proxy(const struct wm_conf_proxy *p, struct wm_acl *acl,
                      struct wm_app_services *out, char *msg, size_t cap)
{
    const char *addr[WM_TUNNEL_LISTEN_COUNT];
    enum wm_tunnel_listen kind[WM_TUNNEL_LISTEN_COUNT];
    size_t n;
    bool bind_used = false;
    struct wm_err e;

    if (!wm_app_tunnel_wanted(p)) {
        return plain_proxy(p, acl, out, msg, cap);
    }
    if (tunnel_prepare(p, acl, false, &out->tunnel, &e) < 0) {
        wm_err_format(&e, msg, cap);
        return -1;
    }
    n = wm_tunnel_listeners(out->tunnel, addr, kind, WM_TUNNEL_LISTEN_COUNT);
    for (size_t i = 0; i < n; i++) {
        struct wm_service *svc = wm_tunnel_service_new(kind[i]);
        if (svc == NULL) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        if (bind_of(p) != NULL && strcmp(addr[i], p->bind) == 0) {
            bind_used = true;
        }
        if (add(out, addr[i], svc, true, msg, cap) < 0) {
            return -1;
        }
    }
    return bind_used || bind_of(p) == NULL ? 0 : plain_proxy(p, acl, out, msg, cap);
}

/* The services of one [proxy] section into out; err on failure. (The
 * builders below still write msg/cap: the tunnel's prepare does.) */
static int from_section(const struct wm_conf_proxy *p, struct wm_app_services *out,
                        struct wm_err *err)
{
    char msg[WM_ERR_MSG_MAX];
    struct wm_acl *acl;
    int r;

    memset(out, 0, sizeof(*out));
    if (p == NULL) {
        return 0;
    }
    acl = acl_of(p, msg, sizeof(msg));
    if (acl == NULL) {
        return wm_err_set(err, NULL, 0, 0, "proxy", "%s", msg);
    }
    r = from_proxy(p, acl, out, msg, sizeof(msg));
    wm_acl_unref(acl); /* the services hold their own references */
    if (r < 0) {
        wm_app_services_free(out);
        return wm_err_set(err, NULL, 0, 0, NULL, "%s", msg);
    }
    return 0;
}

/* The reverse proxy's listeners of [http], added to out. */
static int from_http(const struct wm_conf *c, struct wm_app_services *out, struct wm_err *err)
{
    struct wm_rev *r;
    char msg[WM_ERR_MSG_MAX];

    if (c->http == NULL) {
        return 0;
    }
    if (wm_rev_prepare(c->http, NULL, &r, err) < 0) {
        wm_conf_locate(c, err); /* file:line:col of the key, like the schema's errors */
        return -1;
    }
    for (size_t i = 0; i < wm_rev_nlisten(r); i++) {
        bool tls;
        const char *addr = wm_rev_listen_addr(r, i, &tls);
        struct wm_service *svc = wm_rev_service_new(r, i);
        for (size_t k = 0; k < out->n; k++) {
            if (strcmp(out->specs[k].addr, addr) == 0) {
                wm_service_unref(svc);
                wm_rev_unref(r);
                return wm_err_set(err, NULL, 0, 0, "http",
                                  "%s is used by [http] and by another section", addr);
            }
        }
        if (svc == NULL || add(out, addr, svc, false, msg, sizeof(msg)) < 0) {
            wm_rev_unref(r);
            return wm_err_set(err, NULL, 0, 0, "http", "out of memory");
        }
    }
    wm_rev_unref(r); /* the services hold it */
    return 0;
}

int wm_app_http_check(const struct wm_conf *c, struct wm_err *err)
{
    struct wm_rev *r = NULL;
    struct wm_stream *st = NULL;
    int rc = c->http != NULL ? wm_rev_prepare(c->http, NULL, &r, err) : 0;

    if (rc < 0) {
        wm_conf_locate(c, err);
    }
    wm_rev_unref(r);
    if (rc == 0 && c->stream != NULL) {
        rc = wm_stream_prepare(c->stream, &st, err);
        if (rc < 0) {
            wm_conf_locate(c, err);
        }
        wm_stream_unref(st);
    }
    return rc;
}

/* The listeners of [stream], added to out (UDP and TCP on one port are two). */
static int from_stream(const struct wm_conf *c, struct wm_app_services *out, struct wm_err *err)
{
    struct wm_stream *st;
    char msg[WM_ERR_MSG_MAX];

    if (c->stream == NULL) {
        return 0;
    }
    if (wm_stream_prepare(c->stream, &st, err) < 0) {
        wm_conf_locate(c, err); /* file:line:col, as `check` says it */
        return -1;
    }
    for (size_t i = 0; i < wm_stream_nlisten(st); i++) {
        bool dgram;
        const char *addr = wm_stream_listen_addr(st, i, &dgram);
        for (size_t k = 0; k < out->n && !dgram; k++) {
            if (!out->specs[k].dgram && strcmp(out->specs[k].addr, addr) == 0) {
                wm_stream_unref(st);
                return wm_err_set(err, NULL, 0, 0, "stream",
                                  "%s is used by [stream] and by another section", addr);
            }
        }
        struct wm_service *svc = wm_stream_service_new(st, i);
        if (svc == NULL || add(out, addr, svc, false, msg, sizeof(msg)) < 0) {
            wm_stream_unref(st);
            return wm_err_set(err, NULL, 0, 0, "stream", "out of memory");
        }
        out->specs[out->n - 1].dgram = dgram;
    }
    wm_stream_unref(st); /* the services hold it */
    return 0;
}

static void cluster_opts(const struct wm_conf *c, struct wm_cluster_opts *o)
{
    const struct wm_conf_cluster *k = c->cluster;

    *o = (struct wm_cluster_opts){
        .redis_host = k->redis_host, .redis_port = k->redis_port, .redis_user = k->redis_user,
        .redis_pass = k->redis_pass, .redis_db = (int)k->redis_db, .redis_tls = k->redis_tls,
        .redis_ca = k->redis_ca, .redis_cert = k->redis_cert, .redis_key = k->redis_key,
        .node_id = k->node_id,
        .advertise = k->advertise, .node_password = k->node_password, .node_ca = k->node_ca,
        .node_cert = k->node_cert, .node_key = k->node_key, .ttl_ms = (int)k->ttl_ms,
        .center_tls = c->proxy->tc,
    };
}

/* [cluster]: only on a tunnel server node. */
static int from_cluster(const struct wm_conf *c, struct wm_app_services *out, struct wm_err *err)
{
    const struct wm_conf_cluster *k = c->cluster;

    if (k == NULL) {
        return 0;
    }
    if (out->tunnel == NULL || c->proxy == NULL) { /* the config checked the roles */
        return wm_err_set(err, c->file, 0, 0, "cluster",
                          "[cluster] needs a tunnel server node ([proxy] with center_addr)");
    }
    struct wm_cluster_opts o;
    cluster_opts(c, &o);
    if (k->node_ca != NULL &&
        wm_tunnel_set_node_tls(out->tunnel, WM_CLUSTER_ALPN, k->node_ca, k->node_cert,
                               k->node_key, err) < 0) {
        return -1;
    }
    return wm_cluster_prepare(&o, &out->cluster, err);
}

int wm_app_cluster_check(const struct wm_conf *c, struct wm_err *err)
{
    struct wm_cluster_opts o;
    struct wm_cluster_settings *s = NULL;

    if (c->cluster == NULL || c->proxy == NULL) {
        return 0;
    }
    cluster_opts(c, &o);
    int r = wm_cluster_prepare(&o, &s, err); /* loads the node certificates */
    wm_cluster_settings_free(s);
    return r;
}

int wm_app_services_from_conf(const struct wm_conf *c, struct wm_app_services *out,
                              struct wm_err *err)
{
    if (from_section(c->proxy, out, err) < 0) {
        return -1;
    }
    if (from_http(c, out, err) < 0 || from_stream(c, out, err) < 0 ||
        from_cluster(c, out, err) < 0) {
        wm_app_services_free(out);
        return -1;
    }
    return 0;
}

int wm_app_services_from_flags(const struct wm_app_opts *o, struct wm_app_services *out,
                               struct wm_err *err)
{
    return from_section(&o->proxy, out, err);
}

void wm_app_services_free(struct wm_app_services *s)
{
    for (size_t i = 0; i < s->n; i++) {
        wm_service_unref(s->specs[i].svc);
    }
    free(s->specs);
    free(s->addrs);
    wm_tunnel_settings_free(s->tunnel);
    wm_cluster_settings_free(s->cluster);
    memset(s, 0, sizeof(*s));
}
