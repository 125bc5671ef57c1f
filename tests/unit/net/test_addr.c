/*
 * tests/unit/net/test_addr.c - net/addr.h: "host:port" splitting, IP
 * literals, listen addresses, formatting and comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/util.h"
#include "net/addr.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- wm_addr_split ---- */

struct split_case {
    const char *in;
    int ret;
    const char *host;
    uint16_t port;
};

static void test_split_table(void **state)
{
    static const struct split_case cases[] = {
        {"127.0.0.1:80", 0, "127.0.0.1", 80},
        {"example.com:443", 0, "example.com", 443},
        {"a:1", 0, "a", 1},
        {"localhost:65535", 0, "localhost", 65535},
        {"host:08080", 0, "host", 8080},
        {"[::1]:8080", 0, "::1", 8080},
        {"[2001:db8::1]:443", 0, "2001:db8::1", 443},
        {"[::ffff:1.2.3.4]:1", 0, "::ffff:1.2.3.4", 1},
        {"*:80", 0, "*", 80},
        /* bare IPv6 needs brackets */
        {"::1:80", -1, NULL, 0},
        {"2001:db8::1:443", -1, NULL, 0},
        /* brackets are for IPv6 only */
        {"[1.2.3.4]:80", -1, NULL, 0},
        {"[host]:80", -1, NULL, 0},
        {"[::1]", -1, NULL, 0},
        {"[::1]:", -1, NULL, 0},
        {"[::1]80", -1, NULL, 0},
        {"[::1", -1, NULL, 0},
        {"[::1:80", -1, NULL, 0},
        {"[]:80", -1, NULL, 0},
        /* port bounds and form */
        {"host:0", -1, NULL, 0},
        {"host:65536", -1, NULL, 0},
        {"host:99999999999999999999999", -1, NULL, 0},
        {"host:", -1, NULL, 0},
        {"host", -1, NULL, 0},
        {"host:-1", -1, NULL, 0},
        {"host:+80", -1, NULL, 0},
        {"host:80 ", -1, NULL, 0},
        {"host:8o", -1, NULL, 0},
        {"host:0x50", -1, NULL, 0},
        /* host */
        {":80", -1, NULL, 0},
        {"", -1, NULL, 0},
        {"ho st:80", -1, NULL, 0},
        {" host:80", -1, NULL, 0},
        {"host\t:80", -1, NULL, 0},
        {"a/b:80", -1, NULL, 0},
        {"user@host:80", -1, NULL, 0},
        {"ho]st:80", -1, NULL, 0},
        {"h\x7fst:80", -1, NULL, 0},
        {"h\xc3\xa9:80", -1, NULL, 0},
        {"h\x01:80", -1, NULL, 0},
    };
    char host[WM_HOST_MAX];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct split_case *c = &cases[i];
        uint16_t port = 7;
        memset(host, 0, sizeof(host));
        int r = wm_addr_split(c->in, strlen(c->in), host, sizeof(host), &port);
        if (r != c->ret) {
            fail_msg("case %zu (%s): ret %d want %d", i, c->in, r, c->ret);
        }
        if (r == 0) {
            assert_string_equal(host, c->host);
            assert_int_equal(port, c->port);
        }
    }
}

/* n bounds the input; the string needs no NUL. */
static void test_split_length(void **state)
{
    char host[64];
    uint16_t port;
    const char raw[] = {'h', ':', '8', '0', '8', '0'};

    (void)state;
    assert_int_equal(wm_addr_split(raw, sizeof(raw), host, sizeof(host), &port), 0);
    assert_string_equal(host, "h");
    assert_int_equal(port, 8080);
    assert_int_equal(wm_addr_split("h:8080", 4, host, sizeof(host), &port), 0);
    assert_int_equal(port, 80);
    assert_int_equal(wm_addr_split("h:8080", 2, host, sizeof(host), &port), -1);
    assert_int_equal(wm_addr_split("[::1]:80", 5, host, sizeof(host), &port), -1);
    /* Embedded NUL in the host is a control character. */
    assert_int_equal(wm_addr_split("a\0b:80", 6, host, sizeof(host), &port), -1);
}

