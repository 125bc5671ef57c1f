/*
 * tests/unit/net/test_proxyproto.c - net/proxyproto.h: building v1/v2
 * headers for TCP4, TCP6 and UNKNOWN, parsing them back, and the parser's
 * answers to truncated, oversized and malformed input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/addr.h"
#include "net/proxyproto.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void sa(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
    socklen_t len;
    assert_int_equal(wm_addr_from_ip(ip, port, ss, &len), 0);
}

static void assert_addr(const struct sockaddr_storage *ss, const char *want)
{
    char buf[WM_ADDR_STR_MAX];
    assert_string_equal(wm_addr_format((const struct sockaddr *)ss, buf, sizeof(buf)), want);
}

/* ---- building ---- */

static void test_build_v1(void **state)
{
    static const struct {
        const char *src;
        uint16_t sport;
        const char *dst;
        uint16_t dport;
        const char *want;
    } cases[] = {
        {"127.0.0.1", 40000, "10.0.0.2", 8080, "PROXY TCP4 127.0.0.1 10.0.0.2 40000 8080\r\n"},
        {"::1", 1, "2001:db8::5", 443, "PROXY TCP6 ::1 2001:db8::5 1 443\r\n"},
        /* a v4-mapped side counts as IPv4 */
        {"::ffff:192.0.2.1", 5, "192.0.2.9", 80, "PROXY TCP4 192.0.2.1 192.0.2.9 5 80\r\n"},
        /* mixed families: TCP6 with the IPv4 side mapped */
        {"192.0.2.1", 5, "::1", 80, "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 80\r\n"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
         "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n"},
    };
    uint8_t out[WM_PP_BUILD_MAX];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        struct sockaddr_storage s, d;
        sa(cases[i].src, cases[i].sport, &s);
        sa(cases[i].dst, cases[i].dport, &d);
        size_t n = wm_pp_build(WM_PP_V1, (struct sockaddr *)&s, (struct sockaddr *)&d, out,
                               sizeof(out));
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
        assert_true(n <= WM_PP_V1_MAX);
    }
    /* unknown endpoints */
    struct sockaddr_storage s;
    sa("127.0.0.1", 1, &s);
    size_t n = wm_pp_build(WM_PP_V1, NULL, NULL, out, sizeof(out));
    assert_int_equal(n, 15);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    n = wm_pp_build(WM_PP_V1, NULL, (struct sockaddr *)&s, out, sizeof(out));
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    /* a known source, an unknown destination: the unspecified address */
    n = wm_pp_build(WM_PP_V1, (struct sockaddr *)&s, NULL, out, sizeof(out));
    assert_int_equal(n, strlen("PROXY TCP4 127.0.0.1 0.0.0.0 1 0\r\n"));
    assert_memory_equal(out, "PROXY TCP4 127.0.0.1 0.0.0.0 1 0\r\n", n);
    struct sockaddr_storage s6;
    sa("::1", 2, &s6);
    n = wm_pp_build(WM_PP_V1, (struct sockaddr *)&s6, NULL, out, sizeof(out));
    assert_memory_equal(out, "PROXY TCP6 ::1 :: 2 0\r\n", n);
    /* too small a buffer, bad version */
    assert_int_equal(wm_pp_build(WM_PP_V1, (struct sockaddr *)&s, (struct sockaddr *)&s, out, 20),
                     0);
    assert_int_equal(wm_pp_build(3, (struct sockaddr *)&s, (struct sockaddr *)&s, out, 100), 0);
    assert_int_equal(wm_pp_build(WM_PP_OFF, NULL, NULL, out, sizeof(out)), 0);
}

