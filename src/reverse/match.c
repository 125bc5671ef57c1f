/*
 * reverse/match.c - location path patterns (wmproxy's: glob with '*', or
 * a regex), host names with wildcards, and IP networks.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/util.h"
#include "reverse/rev_int.h"

/* A pattern is a regex when it uses regex syntax beyond '*' (wmproxy
 * tries the glob first; a '*' pattern that is also a valid glob stays a
 * glob: "/api/" + '*' is a prefix, not "/api" followed by slashes). */
static bool looks_regex(const char *s)
{
    return strpbrk(s, "^$()[]{}|+?\\") != NULL;
}

static int compile_glob(struct rv_pattern *p, const char *text, struct wm_arena *a)
{
    size_t n = 0;
    const char *s = text;

    for (const char *q = text; *q != '\0'; q++) {
        n += *q == '*';
    }
    p->parts = wm_arena_alloc(a, (n + 1) * sizeof(*p->parts));
    if (p->parts == NULL) {
        return -1;
    }
    p->lead_star = text[0] == '*';
    p->trail_star = text[strlen(text) - 1] == '*';
    while (*s != '\0') {
        size_t len = strcspn(s, "*");
        if (len > 0) {
            p->parts[p->nparts++] = wm_arena_strndup(a, s, len);
        }
        s += len;
        s += *s == '*';
    }
    return 0;
}

int rv_pattern_compile(struct rv_pattern *p, const char *text, struct wm_arena *a, char *msg,
                       size_t cap)
{
    memset(p, 0, sizeof(*p));
    p->text = text != NULL ? wm_arena_strdup(a, text) : NULL; /* the config may go */
    if (text == NULL || text[0] == '\0' || strcmp(text, "*") == 0 || strcmp(text, "/*") == 0) {
        p->kind = RV_PAT_ANY;
        return 0;
    }
    if (text[0] == '=') {
        p->kind = RV_PAT_EXACT;
        p->text = p->text + 1;
        return 0;
    }
    if (looks_regex(text)) {
        int ec;
        PCRE2_SIZE off;
        p->re = pcre2_compile((PCRE2_SPTR)text, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off,
                              NULL);
        if (p->re == NULL) {
            PCRE2_UCHAR buf[128];
            pcre2_get_error_message(ec, buf, sizeof(buf));
            snprintf(msg, cap, "bad regex at offset %zu: %s", (size_t)off, (char *)buf);
            return -1;
        }
        p->kind = RV_PAT_REGEX;
        return 0;
    }
    if (strchr(text, '*') == NULL) {
        p->kind = RV_PAT_PREFIX;
        return 0;
    }
    p->kind = RV_PAT_GLOB;
    if (compile_glob(p, text, a) < 0) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return 0;
}

void rv_pattern_free(struct rv_pattern *p)
{
    if (p->re != NULL) {
        pcre2_code_free(p->re);
        p->re = NULL;
    }
}

static bool glob_match(const struct rv_pattern *p, const char *s, size_t n)
{
    size_t at = 0;

    for (size_t i = 0; i < p->nparts; i++) {
        const char *part = p->parts[i];
        size_t len = strlen(part);
        bool first = i == 0 && !p->lead_star;
        bool last = i + 1 == p->nparts && !p->trail_star;
        if (first) {
            if (n < len || memcmp(s, part, len) != 0) {
                return false;
            }
            at = len;
        } else if (last) {
            if (n - at < len || memcmp(s + n - len, part, len) != 0) {
                return false;
            }
            at = n;
        } else {
            const char *hit = memmem(s + at, n - at, part, len);
            if (hit == NULL) {
                return false;
            }
            at = (size_t)(hit - s) + len;
        }
    }
    return p->trail_star || at == n;
}

static bool regex_match(const struct rv_pattern *p, const char *s, size_t n)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int r;

    if (md == NULL) {
        return false;
    }
    r = pcre2_match(p->re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return r >= 0;
}

