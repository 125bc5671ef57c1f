/*
 * conf/config_http.c - schema of [http] (reverse proxy, file server) and
 * [stream] (L4 forwarding). The features arrive in later releases: every
 * key is recognised and type-checked now; nothing is stored yet.
 */
#include <stdio.h>
#include <string.h>

#include "conf/config_int.h"
#include "conf/cval.h"

#define NS WM_CK_NOSTORE

static const char *const lb_methods[] = {"round_robin", "weight", "random", "ip_hash",
                                         "least_conn", NULL};
static const char *const stream_modes[] = {"tcp", "udp", "tcp2ws", "tcp2wss", "ws2tcp",
                                           "wss2tcp", NULL};
static const char *const upstream_binds[] = {"tcp", "udp", NULL};

static const struct wm_ckey upstream_server_keys[] = {
    {.name = "addr", .kind = WM_CK_HOSTPORT, .off = NS, .flags = WM_CKF_REQUIRED},
    {.name = "weight", .kind = WM_CK_INT, .off = NS, .min = 1, .max = 10000},
    {.name = "fail_timeout", .kind = WM_CK_DURATION, .off = NS},
    {.name = "max_fails", .kind = WM_CK_INT, .off = NS, .min = 0, .max = 1000000},
    {.name = "backup", .kind = WM_CK_BOOL, .off = NS},
    {.name = NULL},
};

static const struct wm_cschema upstream_server_schema = {
    .name = "an upstream server", .keys = upstream_server_keys,
};

static const struct wm_ckey health_keys[] = {
    {.name = "interval", .kind = WM_CK_DURATION, .off = NS},
    {.name = "timeout", .kind = WM_CK_DURATION, .off = NS},
    {.name = "path", .kind = WM_CK_STR, .off = NS},
    {.name = "fall", .kind = WM_CK_INT, .off = NS, .min = 1, .max = 1000},
    {.name = "rise", .kind = WM_CK_INT, .off = NS, .min = 1, .max = 1000},
    {.name = NULL},
};

static const struct wm_cschema health_schema = {.name = "a health check", .keys = health_keys};

static const struct wm_ckey upstream_keys[] = {
    {.name = "name", .kind = WM_CK_STR, .off = NS, .flags = WM_CKF_REQUIRED},
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &upstream_server_schema,
     .flags = WM_CKF_REQUIRED},
    {.name = "bind", .kind = WM_CK_ENUM, .off = NS, .choices = upstream_binds},
    {.name = "method", .kind = WM_CK_ENUM, .off = NS, .choices = lb_methods},
    {.name = "health_check", .kind = WM_CK_TABLE, .off = NS, .sub = &health_schema},
    {.name = NULL},
};

static const struct wm_cschema upstream_schema = {.name = "an upstream", .keys = upstream_keys};

/* Keys every level of [http] may carry (inherited downwards). */
#define COMMON_KEYS                                                                       \
    {.name = "max_read_buf", .kind = WM_CK_SIZE, .off = NS},                              \
        {.name = "rate_limit", .kind = WM_CK_RATE, .off = NS},                            \
        {.name = "client_read_timeout", .kind = WM_CK_DURATION, .off = NS},               \
        {.name = "client_write_timeout", .kind = WM_CK_DURATION, .off = NS},              \
        {.name = "client_timeout", .kind = WM_CK_DURATION, .off = NS},                    \
        {.name = "client_ka_timeout", .kind = WM_CK_DURATION, .off = NS},                 \
        {.name = "proxy_connect_timeout", .kind = WM_CK_DURATION, .off = NS},             \
        {.name = "proxy_read_timeout", .kind = WM_CK_DURATION, .off = NS},                \
        {.name = "proxy_write_timeout", .kind = WM_CK_DURATION, .off = NS},               \
        {.name = "proxy_timeout", .kind = WM_CK_DURATION, .off = NS},                     \
        {.name = "access_log", .kind = WM_CK_STR, .off = NS},                             \
        {.name = "error_log", .kind = WM_CK_STR, .off = NS},                              \
        {.name = "log_format", .kind = WM_CK_STRMAP, .off = NS},                          \
        {.name = "log_names", .kind = WM_CK_STRMAP, .off = NS},                           \
        {.name = "limit_req", .kind = WM_CK_STR, .off = NS},                              \
        {.name = "headers", .kind = WM_CK_HEADERS, .off = NS},                            \
        {.name = "proxy_url", .kind = WM_CK_STR, .off = NS},                              \
        {.name = "allow_ip", .kind = WM_CK_STRLIST, .off = NS},                           \
        {.name = "deny_ip", .kind = WM_CK_STRLIST, .off = NS},                            \
        {.name = "root", .kind = WM_CK_STR, .off = NS},                                   \
        {.name = "upstream", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &upstream_schema}

