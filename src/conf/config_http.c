/*
 * conf/config_http.c - schema of [http] (reverse proxy, file server) and
 * [stream] (L4 forwarding). The features arrive in later releases: every
 * key is recognised and type-checked now; nothing is stored yet.
 */
#include <stdio.h>
#include <string.h>

#include <stddef.h>

#include "conf/config_http.h"
#include "conf/config_int.h"
#include "conf/cval.h"
#include "core/arena.h"
#include "net/addr.h"

#define NS WM_CK_NOSTORE

static const char *const lb_methods[] = {"weight", "round_robin", "least_conn", "ip_hash",
                                         "random", NULL};
static const char *const upstream_binds[] = {"tcp", "udp", NULL};

/* ---- upstreams (stored for [http], checked only for [stream]) ---- */

#define SOFF(f) offsetof(struct wm_conf_upserver, f)
static const struct wm_ckey upstream_server_keys[] = {
    {.name = "addr", .kind = WM_CK_HOSTPORT, .off = SOFF(addr), .flags = WM_CKF_REQUIRED},
    {.name = "weight", .kind = WM_CK_INT, .off = SOFF(weight), .min = 1, .max = 10000},
    {.name = "fail_timeout", .kind = WM_CK_DURATION, .off = SOFF(fail_timeout_ms), .min = 1,
     .max = 86400000},
    {.name = "fall_times", .kind = WM_CK_INT, .off = SOFF(fall_times), .min = 1, .max = 1000,
     .alias = "max_fails"},
    {.name = "rise_times", .kind = WM_CK_INT, .off = SOFF(rise_times), .min = 1, .max = 1000},
    {.name = "backup", .kind = WM_CK_BOOL, .off = SOFF(backup)},
    {.name = NULL},
};

static const struct wm_cschema upstream_server_schema = {
    .name = "an upstream server", .size = sizeof(struct wm_conf_upserver),
    .keys = upstream_server_keys,
};

#define HOFF(f) offsetof(struct wm_conf_health, f)
static const struct wm_ckey health_keys[] = {
    {.name = "interval", .kind = WM_CK_DURATION, .off = HOFF(interval_ms), .min = 100,
     .max = 86400000},
    {.name = "timeout", .kind = WM_CK_DURATION, .off = HOFF(timeout_ms), .min = 10,
     .max = 3600000},
    {.name = "path", .kind = WM_CK_STR, .off = HOFF(path)},
    {.name = "expect_status", .kind = WM_CK_STR, .off = HOFF(expect_status)},
    {.name = "host", .kind = WM_CK_STR, .off = HOFF(host)},
    {.name = NULL},
};

static const struct wm_cschema health_schema = {
    .name = "a health check", .size = sizeof(struct wm_conf_health), .keys = health_keys,
};

static void upstream_defaults(void *obj)
{
    struct wm_conf_upstream *u = obj;

    u->keepalive = -1;
}

#define UOFF(f) offsetof(struct wm_conf_upstream, f)
static const struct wm_ckey upstream_keys[] = {
    {.name = "name", .kind = WM_CK_STR, .off = UOFF(name), .flags = WM_CKF_REQUIRED},
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = UOFF(servers),
     .off_count = UOFF(nservers), .sub = &upstream_server_schema, .flags = WM_CKF_REQUIRED},
    {.name = "bind", .kind = WM_CK_ENUM, .off = NS, .choices = upstream_binds},
    {.name = "balance", .kind = WM_CK_ENUM, .off = UOFF(balance), .choices = lb_methods,
     .alias = "method"},
    {.name = "health_check", .kind = WM_CK_TABLE, .off = UOFF(health), .sub = &health_schema},
    {.name = "keepalive", .kind = WM_CK_INT, .off = UOFF(keepalive), .min = 0, .max = 100000},
    {.name = "keepalive_timeout", .kind = WM_CK_DURATION, .off = UOFF(keepalive_timeout_ms),
     .min = 1, .max = 86400000},
    {.name = NULL},
};

const struct wm_cschema wm_conf_upstream_schema = { /* [stream] shares it */
    .name = "an upstream", .size = sizeof(struct wm_conf_upstream), .keys = upstream_keys,
    .defaults = upstream_defaults,
};

/* ---- keys every level of [http] may carry (inherited downwards) ---- */

