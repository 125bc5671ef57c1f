/*
 * tests/unit/reverse/test_match.c - location patterns, path normalisation,
 * host names and IP networks of the reverse proxy (reverse/match.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/arena.h"
#include "reverse/rev_int.h"

static bool pmatch(const char *pat, const char *path)
{
    struct wm_arena *a = wm_arena_new();
    struct rv_pattern p;
    char msg[128];
    bool r;

    assert_int_equal(rv_pattern_compile(&p, pat, a, msg, sizeof(msg)), 0);
    r = rv_pattern_match(&p, path, strlen(path));
    rv_pattern_free(&p);
    wm_arena_free(a);
    return r;
}

static void test_patterns(void **state)
{
    (void)state;
    assert_true(pmatch("/", "/anything"));              /* prefix, as nginx */
    assert_true(pmatch("/static", "/static/a.css"));
    assert_false(pmatch("/static", "/stat"));
    assert_true(pmatch("=/exact", "/exact"));
    assert_false(pmatch("=/exact", "/exact/"));
    assert_true(pmatch("/files/*.txt", "/files/a/b.txt"));
    assert_false(pmatch("/files/*.txt", "/files/a/b.txt.png"));
    assert_true(pmatch("*.php", "/x/y.php"));
    assert_true(pmatch("/a/*/c/*", "/a/b/c/d"));
    assert_false(pmatch("/a/*/c/*", "/a/b/d"));
    assert_true(pmatch("^/api/v[0-9]+/", "/api/v12/x")); /* regex, unanchored */
    assert_false(pmatch("^/api/v[0-9]+/", "/x/api/v1/"));
    assert_true(pmatch("\\.(png|jpg)$", "/img/a.png"));
    assert_true(pmatch(NULL, "/x"));
    assert_true(pmatch("*", "/x"));
}

static void test_bad_regex(void **state)
{
    struct wm_arena *a = wm_arena_new();
    struct rv_pattern p;
    char msg[128] = "";

    (void)state;
    assert_int_equal(rv_pattern_compile(&p, "/(open", a, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "bad regex"));
    wm_arena_free(a);
}

static const char *norm(const char *in, char *out, size_t cap)
{
    size_t n;

    if (rv_path_normalize(in, strlen(in), out, cap, &n) < 0) {
        return NULL;
    }
    assert_int_equal(n, strlen(out));
    return out;
}

static void test_normalize(void **state)
{
    char b[64];

    (void)state;
    assert_string_equal(norm("/a/b?x=/../", b, sizeof(b)), "/a/b");
    assert_string_equal(norm("/a//b///c", b, sizeof(b)), "/a/b/c");
    assert_string_equal(norm("/a/./b/../c", b, sizeof(b)), "/a/c");
    assert_string_equal(norm("/a/b/..", b, sizeof(b)), "/a/");
    assert_string_equal(norm("/%61dmin", b, sizeof(b)), "/admin");
    assert_string_equal(norm("/a/%2e%2e/b", b, sizeof(b)), "/b");
    assert_string_equal(norm("/.", b, sizeof(b)), "/");
    assert_null(norm("/..", b, sizeof(b)));
    assert_null(norm("/a/../../b", b, sizeof(b)));
    assert_null(norm("/%00", b, sizeof(b)));
    assert_null(norm("/%zz", b, sizeof(b)));
    assert_null(norm("/%4", b, sizeof(b)));
    assert_null(norm("relative", b, sizeof(b)));
    assert_null(norm("/0123456789", b, 8)); /* does not fit */
}

static void test_hosts(void **state)
{
    (void)state;
    assert_true(rv_host_match("Example.COM", "example.com", 11));
    assert_false(rv_host_match("example.com", "example.co", 10));
    assert_true(rv_host_match("*.example.com", "a.b.example.com", 15));
    assert_false(rv_host_match("*.example.com", "example.com", 11));
    assert_false(rv_host_match("*.example.com", "badexample.com", 14));
    /* a fully qualified name (trailing dot) is the same name, once */
    assert_true(rv_host_match("example.com", "example.com.", 12));
    assert_true(rv_host_match("*.example.com", "a.example.com.", 14));
    assert_false(rv_host_match("example.com", "example.com..", 13));
}