static const struct wm_ckey file_server_keys[] = {
    {.name = "root", .kind = WM_CK_STR, .off = NS},
    {.name = "prefix", .kind = WM_CK_STR, .off = NS},
    {.name = "hide", .kind = WM_CK_STRLIST, .off = NS},
    {.name = "index", .kind = WM_CK_STRLIST, .off = NS},
    {.name = "browse", .kind = WM_CK_BOOL, .off = NS},
    {.name = "disable_compress", .kind = WM_CK_BOOL, .off = NS},
    {.name = "precompressed", .kind = WM_CK_STRLIST, .off = NS},
    {.name = "cache_control", .kind = WM_CK_STR, .off = NS},
    {.name = "charset", .kind = WM_CK_STR, .off = NS},
    {.name = NULL},
};

static const struct wm_cschema file_server_schema = {
    .name = "a file_server table", .keys = file_server_keys,
};

static const struct wm_ckey reverse_keys[] = {
    {.name = "file_server", .kind = WM_CK_TABLE, .off = NS, .sub = &file_server_schema},
    {.name = NULL},
};

const struct wm_cschema wm_conf_reverse_schema = {.name = "[reverse]", .keys = reverse_keys};

static const struct wm_ckey location_keys[] = {
    {.name = "rule", .kind = WM_CK_STR, .off = NS, .flags = WM_CKF_REQUIRED},
    {.name = "method", .kind = WM_CK_STRLIST, .off = NS},
    {.name = "file_server", .kind = WM_CK_TABLE, .off = NS, .sub = &file_server_schema},
    {.name = "static_response", .kind = WM_CK_STR, .off = NS},
    {.name = "proxy_pass", .kind = WM_CK_STR, .off = NS},
    {.name = "reverse_proxy", .kind = WM_CK_STR, .off = NS},
    {.name = "try_paths", .kind = WM_CK_STR, .off = NS},
    {.name = "is_ws", .kind = WM_CK_BOOL, .off = NS},
    {.name = "up_name", .kind = WM_CK_STR, .off = NS},
    COMMON_KEYS,
    {.name = NULL},
};

static const struct wm_cschema location_schema = {
    .name = "a [[http.server.location]] entry", .keys = location_keys,
};

static const struct wm_ckey http_server_keys[] = {
    {.name = "bind_addr", .kind = WM_CK_LISTEN, .off = NS, .alias = "bind"},
    {.name = "up_name", .kind = WM_CK_STR, .off = NS, .alias = "server_name"},
    {.name = "cert", .kind = WM_CK_STR, .off = NS},
    {.name = "key", .kind = WM_CK_STR, .off = NS},
    {.name = "http2", .kind = WM_CK_BOOL, .off = NS},
    {.name = "location", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &location_schema},
    COMMON_KEYS,
    {.name = NULL},
};

static void http_server_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                                 const char *path)
{
    char kp[160];
    bool cert = wm_cval_get(t, "cert") != NULL;
    bool key = wm_cval_get(t, "key") != NULL;

    (void)obj;
    if (cert != key) {
        snprintf(kp, sizeof(kp), "%s.%s", path, cert ? "cert" : "key");
        wm_cctx_error(ctx, wm_cval_get(t, cert ? "cert" : "key"), kp, "cert and key go together");
    }
    if (wm_cval_get(t, "bind_addr") == NULL && wm_cval_get(t, "bind") == NULL) {
        snprintf(kp, sizeof(kp), "%s.bind_addr", path);
        wm_cctx_error(ctx, t, kp, "missing required key \"bind_addr\" in a [[http.server]] entry");
    }
}

