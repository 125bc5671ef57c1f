/*
 * tests/unit/proxy/test_socks_proto.c - proxy/socks_proto.h: SOCKS5
 * (RFC 1928), username/password (RFC 1929) and SOCKS4/4a wire formats.
 *
 * Each valid message is also fed truncated at every length (WM_SOCKS_MORE,
 * or an error for UDP datagrams) and followed by pipelined bytes (the count
 * stops at the message end). Inputs are copied to exact-size heap buffers so
 * ASan catches any read past n.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy/socks_proto.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define MSG_MAX 600

/* A message as bytes; built by the table or by helpers for long fields. */
struct msg {
    uint8_t b[MSG_MAX];
    size_t n;
};

static void msg_put(struct msg *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof(m->b));
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void msg_byte(struct msg *m, uint8_t c)
{
    msg_put(m, &c, 1);
}

static void msg_fill(struct msg *m, uint8_t c, size_t n)
{
    assert_true(m->n + n <= sizeof(m->b));
    memset(m->b + m->n, c, n);
    m->n += n;
}

/* Exact-size heap copy of p[0..n) (n == 0 still allocates). */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);

    assert_non_null(d);
    if (n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

/* ---- greeting ---- */

static int greet(const uint8_t *p, size_t n, bool *none, bool *up)
{
    uint8_t *d = dup_exact(p, n);
    int r = wm_socks5_parse_greeting(d, n, none, up);

    free(d);
    return r;
}

static void test_greeting_table(void **state)
{
    static const struct {
        uint8_t b[8];
        size_t n;
        int ret;
        bool none;
        bool userpass;
    } cases[] = {
        {{5, 1, 0x00}, 3, 3, true, false},
        {{5, 1, 0x02}, 3, 3, false, true},
        {{5, 2, 0x00, 0x02}, 4, 4, true, true},
        {{5, 2, 0x02, 0x00}, 4, 4, true, true},
        {{5, 1, 0x01}, 3, 3, false, false},                 /* GSSAPI only */
        {{5, 4, 0x01, 0x80, 0xff, 0x03}, 6, 6, false, false}, /* nothing we do */
        {{5, 3, 0x00, 0x00, 0x00}, 5, 5, true, false},      /* repeats */
        {{5, 0}, 2, WM_SOCKS_EPROTO, false, false},         /* NMETHODS 0 */
        {{4, 1, 0x00}, 3, WM_SOCKS_EPROTO, false, false},
        {{0, 1, 0x00}, 3, WM_SOCKS_EPROTO, false, false},
        {{0xff, 1, 0x00}, 3, WM_SOCKS_EPROTO, false, false},
        {{'G', 'E', 'T', ' '}, 4, WM_SOCKS_EPROTO, false, false},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        bool none = !cases[i].none;
        bool up = !cases[i].userpass;
        int r = greet(cases[i].b, cases[i].n, &none, &up);
        if (r != cases[i].ret) {
            fail_msg("case %zu: ret %d want %d", i, r, cases[i].ret);
        }
        if (r > 0) {
            assert_int_equal(none, cases[i].none);
            assert_int_equal(up, cases[i].userpass);
        }
        if (r <= 0) {
            continue;
        }
        /* every proper prefix: need more */
        for (size_t k = 0; k < cases[i].n; k++) {
            if (greet(cases[i].b, k, &none, &up) != WM_SOCKS_MORE) {
                fail_msg("case %zu truncated at %zu: not MORE", i, k);
            }
        }
        /* pipelined bytes are not consumed */
        uint8_t more[16];
        memcpy(more, cases[i].b, cases[i].n);
        memset(more + cases[i].n, 5, sizeof(more) - cases[i].n);
        assert_int_equal(greet(more, sizeof(more), &none, &up), cases[i].ret);
    }
}

static void test_greeting_255_methods(void **state)
{
    struct msg m = {0};
    bool none;
    bool up;

    (void)state;
    msg_byte(&m, 5);
    msg_byte(&m, 255);
    msg_fill(&m, 0x80, 254);
    msg_byte(&m, 0x02); /* last one offered is USERPASS */
    assert_int_equal(greet(m.b, m.n, &none, &up), 257);
    assert_false(none);
    assert_true(up);
    assert_int_equal(greet(m.b, 256, &none, &up), WM_SOCKS_MORE);
}

/* ---- RFC 1929 username/password ---- */

struct up_out {
    char *user; /* heap, exactly 256 bytes */
    char *pass;
    size_t ulen;
    size_t plen;
};

static int userpass(const uint8_t *p, size_t n, struct up_out *o)
{
    uint8_t *d = dup_exact(p, n);
    int r;

    o->user = malloc(256);
    o->pass = malloc(256);
    assert_non_null(o->user);
    assert_non_null(o->pass);
    r = wm_socks5_parse_userpass(d, n, o->user, &o->ulen, o->pass, &o->plen);
    free(d);
    return r;
}

static void up_free(struct up_out *o)
{
    free(o->user);
    free(o->pass);
}

static void build_userpass(struct msg *m, const char *u, size_t ul, const char *pw, size_t pl)
{
    m->n = 0;
    msg_byte(m, 1);
    msg_byte(m, (uint8_t)ul);
    msg_put(m, u, ul);
    msg_byte(m, (uint8_t)pl);
    msg_put(m, pw, pl);
}

struct up_case {
    const char *u;
    size_t ul;
    const char *p;
    size_t pl;
};

static void test_userpass_table(void **state)
{
    char u255[255];
    char p255[255];
    static const char *const names[] = {"", "a", "user", "a\0b"};
    static const size_t nlens[] = {0, 1, 4, 3};

    (void)state;
    memset(u255, 'u', sizeof(u255));
    memset(p255, 'p', sizeof(p255));

    struct up_case cases[4 * 4 + 4];
    size_t nc = 0;
    for (size_t i = 0; i < NELEM(names); i++) {
        for (size_t j = 0; j < NELEM(names); j++) {
            cases[nc].u = names[i];
            cases[nc].ul = nlens[i];
            cases[nc].p = names[j];
            cases[nc].pl = nlens[j];
            nc++;
        }
    }
    cases[nc++] = (struct up_case){u255, 255, "", 0};
    cases[nc++] = (struct up_case){"", 0, p255, 255};
    cases[nc++] = (struct up_case){u255, 255, p255, 255};
    cases[nc++] = (struct up_case){"x", 1, p255, 255};

    for (size_t i = 0; i < nc; i++) {
        struct msg m;
        struct up_out o;
        build_userpass(&m, cases[i].u, cases[i].ul, cases[i].p, cases[i].pl);

        int r = userpass(m.b, m.n, &o);
        assert_int_equal(r, (int)(3 + cases[i].ul + cases[i].pl));
        assert_int_equal(o.ulen, cases[i].ul);
        assert_int_equal(o.plen, cases[i].pl);
        assert_memory_equal(o.user, cases[i].u, cases[i].ul);
        assert_memory_equal(o.pass, cases[i].p, cases[i].pl);
        assert_int_equal(o.user[o.ulen], '\0');
        assert_int_equal(o.pass[o.plen], '\0');
        up_free(&o);

        for (size_t k = 0; k < m.n; k++) {
            r = userpass(m.b, k, &o);
            up_free(&o);
            if (r != WM_SOCKS_MORE) {
                fail_msg("case %zu truncated at %zu: ret %d", i, k, r);
            }
        }

        msg_fill(&m, 0x01, 7);
        r = userpass(m.b, m.n, &o);
        up_free(&o);
        assert_int_equal(r, (int)(3 + cases[i].ul + cases[i].pl));
    }
}

static void test_userpass_bad_version(void **state)
{
    static const uint8_t bad[][6] = {
        {5, 1, 'a', 1, 'b'},
        {0, 1, 'a', 1, 'b'},
        {2, 1, 'a', 1, 'b'},
    };
    struct up_out o;

    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        assert_int_equal(userpass(bad[i], 5, &o), WM_SOCKS_EPROTO);
        up_free(&o);
    }
}

