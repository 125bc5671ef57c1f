/*
 * tests/unit/http/test_util.c - http/util.h: authority and absolute-URI
 * parsing, canned error responses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "core/util.h"
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/addr.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- wm_http_parse_authority ---- */

struct auth_case {
    const char *in;
    uint16_t defport;
    int ret;
    const char *host;
    uint16_t port;
};

static void test_authority_table(void **state)
{
    static const struct auth_case cases[] = {
        {"example.com", 80, 0, "example.com", 80},
        {"example.com", 443, 0, "example.com", 443},
        {"example.com:8080", 80, 0, "example.com", 8080},
        {"example.com:8080", 0, 0, "example.com", 8080},
        {"1.2.3.4:1", 0, 0, "1.2.3.4", 1},
        {"h:65535", 0, 0, "h", 65535},
        {"h:00443", 0, 0, "h", 443},
        {"[::1]:8443", 0, 0, "::1", 8443},
        {"[2001:db8::1]", 80, 0, "2001:db8::1", 80},
        {"[::ffff:1.2.3.4]:80", 0, 0, "::ffff:1.2.3.4", 80},
        /* missing port with no default */
        {"example.com", 0, -1, NULL, 0},
        {"[::1]", 0, -1, NULL, 0},
        /* port form and bounds */
        {"h:0", 80, -1, NULL, 0},
        {"h:65536", 80, -1, NULL, 0},
        {"h:100000", 80, -1, NULL, 0},
        {"h:184467440737095516160", 80, -1, NULL, 0},
        {"h:", 80, -1, NULL, 0},
        {"h:http", 80, -1, NULL, 0},
        {"h:8a", 80, -1, NULL, 0},
        {"h:-80", 80, -1, NULL, 0},
        {"h:+80", 80, -1, NULL, 0},
        {"h: 80", 80, -1, NULL, 0},
        {"h:80 ", 80, -1, NULL, 0},
        {"h:80:81", 80, -1, NULL, 0},
        {"[::1]:", 80, -1, NULL, 0},
        {"[::1]:0", 80, -1, NULL, 0},
        {"[::1]x", 80, -1, NULL, 0},
        {"[::1]80", 80, -1, NULL, 0},
        {"[::1]:80x", 80, -1, NULL, 0},
        /* host form */
        {"", 80, -1, NULL, 0},
        {":80", 80, -1, NULL, 0},
        {"[]:80", 80, -1, NULL, 0},
        {"[::1", 80, -1, NULL, 0},
        {"[1.2.3.4]:80", 80, -1, NULL, 0}, /* brackets only for IPv6 */
        {"[host]", 80, -1, NULL, 0},
        {"::1", 80, -1, NULL, 0},          /* bare IPv6 */
        {"2001:db8::1", 80, -1, NULL, 0},
        {"ho st", 80, -1, NULL, 0},
        {" host", 80, -1, NULL, 0},
        {"host\t", 80, -1, NULL, 0},
        {"ho\rst", 80, -1, NULL, 0},
        {"ho\nst:80", 80, -1, NULL, 0},
        {"user@host", 80, -1, NULL, 0},
        {"host/path", 80, -1, NULL, 0},
        {"host?q", 80, -1, NULL, 0},
        {"host#f", 80, -1, NULL, 0},
        {"ho\\st", 80, -1, NULL, 0},
        {"h\x7f", 80, -1, NULL, 0},
        {"h\xc3\xa9", 80, -1, NULL, 0},
        {"[::1 ]:80", 80, -1, NULL, 0},
    };
    char host[WM_HOST_MAX];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct auth_case *c = &cases[i];
        uint16_t port = 7;
        memset(host, 0, sizeof(host));
        int r = wm_http_parse_authority(c->in, strlen(c->in), host, sizeof(host), &port,
                                        c->defport);
        if (r != c->ret) {
            fail_msg("case %zu (%s): ret %d want %d", i, c->in, r, c->ret);
        }
        if (r == 0) {
            assert_string_equal(host, c->host);
            assert_int_equal(port, c->port);
        }
    }
}

