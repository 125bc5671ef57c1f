/*
 * files/fparse.c - the file server's parsers: request path below the
 * root, Range, Accept-Encoding q-values, HTTP dates, entity-tag lists.
 * Pure functions (table-driven unit tests, fuzz_range).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "files/files.h"
#include "files/files_int.h"

/* ---- path ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0; /* continuation byte, 0xc0/0xc1 (overlong), 0xf5.. */
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/* One segment: 0 ok, 1 skip ("." or empty), -1 refused. */
static int check_segment(const unsigned char *s, size_t n)
{
    if (n == 0 || (n == 1 && s[0] == '.')) {
        return 1;
    }
    if (n == 2 && s[0] == '.' && s[1] == '.') {
        return -1;
    }
    for (size_t i = 0; i < n;) {
        size_t k;
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\') {
            return -1;
        }
        k = utf8_len(s + i, n - i);
        if (k == 0) {
            return -1;
        }
        i += k;
    }
    return 0;
}

bool files_name_fetchable(const char *name)
{
    return check_segment((const unsigned char *)name, strlen(name)) == 0;
}

int wm_files_path_clean(const char *path, size_t n, const char *prefix, char *out, size_t cap,
                        bool *dir)
{
    size_t pl = prefix != NULL ? strlen(prefix) : 0;
    size_t o = 0;
    size_t i;

    while (pl > 0 && prefix[pl - 1] == '/') {
        pl--;
    }
    if (cap == 0 || n < pl || memcmp(path, prefix, pl) != 0 ||
        (n > pl && path[pl] != '/' && pl > 0)) {
        return -1;
    }
    *dir = n == 0 || path[n - 1] == '/' || n == pl;
    for (i = pl; i < n;) {
        size_t e = i;
        int r;
        while (e < n && path[e] != '/') {
            e++;
        }
        r = check_segment((const unsigned char *)path + i, e - i);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            if (o + (o > 0) + (e - i) + 1 > cap) {
                return -1;
            }
            if (o > 0) {
                out[o++] = '/';
            }
            memcpy(out + o, path + i, e - i);
            o += e - i;
        }
        i = e + 1;
    }
    out[o] = '\0';
    return 0;
}

/* ---- Range ---- */

static const char *skip_ows(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Digits at *p into *v, which stops at UINT64_MAX (a position beyond any
 * file: RFC 9110 14.1.1 reads a last-pos past the end as the end, a
 * first-pos past it as unsatisfiable). false when there are none. */
static bool read_u64(const char **p, const char *e, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;

    while (*p < e && **p >= '0' && **p <= '9') {
        unsigned d = (unsigned)(**p - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        (*p)++;
    }
    *v = x;
    return *p > s;
}

/* One range-spec between p and e (OWS trimmed). 1 satisfiable (in r), 0
 * unsatisfiable, -1 malformed. */
static int one_range(const char *p, const char *e, uint64_t size, struct wm_files_range *r)
{
    uint64_t a;
    uint64_t b;

    if (p < e && *p == '-') {
        p++;
        if (!read_u64(&p, e, &b) || p != e) {
            return -1;
        }
        if (b == 0 || size == 0) {
            return 0;
        }
        r->first = b >= size ? 0 : size - b;
        r->last = size - 1;
        return 1;
    }
    if (!read_u64(&p, e, &a) || p == e || *p != '-') {
        return -1;
    }
    p++;
    if (p == e) {
        b = UINT64_MAX;
    } else if (!read_u64(&p, e, &b) || p != e || b < a) {
        return -1;
    }
    if (a >= size) {
        return 0;
    }
    r->first = a;
    r->last = b >= size ? size - 1 : b;
    return 1;
}

int wm_files_range_parse(const char *v, size_t n, uint64_t size, struct wm_files_range *out,
                         int max)
{
    const char *p = v;
    const char *e = v + n;
    int count = 0;
    int specs = 0;
    uint64_t total = 0;

    p = skip_ows(p, e);
    if ((size_t)(e - p) < 6 || strncasecmp(p, "bytes=", 6) != 0) {
        return WM_FILES_RANGE_NONE;
    }
    p += 6;
    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *se = c != NULL ? c : e;
        const char *s = skip_ows(p, se);
        const char *t = se;
        struct wm_files_range r;
        int k;

        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) {
            t--;
        }
        p = c != NULL ? c + 1 : e;
        if (s == t) {
            continue; /* empty list elements are allowed (RFC 9110 5.6.1) */
        }
        if (++specs > max) {
            return WM_FILES_RANGE_NONE;
        }
        k = one_range(s, t, size, &r);
        if (k < 0) {
            return WM_FILES_RANGE_NONE;
        }
        if (k > 0) {
            /* overlapping ranges asking for more bytes than the file has
             * would multiply the answer (32 x "0-"): the whole file instead
             * (RFC 9110 17.15, as nginx) */
            uint64_t len = r.last - r.first + 1;
            if (len > size - total) {
                return WM_FILES_RANGE_NONE;
            }
            total += len;
            out[count++] = r;
        }
    }
    if (specs == 0) {
        return WM_FILES_RANGE_NONE;
    }
    return count > 0 ? count : WM_FILES_RANGE_UNSATISFIABLE;
}

