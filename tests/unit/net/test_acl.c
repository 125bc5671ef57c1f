/*
 * tests/unit/net/test_acl.c - net/acl.h: the rule parser (table-driven,
 * with bad, truncated and oversized rules) and the verdicts: deny first,
 * allow lists, names vs resolved addresses, ports, the guard of local
 * addresses, client rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "net/acl.h"
#include "net/addr.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- parser ---- */

struct rule_case {
    const char *in;
    bool client;
    int ret;
};

static void test_rule_table(void **state)
{
    static const struct rule_case cases[] = {
        {"10.0.0.0/8", false, 0},
        {"10.1.2.3", false, 0},
        {"10.1.2.3/8", false, 0}, /* host bits are cleared */
        {"0.0.0.0/0:25", false, 0},
        {"*:25", false, 0},
        {"*", false, 0},
        {"*:1-1024", false, 0},
        {"[::1]:8000-9000", false, 0},
        {"[fe80::/10]", false, 0},
        {"[fe80::/10]:443", false, 0},
        {"::1", false, 0},
        {"fd00::/8", false, 0},
        {"[::ffff:10.0.0.0/104]", false, 0},
        {"example.com", false, 0},
        {"Example.COM.:443", false, 0},
        {"*.internal", false, 0},
        {".corp", false, 0},
        {"a_b-c.d", false, 0},
        {"10.0.0.0/8", true, 0},
        {"::1", true, 0},
        {"*", true, 0},
        /* bad */
        {"", false, -1},
        {" 10.0.0.0/8", false, -1},
        {"10.0.0.0/8 ", false, -1},
        {"10.0.0.0/8, 11.0.0.0/8", false, -1},
        {"10.0.0.0/33", false, -1},
        {"10.0.0.0/", false, -1},
        {"300.1.1.1", false, -1},
        {"10.0.0", false, -1},
        {"[::1]/129", false, -1},
        {"[::1/129]", false, -1},
        {"[::1", false, -1},
        {"[::1]8080", false, -1},
        {"[10.0.0.1]", false, -1},
        {"host:0", false, -1},
        {"host:65536", false, -1},
        {"host:", false, -1},
        {"host:9-8", false, -1},
        {"host:1-", false, -1},
        {"host:-5", false, -1},
        {"host:x", false, -1},
        {"ho*st", false, -1},
        {"*.", false, -1},
        {"*.*.x", false, -1},
        {"a..b", false, -1},
        {".", false, -1},
        {"name/8", false, -1},
        {"example.com", true, -1},
        {"10.0.0.0/8:80", true, -1},
        {"[::1]:80", true, -1},
    };
    char msg[200];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        msg[0] = '\0';
        int r = wm_acl_rule_check(cases[i].in, cases[i].client, msg, sizeof(msg));
        if (r != cases[i].ret) {
            fail_msg("rule \"%s\" (client %d): got %d (%s), want %d", cases[i].in,
                     cases[i].client, r, msg, cases[i].ret);
        }
        if (r < 0) {
            assert_true(msg[0] != '\0');
        }
    }
}

static void test_rule_oversized(void **state)
{
    char big[WM_ACL_RULE_MAX + 2];
    char msg[200];

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(wm_acl_rule_check(big, false, msg, sizeof(msg)), -1);
    /* a name of 254 bytes is too long even within the rule limit */
    big[254] = '\0';
    assert_int_equal(wm_acl_rule_check(big, false, msg, sizeof(msg)), -1);
    big[253] = '\0';
    assert_int_equal(wm_acl_rule_check(big, false, msg, sizeof(msg)), 0);
}

/* ---- verdicts ---- */

static struct sockaddr_storage ss;

static const struct sockaddr *sa(const char *ip, uint16_t port)
{
    socklen_t len;

    assert_int_equal(wm_addr_from_ip(ip, port, &ss, &len), 0);
    return (const struct sockaddr *)&ss;
}

static struct wm_acl *mk(const char *const *deny, size_t nd, const char *const *allow, size_t na,
                         bool guard)
{
    struct wm_acl_spec spec = {.deny_targets = deny, .ndeny_targets = nd,
                               .allow_targets = allow, .nallow_targets = na,
                               .guard_local = guard};
    char msg[200];
    struct wm_acl *a = wm_acl_new(&spec, msg, sizeof(msg));

    if (a == NULL) {
        fail_msg("wm_acl_new: %s", msg);
    }
    return a;
}

static void test_null_and_empty_allow_all(void **state)
{
    const char *why = NULL;
    struct wm_acl *a = mk(NULL, 0, NULL, 0, false);

    (void)state;
    assert_true(wm_acl_target_ok(NULL, "x", sa("127.0.0.1", 80), &why));
    assert_true(wm_acl_target_ok(a, "x", sa("127.0.0.1", 80), &why));
    assert_true(wm_acl_target_ok(a, NULL, sa("169.254.169.254", 80), &why));
    assert_false(wm_acl_name_denied(a, "x", 80, &why));
    assert_false(wm_acl_active(a));
    assert_false(wm_acl_active(NULL));
    wm_acl_unref(a);
    wm_acl_unref(NULL);
}