static void test_authority_lengths(void **state)
{
    char in[WM_HOST_MAX + 16];
    char host[WM_HOST_MAX * 2];
    char small[4];
    uint16_t port;

    (void)state;
    /* Longest host: WM_HOST_MAX - 1. */
    memset(in, 'a', sizeof(in));
    assert_int_equal(wm_http_parse_authority(in, WM_HOST_MAX - 1, host, sizeof(host), &port, 80),
                     0);
    assert_int_equal(strlen(host), WM_HOST_MAX - 1);
    assert_int_equal(wm_http_parse_authority(in, WM_HOST_MAX, host, sizeof(host), &port, 80),
                     -1);
    /* Caller capacity. */
    memset(small, 'x', sizeof(small));
    assert_int_equal(wm_http_parse_authority("abc:1", 5, small, sizeof(small), &port, 0), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(wm_http_parse_authority("abcd:1", 6, small, sizeof(small), &port, 0), -1);
    assert_int_equal(wm_http_parse_authority("abcd", 4, small, sizeof(small), &port, 80), -1);
    /* n bounds the input: no NUL needed, bytes past n ignored. */
    assert_int_equal(wm_http_parse_authority("host:8080/x", 9, host, sizeof(host), &port, 0), 0);
    assert_string_equal(host, "host");
    assert_int_equal(port, 8080);
    assert_int_equal(wm_http_parse_authority("ab", 1, host, sizeof(host), &port, 80), 0);
    assert_string_equal(host, "a");
    assert_int_equal(wm_http_parse_authority("a\0b", 3, host, sizeof(host), &port, 80), -1);
}

/* ---- wm_http_parse_absolute ---- */

struct abs_case {
    const char *in;
    int ret;
    const char *host;
    uint16_t port;
    bool https;
    const char *path;
};

static void test_absolute_table(void **state)
{
    static const struct abs_case cases[] = {
        {"http://example.com/", 0, "example.com", 80, false, "/"},
        {"http://example.com", 0, "example.com", 80, false, "/"},
        {"https://example.com", 0, "example.com", 443, true, "/"},
        {"https://example.com/a/b", 0, "example.com", 443, true, "/a/b"},
        {"http://example.com:8080/x?y=1&z", 0, "example.com", 8080, false, "/x?y=1&z"},
        {"https://h:8443/", 0, "h", 8443, true, "/"},
        {"HTTP://Example.COM/P", 0, "Example.COM", 80, false, "/P"},
        {"HtTpS://h/", 0, "h", 443, true, "/"},
        {"http://[::1]:8080/p", 0, "::1", 8080, false, "/p"},
        {"http://[::1]/p", 0, "::1", 80, false, "/p"},
        {"https://[2001:db8::1]", 0, "2001:db8::1", 443, true, "/"},
        {"http://1.2.3.4/", 0, "1.2.3.4", 80, false, "/"},
        /* fragments are cut */
        {"http://h/p#frag", 0, "h", 80, false, "/p"},
        {"http://h/p?q#frag", 0, "h", 80, false, "/p?q"},
        {"http://h#frag", 0, "h", 80, false, "/"},
        {"http://h:81#frag", 0, "h", 81, false, "/"},
        {"http://h/#", 0, "h", 80, false, "/"},
        /* '@' past the authority is just path */
        {"http://h/a@b", 0, "h", 80, false, "/a@b"},
        {"http://h/?u=a@b", 0, "h", 80, false, "/?u=a@b"},
        /* query without a path: returned as is, the caller adds the "/" */
        {"http://h?q=1", 0, "h", 80, false, "?q=1"},
        /* userinfo refused */
        {"http://user@h/", -1, NULL, 0, false, NULL},
        {"http://user:pass@h/", -1, NULL, 0, false, NULL},
        {"http://@h/", -1, NULL, 0, false, NULL},
        {"https://u@[::1]/", -1, NULL, 0, false, NULL},
        /* other schemes and forms */
        {"ftp://h/", -1, NULL, 0, false, NULL},
        {"ws://h/", -1, NULL, 0, false, NULL},
        {"httpx://h/", -1, NULL, 0, false, NULL},
        {"http:/h/", -1, NULL, 0, false, NULL},
        {"http:h", -1, NULL, 0, false, NULL},
        {"//h/", -1, NULL, 0, false, NULL},
        {"/path", -1, NULL, 0, false, NULL},
        {"h:80", -1, NULL, 0, false, NULL},
        {"*", -1, NULL, 0, false, NULL},
        {"", -1, NULL, 0, false, NULL},
        {"http", -1, NULL, 0, false, NULL},
        {"http:/", -1, NULL, 0, false, NULL},
        {"https:/", -1, NULL, 0, false, NULL},
        {" http://h/", -1, NULL, 0, false, NULL},
        /* empty or bad authority */
        {"http://", -1, NULL, 0, false, NULL},
        {"https://", -1, NULL, 0, false, NULL},
        {"http:///p", -1, NULL, 0, false, NULL},
        {"http://:80/", -1, NULL, 0, false, NULL},
        {"http://h:0/", -1, NULL, 0, false, NULL},
        {"http://h:65536/", -1, NULL, 0, false, NULL},
        {"http://h:x/", -1, NULL, 0, false, NULL},
        {"http://::1/", -1, NULL, 0, false, NULL},
        {"http://h\\x/", -1, NULL, 0, false, NULL},
        {"http://h x/", -1, NULL, 0, false, NULL},
    };
    char host[WM_HOST_MAX];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct abs_case *c = &cases[i];
        uint16_t port = 7;
        bool https = !c->https;
        const char *path = NULL;
        size_t plen = 0;
        int r = wm_http_parse_absolute(c->in, strlen(c->in), host, sizeof(host), &port, &https,
                                       &path, &plen);
        if (r != c->ret) {
            fail_msg("case %zu (%s): ret %d want %d", i, c->in, r, c->ret);
        }
        if (r != 0) {
            continue;
        }
        assert_string_equal(host, c->host);
        assert_int_equal(port, c->port);
        assert_int_equal(https, c->https);
        assert_non_null(path);
        if (plen != strlen(c->path) || memcmp(path, c->path, plen) != 0) {
            fail_msg("case %zu (%s): path \"%.*s\" want \"%s\"", i, c->in, (int)plen, path,
                     c->path);
        }
    }
}

