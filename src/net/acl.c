/*
 * net/acl.c - destination and client rules (net/acl.h): a parser for one
 * rule, a compiled immutable set, and the verdicts.
 */
#include "net/acl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define NAME_MAX_LEN 253 /* a DNS name */

enum rule_kind {
    R_ANY,    /* "*": every host */
    R_NET,    /* an address or CIDR */
    R_NAME,   /* "name.example": that name */
    R_UNDER,  /* "*.example": names under it */
    R_DOMAIN, /* ".example": it and names under it */
};

struct rule {
    enum rule_kind kind;
    uint8_t fam;      /* R_NET: 4 or 6 */
    uint8_t plen;     /* R_NET: prefix length */
    uint8_t addr[16]; /* R_NET: the network, host bits cleared */
    uint16_t plo;     /* ports plo..phi (0..65535: any) */
    uint16_t phi;
    char name[NAME_MAX_LEN + 1]; /* name kinds: lower case, no trailing dot */
    char why[WM_ACL_RULE_MAX + 24]; /* `deny_targets "10.0.0.0/8"` */
};

struct rules {
    struct rule *v;
    size_t n;
};

struct wm_acl {
    int refs;
    bool guard;
    struct rules deny_t;
    struct rules allow_t;
    struct rules deny_c;
    struct rules allow_c;
};

/* The ranges guarded on an exposed proxy (the classes of wm_addr_ip_class). */
static const struct guarded {
    uint8_t fam;
    uint8_t plen;
    uint8_t addr[16];
    const char *why;
} guarded[] = {
#define GUARDED " (refused by default on a proxy listening beyond loopback)"
    {4, 8, {127}, "loopback address" GUARDED},
    {6, 128, {[15] = 1}, "loopback address" GUARDED},
    {4, 16, {169, 254}, "link-local address" GUARDED},
    {6, 10, {0xfe, 0x80}, "link-local address" GUARDED},
    {4, 32, {0}, "unspecified address" GUARDED},
    {6, 128, {0}, "unspecified address" GUARDED},
    /* the proxy's own network: a SOCKS5 UDP datagram would reach it */
    {4, 4, {224}, "multicast address" GUARDED},
    {6, 8, {0xff}, "multicast address" GUARDED},
    {4, 32, {255, 255, 255, 255}, "broadcast address" GUARDED},
#undef GUARDED
};

/* ---- parsing ---- */

