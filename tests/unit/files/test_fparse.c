/*
 * tests/unit/files/test_fparse.c - the file server's parsers (files/fparse.c):
 * the path below the root, Range, Accept-Encoding q-values, HTTP dates and
 * entity-tag lists. Table-driven, truncated and oversized inputs included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "files/files.h"
#include "files/files_int.h"
#include "http/util.h"

struct path_case {
    const char *path;
    const char *prefix;
    int rc;
    const char *out;
    bool dir;
};

static void test_path_clean(void **state)
{
    static const struct path_case cases[] = {
        {"/", "", 0, "", true},
        {"/a.txt", "", 0, "a.txt", false},
        {"/a/b/c.txt", "", 0, "a/b/c.txt", false},
        {"/a//b/./c/", "", 0, "a/b/c", true},
        {"/static/x.css", "/static", 0, "x.css", false},
        {"/static/x.css", "/static/", 0, "x.css", false},
        {"/static", "/static", 0, "", true},
        {"/staticx/y", "/static", -1, NULL, false},     /* not below the prefix */
        {"/other/y", "/static", -1, NULL, false},
        {"/..", "", -1, NULL, false},
        {"/a/../b", "", -1, NULL, false},               /* ".." never passes (defence in depth) */
        {"/a/..", "", -1, NULL, false},
        {"/a\\..\\b", "", -1, NULL, false},             /* backslash */
        {"/a\x01", "", -1, NULL, false},                /* control byte */
        {"/a\x7f", "", -1, NULL, false},
        {"/\xc0\xae\xc0\xae/etc", "", -1, NULL, false}, /* overlong '.' */
        {"/\xe0\x80\xae", "", -1, NULL, false},         /* overlong, 3 bytes */
        {"/\xed\xa0\x80", "", -1, NULL, false},         /* surrogate */
        {"/\xf4\x90\x80\x80", "", -1, NULL, false},     /* above U+10FFFF */
        {"/\xc3", "", -1, NULL, false},                 /* truncated sequence */
        {"/caf\xc3\xa9.txt", "", 0, "caf\xc3\xa9.txt", false},
        {"/\xf0\x9f\x98\x80", "", 0, "\xf0\x9f\x98\x80", false},
        {"/...", "", 0, "...", false},                  /* a name, not a parent */
        {"/.hidden", "", 0, ".hidden", false},
        {"/%2e%2e", "", 0, "%2e%2e", false},            /* decoded once upstream: a name */
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct path_case *c = &cases[i];
        bool dir = false;
        int rc = wm_files_path_clean(c->path, strlen(c->path), c->prefix, out, sizeof(out), &dir);
        if (rc != c->rc) {
            fail_msg("case %zu (%s): rc %d", i, c->path, rc);
        }
        if (rc == 0) {
            assert_string_equal(out, c->out);
            assert_int_equal(dir, c->dir);
        }
    }
    /* NUL inside the given length */
    bool dir;
    assert_int_equal(wm_files_path_clean("/a\0b", 4, "", out, sizeof(out), &dir), -1);
    /* oversized: does not fit the output */
    char big[200];
    memset(big, 'a', sizeof(big));
    big[0] = '/';
    assert_int_equal(wm_files_path_clean(big, sizeof(big), "", out, sizeof(out), &dir), -1);
    assert_int_equal(wm_files_path_clean(big, 63, "", out, sizeof(out), &dir), 0);
    /* every truncation of a valid path either passes or is refused, never overflows */
    const char *p = "/a/b/caf\xc3\xa9/d.txt";
    for (size_t n = 0; n <= strlen(p); n++) {
        (void)wm_files_path_clean(p, n, "", out, sizeof(out), &dir);
    }
}

struct range_case {
    const char *v;
    uint64_t size;
    int rc;
    struct wm_files_range r[3];
};