/* Host length against the caller's capacity and WM_HOST_MAX. */
static void test_split_host_length(void **state)
{
    char in[WM_HOST_MAX + 16];
    char host[WM_HOST_MAX];
    char small[8];
    uint16_t port;

    (void)state;
    /* Longest host that fits: WM_HOST_MAX - 1 bytes + NUL. */
    memset(in, 'a', WM_HOST_MAX - 1);
    memcpy(in + WM_HOST_MAX - 1, ":80", 3);
    assert_int_equal(wm_addr_split(in, WM_HOST_MAX - 1 + 3, host, sizeof(host), &port), 0);
    assert_int_equal(strlen(host), WM_HOST_MAX - 1);
    /* One more byte is refused, even with a larger buffer. */
    memset(in, 'a', WM_HOST_MAX);
    memcpy(in + WM_HOST_MAX, ":80", 3);
    char big[WM_HOST_MAX * 2];
    assert_int_equal(wm_addr_split(in, WM_HOST_MAX + 3, big, sizeof(big), &port), -1);

    /* Small caller buffer: 7 bytes + NUL fit, 8 do not. */
    memset(small, 'x', sizeof(small));
    assert_int_equal(wm_addr_split("abcdefg:1", 9, small, sizeof(small), &port), 0);
    assert_string_equal(small, "abcdefg");
    memset(small, 'x', sizeof(small));
    assert_int_equal(wm_addr_split("abcdefgh:1", 10, small, sizeof(small), &port), -1);
    assert_int_equal(wm_addr_split("[::1]:1", 7, small, 3, &port), -1);
    assert_int_equal(wm_addr_split("[::1]:1", 7, small, 4, &port), 0);
    assert_string_equal(small, "::1");
}

/* ---- wm_addr_from_ip ---- */

static void test_from_ip(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    static const unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 0, 1};

    (void)state;
    assert_int_equal(wm_addr_from_ip("10.1.2.3", 8080, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(s4->sin_port), 8080);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x0a010203);

    assert_int_equal(wm_addr_from_ip("2001:db8::1", 443, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(s6->sin6_port), 443);
    assert_memory_equal(s6->sin6_addr.s6_addr, v6, 16);

    assert_int_equal(wm_addr_from_ip("0.0.0.0", 0, &ss, &len), 0);
    assert_int_equal(wm_addr_from_ip("::", 1, &ss, &len), 0);

    static const char *const bad[] = {
        "", "localhost", "example.com", "[::1]", "1.2.3", "1.2.3.4.5", "256.1.1.1",
        "1.2.3.4 ", " 1.2.3.4", "::1%lo", "1.2.3.4:80", ":::", "0x7f.0.0.1",
    };
    for (size_t i = 0; i < NELEM(bad); i++) {
        if (wm_addr_from_ip(bad[i], 80, &ss, &len) != -1) {
            fail_msg("\"%s\" accepted as an IP literal", bad[i]);
        }
    }
}

/* ---- wm_addr_parse_listen ---- */

static void test_parse_listen(void **state)
{
    static const struct {
        const char *in;
        int ret;
        int family;
        const char *ip;
        uint16_t port;
    } cases[] = {
        {"127.0.0.1:8080", 0, AF_INET, "127.0.0.1", 8080},
        {"0.0.0.0:1", 0, AF_INET, "0.0.0.0", 1},
        {"localhost:80", 0, AF_INET, "127.0.0.1", 80},
        {"*:3128", 0, AF_INET, "0.0.0.0", 3128},
        {"[::1]:443", 0, AF_INET6, "::1", 443},
        {"[::]:80", 0, AF_INET6, "::", 80},
        {"example.com:80", -1, 0, NULL, 0},
        {"LOCALHOST:80", -1, 0, NULL, 0}, /* only the exact name */
        {"localhost.:80", -1, 0, NULL, 0},
        {"localhost", -1, 0, NULL, 0},
        {"127.0.0.1", -1, 0, NULL, 0},
        {"127.0.0.1:0", -1, 0, NULL, 0},
        {"127.0.0.1:65536", -1, 0, NULL, 0},
        {"::1:80", -1, 0, NULL, 0},
        {"", -1, 0, NULL, 0},
        {"**:80", -1, 0, NULL, 0},
    };
    struct sockaddr_storage ss;
    socklen_t len;
    char ip[INET6_ADDRSTRLEN];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        int r = wm_addr_parse_listen(cases[i].in, &ss, &len);
        if (r != cases[i].ret) {
            fail_msg("case %zu (%s): ret %d want %d", i, cases[i].in, r, cases[i].ret);
        }
        if (r != 0) {
            continue;
        }
        assert_int_equal(ss.ss_family, cases[i].family);
        assert_string_equal(wm_addr_format_ip((struct sockaddr *)&ss, ip, sizeof(ip)),
                            cases[i].ip);
        assert_int_equal(wm_addr_port((struct sockaddr *)&ss), cases[i].port);
    }
}

