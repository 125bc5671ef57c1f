/*
 * h2/h2_head.c - HTTP/2 request header lists to HTTP/1.1 heads, and the
 * response fields that HTTP/2 must not carry (RFC 9113 8.2.2, 8.3).
 * Pure functions on memory (tests/fuzz/fuzz_h2.c reaches them through the
 * whole service: nghttp2, h2.c, the engine).
 */
#include <event2/buffer.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/util.h"
#include "h2/h2.h"
#include "http/head.h"
#include "http/util.h"

#define PSEUDO_MAX 64 /* :method, :scheme, :protocol */

struct wm_h2_req {
    char method[PSEUDO_MAX];
    char scheme[PSEUDO_MAX];
    char protocol[PSEUDO_MAX];
    struct evbuffer *authority;
    struct evbuffer *path;
    struct evbuffer *host;   /* a Host field, used without :authority (made when seen) */
    struct wm_http_head *head; /* the regular fields; wm_h2_req_finish() adds the
                                * request line, Host, Cookie and framing */
    struct evbuffer *cookie; /* cookie crumbs joined with "; " (RFC 9113 8.2.3), or NULL */
    size_t size;             /* HPACK-style: name + value + 32 per field */
    size_t nfields;
    bool has_cl;
    bool given_ok;           /* finished, and the engine may take the head as is */
    int err;                 /* first status to answer, 0 while fine */
};

/* Byte classes: 1 a token character of a lower-case name (RFC 9110 5.6.2,
 * HTTP/2 names are lower case: RFC 9113 8.2.1), 2 a byte a field value may
 * hold (no CR, LF, NUL or other control but HTAB: they would split or
 * smuggle in the HTTP/1 head), 4 a request-target character llhttp's
 * strict mode takes without a doubt (target_plain). Built once, read by
 * every worker. */
static uint8_t byte_class[256];
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static void class_init(void)
{
    for (unsigned c = 0; c < 256; c++) {
        bool tchar = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
        bool vchar = c == '\t' || (c >= 0x20 && c != 0x7f);
        bool pchar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     (c != 0 && strchr("-._~!$&'()*+,;=:@/?%", (int)c) != NULL);
        byte_class[c] = (uint8_t)((tchar ? 1 : 0) | (vchar ? 2 : 0) | (pchar ? 4 : 0));
    }
}

struct wm_h2_req *wm_h2_req_new(void)
{
    struct wm_h2_req *r = calloc(1, sizeof(*r));

    pthread_once(&class_once, class_init);
    if (r == NULL) {
        return NULL;
    }
    r->authority = evbuffer_new();
    r->path = evbuffer_new();
    r->head = wm_http_head_new(WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    if (r->authority == NULL || r->path == NULL || r->head == NULL) {
        wm_h2_req_free(r);
        return NULL;
    }
    return r;
}

void wm_h2_req_free(struct wm_h2_req *r)
{
    if (r == NULL) {
        return;
    }
    struct evbuffer *bufs[] = {r->authority, r->path, r->host, r->cookie};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (bufs[i] != NULL) {
            evbuffer_free(bufs[i]);
        }
    }
    wm_http_head_free(r->head);
    free(r);
}

void wm_h2_req_reset(struct wm_h2_req *r)
{
    struct evbuffer *bufs[] = {r->authority, r->path, r->host, r->cookie};

    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (bufs[i] != NULL) {
            evbuffer_drain(bufs[i], evbuffer_get_length(bufs[i]));
        }
    }
    wm_http_head_clear(r->head); /* the connection's next header list uses it */
    r->method[0] = r->scheme[0] = r->protocol[0] = '\0';
    r->size = r->nfields = 0;
    r->has_cl = false;
    r->given_ok = false;
    r->err = 0;
}

void wm_h2_req_trim(struct wm_h2_req *r)
{
    wm_http_head_reset(r->head);
}

static bool is_tchar(unsigned char ch)
{
    return (byte_class[ch] & 1) != 0;
}

