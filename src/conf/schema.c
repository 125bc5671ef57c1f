#include "conf/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cval.h"
#include "conf/units.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/proxyflags.h"
#include "core/util.h"
#include "net/addr.h"

#define PATH_MAX_LEN 256
#define MSG_MAX 400

void wm_cctx_init(struct wm_cctx *ctx, const char *file, struct wm_arena *arena)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->file = file;
    ctx->arena = arena;
}

void wm_cctx_deinit(struct wm_cctx *ctx)
{
    free(ctx->diags);
    ctx->diags = NULL;
    ctx->ndiags = ctx->capdiags = ctx->nerrors = 0;
}

static void add_diag_at(struct wm_cctx *ctx, bool warning, int line, int col, const char *path,
                        const char *fmt, va_list ap)
{
    void *arr = ctx->diags;
    struct wm_cdiag *d;
    char msg[MSG_MAX];

    if (ctx->ndiags >= 1000) {
        return; /* enough to fix first */
    }
    if (wm_grow(&arr, &ctx->capdiags, ctx->ndiags + 1, sizeof(*d), 8) < 0) {
        return;
    }
    ctx->diags = arr;
    d = &ctx->diags[ctx->ndiags++];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    d->warning = warning;
    wm_err_set(&d->e, ctx->file, line, col, path, "%s", msg);
    if (!warning) {
        ctx->nerrors++;
    }
}

static void add_diag(struct wm_cctx *ctx, bool warning, const struct wm_cval *v, const char *path,
                     const char *fmt, va_list ap)
{
    add_diag_at(ctx, warning, v != NULL ? wm_cval_line(v) : 0, v != NULL ? wm_cval_col(v) : 0,
                path, fmt, ap);
}

/* An error about the key of entry i of table t (unknown, given twice): it
 * points at the key, not at its value, which may start lines later (a YAML
 * block mapping) or be a table header. */
static void __attribute__((format(printf, 5, 6)))
key_error(struct wm_cctx *ctx, const struct wm_cval *t, size_t i, const char *path,
          const char *fmt, ...)
{
    va_list ap;
    int line = wm_cval_key_line(t, i);

    va_start(ap, fmt);
    if (line > 0) {
        add_diag_at(ctx, false, line, wm_cval_key_col(t, i), path, fmt, ap);
    } else {
        add_diag(ctx, false, wm_cval_at(t, i), path, fmt, ap);
    }
    va_end(ap);
}

void wm_cctx_error(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    add_diag(ctx, false, v, path, fmt, ap);
    va_end(ap);
}

void wm_cctx_warn(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                  const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    add_diag(ctx, true, v, path, fmt, ap);
    va_end(ap);
}

/* ---- scalar helpers ---- */

/* What v is, without its value: "an integer", "a string holding a NUL character". */
static const char *show_kind(const struct wm_cval *v, char *buf, size_t cap)
{
    const char *t = wm_cval_type_name(wm_cval_type(v));
    size_t n;

    if (wm_cval_type(v) == WM_CVAL_STRING && memchr(wm_cval_str(v, &n), '\0', n) != NULL) {
        snprintf(buf, cap, "a string holding a NUL character");
    } else {
        snprintf(buf, cap, "%s %s", strchr("aeiou", t[0]) != NULL ? "an" : "a", t);
    }
    return buf;
}

/* A short, printable rendering of a value for messages. */
static const char *show(const struct wm_cval *v, char *buf, size_t cap)
{
    const char *t;
    size_t n;

    switch (wm_cval_type(v)) {
    case WM_CVAL_STRING:
        t = wm_cval_str(v, &n);
        if (memchr(t, '\0', n) != NULL) {
            return show_kind(v, buf, cap); /* "%.*s" would stop at the NUL */
        }
        snprintf(buf, cap, "\"%.*s\"", (int)(n > 60 ? 60 : n), t);
        break;
    case WM_CVAL_INT:
        snprintf(buf, cap, "%lld", (long long)wm_cval_int(v));
        break;
    case WM_CVAL_BOOL:
        snprintf(buf, cap, "%s", wm_cval_bool(v) ? "true" : "false");
        break;
    case WM_CVAL_FLOAT:
        snprintf(buf, cap, "%g", wm_cval_float(v));
        break;
    default:
        show_kind(v, buf, cap);
        break;
    }
    return buf;
}

