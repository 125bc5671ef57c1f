#include "conf/units.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

/* Split s into a decimal number and a suffix. */
static int number_prefix(const char *s, uint64_t *v, const char **suffix)
{
    size_t n = 0;

    while (s[n] >= '0' && s[n] <= '9') {
        n++;
    }
    if (n == 0 || wm_parse_u64(s, n, UINT64_MAX / 1024 / 1024 / 1024, v) < 0) {
        return -1;
    }
    *suffix = s + n;
    return 0;
}

int wm_parse_duration_ms(const char *s, uint64_t *ms, struct wm_err *err)
{
    static const struct {
        const char *sfx;
        uint64_t mult;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000},
                 {"h", 3600000}, {"d", 86400000}};
    uint64_t v;
    const char *sfx;

    if (number_prefix(s, &v, &sfx) == 0) {
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strcmp(sfx, units[i].sfx) == 0) {
                if (v > UINT64_MAX / units[i].mult / 2) {
                    break;
                }
                *ms = v * units[i].mult;
                return 0;
            }
        }
    }
    wm_err_set(err, NULL, 0, 0, NULL,
               "expected a duration like \"30s\", \"5m\", \"250ms\", got \"%s\"", s);
    return -1;
}

static int size_mult(const char *sfx, uint64_t *mult)
{
    char c = sfx[0] | 0x20;

    if (sfx[0] == '\0') {
        *mult = 1;
        return 0;
    }
    if (c == 'b' && sfx[1] == '\0') {
        *mult = 1;
        return 0;
    }
    switch (c) {
    case 'k':
        *mult = 1024;
        break;
    case 'm':
        *mult = 1024 * 1024;
        break;
    case 'g':
        *mult = 1024ull * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (sfx[1] == '\0' || ((sfx[1] | 0x20) == 'b' && sfx[2] == '\0')) {
        return 0;
    }
    return -1;
}

int wm_parse_size(const char *s, uint64_t *bytes, struct wm_err *err)
{
    uint64_t v;
    uint64_t mult;
    const char *sfx;

    if (number_prefix(s, &v, &sfx) == 0 && size_mult(sfx, &mult) == 0) {
        *bytes = v * mult;
        return 0;
    }
    wm_err_set(err, NULL, 0, 0, NULL, "expected a size like \"512\", \"4k\", \"10m\", got \"%s\"",
               s);
    return -1;
}

int wm_parse_rate(const char *s, struct wm_rate *r, struct wm_err *err)
{
    const char *slash = strchr(s, '/');
    char num[64];
    uint64_t v;
    const char *sfx;
    size_t n;

    if (slash == NULL || (size_t)(slash - s) >= sizeof(num)) {
        goto bad;
    }
    n = (size_t)(slash - s);
    memcpy(num, s, n);
    num[n] = '\0';
    if (strcmp(slash + 1, "s") == 0) {
        r->per_ms = 1000;
    } else if (strcmp(slash + 1, "m") == 0) {
        r->per_ms = 60000;
    } else {
        goto bad;
    }
    if (n > 0 && (num[n - 1] == 'r' || num[n - 1] == 'R')) {
        num[n - 1] = '\0';
        if (number_prefix(num, &v, &sfx) < 0 || *sfx != '\0' || v == 0) {
            goto bad;
        }
        r->amount = v;
        r->requests = true;
        return 0;
    }
    if (wm_parse_size(num, &v, err) < 0 || v == 0) {
        goto bad;
    }
    r->amount = v;
    r->requests = false;
    return 0;
bad:
    wm_err_set(err, NULL, 0, 0, NULL, "expected a rate like \"4m/s\" or \"1000r/s\", got \"%s\"",
               s);
    return -1;
}

size_t wm_edit_distance(const char *a, const char *b, size_t limit)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t row[65];

    if (lb > 64 || la > 64) {
        return limit + 1;
    }
    if ((la > lb ? la - lb : lb - la) > limit) {
        return limit + 1;
    }
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best) {
                best = row[j] + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* One port number at *p (decimal, 1..65535), advancing *p. */
static int port_at(const char **p, unsigned *out)
{
    unsigned v = 0;
    const char *s = *p;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 65535) {
            return -1;
        }
        s++;
    }
    if (v == 0) {
        return -1;
    }
    *p = s;
    *out = v;
    return 0;
}

int wm_parse_port_list(const char *s, uint8_t *bits, char *msg, size_t cap)
{
    const char *p = s;
    bool any = false;

    for (;;) {
        unsigned lo;
        unsigned hi;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (port_at(&p, &lo) < 0) {
            snprintf(msg, cap, "expected ports and ranges like \"2000-3000, 3306\" (1..65535), "
                               "got \"%s\"", s);
            return -1;
        }
        hi = lo;
        if (*p == '-') {
            p++;
            if (port_at(&p, &hi) < 0 || hi < lo) {
                snprintf(msg, cap, "bad port range in \"%s\" (low-high, 1..65535)", s);
                return -1;
            }
        }
        for (unsigned v = lo; bits != NULL && v <= hi; v++) {
            bits[v / 8] |= (uint8_t)(1u << (v % 8));
        }
        any = true;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (*p != ',') {
            snprintf(msg, cap, "expected ports and ranges like \"2000-3000, 3306\" (1..65535), "
                               "got \"%s\"", s);
            return -1;
        }
        p++;
    }
    return any ? 0 : -1;
}
