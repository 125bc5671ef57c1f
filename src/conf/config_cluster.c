/*
 * conf/config_cluster.c - [cluster] (conf/config_cluster.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config_cluster.h"
#include "conf/config.h"
#include "conf/cval.h"
#include "core/arena.h"
#include "net/addr.h"

#define KOFF(f) offsetof(struct wm_conf_cluster, f)

static const struct wm_ckey cluster_keys[] = {
    {.name = "redis", .kind = WM_CK_STR, .off = KOFF(redis), .flags = WM_CKF_REQUIRED | WM_CKF_SECRET},
    {.name = "redis_ca", .kind = WM_CK_STR, .off = KOFF(redis_ca), .flags = WM_CKF_PATH},
    {.name = "redis_cert", .kind = WM_CK_STR, .off = KOFF(redis_cert), .flags = WM_CKF_PATH},
    {.name = "redis_key", .kind = WM_CK_STR, .off = KOFF(redis_key), .flags = WM_CKF_PATH},
    {.name = "node_id", .kind = WM_CK_STR, .off = KOFF(node_id), .flags = WM_CKF_REQUIRED},
    {.name = "advertise", .kind = WM_CK_HOSTPORT, .off = KOFF(advertise),
     .flags = WM_CKF_REQUIRED},
    {.name = "node_password", .kind = WM_CK_STR, .off = KOFF(node_password),
     .flags = WM_CKF_SECRET},
    {.name = "node_ca", .kind = WM_CK_STR, .off = KOFF(node_ca), .flags = WM_CKF_PATH},
    {.name = "node_cert", .kind = WM_CK_STR, .off = KOFF(node_cert), .flags = WM_CKF_PATH},
    {.name = "node_key", .kind = WM_CK_STR, .off = KOFF(node_key), .flags = WM_CKF_PATH},
    {.name = "ttl", .kind = WM_CK_DURATION, .off = KOFF(ttl_ms), .min = 1000, .max = 600000},
    {.name = NULL},
};

static void cluster_defaults(void *obj)
{
    struct wm_conf_cluster *c = obj;

    memset(c, 0, sizeof(*c));
    c->ttl_ms = WM_CONF_CLUSTER_TTL_MS;
}

static char *dup_n(struct wm_arena *a, const char *s, size_t n)
{
    char *d = wm_arena_alloc(a, n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Split "redis[s]://[user:pass@]host[:port][/db]" into c. NULL, or the reason. */
static const char *redis_url(struct wm_arena *a, struct wm_conf_cluster *c, const char *u)
{
    const char *p;
    const char *at;
    const char *end;
    char *e;

    if (strncmp(u, "rediss://", 9) == 0) {
        c->redis_tls = true;
        p = u + 9;
    } else if (strncmp(u, "redis://", 8) == 0) {
        p = u + 8;
    } else {
        return "expected \"redis://[user:pass@]host:port/db\" (rediss:// for TLS)";
    }
    end = p + strcspn(p, "/");
    at = memchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            c->redis_pass = dup_n(a, p, (size_t)(at - p));
        } else {
            if (colon > p) {
                c->redis_user = dup_n(a, p, (size_t)(colon - p));
            }
            c->redis_pass = dup_n(a, colon + 1, (size_t)(at - colon - 1));
        }
        p = at + 1;
    }
    const char *host = p;
    const char *hend;
    if (*p == '[') {
        hend = memchr(p, ']', (size_t)(end - p));
        if (hend == NULL) {
            return "unclosed [ in the host";
        }
        host = p + 1;
        p = hend + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (hend == NULL) {
            hend = end;
        }
        p = hend;
    }
    if (hend == host) {
        return "no host in the redis URL";
    }
    c->redis_host = dup_n(a, host, (size_t)(hend - host));
    c->redis_port = 6379;
    if (p < end && *p == ':') {
        unsigned long port = strtoul(p + 1, &e, 10);
        if (e != end || port == 0 || port > 65535) {
            return "bad port in the redis URL";
        }
        c->redis_port = (uint16_t)port;
    } else if (p != end) {
        return "unexpected text after the host in the redis URL";
    }
    if (*end == '/' && end[1] != '\0') {
        unsigned long db = strtoul(end + 1, &e, 10);
        if (*e != '\0' || db > 1000) {
            return "bad database number in the redis URL";
        }
        c->redis_db = (int64_t)db;
    }
    return NULL;
}