static const struct wm_cschema http_server_schema = {
    .name = "a [[http.server]] entry", .keys = http_server_keys,
    .validate = http_server_validate,
};

static const struct wm_ckey http_keys[] = {
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &http_server_schema},
    {.name = "limit_req_zone", .kind = WM_CK_STRMAP, .off = NS},
    COMMON_KEYS,
    {.name = NULL},
};

const struct wm_cschema wm_conf_http_schema = {.name = "[http]", .keys = http_keys};

static const struct wm_ckey stream_server_keys[] = {
    {.name = "bind_addr", .kind = WM_CK_LISTEN, .off = NS, .alias = "bind",
     .flags = WM_CKF_REQUIRED},
    {.name = "up_name", .kind = WM_CK_STR, .off = NS},
    {.name = "proxy_url", .kind = WM_CK_STR, .off = NS},
    {.name = "bind_mode", .kind = WM_CK_ENUM, .off = NS, .choices = stream_modes},
    {.name = "timeout", .kind = WM_CK_DURATION, .off = NS},
    {.name = "headers", .kind = WM_CK_HEADERS, .off = NS},
    {.name = "rate_limit", .kind = WM_CK_RATE, .off = NS},
    {.name = NULL},
};

static const struct wm_cschema stream_server_schema = {
    .name = "a [[stream.server]] entry", .keys = stream_server_keys,
};

static const struct wm_ckey stream_keys[] = {
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &stream_server_schema},
    {.name = "upstream", .kind = WM_CK_TABLE_ARRAY, .off = NS, .sub = &upstream_schema},
    {.name = NULL},
};

const struct wm_cschema wm_conf_stream_schema = {.name = "[stream]", .keys = stream_keys};

/* ---- cross checks ---- */

static const char *str_of(const struct wm_cval *t, const char *key)
{
    const struct wm_cval *v = t != NULL ? wm_cval_get(t, key) : NULL;

    return v != NULL && wm_cval_type(v) == WM_CVAL_STRING ? wm_cval_str(v, NULL) : NULL;
}

static bool name_in(const struct wm_cval *arr, const char *name)
{
    if (arr == NULL || wm_cval_type(arr) != WM_CVAL_ARRAY) {
        return false;
    }
    for (size_t i = 0; i < wm_cval_count(arr); i++) {
        const char *n = str_of(wm_cval_at(arr, i), "name");
        if (n != NULL && strcmp(n, name) == 0) {
            return true;
        }
    }
    return false;
}

/* "http://NAME/..." where NAME looks like an upstream name (no dot, no port,
 * not localhost). Copies NAME into out. */
static bool upstream_ref(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    size_t n;

    if (p == NULL) {
        return false;
    }
    p += 3;
    n = strcspn(p, "/?#");
    if (n == 0 || n >= cap || memchr(p, '.', n) != NULL || memchr(p, ':', n) != NULL ||
        memchr(p, '[', n) != NULL) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return strcmp(out, "localhost") != 0;
}

static void check_proxy_url(struct wm_cctx *ctx, const struct wm_cval *t, const char *key,
                            const char *path, const struct wm_cval *up1,
                            const struct wm_cval *up2, const struct wm_cval *up3)
{
    char name[128];
    char kp[200];
    const char *url = str_of(t, key);

    if (url == NULL || url[0] == '\0' || !upstream_ref(url, name, sizeof(name))) {
        return;
    }
    if (!name_in(up1, name) && !name_in(up2, name) && !name_in(up3, name)) {
        snprintf(kp, sizeof(kp), "%s.%s", path, key);
        wm_cctx_error(ctx, wm_cval_get(t, key), kp,
                      "upstream \"%s\" is not defined (no [[http.upstream]] with that name)",
                      name);
    }
}

