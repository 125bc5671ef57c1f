/*
 * conf/toml_lex.c - TOML reader: input validation, positions, blanks, strings and keys.
 */
#include "conf/cval.h"
#include "conf/toml.h"
#include "conf/toml_int.h"
#include "core/err.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and positions ---- */

static int verror(struct toml_parser *p, int line, int col, const char *fmt, va_list ap)
{
    char msg[WM_ERR_MSG_MAX];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    return wm_err_set(p->err, p->file, line, col, NULL, "%s", msg);
}

int toml_error_at(struct toml_parser *p, int line, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(p, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

int toml_error(struct toml_parser *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(p, p->line, p->col, fmt, ap);
    va_end(ap);
    return -1;
}

const char *toml_describe(const struct toml_parser *p, char *buf, size_t n)
{
    int c = toml_peek(p);
    uint32_t cp;

    if (c < 0) {
        snprintf(buf, n, "end of input");
    } else if (c == '\n' || c == '\r') {
        snprintf(buf, n, "end of line");
    } else if (c > 0x20 && c < 0x7F) {
        snprintf(buf, n, "'%c'", c);
    } else if (c == ' ') {
        snprintf(buf, n, "space");
    } else if (c == '\t') {
        snprintf(buf, n, "tab");
    } else if (wm_utf8_decode((const unsigned char *)p->s + p->pos, p->n - p->pos, &cp) >
               0) {
        snprintf(buf, n, "U+%04X", (unsigned int)cp);
    } else {
        snprintf(buf, n, "byte 0x%02X", (unsigned int)c);
    }
    return buf;
}

int toml_peek_at(const struct toml_parser *p, size_t off)
{
    if (off >= p->n - p->pos) {
        return -1;
    }
    return (unsigned char)p->s[p->pos + off];
}

void toml_advance(struct toml_parser *p, size_t nbytes)
{
    unsigned char c;

    while (nbytes-- > 0 && p->pos < p->n) {
        c = (unsigned char)p->s[p->pos++];
        if (c == '\n') {
            p->line++;
            p->col = 1;
        } else if ((c & 0xC0) != 0x80) {
            /* count characters, not bytes: continuation bytes add nothing */
            p->col++;
        }
    }
}

bool toml_at_newline(const struct toml_parser *p)
{
    int c = toml_peek(p);

    return c == '\n' || (c == '\r' && toml_peek_at(p, 1) == '\n');
}

void toml_skip_ws(struct toml_parser *p)
{
    int c;

    while ((c = toml_peek(p)) == ' ' || c == '\t') {
        toml_advance(p, 1);
    }
}

void toml_skip_comment(struct toml_parser *p)
{
    int c;

    if (toml_peek(p) != '#') {
        return;
    }
    /* validation already rejected control characters inside comments */
    while ((c = toml_peek(p)) >= 0 && c != '\n' && !toml_at_newline(p)) {
        toml_advance(p, 1);
    }
}

void toml_skip_ws_nl(struct toml_parser *p)
{
    for (;;) {
        toml_skip_ws(p);
        if (toml_peek(p) == '#') {
            toml_skip_comment(p);
        }
        if (!toml_at_newline(p)) {
            return;
        }
        toml_advance(p, toml_peek(p) == '\r' ? 2 : 1);
    }
}

int toml_validate(struct toml_parser *p)
{
    const unsigned char *u = (const unsigned char *)p->s;
    size_t i = 0;
    size_t k;
    int line = 1;
    int col = 1;
    uint32_t cp;

    if (p->n >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
        i = 3;
        p->pos = 3;
    }
    while (i < p->n) {
        if (u[i] >= 0x80) {
            k = wm_utf8_decode(u + i, p->n - i, &cp);
            if (k == 0) {
                return toml_error_at(p, line, col, "invalid UTF-8 byte 0x%02X",
                                     (unsigned int)u[i]);
            }
            i += k;
            col++;
            continue;
        }
        if (u[i] == '\n') {
            line++;
            col = 1;
        } else if (u[i] == '\r') {
            if (i + 1 >= p->n || u[i + 1] != '\n') {
                return toml_error_at(p, line, col, "carriage return not followed by newline");
            }
            col++;
        } else if ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7F) {
            return toml_error_at(p, line, col, "control character U+%04X is not allowed",
                                 (unsigned int)u[i]);
        } else {
            col++;
        }
        i++;
    }
    return 0;
}

/* ---- buffers ---- */

int toml_buf_put(struct toml_buf *b, const char *s, size_t len)
{
    void *np = b->p;

    if (len >= SIZE_MAX - b->n || wm_grow(&np, &b->cap, b->n + len + 1, 1, 64) < 0) {
        return -1;
    }
    b->p = np;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
    return 0;
}

static int buf_put(struct toml_parser *p, const char *s, size_t len)
{
    if (toml_buf_put(&p->buf, s, len) != 0) {
        return toml_error(p, "out of memory");
    }
    return 0;
}

/* Append code point cp (already checked to be a scalar value) as UTF-8. */
static int buf_put_cp(struct toml_parser *p, uint32_t cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_put(p, u, n);
}

/* ---- strings ---- */

static int hex_val(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* At a backslash inside a basic string: decode one escape into p->buf. */
static int parse_escape(struct toml_parser *p)
{
    int line = p->line;
    int col = p->col;
    char d[16];
    uint32_t cp = 0;
    size_t ndig;
    size_t i;
    int c;
    int h;

    toml_advance(p, 1);
    c = toml_peek(p);
    switch (c) {
    case 'b':
        toml_advance(p, 1);
        return buf_put(p, "\b", 1);
    case 't':
        toml_advance(p, 1);
        return buf_put(p, "\t", 1);
    case 'n':
        toml_advance(p, 1);
        return buf_put(p, "\n", 1);
    case 'f':
        toml_advance(p, 1);
        return buf_put(p, "\f", 1);
    case 'r':
        toml_advance(p, 1);
        return buf_put(p, "\r", 1);
    case '"':
        toml_advance(p, 1);
        return buf_put(p, "\"", 1);
    case '\\':
        toml_advance(p, 1);
        return buf_put(p, "\\", 1);
    case 'u':
    case 'U':
        ndig = c == 'u' ? 4 : 8;
        toml_advance(p, 1);
        for (i = 0; i < ndig; i++) {
            h = hex_val(toml_peek(p));
            if (h < 0) {
                return toml_error_at(p, line, col, "\\%c escape needs %zu hex digits", c,
                                     ndig);
            }
            cp = (cp << 4) | (uint32_t)h;
            toml_advance(p, 1);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return toml_error_at(p, line, col, "\\%c%0*X is not a Unicode scalar value", c,
                                 (int)ndig, (unsigned int)cp);
        }
        return buf_put_cp(p, cp);
    default:
        if (c < 0) {
            return toml_error_at(p, line, col, "unterminated escape sequence");
        }
        if (c > 0x20 && c < 0x7F) {
            return toml_error_at(p, line, col, "invalid escape sequence '\\%c'", c);
        }
        return toml_error_at(p, line, col, "invalid escape: '\\' followed by %s",
                             toml_describe(p, d, sizeof(d)));
    }
}

/* Single-line basic or literal string; the opening quote is consumed. */
static int parse_line_string(struct toml_parser *p, int q, int line, int col)
{
    int c;

    for (;;) {
        c = toml_peek(p);
        if (c < 0 || c == '\n' || c == '\r') {
            return toml_error_at(p, line, col, "unterminated string");
        }
        if (c == q) {
            toml_advance(p, 1);
            return 0;
        }
        if (c == '\\' && q == '"') {
            if (parse_escape(p) != 0) {
                return -1;
            }
            continue;
        }
        if (buf_put(p, p->s + p->pos, 1) != 0) {
            return -1;
        }
        toml_advance(p, 1);
    }
}

/* In a multi-line basic string at a backslash: a line-ending backslash (trailing blanks
 * allowed) swallows every blank and newline up to the next other character. */
static int ml_backslash(struct toml_parser *p, bool *trimmed)
{
    size_t j = 1;
    int c;

    while ((c = toml_peek_at(p, j)) == ' ' || c == '\t') {
        j++;
    }
    *trimmed = false;
    if (c != '\n' && !(c == '\r' && toml_peek_at(p, j + 1) == '\n')) {
        if (j > 1) {
            return toml_error(p, "'\\' followed by blanks must end the line");
        }
        return 0;
    }
    *trimmed = true;
    toml_advance(p, j);
    while ((c = toml_peek(p)) == ' ' || c == '\t' || toml_at_newline(p)) {
        toml_advance(p, 1);
    }
    return 0;
}

/* Multi-line string; the opening triple quote is consumed. */
static int parse_ml_string(struct toml_parser *p, int q, int line, int col)
{
    bool trimmed;
    size_t run;
    int c;

    /* a newline right after the opening delimiter is trimmed */
    if (toml_at_newline(p)) {
        toml_advance(p, toml_peek(p) == '\r' ? 2 : 1);
    }
    for (;;) {
        c = toml_peek(p);
        if (c < 0) {
            return toml_error_at(p, line, col, "unterminated multi-line string");
        }
        if (c == q) {
            run = 0;
            while (toml_peek_at(p, run) == q) {
                run++;
            }
            if (run >= 3) {
                /* up to two quotes may sit right before the closing delimiter */
                if (run > 5) {
                    return toml_error(p, "too many quotes at the end of a multi-line string");
                }
                if (buf_put(p, p->s + p->pos, run - 3) != 0) {
                    return -1;
                }
                toml_advance(p, run);
                return 0;
            }
            if (buf_put(p, p->s + p->pos, run) != 0) {
                return -1;
            }
            toml_advance(p, run);
            continue;
        }
        if (c == '\\' && q == '"') {
            if (ml_backslash(p, &trimmed) != 0) {
                return -1;
            }
            if (!trimmed && parse_escape(p) != 0) {
                return -1;
            }
            continue;
        }
        if (c == '\r') {
            /* validation guarantees CRLF: store a plain LF */
            toml_advance(p, 2);
            if (buf_put(p, "\n", 1) != 0) {
                return -1;
            }
            continue;
        }
        if (buf_put(p, p->s + p->pos, 1) != 0) {
            return -1;
        }
        toml_advance(p, 1);
    }
}

int toml_parse_string(struct toml_parser *p, bool allow_ml)
{
    int q = toml_peek(p);
    int line = p->line;
    int col = p->col;

    p->buf.n = 0;
    if (buf_put(p, "", 0) != 0) {
        return -1;
    }
    if (toml_peek_at(p, 1) == q && toml_peek_at(p, 2) == q) {
        if (!allow_ml) {
            return toml_error(p, "multi-line strings cannot be keys");
        }
        toml_advance(p, 3);
        return parse_ml_string(p, q, line, col);
    }
    toml_advance(p, 1);
    return parse_line_string(p, q, line, col);
}

/* ---- keys ---- */

static bool is_bare(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

void toml_key_clear(struct toml_key *k)
{
    size_t i;

    for (i = 0; i < k->n; i++) {
        free(k->parts[i].s);
    }
    free(k->parts);
    k->parts = NULL;
    k->n = 0;
    k->cap = 0;
}

static int key_push(struct toml_parser *p, struct toml_key *k, const char *s, size_t len,
                    int line, int col)
{
    void *np = k->parts;
    char *d;

    if (k->n >= WM_TOML_MAX_DEPTH) {
        return toml_error_at(p, line, col, "key has more than %d parts", WM_TOML_MAX_DEPTH);
    }
    if (wm_grow(&np, &k->cap, k->n + 1, sizeof(*k->parts), 4) < 0) {
        return toml_error(p, "out of memory");
    }
    k->parts = np;
    d = malloc(len + 1);
    if (d == NULL) {
        return toml_error(p, "out of memory");
    }
    memcpy(d, s, len);
    d[len] = '\0';
    k->parts[k->n].s = d;
    k->parts[k->n].len = len;
    k->parts[k->n].line = line;
    k->parts[k->n].col = col;
    k->n++;
    return 0;
}

int toml_parse_key(struct toml_parser *p, struct toml_key *k)
{
    char d[16];
    size_t start;
    int line;
    int col;
    int c;

    for (;;) {
        line = p->line;
        col = p->col;
        c = toml_peek(p);
        if (is_bare(c)) {
            start = p->pos;
            while (is_bare(toml_peek(p))) {
                toml_advance(p, 1);
            }
            if (key_push(p, k, p->s + start, p->pos - start, line, col) != 0) {
                return -1;
            }
        } else if (c == '"' || c == '\'') {
            if (toml_parse_string(p, false) != 0 ||
                key_push(p, k, p->buf.p, p->buf.n, line, col) != 0) {
                return -1;
            }
        } else {
            return toml_error(p, "expected a key, found %s", toml_describe(p, d, sizeof(d)));
        }
        toml_skip_ws(p);
        if (toml_peek(p) != '.') {
            return 0;
        }
        toml_advance(p, 1);
        toml_skip_ws(p);
    }
}

/* Append one key part, bare when possible, else quoted with escapes; truncates. */
static size_t display_part(const struct toml_keypart *kp, char *buf, size_t n, size_t off)
{
    const unsigned char *s = (const unsigned char *)kp->s;
    bool bare = kp->len > 0;
    size_t i;
    int r;

    for (i = 0; i < kp->len; i++) {
        bare = bare && is_bare(s[i]);
    }
    if (bare) {
        r = snprintf(buf + off, n - off, "%s", kp->s);
        return r < 0 ? off : (size_t)r >= n - off ? n - 1 : off + (size_t)r;
    }
    for (i = 0; i <= kp->len + 1 && off + 1 < n; i++) {
        if (i == 0 || i == kp->len + 1) {
            buf[off++] = '"';
        } else if (s[i - 1] < 0x20 || s[i - 1] == 0x7F || s[i - 1] == '"' ||
                   s[i - 1] == '\\') {
            r = snprintf(buf + off, n - off, "\\u%04X", (unsigned int)s[i - 1]);
            off = r < 0 ? off : (size_t)r >= n - off ? n - 1 : off + (size_t)r;
        } else {
            buf[off++] = (char)s[i - 1];
        }
    }
    buf[off] = '\0';
    return off;
}

const char *toml_key_display(const struct toml_key *k, size_t upto, char *buf, size_t n)
{
    size_t off = 0;
    size_t i;

    if (n == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (i = 0; i <= upto && i < k->n && off + 1 < n; i++) {
        if (i > 0) {
            buf[off++] = '.';
            buf[off] = '\0';
        }
        off = display_part(&k->parts[i], buf, n, off);
    }
    return buf;
}