static void test_deny_cidr_ports_names(void **state)
{
    static const char *const deny[] = {"10.0.0.0/8", "*:25",        "[::1]:8000-9000",
                                       "*.internal", ".corp",       "Example.com:443",
                                       "[::ffff:192.168.0.0/112]"};
    struct wm_acl *a = mk(deny, NELEM(deny), NULL, 0, false);
    const char *why = NULL;

    (void)state;
    assert_true(wm_acl_active(a));
    assert_false(wm_acl_target_ok(a, NULL, sa("10.9.8.7", 80), &why));
    assert_string_equal(why, "deny_targets \"10.0.0.0/8\"");
    /* an IPv4-mapped IPv6 target is judged as its IPv4 address */
    assert_false(wm_acl_target_ok(a, NULL, sa("::ffff:10.1.1.1", 80), &why));
    assert_true(wm_acl_target_ok(a, NULL, sa("11.0.0.1", 80), &why));
    /* DNS rebinding: a harmless name resolving into the CIDR is denied */
    assert_false(wm_acl_target_ok(a, "harmless.example", sa("10.0.0.1", 443), &why));
    /* ports */
    assert_false(wm_acl_target_ok(a, NULL, sa("1.2.3.4", 25), &why));
    assert_string_equal(why, "deny_targets \"*:25\"");
    assert_true(wm_acl_name_denied(a, "mail.example", 25, &why));
    assert_false(wm_acl_target_ok(a, NULL, sa("::1", 8000), &why));
    assert_false(wm_acl_target_ok(a, NULL, sa("::1", 9000), &why));
    assert_true(wm_acl_target_ok(a, NULL, sa("::1", 9001), &why));
    assert_true(wm_acl_target_ok(a, NULL, sa("::1", 7999), &why));
    /* names: *.x under it only; .x it and under it; exact with a port */
    assert_true(wm_acl_name_denied(a, "db.internal", 80, &why));
    assert_true(wm_acl_name_denied(a, "A.B.INTERNAL.", 80, &why));
    assert_false(wm_acl_name_denied(a, "internal", 80, &why));
    assert_false(wm_acl_name_denied(a, "xinternal", 80, &why));
    assert_true(wm_acl_name_denied(a, "corp", 80, &why));
    assert_true(wm_acl_name_denied(a, "x.corp", 80, &why));
    assert_false(wm_acl_name_denied(a, "xcorp", 80, &why));
    assert_true(wm_acl_name_denied(a, "example.COM", 443, &why));
    assert_string_equal(why, "deny_targets \"Example.com:443\"");
    assert_false(wm_acl_name_denied(a, "example.com", 80, &why));
    assert_false(wm_acl_name_denied(a, "www.example.com", 443, &why));
    /* names never match IP literals, CIDRs never match before resolution */
    assert_false(wm_acl_name_denied(a, NULL, 80, &why));
    assert_false(wm_acl_name_denied(a, "10.0.0.1", 80, &why));
    assert_false(wm_acl_target_ok(a, "db.internal", sa("1.2.3.4", 80), &why));
    assert_false(wm_acl_target_ok(a, NULL, sa("192.168.3.4", 80), &why));
    assert_true(wm_acl_target_ok(a, NULL, sa("192.169.3.4", 80), &why));
    wm_acl_unref(a);
}

static void test_allow_list_and_deny_wins(void **state)
{
    static const char *const deny[] = {"10.0.0.5"};
    static const char *const allow[] = {"10.0.0.0/8", "*.example.org:443"};
    struct wm_acl *a = mk(deny, NELEM(deny), allow, NELEM(allow), false);
    const char *why = NULL;

    (void)state;
    assert_true(wm_acl_target_ok(a, NULL, sa("10.0.0.4", 80), &why));
    assert_false(wm_acl_target_ok(a, NULL, sa("10.0.0.5", 80), &why));
    assert_string_equal(why, "deny_targets \"10.0.0.5\"");
    assert_false(wm_acl_target_ok(a, NULL, sa("11.0.0.1", 80), &why));
    assert_string_equal(why, "not in allow_targets");
    assert_true(wm_acl_target_ok(a, "www.example.org", sa("93.184.216.34", 443), &why));
    /* port 0 is a port like any other: no port rule matches it by default */
    assert_false(wm_acl_target_ok(a, "www.example.org", sa("93.184.216.34", 0), &why));
    assert_false(wm_acl_target_ok(a, "www.example.org", sa("93.184.216.34", 80), &why));
    /* allow rules never deny before resolution */
    assert_false(wm_acl_name_denied(a, "other.example", 80, &why));
    wm_acl_unref(a);
}