/* String form of a scalar: strings, and YAML plain scalars (numbers written
 * where a string is expected, e.g. `password: 1234`). NULL otherwise. */
static const char *scalar_text(const struct wm_cval *v)
{
    size_t n;

    if (wm_cval_type(v) == WM_CVAL_STRING) {
        const char *s = wm_cval_str(v, &n);
        return memchr(s, '\0', n) != NULL ? NULL : s;
    }
    if (wm_cval_type(v) == WM_CVAL_INT || wm_cval_type(v) == WM_CVAL_FLOAT ||
        wm_cval_type(v) == WM_CVAL_BOOL) {
        return wm_cval_text(v); /* NULL for TOML: it is typed, so strict */
    }
    return NULL;
}

bool wm_conf_is_hostport(const char *s)
{
    char host[WM_HOST_MAX];
    uint16_t port;

    return wm_addr_split(s, strlen(s), host, sizeof(host), &port) == 0;
}

/* Build a key path; truncation is harmless (messages only). */
static void __attribute__((format(printf, 3, 4))) mkpath(char *buf, size_t cap, const char *fmt,
                                                          ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void *at(void *obj, size_t off)
{
    return (char *)obj + off;
}

#define STORE(type, key, obj, val)                                                        \
    do {                                                                                  \
        if ((key)->off != WM_CK_NOSTORE) {                                                \
            *(type *)at((obj), (key)->off) = (val);                                       \
        }                                                                                 \
    } while (0)

#define STORE_COUNT(key, obj, val)                                                        \
    do {                                                                                  \
        if ((key)->off != WM_CK_NOSTORE) {                                                \
            *(size_t *)at((obj), (key)->off_count) = (val);                               \
        }                                                                                 \
    } while (0)

static const char *need_text(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                             const char *what)
{
    char b[96];
    const char *s = scalar_text(v);

    if (s == NULL) {
        wm_cctx_error(ctx, v, path, "expected %s, got %s", what, show(v, b, sizeof(b)));
    }
    return s;
}

/* Split a header rule into at most 4 words (spaces; a word may be 'single'
 * or "double" quoted, with spaces). Returns the count, or -1 with err. */
static int rule_words(const char *s, const char **tok, size_t *tlen, struct wm_err *err)
{
    const char *p = s;
    int nt = 0;

    while (*p != '\0' && nt < 4) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (*p == '\'' || *p == '"') {
            char q = *p++;
            const char *end = strchr(p, q);
            if (end == NULL) {
                return wm_err_set(err, NULL, 0, 0, NULL,
                                  "unterminated quote in header rule \"%s\"", s);
            }
            tok[nt] = p;
            tlen[nt++] = (size_t)(end - p);
            p = end + 1;
        } else {
            const char *b = p;
            while (*p != '\0' && *p != ' ' && *p != '\t') {
                p++;
            }
            tok[nt] = b;
            tlen[nt++] = (size_t)(p - b);
        }
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p != '\0') {
        return wm_err_set(err, NULL, 0, 0, NULL, "too many words in header rule \"%s\"", s);
    }
    return nt;
}

int wm_conf_parse_header(struct wm_arena *a, const char *s, struct wm_conf_header *h,
                         struct wm_err *err)
{
    const char *tok[4];
    size_t tlen[4];
    int nt;