static void test_build_v2(void **state)
{
    uint8_t out[WM_PP_BUILD_MAX];
    struct sockaddr_storage s, d;

    (void)state;
    sa("127.0.0.1", 0x1234, &s);
    sa("10.1.2.3", 80, &d);
    size_t n = wm_pp_build(WM_PP_V2, (struct sockaddr *)&s, (struct sockaddr *)&d, out,
                           sizeof(out));
    static const uint8_t want4[] = {0x21, 0x11, 0x00, 0x0c, 127, 0, 0, 1, 10, 1, 2, 3,
                                    0x12, 0x34, 0x00, 0x50};
    assert_int_equal(n, 28);
    assert_memory_equal(out, SIG, 12);
    assert_memory_equal(out + 12, want4, sizeof(want4));

    sa("2001:db8::1", 65535, &s);
    sa("::1", 443, &d);
    n = wm_pp_build(WM_PP_V2, (struct sockaddr *)&s, (struct sockaddr *)&d, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_int_equal(out[12], 0x21);
    assert_int_equal(out[13], 0x21);
    assert_int_equal(out[15], 36);
    assert_int_equal(out[16], 0x20);
    assert_int_equal(out[17], 0x01);
    assert_int_equal(out[16 + 31], 1);
    assert_int_equal(out[16 + 32], 0xff);
    assert_int_equal(out[16 + 33], 0xff);
    assert_int_equal(out[16 + 34], 0x01);
    assert_int_equal(out[16 + 35], 0xbb);

    n = wm_pp_build(WM_PP_V2, (struct sockaddr *)&d, NULL, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_int_equal(out[13], 0x21);
    static const uint8_t zero[18] = {0};
    assert_memory_equal(out + 32, zero, 16);
    n = wm_pp_build(WM_PP_V2, NULL, (struct sockaddr *)&d, out, sizeof(out));
    assert_int_equal(n, 16);
    assert_int_equal(out[12], 0x21);
    assert_int_equal(out[13], 0x00);
    assert_int_equal(out[15], 0);
    assert_int_equal(wm_pp_build(WM_PP_V2, (struct sockaddr *)&s, (struct sockaddr *)&d, out, 51),
                     0);
}

/* ---- round trips and partial input ---- */

static void roundtrip(int version, const char *src, uint16_t sport, const char *dst,
                      uint16_t dport, const char *wsrc, const char *wdst)
{
    uint8_t out[WM_PP_BUILD_MAX + 4];
    struct sockaddr_storage s, d;
    struct wm_pp_info info;
    const char *why;

    sa(src, sport, &s);
    sa(dst, dport, &d);
    size_t n = wm_pp_build(version, (struct sockaddr *)&s, (struct sockaddr *)&d, out,
                           WM_PP_BUILD_MAX);
    assert_true(n > 0);
    memcpy(out + n, "GET ", 4); /* the payload after the header is left alone */
    assert_int_equal(wm_pp_parse(out, n + 4, &info, &why), (int)n);
    assert_int_equal(info.version, version);
    assert_true(info.known);
    assert_addr(&info.src, wsrc);
    assert_addr(&info.dst, wdst);
    /* every prefix asks for more */
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(wm_pp_parse(out, k, &info, &why), 0);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    for (int v = WM_PP_V1; v <= WM_PP_V2; v++) {
        roundtrip(v, "127.0.0.1", 51000, "127.0.0.2", 9000, "127.0.0.1:51000", "127.0.0.2:9000");
        roundtrip(v, "::1", 1, "fe80::1", 0, "[::1]:1", "[fe80::1]:0");
        roundtrip(v, "192.0.2.1", 7, "::1", 8, "[::ffff:192.0.2.1]:7", "[::1]:8");
    }
}

static void test_parse_unknown_local(void **state)
{
    struct wm_pp_info info;
    const char *why;
    uint8_t b[64];

    (void)state;
    static const char *v1ok[] = {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:: 1.2.3.4 1 2\r\n",
                                 "PROXY UNKNOWN whatever comes\r\n"};
    for (size_t i = 0; i < NELEM(v1ok); i++) {
        int n = (int)strlen(v1ok[i]);
        assert_int_equal(wm_pp_parse((const uint8_t *)v1ok[i], (size_t)n, &info, &why), n);
        assert_int_equal(info.version, 1);
        assert_false(info.known);
    }
    /* v2 LOCAL with TCP4 addresses and a TLV: addresses are ignored */
    memcpy(b, SIG, 12);
    static const uint8_t local[] = {0x20, 0x11, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8,
                                    0, 1, 0, 2, 0x04, 0x00, 0x01, 0xaa};
    memcpy(b + 12, local, sizeof(local));
    assert_int_equal(wm_pp_parse(b, 32, &info, &why), 32);
    assert_int_equal(info.version, 2);
    assert_false(info.known);
    /* v2 PROXY over UDP and unix: valid, addresses not used */
    static const uint8_t udp[] = {0x21, 0x12, 0x00, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    memcpy(b + 12, udp, sizeof(udp));
    assert_int_equal(wm_pp_parse(b, 28, &info, &why), 28);
    assert_false(info.known);
    /* v2 PROXY UNSPEC, TLVs only (PP2_TYPE_NOOP padding) */
    static const uint8_t unspec[] = {0x21, 0x00, 0x00, 0x05, 0x04, 0x00, 0x02, 0, 0};
    memcpy(b + 12, unspec, sizeof(unspec));
    assert_int_equal(wm_pp_parse(b, 21, &info, &why), 21);
    assert_false(info.known);
}

/* ---- malformed ---- */

static void test_parse_v1_malformed(void **state)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY\r\n",
        "PROXY \r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "PROXY TCP6 ::1 ::1 1 999999\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
    };
    struct wm_pp_info info;
    const char *why;

    (void)state;
    for (size_t i = 0; i < NELEM(bad); i++) {
        why = NULL;
        int r = wm_pp_parse((const uint8_t *)bad[i], strlen(bad[i]), &info, &why);
        if (r != -1) {
            print_error("case %zu (%s) gave %d\n", i, bad[i], r);
        }
        assert_int_equal(r, -1);
        assert_non_null(why);
    }
    /* non-ASCII byte, NUL */
    assert_int_equal(wm_pp_parse((const uint8_t *)"PROXY T\x80", 8, &info, &why), -1);
    assert_int_equal(wm_pp_parse((const uint8_t *)"PROXY T\0CP4", 11, &info, &why), -1);
    /* oversized: 107 bytes without CRLF, and a 108-byte line */
    char big[200];
    memset(big, 'A', sizeof(big));
    memcpy(big, "PROXY UNKNOWN ", 14);
    assert_int_equal(wm_pp_parse((const uint8_t *)big, 105, &info, &why), 0);
    assert_int_equal(wm_pp_parse((const uint8_t *)big, 106, &info, &why), -1);
    assert_int_equal(wm_pp_parse((const uint8_t *)big, sizeof(big), &info, &why), -1);
    memcpy(big + 106, "\r\n", 2);
    assert_int_equal(wm_pp_parse((const uint8_t *)big, 108, &info, &why), -1);
    memcpy(big + 105, "\r\n", 2);
    assert_int_equal(wm_pp_parse((const uint8_t *)big, 107, &info, &why), 107);
}

static void test_parse_v2_malformed(void **state)
{
    static const struct {
        uint8_t b[24];
        size_t n; /* bytes after the signature */
        int want;
    } cases[] = {
        {{0x11, 0x11, 0, 12}, 16, -1},            /* version 1 */
        {{0x31, 0x11, 0, 12}, 16, -1},            /* version 3 */
        {{0x22, 0x11, 0, 12}, 16, -1},            /* command 2 */
        {{0x21, 0x13, 0, 12}, 16, -1},            /* transport 3 */
        {{0x21, 0x41, 0, 12}, 16, -1},            /* family 4 */
        {{0x21, 0x11, 0, 11}, 15, -1},            /* shorter than TCP4 addresses */
        {{0x21, 0x21, 0, 12}, 16, -1},            /* shorter than TCP6 addresses */
        {{0x21, 0x31, 0, 200}, 4, -1},            /* shorter than unix addresses */
        {{0x21, 0x11, 0x10, 0x01}, 4, -1},        /* over WM_PP_V2_BODY_MAX */
        {{0x21, 0x11, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x01, 0x00}, 18, -1},
        {{0x21, 0x11, 0, 15, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x01, 0x00, 0x02}, 19, -1},
        {{0x21, 0x11, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x01, 0x00, 0x02, 0}, 20, -1},
        {{0x21, 0x11, 0, 17, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x01, 0x00, 0x02, 0, 0}, 21,
         33},
        {{0x21, 0x11, 0, 12, 1, 2, 3, 4}, 8, 0},  /* truncated address block */
        {{0x21, 0x11, 0, 12}, 4, 0},
        {{0x21, 0x11}, 2, 0},
    };
    uint8_t b[64];
    struct wm_pp_info info;
    const char *why;

    (void)state;
    memcpy(b, SIG, 12);
    for (size_t i = 0; i < NELEM(cases); i++) {
        memcpy(b + 12, cases[i].b, sizeof(cases[i].b));
        int r = wm_pp_parse(b, 12 + cases[i].n, &info, &why);
        if (r != cases[i].want) {
            print_error("case %zu gave %d\n", i, r);
        }
        assert_int_equal(r, cases[i].want);
    }
    /* a wrong signature byte, at each position */
    for (size_t k = 1; k < 12; k++) {
        memcpy(b, SIG, 12);
        b[k] ^= 0x40;
        assert_int_equal(wm_pp_parse(b, 12, &info, &why), -1);
        assert_int_equal(wm_pp_parse(b, k + 1, &info, &why), -1);
        assert_int_equal(wm_pp_parse(b, k, &info, &why), 0);
    }
    /* anything else */
    assert_int_equal(wm_pp_parse((const uint8_t *)"\x16\x03\x01", 3, &info, &why), -1);
    assert_int_equal(wm_pp_parse((const uint8_t *)"", 0, &info, &why), 0);
}

/* Every byte string up to a few bytes long, and random noise: no crash, no
 * read past n (ASan), an answer of -1, 0 or a length within n. */
static void test_parse_noise(void **state)
{
    uint8_t b[300];
    struct wm_pp_info info;

    (void)state;
    srand(7);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)rand() % sizeof(b);
        for (size_t i = 0; i < n; i++) {
            b[i] = (uint8_t)rand();
        }
        if (round % 3 == 0 && n >= 16) {
            memcpy(b, SIG, 12);
            b[12] = 0x21;
            b[13] = (uint8_t)(round % 2 ? 0x11 : 0x21);
            b[14] = 0;
        } else if (round % 3 == 1 && n >= 6) {
            memcpy(b, "PROXY ", 6);
        }
        uint8_t *heap = malloc(n ? n : 1);
        memcpy(heap, b, n);
        int r = wm_pp_parse(heap, n, &info, NULL);
        assert_true(r >= -1 && r <= (int)n);
        free(heap);
    }
}

