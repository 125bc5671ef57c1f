/*
 * http/fwd_head.c - the heads the forwarding engine writes: the
 * upstream request head and the client's response head, each built in one
 * evbuffer reservation, with hop-by-hop fields dropped and header rules
 * applied. Internal to http/fwd (see fwd_int.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/addr.h"
#include "http/fwd.h"
#include "http/fwd_int.h"
#include "http/util.h"
#include "net/conn.h"

/* ---- header rules ---- */

/* Rule output gathered on the stack: one evbuffer_add per head, not one
 * per piece. The client's address is formatted once per head. */
struct obuf {
    struct evbuffer *out;
    size_t n;
    int iplen; /* -1: not formatted yet */
    char ip[64];
    char b[1024];
};

static void ob_init(struct obuf *o, struct evbuffer *out)
{
    o->out = out;
    o->n = 0;
    o->iplen = -1;
}

static void ob_flush(struct obuf *o)
{
    if (o->n > 0) {
        evbuffer_add(o->out, o->b, o->n);
        o->n = 0;
    }
}

static void ob_put(struct obuf *o, const char *p, size_t n)
{
    if (n > sizeof(o->b) - o->n) {
        ob_flush(o);
        if (n > sizeof(o->b)) {
            evbuffer_add(o->out, p, n);
            return;
        }
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void ob_client_ip(struct obuf *o, const struct wm_conn *c)
{
    if (o->iplen < 0) {
        o->ip[0] = '\0';
        if (c->peerlen > 0) {
            wm_addr_format_ip((const struct sockaddr *)&c->peer, o->ip, sizeof(o->ip));
        }
        o->iplen = (int)strlen(o->ip);
    }
    ob_put(o, o->ip, (size_t)o->iplen);
}

/* The value of a variable read from the request ({url}, {path}, {host},
 * {method}, {scheme}); NULL when name is none of them or the request has
 * no such value (the variable then stays as written). A request in
 * absolute form gives its target's path and authority, as nginx's $uri
 * and $host do (the authority chose the server, RFC 9112 3.2.2). */
static const char *var_value(struct wm_hfwd *f, struct wm_http_head *hd, const char *name,
                             size_t nlen, size_t *len)
{
    bool want_url = wm_strieq(name, nlen, "url") || wm_strieq(name, nlen, "path");

    if (want_url || wm_strieq(name, nlen, "host")) {
        size_t n;
        const char *url = wm_http_head_url(hd, &n);
        const char *auth, *rest;
        size_t alen, rlen;
        bool https;
        if (url != NULL && wm_http_absolute_split(url, n, &https, &auth, &alen, &rest, &rlen)) {
            *len = want_url ? rlen : alen;
            return want_url ? rest : auth;
        }
        if (want_url) {
            *len = n;
            return url;
        }
        return wm_http_head_get_id(hd, WM_HDR_HOST, len);
    }
    if (wm_strieq(name, nlen, "method")) {
        return wm_http_head_method(hd, len);
    }
    if (wm_strieq(name, nlen, "scheme")) {
        const char *v = f->w->t.scheme != NULL ? f->w->t.scheme : "http";
        *len = strlen(v);
        return v;
    }
    return NULL;
}

/* A variable at v ({name}, or $name in lower case and '_'): its name and
 * length, and the bytes it spans as written; 0 when v starts none. */
static size_t var_at(const char *v, const char **name, size_t *nlen)
{
    const char *end;

    *name = v + 1;
    *nlen = 0;
    if (*v == '{' && (end = strchr(v, '}')) != NULL) {
        *nlen = (size_t)(end - *name);
        return *nlen > 0 ? *nlen + 2 : 0;
    }
    if (*v == '$') {
        while ((*name)[*nlen] == '_' || ((*name)[*nlen] >= 'a' && (*name)[*nlen] <= 'z')) {
            (*nlen)++;
        }
        return *nlen > 0 ? *nlen + 1 : 0;
    }
    return 0;
}

/* Expand {client_ip}, {url}, {host}, {path}, {method}, {scheme},
 * {proxy_add_x_forwarded_for} (or $name) in v. */
static void expand(struct wm_hfwd *f, struct wm_http_head *hd, const char *v, struct obuf *o)
{
    while (*v != '\0') {
        const char *name;
        size_t nlen;
        size_t skip = var_at(v, &name, &nlen);
        if (skip > 0) {
            size_t len = 0;
            const char *val;
            if (wm_strieq(name, nlen, "client_ip")) {
                ob_client_ip(o, f->c);
                v += skip;
                continue;
            }
            if (wm_strieq(name, nlen, "proxy_add_x_forwarded_for")) {
                /* nginx's: the client's X-Forwarded-For fields, all of
                 * them in order (one list, RFC 9110 5.3), then its address */
                struct wm_http_field fl;
                for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
                    wm_http_head_field(hd, i, &fl);
                    if (fl.id == WM_HDR_X_FORWARDED_FOR && fl.vlen > 0) {
                        ob_put(o, fl.value, fl.vlen);
                        ob_put(o, ", ", 2);
                    }
                }
                ob_client_ip(o, f->c);
                v += skip;
                continue;
            }
            if ((val = var_value(f, hd, name, nlen, &len)) != NULL) {
                ob_put(o, val, len);
                v += skip;
                continue;
            }
        }
        size_t run = 1 + strcspn(v + 1, "{$"); /* literal bytes up to the next variable */
        ob_put(o, v, run);
        v += run;
    }
}

const char *wm_hfwd_unknown_var(const char *v, size_t *len)
{
    static const char *const known[] = {"client_ip", "proxy_add_x_forwarded_for", "url",
                                        "path", "host", "method", "scheme"};

    for (; *v != '\0'; v++) {
        const char *name;
        size_t nlen;
        size_t skip = var_at(v, &name, &nlen);
        if (skip == 0) {
            continue;
        }
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++) {
            ok = wm_strieq(name, nlen, known[i]);
        }
        if (!ok) {
            *len = skip;
            return v;
        }
        v += skip - 1;
    }
    return NULL;
}