/* ---- wm_addr_format / format_ip / port ---- */

static void test_format(void **state)
{
    static const struct {
        const char *ip;
        uint16_t port;
        const char *want;
    } cases[] = {
        {"1.2.3.4", 80, "1.2.3.4:80"},
        {"0.0.0.0", 0, "0.0.0.0:0"},
        {"255.255.255.255", 65535, "255.255.255.255:65535"},
        {"10.0.100.9", 1, "10.0.100.9:1"},
        {"99.199.9.250", 2, "99.199.9.250:2"},
        {"::1", 80, "[::1]:80"},
        {"::", 0, "[::]:0"},
        {"2001:db8::1", 443, "[2001:db8::1]:443"},
        {"::ffff:1.2.3.4", 8080, "[::ffff:1.2.3.4]:8080"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
    };
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[WM_ADDR_STR_MAX];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        assert_int_equal(wm_addr_from_ip(cases[i].ip, cases[i].port, &ss, &len), 0);
        const char *r = wm_addr_format((struct sockaddr *)&ss, buf, sizeof(buf));
        assert_ptr_equal(r, buf);
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(wm_addr_port((struct sockaddr *)&ss), cases[i].port);
    }

    /* Truncated into a small buffer, still NUL-terminated. */
    assert_int_equal(wm_addr_from_ip("2001:db8::1", 443, &ss, &len), 0);
    memset(buf, 'x', sizeof(buf));
    wm_addr_format((struct sockaddr *)&ss, buf, 6);
    assert_string_equal(buf, "[2001");
    assert_int_equal(buf[6], 'x');

    /* Unknown family. */
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(wm_addr_port((struct sockaddr *)&ss), 0);
    assert_string_equal(wm_addr_format_ip((struct sockaddr *)&ss, buf, sizeof(buf)), "?");
}

/* ---- wm_addr_same_ip / wm_addr_equal ---- */

static void test_same_ip(void **state)
{
    static const struct {
        const char *a;
        uint16_t pa;
        const char *b;
        uint16_t pb;
        int same_ip;
        int equal;
    } cases[] = {
        {"1.2.3.4", 1, "1.2.3.4", 1, 1, 1},
        {"1.2.3.4", 1, "1.2.3.4", 2, 1, 0},
        {"1.2.3.4", 1, "1.2.3.5", 1, 0, 0},
        {"::1", 80, "::1", 80, 1, 1},
        {"::1", 80, "::1", 81, 1, 0},
        {"::1", 80, "::2", 80, 0, 0},
        {"::1", 80, "127.0.0.1", 80, 0, 0},
        /* IPv4-mapped IPv6 equals its IPv4, both ways */
        {"::ffff:1.2.3.4", 5, "1.2.3.4", 6, 1, 0},
        {"1.2.3.4", 5, "::ffff:1.2.3.4", 9, 1, 0},
        {"::ffff:1.2.3.4", 5, "::ffff:1.2.3.4", 5, 1, 1},
        {"::ffff:1.2.3.5", 5, "1.2.3.4", 5, 0, 0},
        /* IPv4-compatible (deprecated) and NAT64 forms are not mapped */
        {"::1.2.3.4", 5, "1.2.3.4", 5, 0, 0},
        {"64:ff9b::1.2.3.4", 5, "1.2.3.4", 5, 0, 0},
        {"::fffe:1.2.3.4", 5, "1.2.3.4", 5, 0, 0},
        {"0.0.0.0", 0, "::", 0, 0, 0},
    };
    struct sockaddr_storage a;
    struct sockaddr_storage b;
    socklen_t len;

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        assert_int_equal(wm_addr_from_ip(cases[i].a, cases[i].pa, &a, &len), 0);
        assert_int_equal(wm_addr_from_ip(cases[i].b, cases[i].pb, &b, &len), 0);
        int s = wm_addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b);
        int e = wm_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b);
        if ((s != 0) != cases[i].same_ip || (e != 0) != cases[i].equal) {
            fail_msg("case %zu (%s %s): same_ip %d equal %d", i, cases[i].a, cases[i].b, s, e);
        }
    }

    /* Unknown families never compare equal, not even to themselves. */
    memset(&a, 0, sizeof(a));
    a.ss_family = AF_UNIX;
    assert_false(wm_addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&a));
    assert_int_equal(wm_addr_from_ip("1.2.3.4", 1, &b, &len), 0);
    assert_false(wm_addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b));
    assert_false(wm_addr_same_ip((struct sockaddr *)&b, (struct sockaddr *)&a));
}

