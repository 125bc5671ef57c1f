/*
 * conf/config_stream.c - schema of [stream]: L4 servers (TCP, UDP) and the
 * WebSocket bridges, with their [[stream.upstream]] (the upstream schema
 * of [http], conf/config_http.c).
 */
#include <stdio.h>
#include <string.h>

#include <stddef.h>

#include "conf/config_http.h"
#include "conf/config_int.h"
#include "conf/config_stream.h"
#include "conf/cval.h"
#include "net/addr.h"

#define NS WM_CK_NOSTORE

static const char *const stream_modes[] = {"tcp", "udp", "tcp2ws", "tcp2wss", "ws2tcp",
                                           "wss2tcp", NULL};

/* proxy_protocol: true or "v1" -> 1, "v2" -> 2, false / "off" -> 0. */
static int set_pp(struct wm_cctx *ctx, const struct wm_cval *v, void *dst, const char *path)
{
    int *out = dst;
    size_t n = 0;
    const char *s;

    if (wm_cval_type(v) == WM_CVAL_BOOL) {
        *out = wm_cval_bool(v) ? 1 : 0;
        return 0;
    }
    s = wm_cval_type(v) == WM_CVAL_STRING ? wm_cval_str(v, &n) : NULL;
    if (s != NULL && n == 2 && (memcmp(s, "v1", 2) == 0 || memcmp(s, "v2", 2) == 0)) {
        *out = s[1] - '0';
        return 0;
    }
    if (s != NULL && (n == 0 || (n == 3 && memcmp(s, "off", 3) == 0))) {
        *out = 0;
        return 0;
    }
    wm_cctx_error(ctx, v, path, "expected true, false, \"v1\" or \"v2\"");
    return -1;
}

#define SOFF(f) offsetof(struct wm_conf_sserver, f)
static const struct wm_ckey server_keys[] = {
    {.name = "bind_addr", .kind = WM_CK_STR, .off = SOFF(bind_addr), .alias = "bind"},
    {.name = "bind_ssl", .kind = WM_CK_STR, .off = SOFF(bind_ssl)},
    {.name = "cert", .kind = WM_CK_STR, .off = SOFF(cert), .flags = WM_CKF_PATH},
    {.name = "key", .kind = WM_CK_STR, .off = SOFF(key), .flags = WM_CKF_PATH},
    {.name = "up_name", .kind = WM_CK_STR, .off = SOFF(up_name)},
    {.name = "proxy_url", .kind = WM_CK_STR, .off = SOFF(proxy_url)},
    {.name = "domain", .kind = WM_CK_STR, .off = SOFF(domain)},
    {.name = "bind_mode", .kind = WM_CK_ENUM, .off = SOFF(bind_mode), .choices = stream_modes},
    {.name = "connect_timeout", .kind = WM_CK_DURATION, .off = SOFF(connect_timeout_ms),
     .min = 1, .max = 3600000},
    {.name = "timeout", .kind = WM_CK_DURATION, .off = SOFF(timeout_ms), .min = 1,
     .max = 604800000, .alias = "proxy_timeout"},
    {.name = "client_timeout", .kind = WM_CK_DURATION, .off = SOFF(client_timeout_ms),
     .min = 1, .max = 86400000},
    {.name = "proxy_ssl", .kind = WM_CK_BOOL, .off = SOFF(proxy_ssl)},
    {.name = "proxy_ssl_verify", .kind = WM_CK_BOOL, .off = SOFF(proxy_ssl_verify)},
    {.name = "proxy_protocol", .kind = WM_CK_CUSTOM, .off = SOFF(proxy_protocol), .custom = set_pp},
    {.name = "accept_proxy_protocol", .kind = WM_CK_BOOL, .off = SOFF(accept_proxy_protocol)},
    {.name = "max_sessions", .kind = WM_CK_INT, .off = SOFF(max_sessions), .min = 1,
     .max = 10000000},
    {.name = "max_message", .kind = WM_CK_SIZE, .off = SOFF(max_message)},
    {.name = "access_log", .kind = WM_CK_STR, .off = SOFF(access_log), .flags = WM_CKF_PATH},
    {.name = "headers", .kind = WM_CK_HEADERS, .off = NS, .flags = WM_CKF_INACTIVE,
     .feature = "header rules on L4 servers"},
    {.name = "rate_limit", .kind = WM_CK_RATE, .off = SOFF(rate_limit)},
    {.name = NULL},
};