static int fail(char *msg, size_t cap, const char *text)
{
    snprintf(msg, cap, "%s", text);
    return -1;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned plen)
{
    unsigned full = plen / 8;
    unsigned rest = plen % 8;

    if (memcmp(a, b, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static void clear_host_bits(uint8_t *a, unsigned plen, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        unsigned bit = i * 8;
        if (bit >= plen) {
            a[i] = 0;
        } else if (plen - bit < 8) {
            a[i] &= (uint8_t)(0xff << (8 - (plen - bit)));
        }
    }
}

/* "N" or "N-M" into r's range. */
static int parse_ports(const char *p, struct rule *r, char *msg, size_t cap)
{
    const char *dash = strchr(p, '-');
    size_t n1 = dash != NULL ? (size_t)(dash - p) : strlen(p);
    uint64_t lo;
    uint64_t hi;

    if (wm_parse_u64(p, n1, 65535, &lo) < 0 || lo == 0) {
        return fail(msg, cap, "expected a port 1..65535 or a range N-M after ':'");
    }
    hi = lo;
    if (dash != NULL && (wm_parse_u64(dash + 1, strlen(dash + 1), 65535, &hi) < 0 || hi < lo)) {
        return fail(msg, cap, "expected a port range N-M with 1 <= N <= M <= 65535");
    }
    r->plo = (uint16_t)lo;
    r->phi = (uint16_t)hi;
    return 0;
}

/* An address or CIDR of family fam (4 or 6) from h[0..n). */
static int parse_net(const char *h, size_t n, int fam, struct rule *r, char *msg, size_t cap)
{
    char buf[64];
    const char *slash;
    unsigned max = fam == 4 ? 32 : 128;
    uint64_t plen = max;

    if (n == 0 || n >= sizeof(buf)) {
        return fail(msg, cap, fam == 4 ? "not an IPv4 address or CIDR"
                                       : "not an IPv6 address or CIDR");
    }
    memcpy(buf, h, n);
    buf[n] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL) {
        if (wm_parse_u64(slash + 1, strlen(slash + 1), max, &plen) < 0) {
            snprintf(msg, cap, "prefix length must be 0..%u", max);
            return -1;
        }
        buf[slash - buf] = '\0';
    }
    if (inet_pton(fam == 4 ? AF_INET : AF_INET6, buf, r->addr) != 1) {
        return fail(msg, cap, fam == 4 ? "not an IPv4 address or CIDR"
                                       : "not an IPv6 address or CIDR");
    }
    r->kind = R_NET;
    r->fam = (uint8_t)fam;
    r->plen = (uint8_t)plen;
    /* ::ffff:a.b.c.d/96+n is a.b.c.d/n: targets are compared in that form. */
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (fam == 6 && plen >= 96 && memcmp(r->addr, mapped, 12) == 0) {
        memmove(r->addr, r->addr + 12, 4);
        r->fam = 4;
        r->plen = (uint8_t)(plen - 96);
    }
    clear_host_bits(r->addr, r->plen, r->fam == 4 ? 4 : 16);
    return 0;
}

/* A host pattern: "name", "*.name", ".name". */
static int parse_name(const char *h, size_t n, struct rule *r, char *msg, size_t cap)
{
    r->kind = R_NAME;
    if (n >= 2 && h[0] == '*' && h[1] == '.') {
        r->kind = R_UNDER;
        h += 2;
        n -= 2;
    } else if (n >= 1 && h[0] == '.') {
        r->kind = R_DOMAIN;
        h += 1;
        n -= 1;
    }
    if (n > 0 && h[n - 1] == '.') {
        n--;
    }
    if (n == 0 || n > NAME_MAX_LEN) {
        return fail(msg, cap, "expected a host name (1..253 bytes), *.name or .name");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.') ||
            (c == '.' && (i == 0 || h[i - 1] == '.'))) {
            return fail(msg, cap, "not a host name: letters, digits, '-', '_' and dots; '*' "
                                  "only as a leading \"*.\"");
        }
        r->name[i] = (char)tolower(c);
    }
    r->name[n] = '\0';
    return 0;
}

static bool looks_numeric(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)h[i]) && h[i] != '.' && h[i] != '/') {
            return false;
        }
    }
    return true;
}

/* The host part outside brackets (IPv4, CIDR, "*" or a name). */
static int parse_host(const char *h, size_t n, struct rule *r, char *msg, size_t cap)
{
    if (n == 1 && h[0] == '*') {
        r->kind = R_ANY;
        return 0;
    }
    if (looks_numeric(h, n)) {
        return parse_net(h, n, 4, r, msg, cap);
    }
    if (memchr(h, '/', n) != NULL) {
        return fail(msg, cap, "a prefix length goes with an IP address");
    }
    return parse_name(h, n, r, msg, cap);
}

static int parse_rule(const char *s, bool client, struct rule *r, char *msg, size_t cap)
{
    size_t len = strlen(s);
    const char *ports = NULL;
    const char *colon = strchr(s, ':');
    int rc;

    memset(r, 0, sizeof(*r));
    r->plo = 0; /* no port given: every port */
    r->phi = 65535;
    if (len == 0) {
        return fail(msg, cap, "empty rule");
    }
    if (len > WM_ACL_RULE_MAX) {
        snprintf(msg, cap, "longer than %d bytes", WM_ACL_RULE_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (isspace((unsigned char)s[i])) {
            return fail(msg, cap, "one rule per string, without spaces");
        }
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            return fail(msg, cap, "expected [IPv6] or [IPv6/len], then :PORT or nothing");
        }
        rc = parse_net(s + 1, (size_t)(close - s - 1), 6, r, msg, cap);
        ports = close[1] == ':' ? close + 2 : NULL;
    } else if (colon != NULL && strchr(colon + 1, ':') != NULL) {
        rc = parse_net(s, len, 6, r, msg, cap); /* bare IPv6: no port */
    } else {
        rc = parse_host(s, colon != NULL ? (size_t)(colon - s) : len, r, msg, cap);
        ports = colon != NULL ? colon + 1 : NULL;
    }
    if (rc == 0 && ports != NULL) {
        rc = parse_ports(ports, r, msg, cap);
    }
    if (rc == 0 && client && (r->kind != R_NET && r->kind != R_ANY)) {
        return fail(msg, cap, "client rules are IP addresses or CIDRs");
    }
    if (rc == 0 && client && ports != NULL) {
        return fail(msg, cap, "client rules take no port");
    }
    return rc;
}

