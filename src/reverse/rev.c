/*
 * reverse/rev.c - the reverse proxy's service: accept (plain or TLS),
 * then every request through the HTTP engine (http/fwd.h) with the ops
 * below: choose the server by Host, the location by path and rule, then
 * answer locally or pick an upstream server (connecting, retries and the
 * idle connections of the worker are in rev_up.c).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2.h"
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "files/files.h"
#include "reverse/rev.h"
#include "reverse/rev_int.h"

struct rv_service {
    struct wm_service base;
    struct wm_rev *r;
    const struct rv_listen *l;
    struct wm_h2_front h2; /* HTTP/2 streams of this listener's connections */
    bool h2c;              /* plain port: its default server allows HTTP/2 */
};

/* ---- choosing the server and the location ---- */

/* llhttp's number of the request's method, -1 when unknown. */
static int method_index(struct wm_http_head *req)
{
    size_t n;
    const char *m = wm_http_head_method(req, &n);

    return rv_method_index(m, n);
}

static bool loc_matches(const struct rv_location *l, const char *path, size_t plen,
                        const char *host, size_t hlen, struct wm_http_head *req, bool tls,
                        const struct wm_conn *c)
{
    if (!rv_pattern_match(&l->path, path, plen)) {
        return false;
    }
    if (l->methods != 0) {
        int m = method_index(req);
        if (m < 0 || !(l->methods & (1ULL << m))) {
            return false;
        }
    }
    if (l->schemes != 0 && !(l->schemes & (tls ? 2u : 1u))) {
        return false;
    }
    if (l->nhosts > 0) {
        bool any = false;
        for (size_t i = 0; i < l->nhosts && !any; i++) {
            any = rv_host_match(l->hosts[i], host, hlen);
        }
        if (!any) {
            return false;
        }
    }
    return l->nclient_ip == 0 ||
           (c->peerlen > 0 &&
            rv_cidr_match(l->client_ip, l->nclient_ip, (const struct sockaddr *)&c->peer));
}

/* Host (h, *n: the header's or an absolute-form target's authority)
 * without its port; "" when absent. */
static const char *host_of(const char *h, size_t *n)
{
    if (h == NULL) {
        *n = 0;
        return "";
    }
    if (*n > 0 && h[0] == '[') {
        const char *e = memchr(h, ']', *n);
        *n = e != NULL ? (size_t)(e - h + 1) : *n;
    } else {
        const char *colon = memchr(h, ':', *n);
        *n = colon != NULL ? (size_t)(colon - h) : *n;
    }
    return h;
}

/* ---- local answers ---- */

static int local_answer(struct rv_req *q, struct wm_hfwd_target *t, int status,
                        const char *body_tmpl)
{
    q->local = evbuffer_new();
    if (q->local == NULL) {
        return 500;
    }
    wm_hfwd_expand(q->f, body_tmpl, q->local);
    t->local_status = status;
    t->local_ctype = "text/plain; charset=utf-8";
    t->local_len = evbuffer_get_length(q->local);
    t->local_body = evbuffer_pullup(q->local, -1);
    return WM_HFWD_LOCAL;
}

/* ---- the proxy target ---- */