static void test_send(void **state)
{
    int sv[2];
    struct sockaddr_storage s, d;
    uint8_t buf[128];
    struct wm_pp_info info;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sa("127.0.0.1", 1000, &s);
    sa("127.0.0.1", 2000, &d);
    assert_int_equal(wm_pp_send(sv[0], WM_PP_V2, (struct sockaddr *)&s, (struct sockaddr *)&d), 0);
    ssize_t n = read(sv[1], buf, sizeof(buf));
    assert_int_equal(n, 28);
    assert_int_equal(wm_pp_parse(buf, (size_t)n, &info, NULL), 28);
    assert_addr(&info.src, "127.0.0.1:1000");
    assert_int_equal(wm_pp_send(sv[0], 0, NULL, NULL), -1);
    close(sv[0]);
    close(sv[1]);
    assert_string_equal(wm_pp_version_str(WM_PP_V1), "v1");
    assert_string_equal(wm_pp_version_str(WM_PP_V2), "v2");
    assert_string_equal(wm_pp_version_str(0), "off");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_v1),
        cmocka_unit_test(test_build_v2),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_parse_unknown_local),
        cmocka_unit_test(test_parse_v1_malformed),
        cmocka_unit_test(test_parse_v2_malformed),
        cmocka_unit_test(test_parse_noise),
        cmocka_unit_test(test_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