static void test_guard_local(void **state)
{
    static const char *const catchall[] = {"0.0.0.0/0", "::/0", "*", ".localhost", "localhost"};
    static const char *const explicit_[] = {"127.0.0.1:8080", "[::1]", "169.254.169.254"};
    struct wm_acl *g = mk(NULL, 0, NULL, 0, true);
    struct wm_acl *c = mk(NULL, 0, catchall, NELEM(catchall), true);
    struct wm_acl *e = mk(NULL, 0, explicit_, NELEM(explicit_), true);
    const char *why = NULL;
    static const char *const local[] = {"127.0.0.1",       "127.8.9.10",      "::1",
                                        "169.254.169.254", "fe80::1",         "0.0.0.0",
                                        "::",              "::ffff:127.0.0.1", "224.0.0.251",
                                        "239.255.255.250", "ff02::fb",        "255.255.255.255"};

    (void)state;
    for (size_t i = 0; i < NELEM(local); i++) {
        assert_false(wm_acl_target_ok(g, NULL, sa(local[i], 80), &why));
        assert_false(wm_acl_target_ok(g, "localhost", sa(local[i], 80), &why));
        /* a catch-all or a name is no explicit allow */
        assert_false(wm_acl_target_ok(c, "localhost", sa(local[i], 80), &why));
    }
    assert_non_null(strstr(why, "refused by default"));
    assert_true(wm_acl_target_ok(g, NULL, sa("93.184.216.34", 80), &why));
    assert_true(wm_acl_target_ok(c, NULL, sa("93.184.216.34", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("126.255.255.255", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("169.253.0.1", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("fec0::1", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("223.255.255.255", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("240.0.0.1", 80), &why));
    assert_true(wm_acl_target_ok(g, NULL, sa("fe00::1", 80), &why));
    /* explicit: an address rule inside the range */
    assert_true(wm_acl_target_ok(e, "localhost", sa("127.0.0.1", 8080), &why));
    assert_false(wm_acl_target_ok(e, NULL, sa("127.0.0.1", 8081), &why));
    assert_false(wm_acl_target_ok(e, NULL, sa("127.0.0.2", 8080), &why));
    assert_true(wm_acl_target_ok(e, NULL, sa("::1", 22), &why));
    assert_true(wm_acl_target_ok(e, NULL, sa("169.254.169.254", 80), &why));
    assert_false(wm_acl_target_ok(e, NULL, sa("169.254.169.253", 80), &why));
    /* the allow list is a list: anything else is refused */
    assert_false(wm_acl_target_ok(e, NULL, sa("93.184.216.34", 80), &why));
    assert_string_equal(why, "not in allow_targets");
    wm_acl_unref(g);
    wm_acl_unref(c);
    wm_acl_unref(e);
}

static void test_clients(void **state)
{
    static const char *const deny[] = {"127.0.0.2"};
    static const char *const allow[] = {"127.0.0.0/8", "::1"};
    struct wm_acl_spec spec = {.deny_clients = deny, .ndeny_clients = 1,
                               .allow_clients = allow, .nallow_clients = 2};
    char msg[200];
    const char *why = NULL;
    struct wm_acl *a = wm_acl_new(&spec, msg, sizeof(msg));

    (void)state;
    assert_non_null(a);
    assert_true(wm_acl_client_ok(a, sa("127.0.0.1", 5000), &why));
    assert_true(wm_acl_client_ok(a, sa("::1", 5000), &why));
    assert_true(wm_acl_client_ok(a, sa("::ffff:127.0.0.3", 5000), &why));
    assert_false(wm_acl_client_ok(a, sa("127.0.0.2", 5000), &why));
    assert_string_equal(why, "deny_clients \"127.0.0.2\"");
    assert_false(wm_acl_client_ok(a, sa("10.0.0.1", 5000), &why));
    assert_string_equal(why, "not in allow_clients");
    /* targets are not judged by client rules */
    assert_true(wm_acl_target_ok(a, NULL, sa("10.0.0.1", 80), &why));
    assert_true(wm_acl_client_ok(NULL, sa("10.0.0.1", 80), &why));
    assert_non_null(wm_acl_ref(a));
    wm_acl_unref(a);
    wm_acl_unref(a);
}

static void test_bad_spec_names_the_key(void **state)
{
    static const char *const bad[] = {"10.0.0.0/8", "nope/8"};
    struct wm_acl_spec spec = {.allow_targets = bad, .nallow_targets = 2};
    char msg[200];

    (void)state;
    assert_null(wm_acl_new(&spec, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "allow_targets \"nope/8\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_table),
        cmocka_unit_test(test_rule_oversized),
        cmocka_unit_test(test_null_and_empty_allow_all),
        cmocka_unit_test(test_deny_cidr_ports_names),
        cmocka_unit_test(test_allow_list_and_deny_wins),
        cmocka_unit_test(test_guard_local),
        cmocka_unit_test(test_clients),
        cmocka_unit_test(test_bad_spec_names_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