static void test_range(void **state)
{
    static const struct range_case cases[] = {
        {"bytes=0-99", 1000, 1, {{0, 99}}},
        {"bytes=0-99", 50, 1, {{0, 49}}},               /* clamped */
        {"bytes=-500", 1000, 1, {{500, 999}}},
        {"bytes=-5000", 1000, 1, {{0, 999}}},
        {"bytes=900-", 1000, 1, {{900, 999}}},
        {"bytes=0-0,-1", 1000, 2, {{0, 0}, {999, 999}}},
        {" bytes=1-2 , 4-5 ,", 10, 2, {{1, 2}, {4, 5}}},
        {"BYTES=1-2", 10, 1, {{1, 2}}},
        {"bytes=1000-", 1000, WM_FILES_RANGE_UNSATISFIABLE, {{0, 0}}},
        {"bytes=-0", 1000, WM_FILES_RANGE_UNSATISFIABLE, {{0, 0}}},
        {"bytes=0-1", 0, WM_FILES_RANGE_UNSATISFIABLE, {{0, 0}}},
        {"bytes=5000-6000, 1-2", 1000, 1, {{1, 2}}},   /* the satisfiable ones only */
        {"bytes=5-2", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=a-2", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=1-2x", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=-", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=1", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"items=0-1", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes 0-1", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        /* positions beyond 64 bits are past any end */
        {"bytes=99999999999999999999-", 1000, WM_FILES_RANGE_UNSATISFIABLE, {{0, 0}}},
        {"bytes=0-99999999999999999999", 1000, 1, {{0, 999}}},
        {"bytes=10-99999999999999999999999999999999", 1000, 1, {{10, 999}}},
        {"bytes=-99999999999999999999", 1000, 1, {{0, 999}}},
        {"bytes=18446744073709551615-", 1000, WM_FILES_RANGE_UNSATISFIABLE, {{0, 0}}},
        /* overlapping ranges asking for more than the file: the whole file */
        {"bytes=0-,0-", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=0-599,400-", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=-600,0-500", 1000, WM_FILES_RANGE_NONE, {{0, 0}}},
        {"bytes=0-499,-500", 1000, 2, {{0, 499}, {500, 999}}},  /* exactly the file: fine */
        {"bytes=0-1,1-2", 1000, 2, {{0, 1}, {1, 2}}},            /* small overlap: fine */
    };
    struct wm_files_range r[WM_FILES_MAX_RANGES];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct range_case *c = &cases[i];
        int rc = wm_files_range_parse(c->v, strlen(c->v), c->size, r, WM_FILES_MAX_RANGES);
        if (rc != c->rc) {
            fail_msg("case %zu (%s): rc %d, want %d", i, c->v, rc, c->rc);
        }
        for (int k = 0; k < rc; k++) {
            assert_int_equal(r[k].first, c->r[k].first);
            assert_int_equal(r[k].last, c->r[k].last);
        }
    }
    /* more ranges than the limit: the whole file */
    char many[1024] = "bytes=";
    for (int i = 0; i <= WM_FILES_MAX_RANGES; i++) {
        char one[16];
        snprintf(one, sizeof(one), "%d-%d,", i * 2, i * 2);
        strcat(many, one);
    }
    assert_int_equal(wm_files_range_parse(many, strlen(many), 1000, r, WM_FILES_MAX_RANGES),
                     WM_FILES_RANGE_NONE);
    /* truncations never read past the end */
    const char *v = "bytes=0-99, 200-299, -5";
    for (size_t n = 0; n <= strlen(v); n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, v, n);
        (void)wm_files_range_parse(copy, n, 1000, r, WM_FILES_MAX_RANGES);
        free(copy);
    }
}

static void test_accept_q(void **state)
{
    static const struct {
        const char *v;
        const char *coding;
        int q;
    } cases[] = {
        {"gzip", "gzip", 1000},
        {"gzip;q=0.5", "gzip", 500},
        {"gzip; q=0.123", "gzip", 123},
        {"br;q=1.0, gzip;q=0", "gzip", 0},
        {"deflate, *;q=0.3", "gzip", 300},
        {"deflate", "gzip", 0},
        {"x-gzip", "gzip", 1000},
        {"GZIP", "gzip", 1000},
        {"identity;q=0", "identity", 0},
        {"br", "identity", 1000},
        {"gzip;q=2", "gzip", -1 + 1}, /* malformed q: ignored element -> absent */
        {"", "gzip", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int q = wm_files_accept_q(cases[i].v, strlen(cases[i].v), cases[i].coding);
        if (q != cases[i].q) {
            fail_msg("case %zu (%s for %s): q %d, want %d", i, cases[i].v, cases[i].coding, q,
                     cases[i].q);
        }
    }
}

static void test_dates_and_etags(void **state)
{
    char buf[40];

    (void)state;
    assert_int_equal(wm_files_http_date("Sun, 06 Nov 1994 08:49:37 GMT", strlen("Sun, 06 Nov 1994 08:49:37 GMT")), 784111777);
    assert_int_equal(wm_files_http_date("Sunday, 06-Nov-94 08:49:37 GMT", strlen("Sunday, 06-Nov-94 08:49:37 GMT")), 784111777);
    assert_int_equal(wm_files_http_date("Sun Nov  6 08:49:37 1994", strlen("Sun Nov  6 08:49:37 1994")), 784111777);
    assert_int_equal(wm_files_http_date("yesterday", strlen("yesterday")), -1);
    assert_int_equal(wm_files_http_date("Sun, 06 Nov 1994 08:49:37 GMTx", strlen("Sun, 06 Nov 1994 08:49:37 GMTx")), -1);
    wm_http_date_fmt(784111777, buf, sizeof(buf));
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_true(files_etag_match("\"a\"", strlen("\"a\""), "\"a\"", false));
    assert_true(files_etag_match("*", strlen("*"), "\"a\"", false));
    assert_true(files_etag_match("\"x\", \"a\"", strlen("\"x\", \"a\""), "\"a\"", false));
    assert_false(files_etag_match("W/\"a\"", strlen("W/\"a\""), "\"a\"", false)); /* strong comparison */
    assert_true(files_etag_match("W/\"a\"", strlen("W/\"a\""), "\"a\"", true));   /* weak comparison */
    assert_false(files_etag_match("\"ab\"", strlen("\"ab\""), "\"a\"", true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_clean), cmocka_unit_test(test_range),
        cmocka_unit_test(test_accept_q), cmocka_unit_test(test_dates_and_etags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
