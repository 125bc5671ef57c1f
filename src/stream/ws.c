/*
 * stream/ws.c - the WebSocket frame codec (see ws.h).
 */
#include "stream/ws.h"

#include <openssl/evp.h>
#include <string.h>

#include "core/util.h"

static int fail(uint16_t *code, uint16_t c)
{
    *code = c;
    return -1;
}

/* Fragmentation and size rules for a complete header f. */
static int dec_rules(struct wm_ws_dec *d, const struct wm_ws_frame *f, uint16_t *code)
{
    uint64_t max = d->max ? d->max : WM_WS_MAX_MESSAGE;

    if (f->op >= 0x8) {
        /* 5.5: control frames are short and never fragmented */
        if (!f->fin || f->len > WM_WS_CONTROL_MAX || (f->op != WM_WS_OP_CLOSE &&
                                                      f->op != WM_WS_OP_PING &&
                                                      f->op != WM_WS_OP_PONG)) {
            return fail(code, WM_WS_CLOSE_PROTOCOL);
        }
        return 0;
    }
    if (f->op == WM_WS_OP_CONT) {
        if (!d->in_msg) {
            return fail(code, WM_WS_CLOSE_PROTOCOL);
        }
    } else if (f->op != WM_WS_OP_TEXT && f->op != WM_WS_OP_BINARY) {
        return fail(code, WM_WS_CLOSE_PROTOCOL);
    } else if (d->in_msg) {
        return fail(code, WM_WS_CLOSE_PROTOCOL); /* 5.4: a new message inside one */
    } else {
        d->msg_op = f->op;
        d->msg_len = 0;
    }
    if (f->len > max || d->msg_len > max - f->len) {
        return fail(code, WM_WS_CLOSE_TOO_BIG);
    }
    d->msg_len += f->len;
    d->in_msg = !f->fin;
    return 0;
}

int wm_ws_dec_header(struct wm_ws_dec *d, const uint8_t *p, size_t n, struct wm_ws_frame *f,
                     uint16_t *code)
{
    size_t need = 2;
    uint64_t len;

    if (n < 2) {
        return 0;
    }
    if (p[0] & 0x70) {
        return fail(code, WM_WS_CLOSE_PROTOCOL); /* RSV1-3 without an extension */
    }
    f->fin = (p[0] & 0x80) != 0;
    f->op = p[0] & 0x0f;
    f->masked = (p[1] & 0x80) != 0;
    if (f->masked != d->server) {
        return fail(code, WM_WS_CLOSE_PROTOCOL); /* 5.1: clients mask, servers do not */
    }
    len = p[1] & 0x7f;
    need += (len == 126 ? 2 : len == 127 ? 8 : 0) + (f->masked ? 4 : 0);
    if (n < need) {
        return 0;
    }
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
        if (len < 126) {
            return fail(code, WM_WS_CLOSE_PROTOCOL); /* 5.2: minimal length encoding */
        }
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) {
            len = len << 8 | p[2 + i];
        }
        if (len >> 63 || len <= 0xffff) {
            return fail(code, WM_WS_CLOSE_PROTOCOL); /* 5.2: MSB must be 0; minimal */
        }
    }
    f->len = len;
    if (f->masked) {
        memcpy(f->mask, p + need - 4, 4);
    }
    f->hdr_len = need;
    if (dec_rules(d, f, code) < 0) {
        return -1;
    }
    return (int)need;
}

bool wm_ws_close_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999) {
        return true; /* registered and private codes */
    }
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

int wm_ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    if (n == 0) {
        *code = WM_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1) {
        return fail(code, WM_WS_CLOSE_PROTOCOL);
    }
    unsigned c = (unsigned)p[0] << 8 | p[1];
    if (!wm_ws_close_code_ok(c)) {
        return fail(code, WM_WS_CLOSE_PROTOCOL);
    }
    for (size_t i = 2; i < n;) {
        uint32_t cp;
        size_t k = wm_utf8_decode(p + i, n - i, &cp);
        if (k == 0) {
            return fail(code, WM_WS_CLOSE_BAD_DATA);
        }
        i += k;
    }
    *code = (uint16_t)c;
    return 0;
}

size_t wm_ws_header(uint8_t *out, bool fin, uint8_t op, uint64_t len, const uint8_t mask[4])
{
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++) {
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        }
        n = 10;
    }
    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void wm_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
    size_t i = 0;
    uint8_t m[8];

    for (int k = 0; k < 8; k++) {
        m[k] = mask[(off + (uint64_t)k) & 3];
    }
    /* eight bytes at a time: the rotated mask repeats every 4 bytes */
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        uint64_t mv;
        memcpy(&v, p + i, 8);
        memcpy(&mv, m, 8);
        v ^= mv;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) {
        p[i] ^= m[i & 7];
    }
}

void wm_ws_accept(const char *key, size_t n, char out[WM_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char in[128 + sizeof(guid)];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    n = n > 128 ? 128 : n; /* keys are 24 bytes; longer ones were refused already */
    memcpy(in, key, n);
    memcpy(in + n, guid, sizeof(guid) - 1);
    out[0] = '\0';
    if (EVP_Digest(in, n + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) == 1) {
        wm_base64_encode(md, mdlen, out, WM_WS_ACCEPT_LEN + 1);
    }
}

bool wm_ws_key_ok(const char *key, size_t n)
{
    unsigned char raw[20];

    return n == WM_WS_KEY_LEN && wm_base64_decode(key, n, raw, sizeof(raw)) == 16;
}