void wm_hfwd_expand(struct wm_hfwd *f, const char *v, struct evbuffer *out)
{
    struct obuf o;

    ob_init(&o, out);
    expand(f, wm_http_parser_head(f->req), v, &o);
    ob_flush(&o);
}

/* Append the rules' own header lines ('+' always, '=' replaces). */
static void add_rule_headers(struct wm_hfwd *f, struct wm_http_head *hd, bool request,
                             struct evbuffer *out)
{
    struct obuf o;

    ob_init(&o, out);
    for (size_t i = 0; i < f->w->t.nrules; i++) {
        const struct wm_hfwd_rule *r = &f->w->t.rules[i];
        if (r->request != request || r->op == '-') {
            continue;
        }
        ob_put(&o, r->name, strlen(r->name));
        ob_put(&o, ": ", 2);
        expand(f, hd, r->value, &o);
        ob_put(&o, "\r\n", 2);
    }
    ob_flush(&o);
}

/* Drop a field because a rule removes or replaces it. */
static bool ruled_out(struct wm_hfwd *f, bool request, const struct wm_http_field *fl)
{
    unsigned first = (unsigned char)fl->name[0] | 0x20;

    for (size_t i = 0; i < f->w->t.nrules; i++) {
        const struct wm_hfwd_rule *r = &f->w->t.rules[i];
        if (r->request == request && (r->op == '-' || r->op == '=') &&
            ((unsigned char)r->name[0] | 0x20) == first && wm_strieq(fl->name, fl->nlen, r->name)) {
            return true;
        }
    }
    return false;
}

/* ---- head output: one reservation, filled with memcpy ---- */

struct headw {
    struct evbuffer *out;
    struct evbuffer_iovec v;
    char *p;
    size_t n;
};

/* Reserve room for at most cap bytes. Returns -1 on OOM. */
static int headw_begin(struct headw *w, struct evbuffer *out, size_t cap)
{
    w->out = out;
    w->n = 0;
    if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &w->v, 1) != 1 || w->v.iov_len < cap) {
        return -1;
    }
    w->p = w->v.iov_base;
    return 0;
}