/* Mutual TLS between nodes: node_ca, node_cert and node_key together; the
 * nodes authenticate with them, node_password, or both. */
static void validate_node_tls(struct wm_cctx *ctx, const struct wm_conf_cluster *c,
                              const struct wm_cval *t, const char *path)
{
    static const char *const keys[] = {"node_ca", "node_cert", "node_key"};
    const char *vals[] = {c->node_ca, c->node_cert, c->node_key};
    size_t set = (vals[0] != NULL) + (vals[1] != NULL) + (vals[2] != NULL);
    char kp[64];

    for (size_t i = 0; i < 3 && set > 0 && set < 3; i++) {
        if (vals[i] == NULL) {
            const char *have = vals[0] != NULL ? keys[0] : vals[1] != NULL ? keys[1] : keys[2];
            snprintf(kp, sizeof(kp), "%s.%s", path, keys[i]);
            wm_cctx_error(ctx, wm_cval_get(t, have), kp,
                          "node_ca, node_cert and node_key go together (mutual TLS between "
                          "nodes)");
            return;
        }
    }
    if (set == 0 && c->node_password == NULL) {
        snprintf(kp, sizeof(kp), "%s.node_password", path);
        wm_cctx_error(ctx, t, kp, "the nodes authenticate each other with node_password, "
                                  "with node_ca + node_cert + node_key (mutual TLS), or both: "
                                  "set one");
    }
}

/* redis_ca/redis_cert/redis_key: only with rediss://; cert and key together. */
static void validate_redis_tls(struct wm_cctx *ctx, const struct wm_conf_cluster *c,
                               const struct wm_cval *t, const char *path)
{
    static const char *const keys[] = {"redis_ca", "redis_cert", "redis_key"};
    const char *vals[] = {c->redis_ca, c->redis_cert, c->redis_key};
    char kp[64];

    for (size_t i = 0; i < 3 && !c->redis_tls && c->redis != NULL; i++) {
        if (vals[i] != NULL) {
            snprintf(kp, sizeof(kp), "%s.%s", path, keys[i]);
            wm_cctx_error(ctx, wm_cval_get(t, keys[i]), kp,
                          "TLS towards Redis needs a rediss:// URL in redis");
            return;
        }
    }
    if ((c->redis_cert == NULL) != (c->redis_key == NULL)) {
        const char *missing = c->redis_cert == NULL ? "redis_cert" : "redis_key";
        const char *have = c->redis_cert == NULL ? "redis_key" : "redis_cert";
        snprintf(kp, sizeof(kp), "%s.%s", path, missing);
        wm_cctx_error(ctx, wm_cval_get(t, have), kp,
                      "redis_cert and redis_key go together (the client certificate Redis "
                      "asks for with tls-auth-clients)");
    }
}

