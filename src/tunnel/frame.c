#include "tunnel/frame.h"

#include "net/addr.h"

#include <stdio.h>
#include <string.h>

/* ---- cursor helpers ---- */

struct rd {
    const uint8_t *p;
    size_t n;
    bool bad;
};

static uint8_t rd_u8(struct rd *r)
{
    if (r->n < 1) {
        r->bad = true;
        return 0;
    }
    r->n--;
    return *r->p++;
}

static uint16_t rd_u16(struct rd *r)
{
    uint16_t v;

    if (r->n < 2) {
        r->bad = true;
        return 0;
    }
    v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    r->n -= 2;
    return v;
}

static uint32_t rd_u32(struct rd *r)
{
    uint32_t v;

    if (r->n < 4) {
        r->bad = true;
        return 0;
    }
    v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) |
        r->p[3];
    r->p += 4;
    r->n -= 4;
    return v;
}

static void rd_bytes(struct rd *r, uint8_t *out, size_t k)
{
    if (r->n < k) {
        r->bad = true;
        memset(out, 0, k);
        return;
    }
    memcpy(out, r->p, k);
    r->p += k;
    r->n -= k;
}

static struct wm_tun_str rd_str(struct rd *r)
{
    struct wm_tun_str s = {"", 0};
    uint16_t len = rd_u16(r);

    if (r->bad || len > WM_TUN_STR_MAX || r->n < len) {
        r->bad = true;
        return s;
    }
    s.p = (const char *)r->p;
    s.n = len;
    r->p += len;
    r->n -= len;
    return s;
}

struct wr {
    uint8_t *p;
    size_t n;
    size_t cap;
    bool bad;
};

static void wr_bytes(struct wr *w, const void *src, size_t k)
{
    if (w->bad || w->cap - w->n < k) {
        w->bad = true;
        return;
    }
    if (k == 0) {
        return; /* src may be NULL for an empty string */
    }
    memcpy(w->p + w->n, src, k);
    w->n += k;
}

static void wr_u8(struct wr *w, uint8_t v)
{
    wr_bytes(w, &v, 1);
}

static void wr_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    wr_bytes(w, b, 2);
}

static void wr_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    wr_bytes(w, b, 4);
}

static void wr_strn(struct wr *w, const char *s, size_t n)
{
    if (n > WM_TUN_STR_MAX) {
        w->bad = true;
        return;
    }
    wr_u16(w, (uint16_t)n);
    wr_bytes(w, s, n);
}

static void wr_str(struct wr *w, struct wm_tun_str s)
{
    wr_strn(w, s.p, s.n);
}

static size_t wr_done(struct wr *w)
{
    return w->bad ? 0 : w->n;
}

/* A decoder succeeds only when every byte was used. */
static int rd_done(struct rd *r)
{
    return r->bad || r->n != 0 ? -1 : 0;
}

/* ---- header ---- */

int wm_tun_hdr_decode(const uint8_t *p, struct wm_tun_hdr *h)
{
    h->len = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
    h->type = p[3];
    h->flags = p[4];
    h->sid = ((uint32_t)p[5] << 24) | ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 8) | p[8];
    if (h->sid & 0x80000000u) {
        return -1;
    }
    if (h->len > WM_TUN_MAX_PAYLOAD) {
        return -1;
    }
    return 0;
}

void wm_tun_hdr_encode(uint8_t out[WM_TUN_HDR], uint32_t len, uint8_t type, uint8_t flags,
                       uint32_t sid)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(sid >> 24);
    out[6] = (uint8_t)(sid >> 16);
    out[7] = (uint8_t)(sid >> 8);
    out[8] = (uint8_t)sid;
}