static void headw_put(struct headw *w, const void *d, size_t n)
{
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void headw_field(struct headw *w, const struct wm_http_field *fl)
{
    headw_put(w, fl->name, fl->nlen);
    headw_put(w, ": ", 2);
    headw_put(w, fl->value, fl->vlen);
    headw_put(w, "\r\n", 2);
}

static void headw_end(struct headw *w)
{
    w->v.iov_len = w->n;
    evbuffer_commit_space(w->out, &w->v, 1);
}

/* Bytes a head's copy can take: every stored byte, plus ": " and CRLF per
 * field, plus the first line's own (extra says how much). */
static size_t head_cap(const struct wm_http_head *hd, size_t extra)
{
    return wm_http_head_size(hd) + 4 * wm_http_head_nfields(hd) + extra + 64;
}

void hfwd_build_upstream_head(struct wm_hfwd *f, struct wm_http_head *hd)
{
    struct evbuffer *b = f->w->head_out;
    size_t mlen;
    size_t ulen;
    const char *m = wm_http_head_method(hd, &mlen);
    const char *u = wm_http_head_url(hd, &ulen);
    struct wm_http_field fl;
    bool v10 = wm_http_head_major(hd) == 1 && wm_http_head_minor(hd) == 0;
    bool own_host = f->w->t.host_hdr[0] != '\0';
    size_t hlen = own_host ? strlen(f->w->t.host_hdr) : 0;
    struct headw w;

    evbuffer_drain(b, evbuffer_get_length(b));
    if (headw_begin(&w, b, head_cap(hd, f->w->t.pathlen + hlen + 32)) < 0) {
        return; /* OOM: an empty head, the upstream answers 400 or closes */
    }
    headw_put(&w, m, mlen);
    headw_put(&w, " ", 1);
    if (f->w->t.path != NULL) {
        if (f->w->t.pathlen == 0 || f->w->t.path[0] != '/') {
            headw_put(&w, "/", 1);
        }
        headw_put(&w, f->w->t.path, f->w->t.pathlen);
    } else {
        headw_put(&w, u, ulen);
    }
    headw_put(&w, v10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n", 11);
    if (own_host) {
        headw_put(&w, "Host: ", 6);
        headw_put(&w, f->w->t.host_hdr, hlen);
        headw_put(&w, "\r\n", 2);
    }
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        wm_http_head_field(hd, i, &fl);
        if (own_host && fl.id == WM_HDR_HOST) {
            continue;
        }
        if (f->ri.expect && fl.id == WM_HDR_EXPECT) {
            continue; /* answered by us (fwd_body.c) */
        }
        if (!(f->ri.wants_upgrade && fl.id == WM_HDR_UPGRADE) &&
            wm_http_head_field_is_hop(hd, &fl)) {
            continue;
        }
        if (f->w->t.nrules > 0 && ruled_out(f, true, &fl)) {
            continue;
        }
        while (fl.id == WM_HDR_CONTENT_LENGTH && fl.vlen > 1 && fl.value[0] == '0' &&
               fl.value[1] >= '0' && fl.value[1] <= '9') {
            /* without leading zeros: a hop reading "010" as octal, or only
             * so many digits, would frame the body otherwise */
            fl.value++;
            fl.vlen--;
        }
        headw_field(&w, &fl);
    }
    headw_end(&w);
    if (f->w->t.nrules > 0) {
        add_rule_headers(f, hd, true, b);
    }
    if (f->ri.wants_upgrade) {
        evbuffer_add(b, "Connection: Upgrade\r\n\r\n", 23);
    } else if (v10) {
        evbuffer_add(b, "Connection: close\r\n\r\n", 21);
    } else {
        evbuffer_add(b, "\r\n", 2);
    }
}

void hfwd_set_reqline(struct wm_hfwd *f, struct wm_http_head *hd)
{
    size_t mlen;
    size_t ulen;
    const char *m = wm_http_head_method(hd, &mlen);
    const char *u = wm_http_head_url(hd, &ulen);

    snprintf(f->w->reqline, sizeof(f->w->reqline), "%.*s %.*s", (int)(mlen < 20 ? mlen : 20), m,
             (int)(ulen < 200 ? ulen : 200), u);
    /* The log line must stay one line with balanced quotes. */
    for (char *p = f->w->reqline; *p != '\0'; p++) {
        if (*p == '"' || (unsigned char)*p < ' ') {
            *p = '?';
        }
    }
}

/* ---- the response head for the client ---- */

/* Does field fl of response head hd go to the client? */
static bool resp_field_kept(struct wm_hfwd *f, struct wm_http_head *hd,
                            const struct wm_http_field *fl, int status, bool upgrade)
{
    if ((status < 200 || status == 204) &&
        (fl->id == WM_HDR_CONTENT_LENGTH || fl->id == WM_HDR_TRANSFER_ENCODING)) {
        return false; /* RFC 9110 8.6, 9112 6.1: no body to frame (nginx drops it too) */
    }
    if (fl->id == WM_HDR_TRANSFER_ENCODING &&
        (f->ri.dechunk || ((f->ri.is_head || status == 304) &&
                           wm_http_head_minor(wm_http_parser_head(f->req)) == 0))) {
        /* the body goes decoded (fwd_up.c); RFC 9112 6.1: none to an
         * HTTP/1.0 client, nor on an answer without a body */
        return false;
    }
    if (upgrade && fl->id == WM_HDR_UPGRADE) {
        /* kept */
    } else if (fl->id == WM_HDR_TRAILER) {
        /* kept: chunked bodies pass through with their trailers */
    } else if (wm_http_head_field_is_hop(hd, fl)) {
        return false;
    }
    return !(f->w->t.nrules > 0 && status >= 200 && ruled_out(f, false, fl));
}

/* The head's last line(s): Connection for the client, the empty line. */
static const char *resp_head_end(struct wm_hfwd *f, int status, bool upgrade)
{
    if (upgrade) {
        return "Connection: Upgrade\r\n\r\n";
    }
    if (status >= 200 && f->ri.close_after) {
        return "Connection: close\r\n\r\n";
    }
    if (status >= 200 && wm_http_head_minor(wm_http_parser_head(f->req)) == 0) {
        return "Connection: keep-alive\r\n\r\n";
    }
    return "\r\n";
}

size_t hfwd_response_head_len(struct wm_hfwd *f)
{
    struct wm_http_head *hd = wm_http_parser_head(f->resp);
    int status = wm_http_head_status(hd);
    size_t rlen;
    size_t n;
    struct wm_http_field fl;

    (void)wm_http_head_reason(hd, &rlen);
    n = 13 + rlen + 2 + strlen(resp_head_end(f, status, false));
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        wm_http_head_field(hd, i, &fl);
        if (resp_field_kept(f, hd, &fl, status, false)) {
            n += fl.nlen + 2 + fl.vlen + 2;
        }
    }
    return n;
}