/* The origin form points into the caller's URL (no copy), and n bounds it. */
static void test_absolute_pointers(void **state)
{
    const char *url = "http://h/abc?d";
    char host[64];
    uint16_t port;
    bool https;
    const char *path;
    size_t plen;

    (void)state;
    assert_int_equal(wm_http_parse_absolute(url, strlen(url), host, sizeof(host), &port, &https,
                                            &path, &plen),
                     0);
    assert_ptr_equal(path, url + 8);
    assert_int_equal(plen, 6);
    assert_int_equal(wm_http_parse_absolute(url, 11, host, sizeof(host), &port, &https, &path,
                                            &plen),
                     0);
    assert_int_equal(plen, 3);
    assert_memory_equal(path, "/ab", 3);
    /* host buffer too small */
    assert_int_equal(wm_http_parse_absolute("http://abcdef/", 14, host, 4, &port, &https, &path,
                                            &plen),
                     -1);
}

/* ---- wm_http_reason ---- */

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(wm_http_reason(200), "OK");
    assert_string_equal(wm_http_reason(400), "Bad Request");
    assert_string_equal(wm_http_reason(407), "Proxy Authentication Required");
    assert_string_equal(wm_http_reason(412), "Precondition Failed");
    assert_string_equal(wm_http_reason(417), "Expectation Failed");
    assert_string_equal(wm_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(wm_http_reason(502), "Bad Gateway");
    assert_string_equal(wm_http_reason(504), "Gateway Timeout");
    assert_string_equal(wm_http_reason(299), "Unknown");
    assert_string_equal(wm_http_reason(0), "Unknown");
    assert_string_equal(wm_http_reason(-1), "Unknown");
}

/* ---- wm_http_write_error: parse the output back with the response parser ---- */

struct collected {
    char body[1024];
    size_t n;
};

static void collect(void *arg, const char *p, size_t n)
{
    struct collected *c = arg;

    assert_true(c->n + n <= sizeof(c->body));
    memcpy(c->body + c->n, p, n);
    c->n += n;
}

struct err_case {
    int status;
    bool close;
    const char *extra;
    const char *detail;
    const char *body; /* NULL: not checked verbatim */
};