    memset(h, 0, sizeof(*h));
    if ((nt = rule_words(s, tok, tlen, err)) < 0) {
        return -1;
    }
    int i = 0;
    if (nt > 0 && tlen[0] == 5 && memcmp(tok[0], "proxy", 5) == 0) {
        h->request = true;
        i = 1;
    }
    h->op = '=';
    if (i < nt && tlen[i] == 1 && (tok[i][0] == '+' || tok[i][0] == '-')) {
        h->op = tok[i][0];
        i++;
    }
    int rest = nt - i;
    if (rest < 1 || tlen[i] == 0) {
        return wm_err_set(err, NULL, 0, 0, NULL, "header rule \"%s\" names no header", s);
    }
    if (!wm_field_name_ok(tok[i], tlen[i])) {
        return wm_err_set(err, NULL, 0, 0, NULL, "invalid header name in rule \"%s\"", s);
    }
    h->name = wm_arena_strndup(a, tok[i], tlen[i]);
    if (h->op == '-') {
        if (rest != 1) {
            return wm_err_set(err, NULL, 0, 0, NULL,
                              "header rule \"%s\": '-' takes a name only", s);
        }
        return 0;
    }
    if (rest != 2) {
        return wm_err_set(err, NULL, 0, 0, NULL,
                          "header rule \"%s\": expected a name and a value", s);
    }
    if (!wm_field_value_ok(tok[i + 1], tlen[i + 1])) {
        return wm_err_set(err, NULL, 0, 0, NULL,
                          "header rule \"%s\": the value has a control character (CR, LF, "
                          "NUL...)",
                          s);
    }
    h->value = wm_arena_strndup(a, tok[i + 1], tlen[i + 1]);
    return 0;
}

/* Headers: ["proxy + x-a {v}", ...] or [["proxy", "+", "x-a", "{v}"], ...]. */
static void decode_headers(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                           void *obj, const char *path)
{
    struct wm_err err;
    char ipath[PATH_MAX_LEN];
    size_t n;
    struct wm_conf_header *hs;

    if (wm_cval_type(v) == WM_CVAL_STRING) {
        n = 1;
    } else if (wm_cval_type(v) == WM_CVAL_ARRAY) {
        n = wm_cval_count(v);
    } else {
        wm_cctx_error(ctx, v, path, "expected an array of header rules");
        return;
    }
    hs = wm_arena_alloc(ctx->arena, (n ? n : 1) * sizeof(*hs));
    if (hs == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = wm_cval_type(v) == WM_CVAL_STRING ? v : wm_cval_at(v, i);
        char line[1024];
        mkpath(ipath, sizeof(ipath), "%s[%zu]", path, i);
        bool too_long = false;
        if (wm_cval_type(e) == WM_CVAL_ARRAY) {
            /* YAML form: a list of words. */
            size_t off = 0;
            line[0] = '\0';
            for (size_t j = 0; j < wm_cval_count(e); j++) {
                const char *w = scalar_text(wm_cval_at(e, j));
                if (w == NULL) {
                    w = "";
                }
                bool quote = strchr(w, ' ') != NULL || w[0] == '\0';
                int r = snprintf(line + off, sizeof(line) - off, "%s%s%s%s", j ? " " : "",
                                 quote ? "'" : "", w, quote ? "'" : "");
                if (r < 0 || (size_t)r >= sizeof(line) - off) {
                    too_long = true;
                    break;
                }
                off += (size_t)r;
            }
        } else {
            const char *s = need_text(ctx, e, ipath, "a header rule string");
            if (s == NULL) {
                continue;
            }
            too_long = strlen(s) >= sizeof(line);
            snprintf(line, sizeof(line), "%s", s);
        }
        if (too_long) {
            wm_cctx_error(ctx, e, ipath, "header rule longer than %zu bytes", sizeof(line) - 1);
            continue;
        }
        if (wm_conf_parse_header(ctx->arena, line, &hs[i], &err) < 0) {
            wm_cctx_error(ctx, e, ipath, "%s", err.msg);
        }
    }
    STORE(struct wm_conf_header *, k, obj, hs);
    STORE_COUNT(k, obj, n);
}

