/*
 * cluster/cluster.c - life cycle of the cluster state on worker 0, the
 * hooks the tunnel server calls (tunnel/tunnel.h), and /status.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/tls.h"
#include "tunnel/mux.h"
#include "tunnel/tunnel.h"

struct cluster *wm_cluster_current;

/* ---- settings ---- */

void wm_cluster_settings_free(struct wm_cluster_settings *s)
{
    if (s == NULL) {
        return;
    }
    free(s->redis_host);
    free(s->redis_user);
    if (s->redis_pass != NULL) {
        explicit_bzero(s->redis_pass, strlen(s->redis_pass));
        free(s->redis_pass);
    }
    if (s->node_password != NULL) {
        explicit_bzero(s->node_password, strlen(s->node_password));
        free(s->node_password);
    }
    SSL_CTX_free(s->peer_ctx);
    SSL_CTX_free(s->redis_ctx);
    free(s->redis_tls);
    free(s->node_tls);
    free(s);
}

static char *dup_or_null(const char *v, bool *oom)
{
    char *d = v != NULL ? strdup(v) : NULL;

    if (v != NULL && d == NULL) {
        *oom = true;
    }
    return d;
}

/* Each of the three {key, path} given (path not NULL) can be read. 0, or
 * -1 with err naming the key. */
static int files_readable(const char *const files[3][2], struct wm_err *err)
{
    for (size_t i = 0; i < 3; i++) {
        if (files[i][1] != NULL && access(files[i][1], R_OK) < 0) {
            int e = errno;
            return wm_err_set(err, NULL, 0, 0, files[i][0], "cannot read %s: %s", files[i][1],
                              strerror(e));
        }
    }
    return 0;
}

/* Mutual TLS between nodes: present node_cert, check the other node's
 * against node_ca, and offer WM_CLUSTER_ALPN so its center answers as a
 * node. Finishes prepare (takes s). */
static int prepare_node_tls(const struct wm_cluster_opts *o, struct wm_cluster_settings *s,
                            struct wm_cluster_settings **out, struct wm_err *err)
{
    static const unsigned char alpn[] = "\x0c" WM_CLUSTER_ALPN;
    struct wm_tls_opts to = {o->node_cert, o->node_key, o->node_ca, true};
    char msg[512];
    size_t n = strlen(o->node_ca) + strlen(o->node_cert) + strlen(o->node_key) + 3;

    const char *const files[][2] = {{"cluster.node_ca", o->node_ca},
                                    {"cluster.node_cert", o->node_cert},
                                    {"cluster.node_key", o->node_key}};
    if (files_readable(files, err) < 0) {
        wm_cluster_settings_free(s);
        return -1;
    }
    if ((s->node_tls = malloc(n)) == NULL) {
        wm_cluster_settings_free(s);
        return wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
    }
    snprintf(s->node_tls, n, "%s\n%s\n%s", o->node_ca, o->node_cert, o->node_key);
    s->peer_ctx = wm_tls_client_ctx(&to, msg, sizeof(msg));
    if (s->peer_ctx == NULL) {
        wm_cluster_settings_free(s);
        return wm_err_set(err, NULL, 0, 0, "cluster.node_cert", "%s", msg);
    }
    SSL_CTX_set_min_proto_version(s->peer_ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_alpn_protos(s->peer_ctx, alpn, sizeof(alpn) - 1) != 0) {
        wm_cluster_settings_free(s);
        return wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
    }
    *out = s;
    return 0;
}

/* rediss://: the TLS context towards Redis (cluster_tls.c). 0, or -1 with err. */
static int prepare_redis_tls(const struct wm_cluster_opts *o, struct wm_cluster_settings *s,
                             struct wm_err *err)
{
    struct wm_tls_opts to = {o->redis_cert, o->redis_key, o->redis_ca, true};
    const char *const files[][2] = {{"cluster.redis_ca", o->redis_ca},
                                    {"cluster.redis_cert", o->redis_cert},
                                    {"cluster.redis_key", o->redis_key}};
    char msg[512];
    size_t n = 3;