static void check_error_response(const struct err_case *c)
{
    struct evbuffer *out = evbuffer_new();
    struct wm_http_parser *p = wm_http_parser_new(WM_HTTP_RESPONSE, 16384, 64);
    struct collected col = {{0}, 0};
    struct wm_http_head *h;
    size_t len;
    size_t used;
    size_t vlen;
    const char *v;
    char *raw;

    assert_non_null(out);
    assert_non_null(p);
    assert_int_equal(wm_http_write_error(out, c->status, c->close, c->extra, c->detail), 0);
    len = evbuffer_get_length(out);
    raw = malloc(len);
    assert_non_null(raw);
    evbuffer_remove(out, raw, len);

    /* Status line, exactly. */
    char line[128];
    int ll = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", c->status,
                      wm_http_reason(c->status));
    assert_true(len > (size_t)ll);
    assert_memory_equal(raw, line, (size_t)ll);

    wm_http_parser_set_body_cb(p, collect, &col);
    assert_int_equal(wm_http_parser_feed_head(p, raw, len, &used), WM_HTTP_HEAD_DONE);
    h = wm_http_parser_head(p);
    assert_int_equal(wm_http_head_status(h), c->status);
    assert_int_equal(wm_http_head_major(h), 1);
    assert_int_equal(wm_http_head_minor(h), 1);

    v = wm_http_head_get(h, "content-length", &vlen);
    assert_non_null(v);
    uint64_t cl;
    assert_int_equal(wm_parse_u64(v, vlen, 1 << 20, &cl), 0);
    assert_int_equal(cl, len - used); /* the body is all that follows the head */

    v = wm_http_head_get(h, "content-type", &vlen);
    assert_non_null(v);
    assert_true(vlen >= 10 && memcmp(v, "text/plain", 10) == 0);

    v = wm_http_head_get(h, "connection", &vlen);
    if (c->close) {
        assert_non_null(v);
        assert_true(wm_strieq(v, vlen, "close"));
        assert_false(wm_http_parser_keep_alive(p));
    } else {
        assert_null(v);
        assert_true(wm_http_parser_keep_alive(p));
    }
    if (c->extra != NULL) {
        v = wm_http_head_get(h, "x-extra", &vlen);
        assert_non_null(v);
        assert_true(wm_strieq(v, vlen, "yes"));
    }

    size_t bused;
    assert_int_equal(wm_http_parser_feed_body(p, raw + used, len - used, &bused),
                     WM_HTTP_MSG_DONE);
    assert_int_equal(bused, len - used);
    assert_int_equal(col.n, cl);
    assert_true(col.n > 0 && col.n <= 511);

    /* Body: "<status> <reason>[: <detail>]\n" (cut to the buffer). */
    char want[600];
    snprintf(want, sizeof(want), "%d %s%s%s\n", c->status, wm_http_reason(c->status),
             c->detail ? ": " : "", c->detail ? c->detail : "");
    if (c->body != NULL) {
        assert_int_equal(col.n, strlen(c->body));
        assert_memory_equal(col.body, c->body, col.n);
    } else {
        assert_memory_equal(col.body, want, col.n); /* a prefix of the full text */
    }

    free(raw);
    wm_http_parser_free(p);
    evbuffer_free(out);
}

static void test_write_error(void **state)
{
    static char long_detail[1000];
    const struct err_case cases[] = {
        {502, true, NULL, "connect failed", "502 Bad Gateway: connect failed\n"},
        {400, false, NULL, NULL, "400 Bad Request\n"},
        {407, true, "Proxy-Authenticate: Basic realm=\"wm\"\r\nX-Extra: yes\r\n", NULL,
         "407 Proxy Authentication Required\n"},
        {431, false, "X-Extra: yes\r\n", "too many fields",
         "431 Request Header Fields Too Large: too many fields\n"},
        {599, true, NULL, "", "599 Unknown: \n"},
        {504, true, NULL, long_detail, NULL}, /* oversized detail: cut, still framed */
    };

    (void)state;
    memset(long_detail, 'd', sizeof(long_detail) - 1);
    for (size_t i = 0; i < NELEM(cases); i++) {
        check_error_response(&cases[i]);
    }
}

/* Host values a server takes, and those it refuses (RFC 9110 7.2). */
static void test_host_valid(void **state)
{
    static const struct {
        const char *h;
        bool ok;
    } cases[] = {
        {"a.test", true}, {"a.test:8080", true}, {"a.test:", true}, {"127.0.0.1:80", true},
        {"[::1]", true}, {"[::1]:443", true}, {"[2001:db8::1]", true}, {"x_y-z~1", true},
        {"caf\xc3\xa9.test", true}, {"a!$&'()*+,;=b", true},
        {"a.test/zz", false}, {"evil@a.test", false}, {"a.test b", false}, {"[::1", false},
        {"[]", false}, {"[::1]x", false}, {"[::1%lo]", false}, {"a.test:80x", false},
        {"a.test:123456", false}, {"a.test:8:8", false}, {"a\\b", false}, {"a?b", false},
        {"a#b", false}, {"a\tb", false}, {"a\x01" "b", false}, {"a\x7f" "b", false}, {"a<b>", false},
        {"a\"b", false}, {"a{b}", false}, {"a[b]", false},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        if (wm_http_host_valid(cases[i].h, strlen(cases[i].h)) != cases[i].ok) {
            fail_msg("case %zu (%s): want %d", i, cases[i].h, cases[i].ok);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authority_table),
        cmocka_unit_test(test_authority_lengths),
        cmocka_unit_test(test_absolute_table),
        cmocka_unit_test(test_absolute_pointers),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_host_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