static void kerr(struct wm_cctx *ctx, const struct wm_cval *v, const char *path, const char *key,
                 const char *msg)
{
    char kp[200];

    snprintf(kp, sizeof(kp), "%s.%s", path, key);
    wm_cctx_error(ctx, v, kp, "%s", msg);
}

static void check_list(struct wm_cctx *ctx, const struct wm_cval *t, const char *key,
                       const char *path)
{
    const struct wm_cval *v = wm_cval_get(t, key);
    struct wm_err e;

    if (v != NULL && wm_cval_type(v) == WM_CVAL_STRING &&
        wm_addr_list_expand(wm_cval_str(v, NULL), NULL, NULL, 0, &e) < 0) {
        kerr(ctx, v, path, key, e.msg);
    }
}

static void server_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                            const char *path)
{
    struct wm_conf_sserver *s = obj;
    const char *mode = s->bind_mode != NULL ? s->bind_mode : "tcp";
    bool tls_in = s->bind_ssl != NULL && s->bind_ssl[0] != '\0';

    check_list(ctx, t, "bind_addr", path);
    check_list(ctx, t, "bind_ssl", path);
    if ((s->bind_addr == NULL || s->bind_addr[0] == '\0') && !tls_in) {
        kerr(ctx, t, path, "bind_addr", "a [[stream.server]] entry needs bind_addr or bind_ssl");
    }
    if ((s->cert != NULL) != (s->key != NULL)) {
        kerr(ctx, t, path, s->cert != NULL ? "cert" : "key", "cert and key go together");
    }
    if (tls_in && s->cert == NULL) {
        kerr(ctx, wm_cval_get(t, "bind_ssl"), path, "bind_ssl", "bind_ssl needs cert and key");
    }
    if (tls_in && strcmp(mode, "udp") == 0) {
        kerr(ctx, wm_cval_get(t, "bind_ssl"), path, "bind_ssl", "bind_mode udp has no TLS");
    }
    if (strcmp(mode, "wss2tcp") == 0 && !tls_in) {
        kerr(ctx, t, path, "bind_ssl", "bind_mode wss2tcp listens on bind_ssl (with cert, key)");
    }
    if (s->proxy_url == NULL && s->up_name == NULL) {
        kerr(ctx, t, path, "proxy_url", "a [[stream.server]] entry needs proxy_url or up_name");
    }
    if (strcmp(mode, "udp") == 0 && (s->proxy_protocol || s->accept_proxy_protocol)) {
        kerr(ctx, t, path, "proxy_protocol", "the PROXY protocol is for TCP servers");
    }
    const struct wm_cval *rl = wm_cval_get(t, "rate_limit");
    if (rl != NULL && s->rate_limit.amount > 0 && s->rate_limit.requests) {
        kerr(ctx, rl, path, "rate_limit", "expected bytes per time, like \"4m/s\"");
    } else if (rl != NULL && s->rate_limit.amount > 0 && strcmp(mode, "tcp") != 0) {
        char kp[200];
        snprintf(kp, sizeof(kp), "%s.rate_limit", path);
        wm_cctx_warn(ctx, rl, kp, "accepted, not active with bind_mode %s (bind_mode tcp only)",
                     mode);
    }
}

static const struct wm_cschema server_schema = {
    .name = "a [[stream.server]] entry", .size = sizeof(struct wm_conf_sserver),
    .keys = server_keys, .validate = server_validate,
};

#define TOFF(f) offsetof(struct wm_conf_stream, f)
static const struct wm_ckey stream_keys[] = {
    {.name = "server", .kind = WM_CK_TABLE_ARRAY, .off = TOFF(servers),
     .off_count = TOFF(nservers), .sub = &server_schema},
    {.name = "upstream", .kind = WM_CK_TABLE_ARRAY, .off = TOFF(upstreams),
     .off_count = TOFF(nupstreams), .sub = &wm_conf_upstream_schema},
    {.name = NULL},
};

const struct wm_cschema wm_conf_stream_schema = {
    .name = "[stream]", .size = sizeof(struct wm_conf_stream), .keys = stream_keys,
};
