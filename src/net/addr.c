#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

/* A host name or address as written in "host:port": printable ASCII, no
 * space, and nothing that belongs to a URL around it. */
static bool host_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#' ||
            c == '\\' || c == '[' || c == ']') {
            return false;
        }
    }
    return true;
}

int wm_addr_split_port(const char *s, size_t n, char *hostbuf, size_t cap, uint16_t *port,
                       uint16_t default_port)
{
    const char *host = s;
    size_t hlen;
    const char *ps = NULL; /* the port's digits, when there are any */
    size_t pn = 0;
    uint64_t p;

    if (n == 0) {
        return -1;
    }
    if (s[0] == '[') {
        const char *end = memchr(s, ']', n);
        if (end == NULL) {
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(end - host);
        if ((size_t)(end - s) + 1 < n) {
            if (end[1] != ':') {
                return -1;
            }
            ps = end + 2;
            pn = n - (size_t)(ps - s);
        }
        if (memchr(host, ':', hlen) == NULL) {
            return -1; /* brackets are for IPv6 only */
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon != NULL ? (size_t)(colon - s) : n;
        if (colon != NULL) {
            ps = colon + 1;
            pn = n - hlen - 1; /* a second colon fails as a port: bare IPv6 needs brackets */
        }
    }
    if (hlen == 0 || hlen >= cap || hlen >= WM_HOST_MAX || !host_ok(host, hlen)) {
        return -1;
    }
    if (ps != NULL) {
        if (wm_parse_u64(ps, pn, 65535, &p) < 0 || p == 0) {
            return -1;
        }
        *port = (uint16_t)p;
    } else if (default_port != 0) {
        *port = default_port;
    } else {
        return -1;
    }
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    return 0;
}

int wm_addr_split(const char *s, size_t n, char *hostbuf, size_t cap, uint16_t *port)
{
    return wm_addr_split_port(s, n, hostbuf, cap, port, 0);
}

int wm_addr_from_ip(const char *host, uint16_t port, struct sockaddr_storage *ss,
                    socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return -1;
}

int wm_addr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[WM_HOST_MAX];
    uint16_t port;

    if (wm_addr_split(s, strlen(s), host, sizeof(host), &port) < 0) {
        return -1;
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    } else if (strcmp(host, "*") == 0) {
        snprintf(host, sizeof(host), "0.0.0.0");
    }
    return wm_addr_from_ip(host, port, ss, len);
}

/* Dotted quad into out (16 bytes at least): inet_ntop's, without its
 * sprintf (this runs for every proxied request's X-Forwarded-For). */
static void format_ipv4(const unsigned char *b, char *out)
{
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100) {
            *out++ = (char)('0' + v / 100);
        }
        if (v >= 10) {
            *out++ = (char)('0' + v / 10 % 10);
        }
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

const char *wm_addr_format_ip(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (sa->sa_family == AF_INET && cap >= INET_ADDRSTRLEN) {
        format_ipv4((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, buf);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
                  (socklen_t)cap);
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}

static uint64_t hash_seed;
static pthread_once_t hash_seed_once = PTHREAD_ONCE_INIT;

static void hash_seed_init(void)
{
    hash_seed = wm_random_u64();
}

uint64_t wm_addr_hash(const struct sockaddr_storage *ss, socklen_t len)
{
    pthread_once(&hash_seed_once, hash_seed_init);
    return wm_hash_seeded(hash_seed, ss, len < (socklen_t)sizeof(*ss) ? len : sizeof(*ss));
}

const char *wm_addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    wm_addr_format_ip(sa, ip, sizeof(ip));
    if (sa->sa_family == AF_INET6) {
        snprintf(buf, cap, "[%s]:%u", ip, wm_addr_port(sa));
    } else {
        snprintf(buf, cap, "%s:%u", ip, wm_addr_port(sa));
    }
    return buf;
}

uint16_t wm_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return 0;
}

/* Reduce an IPv4-mapped IPv6 address to plain IPv4 for comparison. */
static int ip_key(const struct sockaddr *sa, unsigned char out[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(out, a + 12, 4);
            return 4;
        }
        memcpy(out, a, 16);
        return 16;
    }
    return 0;
}

int wm_addr_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    unsigned char ka[16];
    unsigned char kb[16];
    int la = ip_key(a, ka);
    int lb = ip_key(b, kb);

    return la != 0 && la == lb && memcmp(ka, kb, (size_t)la) == 0;
}

int wm_addr_ip_class(const struct sockaddr *sa)
{
    static const unsigned char zero[16];
    unsigned char k[16];
    int n = ip_key(sa, k);

    if (n == 0) {
        return WM_ADDR_OTHER;
    }
    if (memcmp(k, zero, (size_t)n) == 0) {
        return WM_ADDR_UNSPECIFIED;
    }
    if ((n == 4 && k[0] == 127) || (n == 16 && memcmp(k, zero, 15) == 0 && k[15] == 1)) {
        return WM_ADDR_LOOPBACK;
    }
    if ((n == 4 && k[0] == 169 && k[1] == 254) ||
        (n == 16 && k[0] == 0xfe && (k[1] & 0xc0) == 0x80)) {
        return WM_ADDR_LINK_LOCAL;
    }
    return WM_ADDR_OTHER;
}