    if (files_readable(files, err) < 0) {
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        n += files[i][1] != NULL ? strlen(files[i][1]) : 0;
    }
    if ((s->redis_tls = malloc(n)) == NULL) {
        return wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
    }
    snprintf(s->redis_tls, n, "%s\n%s\n%s", o->redis_ca ? o->redis_ca : "",
             o->redis_cert ? o->redis_cert : "", o->redis_key ? o->redis_key : "");
    s->redis_ctx = wm_tls_client_ctx(&to, msg, sizeof(msg));
    if (s->redis_ctx == NULL) {
        return wm_err_set(err, NULL, 0, 0, o->redis_cert != NULL ? "cluster.redis_cert"
                                                                 : "cluster.redis_ca", "%s", msg);
    }
    SSL_CTX_set_min_proto_version(s->redis_ctx, TLS1_2_VERSION);
    ctls_watch_alerts(s->redis_ctx);
    return 0;
}

int wm_cluster_prepare(const struct wm_cluster_opts *o, struct wm_cluster_settings **out,
                       struct wm_err *err)
{
    struct wm_cluster_settings *s = calloc(1, sizeof(*s));
    bool oom = false;

    *out = NULL;
    if (s == NULL) {
        wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
        return -1;
    }
    s->redis_host = dup_or_null(o->redis_host, &oom);
    s->redis_port = o->redis_port;
    s->redis_user = dup_or_null(o->redis_user, &oom);
    s->redis_pass = dup_or_null(o->redis_pass, &oom);
    s->redis_db = o->redis_db;
    s->node_password = dup_or_null(o->node_password, &oom);
    s->ttl_ms = o->ttl_ms > 0 ? o->ttl_ms : 5000;
    s->center_tls = o->center_tls;
    snprintf(s->node_id, sizeof(s->node_id), "%s", o->node_id);
    snprintf(s->advertise, sizeof(s->advertise), "%s", o->advertise);
    if (oom || s->redis_host == NULL || (o->node_password != NULL && s->node_password == NULL)) {
        wm_cluster_settings_free(s);
        wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
        return -1;
    }
    if (o->redis_tls && prepare_redis_tls(o, s, err) < 0) {
        wm_cluster_settings_free(s);
        return -1;
    }
    if (o->node_ca != NULL) {
        return prepare_node_tls(o, s, out, err);
    }
    if (s->node_password == NULL) {
        wm_cluster_settings_free(s);
        wm_err_set(err, NULL, 0, 0, "cluster.node_password",
                   "the nodes need node_password or node_ca/node_cert/node_key");
        return -1;
    }
    s->peer_ctx = SSL_CTX_new(TLS_client_method());
    if (s->peer_ctx == NULL) {
        wm_cluster_settings_free(s);
        wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
        return -1;
    }
    SSL_CTX_set_min_proto_version(s->peer_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(s->peer_ctx, SSL_VERIFY_NONE, NULL);
    *out = s;
    return 0;
}

/* Do a and b need a new connection? */
static bool settings_same(const struct wm_cluster_settings *a, const struct wm_cluster_settings *b)
{
#define SAME_STR(x, y) (((x) == NULL && (y) == NULL) || ((x) != NULL && (y) != NULL && strcmp(x, y) == 0))
    return SAME_STR(a->redis_host, b->redis_host) && a->redis_port == b->redis_port &&
           SAME_STR(a->redis_user, b->redis_user) && SAME_STR(a->redis_pass, b->redis_pass) &&
           a->redis_db == b->redis_db && SAME_STR(a->redis_tls, b->redis_tls) &&
           strcmp(a->node_id, b->node_id) == 0 &&
           strcmp(a->advertise, b->advertise) == 0 &&
           SAME_STR(a->node_password, b->node_password) && SAME_STR(a->node_tls, b->node_tls) &&
           a->ttl_ms == b->ttl_ms && a->center_tls == b->center_tls;
#undef SAME_STR
}

/* ---- hooks (tunnel/tunnel.h) ---- */

static struct cclaim *claim_find(struct cluster *cl, const char *ns, const char *key)
{
    for (struct cclaim *c = cl->claims; c != NULL; c = c->next) {
        if (strcmp(c->ns, ns) == 0 && strcmp(c->key, key) == 0) {
            return c;
        }
    }
    return NULL;
}

static const char *hook_check(const char *ns, const char *key, const char *group, char *why,
                              size_t cap)
{
    struct cluster *cl = wm_cluster_current;

    if (cl == NULL) {
        return NULL;
    }
    cl->check_contested = false;
    if (!cl->up || cl->cache_ms == 0) {
        cl->claims_refused++;
        wm_fmt(why, cap, "the cluster store (Redis) is unreachable: new routes are refused "
                         "until it is back");
        return why;
    }
    for (size_t i = 0; i < cl->nroutes; i++) {
        const struct croute *r = &cl->routes[i];
        const struct cnode *n = &cl->nodes[r->node];
        if (strcmp(r->ns, ns) != 0 || strcmp(r->key, key) != 0 ||
            strcmp(n->id, cl->s->node_id) == 0) {
            continue;
        }
        if (group[0] != '\0' && strcmp(r->group, group) == 0) {
            continue; /* same group: shared across the cluster */
        }
        if (cpeer_down(cl, n->id)) {
            /* Its node is gone (a client failing over from it comes here
             * before its keys expire): take over, contested until then. */
            cl->check_contested = true;
            continue;
        }
        cl->claims_refused++;
        wm_fmt(why, cap, "%s %s is already registered by client %s on node %s (mapping \"%s\")",
               strcmp(ns, "web") == 0 ? "domain" : "port", key, r->client, n->id, r->mapping);
        return why;
    }
    return NULL;
}

static void hook_claimed(const char *ns, const char *key, const char *group, const char *client,
                         const char *mapping)
{
    struct cluster *cl = wm_cluster_current;
    struct cclaim *c;

    if (cl == NULL) {
        return;
    }
    if ((c = claim_find(cl, ns, key)) != NULL) {
        c->refs++;
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        return;
    }
    snprintf(c->ns, sizeof(c->ns), "%s", ns);
    snprintf(c->key, sizeof(c->key), "%s", key);
    snprintf(c->group, sizeof(c->group), "%s", group);
    snprintf(c->client, sizeof(c->client), "%s", client);
    snprintf(c->mapping, sizeof(c->mapping), "%s", mapping);
    c->refs = 1;
    if (cl->check_contested) {
        c->contested_until = wm_now_ms() + 3 * (uint64_t)cl->s->ttl_ms;
        wm_log(WM_LOG_INFO, 0, "cluster: %s %s taken over from a node that is down", ns, key);
    }
    cl->check_contested = false;
    c->next = cl->claims;
    cl->claims = c;
    credis_claim(cl, c, true);
}

static void hook_released(const char *ns, const char *key, const char *group,
                          const char *client, const char *mapping)
{
    struct cluster *cl = wm_cluster_current;

    (void)group;
    (void)client;
    (void)mapping;
    if (cl == NULL) {
        return;
    }
    for (struct cclaim **pp = &cl->claims; *pp != NULL; pp = &(*pp)->next) {
        struct cclaim *c = *pp;
        if (strcmp(c->ns, ns) != 0 || strcmp(c->key, key) != 0) {
            continue;
        }
        if (--c->refs > 0) {
            return;
        }
        *pp = c->next;
        credis_release(cl, c);
        free(c);
        return;
    }
}

static struct wm_tun *hook_route(const char *ns, const char *key, char *node, size_t cap)
{
    struct cluster *cl = wm_cluster_current;
    size_t cand[16];
    struct wm_tun *ct[16];
    size_t n = 0;