/* A lower-case token. */
static bool name_ok(const uint8_t *p, size_t n)
{
    uint8_t all = 1;

    for (size_t i = 0; i < n; i++) {
        all &= byte_class[p[i]];
    }
    return n > 0 && all != 0;
}

static bool value_ok(const uint8_t *p, size_t n)
{
    uint8_t all = 2;

    for (size_t i = 0; i < n; i++) {
        all &= byte_class[p[i]];
    }
    return all != 0;
}

static bool eq(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int set_small(struct wm_h2_req *r, char *dst, const uint8_t *v, size_t n)
{
    if (dst[0] != '\0' || n == 0 || n >= PSEUDO_MAX) {
        r->err = 400; /* repeated, empty or absurd */
        return -1;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static int set_buf(struct wm_h2_req *r, struct evbuffer *b, const uint8_t *v, size_t n)
{
    if (evbuffer_get_length(b) > 0 || n == 0) {
        r->err = 400;
        return -1;
    }
    return evbuffer_add(b, v, n);
}

static int add_pseudo(struct wm_h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *v,
                      size_t vlen)
{
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] <= 0x20 || v[i] == 0x7f) { /* no spaces or controls in line parts */
            r->err = 400;
            return -1;
        }
    }
    if (eq(name, nlen, ":method")) {
        for (size_t i = 0; i < vlen; i++) {
            if (!is_tchar(v[i]) && !(v[i] >= 'A' && v[i] <= 'Z')) {
                r->err = 400;
                return -1;
            }
        }
        return set_small(r, r->method, v, vlen);
    }
    if (eq(name, nlen, ":scheme")) {
        return set_small(r, r->scheme, v, vlen);
    }
    if (eq(name, nlen, ":protocol")) {
        return set_small(r, r->protocol, v, vlen);
    }
    if (eq(name, nlen, ":authority")) {
        return set_buf(r, r->authority, v, vlen);
    }
    if (eq(name, nlen, ":path")) {
        return set_buf(r, r->path, v, vlen);
    }
    r->err = 400; /* an unknown pseudo-header (nghttp2 refuses them first) */
    return -1;
}

/* Fields HTTP/2 forbids (RFC 9113 8.2.2); nghttp2 resets such streams
 * first, this keeps the translation safe on its own. */
static bool connection_specific(enum wm_hdr id)
{
    return id == WM_HDR_CONNECTION || id == WM_HDR_KEEP_ALIVE || id == WM_HDR_PROXY_CONNECTION ||
           id == WM_HDR_TRANSFER_ENCODING || id == WM_HDR_UPGRADE;
}

/* A field into the head, id its name's (limits were checked by the
 * caller: a failure is memory). */
static int add_field(struct wm_h2_req *r, enum wm_hdr id, const char *name, size_t nlen,
                     const char *value, size_t vlen)
{
    if (wm_http_head_add_named(r->head, id, name, nlen, value, vlen) < 0) {
        r->err = 431;
        return -1;
    }
    return 0;
}

int wm_h2_req_add(struct wm_h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                  size_t vlen)
{
    if (r->err != 0) {
        return -1;
    }
    r->size += nlen + vlen + 32;
    if (r->size > WM_HTTP_MAX_HEAD || ++r->nfields > WM_HTTP_MAX_HEADERS - 8) {
        r->err = 431;
        return -1;
    }
    if (nlen > 0 && name[0] == ':') {
        return add_pseudo(r, name, nlen, value, vlen);
    }
    if (!name_ok(name, nlen) || !value_ok(value, vlen)) {
        r->err = 400;
        return -1;
    }
    /* a lower-case token: its id says which name it is */
    enum wm_hdr id = wm_hdr_id((const char *)name, nlen);
    if (connection_specific(id)) {
        r->err = 400;
        return -1;
    }
    if (id == WM_HDR_TE) {
        return 0; /* "trailers" only (nghttp2 checks); hop-by-hop in HTTP/1 */
    }
    if (id == WM_HDR_HOST) {
        if (r->host == NULL && (r->host = evbuffer_new()) == NULL) {
            r->err = 500;
            return -1;
        }
        return evbuffer_get_length(r->host) > 0 ? 0 : evbuffer_add(r->host, value, vlen);
    }
    if (id == WM_HDR_COOKIE) {
        if (r->cookie == NULL && (r->cookie = evbuffer_new()) == NULL) {
            r->err = 500;
            return -1;
        }
        if (evbuffer_get_length(r->cookie) > 0) {
            evbuffer_add(r->cookie, "; ", 2);
        }
        return evbuffer_add(r->cookie, value, vlen);
    }
    if (id == WM_HDR_CONTENT_LENGTH) {
        if (r->has_cl) {
            r->err = 400;
            return -1;
        }
        r->has_cl = true;
    }
    return add_field(r, id, (const char *)name, nlen, (const char *)value, vlen);
}