static void decode_strlist(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                           void *obj, const char *path)
{
    char ipath[PATH_MAX_LEN];
    size_t n = wm_cval_type(v) == WM_CVAL_ARRAY ? wm_cval_count(v) : 1;
    const char **list;

    if (wm_cval_type(v) != WM_CVAL_STRING && wm_cval_type(v) != WM_CVAL_ARRAY) {
        wm_cctx_error(ctx, v, path, "expected a string or an array of strings");
        return;
    }
    list = wm_arena_alloc(ctx->arena, (n + 1) * sizeof(*list));
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = wm_cval_type(v) == WM_CVAL_ARRAY ? wm_cval_at(v, i) : v;
        mkpath(ipath, sizeof(ipath), "%s[%zu]", path, i);
        const char *s = need_text(ctx, e, wm_cval_type(v) == WM_CVAL_ARRAY ? ipath : path,
                                  "a string or an array of strings");
        list[i] = s != NULL ? wm_arena_strdup(ctx->arena, s) : "";
    }
    STORE(const char **, k, obj, list);
    STORE_COUNT(k, obj, n);
}

static void decode_strmap(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                          void *obj, const char *path)
{
    char ipath[PATH_MAX_LEN];
    size_t n;
    struct wm_conf_kv *kv;

    if (wm_cval_type(v) != WM_CVAL_TABLE) {
        wm_cctx_error(ctx, v, path, "expected a table of strings");
        return;
    }
    n = wm_cval_count(v);
    kv = wm_arena_alloc(ctx->arena, (n ? n : 1) * sizeof(*kv));
    if (kv == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        mkpath(ipath, sizeof(ipath), "%s.%s", path, wm_cval_key_at(v, i));
        const char *s = need_text(ctx, wm_cval_at(v, i), ipath, "a string");
        kv[i].key = wm_arena_strdup(ctx->arena, wm_cval_key_at(v, i));
        kv[i].value = s == NULL                    ? ""
                      : (k->flags & WM_CKF_PATH) ? wm_cctx_path(ctx, s) /* "PATH [LEVEL]" */
                                                 : wm_arena_strdup(ctx->arena, s);
    }
    STORE(struct wm_conf_kv *, k, obj, kv);
    STORE_COUNT(k, obj, n);
}

static void decode_tables(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                          void *obj, const char *path)
{
    char ipath[PATH_MAX_LEN];
    const struct wm_cschema *s = k->sub;

    if (k->kind == WM_CK_TABLE) {
        if (wm_cval_type(v) != WM_CVAL_TABLE) {
            wm_cctx_error(ctx, v, path, "expected a table");
            return;
        }
        void *sub = wm_arena_alloc(ctx->arena, s->size);
        if (sub == NULL) {
            return;
        }
        if (s->defaults != NULL) {
            s->defaults(sub);
        }
        wm_schema_decode(ctx, s, v, sub, path);
        STORE(void *, k, obj, sub);
        return;
    }
    /* Array of tables; a single table is taken as an array of one. */
    size_t n;
    if (wm_cval_type(v) == WM_CVAL_ARRAY) {
        n = wm_cval_count(v);
    } else if (wm_cval_type(v) == WM_CVAL_TABLE) {
        n = 1;
    } else {
        wm_cctx_error(ctx, v, path, "expected an array of tables");
        return;
    }
    char *arr = wm_arena_alloc(ctx->arena, (n ? n : 1) * s->size);
    if (arr == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = wm_cval_type(v) == WM_CVAL_ARRAY ? wm_cval_at(v, i) : v;
        void *elem = arr + i * s->size;
        mkpath(ipath, sizeof(ipath), "%s[%zu]", path, i);
        if (wm_cval_type(e) != WM_CVAL_TABLE) {
            wm_cctx_error(ctx, e, ipath, "expected a table");
            continue;
        }
        if (s->defaults != NULL) {
            s->defaults(elem);
        }
        wm_schema_decode(ctx, s, e, elem, ipath);
    }
    STORE(void *, k, obj, arr);
    STORE_COUNT(k, obj, n);
}

