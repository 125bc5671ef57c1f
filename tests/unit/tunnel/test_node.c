/*
 * tests/unit/tunnel/test_node.c - tunnel/tunnel.h: wm_tunnel_wanted() and
 * wm_tunnel_prepare() from struct wm_tunnel_opts: the roles, the listeners
 * they need, and the errors (struct wm_err, keyed by the option's field).
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

#include "core/err.h"
#include "proxy/proxy.h"
#include "tunnel/tunnel.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static struct wm_proxy_opts po;

static struct wm_tunnel_opts opts(void)
{
    struct wm_tunnel_opts o;

    memset(&o, 0, sizeof(o));
    wm_proxy_opts_default(&po);
    o.proxy = &po;
    o.bind = "127.0.0.1:18090";
    return o;
}

static void test_wanted(void **state)
{
    struct wm_tunnel_opts o = opts();

    (void)state;
    assert_false(wm_tunnel_wanted(&o)); /* a plain forward proxy */
    o.server = "127.0.0.1:9";
    assert_true(wm_tunnel_wanted(&o));
    o = opts();
    o.server_mode = true;
    assert_true(wm_tunnel_wanted(&o));
    o = opts();
    o.tc = true;
    assert_true(wm_tunnel_wanted(&o));
    o = opts();
    o.map_proxy_bind = "127.0.0.1:9";
    assert_true(wm_tunnel_wanted(&o));
}

/* The listeners of prepared settings, as "kind@addr" joined by spaces. */
static void listeners(const struct wm_tunnel_opts *o, char *out, size_t cap)
{
    struct wm_tunnel_settings *s = NULL;
    struct wm_err e;
    const char *addr[WM_TUNNEL_LISTEN_COUNT];
    enum wm_tunnel_listen kind[WM_TUNNEL_LISTEN_COUNT];
    size_t off = 0;

    if (wm_tunnel_prepare(o, &s, &e) != 0) {
        fail_msg("prepare: %s: %s", e.key, e.msg);
    }
    assert_non_null(s);
    size_t n = wm_tunnel_listeners(s, addr, kind, WM_TUNNEL_LISTEN_COUNT);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(out + off, cap - off, "%s%d@%s", i ? " " : "", (int)kind[i],
                                addr[i]);
    }
    wm_tunnel_settings_free(s);
}

static void test_roles_and_listeners(void **state)
{
    struct wm_tunnel_opts o = opts();
    char got[512];
    static const struct wm_tunnel_mapping maps[] = {
        {.name = "web", .mode = "http", .local_addr = "127.0.0.1:80", .domain = "a.test"},
        {.name = "ssh", .mode = "tcp", .local_addr = "[::1]:22", .remote_port = 2222},
        {.name = "px", .mode = "proxy"},
    };

    (void)state;
    o.server = "parent.test:9000";
    o.mappings = maps;
    o.nmappings = NELEM(maps);
    listeners(&o, got, sizeof(got));
    assert_string_equal(got, "0@127.0.0.1:18090"); /* client: its entry */

    o = opts();
    o.server_mode = true; /* wmproxy's layout: children attach on bind */
    o.map_tcp_bind = "0.0.0.0:19001";
    o.map_http_bind = "0.0.0.0:19002";
    listeners(&o, got, sizeof(got));
    assert_string_equal(got, "1@127.0.0.1:18090 2@0.0.0.0:19002 4@0.0.0.0:19001");

    o = opts();
    o.server = "parent.test:9000"; /* a middle node */
    o.center_addr = "127.0.0.1:19000";
    o.map_proxy_bind = "127.0.0.1:19003";
    listeners(&o, got, sizeof(got));
    assert_string_equal(got, "0@127.0.0.1:18090 1@127.0.0.1:19000 5@127.0.0.1:19003");
}

static void test_allow_ports_copied(void **state)
{
    struct wm_tunnel_opts o = opts();
    uint8_t *bits = calloc(1, WM_TUNNEL_PORT_BYTES);
    struct wm_tunnel_settings *s = NULL;
    struct wm_err e;

    (void)state;
    assert_non_null(bits);
    bits[2000 / 8] |= 1u << (2000 % 8);
    o.center_addr = "127.0.0.1:19000";
    o.allow_ports = bits;
    assert_int_equal(wm_tunnel_prepare(&o, &s, &e), 0);
    free(bits); /* borrowed for the call only (ASan: no later read) */
    wm_tunnel_settings_free(s);
}

/* One mapping whose domain takes most of a REGISTER frame's room. */
static char long_domain[WM_TUNNEL_DOMAIN_MAX + 1];

static void test_errors(void **state)
{
    static struct wm_tunnel_mapping many[257];
    static struct wm_tunnel_rule rules[65];
    static struct wm_tunnel_mapping big[100];
    const struct wm_tunnel_mapping bad_addr[] = {
        {.name = "a", .mode = "tcp", .local_addr = "127.0.0.1:1"},
        {.name = "b", .mode = "tcp", .local_addr = "no port"},
    };
    const struct wm_tunnel_mapping many_rules[] = {
        {.name = "a", .mode = "http", .local_addr = "127.0.0.1:1", .domain = "a.test",
         .rules = rules, .nrules = NELEM(rules)},
    };
    struct {
        const char *what;
        struct wm_tunnel_opts o;
        const char *key;
        const char *msg; /* a part of it */
    } rows[] = {
        {"bad parent", {.server = "nohost"}, "server", "host:port"},
        {"parent and children, no center_addr", {.server = "p:1", .map_tcp_bind = "0.0.0.0:2"},
         "center_addr", "needs center_addr"},
        {"bad local_addr", {.server = "p:1", .mappings = bad_addr, .nmappings = 2},
         "mappings[1].local_addr", "bad address"},
        {"too many mappings", {.server = "p:1", .mappings = many, .nmappings = NELEM(many)},
         "mappings", "at most 256 mappings"},
        {"too many rules", {.server = "p:1", .mappings = many_rules, .nmappings = 1},
         "mappings[0].headers", "at most 64 rules"},
        {"REGISTER too large", {.server = "p:1", .mappings = big, .nmappings = NELEM(big)},
         "mappings", "too large to announce"},
    };

    (void)state;
    memset(long_domain, 'd', WM_TUNNEL_DOMAIN_MAX);
    for (size_t i = 0; i < NELEM(many); i++) {
        many[i] = (struct wm_tunnel_mapping){.name = "m", .mode = "proxy"};
    }
    for (size_t i = 0; i < NELEM(rules); i++) {
        rules[i] = (struct wm_tunnel_rule){true, '+', "x-a", "1"};
    }
    for (size_t i = 0; i < NELEM(big); i++) {
        big[i] = (struct wm_tunnel_mapping){
            .name = "m", .mode = "http", .local_addr = "127.0.0.1:1", .domain = long_domain};
    }
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tunnel_opts o = rows[i].o;
        struct wm_tunnel_settings *s = (struct wm_tunnel_settings *)&o; /* not NULL */
        struct wm_err e;

        o.proxy = opts().proxy;
        o.bind = "127.0.0.1:18090";
        if (wm_tunnel_prepare(&o, &s, &e) != -1 || s != NULL) {
            fail_msg("%s: prepared", rows[i].what);
        }
        if (strcmp(e.key, rows[i].key) != 0 || strstr(e.msg, rows[i].msg) == NULL) {
            fail_msg("%s: got %s: %s", rows[i].what, e.key, e.msg);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_roles_and_listeners),
        cmocka_unit_test(test_allow_ports_copied),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