const char *wm_tun_hdr_check(const struct wm_tun_hdr *h)
{
    bool stream = h->sid != 0;

    switch (h->type) {
    case WM_TUN_DATA:
        return stream ? NULL : "DATA on stream 0";
    case WM_TUN_OPEN:
    case WM_TUN_OPEN_RESULT:
        if (!stream) {
            return "stream frame on stream 0";
        }
        return h->len >= 1 ? NULL : "empty OPEN/OPEN_RESULT";
    case WM_TUN_RST:
        if (!stream) {
            return "RST on stream 0";
        }
        return h->len >= 4 ? NULL : "short RST";
    case WM_TUN_WINDOW_UPDATE:
        if (!stream) {
            return "WINDOW_UPDATE on stream 0";
        }
        return h->len == 4 ? NULL : "WINDOW_UPDATE length is not 4";
    case WM_TUN_PING:
        if (stream) {
            return "PING on a stream";
        }
        return h->len == 8 ? NULL : "PING length is not 8";
    case WM_TUN_GOAWAY:
        if (stream) {
            return "GOAWAY on a stream";
        }
        return h->len >= 4 ? NULL : "short GOAWAY";
    case WM_TUN_HELLO:
    case WM_TUN_CHALLENGE:
    case WM_TUN_AUTH:
    case WM_TUN_AUTH_RESULT:
    case WM_TUN_REGISTER:
    case WM_TUN_REGISTER_RESULT:
        return stream ? "handshake frame on a stream" : NULL;
    default:
        return "unknown frame type";
    }
}

/* ---- handshake ---- */

int wm_tun_hello_decode(const uint8_t *p, size_t n, struct wm_tun_hello *o)
{
    struct rd r = {p, n, false};

    o->version = rd_u8(&r);
    o->window = rd_u32(&r);
    o->name = rd_str(&r);
    if (o->window < 1024 || o->window > 0x7fffffffu) {
        return -1;
    }
    return rd_done(&r);
}

size_t wm_tun_hello_encode(uint8_t *out, size_t cap, const struct wm_tun_hello *v)
{
    struct wr w = {out, 0, cap, false};

    wr_u8(&w, v->version);
    wr_u32(&w, v->window);
    wr_str(&w, v->name);
    return wr_done(&w);
}

int wm_tun_challenge_decode(const uint8_t *p, size_t n, struct wm_tun_challenge *o)
{
    struct rd r = {p, n, false};

    rd_bytes(&r, o->nonce, WM_TUN_NONCE);
    o->flags = rd_u8(&r);
    o->window = rd_u32(&r);
    if ((o->flags & ~(WM_TUN_CH_AUTH | WM_TUN_CH_TLS)) != 0 || o->window < 1024 || o->window > 0x7fffffffu) {
        return -1;
    }
    return rd_done(&r);
}

size_t wm_tun_challenge_encode(uint8_t *out, size_t cap, const struct wm_tun_challenge *v)
{
    struct wr w = {out, 0, cap, false};

    wr_bytes(&w, v->nonce, WM_TUN_NONCE);
    wr_u8(&w, v->flags);
    wr_u32(&w, v->window);
    return wr_done(&w);
}

int wm_tun_auth_decode(const uint8_t *p, size_t n, struct wm_tun_auth *o)
{
    struct rd r = {p, n, false};

    rd_bytes(&r, o->nonce, WM_TUN_NONCE);
    o->user = rd_str(&r);
    rd_bytes(&r, o->mac, WM_TUN_MAC);
    return rd_done(&r);
}

size_t wm_tun_auth_encode(uint8_t *out, size_t cap, const struct wm_tun_auth *v)
{
    struct wr w = {out, 0, cap, false};

    wr_bytes(&w, v->nonce, WM_TUN_NONCE);
    wr_str(&w, v->user);
    wr_bytes(&w, v->mac, WM_TUN_MAC);
    return wr_done(&w);
}

int wm_tun_auth_result_decode(const uint8_t *p, size_t n, struct wm_tun_auth_result *o)
{
    struct rd r = {p, n, false};

    o->ok = rd_u8(&r);
    rd_bytes(&r, o->mac, WM_TUN_MAC);
    o->reason = rd_str(&r);
    if (o->ok > 1) {
        return -1;
    }
    return rd_done(&r);
}

size_t wm_tun_auth_result_encode(uint8_t *out, size_t cap, const struct wm_tun_auth_result *v)
{
    struct wr w = {out, 0, cap, false};

    wr_u8(&w, v->ok);
    wr_bytes(&w, v->mac, WM_TUN_MAC);
    wr_str(&w, v->reason);
    return wr_done(&w);
}

/* ---- mappings ---- */