/* proxy_ssl_verify and friends: -1 when absent, so a level can inherit. */
static int tribool(struct wm_cctx *ctx, const struct wm_cval *v, void *dst, const char *path)
{
    if (wm_cval_type(v) != WM_CVAL_BOOL) {
        wm_cctx_error(ctx, v, path, "expected true or false");
        return -1;
    }
    *(int *)dst = wm_cval_bool(v) ? 1 : 0;
    return 0;
}

/* proxy_next_upstream: nginx's words, in one string or a list. */
static const struct {
    const char *word;
    int bit;
} next_words[] = {
    {"error", WM_NEXT_ERROR},       {"timeout", WM_NEXT_TIMEOUT},
    {"invalid_header", WM_NEXT_INVALID_HEADER},
    {"http_500", WM_NEXT_HTTP_500}, {"http_502", WM_NEXT_HTTP_502},
    {"http_503", WM_NEXT_HTTP_503}, {"http_504", WM_NEXT_HTTP_504},
    {"http_403", WM_NEXT_HTTP_403}, {"http_404", WM_NEXT_HTTP_404},
    {"http_429", WM_NEXT_HTTP_429}, {"non_idempotent", WM_NEXT_NON_IDEMPOTENT},
    {"off", 0},
};

/* The words of one string into *mask; *off when "off" is among them. */
static int next_words_of(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                         int *mask, bool *off, size_t *nwords)
{
    const char *p = wm_cval_str(v, NULL);

    while (*p != '\0') {
        size_t n;
        size_t i;
        p += strspn(p, " \t,");
        n = strcspn(p, " \t,");
        if (n == 0) {
            break;
        }
        for (i = 0; i < sizeof(next_words) / sizeof(next_words[0]); i++) {
            if (strlen(next_words[i].word) == n && strncmp(p, next_words[i].word, n) == 0) {
                break;
            }
        }
        if (i == sizeof(next_words) / sizeof(next_words[0])) {
            wm_cctx_error(ctx, v, path,
                          "unknown word \"%.*s\" (expected error, timeout, invalid_header, "
                          "http_500, http_502, http_503, http_504, http_403, http_404, "
                          "http_429, non_idempotent or off)", (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        *mask |= next_words[i].bit;
        *off = *off || next_words[i].bit == 0;
        (*nwords)++;
        p += n;
    }
    return 0;
}

static int next_upstream(struct wm_cctx *ctx, const struct wm_cval *v, void *dst, const char *path)
{
    int mask = 0;
    bool off = false;
    size_t nwords = 0;
    bool list = wm_cval_type(v) == WM_CVAL_ARRAY;
    size_t n = list ? wm_cval_count(v) : 1;

    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = list ? wm_cval_at(v, i) : v;
        if (wm_cval_type(e) != WM_CVAL_STRING) {
            wm_cctx_error(ctx, e, path, "expected words like \"error timeout http_502\" "
                                        "(a string or an array of strings)");
            return -1;
        }
        if (next_words_of(ctx, e, path, &mask, &off, &nwords) < 0) {
            return -1;
        }
    }
    if (nwords == 0 || (off && nwords > 1)) {
        wm_cctx_error(ctx, v, path, "%s", nwords == 0 ? "no word given (\"off\" turns it off)"
                                                      : "\"off\" stands alone");
        return -1;
    }
    *(int *)dst = mask;
    return 0;
}

#define COFF(f) (offsetof(struct wm_conf_hcommon, f))
#define COMMON_KEYS(B)                                                                    \
    {.name = "max_read_buf", .kind = WM_CK_SIZE, .off = B + COFF(max_read_buf)},         \
        {.name = "rate_limit", .kind = WM_CK_RATE, .off = B + COFF(rate_limit)},          \
        {.name = "client_read_timeout", .kind = WM_CK_DURATION,                           \
         .off = B + COFF(client_read_timeout_ms), .min = 1, .max = 86400000},             \
        {.name = "client_write_timeout", .kind = WM_CK_DURATION,                          \
         .off = B + COFF(client_write_timeout_ms), .min = 1, .max = 86400000},            \
        {.name = "client_timeout", .kind = WM_CK_DURATION,                                \
         .off = B + COFF(client_timeout_ms), .min = 1, .max = 86400000},                  \
        {.name = "client_ka_timeout", .kind = WM_CK_DURATION,                             \
         .off = B + COFF(client_ka_timeout_ms), .min = 1, .max = 86400000},               \
        {.name = "proxy_connect_timeout", .kind = WM_CK_DURATION,                         \
         .off = B + COFF(proxy_connect_timeout_ms), .min = 1, .max = 3600000},            \
        {.name = "proxy_read_timeout", .kind = WM_CK_DURATION,                            \
         .off = B + COFF(proxy_read_timeout_ms), .min = 1, .max = 86400000},              \
        {.name = "proxy_write_timeout", .kind = WM_CK_DURATION,                           \
         .off = B + COFF(proxy_write_timeout_ms), .min = 1, .max = 86400000},             \
        {.name = "proxy_timeout", .kind = WM_CK_DURATION, .off = B + COFF(proxy_timeout_ms), \
         .min = 1, .max = 86400000},                                                      \
        {.name = "client_max_body_size", .kind = WM_CK_SIZE,                              \
         .off = B + COFF(client_max_body_size)},                                          \
        {.name = "access_log", .kind = WM_CK_STR, .off = B + COFF(access_log)},           \
        {.name = "error_log", .kind = WM_CK_STR, .off = B + COFF(error_log)},             \
        {.name = "log_format", .kind = WM_CK_STRMAP, .off = B + COFF(log_format),         \
         .off_count = B + COFF(nlog_format)},                                             \
        {.name = "log_names", .kind = WM_CK_STRMAP, .off = B + COFF(log_names),           \
         .off_count = B + COFF(nlog_names), .flags = WM_CKF_PATH},                        \
        {.name = "match_names", .kind = WM_CK_STRMAP, .off = B + COFF(match_names),       \
         .off_count = B + COFF(nmatch_names)},                                            \
        {.name = "limit_req", .kind = WM_CK_STR, .off = B + COFF(limit_req)},             \
        {.name = "limit_req_status", .kind = WM_CK_INT, .off = B + COFF(limit_req_status), \
         .min = 400, .max = 599},                                                         \
        {.name = "headers", .kind = WM_CK_HEADERS, .off = B + COFF(headers),              \
         .off_count = B + COFF(nheaders)},                                                \
        {.name = "proxy_url", .kind = WM_CK_STR, .off = B + COFF(proxy_url)},             \
        {.name = "allow_ip", .kind = WM_CK_STRLIST, .off = B + COFF(allow_ip),            \
         .off_count = B + COFF(nallow_ip)},                                               \
        {.name = "deny_ip", .kind = WM_CK_STRLIST, .off = B + COFF(deny_ip),              \
         .off_count = B + COFF(ndeny_ip)},                                                \
        {.name = "root", .kind = WM_CK_STR, .off = B + COFF(root), .flags = WM_CKF_PATH},                       \
        {.name = "domain", .kind = WM_CK_STR, .off = B + COFF(domain)},                   \
        {.name = "upstream", .kind = WM_CK_TABLE_ARRAY, .off = B + COFF(upstreams),       \
         .off_count = B + COFF(nupstreams), .sub = &wm_conf_upstream_schema},                     \
        {.name = "proxy_ssl_verify", .kind = WM_CK_CUSTOM, .off = B + COFF(proxy_ssl_verify), \
         .custom = tribool},                                                              \
        {.name = "proxy_set_host", .kind = WM_CK_CUSTOM, .off = B + COFF(proxy_set_host), \
         .custom = tribool},                                                              \
        {.name = "proxy_ssl_name", .kind = WM_CK_STR, .off = B + COFF(proxy_ssl_name)},   \
        {.name = "proxy_ssl_trusted_certificate", .kind = WM_CK_STR,                      \
         .off = B + COFF(proxy_ssl_trusted_certificate), .flags = WM_CKF_PATH},           \
        {.name = "proxy_ssl_certificate", .kind = WM_CK_STR,                              \
         .off = B + COFF(proxy_ssl_certificate), .flags = WM_CKF_PATH},                   \
        {.name = "proxy_ssl_certificate_key", .kind = WM_CK_STR,                          \
         .off = B + COFF(proxy_ssl_certificate_key), .flags = WM_CKF_PATH},               \
        {.name = "proxy_next_upstream", .kind = WM_CK_CUSTOM,                             \
         .off = B + COFF(proxy_next_upstream), .custom = next_upstream},                  \
        {.name = "proxy_next_upstream_tries", .kind = WM_CK_INT,                          \
         .off = B + COFF(proxy_next_upstream_tries), .min = 1, .max = 16},                \
        {.name = "proxy_next_upstream_timeout", .kind = WM_CK_DURATION,                   \
         .off = B + COFF(proxy_next_upstream_timeout_ms), .min = 1, .max = 86400000}

static void common_defaults(struct wm_conf_hcommon *c)
{
    c->proxy_ssl_verify = -1;
    c->proxy_set_host = -1;
    c->proxy_next_upstream = -1;
}

/* ---- file_server = { ... } (static files, src/files) ---- */
#define FOFF(f) offsetof(struct wm_conf_files, f)
static const struct wm_ckey file_server_keys[] = {
    {.name = "root", .kind = WM_CK_STR, .off = FOFF(root), .flags = WM_CKF_PATH},
    {.name = "prefix", .kind = WM_CK_STR, .off = FOFF(prefix)},
    {.name = "hide", .kind = WM_CK_STRLIST, .off = FOFF(hide), .off_count = FOFF(nhide)},
    {.name = "index", .kind = WM_CK_STRLIST, .off = FOFF(index), .off_count = FOFF(nindex)},
    {.name = "browse", .kind = WM_CK_BOOL, .off = FOFF(browse)},
    {.name = "disable_compress", .kind = WM_CK_BOOL, .off = FOFF(disable_compress)},
    {.name = "precompressed", .kind = WM_CK_STRLIST, .off = FOFF(precompressed),
     .off_count = FOFF(nprecompressed)},
    {.name = "cache_control", .kind = WM_CK_STR, .off = FOFF(cache_control)},
    {.name = "cache_time", .kind = WM_CK_DURATION, .off = FOFF(cache_time_ms)},
    {.name = "charset", .kind = WM_CK_STR, .off = FOFF(charset)},
    {.name = "path404", .kind = WM_CK_STR, .off = FOFF(path404)},
    {.name = "status", .kind = WM_CK_INT, .off = FOFF(status), .min = 100, .max = 599},
    {.name = "robots", .kind = WM_CK_STR, .off = FOFF(robots)},
    {.name = "default_mimetype", .kind = WM_CK_STR, .off = FOFF(default_mimetype)},
    {.name = "ext_mimetype", .kind = WM_CK_STRMAP, .off = FOFF(ext_mimetype),
     .off_count = FOFF(next_mimetype)},
    {.name = "cors", .kind = WM_CK_BOOL, .off = FOFF(cors)},
    {.name = "follow_symlinks", .kind = WM_CK_BOOL, .off = FOFF(follow_symlinks)},
    {.name = "rate_limit", .kind = WM_CK_RATE, .off = FOFF(rate_limit)},
    {.name = "max_read_buf", .kind = WM_CK_SIZE, .off = FOFF(max_read_buf)},
    {.name = NULL},
};

static const struct wm_cschema file_server_schema = {
    .name = "a file_server table", .size = sizeof(struct wm_conf_files),
    .keys = file_server_keys,
};

static const struct wm_ckey reverse_keys[] = {
    {.name = "file_server", .kind = WM_CK_TABLE, .off = NS, .sub = &file_server_schema},
    {.name = NULL},
};

const struct wm_cschema wm_conf_reverse_schema = {.name = "[reverse]", .keys = reverse_keys};

/* ---- locations ---- */

#define ROFF(f) offsetof(struct wm_conf_rule, f)
static const struct wm_ckey rule_keys[] = {
    {.name = "path", .kind = WM_CK_STR, .off = ROFF(path)},
    {.name = "host", .kind = WM_CK_STR, .off = ROFF(host)},
    {.name = "method", .kind = WM_CK_STR, .off = ROFF(method)},
    {.name = "scheme", .kind = WM_CK_STR, .off = ROFF(scheme)},
    {.name = "client_ip", .kind = WM_CK_STRLIST, .off = ROFF(client_ip),
     .off_count = ROFF(nclient_ip)},
    {.name = "remote_ip", .kind = WM_CK_STRLIST, .off = NS, .flags = WM_CKF_IGNORED,
     .feature = "wmproxy parses it and never uses it; use client_ip"},
    {.name = NULL},
};

static const struct wm_cschema rule_schema = {.name = "a location rule", .keys = rule_keys};

/* rule = "/path*" or a table of conditions. */
static int decode_rule(struct wm_cctx *ctx, const struct wm_cval *v, void *dst, const char *path)
{
    struct wm_conf_rule *r = dst;

    r->line = wm_cval_line(v);
    if (wm_cval_type(v) == WM_CVAL_STRING) {
        r->path = wm_arena_strdup(ctx->arena, wm_cval_str(v, NULL));
        return 0;
    }
    if (wm_cval_type(v) != WM_CVAL_TABLE) {
        wm_cctx_error(ctx, v, path, "expected a path pattern or a table {path, host, method, "
                                    "scheme, client_ip}");
        return -1;
    }
    return wm_schema_decode(ctx, &rule_schema, v, r, path) == 0 ? 0 : -1;
}

static void location_defaults(void *obj)
{
    common_defaults(&((struct wm_conf_location *)obj)->c);
}

#define LOFF(f) offsetof(struct wm_conf_location, f)
static const struct wm_ckey location_keys[] = {
    {.name = "rule", .kind = WM_CK_CUSTOM, .off = LOFF(rule), .custom = decode_rule,
     .flags = WM_CKF_REQUIRED},
    {.name = "method", .kind = WM_CK_STRLIST, .off = NS, .flags = WM_CKF_IGNORED,
     .feature = "wmproxy uses it for nothing; put methods in the rule table"},
    {.name = "file_server", .kind = WM_CK_TABLE, .off = LOFF(file_server),
     .sub = &file_server_schema},
    {.name = "static_response", .kind = WM_CK_STR, .off = LOFF(static_response)},
    {.name = "proxy_pass", .kind = WM_CK_STR, .off = NS, .flags = WM_CKF_IGNORED,
     .feature = "not a wmproxy key (wmproxy ignores it); use proxy_url"},
    {.name = "reverse_proxy", .kind = WM_CK_STR, .off = NS, .flags = WM_CKF_IGNORED,
     .feature = "wmproxy 0.1 key; use proxy_url"},
    {.name = "try_paths", .kind = WM_CK_STR, .off = LOFF(try_paths)},
    {.name = "is_ws", .kind = WM_CK_BOOL, .off = LOFF(is_ws)},
    {.name = "up_name", .kind = WM_CK_STR, .off = LOFF(up_name)},
    COMMON_KEYS(LOFF(c)),
    {.name = NULL},
};

static void location_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                              const char *path)
{
    struct wm_conf_location *l = obj;
    const struct wm_cval *rl = wm_cval_get(t, "rate_limit");

    l->has_file_server = wm_cval_get(t, "file_server") != NULL;
    if (rl != NULL && !l->has_file_server && l->c.rate_limit.amount > 0) {
        /* as in wmproxy: proxied answers are not metered (README) */
        char kp[WM_ERR_KEY_MAX];
        snprintf(kp, sizeof(kp), "%s.rate_limit", path);
        wm_cctx_warn(ctx, rl, kp, "limits nothing here: it meters file_server answers, and "
                                  "this location has no file_server");
    }
}

static const struct wm_cschema location_schema = {
    .name = "a [[http.server.location]] entry", .size = sizeof(struct wm_conf_location),
    .keys = location_keys, .defaults = location_defaults, .validate = location_validate,
};

/* ---- servers ---- */

static void http_server_defaults(void *obj)
{
    struct wm_conf_hserver *s = obj;

    s->http2 = -1;
    common_defaults(&s->c);
}

#define VOFF(f) offsetof(struct wm_conf_hserver, f)
static const struct wm_ckey http_server_keys[] = {
    {.name = "bind_addr", .kind = WM_CK_STR, .off = VOFF(bind_addr), .alias = "bind"},
    {.name = "bind_ssl", .kind = WM_CK_STR, .off = VOFF(bind_ssl)},
    {.name = "up_name", .kind = WM_CK_STR, .off = VOFF(up_name), .alias = "server_name"},
    {.name = "cert", .kind = WM_CK_STR, .off = VOFF(cert), .flags = WM_CKF_PATH},
    {.name = "key", .kind = WM_CK_STR, .off = VOFF(key), .flags = WM_CKF_PATH},
    {.name = "http2", .kind = WM_CK_CUSTOM, .off = VOFF(http2), .custom = tribool},
    {.name = "static_response", .kind = WM_CK_STR, .off = VOFF(static_response)},
    {.name = "location", .kind = WM_CK_TABLE_ARRAY, .off = VOFF(locations),
     .off_count = VOFF(nlocations), .sub = &location_schema},
    COMMON_KEYS(VOFF(c)),
    {.name = NULL},
};

/* An address list: "ip:port" entries separated by spaces or commas, each
 * maybe a range ("127.0.0.1:8869-:8871"). */
static void check_addr_list(struct wm_cctx *ctx, const struct wm_cval *t, const char *key,
                            const char *path)
{
    const struct wm_cval *v = wm_cval_get(t, key);
    char kp[200];
    struct wm_err e;

    if (v == NULL || wm_cval_type(v) != WM_CVAL_STRING) {
        return;
    }
    if (wm_addr_list_expand(wm_cval_str(v, NULL), NULL, NULL, 0, &e) < 0) {
        snprintf(kp, sizeof(kp), "%s.%s", path, key);
        wm_cctx_error(ctx, v, kp, "%s", e.msg);
    }
}

static void http_server_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                                 const char *path)
{
    struct wm_conf_hserver *s = obj;
    char kp[160];
    bool cert = wm_cval_get(t, "cert") != NULL;
    bool key = wm_cval_get(t, "key") != NULL;

    if (cert != key) {
        snprintf(kp, sizeof(kp), "%s.%s", path, cert ? "cert" : "key");
        wm_cctx_error(ctx, wm_cval_get(t, cert ? "cert" : "key"), kp, "cert and key go together");
    }
    check_addr_list(ctx, t, "bind_addr", path);
    check_addr_list(ctx, t, "bind_ssl", path);
    if ((s->bind_addr == NULL || s->bind_addr[0] == '\0') &&
        (s->bind_ssl == NULL || s->bind_ssl[0] == '\0')) {
        snprintf(kp, sizeof(kp), "%s.bind_addr", path);
        wm_cctx_error(ctx, t, kp,
                      "a [[http.server]] entry needs bind_addr or bind_ssl (where it listens)");
    }
    if (s->bind_ssl != NULL && s->bind_ssl[0] != '\0' && !cert) {
        snprintf(kp, sizeof(kp), "%s.bind_ssl", path);
        wm_cctx_error(ctx, wm_cval_get(t, "bind_ssl"), kp, "bind_ssl needs cert and key");
    }
}

