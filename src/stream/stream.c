/*
 * stream/stream.c - [stream] settings: each [[stream.server]] compiled
 * (target group, TLS contexts, timeouts), its listening addresses, and
 * the service of each address.
 */
#include "stream/stream.h"

#include <netdb.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/config_http.h"
#include "conf/config_stream.h"
#include "core/err.h"
#include "core/service.h"
#include "http/util.h"
#include "net/tls.h"
#include "reverse/alog.h"
#include "reverse/upstream.h"
#include "stream/stream_int.h"
#include "stream/ws.h"

struct st_listen {
    char addr[WM_ADDR_STR_MAX];
    size_t server;
    bool tls;
    bool dgram;
};

struct wm_stream {
    atomic_int refs;
    struct st_server *servers;
    size_t nservers;
    struct st_listen *ls;
    size_t nls;
};

static const char *const mode_names[ST_MODE_COUNT] = {"tcp", "udp", "ws2tcp", "tcp2ws",
                                                      "tcp2wss"};

static void stream_free(struct wm_stream *st)
{
    for (size_t i = 0; i < st->nservers; i++) {
        wm_upstream_free(st->servers[i].up);
        SSL_CTX_free(st->servers[i].tls_in);
        SSL_CTX_free(st->servers[i].tls_out);
        wm_alog_file_put(st->servers[i].alog);
    }
    free(st->servers);
    free(st->ls);
    free(st);
}

struct wm_stream *wm_stream_ref(struct wm_stream *st)
{
    atomic_fetch_add(&st->refs, 1);
    return st;
}

void wm_stream_unref(struct wm_stream *st)
{
    if (st != NULL && atomic_fetch_sub(&st->refs, 1) == 1) {
        stream_free(st);
    }
}

static enum st_mode mode_of(const char *s)
{
    if (s == NULL || strcmp(s, "tcp") == 0) {
        return ST_TCP;
    }
    if (strcmp(s, "wss2tcp") == 0) {
        return ST_WS2TCP; /* ws2tcp on a TLS listener */
    }
    for (int m = 0; m < ST_MODE_COUNT; m++) {
        if (strcmp(s, mode_names[m]) == 0) {
            return (enum st_mode)m;
        }
    }
    return ST_TCP;
}

/* The [[stream.upstream]] called name, or NULL. */
static const struct wm_conf_upstream *upstream_named(const struct wm_conf_stream *cs,
                                                     const char *name, size_t n)
{
    for (size_t i = 0; i < cs->nupstreams; i++) {
        if (strlen(cs->upstreams[i].name) == n && memcmp(cs->upstreams[i].name, name, n) == 0) {
            return &cs->upstreams[i];
        }
    }
    return NULL;
}

/* proxy_url "scheme://authority/path": an upstream name as authority
 * means that group (wmproxy); otherwise the one server it names. */
static int target_url(const struct wm_conf_stream *cs, struct st_server *s, const char *url,
                      const char *key, struct wm_err *err)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep != NULL ? sep + 3 : url;
    size_t alen = strcspn(auth, "/?");
    char host[WM_HOST_MAX];
    uint16_t port;
    uint16_t defport = 0;
    char msg[256];

    if (sep != NULL && (size_t)(sep - url) == 3 && strncmp(url, "wss", 3) == 0) {
        defport = 443;
        if (s->mode == ST_TCP2WS) {
            s->mode = ST_TCP2WSS;
        }
    } else if (sep != NULL && (size_t)(sep - url) == 2 && strncmp(url, "ws", 2) == 0) {
        defport = 80;
    }
    snprintf(s->path, sizeof(s->path), "%s", auth[alen] != '\0' ? auth + alen : "/");
    if (s->path[0] != '/' || strpbrk(s->path, " \r\n") != NULL) {
        return wm_err_set(err, NULL, 0, 0, key, "bad path in \"%s\"", url);
    }
    const struct wm_conf_upstream *cu = upstream_named(cs, auth, strcspn(auth, ":/?"));
    if (cu != NULL) {
        s->up = wm_upstream_new("stream", cu, msg, sizeof(msg));
        return s->up != NULL ? 0 : wm_err_set(err, NULL, 0, 0, key, "%s", msg);
    }
    if (wm_http_parse_authority(auth, alen, host, sizeof(host), &port, defport) < 0) {
        return wm_err_set(err, NULL, 0, 0, key,
                          "\"%s\": expected scheme://host:port (or an upstream name)", url);
    }
    s->up = wm_upstream_single("stream", host, port);
    return s->up != NULL ? 0 : wm_err_set(err, NULL, 0, 0, key, "out of memory");
}

static int target_of(const struct wm_conf_stream *cs, const struct wm_conf_sserver *c,
                     struct st_server *s, const char *key, struct wm_err *err)
{
    char k[WM_ERR_KEY_MAX];
    char msg[256];