static void cluster_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                             const char *path)
{
    struct wm_conf_cluster *c = obj;
    char kp[64];
    const char *why;

    if (c->redis != NULL && (why = redis_url(ctx->arena, c, c->redis)) != NULL) {
        snprintf(kp, sizeof(kp), "%s.redis", path);
        wm_cctx_error(ctx, wm_cval_get(t, "redis"), kp, "%s", why);
    }
    if (c->node_id != NULL) {
        size_t n = strlen(c->node_id);
        if (n == 0 || n > WM_CONF_NODE_ID_MAX ||
            strspn(c->node_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                n) {
            snprintf(kp, sizeof(kp), "%s.node_id", path);
            wm_cctx_error(ctx, wm_cval_get(t, "node_id"), kp,
                          "1 to %d of the characters A-Z a-z 0-9 . _ -", WM_CONF_NODE_ID_MAX);
        }
    }
    if (c->node_password != NULL && strlen(c->node_password) < 8) {
        snprintf(kp, sizeof(kp), "%s.node_password", path);
        wm_cctx_error(ctx, wm_cval_get(t, "node_password"), kp, "at least 8 characters");
    }
    validate_node_tls(ctx, c, t, path);
    validate_redis_tls(ctx, c, t, path);
}

const struct wm_cschema wm_conf_cluster_schema = {
    .name = "[cluster]",
    .size = sizeof(struct wm_conf_cluster),
    .keys = cluster_keys,
    .defaults = cluster_defaults,
    .validate = cluster_validate,
};

void wm_conf_cluster_check_roles(struct wm_cctx *ctx, const struct wm_conf *c,
                                 const struct wm_cval *top)
{
    const struct wm_conf_proxy *p = c->proxy;

    if (c->cluster == NULL) {
        return;
    }
    if (p == NULL || (p->center_addr == NULL && !p->tc && p->map_http_bind == NULL &&
                      p->map_https_bind == NULL && p->map_tcp_bind == NULL &&
                      (p->mode == NULL || strcmp(p->mode, "server") != 0))) {
        wm_cctx_error(ctx, wm_cval_get(top, "cluster"), "cluster",
                      "[cluster] is for tunnel server nodes: [proxy] needs center_addr "
                      "(or mode = \"server\")");
    } else if (c->cluster->node_ca != NULL && !p->tc) {
        wm_cctx_error(ctx, wm_cval_get(wm_cval_get(top, "cluster"), "node_ca"), "cluster.node_ca",
                      "mutual TLS between nodes runs on the tunnel port's TLS: [proxy] needs "
                      "tc = true");
    }
}

/* One address of a `server` list, checked; appended to out (len). */
static int add_server(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                      const char *a, size_t n, char *out, size_t *len, size_t cap)
{
    char one[WM_HOST_MAX + 8];

    if (n >= sizeof(one)) {
        wm_cctx_error(ctx, v, path, "address too long");
        return -1;
    }
    memcpy(one, a, n);
    one[n] = '\0';
    if (!wm_conf_is_hostport(one)) {
        wm_cctx_error(ctx, v, path, "expected \"host:port\", got \"%s\" (several: separated "
                                    "by spaces or commas, or an array)", one);
        return -1;
    }
    *len += (size_t)snprintf(out + *len, cap - *len, "%s%s", *len ? " " : "", one);
    return 0;
}

int wm_conf_decode_servers(struct wm_cctx *ctx, const struct wm_cval *v, void *dst,
                           const char *path)
{
    bool arr = wm_cval_type(v) == WM_CVAL_ARRAY;
    size_t n = arr ? wm_cval_count(v) : 1;
    size_t cap = 0;
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = arr ? wm_cval_at(v, i) : v;
        size_t sl = 0;
        if (wm_cval_type(e) != WM_CVAL_STRING || wm_cval_str(e, &sl) == NULL) {
            wm_cctx_error(ctx, e, path, "expected \"host:port\" or a list of them");
            return -1;
        }
        cap += sl + 1;
    }
    char *out = wm_arena_alloc(ctx->arena, cap + 1);
    if (out == NULL) {
        return -1;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = arr ? wm_cval_at(v, i) : v;
        size_t sl = 0;
        const char *str = wm_cval_str(e, &sl);
        for (size_t k = 0; k < sl;) {
            size_t w = strcspn(str + k, " ,\t");
            if (w > sl - k) {
                w = sl - k;
            }
            if (w > 0 && add_server(ctx, e, path, str + k, w, out, &len, cap + 1) < 0) {
                return -1;
            }
            k += w + 1;
        }
    }
    if (len == 0) {
        wm_cctx_error(ctx, v, path, "expected \"host:port\"");
        return -1;
    }
    *(const char **)dst = out;
    return 0;
}