/* ---- one setter per kind (k->kind), all of this shape ---- */

typedef void (*setter_fn)(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                          void *obj, const char *path);

static void set_str(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                    void *obj, const char *path)
{
    bool secret = (k->flags & WM_CKF_SECRET) != 0;
    const char *s = secret ? scalar_text(v) : need_text(ctx, v, path, "a string");
    char b[96];

    if (s == NULL && secret) {
        /* the value itself never goes to a message: it is (close to) the secret */
        wm_cctx_error(ctx, v, path, "expected a string, got %s (a secret: value not shown)",
                      show_kind(v, b, sizeof(b)));
    } else if (s != NULL && (k->flags & WM_CKF_PATH)) {
        STORE(const char *, k, obj, wm_cctx_path(ctx, s));
    } else if (s != NULL) {
        STORE(const char *, k, obj, wm_arena_strdup(ctx->arena, s));
    }
}

const char *wm_cctx_path(struct wm_cctx *ctx, const char *path)
{
    size_t bl;
    size_t pl;
    char *r;

    if (path == NULL || path[0] == '/' || path[0] == '\0' || ctx->base == NULL) {
        return path != NULL ? wm_arena_strdup(ctx->arena, path) : NULL;
    }
    bl = strlen(ctx->base);
    pl = strlen(path);
    r = wm_arena_alloc(ctx->arena, bl + 1 + pl + 1);
    if (r != NULL) {
        memcpy(r, ctx->base, bl);
        r[bl] = '/';
        memcpy(r + bl + 1, path, pl + 1);
    }
    return r;
}

static void set_bool(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                     void *obj, const char *path)
{
    char b[96];

    if (wm_cval_type(v) != WM_CVAL_BOOL) {
        wm_cctx_error(ctx, v, path, "expected true or false, got %s", show(v, b, sizeof(b)));
        return;
    }
    STORE(bool, k, obj, wm_cval_bool(v));
}

/* An integer, or a string of digits; within [min, max] unless both are 0. */
static void set_int(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                    void *obj, const char *path)
{
    char b[96];
    int64_t i;

    if (wm_cval_type(v) == WM_CVAL_INT) {
        i = wm_cval_int(v);
    } else {
        uint64_t u;
        const char *s = wm_cval_type(v) == WM_CVAL_STRING ? wm_cval_str(v, NULL) : NULL;
        if (s == NULL || wm_parse_u64(s, strlen(s), INT64_MAX, &u) < 0) {
            wm_cctx_error(ctx, v, path, "expected an integer, got %s", show(v, b, sizeof(b)));
            return;
        }
        i = (int64_t)u;
    }
    if ((k->min != 0 || k->max != 0) && (i < k->min || i > k->max)) {
        wm_cctx_error(ctx, v, path, "expected an integer from %lld to %lld, got %lld",
                      (long long)k->min, (long long)k->max, (long long)i);
        return;
    }
    STORE(int64_t, k, obj, i);
}

/* DURATION (a number is seconds) and SIZE (a number is bytes); within
 * [min, max] unless max is 0. */
