#include "core/util.h"

#include <linux/sockios.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>

bool wm_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *pa = a;
    const unsigned char *pb = b;
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen;

    /* Always walk alen bytes; compare against b cyclically so timing does
     * not reveal the first difference. */
    for (size_t i = 0; i < n; i++) {
        unsigned char cb = blen ? pb[i % blen] : 0;
        diff |= (unsigned char)(pa[i] ^ cb);
    }
    return diff == 0;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

long wm_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    size_t pad = 0;

    while (n > 0 && in[n - 1] == '=') {
        n--;
        if (++pad > 2) {
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) {
                return -1;
            }
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6) {
        return -1; /* a lone trailing symbol carries no full byte */
    }
    return (long)o;
}

long wm_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (n + 2) / 3 * 4 + 1;
    size_t o = 0;

    if (cap < need) {
        return -1;
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return (long)o;
}

int wm_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (d > max || v > (max - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Eight bytes with ASCII capitals made small, the others as they are: the
 * high bit of each byte of `upper` is set for 'A'..'Z' only (the 7-bit
 * sums cannot carry into the next byte). */
static inline uint64_t lower8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull;
    const uint64_t high = 0x8080808080808080ull;
    uint64_t low7 = x & ~high;
    uint64_t ge_a = (low7 + ones * (0x80 - 'A')) & high;
    uint64_t gt_z = (low7 + ones * (0x80 - 'Z' - 1)) & high;
    uint64_t upper = ge_a & ~gt_z & ~x;
    return x | (upper >> 2);
}

/* Byte ranges equal with ASCII capitals folded: a's always, b's unless
 * b_lower says b has none. Eight bytes at a time; the last eight may
 * overlap the ones before. */
static inline bool ieq(const char *a, const char *b, size_t n, bool b_lower)
{
    uint64_t x;
    uint64_t y;

    if (n < 8) {
        for (size_t i = 0; i < n; i++) {
            unsigned cx = (unsigned char)a[i];
            unsigned cy = (unsigned char)b[i];
            cx += (cx - 'A' < 26u) << 5; /* ASCII letters to lower case, branch-free */
            cy += b_lower ? 0 : (cy - 'A' < 26u) << 5;
            if (cx != cy) {
                return false;
            }
        }
        return true;
    }
    for (size_t i = 0;; i += 8) {
        if (i + 8 > n) {
            i = n - 8;
        }
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y && lower8(x) != (b_lower ? y : lower8(y))) {
            return false;
        }
        if (i + 8 == n) {
            return true;
        }
    }
}

bool wm_memieq(const char *a, const char *b, size_t n)
{
    return ieq(a, b, n, false);
}

bool wm_memieq_lower(const char *s, const char *lower, size_t n)
{
    return ieq(s, lower, n, true);
}

void wm_trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) {
        (*n)--;
    }
}

bool wm_list_next(const char *s, size_t n, size_t *pos, const char **tok, size_t *tlen)
{
    size_t i = *pos;
    size_t j = i;

    if (i >= n) {
        return false;
    }
    while (j < n && s[j] != ',') {
        j++;
    }
    *tok = s + i;
    *tlen = j - i;
    wm_trim(tok, tlen);
    *pos = j + 1;
    return true;
}

bool wm_list_has_token(const char *s, size_t n, const char *token)
{
    size_t pos = 0;
    const char *t;
    size_t tn;

    while (wm_list_next(s, n, &pos, &t, &tn)) {
        if (wm_strieq(t, tn, token)) {
            return true;
        }
    }
    return false;
}

uint64_t wm_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void wm_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (cap == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

uint64_t wm_now_coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool wm_field_name_ok(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL))) {
            return false;
        }
    }
    return true;
}

bool wm_field_value_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            return false;
        }
    }
    return true;
}

size_t wm_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    uint32_t min;
    size_t len;
    size_t i;

    if (n == 0) {
        return 0;
    }
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        c = s[0] & 0x1F;
        min = 0x80;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        c = s[0] & 0x0F;
        min = 0x800;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        c = s[0] & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return len;
}

size_t wm_escape_ctl(char *out, size_t cap, const char *in, size_t n, bool fold_newlines)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;

    if (cap == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char esc[12];
        size_t k;
        if (p[i] == 0xC2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F) {
            k = (size_t)snprintf(esc, sizeof(esc), "\\xC2\\x%02X", p[++i]);
        } else if (p[i] >= 0x20 && p[i] != 0x7F) {
            esc[0] = (char)p[i];
            k = 1;
        } else if (fold_newlines && (p[i] == '\n' || p[i] == '\r')) {
            esc[0] = ' ';
            k = 1;
        } else if (!fold_newlines && (p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) {
            esc[0] = '\\';
            esc[1] = p[i] == '\n' ? 'n' : p[i] == '\r' ? 'r' : 't';
            k = 2;
        } else {
            k = (size_t)snprintf(esc, sizeof(esc), "\\x%02X", p[i]);
        }
        if (o + k + 1 > cap) {
            break;
        }
        memcpy(out + o, esc, k);
        o += k;
    }
    out[o] = '\0';
    return o;
}

int wm_grow(void **arr, size_t *cap, size_t need, size_t esz, size_t min_cap)
{
    size_t ncap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap < min_cap ? min_cap : *cap;
    if (ncap == 0) {
        ncap = 1;
    }
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            return -1;
        }
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / esz) {
        return -1;
    }
    p = realloc(*arr, ncap * esz);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

uint64_t wm_random_u64(void)
{
    static __thread uint64_t st;

    if (st == 0) {
        if (getrandom(&st, sizeof(st), GRND_NONBLOCK) != (ssize_t)sizeof(st) || st == 0) {
            st = wm_now_ms() ^ (uint64_t)(uintptr_t)&st ^ 0x9e3779b97f4a7c15ULL;
        }
    }
    /* splitmix64 */
    return wm_mix64(st += 0x9e3779b97f4a7c15ULL);
}

int wm_sock_sendq(int fd)
{
    int n = -1;

    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) < 0 || n < 0) {
        return -1;
    }
    return n;
}