static void check_limit_req(struct wm_cctx *ctx, const struct wm_cval *t, const char *path,
                            const struct wm_cval *zones)
{
    char kp[200];
    const char *lr = str_of(t, "limit_req");
    const char *z;

    if (lr == NULL) {
        return;
    }
    z = strstr(lr, "zone=");
    snprintf(kp, sizeof(kp), "%s.limit_req", path);
    if (z == NULL) {
        wm_cctx_error(ctx, wm_cval_get(t, "limit_req"), kp, "expected \"zone=NAME [burst=N]\"");
        return;
    }
    z += 5;
    size_t n = strcspn(z, " \t");
    char name[128];
    if (n == 0 || n >= sizeof(name)) {
        wm_cctx_error(ctx, wm_cval_get(t, "limit_req"), kp, "expected \"zone=NAME [burst=N]\"");
        return;
    }
    memcpy(name, z, n);
    name[n] = '\0';
    if (zones == NULL || wm_cval_get(zones, name) == NULL) {
        wm_cctx_error(ctx, wm_cval_get(t, "limit_req"), kp,
                      "zone \"%s\" is not defined in [http.limit_req_zone]", name);
    }
}

void wm_conf_cross_check(struct wm_cctx *ctx, const struct wm_cval *root)
{
    char path[160];
    const struct wm_cval *http = wm_cval_get(root, "http");
    const struct wm_cval *stream = wm_cval_get(root, "stream");

    if (stream != NULL) {
        const struct wm_cval *ups = wm_cval_get(stream, "upstream");
        const struct wm_cval *srv = wm_cval_get(stream, "server");
        for (size_t i = 0; srv != NULL && i < wm_cval_count(srv); i++) {
            const struct wm_cval *s = wm_cval_at(srv, i);
            const char *up = str_of(s, "up_name");
            if (up != NULL && str_of(s, "proxy_url") == NULL && !name_in(ups, up)) {
                snprintf(path, sizeof(path), "stream.server[%zu].up_name", i);
                wm_cctx_error(ctx, wm_cval_get(s, "up_name"), path,
                              "upstream \"%s\" is not defined in [[stream.upstream]]", up);
            }
        }
    }
    if (http != NULL) {
        const struct wm_cval *ups = wm_cval_get(http, "upstream");
        const struct wm_cval *zones = wm_cval_get(http, "limit_req_zone");
        const struct wm_cval *srv = wm_cval_get(http, "server");
        check_limit_req(ctx, http, "http", zones);
        for (size_t i = 0; srv != NULL && i < wm_cval_count(srv); i++) {
            const struct wm_cval *s = wm_cval_at(srv, i);
            const struct wm_cval *sups = wm_cval_get(s, "upstream");
            const struct wm_cval *locs = wm_cval_get(s, "location");
            snprintf(path, sizeof(path), "http.server[%zu]", i);
            check_limit_req(ctx, s, path, zones);
            check_proxy_url(ctx, s, "proxy_url", path, ups, sups, NULL);
            for (size_t j = 0; locs != NULL && j < wm_cval_count(locs); j++) {
                const struct wm_cval *l = wm_cval_at(locs, j);
                const struct wm_cval *lups = wm_cval_get(l, "upstream");
                snprintf(path, sizeof(path), "http.server[%zu].location[%zu]", i, j);
                check_limit_req(ctx, l, path, zones);
                check_proxy_url(ctx, l, "proxy_url", path, ups, sups, lups);
                check_proxy_url(ctx, l, "proxy_pass", path, ups, sups, lups);
                check_proxy_url(ctx, l, "reverse_proxy", path, ups, sups, lups);
            }
        }
    }
}

void wm_conf_http_check_files(struct wm_cctx *ctx, const struct wm_cval *root,
                              wm_conf_pair_fn check_pair)
{
    char path[64];
    const struct wm_cval *http = wm_cval_get(root, "http");
    const struct wm_cval *srv = http != NULL ? wm_cval_get(http, "server") : NULL;

    for (size_t i = 0; srv != NULL && i < wm_cval_count(srv); i++) {
        const struct wm_cval *s = wm_cval_at(srv, i);
        snprintf(path, sizeof(path), "http.server[%zu]", i);
        check_pair(ctx, s, path, "cert", "key", str_of(s, "cert"), str_of(s, "key"));
    }
}