int wm_acl_rule_check(const char *s, bool client, char *msg, size_t cap)
{
    struct rule r;

    return parse_rule(s, client, &r, msg, cap);
}

/* ---- the set ---- */

static int build(struct rules *out, const char *key, const char *const *v, size_t n, bool client,
                 char *msg, size_t cap)
{
    char m[200];

    if (n == 0) {
        return 0;
    }
    out->v = calloc(n, sizeof(*out->v));
    if (out->v == NULL) {
        return fail(msg, cap, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_rule(v[i], client, &out->v[i], m, sizeof(m)) < 0) {
            snprintf(msg, cap, "%s \"%.*s\": %s", key, WM_ACL_RULE_MAX, v[i], m);
            return -1;
        }
        snprintf(out->v[i].why, sizeof(out->v[i].why), "%s \"%s\"", key, v[i]);
    }
    out->n = n;
    return 0;
}

static void acl_free(struct wm_acl *a)
{
    free(a->deny_t.v);
    free(a->allow_t.v);
    free(a->deny_c.v);
    free(a->allow_c.v);
    free(a);
}

struct wm_acl *wm_acl_new(const struct wm_acl_spec *spec, char *msg, size_t cap)
{
    struct wm_acl *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        fail(msg, cap, "out of memory");
        return NULL;
    }
    a->refs = 1;
    a->guard = spec->guard_local;
    if (build(&a->deny_t, "deny_targets", spec->deny_targets, spec->ndeny_targets, false, msg,
              cap) < 0 ||
        build(&a->allow_t, "allow_targets", spec->allow_targets, spec->nallow_targets, false,
              msg, cap) < 0 ||
        build(&a->deny_c, "deny_clients", spec->deny_clients, spec->ndeny_clients, true, msg,
              cap) < 0 ||
        build(&a->allow_c, "allow_clients", spec->allow_clients, spec->nallow_clients, true, msg,
              cap) < 0) {
        acl_free(a);
        return NULL;
    }
    return a;
}

struct wm_acl *wm_acl_ref(struct wm_acl *a)
{
    if (a != NULL) {
        __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
    }
    return a;
}

void wm_acl_unref(struct wm_acl *a)
{
    if (a != NULL && __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        acl_free(a);
    }
}

bool wm_acl_active(const struct wm_acl *a)
{
    return a != NULL && (a->guard || a->deny_t.n || a->allow_t.n || a->deny_c.n || a->allow_c.n);
}

/* ---- verdicts ---- */

/* An address in the form rules hold: 4 or 6, and the bytes. */
struct ip {
    int fam;
    uint8_t b[16];
};

static bool ip_of(const struct sockaddr *sa, struct ip *ip)
{
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};

    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        ip->fam = 4;
        memcpy(ip->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        ip->fam = memcmp(b, mapped, 12) == 0 ? 4 : 6;
        memcpy(ip->b, ip->fam == 4 ? b + 12 : b, ip->fam == 4 ? 4 : 16);
        return true;
    }
    return false;
}

/* The name lowered, without its trailing dot, into buf; NULL when there
 * is no name to match (IP literal, too long). */
static const char *norm_name(const char *name, char *buf, size_t cap)
{
    size_t n;

    if (name == NULL) {
        return NULL;
    }
    n = strlen(name);
    if (n > 0 && name[n - 1] == '.') {
        n--;
    }
    if (n == 0 || n >= cap) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        buf[i] = (char)tolower((unsigned char)name[i]);
    }
    buf[n] = '\0';
    return buf;
}

static bool name_match(const struct rule *r, const char *name)
{
    size_t n = strlen(name);
    size_t m = strlen(r->name);

    if (r->kind == R_NAME || (r->kind == R_DOMAIN && n == m)) {
        return strcmp(name, r->name) == 0;
    }
    return n > m + 1 && name[n - m - 1] == '.' && strcmp(name + n - m, r->name) == 0;
}

/* Does r match (name or NULL, ip or NULL, port; -1: any port)? */
static bool match(const struct rule *r, const char *name, const struct ip *ip, int port)
{
    if (port >= 0 && (port < r->plo || port > r->phi)) {
        return false;
    }
    switch (r->kind) {
    case R_ANY:
        return true;
    case R_NET:
        return ip != NULL && ip->fam == r->fam && prefix_eq(ip->b, r->addr, r->plen);
    default:
        return name != NULL && name_match(r, name);
    }
}