static void set_quantity(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                         void *obj, const char *path)
{
    bool duration = k->kind == WM_CK_DURATION;
    struct wm_err err;
    char b[96];
    uint64_t u;

    if (wm_cval_type(v) == WM_CVAL_INT && wm_cval_int(v) >= 0) {
        u = (uint64_t)wm_cval_int(v);
        if (duration && u > UINT64_MAX / 1000 / 2) {
            /* seconds -> ms would wrap (2^64 ms + 384 ms became 384 ms) */
            if (k->max != 0) {
                wm_cctx_error(ctx, v, path, "out of range (%lld..%lld ms)", (long long)k->min,
                              (long long)k->max);
            } else {
                wm_cctx_error(ctx, v, path, "duration too large: %llu seconds",
                              (unsigned long long)u);
            }
            return;
        }
        u *= duration ? 1000 : 1;
    } else if (wm_cval_type(v) == WM_CVAL_STRING) {
        const char *s = wm_cval_str(v, NULL);
        int r = duration ? wm_parse_duration_ms(s, &u, &err) : wm_parse_size(s, &u, &err);
        if (r < 0) {
            wm_cctx_error(ctx, v, path, "%s", err.msg);
            return;
        }
    } else {
        wm_cctx_error(ctx, v, path, "expected a %s, got %s",
                      duration ? "duration like \"30s\"" : "size like \"10m\"",
                      show(v, b, sizeof(b)));
        return;
    }
    if (k->max != 0 && (u < (uint64_t)k->min || u > (uint64_t)k->max)) {
        wm_cctx_error(ctx, v, path, "out of range (%lld..%lld%s)", (long long)k->min,
                      (long long)k->max, duration ? " ms" : " bytes");
        return;
    }
    STORE(uint64_t, k, obj, u);
}

static void set_rate(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                     void *obj, const char *path)
{
    struct wm_err err;
    struct wm_rate r;
    const char *s = need_text(ctx, v, path, "a rate like \"4m/s\"");

    if (s == NULL) {
        return;
    }
    if (wm_parse_rate(s, &r, &err) < 0) {
        wm_cctx_error(ctx, v, path, "%s", err.msg);
        return;
    }
    STORE(struct wm_rate, k, obj, r);
}

/* HOSTPORT ("host:port", a name or an IP) and LISTEN (an IP to bind). */
static void set_addr(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                     void *obj, const char *path)
{
    bool listen = k->kind == WM_CK_LISTEN;
    const char *want = listen ? "\"ip:port\"" : "\"host:port\"";
    const char *s = need_text(ctx, v, path, want);
    struct sockaddr_storage ss;
    socklen_t len;

    if (s == NULL) {
        return;
    }
    if (listen ? wm_addr_parse_listen(s, &ss, &len) < 0 : !wm_conf_is_hostport(s)) {
        wm_cctx_error(ctx, v, path, "expected %s, got \"%s\"", want, s);
        return;
    }
    STORE(const char *, k, obj, wm_arena_strdup(ctx->arena, s));
}

static void set_level(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                      void *obj, const char *path)
{
    enum wm_log_level lvl;
    const char *s = need_text(ctx, v, path, "a log level");

    if (s == NULL) {
        return;
    }
    if (wm_log_parse_level(s, &lvl) < 0) {
        wm_cctx_error(ctx, v, path, "expected error, warn, info, debug, trace or off, got \"%s\"",
                      s);
        return;
    }
    STORE(int, k, obj, (int)lvl);
}

/* The proxy's protocol set: words or a number 1..7 (core/proxyflags.h). */
static void set_flags(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                      void *obj, const char *path)
{
    char num[32];
    char b[96];
    const char *s;
    unsigned f;

    if (wm_cval_type(v) == WM_CVAL_INT) {
        snprintf(num, sizeof(num), "%lld", (long long)wm_cval_int(v));
        s = num;
    } else if ((s = need_text(ctx, v, path, "protocol flags")) == NULL) {
        return;
    }
    if (wm_proxy_parse_flags(s, &f) < 0) {
        wm_cctx_error(ctx, v, path, "expected \"http https socks5\" (any of them) or 1..7, got %s",
                      show(v, b, sizeof(b)));
        return;
    }
    STORE(unsigned, k, obj, f);
}