static int proxy_route(struct rv_req *q, struct wm_conn *c, struct wm_hfwd_target *t,
                       const char *url, size_t ulen, const char **detail)
{
    const struct rv_location *l = q->loc;
    struct rv_conn *rc = (struct rv_conn *)c;

    q->srv = rv_upstream_pick(l->up, c->peerlen > 0 ? (const struct sockaddr *)&c->peer : NULL,
                              0);
    if (q->srv == NULL) {
        *detail = "no upstream server is up";
        return 502;
    }
    atomic_fetch_add(&q->srv->h->active, 1);
    q->ntries = 1;
    q->start_ms = wm_now_coarse_ms(); /* proxy_next_upstream_timeout: no syscall per request */
    rv_target_set(t, q, q->srv);
    /* A body that may have to go again is kept: to the next server
     * (proxy_next_upstream), or to this one when a kept connection turns
     * out closed (http/fwd_up.c, may_retry: idempotent requests only). */
    t->replay_max = rv_req_resendable(q) ? RV_REPLAY_MAX : 0;
    if (l->up_path[0] != '\0') {
        size_t pl = strlen(l->up_path);
        size_t mp = l->path.kind == RV_PAT_PREFIX ? strlen(l->path.text) : 0;
        /* as nginx's proxy_pass with a URI: it replaces the matched prefix */
        if (mp > 0 && ulen >= mp && memcmp(url, l->path.text, mp) == 0) {
            url += mp;
            ulen -= mp;
        }
        bool slash = pl > 0 && l->up_path[pl - 1] == '/' && ulen > 0 && url[0] == '/';
        memcpy(q->path, l->up_path, pl);
        memcpy(q->path + pl, url + slash, ulen - slash);
        t->path = q->path;
        t->pathlen = pl + ulen - slash;
    }
    t->rules = l->rules;
    t->nrules = l->nrules;
    t->idle_ms = l->read_ms;
    t->max_body = l->max_body; /* the bytes received, as Content-Length is checked by route */
    rc->ka_max = l->up->keepalive;
    rc->ka_ms = l->up->keepalive_ms;
    return 0;
}

static int check_access(const struct rv_location *l, const struct wm_conn *c,
                        const char **detail)
{
    const struct sockaddr *sa = (const struct sockaddr *)&c->peer;

    if (c->peerlen == 0) {
        return 0;
    }
    if (l->ndeny_ip > 0 && rv_cidr_match(l->deny_ip, l->ndeny_ip, sa)) {
        *detail = "your address is denied here";
        return 403;
    }
    if (l->nallow_ip > 0 && !rv_cidr_match(l->allow_ip, l->nallow_ip, sa)) {
        *detail = "your address is not allowed here";
        return 403;
    }
    return 0;
}

/* limit_req: the key's rate (wmproxy's order: before allow/deny). */
static int check_limit(struct wm_hfwd *f, const struct rv_location *l, const char **detail,
                       const char **extra)
{
    struct evbuffer *k;
    bool ok;

    if (l->zone == NULL) {
        return 0;
    }
    k = evbuffer_new();
    if (k == NULL) {
        return 0;
    }
    wm_hfwd_expand(f, l->zone_key, k);
    ok = rv_zone_allow(l->zone, l->zone_conf, (const char *)evbuffer_pullup(k, -1),
                       evbuffer_get_length(k), l->burst);
    evbuffer_free(k);
    if (ok) {
        return 0;
    }
    *detail = "request rate limit exceeded";
    *extra = "Retry-After: 1\r\n";
    return l->limit_status;
}

static int body_limit(const struct rv_location *l, struct wm_http_head *req, const char **detail)
{
    size_t n;
    const char *cl = wm_http_head_get(req, "content-length", &n);

    if (l->max_body == 0 || cl == NULL) {
        return 0;
    }
    if (strtoull(cl, NULL, 10) > l->max_body) {
        *detail = "request body larger than client_max_body_size";
        return 413;
    }
    return 0;
}

static const struct rv_location *find_location(const struct rv_vhost *v, const char *path,
                                               size_t plen, const char *host, size_t hlen,
                                               struct wm_http_head *req, bool tls,
                                               const struct wm_conn *c)
{
    for (size_t i = 0; i < v->nlocs; i++) {
        if (loc_matches(&v->locs[i], path, plen, host, hlen, req, tls, c)) {
            return &v->locs[i];
        }
    }
    return NULL;
}

/* try_paths: the first candidate that lands on an existing file (or on a
 * location of another kind) replaces *l and path; else 0 with the
 * location's =CODE in *fail. */
static int try_paths(struct wm_hfwd *f, const struct rv_vhost *v, const struct rv_location **l,
                     char *path, size_t cap, size_t *plen, const char *host, size_t hlen,
                     struct wm_http_head *req, bool tls, int *fail)
{
    const struct rv_location *from = *l;
    struct evbuffer *cand = evbuffer_new();
    int found = 0;