int wm_tun_register_decode(const uint8_t *p, size_t n, struct wm_tun_mapping *out, size_t max)
{
    struct rd r = {p, n, false};
    uint16_t count = rd_u16(&r);

    if (r.bad || count > max || count > WM_TUN_MAX_MAPPINGS) {
        return -1;
    }
    for (uint16_t i = 0; i < count && !r.bad; i++) {
        struct wm_tun_mapping *m = &out[i];
        m->name = rd_str(&r);
        m->mode = rd_u8(&r);
        m->domain = rd_str(&r);
        m->remote_port = rd_u16(&r);
        m->bind = rd_str(&r);
        m->group = rd_str(&r);
        m->nrules = rd_u16(&r);
        if (m->mode < WM_TUN_MODE_HTTP || m->mode > WM_TUN_MODE_UDP || m->name.n == 0 ||
            m->nrules > WM_TUN_MAX_RULES) {
            return -1;
        }
        for (uint16_t k = 0; k < m->nrules && !r.bad; k++) {
            struct wm_tun_rule *h = &m->rules[k];
            h->request = rd_u8(&r);
            h->op = rd_u8(&r);
            h->name = rd_str(&r);
            h->value = rd_str(&r);
            if (h->request > 1 || (h->op != '+' && h->op != '-' && h->op != '=') ||
                h->name.n == 0) {
                return -1;
            }
        }
    }
    return rd_done(&r) < 0 ? -1 : (int)count;
}

size_t wm_tun_register_encode(uint8_t *out, size_t cap, const struct wm_tun_mapping *v,
                              size_t count)
{
    struct wr w = {out, 0, cap, false};

    if (count > WM_TUN_MAX_MAPPINGS) {
        return 0;
    }
    wr_u16(&w, (uint16_t)count);
    for (size_t i = 0; i < count; i++) {
        const struct wm_tun_mapping *m = &v[i];
        if (m->nrules > WM_TUN_MAX_RULES) {
            return 0;
        }
        wr_str(&w, m->name);
        wr_u8(&w, m->mode);
        wr_str(&w, m->domain);
        wr_u16(&w, m->remote_port);
        wr_str(&w, m->bind);
        wr_str(&w, m->group);
        wr_u16(&w, m->nrules);
        for (uint16_t k = 0; k < m->nrules; k++) {
            wr_u8(&w, m->rules[k].request);
            wr_u8(&w, m->rules[k].op);
            wr_str(&w, m->rules[k].name);
            wr_str(&w, m->rules[k].value);
        }
    }
    return wr_done(&w);
}

int wm_tun_register_result_decode(const uint8_t *p, size_t n, uint8_t *ok,
                                  struct wm_tun_str *reason, size_t max)
{
    struct rd r = {p, n, false};
    uint16_t count = rd_u16(&r);

    if (r.bad || count > max) {
        return -1;
    }
    for (uint16_t i = 0; i < count && !r.bad; i++) {
        ok[i] = rd_u8(&r);
        reason[i] = rd_str(&r);
        if (ok[i] > 1) {
            return -1;
        }
    }
    return rd_done(&r) < 0 ? -1 : (int)count;
}

size_t wm_tun_register_result_encode(uint8_t *out, size_t cap, const uint8_t *ok,
                                     const char *const *reason, size_t count)
{
    struct wr w = {out, 0, cap, false};

    if (count > WM_TUN_MAX_MAPPINGS) {
        return 0;
    }
    wr_u16(&w, (uint16_t)count);
    for (size_t i = 0; i < count; i++) {
        wr_u8(&w, ok[i]);
        wr_strn(&w, reason[i], strlen(reason[i]));
    }
    return wr_done(&w);
}

/* ---- streams ---- */

int wm_tun_open_decode(const uint8_t *p, size_t n, struct wm_tun_open *o)
{
    struct rd r = {p, n, false};

    o->kind = rd_u8(&r);
    o->name.p = "";
    o->name.n = 0;
    if (o->kind == WM_TUN_OPEN_MAPPING) {
        o->name = rd_str(&r);
        if (o->name.n == 0) {
            return -1;
        }
    } else if (o->kind != WM_TUN_OPEN_PROXY) {
        return -1;
    }
    o->peer = rd_str(&r);
    return rd_done(&r);
}

size_t wm_tun_open_encode(uint8_t *out, size_t cap, const struct wm_tun_open *v)
{
    struct wr w = {out, 0, cap, false};

    wr_u8(&w, v->kind);
    if (v->kind == WM_TUN_OPEN_MAPPING) {
        wr_str(&w, v->name);
    }
    wr_str(&w, v->peer);
    return wr_done(&w);
}

