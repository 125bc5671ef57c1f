#include "net/proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ---- building ---- */

/* One endpoint as 16 bytes of IPv6 (IPv4 mapped) and a port. */
struct ep {
    uint8_t ip[16];
    uint16_t port;
    bool v4;
};

static bool ep_of(const struct sockaddr *sa, struct ep *e)
{
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(e->ip, v4_mapped, 12);
        memcpy(e->ip + 12, &in->sin_addr, 4);
        e->port = ntohs(in->sin_port);
        e->v4 = true;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(e->ip, &in6->sin6_addr, 16);
        e->port = ntohs(in6->sin6_port);
        e->v4 = memcmp(e->ip, v4_mapped, 12) == 0;
        return true;
    }
    return false;
}

static size_t build_v1(const struct ep *s, const struct ep *d, bool known, bool v4, char *out,
                       size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    char b[INET6_ADDRSTRLEN];
    int n;

    if (!known) {
        n = snprintf(out, cap, "PROXY UNKNOWN\r\n");
    } else {
        int fam = v4 ? AF_INET : AF_INET6;
        inet_ntop(fam, v4 ? s->ip + 12 : s->ip, a, sizeof(a));
        inet_ntop(fam, v4 ? d->ip + 12 : d->ip, b, sizeof(b));
        n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", a, b, s->port,
                     d->port);
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t build_v2(const struct ep *s, const struct ep *d, bool known, bool v4, uint8_t *out,
                       size_t cap)
{
    size_t alen = !known ? 0 : v4 ? 12 : 36;
    size_t k = v4 ? 4 : 16; /* bytes of one IP */
    uint8_t *p = out + WM_PP_V2_HDR;

    if (cap < WM_PP_V2_HDR + alen) {
        return 0;
    }
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x20 | WM_PP_CMD_PROXY;
    out[13] = !known ? WM_PP_FAM_UNSPEC : v4 ? WM_PP_FAM_TCP4 : WM_PP_FAM_TCP6;
    out[14] = 0;
    out[15] = (uint8_t)alen;
    if (known) {
        memcpy(p, s->ip + 16 - k, k);
        memcpy(p + k, d->ip + 16 - k, k);
        p[2 * k] = (uint8_t)(s->port >> 8);
        p[2 * k + 1] = (uint8_t)s->port;
        p[2 * k + 2] = (uint8_t)(d->port >> 8);
        p[2 * k + 3] = (uint8_t)d->port;
    }
    return WM_PP_V2_HDR + alen;
}

size_t wm_pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   uint8_t *out, size_t cap)
{
    struct ep s;
    struct ep d;
    bool known = ep_of(src, &s);

    if (known && !ep_of(dst, &d)) {
        memset(&d, 0, sizeof(d)); /* "::" or "0.0.0.0", port 0 */
        d.v4 = s.v4;
        if (s.v4) {
            memcpy(d.ip, v4_mapped, sizeof(v4_mapped));
        }
    }
    bool v4 = known && s.v4 && d.v4;

    if (version == WM_PP_V1) {
        return build_v1(&s, &d, known, v4, (char *)out, cap);
    }
    if (version == WM_PP_V2) {
        return build_v2(&s, &d, known, v4, out, cap);
    }
    return 0;
}

int wm_pp_send(int fd, int version, const struct sockaddr *src, const struct sockaddr *dst)
{
    uint8_t buf[WM_PP_BUILD_MAX];
    size_t n = wm_pp_build(version, src, dst, buf, sizeof(buf));
    ssize_t r;

    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    do {
        r = send(fd, buf, n, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return -1;
    }
    if ((size_t)r != n) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

const char *wm_pp_version_str(int version)
{
    return version == WM_PP_V1 ? "v1" : version == WM_PP_V2 ? "v2" : "off";
}

/* ---- parsing ---- */

static int fail(const char **why, const char *reason)
{
    if (why != NULL) {
        *why = reason;
    }
    return -1;
}

/* A v1 port: 0..65535, decimal, no sign, no leading zero. */
static int v1_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

/* A v1 address of family fam, then its port, into ss. */
static int v1_addr(int fam, const char *ip, size_t iplen, const char *port, size_t portlen,
                   struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN];
    uint16_t p;

    if (iplen == 0 || iplen >= sizeof(buf) || v1_port(port, portlen, &p) < 0) {
        return -1;
    }
    memcpy(buf, ip, iplen);
    buf[iplen] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (fam == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, buf, &in->sin_addr) != 1) {
            return -1;
        }
        in->sin_family = AF_INET;
        in->sin_port = htons(p);
        *len = sizeof(*in);
        return 0;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) {
        return -1;
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(p);
    *len = sizeof(*in6);
    return 0;
}

/* The fields of a complete v1 line (s[0..n), without CRLF). */
static int v1_fields(const char *s, size_t n, struct wm_pp_info *info, const char **why)
{
    const char *f[6];
    size_t fl[6];
    size_t nf = 0;
    size_t start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ') {
            continue;
        }
        if (nf == 2 && fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
            return 0; /* spec 2.1: anything may follow UNKNOWN */
        }
        if (nf == 6 || i == start) {
            return fail(why, "v1: wrong number of fields or double space");
        }
        f[nf] = s + start;
        fl[nf++] = i - start;
        start = i + 1;
    }
    if (nf == 2 && fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
        return 0;
    }
    if (nf != 6 || fl[1] != 4 || (memcmp(f[1], "TCP4", 4) != 0 && memcmp(f[1], "TCP6", 4) != 0)) {
        return fail(why, "v1: expected TCP4, TCP6 or UNKNOWN with 4 address fields");
    }
    int fam = f[1][3] == '4' ? AF_INET : AF_INET6;
    if (v1_addr(fam, f[2], fl[2], f[4], fl[4], &info->src, &info->srclen) < 0 ||
        v1_addr(fam, f[3], fl[3], f[5], fl[5], &info->dst, &info->dstlen) < 0) {
        return fail(why, "v1: bad address or port");
    }
    info->known = true;
    return 0;
}