    for (size_t i = 0; cand != NULL && i < from->ntries && !found; i++) {
        char np[4096];
        size_t nl;
        const struct rv_location *to;
        evbuffer_drain(cand, evbuffer_get_length(cand));
        if (rv_try_candidate(&from->tries[i], f, cand) < 0 ||
            rv_path_normalize((const char *)evbuffer_pullup(cand, -1), evbuffer_get_length(cand),
                              np, sizeof(np), &nl) < 0 || nl >= cap) {
            continue;
        }
        to = find_location(v, np, nl, host, hlen, req, tls, wm_hfwd_conn(f));
        if (to == NULL || (to->handler == RV_H_FILES && !wm_files_exists(to->files, np, nl))) {
            continue;
        }
        memcpy(path, np, nl + 1);
        *plen = nl;
        *l = to;
        found = 1;
    }
    if (cand != NULL) {
        evbuffer_free(cand);
    }
    *fail = from->try_status;
    return found;
}

/* Response header rules of the location on a local answer's lines:
 * '-' drops a header, '=' replaces it, '+' adds one (values expanded). */
static bool rule_drops(const struct wm_hfwd_rule *r, const char *line, size_t n)
{
    size_t kl = strlen(r->name);

    return !r->request && (r->op == '-' || r->op == '=') && n > kl && line[kl] == ':' &&
           strncasecmp(line, r->name, kl) == 0;
}

static int local_rules(struct rv_req *q, struct wm_hfwd_target *t)
{
    const struct rv_location *l = q->loc;
    const char *p = t->local_extra != NULL ? t->local_extra : "";

    if (l->nrules == 0 || (q->extra = evbuffer_new()) == NULL) {
        return 0;
    }
    while (*p != '\0') {
        const char *e = strstr(p, "\r\n");
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        bool drop = false;
        for (size_t i = 0; i < l->nrules && !drop; i++) {
            drop = rule_drops(&l->rules[i], p, n);
        }
        if (!drop) {
            evbuffer_add(q->extra, p, n);
            evbuffer_add(q->extra, "\r\n", 2);
        }
        p += n + (e != NULL ? 2 : 0);
    }
    for (size_t i = 0; i < l->nrules; i++) {
        const struct wm_hfwd_rule *r = &l->rules[i];
        if (!r->request && r->op != '-' && r->value != NULL) {
            evbuffer_add_printf(q->extra, "%s: ", r->name);
            wm_hfwd_expand(q->f, r->value, q->extra);
            evbuffer_add(q->extra, "\r\n", 2);
        }
    }
    evbuffer_add(q->extra, "", 1);
    t->local_extra = (const char *)evbuffer_pullup(q->extra, -1);
    return 0;
}

/* The handler of l for this request (path: normalised, url: as sent, or
 * the try_paths candidate; rewritten: path is a try_paths candidate). */
static int dispatch(struct rv_req *q, struct wm_conn *c, struct wm_hfwd_target *t,
                    const char *path, size_t plen, const char *url, size_t ulen,
                    bool rewritten, const char **detail)
{
    const struct rv_location *l = q->loc;
    const struct rv_service *s = (const struct rv_service *)c->svc;

    t->scheme = s->l->tls ? "https" : "http"; /* every handler's {scheme} */
    switch (l->handler) {
    case RV_H_STATIC:
        snprintf(t->log, sizeof(t->log), "static");
        return local_answer(q, t, 200, l->static_body);
    case RV_H_FILES: {
        int r = wm_files_serve(l->files, q->f, wm_hfwd_request(q->f), path, plen, rewritten, t,
                               &q->files, detail);
        if (r == WM_HFWD_LOCAL || r == WM_HFWD_STREAM) {
            local_rules(q, t);
        }
        return r;
    }
    case RV_H_NONE:
        *detail = "this location has no handler";
        return 500;
    case RV_H_PROXY:
        break;
    }
    return proxy_route(q, c, t, url, ulen, detail); /* t->scheme: set above */
}