    if (cap > 0) {
        node[0] = '\0';
    }
    if (cl == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cl->nroutes && n < 16; i++) {
        const struct croute *r = &cl->routes[i];
        const struct cnode *nd = &cl->nodes[r->node];
        struct wm_tun *t;
        if (strcmp(r->ns, ns) != 0 || strcmp(r->key, key) != 0 ||
            strcmp(nd->id, cl->s->node_id) == 0) {
            continue;
        }
        if ((t = cpeer_carrier(cl, nd->id)) == NULL) {
            snprintf(node, cap, "%s", nd->id); /* held there, but no way to it now */
            continue;
        }
        cand[n] = r->node;
        ct[n++] = t;
    }
    if (n == 0) {
        return NULL;
    }
    size_t k = cl->rr++ % n;
    snprintf(node, cap, "%s", cl->nodes[cand[k]].id);
    return ct[k];
}

static const char *hook_node_password(const char *user, size_t len)
{
    struct cluster *cl = wm_cluster_current;

    if (cl == NULL || len <= 5 || memcmp(user, "node:", 5) != 0) {
        return NULL;
    }
    return cl->s->node_password;
}

static const struct wm_tunnel_cluster hooks = {
    .check = hook_check,
    .claimed = hook_claimed,
    .released = hook_released,
    .route = hook_route,
    .node_password = hook_node_password,
};

void cluster_claim_lost(struct cluster *cl, struct cclaim *c, const char *holder)
{
    char why[CL_KEY_MAX + 128];

    cl->claims_lost++;
    wm_fmt(why, sizeof(why), "%s %s was claimed first by another node (%s)", c->ns, c->key,
           holder);
    /* The tunnel releases the mappings it withdraws: not through us. */
    wm_tunnel_withdraw(c->ns, c->key, why);
    for (struct cclaim **pp = &cl->claims; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            free(c);
            return;
        }
    }
}

