/*
 * tests/unit/tunnel/test_authz.c - tunnel/authz.h: domain patterns, the
 * client table's lookups and what an entry allows, the deep copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tunnel/authz.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void test_domain_match(void **state)
{
    static const struct {
        const char *pattern;
        const char *domain;
        bool match;
    } rows[] = {
        {"app.x.com", "app.x.com", true},
        {"app.x.com", "APP.X.com", true},
        {"app.x.com", "x.com", false},
        {"app.x.com", "evil-app.x.com", false},
        {"*.x.com", "a.x.com", true},
        {"*.x.com", "a.b.x.com", true},
        {"*.x.com", "*.a.x.com", true},  /* a wildcard mapping under x.com */
        {"*.x.com", "*.x.com", true},
        {"*.x.com", "x.com", false},
        {"*.x.com", "ax.com", false},
        {"*.x.com", ".x.com", false},
        {"*.x.com", "a.x.com.evil", false},
        {"*", "anything.example", true},
        {"*x.com", "ax.com", false}, /* only "*." is a wildcard */
        {"", "", true},
        {"a.com", "", false},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        if (wm_tunnel_domain_match(rows[i].pattern, rows[i].domain) != rows[i].match) {
            fail_msg("row %zu: %s vs %s", i, rows[i].pattern, rows[i].domain);
        }
    }
}

static uint8_t bits[8192];

static const char *const doms[] = {"*.a.test", "b.test"};
static const char *const groups[] = {"g1"};

static const struct wm_tunnel_client table[] = {
    {.name = "alice", .password = "pw-a", .domains = doms, .ndomains = 2, .ports = bits,
     .groups = groups, .ngroups = 1},
    {.name = "bob", .password = "pw-b"},
    {.name = "carol", .subject = "carol-cert"},
};

static void test_table(void **state)
{
    (void)state;
    memset(bits, 0, sizeof(bits));
    bits[2222 / 8] |= 1u << (2222 % 8);
    assert_ptr_equal(wm_tunnel_client_find(table, 3, "alice", 5), &table[0]);
    assert_ptr_equal(wm_tunnel_client_find(table, 3, "bob", 3), &table[1]);
    assert_null(wm_tunnel_client_find(table, 3, "alic", 4));
    assert_null(wm_tunnel_client_find(table, 3, "alicex", 6));
    assert_null(wm_tunnel_client_find(table, 3, "", 0));
    assert_ptr_equal(wm_tunnel_client_by_subject(table, 3, "carol-cert"), &table[2]);
    assert_null(wm_tunnel_client_by_subject(table, 3, "carol"));

    assert_true(wm_tunnel_client_may_domain(&table[0], "x.a.test"));
    assert_true(wm_tunnel_client_may_domain(&table[0], "b.test"));
    assert_false(wm_tunnel_client_may_domain(&table[0], "a.test"));
    assert_false(wm_tunnel_client_may_domain(&table[1], "b.test")); /* no list: nothing */
    assert_true(wm_tunnel_client_may_port(&table[0], 2222));
    assert_false(wm_tunnel_client_may_port(&table[0], 2223));
    assert_false(wm_tunnel_client_may_port(&table[0], 0));
    assert_false(wm_tunnel_client_may_port(&table[0], 70000));
    assert_false(wm_tunnel_client_may_port(&table[1], 2222));
    assert_true(wm_tunnel_client_may_group(&table[0], "g1"));
    assert_false(wm_tunnel_client_may_group(&table[0], "g2"));
    assert_false(wm_tunnel_client_may_group(&table[1], "g1"));
}

static void test_copy(void **state)
{
    (void)state;
    struct wm_tunnel_client *c = wm_tunnel_clients_copy(table, 3);

    assert_non_null(c);
    assert_ptr_not_equal(c[0].name, table[0].name);
    assert_string_equal(c[0].name, "alice");
    assert_string_equal(c[0].password, "pw-a");
    assert_int_equal(c[0].ndomains, 2);
    assert_string_equal(c[0].domains[1], "b.test");
    assert_true(wm_tunnel_client_may_port(&c[0], 2222));
    assert_null(c[1].ports);
    assert_null(c[2].password);
    assert_string_equal(c[2].subject, "carol-cert");
    wm_tunnel_clients_free(c, 3);
    assert_null(wm_tunnel_clients_copy(table, 0));
    wm_tunnel_clients_free(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_match),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_copy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