    if (c->proxy_url != NULL) {
        snprintf(k, sizeof(k), "%s.proxy_url", key);
        return target_url(cs, s, c->proxy_url, k, err);
    }
    snprintf(k, sizeof(k), "%s.up_name", key);
    const struct wm_conf_upstream *cu = upstream_named(cs, c->up_name, strlen(c->up_name));
    if (cu == NULL) {
        return wm_err_set(err, NULL, 0, 0, k, "upstream \"%s\" is not defined", c->up_name);
    }
    snprintf(s->path, sizeof(s->path), "/");
    s->up = wm_upstream_new("stream", cu, msg, sizeof(msg));
    return s->up != NULL ? 0 : wm_err_set(err, NULL, 0, 0, k, "%s", msg);
}

/* udp: resolve every upstream server now (a worker never blocks on DNS). */
static int udp_resolve(struct st_server *s, const char *key, struct wm_err *err)
{
    size_t n = wm_upstream_count(s->up);

    if (n > ST_UDP_ADDRS) {
        /* the others would never be picked: their datagrams were dropped */
        return wm_err_set(err, NULL, 0, 0, key,
                          "a udp server's upstream has at most %d servers (%zu)", ST_UDP_ADDRS, n);
    }
    for (size_t i = 0; i < n; i++) {
        const char *host;
        uint16_t port;
        char ps[8];
        struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
        wm_upstream_server(s->up, (int)i, &host, &port);
        snprintf(ps, sizeof(ps), "%u", port);
        if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL) {
            return wm_err_set(err, NULL, 0, 0, key, "cannot resolve %s", host);
        }
        memcpy(&s->udp_to[i], res->ai_addr, res->ai_addrlen);
        s->udp_tolen[i] = res->ai_addrlen;
        freeaddrinfo(res);
    }
    return 0;
}

static int tls_of(const struct wm_conf_sserver *c, struct st_server *s, const char *key,
                  struct wm_err *err)
{
    char msg[768]; /* two paths and a hint */

    if (c->bind_ssl != NULL && c->bind_ssl[0] != '\0') {
        struct wm_tls_opts o = {.cert = c->cert, .key = c->key};
        s->tls_in = wm_tls_server_ctx(&o, msg, sizeof(msg));
        if (s->tls_in == NULL) {
            return wm_err_set(err, NULL, 0, 0, key, "bind_ssl: %s", msg);
        }
    }
    if (s->proxy_ssl || s->mode == ST_TCP2WSS) {
        struct wm_tls_opts o = {0};
        s->tls_out = wm_tls_client_ctx(&o, msg, sizeof(msg));
        if (s->tls_out == NULL) {
            return wm_err_set(err, NULL, 0, 0, key, "proxy_ssl: %s", msg);
        }
        if (!c->proxy_ssl_verify) {
            SSL_CTX_set_verify(s->tls_out, SSL_VERIFY_NONE, NULL); /* nginx's default */
        }
    }
    return 0;
}

static int server_compile(const struct wm_conf_stream *cs, const struct wm_conf_sserver *c,
                          struct st_server *s, const char *key, struct wm_err *err)
{
    s->mode = mode_of(c->bind_mode);
    s->connect_ms = c->connect_timeout_ms ? (int)c->connect_timeout_ms : WM_STREAM_CONNECT_MS;
    s->idle_ms = c->timeout_ms ? (int)c->timeout_ms : WM_STREAM_IDLE_MS;
    s->udp_idle_ms = c->client_timeout_ms ? (int)c->client_timeout_ms
                     : c->timeout_ms      ? (int)c->timeout_ms
                                          : WM_STREAM_UDP_IDLE_MS;
    s->pp_version = c->proxy_protocol;
    s->accept_pp = c->accept_proxy_protocol;
    s->proxy_ssl = c->proxy_ssl;
    s->max_sessions = c->max_sessions > 0 ? (size_t)c->max_sessions : WM_STREAM_UDP_SESSIONS;
    s->max_message = c->max_message > 0 ? c->max_message : WM_WS_MAX_MESSAGE;
    if (s->mode == ST_TCP) {
        s->rate = c->rate_limit.amount;
        s->rate_ms = c->rate_limit.per_ms;
    }
    snprintf(s->domain, sizeof(s->domain), "%s", c->domain != NULL ? c->domain : "");
    if (target_of(cs, c, s, key, err) < 0 || tls_of(c, s, key, err) < 0) {
        return -1;
    }
    if (c->access_log != NULL) {
        char msg[512];
        s->alog = wm_alog_file_get(c->access_log, msg, sizeof(msg));
        if (s->alog == NULL) {
            return wm_err_set(err, NULL, 0, 0, key, "access_log: %s", msg);
        }
    }
    return s->mode == ST_UDP ? udp_resolve(s, key, err) : 0;
}