static int route(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                 struct wm_hfwd_target *t, const char **detail, const char **extra)
{
    const struct rv_service *s = (const struct rv_service *)c->svc;
    size_t ulen;
    const char *url = wm_http_head_url(req, &ulen);
    char path[4096];
    size_t plen;
    size_t hlen;
    const char *host = wm_http_head_get_id(req, WM_HDR_HOST, &hlen);
    char abs_host[WM_HOST_MAX + 8]; /* absolute-form: its authority */
    size_t alen = 0;
    const struct rv_vhost *v;
    const struct rv_location *l;
    struct rv_req *q;
    bool tried = false;
    int r;

    if (ulen > 0 && url[0] != '/' && url[0] != '*') {
        /* RFC 9112 3.2.2, as nginx: the target's authority is the host,
         * the Host header is ignored; the upstream gets origin-form and it */
        char name[WM_HOST_MAX];
        uint16_t port;
        bool https;
        if (wm_http_parse_absolute(url, ulen, name, sizeof(name), &port, &https, &url, &ulen) <
            0) {
            *detail = "malformed absolute request-target";
            return 400;
        }
        wm_addr_join(name, (https && port == 443) || (!https && port == 80) ? 0 : port, abs_host,
                     sizeof(abs_host));
        host = abs_host;
        hlen = alen = strlen(abs_host);
    }
    if (alen == 0 && host != NULL && !wm_http_host_valid(host, hlen)) {
        *detail = "malformed Host";
        return 400;
    }
    host = host_of(host, &hlen);
    if (hlen == 0 && wm_http_head_minor(req) >= 1) {
        *detail = "a Host header is required";
        return 400;
    }
    if (!s->l->tls && wm_h2_wants_upgrade(req) && rv_listen_vhost(s->l, host, hlen)->http2 &&
        wm_h2_upgrade(f, c, req, &s->h2) == WM_HFWD_TAKEN) {
        return WM_HFWD_TAKEN;
    }
    if (rv_path_normalize(url[0] == '?' ? "/" : url, url[0] == '?' ? 1 : ulen, path, sizeof(path),
                          &plen) < 0) {
        *detail = "malformed or unsafe request path";
        return 400;
    }
    v = rv_listen_vhost(s->l, host, hlen);
    l = find_location(v, path, plen, host, hlen, req, s->l->tls, c);
    if (l == NULL) {
        *detail = "no location matches this path";
        return 404;
    }
    if ((r = check_limit(f, l, detail, extra)) != 0 || (r = check_access(l, c, detail)) != 0 ||
        (r = body_limit(l, req, detail)) != 0) {
        return r;
    }
    if (l->ntries > 0) {
        int fail;
        if (!try_paths(f, v, &l, path, sizeof(path), &plen, host, hlen, req, s->l->tls,
                       &fail)) {
            *detail = "no try_paths candidate exists";
            return fail;
        }
        tried = true;
    }
    size_t room = strlen(l->up_path != NULL ? l->up_path : "") + ulen + plen + 2;
    q = wm_mem_calloc(1, sizeof(*q) + room + alen + 1);
    if (q == NULL) {
        *detail = "out of memory";
        return 500;
    }
    q->f = f;
    q->loc = l;
    if (alen > 0) {
        memcpy(q->path + room, abs_host, alen + 1);
        q->abs_host = q->path + room;
    }
    t->data = q;
    t->client_read_ms = l->body_ms;
    t->client_write_ms = l->send_ms;
    t->up_write_ms = l->up_write_ms;
    if (tried && l->handler == RV_H_PROXY) {
        /* the candidate is what goes upstream (no query: as nginx's try_files URI) */
        r = dispatch(q, c, t, path, plen, path, plen, true, detail);
        if (r == 0 && t->path == NULL) {
            memcpy(q->path, path, plen);
            t->path = q->path;
            t->pathlen = plen;
        }
        return r;
    }
    r = dispatch(q, c, t, path, plen, url, ulen, tried, detail);
    if (r == 0 && alen > 0 && t->path == NULL) {
        t->path = url; /* origin-form; a "?q" gets its "/" when the head is built */
        t->pathlen = ulen;
    }
    return r;
}