bool rv_pattern_match(const struct rv_pattern *p, const char *s, size_t n)
{
    switch (p->kind) {
    case RV_PAT_ANY:
        return true;
    case RV_PAT_EXACT:
        return n == strlen(p->text) && memcmp(s, p->text, n) == 0;
    case RV_PAT_PREFIX:
        return n >= strlen(p->text) && memcmp(s, p->text, strlen(p->text)) == 0;
    case RV_PAT_GLOB:
        return glob_match(p, s, n);
    case RV_PAT_REGEX:
        return regex_match(p, s, n);
    case RV_PAT_NEVER:
        return false;
    }
    return false;
}

int rv_cidr_parse(const char *s, struct rv_cidr *c)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
    int max;

    if (n == 0 || n >= sizeof(ip)) {
        return -1;
    }
    memcpy(ip, s, n);
    ip[n] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, ip, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    c->bits = max;
    if (slash != NULL) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > max) {
            return -1;
        }
        c->bits = (int)b;
    }
    return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
    int full = bits / 8;
    int rest = bits % 8;

    if (memcmp(a, b, (size_t)full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool rv_cidr_match(const struct rv_cidr *c, size_t n, const struct sockaddr *sa)
{
    uint8_t v4[4];
    const uint8_t *v6 = NULL;
    bool is4 = false;

    if (sa->sa_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        is4 = true;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(v4, a6->s6_addr + 12, 4);
            is4 = true;
        } else {
            v6 = a6->s6_addr;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (is4 && c[i].family == AF_INET && prefix_eq(c[i].addr, v4, c[i].bits)) {
            return true;
        }
        if (!is4 && c[i].family == AF_INET6 && prefix_eq(c[i].addr, v6, c[i].bits)) {
            return true;
        }
    }
    return false;
}

bool rv_host_match(const char *pattern, const char *host, size_t n)
{
    size_t pl = strlen(pattern);

    if (n > 1 && host[n - 1] == '.') {
        n--; /* "a.test." is the fully qualified a.test (nginx drops the dot too) */
    }
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com": any name below example.com (not itself) */
        size_t sl = pl - 1; /* ".example.com" */
        return n > sl && wm_strieq(host + n - sl, sl, pattern + 1);
    }
    return wm_strieq(host, n, pattern);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int rv_path_normalize(const char *uri, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    size_t end = 0;

    while (end < n && uri[end] != '?' && uri[end] != '#') {
        end++;
    }
    if (end == 0 || uri[0] != '/' || cap == 0) {
        return -1;
    }
    for (size_t i = 0; i < end; i++) {
        char ch = uri[i];
        if (ch == '%') {
            int hi = i + 2 < end ? hexval(uri[i + 1]) : -1;
            int lo = i + 2 < end ? hexval(uri[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return -1;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0') {
            return -1;
        }
        if (o + 1 >= cap) {
            return -1;
        }
        if (ch == '/' && o > 0 && out[o - 1] == '/') {
            continue; /* "//" is "/" */
        }
        out[o++] = ch;
        /* a segment just ended as "/." or "/..": resolve it */
        if ((ch == '/' || i + 1 == end) && o >= 2) {
            size_t seg_end = ch == '/' ? o - 1 : o;
            size_t s = seg_end;
            while (s > 0 && out[s - 1] != '/') {
                s--;
            }
            size_t len = seg_end - s;
            if (len == 1 && out[s] == '.') {
                o = s;
            } else if (len == 2 && out[s] == '.' && out[s + 1] == '.') {
                if (s < 2) {
                    return -1; /* above the root */
                }
                size_t p = s - 1;
                while (p > 0 && out[p - 1] != '/') {
                    p--;
                }
                o = p;
            }
        }
    }
    if (o == 0) {
        out[o++] = '/';
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

int rv_method_index(const char *m, size_t n)
{
    /* llhttp's HTTP methods only: llhttp_method_name() aborts on numbers
     * it does not know, so the table is built from its own map. */
#define RV_METHOD(num, name, string) {num, #string},
    static const struct {
        int num;
        const char *name;
    } methods[] = {HTTP_METHOD_MAP(RV_METHOD)};
#undef RV_METHOD

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i].name) == n && strncasecmp(methods[i].name, m, n) == 0) {
            return methods[i].num;
        }
    }
    return -1;
}

/* ---- server selection by Host (rev_int.h: rv_listen) ---- */

static bool is_wild(const char *name)
{
    return name[0] == '*' && name[1] == '.';
}

/* Case-folded FNV-1a: names compare case-insensitively (wm_strieq). */
static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = WM_FNV_INIT;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        c = c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
        h = wm_fnv1a(h, &c, 1);
    }
    return wm_mix64(h);
}