/* The address classes the self-dial check and the destination defaults use. */
static void test_ip_class(void **state)
{
    static const struct {
        const char *ip;
        int cls;
    } cases[] = {
        {"0.0.0.0", WM_ADDR_UNSPECIFIED},     {"::", WM_ADDR_UNSPECIFIED},
        {"127.0.0.1", WM_ADDR_LOOPBACK},      {"127.255.0.9", WM_ADDR_LOOPBACK},
        {"::1", WM_ADDR_LOOPBACK},            {"::ffff:127.0.0.1", WM_ADDR_LOOPBACK},
        {"::ffff:0.0.0.0", WM_ADDR_UNSPECIFIED}, {"169.254.169.254", WM_ADDR_LINK_LOCAL},
        {"fe80::1", WM_ADDR_LINK_LOCAL},      {"febf::1", WM_ADDR_LINK_LOCAL},
        {"fec0::1", WM_ADDR_OTHER},           {"10.0.0.1", WM_ADDR_OTHER},
        {"128.0.0.1", WM_ADDR_OTHER},         {"::2", WM_ADDR_OTHER},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        assert_int_equal(wm_addr_from_ip(cases[i].ip, 80, &ss, &len), 0);
        if (wm_addr_ip_class((struct sockaddr *)&ss) != cases[i].cls) {
            print_error("%s\n", cases[i].ip);
        }
        assert_int_equal(wm_addr_ip_class((struct sockaddr *)&ss), cases[i].cls);
    }
}