static void release(struct wm_hfwd_target *t)
{
    struct rv_req *q = t->data;

    if (q == NULL) {
        return;
    }
    rv_cancel_op(q); /* a dial or a TLS handshake still under way */
    if (q->srv != NULL) {
        atomic_fetch_sub(&q->srv->h->active, 1);
    }
    if (q->local != NULL) {
        evbuffer_free(q->local);
    }
    wm_files_req_free(q->files);
    if (q->extra != NULL) {
        evbuffer_free(q->extra);
    }
    wm_mem_free(q);
    t->data = NULL;
}

/* After the main log's line: the location's own access and error logs. */
static void logged(struct wm_hfwd *f, const struct wm_hfwd_log *l)
{
    const struct rv_req *q = l->t->data;
    const struct rv_location *loc = q != NULL ? q->loc : NULL;
    struct rv_logctx x;

    if (loc == NULL || (loc->alog == NULL && (loc->elog == NULL || l->status < 500))) {
        return;
    }
    x = (struct rv_logctx){.req = wm_hfwd_request(f), .l = l, .c = wm_hfwd_conn(f),
                           .up_addr = q->srv != NULL ? q->srv->addr : NULL};
    rv_tls_info(x.c, &x.ssl_protocol, &x.ssl_cipher);
    if (loc->alog != NULL) {
        rv_alog_write(loc->alog, &x);
    }
    if (loc->elog != NULL && l->status >= 500) {
        rv_alog_write(loc->elog, &x);
    }
}

static const struct wm_hfwd_ops rev_ops = {
    .proto = "reverse",
    .route = route,
    .connect = rv_connect_op,
    .cancel = rv_cancel_op,
    .release = release,
    .take_idle = rv_take_idle,
    .park = rv_park,
    .logged = logged,
    .up_result = rv_up_result,
};

/* The same for each HTTP/2 stream (its access lines say so). */
static const struct wm_hfwd_ops rev_h2_ops = {
    .proto = "reverse-h2",
    .queue_max = WM_H2_QUEUE_MAX,
    .route = route,
    .connect = rv_connect_op,
    .cancel = rv_cancel_op,
    .release = release,
    .take_idle = rv_take_idle,
    .park = rv_park,
    .logged = logged,
    .up_result = rv_up_result,
};

/* ---- the service ---- */

static bool tls_front_bind(struct bufferevent *bev, const struct rv_listen *l);

static void service_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                           const struct sockaddr *peer, socklen_t peerlen,
                           struct wm_listen_stats *stats)
{
    struct rv_service *s = (struct rv_service *)svc;
    const struct rv_vhost *v0 = s->l->hosts[0];
    struct wm_conn_limits lim = {.head_ms = v0->head_ms, .idle_ms = v0->ka_ms};
    struct bufferevent *bev;
    struct rv_conn *rc;

    if (s->l->tls) {
        char ps[WM_ADDR_STR_MAX] = "-";
        SSL_CTX *ctx = v0->tls;
        for (size_t i = 1; ctx == NULL && i < s->l->nhosts; i++) {
            ctx = s->l->hosts[i]->tls;
        }
        if (peer != NULL) {
            wm_addr_format(peer, ps, sizeof(ps));
        }
        bev = ctx != NULL ? wm_tls_wrap(wm_worker_base(w), ctx, fd, true, NULL, ps) : NULL;
        if (ctx == NULL) {
            close(fd);
        } else if (bev != NULL && !tls_front_bind(bev, s->l)) {
            wm_bev_free(bev);
            return;
        }
    } else {
        bev = bufferevent_socket_new(wm_worker_base(w), fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            close(fd);
        }
    }
    if (bev == NULL) {
        return;
    }
    rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        wm_bev_free(bev);
        return;
    }
    wm_conn_init(&rc->conn, svc, w, bev, peer, peerlen, stats, &lim);
    rc->conn.proto = s->l->tls ? "https" : "http";
    bufferevent_enable(bev, EV_WRITE);
    wm_h2_serve(&rc->conn, &rev_ops, s->l->tls || s->h2c ? &s->h2 : NULL);
}

static void service_destroy(struct wm_service *svc)
{
    struct rv_service *s = (struct rv_service *)svc;

    wm_rev_unref(s->r);
    free(s);
}