void hfwd_write_response_head(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    struct wm_http_head *hd = wm_http_parser_head(f->resp);
    struct evbuffer *out = f->w->scratch;
    size_t before = evbuffer_get_length(out);
    size_t rlen;
    const char *reason = wm_http_head_reason(hd, &rlen);
    struct wm_http_field fl;
    int status = wm_http_head_status(hd);
    bool upgrade = status == 101 && f->ri.wants_upgrade;
    char sl[16] = "HTTP/1.1 000 ";
    struct headw w;

    if (headw_begin(&w, out, head_cap(hd, rlen + 16)) < 0) {
        return; /* OOM: nothing sent; the connection ends on its timeout */
    }
    sl[9] = (char)('0' + status / 100 % 10);
    sl[10] = (char)('0' + status / 10 % 10);
    sl[11] = (char)('0' + status % 10);
    headw_put(&w, sl, 13);
    headw_put(&w, reason, rlen);
    headw_put(&w, "\r\n", 2);
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        wm_http_head_field(hd, i, &fl);
        if (resp_field_kept(f, hd, &fl, status, upgrade)) {
            headw_field(&w, &fl);
        }
    }
    headw_end(&w);
    if (f->w->t.nrules > 0 && status >= 200) {
        add_rule_headers(f, wm_http_parser_head(f->req), false, out);
    }
    evbuffer_add(out, resp_head_end(f, status, upgrade), strlen(resp_head_end(f, status, upgrade)));
    f->req_out += evbuffer_get_length(out) - before;
    c->bytes_out += evbuffer_get_length(out) - before;
    f->resp_head_bytes += evbuffer_get_length(out) - before;
}