/* ---- requests ---- */

struct req_case {
    uint8_t b[32];
    size_t n;
    int ret;
    uint8_t cmd;
    uint8_t atyp;
    const char *host;
    uint16_t port;
};

static int request(const uint8_t *p, size_t n, uint8_t *cmd, struct wm_socks_addr *a)
{
    uint8_t *d = dup_exact(p, n);
    int r = wm_socks5_parse_request(d, n, cmd, a);

    free(d);
    return r;
}

static void check_request(size_t i, const uint8_t *b, size_t n, int ret, uint8_t cmd,
                          uint8_t atyp, const char *host, uint16_t port)
{
    struct wm_socks_addr a;
    uint8_t c = 0xee;
    int r;

    memset(&a, 0xee, sizeof(a));
    r = request(b, n, &c, &a);
    if (r != ret) {
        fail_msg("case %zu: ret %d want %d", i, r, ret);
    }
    if (r <= 0) {
        return;
    }
    assert_int_equal(c, cmd);
    assert_int_equal(a.atyp, atyp);
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);

    for (size_t k = 0; k < n; k++) {
        r = request(b, k, &c, &a);
        if (r != WM_SOCKS_MORE) {
            fail_msg("case %zu truncated at %zu: ret %d", i, k, r);
        }
    }

    uint8_t *more = malloc(n + 9);
    assert_non_null(more);
    memcpy(more, b, n);
    memset(more + n, 0x05, 9);
    r = request(more, n + 9, &c, &a);
    free(more);
    assert_int_equal(r, ret);
}