static int parse_v1(const uint8_t *p, size_t n, struct wm_pp_info *info, const char **why)
{
    /* The CR is at most at index 105: the line with CRLF fits in 107. */
    size_t lim = n < WM_PP_V1_MAX - 1 ? n : WM_PP_V1_MAX - 1;

    if (memcmp(p, "PROXY ", n < 6 ? n : 6) != 0) {
        return fail(why, "not a PROXY protocol header");
    }
    for (size_t i = 0; i < lim; i++) {
        if (p[i] == '\r') {
            if (i + 1 == n) {
                return 0;
            }
            if (p[i + 1] != '\n') {
                return fail(why, "v1: CR without LF");
            }
            info->version = WM_PP_V1;
            return v1_fields((const char *)p, i, info, why) < 0 ? -1 : (int)(i + 2);
        }
        if (p[i] < 0x20 || p[i] > 0x7e) {
            return fail(why, "v1: control or non-ASCII byte in the line");
        }
    }
    return n < WM_PP_V1_MAX - 1 ? 0 : fail(why, "v1: line longer than 107 bytes");
}

/* Address block size of a v2 family byte, or -1 for an unknown one. */
static int v2_addr_len(uint8_t fam)
{
    switch (fam) {
    case WM_PP_FAM_UNSPEC:
        return 0;
    case WM_PP_FAM_TCP4:
    case WM_PP_FAM_UDP4:
        return 12;
    case WM_PP_FAM_TCP6:
    case WM_PP_FAM_UDP6:
        return 36;
    case WM_PP_FAM_UNIX:
    case WM_PP_FAM_UNIX_DGRAM:
        return 216;
    default:
        return -1;
    }
}

static void v2_addrs(const uint8_t *a, uint8_t fam, struct wm_pp_info *info)
{
    memset(&info->src, 0, sizeof(info->src));
    memset(&info->dst, 0, sizeof(info->dst));
    if (fam == WM_PP_FAM_TCP4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&info->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&info->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both in network order */
        memcpy(&d->sin_port, a + 10, 2);
        info->srclen = info->dstlen = sizeof(*s);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&info->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        info->srclen = info->dstlen = sizeof(*s);
    }
    info->known = true;
}

static int parse_v2(const uint8_t *p, size_t n, struct wm_pp_info *info, const char **why)
{
    if (memcmp(p, v2_sig, n < sizeof(v2_sig) ? n : sizeof(v2_sig)) != 0) {
        return fail(why, "not a PROXY protocol header");
    }
    if (n < WM_PP_V2_HDR) {
        return 0;
    }
    uint8_t cmd = p[12] & 0x0f;
    uint8_t fam = p[13];
    size_t len = ((size_t)p[14] << 8) | p[15];
    int alen = v2_addr_len(fam);
    if ((p[12] >> 4) != 2) {
        return fail(why, "v2: version nibble is not 2");
    }
    if (cmd != WM_PP_CMD_LOCAL && cmd != WM_PP_CMD_PROXY) {
        return fail(why, "v2: unknown command");
    }
    if (alen < 0) {
        return fail(why, "v2: unknown address family or transport");
    }
    if (len > WM_PP_V2_BODY_MAX) {
        return fail(why, "v2: header too long");
    }
    if ((size_t)alen > len) {
        return fail(why, "v2: length shorter than the address block");
    }
    if (n < WM_PP_V2_HDR + len) {
        return 0;
    }
    /* TLVs: type (1), length (2), value; they must tile the rest exactly. */
    for (size_t off = WM_PP_V2_HDR + (size_t)alen; off < WM_PP_V2_HDR + len;) {
        if (WM_PP_V2_HDR + len - off < 3) {
            return fail(why, "v2: truncated TLV");
        }
        size_t vl = ((size_t)p[off + 1] << 8) | p[off + 2];
        if (vl > WM_PP_V2_HDR + len - off - 3) {
            return fail(why, "v2: TLV longer than the header");
        }
        off += 3 + vl;
    }
    info->version = WM_PP_V2;
    if (cmd == WM_PP_CMD_PROXY && (fam == WM_PP_FAM_TCP4 || fam == WM_PP_FAM_TCP6)) {
        v2_addrs(p + WM_PP_V2_HDR, fam, info);
    }
    return (int)(WM_PP_V2_HDR + len);
}

int wm_pp_parse(const uint8_t *p, size_t n, struct wm_pp_info *info, const char **why)
{
    memset(info, 0, sizeof(*info));
    if (why != NULL) {
        *why = NULL;
    }
    if (n == 0) {
        return 0;
    }
    if (p[0] == 'P') {
        return parse_v1(p, n, info, why);
    }
    if (p[0] == v2_sig[0]) {
        return parse_v2(p, n, info, why);
    }
    return fail(why, "not a PROXY protocol header");
}