int rv_listen_index(struct rv_listen *l, struct wm_arena *a)
{
    size_t nexact = 0;
    size_t cap = 2;

    l->nwild = 0;
    for (size_t i = 0; i < l->nhosts; i++) {
        for (size_t k = 0; k < l->hosts[i]->nnames; k++) {
            if (is_wild(l->hosts[i]->names[k])) {
                l->nwild++;
            } else {
                nexact++;
            }
        }
    }
    while (cap < 2 * nexact) {
        cap *= 2;
    }
    l->exact = wm_arena_alloc(a, cap * sizeof(*l->exact));
    l->wild = wm_arena_alloc(a, (l->nwild ? l->nwild : 1) * sizeof(*l->wild));
    if (l->exact == NULL || l->wild == NULL) {
        return -1;
    }
    memset(l->exact, 0, cap * sizeof(*l->exact));
    l->exact_mask = cap - 1;
    l->nwild = 0;
    for (size_t i = 0; i < l->nhosts; i++) {
        for (size_t k = 0; k < l->hosts[i]->nnames; k++) {
            const char *name = l->hosts[i]->names[k];
            if (is_wild(name)) {
                l->wild[l->nwild++] = (struct rv_name){name, i};
                continue;
            }
            size_t len = strlen(name);
            size_t j = name_hash(name, len) & l->exact_mask;
            while (l->exact[j].name != NULL && !wm_strieq(name, len, l->exact[j].name)) {
                j = (j + 1) & l->exact_mask;
            }
            if (l->exact[j].name == NULL) {
                l->exact[j] = (struct rv_name){name, i}; /* else an earlier server has it */
            }
        }
    }
    return 0;
}

/* The position in l->hosts of the first server with a name matching host,
 * or l->nhosts. */
static size_t listen_find(const struct rv_listen *l, const char *host, size_t n)
{
    size_t best = l->nhosts;
    size_t full = n; /* rv_host_match drops the dot itself */

    if (n > 1 && host[n - 1] == '.') {
        n--; /* as rv_host_match: "a.test." is a.test */
    }
    if (l->exact != NULL) {
        size_t j = name_hash(host, n) & l->exact_mask;
        while (l->exact[j].name != NULL) {
            if (wm_strieq(host, n, l->exact[j].name)) {
                best = l->exact[j].pos;
                break;
            }
            j = (j + 1) & l->exact_mask;
        }
    }
    for (size_t i = 0; i < l->nwild && l->wild[i].pos < best; i++) {
        if (rv_host_match(l->wild[i].name, host, full)) {
            best = l->wild[i].pos;
            break;
        }
    }
    return best;
}

const struct rv_vhost *rv_listen_vhost(const struct rv_listen *l, const char *host, size_t n)
{
    size_t best = listen_find(l, host, n);

    return l->hosts[best < l->nhosts ? best : 0];
}

const struct rv_vhost *rv_listen_sni(const struct rv_listen *l, const char *name, size_t n)
{
    size_t best = listen_find(l, name, n);

    if (best >= l->nhosts || l->hosts[best]->tls != NULL) {
        return best < l->nhosts ? l->hosts[best] : NULL;
    }
    /* The first match has no certificate of its own: a later server's
     * name may still match (a wildcard), checked one by one. */
    for (size_t i = best + 1; i < l->nhosts; i++) {
        const struct rv_vhost *v = l->hosts[i];
        for (size_t k = 0; v->tls != NULL && k < v->nnames; k++) {
            if (rv_host_match(v->names[k], name, n)) {
                return v;
            }
        }
    }
    return NULL;
}