/* The request line and Host; the method may become GET (WebSocket). */
static int head_line(struct wm_h2_req *r, const char *method)
{
    size_t alen = evbuffer_get_length(r->authority);
    struct evbuffer *host = alen > 0 || r->host == NULL ? r->authority : r->host;
    const unsigned char *a = evbuffer_pullup(host, -1);
    size_t hlen = evbuffer_get_length(host);
    size_t plen = evbuffer_get_length(r->path);

    if (!value_ok(a, hlen)) {
        return 400;
    }
    for (size_t i = 0; i < hlen; i++) {
        if (a[i] == ' ' || a[i] == '\t' || a[i] == '@') { /* no userinfo in :authority */
            return 400;
        }
    }
    if (wm_http_head_append(r->head, WM_HTTP_PART_METHOD, method, strlen(method)) < 0 ||
        wm_http_head_append(r->head, WM_HTTP_PART_URL, (const char *)evbuffer_pullup(r->path, -1),
                            plen) < 0) {
        return 431;
    }
    wm_http_head_set_version(r->head, 1, 1);
    if (hlen > 0 && add_field(r, WM_HDR_HOST, "host", 4, (const char *)a, hlen) < 0) {
        return 431;
    }
    return 0;
}

/* Characters a request-target may have on the engine's given-head path:
 * those llhttp's strict mode takes without a doubt; anything else goes as
 * bytes, for llhttp to judge as before. */
static bool target_plain(const unsigned char *p, size_t n)
{
    uint8_t all = 4;

    if (n == 0 || (p[0] != '/' && !(n == 1 && p[0] == '*'))) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        all &= byte_class[p[i]];
    }
    return all != 0;
}

static int ws_key(struct wm_h2_req *r)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char k[18] = {0};
    char s[25];

    if (RAND_bytes(k, 16) != 1) {
        for (size_t i = 0; i < 16; i++) {
            k[i] = (unsigned char)random();
        }
    }
    for (size_t i = 0, o = 0; i < 18; i += 3) {
        unsigned v = (unsigned)k[i] << 16 | (unsigned)k[i + 1] << 8 | k[i + 2];
        s[o++] = b64[v >> 18 & 63];
        s[o++] = b64[v >> 12 & 63];
        s[o++] = b64[v >> 6 & 63];
        s[o++] = b64[v & 63];
    }
    memcpy(s + 22, "==", 2); /* 16 bytes: 22 characters and padding */
    s[24] = '\0';
    return add_field(r, WM_HDR_OTHER, "sec-websocket-key", 17, s, 24);
}