static const struct rule *first(const struct rules *rs, const char *name, const struct ip *ip,
                                int port)
{
    for (size_t i = 0; i < rs->n; i++) {
        if (match(&rs->v[i], name, ip, port)) {
            return &rs->v[i];
        }
    }
    return NULL;
}

/* The deny rule that refuses ip, or NULL. A connect to the unspecified
 * address reaches this host's loopback (the kernel routes 0.0.0.0 to
 * 127.0.0.1 and :: to ::1), so a rule denying that loopback address
 * refuses the unspecified one too: "0.0.0.0" must not get around
 * "127.0.0.0/8". */
static const struct rule *first_deny(const struct wm_acl *a, const char *name,
                                     const struct ip *ip, uint16_t port)
{
    static const uint8_t zero[16];
    const struct rule *r = first(&a->deny_t, name, ip, port);
    struct ip lo = {.fam = ip->fam};

    if (r != NULL || memcmp(ip->b, zero, ip->fam == 4 ? 4 : 16) != 0) {
        return r;
    }
    if (ip->fam == 4) {
        lo.b[0] = 127;
        lo.b[3] = 1;
    } else {
        lo.b[15] = 1;
    }
    return first(&a->deny_t, name, &lo, port);
}

/* The guarded range ip is in, or NULL. */
static const struct guarded *guarded_of(const struct ip *ip)
{
    for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++) {
        if (guarded[i].fam == ip->fam && prefix_eq(ip->b, guarded[i].addr, guarded[i].plen)) {
            return &guarded[i];
        }
    }
    return NULL;
}

/* Does an address rule lie inside a guarded range (an explicit allow)? */
static bool inside_guarded(const struct rule *r)
{
    struct ip net = {.fam = r->fam};

    if (r->kind != R_NET) {
        return false;
    }
    memcpy(net.b, r->addr, sizeof(net.b));
    const struct guarded *g = guarded_of(&net);
    return g != NULL && r->plen >= g->plen;
}

bool wm_acl_name_denied(const struct wm_acl *a, const char *name, uint16_t port, const char **why)
{
    char buf[NAME_MAX_LEN + 1];
    const struct rule *r;

    if (a == NULL) {
        return false;
    }
    r = first(&a->deny_t, norm_name(name, buf, sizeof(buf)), NULL, port);
    if (r != NULL && r->kind != R_NET) {
        *why = r->why;
        return true;
    }
    return false;
}

bool wm_acl_target_ok(const struct wm_acl *a, const char *name, const struct sockaddr *sa,
                      const char **why)
{
    char buf[NAME_MAX_LEN + 1];
    struct ip ip;
    const struct rule *r;
    const struct guarded *g = NULL;

    if (a == NULL) {
        return true;
    }
    if (!ip_of(sa, &ip)) {
        *why = "not an IP address";
        return false;
    }
    const char *n = norm_name(name, buf, sizeof(buf));
    uint16_t port = ntohs(sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                                   : ((const struct sockaddr_in6 *)sa)->sin6_port);
    if ((r = first_deny(a, n, &ip, port)) != NULL) {
        *why = r->why;
        return false;
    }
    if (a->guard) {
        g = guarded_of(&ip);
    }
    for (size_t i = 0; i < a->allow_t.n; i++) {
        r = &a->allow_t.v[i];
        if (match(r, n, &ip, port) && (g == NULL || inside_guarded(r))) {
            return true;
        }
    }
    if (g != NULL) {
        *why = g->why;
        return false;
    }
    if (a->allow_t.n > 0) {
        *why = "not in allow_targets";
        return false;
    }
    return true;
}

bool wm_acl_client_ok(const struct wm_acl *a, const struct sockaddr *sa, const char **why)
{
    struct ip ip;
    const struct rule *r;

    if (a == NULL || (a->deny_c.n == 0 && a->allow_c.n == 0) || !ip_of(sa, &ip)) {
        return true;
    }
    if ((r = first(&a->deny_c, NULL, &ip, -1)) != NULL) {
        *why = r->why;
        return false;
    }
    if (a->allow_c.n > 0 && first(&a->allow_c, NULL, &ip, -1) == NULL) {
        *why = "not in allow_clients";
        return false;
    }
    return true;
}