/* One of k->choices; the stored pointer is the table's own string. */
static void set_enum(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                     void *obj, const char *path)
{
    const char *s = need_text(ctx, v, path, "a string");
    char list[256];
    size_t off = 0;

    if (s == NULL) {
        return;
    }
    for (const char *const *c = k->choices; *c != NULL; c++) {
        if (strcmp(*c, s) == 0) {
            STORE(const char *, k, obj, *c);
            return;
        }
    }
    list[0] = '\0';
    for (const char *const *c = k->choices; *c != NULL && off < sizeof(list); c++) {
        int r = snprintf(list + off, sizeof(list) - off, "%s\"%s\"", off ? ", " : "", *c);
        off += r > 0 ? (size_t)r : 0;
    }
    wm_cctx_error(ctx, v, path, "expected one of %s, got \"%s\"", list, s);
}

static void set_custom(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                       void *obj, const char *path)
{
    k->custom(ctx, v, k->off == WM_CK_NOSTORE ? NULL : at(obj, k->off), path);
}

static const setter_fn setters[] = {
    [WM_CK_STR] = set_str,
    [WM_CK_BOOL] = set_bool,
    [WM_CK_INT] = set_int,
    [WM_CK_DURATION] = set_quantity,
    [WM_CK_SIZE] = set_quantity,
    [WM_CK_RATE] = set_rate,
    [WM_CK_HOSTPORT] = set_addr,
    [WM_CK_LISTEN] = set_addr,
    [WM_CK_LEVEL] = set_level,
    [WM_CK_FLAGS] = set_flags,
    [WM_CK_ENUM] = set_enum,
    [WM_CK_STRLIST] = decode_strlist,
    [WM_CK_HEADERS] = decode_headers,
    [WM_CK_STRMAP] = decode_strmap,
    [WM_CK_TABLE] = decode_tables,
    [WM_CK_TABLE_ARRAY] = decode_tables,
    [WM_CK_CUSTOM] = set_custom,
};
_Static_assert(sizeof(setters) / sizeof(setters[0]) == WM_CK_CUSTOM + 1, "a setter per kind");

static void decode_value(struct wm_cctx *ctx, const struct wm_ckey *k, const struct wm_cval *v,
                         void *obj, const char *path)
{
    setters[k->kind](ctx, k, v, obj, path);
}

static const struct wm_ckey *find_key(const struct wm_cschema *s, const char *name)
{
    for (const struct wm_ckey *k = s->keys; k->name != NULL; k++) {
        if (strcmp(k->name, name) == 0 || (k->alias != NULL && strcmp(k->alias, name) == 0)) {
            return k;
        }
    }
    return NULL;
}

static const char *suggest(const struct wm_cschema *s, const char *name)
{
    const char *best = NULL;
    size_t bestd = 3;

    for (const struct wm_ckey *k = s->keys; k->name != NULL; k++) {
        size_t d = wm_edit_distance(name, k->name, 2);
        if (d < bestd) {
            bestd = d;
            best = k->name;
        }
        if (k->alias != NULL && (d = wm_edit_distance(name, k->alias, 2)) < bestd) {
            bestd = d;
            best = k->alias;
        }
    }
    return best;
}