int wm_h2_req_finish(struct wm_h2_req *r, bool end_stream, bool *chunked, bool *ws,
                     bool *is_head)
{
    bool connect = strcmp(r->method, "CONNECT") == 0;
    int st;

    *chunked = *ws = false;
    /* first: a refused HEAD is answered without a body too (RFC 9110 9.3.2;
     * nghttp2 and curl reset a HEAD answer that has DATA) */
    *is_head = strcmp(r->method, "HEAD") == 0;
    r->given_ok = false;
    if (r->err != 0) {
        return r->err;
    }
    if (connect && r->protocol[0] == '\0') {
        return 405; /* a plain CONNECT: no tunnels through the HTTP/2 front */
    }
    if (r->protocol[0] != '\0') {
        if (!connect || strcmp(r->protocol, "websocket") != 0) {
            return connect ? 501 : 400;
        }
        *ws = true;
    }
    if (r->method[0] == '\0' || evbuffer_get_length(r->path) == 0 ||
        (r->scheme[0] == '\0' && !connect)) {
        return 400;
    }
    if ((st = head_line(r, *ws ? "GET" : r->method)) != 0) {
        return st;
    }
    if (r->cookie != NULL && evbuffer_get_length(r->cookie) > 0 &&
        add_field(r, WM_HDR_COOKIE, "cookie", 6, (const char *)evbuffer_pullup(r->cookie, -1),
                  evbuffer_get_length(r->cookie)) < 0) {
        return 431;
    }
    if (*ws) {
        if (add_field(r, WM_HDR_CONNECTION, "connection", 10, "upgrade", 7) < 0 ||
            add_field(r, WM_HDR_UPGRADE, "upgrade", 7, "websocket", 9) < 0 || ws_key(r) < 0) {
            return 431;
        }
    } else if (!end_stream && !r->has_cl) {
        *chunked = true;
        if (add_field(r, WM_HDR_TRANSFER_ENCODING, "transfer-encoding", 17, "chunked", 7) < 0) {
            return 431;
        }
    } else if (end_stream && !r->has_cl &&
               (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
                strcmp(r->method, "PATCH") == 0) &&
               add_field(r, WM_HDR_CONTENT_LENGTH, "content-length", 14, "0", 1) < 0) {
        return 431;
    }
    r->given_ok = end_stream && !*ws && !connect &&
                  target_plain(evbuffer_pullup(r->path, -1), evbuffer_get_length(r->path));
    return 0;
}

const struct wm_http_head *wm_h2_req_head(const struct wm_h2_req *r)
{
    return r->head;
}

struct wm_http_head **wm_h2_req_parsed(struct wm_h2_req *r)
{
    return r->given_ok ? &r->head : NULL;
}

void wm_h2_req_line(const struct wm_h2_req *r, char *buf, size_t cap)
{
    size_t plen = evbuffer_get_length(r->path);
    const char *path = plen > 0 ? (const char *)evbuffer_pullup(r->path, -1) : "-";

    if (plen == 0) {
        plen = 1;
    }
    snprintf(buf, cap, "%s %.*s", r->method[0] ? r->method : "-", (int)(plen < 200 ? plen : 200),
             path);
    for (char *p = buf; *p != '\0'; p++) {
        if (*p == '"' || (unsigned char)*p < ' ' || *p == 0x7f) {
            *p = '?';
        }
    }
}

int wm_h2_req_write(struct wm_h2_req *r, struct evbuffer *out)
{
    size_t n;
    const char *m = wm_http_head_method(r->head, &n);
    const char *u;
    struct wm_http_field f;

    evbuffer_add(out, m, n);
    evbuffer_add(out, " ", 1);
    u = wm_http_head_url(r->head, &n);
    evbuffer_add(out, u, n);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < wm_http_head_nfields(r->head); i++) {
        wm_http_head_field(r->head, i, &f);
        evbuffer_add(out, f.name, f.nlen);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, f.value, f.vlen);
        evbuffer_add(out, "\r\n", 2);
    }
    return evbuffer_add(out, "\r\n", 2) == 0 ? 0 : 500;
}

bool wm_h2_resp_keep(const struct wm_http_head *h, const struct wm_http_field *f)
{
    return !(wm_http_head_field_is_hop(h, f) || f->id == WM_HDR_TRANSFER_ENCODING ||
             f->id == WM_HDR_SEC_WEBSOCKET_ACCEPT);
}