/* An HTTP/2 stream on a connection whose protocol was chosen before its
 * Host: prior knowledge decided by the address's first server, or TLS by
 * the SNI's server. The server the Host selects must take HTTP/2 too. */
static bool h2_serves(const struct wm_h2_front *fr, const struct wm_http_head *req)
{
    const struct rv_service *s =
        (const struct rv_service *)((const char *)fr - offsetof(struct rv_service, h2));
    size_t hlen;
    const char *host = host_of(wm_http_head_get_id(req, WM_HDR_HOST, &hlen), &hlen);

    return rv_listen_vhost(s->l, host, hlen)->http2;
}

struct wm_service *wm_rev_service_new(struct wm_rev *r, size_t i)
{
    struct rv_service *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    wm_service_init(&s->base, "reverse", service_accept, service_destroy);
    s->r = wm_rev_ref(r);
    s->l = &r->listens[i];
    s->h2 = (struct wm_h2_front){.ops = &rev_h2_ops, .conn_size = sizeof(struct rv_conn),
                                 .tls = s->l->tls};
    /* the connection's send timeout cuts no location's own short */
    for (size_t k = 0; k < s->l->nhosts; k++) {
        for (size_t j = 0; j < s->l->hosts[k]->nlocs; j++) {
            int ms = s->l->hosts[k]->locs[j].send_ms;
            s->h2.send_ms = ms > s->h2.send_ms ? ms : s->h2.send_ms;
        }
    }
    for (size_t k = 0; k < s->l->nhosts; k++) {
        if (!s->l->hosts[k]->http2) {
            s->h2.serves = h2_serves; /* else every stream is served: no check */
            break;
        }
    }
    s->h2c = !s->l->tls && s->l->nhosts > 0 && s->l->hosts[0]->http2;
    return &s->base;
}

void wm_rev_worker_exit(void)
{
    rv_checker_stop();
    rv_pool_free_all();
    wm_files_worker_exit();
}

/* ---- TLS front: certificate by SNI, ALPN h2 and http/1.1 ---- */

void rv_tls_info(const struct wm_conn *c, const char **proto, const char **cipher)
{
    const SSL *ssl = c->bev != NULL ? wm_tls_pump_ssl(c->bev) : NULL;

    *proto = ssl != NULL ? SSL_get_version(ssl) : NULL;
    *cipher = ssl != NULL ? SSL_get_cipher_name(ssl) : NULL;
}

/* The SSL's ex_data slot for its listener: SNI chooses among the servers
 * of the address the client connected to, never another address's. */
static pthread_once_t listen_once = PTHREAD_ONCE_INIT;
static int listen_idx = -1; /* written once under listen_once */

static void listen_idx_make(void)
{
    listen_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* A new TLS connection of listener l (it outlives the connection: the
 * connection holds the service). false: out of memory. */
static bool tls_front_bind(struct bufferevent *bev, const struct rv_listen *l)
{
    SSL *ssl = wm_tls_pump_ssl(bev);

    return ssl != NULL && listen_idx >= 0 && SSL_set_ex_data(ssl, listen_idx, (void *)l) == 1;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const struct rv_listen *l = listen_idx >= 0 ? SSL_get_ex_data(ssl, listen_idx) : NULL;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    (void)arg;
    if (name == NULL || l == NULL) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    const struct rv_vhost *v = rv_listen_sni(l, name, strlen(name));
    if (v != NULL && SSL_get_SSL_CTX(ssl) != v->tls) {
        SSL_set_SSL_CTX(ssl, v->tls);
    }
    return SSL_TLSEXT_ERR_OK; /* v's certificate, or the default one */
}

/* After SNI (OpenSSL runs it first): the context is the chosen server's. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct rv_vhost *v = arg;

    (void)ssl;
    return wm_h2_alpn_select(out, outlen, in, inlen, v != NULL && v->http2);
}

int rv_tls_front_setup(SSL_CTX *ctx, const struct rv_vhost *v)
{
    pthread_once(&listen_once, listen_idx_make);
    if (listen_idx < 0) {
        return -1;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, (void *)v);
    return 0;
}