/* The addresses of list (bind_addr or bind_ssl) of server i. */
static int listen_add(struct wm_stream *st, size_t i, const char *list, bool tls,
                      const char *key, struct wm_err *err)
{
    char(*addrs)[WM_ADDR_STR_MAX] = NULL;
    size_t n = 0;
    struct wm_err e;
    bool dgram = st->servers[i].mode == ST_UDP;

    if (list == NULL || list[0] == '\0') {
        return 0;
    }
    addrs = calloc(WM_ADDR_LIST_MAX, sizeof(*addrs));
    if (addrs == NULL || wm_addr_list_expand(list, addrs, &n, WM_ADDR_LIST_MAX, &e) < 0) {
        free(addrs);
        return wm_err_set(err, NULL, 0, 0, key, "%s", addrs == NULL ? "out of memory" : e.msg);
    }
    struct st_listen *nl = realloc(st->ls, (st->nls + n) * sizeof(*nl));
    if (nl == NULL) {
        free(addrs);
        return wm_err_set(err, NULL, 0, 0, key, "out of memory");
    }
    st->ls = nl;
    for (size_t k = 0; k < n; k++) {
        for (size_t j = 0; j < st->nls; j++) {
            if (st->ls[j].dgram == dgram && strcmp(st->ls[j].addr, addrs[k]) == 0) {
                wm_err_set(err, NULL, 0, 0, key, "%s is used by two [[stream.server]] entries",
                           addrs[k]);
                free(addrs);
                return -1;
            }
        }
        struct st_listen *l = &st->ls[st->nls++];
        snprintf(l->addr, sizeof(l->addr), "%s", addrs[k]);
        l->server = i;
        l->tls = tls;
        l->dgram = dgram;
    }
    free(addrs);
    return 0;
}

int wm_stream_prepare(const struct wm_conf_stream *cs, struct wm_stream **out, struct wm_err *err)
{
    struct wm_stream *st = calloc(1, sizeof(*st));
    char key[64];

    *out = NULL;
    if (st == NULL || (st->servers = calloc(cs->nservers ? cs->nservers : 1,
                                            sizeof(*st->servers))) == NULL) {
        free(st);
        return wm_err_set(err, NULL, 0, 0, "stream", "out of memory");
    }
    atomic_init(&st->refs, 1);
    for (size_t i = 0; i < cs->nservers; i++) {
        const struct wm_conf_sserver *c = &cs->servers[i];
        snprintf(key, sizeof(key), "stream.server[%zu]", i);
        st->nservers = i + 1;
        if (server_compile(cs, c, &st->servers[i], key, err) < 0 ||
            listen_add(st, i, c->bind_addr, false, key, err) < 0 ||
            listen_add(st, i, c->bind_ssl, true, key, err) < 0) {
            stream_free(st);
            return -1;
        }
    }
    *out = st;
    return 0;
}

size_t wm_stream_nlisten(const struct wm_stream *st)
{
    return st->nls;
}

const char *wm_stream_listen_addr(const struct wm_stream *st, size_t i, bool *dgram)
{
    *dgram = st->ls[i].dgram;
    return st->ls[i].addr;
}

static void service_destroy(struct wm_service *svc)
{
    struct st_service *ss = (struct st_service *)svc;

    wm_stream_unref(ss->st);
    free(ss);
}

struct wm_service *wm_stream_service_new(struct wm_stream *st, size_t i)
{
    struct st_service *ss = calloc(1, sizeof(*ss));
    const struct st_listen *l = &st->ls[i];

    if (ss == NULL) {
        return NULL;
    }
    wm_service_init(&ss->base, "stream", st_tcp_accept, service_destroy);
    ss->st = wm_stream_ref(st);
    ss->srv = &st->servers[l->server];
    ss->tls = l->tls;
    if (l->dgram) {
        ss->base.dgram = st_udp_readable;
        ss->base.dgram_free = st_udp_state_free;
    }
    return &ss->base;
}

void st_alog(const struct st_server *srv, const char *proto, const char *client,
             const char *target, int code, unsigned long long in, unsigned long long out,
             unsigned long long ms, const char *reason)
{
    char line[1024];
    char when[64];
    struct tm tm;
    time_t now = time(NULL);
    int n;

    if (srv->alog == NULL) {
        return;
    }
    localtime_r(&now, &tm);
    strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm);
    n = snprintf(line, sizeof(line),
                 "%s [%s] proto=%s target=%s code=%d in=%llu out=%llu ms=%llu end=%s\n", client,
                 when, proto, target[0] ? target : "-", code, in, out, ms, reason);
    if (n <= 0) {
        return;
    }
    if ((size_t)n >= sizeof(line)) { /* cut: still one line, without the NUL */
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    wm_alog_file_write(srv->alog, line, (size_t)n);
}