static void test_cidr(void **state)
{
    struct rv_cidr c[3];
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};

    (void)state;
    assert_int_equal(rv_cidr_parse("10.0.0.0/8", &c[0]), 0);
    assert_int_equal(rv_cidr_parse("2001:db8::/32", &c[1]), 0);
    assert_int_equal(rv_cidr_parse("192.168.1.7", &c[2]), 0);
    assert_int_equal(rv_cidr_parse("10.0.0.0/33", &c[0]), -1);
    assert_int_equal(rv_cidr_parse("nope", &c[0]), -1);
    assert_int_equal(rv_cidr_parse("10.0.0.0/", &c[0]), -1);
    assert_int_equal(rv_cidr_parse("10.0.0.0/8", &c[0]), 0);
    inet_pton(AF_INET, "10.200.3.4", &a4.sin_addr);
    assert_true(rv_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "11.0.0.1", &a4.sin_addr);
    assert_false(rv_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "192.168.1.7", &a4.sin_addr);
    assert_true(rv_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET6, "2001:db8:1::5", &a6.sin6_addr);
    assert_true(rv_cidr_match(c, 3, (struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &a6.sin6_addr); /* mapped v4 counts as v4 */
    assert_true(rv_cidr_match(c, 3, (struct sockaddr *)&a6));
    inet_pton(AF_INET6, "2001:db9::1", &a6.sin6_addr);
    assert_false(rv_cidr_match(c, 3, (struct sockaddr *)&a6));
}

/* Server selection by Host through the index (rv_listen_vhost) against
 * the plain rule it replaces: the first server in config order with a
 * name that matches (rv_host_match), else the first server; and by SNI
 * (rv_listen_sni): the same among servers with a certificate, else none. Random
 * configurations: exact names in mixed case, "*.suffix" names, names
 * repeated across servers, servers without names; hosts with case
 * changes, trailing dots, ports stripped, misses. */
static const struct rv_vhost *linear(const struct rv_listen *l, const char *host, size_t n)
{
    for (size_t i = 0; i < l->nhosts; i++) {
        for (size_t k = 0; k < l->hosts[i]->nnames; k++) {
            if (rv_host_match(l->hosts[i]->names[k], host, n)) {
                return l->hosts[i];
            }
        }
    }
    return l->hosts[0];
}

/* The SNI rule rv_listen_sni replaces: the first server in config order
 * with a certificate and a matching name, else none. */
static const struct rv_vhost *linear_sni(const struct rv_listen *l, const char *host, size_t n)
{
    for (size_t i = 0; i < l->nhosts; i++) {
        for (size_t k = 0; l->hosts[i]->tls != NULL && k < l->hosts[i]->nnames; k++) {
            if (rv_host_match(l->hosts[i]->names[k], host, n)) {
                return l->hosts[i];
            }
        }
    }
    return NULL;
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void test_vhost_index(void **state)
{
    static const char *const pool[] = {
        "a.test", "A.Test", "b.test", "x.a.test", "*.a.test", "*.test", "c.example",
        "*.example", "www.c.example", "d", "*.b.test", "B.TEST", "e.test",
    };
    static const char *const asks[] = {
        "a.test", "A.TEST", "a.test.", "x.a.test", "y.a.test", "b.test", "q.b.test",
        "c.example", "www.c.example", "zz.example", "d", "D", "e.test", "nope",
        "", ".", "test", "a.test..", "X.A.TEST.", "example",
    };
    enum { SERVERS = 12, NAMES = 4 };

    (void)state;
    for (int round = 0; round < 300; round++) {
        struct wm_arena *a = wm_arena_new();
        struct rv_vhost v[SERVERS];
        struct rv_vhost *hosts[SERVERS];
        const char *names[SERVERS][NAMES];
        struct rv_listen l;
        memset(v, 0, sizeof(v));
        memset(&l, 0, sizeof(l));
        assert_non_null(a);
        l.nhosts = 1 + rnd(SERVERS);
        l.hosts = hosts;
        for (size_t i = 0; i < l.nhosts; i++) {
            v[i].index = (int)i;
            v[i].tls = rnd(3) > 0 ? (SSL_CTX *)&v[i] : NULL; /* only compared, never used */
            v[i].nnames = rnd(NAMES + 1);
            v[i].names = names[i];
            for (size_t k = 0; k < v[i].nnames; k++) {
                names[i][k] = pool[rnd(sizeof(pool) / sizeof(pool[0]))];
            }
            hosts[i] = &v[i];
        }
        assert_int_equal(rv_listen_index(&l, a), 0);
        for (size_t q = 0; q < sizeof(asks) / sizeof(asks[0]); q++) {
            size_t n = strlen(asks[q]);
            assert_ptr_equal(rv_listen_vhost(&l, asks[q], n), linear(&l, asks[q], n));
            assert_ptr_equal(rv_listen_sni(&l, asks[q], n), linear_sni(&l, asks[q], n));
        }
        wm_arena_free(a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns), cmocka_unit_test(test_bad_regex),
        cmocka_unit_test(test_normalize), cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_vhost_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