static void test_request_table(void **state)
{
    static const struct req_case cases[] = {
        /* IPv4 CONNECT */
        {{5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}, 10, 10, 1, 1, "127.0.0.1", 8080},
        {{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}, 10, 10, 1, 1, "0.0.0.0", 0},
        {{5, 1, 0, 1, 255, 255, 255, 255, 0xff, 0xff}, 10, 10, 1, 1, "255.255.255.255",
         65535},
        /* BIND, UDP ASSOCIATE and unknown commands pass through */
        {{5, 2, 0, 1, 10, 0, 0, 1, 0, 21}, 10, 10, 2, 1, "10.0.0.1", 21},
        {{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}, 10, 10, 3, 1, "0.0.0.0", 0},
        {{5, 0x7f, 0, 1, 1, 2, 3, 4, 0, 1}, 10, 10, 0x7f, 1, "1.2.3.4", 1},
        /* IPv6 */
        {{5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb},
         22, 22, 1, 4, "2001:db8::1", 443},
        {{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}, 22, 22, 1, 4,
         "::1", 80},
        {{5, 3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 80}, 22, 22, 3,
         4, "::ffff:1.2.3.4", 80},
        /* domain */
        {{5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0, 80}, 18,
         18, 1, 3, "example.com", 80},
        {{5, 1, 0, 3, 1, 'a', 0x12, 0x34}, 8, 8, 1, 3, "a", 0x1234},
        {{5, 1, 0, 3, 9, '1', '.', '2', '.', '3', '.', '4', '5', '6', 0, 1}, 16, 16, 1, 3,
         "1.2.3.456", 1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct req_case *c = &cases[i];
        check_request(i, c->b, c->n, c->ret, c->cmd, c->atyp, c->host, c->port);
    }
}

static void test_request_errors(void **state)
{
    static const struct {
        uint8_t b[24];
        size_t n;
        int ret;
    } cases[] = {
        {{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EPROTO},   /* version */
        {{0, 1, 0, 1, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 1, 1, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EPROTO},   /* RSV */
        {{5, 1, 0x80, 1, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 0, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EATYP},    /* ATYP */
        {{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EATYP},
        {{5, 1, 0, 5, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EATYP},
        {{5, 1, 0, 0xff, 1, 2, 3, 4, 0, 80}, 10, WM_SOCKS_EATYP},
        {{5, 1, 0, 7}, 4, WM_SOCKS_EATYP},                        /* known at 4 bytes */
        {{5, 1, 0, 3, 0, 0, 80}, 7, WM_SOCKS_EPROTO},             /* empty domain */
        {{5, 1, 0, 3, 0}, 5, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', '\n', 'b', 0, 80}, 10, WM_SOCKS_EPROTO}, /* controls */
        {{5, 1, 0, 3, 3, 'a', '\r', 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', '\0', 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', '\t', 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', 0x7f, 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 'a', 'b', 0x1b, 0, 80}, 10, WM_SOCKS_EPROTO},
        {{5, 1, 0, 3, 3, 0x01, 'a', 'b', 0, 80}, 10, WM_SOCKS_EPROTO},
    };
    struct wm_socks_addr a;
    uint8_t cmd;

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int r = request(cases[i].b, cases[i].n, &cmd, &a);
        if (r != cases[i].ret) {
            fail_msg("case %zu: ret %d want %d", i, r, cases[i].ret);
        }
    }
}

static void test_request_domain_lengths(void **state)
{
    struct msg m;
    char want[256];

    (void)state;
    for (size_t len = 1; len <= 255; len++) {
        m.n = 0;
        msg_put(&m, (const uint8_t[]){5, 1, 0, 3}, 4);
        msg_byte(&m, (uint8_t)len);
        msg_fill(&m, 'a' + (uint8_t)(len % 26), len);
        msg_put(&m, (const uint8_t[]){0x00, 0x50}, 2);
        memset(want, 'a' + (int)(len % 26), len);
        want[len] = '\0';
        check_request(len, m.b, m.n, (int)(4 + 1 + len + 2), 1, 3, want, 80);
    }
}

/* ---- replies ---- */

static void test_build_reply(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    uint8_t out[32];
    size_t n;

    (void)state;
    assert_int_equal(wm_addr_from_ip("10.0.0.1", 1080, &ss, &len), 0);
    memset(out, 0xee, sizeof(out));
    n = wm_socks5_build_reply(out, WM_SOCKS5_REP_OK, (struct sockaddr *)&ss);
    assert_int_equal(n, 10);
    assert_memory_equal(out, ((const uint8_t[]){5, 0, 0, 1, 10, 0, 0, 1, 0x04, 0x38}), 10);
    assert_int_equal(out[10], 0xee);

    assert_int_equal(wm_addr_from_ip("2001:db8::1", 443, &ss, &len), 0);
    memset(out, 0xee, sizeof(out));
    n = wm_socks5_build_reply(out, WM_SOCKS5_REP_OK, (struct sockaddr *)&ss);
    assert_int_equal(n, 22);
    assert_memory_equal(out,
                        ((const uint8_t[]){5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0,
                                           0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb}),
                        22);
    assert_int_equal(out[22], 0xee);

    memset(out, 0xee, sizeof(out));
    n = wm_socks5_build_reply(out, WM_SOCKS5_REP_HOST_UNREACH, NULL);
    assert_int_equal(n, 10);
    assert_memory_equal(out, ((const uint8_t[]){5, 4, 0, 1, 0, 0, 0, 0, 0, 0}), 10);
    assert_int_equal(out[10], 0xee);

    /* Unknown family: like NULL. */
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    n = wm_socks5_build_reply(out, WM_SOCKS5_REP_ATYP_UNSUPPORTED, (struct sockaddr *)&ss);
    assert_int_equal(n, 10);
    assert_memory_equal(out, ((const uint8_t[]){5, 8, 0, 1, 0, 0, 0, 0, 0, 0}), 10);

    /* Every reply code goes through untouched. */
    for (unsigned rep = 0; rep <= 0xff; rep++) {
        n = wm_socks5_build_reply(out, (uint8_t)rep, NULL);
        assert_int_equal(n, 10);
        assert_int_equal(out[1], rep);
    }
}

/* ---- UDP header ---- */

static int udp(const uint8_t *p, size_t n, struct wm_socks_addr *a)
{
    uint8_t *d = dup_exact(p, n);
    int r = wm_socks5_parse_udp(d, n, a);

    free(d);
    return r;
}

static void test_udp_parse_table(void **state)
{
    static const struct {
        uint8_t b[32];
        size_t n;
        int ret;
        uint8_t atyp;
        const char *host;
        uint16_t port;
    } cases[] = {
        {{0, 0, 0, 1, 1, 2, 3, 4, 0, 53}, 10, 10, 1, "1.2.3.4", 53},
        {{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x13, 0x88}, 22, 22, 4,
         "::1", 5000},
        {{0, 0, 0, 3, 3, 'd', 'n', 's', 0, 53}, 10, 10, 3, "dns", 53},
    };
    struct wm_socks_addr a;

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int r = udp(cases[i].b, cases[i].n, &a);
        assert_int_equal(r, cases[i].ret);
        assert_int_equal(a.atyp, cases[i].atyp);
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);

        /* payload after the header is not part of it */
        uint8_t dg[64];
        memcpy(dg, cases[i].b, cases[i].n);
        memset(dg + cases[i].n, 0, sizeof(dg) - cases[i].n);
        assert_int_equal(udp(dg, sizeof(dg), &a), cases[i].ret);

        /* a datagram is whole or broken: truncation is an error, never MORE */
        for (size_t k = 0; k < cases[i].n; k++) {
            r = udp(cases[i].b, k, &a);
            if (r != WM_SOCKS_EPROTO) {
                fail_msg("case %zu truncated at %zu: ret %d", i, k, r);
            }
        }
    }
}

static void test_udp_parse_errors(void **state)
{
    static const struct {
        uint8_t b[16];
        size_t n;
        int ret;
    } cases[] = {
        {{0, 0, 1, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EFRAG},
        {{0, 0, 0x7f, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EFRAG},
        {{0, 0, 0x80, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EFRAG}, /* end-of-sequence bit */
        {{0, 0, 0xff, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EFRAG},
        {{0, 1, 0, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EPROTO},  /* RSV */
        {{1, 0, 0, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EPROTO},
        {{0xff, 0xff, 0, 1, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EPROTO},
        {{0, 0, 0, 2, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EATYP},
        {{0, 0, 0, 0, 1, 2, 3, 4, 0, 53}, 10, WM_SOCKS_EATYP},
        {{0, 0, 0, 3, 0, 0, 53}, 7, WM_SOCKS_EPROTO},             /* empty domain */
        {{0, 0, 0, 3, 2, 'a', '\n', 0, 53}, 9, WM_SOCKS_EPROTO},
        {{0, 0, 0, 3, 20, 'a', 'b', 0, 53}, 9, WM_SOCKS_EPROTO},  /* length past end */
    };
    struct wm_socks_addr a;

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int r = udp(cases[i].b, cases[i].n, &a);
        if (r != cases[i].ret) {
            fail_msg("case %zu: ret %d want %d", i, r, cases[i].ret);
        }
    }
}

static void test_udp_build(void **state)
{
    static const struct {
        const char *ip;
        uint16_t port;
        size_t len;
        uint8_t want[22];
    } cases[] = {
        {"8.8.8.8", 53, 10, {0, 0, 0, 1, 8, 8, 8, 8, 0, 53}},
        {"2001:db8::2", 0x1234, 22, {0, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0, 0, 0, 2, 0x12, 0x34}},
    };
    struct sockaddr_storage ss;
    socklen_t len;
    uint8_t out[32];
    struct wm_socks_addr a;

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        assert_int_equal(wm_addr_from_ip(cases[i].ip, cases[i].port, &ss, &len), 0);
        memset(out, 0xee, sizeof(out));
        size_t n = wm_socks5_build_udp_header(out, (struct sockaddr *)&ss);
        assert_int_equal(n, cases[i].len);
        assert_memory_equal(out, cases[i].want, n);
        assert_int_equal(out[n], 0xee);
        /* and it parses back */
        assert_int_equal(udp(out, n, &a), (int)n);
        assert_string_equal(a.host, cases[i].ip);
        assert_int_equal(a.port, cases[i].port);
    }
}

/* ---- SOCKS4 / 4a ---- */

struct s4_out {
    uint8_t cmd;
    struct wm_socks_addr a;
    char *user; /* heap, exactly 256 bytes */
};

static int socks4(const uint8_t *p, size_t n, struct s4_out *o)
{
    uint8_t *d = dup_exact(p, n);
    int r;

    o->user = malloc(256);
    assert_non_null(o->user);
    memset(&o->a, 0xee, sizeof(o->a));
    r = wm_socks4_parse_request(d, n, &o->cmd, &o->a, o->user);
    free(d);
    return r;
}

/* Build VN CD PORT IP USERID\0 [HOST\0]. */
static void build_s4(struct msg *m, uint8_t cd, uint16_t port, const uint8_t ip[4],
                     const char *user, size_t ul, const char *host, size_t hl)
{
    m->n = 0;
    msg_byte(m, 4);
    msg_byte(m, cd);
    msg_byte(m, (uint8_t)(port >> 8));
    msg_byte(m, (uint8_t)port);
    msg_put(m, ip, 4);
    msg_put(m, user, ul);
    msg_byte(m, 0);
    if (host != NULL) {
        msg_put(m, host, hl);
        msg_byte(m, 0);
    }
}

static void check_s4(const struct msg *m, int ret, uint8_t cmd, uint8_t atyp, const char *host,
                     uint16_t port, const char *user)
{
    struct s4_out o;
    int r = socks4(m->b, m->n, &o);

    assert_int_equal(r, ret);
    assert_int_equal(o.cmd, cmd);
    assert_int_equal(o.a.atyp, atyp);
    assert_string_equal(o.a.host, host);
    assert_int_equal(o.a.port, port);
    assert_string_equal(o.user, user);
    free(o.user);

    for (size_t k = 0; k < m->n; k++) {
        r = socks4(m->b, k, &o);
        free(o.user);
        if (r != WM_SOCKS_MORE) {
            fail_msg("truncated at %zu of %zu: ret %d", k, m->n, r);
        }
    }

    struct msg more = *m;
    msg_fill(&more, 'z', 5);
    r = socks4(more.b, more.n, &o);
    free(o.user);
    assert_int_equal(r, ret);
}

static void test_socks4_table(void **state)
{
    static const uint8_t ip[4] = {93, 184, 216, 34};
    static const uint8_t ip0[4] = {0, 0, 0, 0};
    static const uint8_t ip4a[4] = {0, 0, 0, 1};
    static const uint8_t ip4a_ff[4] = {0, 0, 0, 0xff};
    static const uint8_t ip_low[4] = {0, 0, 1, 0}; /* not 4a: only the last byte set */
    struct msg m;

    (void)state;
    build_s4(&m, 1, 80, ip, "", 0, NULL, 0);
    check_s4(&m, 9, 1, WM_SOCKS5_ATYP_IPV4, "93.184.216.34", 80, "");

    build_s4(&m, 1, 443, ip, "bob", 3, NULL, 0);
    check_s4(&m, 12, 1, WM_SOCKS5_ATYP_IPV4, "93.184.216.34", 443, "bob");

    build_s4(&m, 2, 21, ip, "x", 1, NULL, 0); /* BIND passes through */
    check_s4(&m, 10, 2, WM_SOCKS5_ATYP_IPV4, "93.184.216.34", 21, "x");

    build_s4(&m, 1, 1, ip0, "", 0, NULL, 0);
    check_s4(&m, 9, 1, WM_SOCKS5_ATYP_IPV4, "0.0.0.0", 1, "");

    build_s4(&m, 1, 1, ip_low, "", 0, NULL, 0);
    check_s4(&m, 9, 1, WM_SOCKS5_ATYP_IPV4, "0.0.1.0", 1, "");

    /* 4a */
    build_s4(&m, 1, 80, ip4a, "", 0, "example.com", 11);
    check_s4(&m, 21, 1, WM_SOCKS5_ATYP_DOMAIN, "example.com", 80, "");

    build_s4(&m, 1, 8080, ip4a_ff, "alice", 5, "h", 1);
    check_s4(&m, 16, 1, WM_SOCKS5_ATYP_DOMAIN, "h", 8080, "alice");
}

static void test_socks4_long_fields(void **state)
{
    static const uint8_t ip[4] = {1, 2, 3, 4};
    static const uint8_t ip4a[4] = {0, 0, 0, 9};
    char user[256];
    char host[256];
    struct msg m;
    struct s4_out o;

    (void)state;
    memset(user, 'u', sizeof(user));
    memset(host, 'h', sizeof(host));

    /* USERID of 255 bytes fits exactly. */
    build_s4(&m, 1, 80, ip, user, 255, NULL, 0);
    assert_int_equal(socks4(m.b, m.n, &o), 8 + 255 + 1);
    assert_int_equal(strlen(o.user), 255);
    free(o.user);

    /* No NUL yet: MORE up to 255 bytes of USERID, error past that. */
    m.n = 8 + 255;
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_MORE);
    free(o.user);
    m.b[m.n++] = 'u';
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);
    build_s4(&m, 1, 80, ip, user, 256, NULL, 0); /* 256 bytes then NUL */
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);
    msg_fill(&m, 'u', 100);
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);

    /* 4a host name of 255 bytes, with a 255-byte USERID. */
    build_s4(&m, 1, 80, ip4a, user, 255, host, 255);
    assert_int_equal(socks4(m.b, m.n, &o), 8 + 256 + 256);
    assert_int_equal(strlen(o.a.host), 255);
    assert_int_equal(strlen(o.user), 255);
    free(o.user);

    /* Host name without NUL: MORE up to 255 bytes, error past that. */
    m.n -= 1;
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_MORE);
    free(o.user);
    m.b[m.n++] = 'h';
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);
    build_s4(&m, 1, 80, ip4a, "", 0, host, 256);
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);
}

static void test_socks4_errors(void **state)
{
    static const uint8_t ip4a[4] = {0, 0, 0, 1};
    static const uint8_t ip[4] = {1, 2, 3, 4};
    static const char *const bad_hosts[] = {"a b", "a\tb", "a\rb", "a\nb", "\x7f", "a\x01"};
    struct msg m;
    struct s4_out o;

    (void)state;
    build_s4(&m, 1, 80, ip, "", 0, NULL, 0);
    m.b[0] = 5;
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);
    m.b[0] = 0;
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);

    /* 4a with an empty host name */
    build_s4(&m, 1, 80, ip4a, "u", 1, "", 0);
    assert_int_equal(socks4(m.b, m.n, &o), WM_SOCKS_EPROTO);
    free(o.user);

    for (size_t i = 0; i < NELEM(bad_hosts); i++) {
        build_s4(&m, 1, 80, ip4a, "", 0, bad_hosts[i], strlen(bad_hosts[i]));
        if (socks4(m.b, m.n, &o) != WM_SOCKS_EPROTO) {
            fail_msg("host \"%s\" accepted", bad_hosts[i]);
        }
        free(o.user);
    }
}

static void test_socks4_reply(void **state)
{
    uint8_t out[16];

    (void)state;
    memset(out, 0xee, sizeof(out));
    assert_int_equal(wm_socks4_build_reply(out, WM_SOCKS4_REP_GRANTED), 8);
    assert_memory_equal(out, ((const uint8_t[]){0, 0x5a, 0, 0, 0, 0, 0, 0}), 8);
    assert_int_equal(out[8], 0xee);
    assert_int_equal(wm_socks4_build_reply(out, WM_SOCKS4_REP_REJECTED), 8);
    assert_memory_equal(out, ((const uint8_t[]){0, 0x5b, 0, 0, 0, 0, 0, 0}), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_table),
        cmocka_unit_test(test_greeting_255_methods),
        cmocka_unit_test(test_userpass_table),
        cmocka_unit_test(test_userpass_bad_version),
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_request_domain_lengths),
        cmocka_unit_test(test_build_reply),
        cmocka_unit_test(test_udp_parse_table),
        cmocka_unit_test(test_udp_parse_errors),
        cmocka_unit_test(test_udp_build),
        cmocka_unit_test(test_socks4_table),
        cmocka_unit_test(test_socks4_long_fields),
        cmocka_unit_test(test_socks4_errors),
        cmocka_unit_test(test_socks4_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