int wm_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    return wm_addr_same_ip(a, b) && wm_addr_port(a) == wm_addr_port(b);
}

/* Once per request, so no printf. */
void wm_addr_join(const char *host, uint16_t port, char *out, size_t cap)
{
    char buf[WM_HOST_MAX + 16];
    size_t hl = strnlen(host, WM_HOST_MAX);
    bool v6 = memchr(host, ':', hl) != NULL;
    size_t n = 0;

    if (v6) {
        buf[n++] = '[';
    }
    memcpy(buf + n, host, hl);
    n += hl;
    if (v6) {
        buf[n++] = ']';
    }
    if (port != 0) {
        char d[5];
        int k = 0;
        buf[n++] = ':';
        do {
            d[k++] = (char)('0' + port % 10);
            port /= 10;
        } while (port > 0);
        while (k > 0) {
            buf[n++] = d[--k];
        }
    }
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(out, buf, n);
    out[n] = '\0';
}

/* ---- address lists ("a:1 b:2", ranges "ip:8869-:8871", ":port") ---- */

/* One entry of a list: "ip:p" or "ip:p1-:p2" / "ip:p1-p2"; ":p" is every
 * IPv4 interface. Appends the expanded addresses to out from *n. */
static int expand_one(const char *e, size_t len, char (*out)[WM_ADDR_STR_MAX], size_t *n,
                      size_t max, struct wm_err *err)
{
    char buf[WM_ADDR_STR_MAX + 16];
    char host[WM_HOST_MAX];
    const char *dash;
    unsigned long hi = 0;
    uint16_t lo;
    struct sockaddr_storage ss;
    socklen_t sl;

    if (len >= sizeof(buf) - 8) {
        return wm_err_set(err, NULL, 0, 0, NULL, "address \"%.*s\" is too long", (int)len, e);
    }
    snprintf(buf, sizeof(buf), "%s%.*s", e[0] == ':' ? "0.0.0.0" : "", (int)len, e);
    dash = strrchr(buf, '-');
    if (dash != NULL && strchr(dash, ']') == NULL) {
        const char *p = dash + 1 + (dash[1] == ':');
        char *end;
        hi = strtoul(p, &end, 10);
        if (*p < '0' || *p > '9' || *end != '\0' || hi == 0 || hi > 65535) {
            return wm_err_set(err, NULL, 0, 0, NULL,
                              "expected a port range like \"127.0.0.1:8869-:8871\", got \"%.*s\"",
                              (int)len, e);
        }
        buf[dash - buf] = '\0';
    }
    if (wm_addr_split(buf, strlen(buf), host, sizeof(host), &lo) < 0 ||
        wm_addr_parse_listen(buf, &ss, &sl) < 0) {
        return wm_err_set(err, NULL, 0, 0, NULL, "expected \"ip:port\", got \"%.*s\"", (int)len,
                          e);
    }
    if (hi == 0) {
        hi = lo;
    }
    if (hi < lo) {
        return wm_err_set(err, NULL, 0, 0, NULL, "port range \"%.*s\" ends before it starts",
                          (int)len, e);
    }
    for (unsigned long p = lo; p <= hi; p++) {
        if (*n >= max && out != NULL) {
            return wm_err_set(err, NULL, 0, 0, NULL, "more than %zu addresses in one list", max);
        }
        if (out != NULL) {
            wm_addr_format((const struct sockaddr *)&ss, out[*n], WM_ADDR_STR_MAX);
            if (ss.ss_family == AF_INET) {
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)(p + 1));
            } else {
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)(p + 1));
            }
        }
        (*n)++;
        if (out == NULL && *n > WM_ADDR_LIST_MAX) {
            return wm_err_set(err, NULL, 0, 0, NULL, "more than %d addresses in one list",
                              WM_ADDR_LIST_MAX);
        }
    }
    return 0;
}

int wm_addr_list_expand(const char *s, char (*out)[WM_ADDR_STR_MAX], size_t *count, size_t max,
                        struct wm_err *err)
{
    size_t n = 0;

    wm_err_clear(err);
    while (*s != '\0') {
        size_t len;
        s += strspn(s, " \t,");
        len = strcspn(s, " \t,");
        if (len == 0) {
            break;
        }
        if (expand_one(s, len, out, &n, max, err) < 0) {
            return -1;
        }
        s += len;
    }
    if (count != NULL) {
        *count = n;
    }
    return 0;
}

bool wm_addr_listen_is_loopback(const char *s)
{
    struct sockaddr_storage ss;
    socklen_t len;

    return wm_addr_parse_listen(s, &ss, &len) == 0 &&
           wm_addr_ip_class((const struct sockaddr *)&ss) == WM_ADDR_LOOPBACK;
}

bool wm_addr_name_resolvable(const char *name)
{
    size_t n = strlen(name);
    size_t label = 0;

    if (n == 0 || strchr(name, '%') != NULL) {
        return false;
    }
    /* A query for a longer name is malformed: a server may drop it, and
     * the dial would wait out its timeout for an answer that never comes. */
    if (n > (name[n - 1] == '.' ? WM_DNS_NAME_MAX + 1 : WM_DNS_NAME_MAX)) {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        label = *p == '.' ? 0 : label + 1;
        if (label > WM_DNS_LABEL_MAX) {
            return false;
        }
    }
    return true;
}
