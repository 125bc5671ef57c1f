/*
 * tests/unit/http/test_hdr.c - http/hdr.h: header name ids, and that a
 * head names its fields with them (trimmed values, hop-by-hop by id).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/hdr.h"
#include "http/head.h"

/* Every id's own spelling, in any case, comes back as that id; one byte
 * changed or one byte shorter or longer does not. */
static void test_ids_round_trip(void **state)
{
    (void)state;
    for (int id = 1; id < WM_HDR_COUNT; id++) {
        size_t n;
        const char *lower = wm_hdr_lower((enum wm_hdr)id, &n);
        char buf[64];
        assert_non_null(lower);
        assert_true(n > 0 && n < sizeof(buf) - 1);
        assert_int_equal(wm_hdr_id(lower, n), id);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)(lower[i] >= 'a' && lower[i] <= 'z' ? lower[i] - 32 : lower[i]);
        }
        assert_int_equal(wm_hdr_id(buf, n), id);
        for (size_t i = 0; i < n; i++) {
            memcpy(buf, lower, n);
            buf[i] = '_';
            assert_int_not_equal(wm_hdr_id(buf, n), id);
        }
        memcpy(buf, lower, n);
        buf[n] = 's';
        assert_int_not_equal(wm_hdr_id(buf, n + 1), id);
        assert_int_not_equal(wm_hdr_id(buf, n - 1), id);
    }
    size_t n;
    assert_null(wm_hdr_lower(WM_HDR_OTHER, &n));
    assert_int_equal(n, 0);
    assert_int_equal(wm_hdr_id("x-custom", 8), WM_HDR_OTHER);
    assert_int_equal(wm_hdr_id("", 0), WM_HDR_OTHER);
    assert_int_equal(wm_hdr_id("a-very-long-header-name-indeed", 30), WM_HDR_OTHER);
    /* only A-Z fold: '[' is not '{', '^' not '~' */
    assert_int_equal(wm_hdr_id("Hos\x14", 4), WM_HDR_OTHER);
    assert_int_equal(wm_hdr_id("content\x0dlength", 14), WM_HDR_OTHER);
}

static void test_hop_set(void **state)
{
    static const char *const hop[] = {
        "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization",
        "Proxy-Authenticate", "TE", "Trailer", "Upgrade",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        assert_true(wm_hdr_is_hop(wm_hdr_id(hop[i], strlen(hop[i]))));
    }
    assert_false(wm_hdr_is_hop(wm_hdr_id("Host", 4)));
    assert_false(wm_hdr_is_hop(wm_hdr_id("Transfer-Encoding", 17)));
    assert_false(wm_hdr_is_hop(WM_HDR_OTHER));
}

static void add(struct wm_http_head *h, const char *name, const char *value)
{
    assert_int_equal(wm_http_head_add_field(h, name, strlen(name), value, strlen(value)), 0);
}

static void test_head_fields(void **state)
{
    struct wm_http_head *h = wm_http_head_new(4096, 16);
    struct wm_http_field f;
    size_t vlen;
    const char *v;

    (void)state;
    add(h, "HOST", "  example.org \t");
    add(h, "X-Thing", "a");
    add(h, "Connection", "close, X-Thing");
    assert_int_equal(wm_http_head_nfields(h), 3);
    wm_http_head_field(h, 0, &f);
    assert_int_equal(f.id, WM_HDR_HOST);
    assert_int_equal(f.vlen, 11);
    assert_memory_equal(f.value, "example.org", 11);
    v = wm_http_head_get_id(h, WM_HDR_HOST, &vlen);
    assert_non_null(v);
    assert_int_equal(vlen, 11);
    v = wm_http_head_get(h, "x-thing", &vlen);
    assert_non_null(v);
    assert_memory_equal(v, "a", 1);
    assert_null(wm_http_head_get_id(h, WM_HDR_COOKIE, &vlen));
    assert_null(wm_http_head_get_id(h, WM_HDR_OTHER, &vlen));
    /* X-Thing is named by Connection: hop-by-hop for this head */
    wm_http_head_field(h, 1, &f);
    assert_int_equal(f.id, WM_HDR_OTHER);
    assert_true(wm_http_head_field_is_hop(h, &f));
    assert_true(wm_http_head_is_hop(h, "x-thing", 7));
    wm_http_head_field(h, 0, &f);
    assert_false(wm_http_head_field_is_hop(h, &f));
    wm_http_head_field(h, 2, &f);
    assert_true(wm_http_head_field_is_hop(h, &f));
    assert_int_equal(wm_http_head_add_field(h, "", 0, "x", 1), -1);
    wm_http_head_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_round_trip),
        cmocka_unit_test(test_hop_set),
        cmocka_unit_test(test_head_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