/* ---- Accept-Encoding ---- */

/* "q=0.5" parameters of one element; 1000 when none. -1 when malformed. */
static int qvalue(const char *p, const char *e)
{
    while (p < e) {
        const char *semi = memchr(p, ';', (size_t)(e - p));
        const char *s;
        if (semi == NULL) {
            return 1000;
        }
        s = skip_ows(semi + 1, e);
        if (e - s >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
            int q = 0;
            int digits = 0;
            s += 2;
            if (s < e && (*s == '0' || *s == '1')) {
                q = (*s - '0') * 1000;
                s++;
            } else {
                return -1;
            }
            if (s < e && *s == '.') {
                int scale = 100;
                for (s++; s < e && *s >= '0' && *s <= '9' && digits < 3; s++, digits++) {
                    q += (*s - '0') * scale;
                    scale /= 10;
                }
            }
            return q > 1000 ? 1000 : q;
        }
        p = s;
    }
    return 1000;
}

int wm_files_accept_q(const char *v, size_t n, const char *coding)
{
    const char *p = v;
    const char *e = v + n;
    size_t cl = strlen(coding);
    int star = -1;
    int named = -1;

    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *se = c != NULL ? c : e;
        const char *s = skip_ows(p, se);
        const char *t = s;
        int q;

        while (t < se && *t != ';' && *t != ' ' && *t != '\t') {
            t++;
        }
        q = qvalue(t, se);
        if (q >= 0) {
            if ((size_t)(t - s) == cl && strncasecmp(s, coding, cl) == 0) {
                named = q;
            } else if (t - s == 1 && *s == '*') {
                star = q;
            } else if (strcmp(coding, "gzip") == 0 && t - s == 6 &&
                       strncasecmp(s, "x-gzip", 6) == 0) {
                named = q;
            }
        }
        p = c != NULL ? c + 1 : e;
    }
    if (named >= 0) {
        return named;
    }
    if (star >= 0) {
        return star;
    }
    return strcmp(coding, "identity") == 0 ? 1000 : 0;
}

/* ---- dates ---- */

int64_t wm_files_http_date(const char *v, size_t n)
{
    char buf[64];
    struct tm tm;
    const char *end;
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y"};

    if (n == 0 || n >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, v, n);
    buf[n] = '\0';
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(buf, fmts[i], &tm);
        if (end != NULL && *end == '\0') {
            return (int64_t)timegm(&tm);
        }
    }
    return -1;
}

/* ---- entity tags ---- */

bool files_etag_match(const char *v, size_t n, const char *etag, bool weak_ok)
{
    const char *p = v;
    const char *e = v + n;
    size_t el = strlen(etag);

    p = skip_ows(p, e);
    if (e - p == 1 && *p == '*') {
        return true;
    }
    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *se = c != NULL ? c : e;
        const char *s = skip_ows(p, se);
        const char *t = se;
        bool weak = false;

        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) {
            t--;
        }
        if (t - s >= 2 && s[0] == 'W' && s[1] == '/') {
            weak = true;
            s += 2;
        }
        if ((!weak || weak_ok) && (size_t)(t - s) == el && memcmp(s, etag, el) == 0) {
            return true;
        }
        p = c != NULL ? c + 1 : e;
    }
    return false;
}