/* ---- life cycle (worker 0) ---- */

static void cluster_free(struct cluster *cl)
{
    if (cl == NULL) {
        return;
    }
    if (wm_cluster_current == cl) {
        __atomic_store_n(&wm_cluster_current, NULL, __ATOMIC_RELAXED);
        wm_tunnel_cluster = NULL;
        climit_install(false);
        climit_set_up(false);
        cauth_install(false);
    }
    cl->closing = true;
    wm_tunnel_publish_ports(NULL, 0); /* the ports of other nodes' routes close */
    cpeer_free_all(cl);
    credis_stop(cl);
    while (cl->claims != NULL) {
        struct cclaim *c = cl->claims;
        cl->claims = c->next;
        free(c);
    }
    free(cl->nodes);
    free(cl->routes);
    wm_cluster_settings_free(cl->s);
    free(cl);
}

static void install_on_worker(struct wm_worker *w, void *arg)
{
    struct wm_cluster_settings *s = arg;
    struct cluster *cl = wm_cluster_current;

    if (s == NULL) {
        cluster_free(cl);
        return;
    }
    if (cl != NULL && settings_same(cl->s, s)) {
        wm_cluster_settings_free(s); /* same store, same node: keep everything */
        return;
    }
    /* New store or identity: what local clients hold is claimed again there
     * (the tunnel announces a mapping once, when it is registered). */
    struct cclaim *held = cl != NULL ? cl->claims : NULL;
    if (cl != NULL) {
        cl->claims = NULL;
    }
    cluster_free(cl);
    if ((cl = calloc(1, sizeof(*cl))) == NULL) {
        wm_cluster_settings_free(s);
        while (held != NULL) {
            struct cclaim *c = held;
            held = c->next;
            free(c);
        }
        return;
    }
    cl->w = w;
    cl->s = s;
    cl->claims = held;
    for (struct cclaim *c = held; c != NULL; c = c->next) {
        c->stored = false;
    }
    cl->backoff_ms = CL_BACKOFF_MIN_MS;
    __atomic_store_n(&wm_cluster_current, cl, __ATOMIC_RELAXED);
    wm_tunnel_cluster = &hooks;
    climit_install(true);
    cauth_install(true);
    wm_log(WM_LOG_INFO, 0, "cluster: node %s (advertised at %s), store %s://%s:%u/%d",
           s->node_id, s->advertise, s->redis_ctx != NULL ? "rediss" : "redis", s->redis_host,
           s->redis_port, s->redis_db);
    credis_start(cl);
}

void wm_cluster_install(struct wm_cluster_settings *s)
{
    if (s == NULL && __atomic_load_n(&wm_cluster_current, __ATOMIC_RELAXED) == NULL) {
        return;
    }
    if (wm_worker_call(wm_worker_get(0), install_on_worker, s) < 0) {
        wm_log(WM_LOG_ERROR, 0, "cluster: cannot reach worker 0");
        wm_cluster_settings_free(s);
    }
}

void wm_cluster_worker_exit(struct wm_worker *w)
{
    if (wm_worker_index(w) == 0) {
        cluster_free(wm_cluster_current);
    }
}

/* ---- status ---- */