static void test_addr_list(void **state)
{
    char out[8][WM_ADDR_STR_MAX];
    size_t n = 0;
    struct wm_err e;

    (void)state;
    assert_int_equal(wm_addr_list_expand("127.0.0.1:80 [::1]:81,127.0.0.1:8869-:8871", out, &n,
                                         8, &e), 0);
    assert_int_equal(n, 5);
    assert_string_equal(out[0], "127.0.0.1:80");
    assert_string_equal(out[1], "[::1]:81");
    assert_string_equal(out[2], "127.0.0.1:8869");
    assert_string_equal(out[4], "127.0.0.1:8871");
    assert_int_equal(wm_addr_list_expand(":90-91", out, &n, 8, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(out[0], "0.0.0.0:90");
    assert_string_equal(out[1], "0.0.0.0:91");
    assert_int_equal(wm_addr_list_expand("", out, &n, 8, &e), 0);
    assert_int_equal(n, 0);
    assert_int_equal(wm_addr_list_expand("127.0.0.1:9-:5", out, &n, 8, &e), -1);
    assert_non_null(strstr(e.msg, "ends before"));
    assert_int_equal(wm_addr_list_expand("example.com:80", out, &n, 8, &e), -1);
    assert_int_equal(wm_addr_list_expand("127.0.0.1:1-:100", out, &n, 8, &e), -1);
    assert_non_null(strstr(e.msg, "more than 8"));
    assert_int_equal(wm_addr_list_expand("127.0.0.1:1-:100", NULL, &n, 0, &e), 0);
    assert_int_equal(n, 100);
    assert_int_equal(wm_addr_list_expand("127.0.0.1:1-:65535", NULL, &n, 0, &e), -1);
}

/* Equal addresses hash alike; a different port or address (almost always)
 * not; only len bytes count. */
/* Names the resolver may get: no zone, at most 253 bytes (254 with the
 * root's dot), labels of at most 63 bytes. */
static void test_name_resolvable(void **state)
{
    char name[WM_HOST_MAX];
    size_t i;

    (void)state;
    assert_true(wm_addr_name_resolvable("example.com"));
    assert_true(wm_addr_name_resolvable("example.com."));
    assert_false(wm_addr_name_resolvable(""));
    assert_false(wm_addr_name_resolvable("fe80::1%eth0"));
    for (i = 0; i < 253; i++) {
        name[i] = i % 2 ? '.' : 'a';
    }
    name[253] = '\0';
    assert_true(wm_addr_name_resolvable(name)); /* 253 bytes */
    name[253] = '.';
    name[254] = '\0';
    assert_true(wm_addr_name_resolvable(name)); /* 254 with the root's dot */
    name[253] = 'a';
    assert_false(wm_addr_name_resolvable(name)); /* 254 */
    memset(name, 'b', 63);
    snprintf(name + 63, sizeof(name) - 63, ".test");
    assert_true(wm_addr_name_resolvable(name));
    memset(name, 'b', 64);
    snprintf(name + 64, sizeof(name) - 64, ".test");
    assert_false(wm_addr_name_resolvable(name));
}

static void test_hash(void **state)
{
    struct sockaddr_storage a, b;
    socklen_t len;

    (void)state;
    assert_int_equal(wm_addr_parse_listen("127.0.0.1:5000", &a, &len), 0);
    memcpy(&b, &a, sizeof(a));
    memset((char *)&b + len, 0x5a, sizeof(b) - len); /* beyond len: ignored */
    assert_true(wm_addr_hash(&a, len) == wm_addr_hash(&b, len));
    assert_int_equal(wm_addr_parse_listen("127.0.0.1:5001", &b, &len), 0);
    assert_true(wm_addr_hash(&a, len) != wm_addr_hash(&b, len));
    assert_int_equal(wm_addr_parse_listen("[::1]:5000", &b, &len), 0);
    assert_true(wm_addr_hash(&a, sizeof(struct sockaddr_in)) != wm_addr_hash(&b, len));
}

/* UDP session tables (stream udp, tunnel udp ports) chain peers by this
 * hash: a sender picks its source port (and address, within its IPv6 /64
 * or by spoofing), so peers that share a chain under plain FNV-1a must not
 * share one here, or every datagram walks the whole table. */
static void test_hash_chosen_peers_spread(void **state)
{
    enum { NB = 2048, WANT = 256 };
    static unsigned count[NB];
    struct sockaddr_storage ss;
    socklen_t len = sizeof(struct sockaddr_in);
    int got = 0;
    unsigned most = 0;

    (void)state;
    memset(&ss, 0, sizeof(ss));
    for (uint32_t ip = 0; got < WANT && ip < (1u << 16); ip++) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(0x7f000000u | ip);
        for (uint32_t port = 1; got < WANT && port < 65536; port++) {
            sin->sin_port = htons((uint16_t)port);
            if (wm_fnv1a(WM_FNV_INIT, &ss, len) % NB != 0) {
                continue;
            }
            got++;
            unsigned *c = &count[wm_addr_hash(&ss, len) % NB];
            *c += 1;
            most = *c > most ? *c : most;
        }
    }
    assert_int_equal(got, WANT);
    assert_true(most < 8); /* not all WANT in one chain */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_class),
        cmocka_unit_test(test_split_table),
        cmocka_unit_test(test_split_length),
        cmocka_unit_test(test_split_host_length),
        cmocka_unit_test(test_from_ip),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_same_ip),
        cmocka_unit_test(test_addr_list),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_hash_chosen_peers_spread),
        cmocka_unit_test(test_name_resolvable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
