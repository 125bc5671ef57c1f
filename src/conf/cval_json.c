/*
 * conf/cval_json.c - JSON serialisation of a value tree (toml-test tagged form or plain).
 *
 * Built on the public accessors only.
 */
#include "conf/cval.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jbuf {
    char *p;
    size_t n;
    size_t cap;
    int fail; /* sticky: out of memory or too deep */
    const char *const *secret; /* keys whose values are masked, or NULL */
};

static bool is_secret(const struct jbuf *b, const char *key, size_t len)
{
    if (b->secret == NULL) {
        return false;
    }
    for (const char *const *k = b->secret; *k != NULL; k++) {
        if (strlen(*k) == len && memcmp(*k, key, len) == 0) {
            return true;
        }
    }
    return false;
}

static void jb_put(struct jbuf *b, const char *s, size_t len)
{
    void *np = b->p;

    if (b->fail) {
        return;
    }
    if (len >= SIZE_MAX - b->n || wm_grow(&np, &b->cap, b->n + len + 1, 1, 256) < 0) {
        b->fail = 1;
        return;
    }
    b->p = np;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void jb_puts(struct jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

/* A JSON string literal for s[0..len). */
static void jb_string(struct jbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    char esc[8];
    size_t i = 0;
    size_t run;
    size_t k;
    uint32_t cp;

    jb_put(b, "\"", 1);
    while (i < len) {
        /* copy the longest run needing no escape in one go */
        run = i;
        while (run < len && u[run] >= 0x20 && u[run] != '"' && u[run] != '\\' &&
               u[run] < 0x7F) {
            run++;
        }
        jb_put(b, s + i, run - i);
        i = run;
        if (i >= len) {
            break;
        }
        if (u[i] >= 0x80) {
            k = wm_utf8_decode(u + i, len - i, &cp);
            if (k == 0) {
                jb_put(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a stray byte */
                i++;
            } else {
                jb_put(b, s + i, k);
                i += k;
            }
            continue;
        }
        switch (u[i]) {
        case '"':
            jb_put(b, "\\\"", 2);
            break;
        case '\\':
            jb_put(b, "\\\\", 2);
            break;
        case '\b':
            jb_put(b, "\\b", 2);
            break;
        case '\f':
            jb_put(b, "\\f", 2);
            break;
        case '\n':
            jb_put(b, "\\n", 2);
            break;
        case '\r':
            jb_put(b, "\\r", 2);
            break;
        case '\t':
            jb_put(b, "\\t", 2);
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[u[i] >> 4];
            esc[5] = hex[u[i] & 0xF];
            jb_put(b, esc, 6);
            break;
        }
        i++;
    }
    jb_put(b, "\"", 1);
}

/* Shortest text that reads back as f: fixed notation for decimal exponents -4..16 (always
 * with a '.'), else "d.ddde+XX". */
static void float_text(double f, char *buf, size_t n)
{
    char *end;
    long ex;
    int prec;
    int dec;
    size_t l;

    if (isnan(f)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, n, "%s", f < 0 ? "-inf" : "inf");
        return;
    }
    for (prec = 1; prec < 17; prec++) {
        snprintf(buf, n, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) {
            break;
        }
    }
    snprintf(buf, n, "%.*e", prec - 1, f);
    end = strchr(buf, 'e');
    ex = end != NULL ? strtol(end + 1, NULL, 10) : 0;
    if (ex < -4 || ex > 16) {
        return;
    }
    dec = prec - 1 - (int)ex;
    snprintf(buf, n, "%.*f", dec > 0 ? dec : 0, f);
    l = strlen(buf);
    if (strchr(buf, '.') == NULL && l + 2 < n) {
        memcpy(buf + l, ".0", 3);
    }
}

static void scalar_text(const struct wm_cval *v, char *buf, size_t n, const char **text,
                        size_t *len)
{
    switch (wm_cval_type(v)) {
    case WM_CVAL_STRING:
        *text = wm_cval_str(v, len);
        return;
    case WM_CVAL_INT:
        snprintf(buf, n, "%" PRId64, wm_cval_int(v));
        break;
    case WM_CVAL_FLOAT:
        float_text(wm_cval_float(v), buf, n);
        break;
    case WM_CVAL_BOOL:
        snprintf(buf, n, "%s", wm_cval_bool(v) ? "true" : "false");
        break;
    default: /* datetimes */
        *text = wm_cval_text(v);
        if (*text == NULL) {
            *text = "";
        }
        *len = strlen(*text);
        return;
    }
    *text = buf;
    *len = strlen(buf);
}

static void jb_value(struct jbuf *b, const struct wm_cval *v, bool tagged, int depth)
{
    enum wm_cval_type t = wm_cval_type(v);
    char buf[64];
    const char *text;
    size_t len;
    size_t i;
    size_t n;

    if (depth > WM_CVAL_JSON_MAX_DEPTH) {
        b->fail = 1;
        return;
    }
    if (t == WM_CVAL_TABLE || t == WM_CVAL_ARRAY) {
        n = wm_cval_count(v);
        jb_put(b, t == WM_CVAL_TABLE ? "{" : "[", 1);
        for (i = 0; i < n && !b->fail; i++) {
            if (i > 0) {
                jb_put(b, ",", 1);
            }
            if (t == WM_CVAL_TABLE) {
                jb_string(b, wm_cval_key_at(v, i), wm_cval_key_len(v, i));
                jb_put(b, ":", 1);
                if (is_secret(b, wm_cval_key_at(v, i), wm_cval_key_len(v, i))) {
                    jb_puts(b, "\"***\"");
                    continue;
                }
            }
            jb_value(b, wm_cval_at(v, i), tagged, depth + 1);
        }
        jb_put(b, t == WM_CVAL_TABLE ? "}" : "]", 1);
        return;
    }
    if (t == WM_CVAL_NULL) {
        jb_puts(b, "null");
        return;
    }
    scalar_text(v, buf, sizeof(buf), &text, &len);
    if (tagged) {
        jb_puts(b, "{\"type\":");
        jb_string(b, wm_cval_type_name(t), strlen(wm_cval_type_name(t)));
        jb_puts(b, ",\"value\":");
        jb_string(b, text, len);
        jb_puts(b, "}");
        return;
    }
    switch (t) {
    case WM_CVAL_INT:
    case WM_CVAL_BOOL:
        jb_put(b, text, len);
        break;
    case WM_CVAL_FLOAT:
        if (isfinite(wm_cval_float(v))) {
            jb_put(b, text, len);
        } else {
            jb_string(b, text, len);
        }
        break;
    default:
        jb_string(b, text, len);
        break;
    }
}

int wm_cval_to_json(const struct wm_cval *v, bool tagged, char **out, size_t *outlen)
{
    return wm_cval_to_json_masked(v, tagged, NULL, out, outlen);
}

int wm_cval_to_json_masked(const struct wm_cval *v, bool tagged, const char *const *secret,
                           char **out, size_t *outlen)
{
    struct jbuf b = {NULL, 0, 0, 0, secret};

    *out = NULL;
    if (outlen != NULL) {
        *outlen = 0;
    }
    jb_value(&b, v, tagged, 0);
    if (b.fail || b.p == NULL) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    if (outlen != NULL) {
        *outlen = b.n;
    }
    return 0;
}