static void status_routes(struct cluster *cl, size_t node, struct evbuffer *out)
{
    size_t k = 0;

    evbuffer_add(out, "[", 1);
    for (size_t i = 0; i < cl->nroutes; i++) {
        const struct croute *r = &cl->routes[i];
        if (r->node != node) {
            continue;
        }
        evbuffer_add_printf(out, "%s{\"ns\":", k++ ? "," : "");
        wm_json_string(out, r->ns); /* as Redis had it: any bytes */
        evbuffer_add(out, ",\"key\":", 7);
        wm_json_string(out, r->key);
        evbuffer_add(out, ",\"client\":", 10);
        wm_json_string(out, r->client);
        evbuffer_add(out, ",\"mapping\":", 11);
        wm_json_string(out, r->mapping);
        evbuffer_add(out, ",\"group\":", 9);
        wm_json_string(out, r->group);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]", 1);
}

static void status_on_worker(struct wm_worker *w, void *arg)
{
    struct cluster *cl = wm_cluster_current;
    struct evbuffer *out = arg;
    uint64_t now = wm_now_ms();

    (void)w;
    if (cl == NULL) {
        return;
    }
    evbuffer_add(out, ",\"cluster\":{\"node\":", 19);
    wm_json_string(out, cl->s->node_id);
    evbuffer_add(out, ",\"advertise\":", 13);
    wm_json_string(out, cl->s->advertise);
    evbuffer_add_printf(out, ",\"redis\":{\"addr\":\"%s:%u\",\"tls\":%s,\"state\":\"%s\","
                             "\"connects\":%llu,\"disconnects\":%llu,\"last_error\":",
                        cl->s->redis_host, cl->s->redis_port,
                        cl->s->redis_ctx != NULL ? "true" : "false", cl->up ? "up" : "down",
                        (unsigned long long)cl->connects, (unsigned long long)cl->disconnects);
    wm_json_string(out, cl->last_error);
    evbuffer_add_printf(out, "},\"cache_age_ms\":%lld,\"refreshes\":%llu,\"claims_refused\":%llu,"
                             "\"claims_lost\":%llu,\"nodes\":[",
                        cl->cache_ms ? (long long)(now - cl->cache_ms) : -1LL,
                        (unsigned long long)cl->refreshes, (unsigned long long)cl->claims_refused,
                        (unsigned long long)cl->claims_lost);
    for (size_t i = 0; i < cl->nnodes; i++) {
        evbuffer_add(out, i ? ",{\"id\":" : "{\"id\":", i ? 7 : 6);
        wm_json_string(out, cl->nodes[i].id);
        evbuffer_add(out, ",\"advertise\":", 13);
        wm_json_string(out, cl->nodes[i].advertise);
        evbuffer_add_printf(out, ",\"self\":%s,\"routes\":",
                            strcmp(cl->nodes[i].id, cl->s->node_id) == 0 ? "true" : "false");
        status_routes(cl, i, out);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "],\"claims\":[", 12);
    size_t k = 0;
    for (struct cclaim *c = cl->claims; c != NULL; c = c->next) {
        evbuffer_add_printf(out, "%s{\"ns\":\"%s\",\"key\":", k++ ? "," : "", c->ns);
        wm_json_string(out, c->key);
        evbuffer_add_printf(out, ",\"stored\":%s}", c->stored ? "true" : "false");
    }
    evbuffer_add(out, "],", 2);
    cpeer_status_json(cl, out);
    evbuffer_add(out, ",", 1);
    climit_status_json(out);
    evbuffer_add(out, ",", 1);
    cauth_status_json(out);
    evbuffer_add(out, "}", 1);
}

void wm_cluster_status_json(struct evbuffer *out)
{
    if (__atomic_load_n(&wm_cluster_current, __ATOMIC_RELAXED) == NULL) {
        return; /* read without the lock, as the tunnel's */
    }
    wm_worker_call(wm_worker_get(0), status_on_worker, out);
}

void cl_retry_later(struct event *ev, unsigned *backoff_ms)
{
    uint32_t r = 0;
    struct timeval tv;

    RAND_bytes((unsigned char *)&r, sizeof(r));
    unsigned ms = *backoff_ms / 2 + r % (*backoff_ms / 2 + 1);
    *backoff_ms = *backoff_ms * 2 > CL_BACKOFF_MAX_MS ? CL_BACKOFF_MAX_MS : *backoff_ms * 2;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}