size_t wm_schema_decode(struct wm_cctx *ctx, const struct wm_cschema *s, const struct wm_cval *t,
                        void *obj, const char *path)
{
    size_t before = ctx->nerrors;
    char kpath[PATH_MAX_LEN];
    size_t n = wm_cval_count(t);
    const struct wm_ckey *seen[128];
    size_t nseen = 0;

    for (size_t i = 0; i < n; i++) {
        const char *name = wm_cval_key_at(t, i);
        const struct wm_cval *v = wm_cval_at(t, i);
        const struct wm_ckey *k = find_key(s, name);

        mkpath(kpath, sizeof(kpath), "%s%s%s", path, path[0] ? "." : "", name);
        if (k == NULL) {
            const char *hint = suggest(s, name);
            if (hint != NULL) {
                key_error(ctx, t, i, kpath, "unknown key \"%s\" in %s (did you mean \"%s\"?)",
                          name, s->name, hint);
            } else {
                key_error(ctx, t, i, kpath, "unknown key \"%s\" in %s", name, s->name);
            }
            continue;
        }
        for (size_t j = 0; j < nseen; j++) {
            if (seen[j] == k) {
                key_error(ctx, t, i, kpath, "\"%s\" is given twice (as \"%s\" and \"%s\")",
                          k->name, k->name, k->alias != NULL ? k->alias : k->name);
            }
        }
        if (nseen < sizeof(seen) / sizeof(seen[0])) {
            seen[nseen++] = k;
        }
        if (wm_cval_type(v) == WM_CVAL_NULL) {
            continue; /* YAML `key:` with no value: the same as absent */
        }
        decode_value(ctx, k, v, obj, kpath);
        if (k->flags & WM_CKF_INACTIVE) {
            wm_cctx_warn(ctx, v, kpath, "accepted, not yet active (%s)",
                         k->feature != NULL ? k->feature : "later release");
        }
        if (k->flags & WM_CKF_IGNORED) {
            wm_cctx_warn(ctx, v, kpath, "ignored (%s)",
                         k->feature != NULL ? k->feature : "no longer used");
        }
    }
    for (const struct wm_ckey *k = s->keys; k->name != NULL; k++) {
        if ((k->flags & WM_CKF_REQUIRED) &&
            (wm_cval_get(t, k->name) == NULL ||
             wm_cval_type(wm_cval_get(t, k->name)) == WM_CVAL_NULL) &&
            (k->alias == NULL || wm_cval_get(t, k->alias) == NULL)) {
            mkpath(kpath, sizeof(kpath), "%s%s%s", path, path[0] ? "." : "", k->name);
            wm_cctx_error(ctx, t, kpath, "missing required key \"%s\" in %s", k->name, s->name);
        }
    }
    if (s->validate != NULL) {
        s->validate(ctx, obj, t, path);
    }
    return ctx->nerrors - before;
}

static const char *const kind_names[] = {
    [WM_CK_STR] = "string",        [WM_CK_BOOL] = "bool",         [WM_CK_INT] = "integer",
    [WM_CK_DURATION] = "duration", [WM_CK_SIZE] = "size",         [WM_CK_RATE] = "rate",
    [WM_CK_HOSTPORT] = "host:port", [WM_CK_LISTEN] = "listen",    [WM_CK_LEVEL] = "level",
    [WM_CK_FLAGS] = "flags",       [WM_CK_ENUM] = "enum",         [WM_CK_STRLIST] = "strings",
    [WM_CK_HEADERS] = "headers",   [WM_CK_STRMAP] = "table",      [WM_CK_TABLE] = "section",
    [WM_CK_TABLE_ARRAY] = "sections", [WM_CK_CUSTOM] = "custom",
};

static void dump_keys(const struct wm_cschema *s, const char *prefix, FILE *f, int depth)
{
    char path[256];

    if (s == NULL || depth > 8) {
        return;
    }
    for (const struct wm_ckey *k = s->keys; k->name != NULL; k++) {
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
        fprintf(f, "%s\t%s%s%s\n", path, kind_names[k->kind],
                (k->flags & WM_CKF_INACTIVE) ? "\tinactive" : "",
                (k->flags & WM_CKF_IGNORED) ? "\tignored" : "");
        if (k->alias != NULL) {
            fprintf(f, "%s%s%s\talias-of=%s\n", prefix, prefix[0] ? "." : "", k->alias,
                    k->name);
        }
        if (k->kind == WM_CK_TABLE || k->kind == WM_CK_TABLE_ARRAY) {
            dump_keys(k->sub, path, f, depth + 1);
        }
    }
}

void wm_schema_dump_keys(const struct wm_cschema *s, const char *prefix, FILE *f)
{
    dump_keys(s, prefix, f, 0);
}