static const struct wm_cschema http_server_schema = {
    .name = "a [[http.server]] entry", .size = sizeof(struct wm_conf_hserver),
    .keys = http_server_keys, .defaults = http_server_defaults,
    .validate = http_server_validate,
};

static void http_defaults(void *obj)
{
    common_defaults(&((struct wm_conf_http *)obj)->c);
}

#define TOFF(f) offsetof(struct wm_conf_http, f)
static const struct wm_ckey http_keys[] = {
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = TOFF(servers),
     .off_count = TOFF(nservers), .sub = &http_server_schema},
    {.name = "limit_req_zone", .kind = WM_CK_STRMAP, .off = TOFF(limit_req_zone),
     .off_count = TOFF(nlimit_req_zone)},
    COMMON_KEYS(TOFF(c)),
    {.name = NULL},
};

const struct wm_cschema wm_conf_http_schema = {
    .name = "[http]", .size = sizeof(struct wm_conf_http), .keys = http_keys,
    .defaults = http_defaults,
};

/* [stream]: conf/config_stream.c (it shares wm_conf_upstream_schema). */

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

static bool has_name(const struct wm_cval *t, const char *name)
{
    const struct wm_cval *m = t != NULL ? wm_cval_get(t, "match_names") : NULL;

    return m != NULL && wm_cval_type(m) == WM_CVAL_TABLE && wm_cval_get(m, name) != NULL;
}

/* rule = "@name" must name an entry of match_names at some level. */
static void check_named_rule(struct wm_cctx *ctx, const struct wm_cval *l, const char *path,
                             const struct wm_cval *s, const struct wm_cval *http)
{
    const char *rule = str_of(l, "rule");
    char kp[200];

    if (rule == NULL || rule[0] != '@' || has_name(l, rule + 1) || has_name(s, rule + 1) ||
        has_name(http, rule + 1)) {
        return;
    }
    snprintf(kp, sizeof(kp), "%s.rule", path);
    wm_cctx_warn(ctx, wm_cval_get(l, "rule"), kp,
                 "\"%s\" names no entry of match_names: this location never matches", rule);
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
                check_named_rule(ctx, l, path, s, http);
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