const char *wm_tun_peer_format(char *out, size_t cap, const struct sockaddr *src,
                               const struct sockaddr *dst)
{
    char a[WM_ADDR_STR_MAX];
    char b[WM_ADDR_STR_MAX];

    if (src == NULL) {
        snprintf(out, cap, "-");
    } else if (dst == NULL) {
        snprintf(out, cap, "%s", wm_addr_format(src, a, sizeof(a)));
    } else {
        snprintf(out, cap, "%s>%s", wm_addr_format(src, a, sizeof(a)),
                 wm_addr_format(dst, b, sizeof(b)));
    }
    return out;
}

/* One "ip:port" / "[v6]:port" into ss; 0 when it is not one. */
static socklen_t peer_addr(const char *p, size_t n, struct sockaddr_storage *ss)
{
    char host[WM_ADDR_STR_MAX];
    uint16_t port;
    socklen_t len = 0;

    if (wm_addr_split(p, n, host, sizeof(host), &port) < 0 ||
        wm_addr_from_ip(host, port, ss, &len) < 0) {
        return 0;
    }
    return len;
}

void wm_tun_peer_parse(struct wm_tun_str s, struct wm_tun_peer *out)
{
    const char *gt = s.n > 0 ? memchr(s.p, '>', s.n) : NULL;
    size_t n = gt != NULL ? (size_t)(gt - s.p) : s.n;

    memset(out, 0, sizeof(*out));
    out->srclen = peer_addr(s.p, n, &out->src);
    if (gt != NULL && out->srclen > 0) {
        out->dstlen = peer_addr(gt + 1, s.n - n - 1, &out->dst);
    }
}

int wm_tun_code_decode(const uint8_t *p, size_t n, bool wide, uint32_t *code,
                       struct wm_tun_str *reason)
{
    struct rd r = {p, n, false};

    *code = wide ? rd_u32(&r) : rd_u8(&r);
    if (r.bad || r.n > WM_TUN_STR_MAX) {
        return -1;
    }
    reason->p = (const char *)r.p;
    reason->n = r.n;
    return 0;
}

size_t wm_tun_code_encode(uint8_t *out, size_t cap, bool wide, uint32_t code, const char *reason)
{
    struct wr w = {out, 0, cap, false};
    size_t rl = reason != NULL ? strlen(reason) : 0;

    if (rl > WM_TUN_STR_MAX) {
        rl = WM_TUN_STR_MAX;
    }
    if (wide) {
        wr_u32(&w, code);
    } else {
        wr_u8(&w, (uint8_t)code);
    }
    wr_bytes(&w, reason != NULL ? reason : "", rl);
    return wr_done(&w);
}

const char *wm_tun_type_name(uint8_t type)
{
    switch (type) {
    case WM_TUN_DATA: return "DATA";
    case WM_TUN_OPEN: return "OPEN";
    case WM_TUN_OPEN_RESULT: return "OPEN_RESULT";
    case WM_TUN_RST: return "RST";
    case WM_TUN_WINDOW_UPDATE: return "WINDOW_UPDATE";
    case WM_TUN_PING: return "PING";
    case WM_TUN_GOAWAY: return "GOAWAY";
    case WM_TUN_HELLO: return "HELLO";
    case WM_TUN_CHALLENGE: return "CHALLENGE";
    case WM_TUN_AUTH: return "AUTH";
    case WM_TUN_AUTH_RESULT: return "AUTH_RESULT";
    case WM_TUN_REGISTER: return "REGISTER";
    case WM_TUN_REGISTER_RESULT: return "REGISTER_RESULT";
    default: return "?";
    }
}

const char *wm_tun_open_code_str(uint8_t code)
{
    static const char *const names[WM_TUN_OPEN_CODE_COUNT] = {
        "ok", "refused", "unreachable", "timeout", "no such mapping", "not allowed",
        "resource limit",
    };
    return code < WM_TUN_OPEN_CODE_COUNT ? names[code] : "error";
}

const char *wm_tun_open_code_end(uint8_t code)
{
    static const char *const names[WM_TUN_OPEN_CODE_COUNT] = {
        "ok", "refused", "unreachable", "timeout", "no-such-mapping", "not-allowed",
        "resource-limit",
    };
    return code < WM_TUN_OPEN_CODE_COUNT ? names[code] : "error";
}

void wm_tun_str_copy(char *dst, size_t cap, struct wm_tun_str s)
{
    if (cap == 0) {
        return;
    }
    size_t n = s.n < cap - 1 ? s.n : cap - 1;

    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

bool wm_tun_str_eq(struct wm_tun_str s, const char *lit)
{
    return strlen(lit) == s.n && memcmp(s.p, lit, s.n) == 0;
}
