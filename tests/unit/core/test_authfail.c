/* core/authfail: delays grow after the free failures, a hold starts at
 * the limit, a success forgets, peers that are not IP are never tracked,
 * and a full table reuses the stalest slot. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/authfail.h"
#include "core/limits.h"

static struct sockaddr_in v4(uint32_t host_order)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(host_order);
    return a;
}

static int reset(void **state)
{
    (void)state;
    wm_authfail_reset();
    return 0;
}

static void test_delays_then_hold(void **state)
{
    struct sockaddr_in a = v4(0x0a000001);
    const struct sockaddr *sa = (const struct sockaddr *)&a;
    struct wm_authfail_stats st;

    (void)state;
    for (int i = 1; i <= WM_AUTHFAIL_BAN_AFTER; i++) {
        int want = i <= WM_AUTHFAIL_FREE ? 0 : (i - WM_AUTHFAIL_FREE) * WM_AUTHFAIL_STEP_MS;
        want = want > WM_AUTHFAIL_MAX_DELAY_MS ? WM_AUTHFAIL_MAX_DELAY_MS : want;
        assert_int_equal(wm_authfail_check(sa), 0);
        assert_int_equal(wm_authfail_record(sa, false), want);
    }
    assert_int_equal(wm_authfail_check(sa), -1);
    /* a success during the hold does not lift it */
    wm_authfail_record(sa, true);
    assert_int_equal(wm_authfail_check(sa), -1);
    wm_authfail_get_stats(&st);
    assert_int_equal(st.failures, WM_AUTHFAIL_BAN_AFTER);
    assert_int_equal(st.bans, 1);
    assert_int_equal(st.refused, 2);
    /* another address is not affected; IPv4-mapped IPv6 is the same one */
    struct sockaddr_in b = v4(0x0a000002);
    assert_int_equal(wm_authfail_check((struct sockaddr *)&b), 0);
    struct sockaddr_in6 m;
    memset(&m, 0, sizeof(m));
    m.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &m.sin6_addr);
    assert_int_equal(wm_authfail_check((struct sockaddr *)&m), -1);
}

static void test_success_forgets(void **state)
{
    struct sockaddr_in a = v4(0x0a000003);
    const struct sockaddr *sa = (const struct sockaddr *)&a;

    (void)state;
    for (int i = 0; i < WM_AUTHFAIL_FREE + 2; i++) {
        wm_authfail_record(sa, false);
    }
    wm_authfail_record(sa, true);
    assert_int_equal(wm_authfail_record(sa, false), 0); /* counting starts over */
}

static void test_untracked_and_eviction(void **state)
{
    struct sockaddr un = {.sa_family = AF_UNIX};

    (void)state;
    for (int i = 0; i < 2 * WM_AUTHFAIL_BAN_AFTER; i++) {
        assert_int_equal(wm_authfail_record(&un, false), 0);
        assert_int_equal(wm_authfail_record(NULL, false), 0);
    }
    assert_int_equal(wm_authfail_check(&un), 0);
    /* more addresses than slots: nothing breaks, the newest are tracked */
    for (uint32_t i = 0; i < WM_AUTHFAIL_TABLE + 10; i++) {
        struct sockaddr_in a = v4(0x0b000000 + i);
        wm_authfail_record((struct sockaddr *)&a, false);
    }
    struct sockaddr_in last = v4(0x0b000000 + WM_AUTHFAIL_TABLE + 9);
    for (int i = 1; i < WM_AUTHFAIL_BAN_AFTER; i++) {
        wm_authfail_record((struct sockaddr *)&last, false);
    }
    assert_int_equal(wm_authfail_check((struct sockaddr *)&last), -1);
}

/* A full table never drops an address on hold while it can drop one that
 * is not: failures from more addresses than slots (an IPv6 attacker has as
 * many as it likes) must not lift a hold. */
static void test_eviction_keeps_holds(void **state)
{
    struct sockaddr_in held = v4(0x0c000001);

    (void)state;
    for (int i = 0; i < WM_AUTHFAIL_BAN_AFTER; i++) {
        wm_authfail_record((struct sockaddr *)&held, false);
    }
    assert_int_equal(wm_authfail_check((struct sockaddr *)&held), -1);
    for (uint32_t i = 0; i < 2 * WM_AUTHFAIL_TABLE; i++) {
        struct sockaddr_in a = v4(0x0d000000 + i);
        wm_authfail_record((struct sockaddr *)&a, false);
    }
    assert_int_equal(wm_authfail_check((struct sockaddr *)&held), -1);
    /* the newest of the others is tracked: its failures still count */
    struct sockaddr_in last = v4(0x0d000000 + 2 * WM_AUTHFAIL_TABLE - 1);
    for (int i = 1; i < WM_AUTHFAIL_BAN_AFTER; i++) {
        wm_authfail_record((struct sockaddr *)&last, false);
    }
    assert_int_equal(wm_authfail_check((struct sockaddr *)&last), -1);
}

static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 a;

    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
    return a;
}

/* An IPv6 client counts per /64: one that changes its low 64 bits for
 * every attempt is held all the same; the next /64 is another client. */
static void test_ipv6_per_64(void **state)
{
    char text[64];

    (void)state;
    for (int i = 0; i < WM_AUTHFAIL_BAN_AFTER; i++) {
        snprintf(text, sizeof(text), "2001:db8:1:2:%x::%x", i + 1, 7 * i + 3);
        struct sockaddr_in6 a = v6(text);
        assert_int_equal(wm_authfail_check((struct sockaddr *)&a), 0);
        wm_authfail_record((struct sockaddr *)&a, false);
    }
    struct sockaddr_in6 other_host = v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
    struct sockaddr_in6 next_net = v6("2001:db8:1:3::1");
    assert_int_equal(wm_authfail_check((struct sockaddr *)&other_host), -1);
    assert_int_equal(wm_authfail_check((struct sockaddr *)&next_net), 0);
}

/* [cluster]: the sharing hooks see each failure (and a success after
 * failures); what the cluster reports raises the count and holds. */
static int hook_fails, hook_held, hook_forgiven;

static void on_failed(const unsigned char ip[16], bool held)
{
    (void)ip;
    hook_fails++;
    hook_held += held;
}

static void on_forgive(const unsigned char ip[16])
{
    (void)ip;
    hook_forgiven++;
}

static void test_shared(void **state)
{
    static const struct wm_authfail_shared h = {on_failed, on_forgive};
    struct sockaddr_in a = v4(0x0a000004);
    const struct sockaddr *sa = (const struct sockaddr *)&a;
    unsigned char ip[16];
    struct wm_authfail_stats st;

    (void)state;
    wm_authfail_set_shared(&h);
    wm_authfail_record(sa, false);
    wm_authfail_record(sa, true);
    wm_authfail_record(sa, true); /* nothing to forgive any more */
    assert_int_equal(hook_fails, 1);
    assert_int_equal(hook_forgiven, 1);
    /* the other nodes saw 6 failures: the next one here waits as the 7th */
    inet_pton(AF_INET6, "::ffff:10.0.0.4", ip);
    wm_authfail_learn(ip, 6, 0);
    assert_int_equal(wm_authfail_check(sa), 0);
    assert_int_equal(wm_authfail_record(sa, false), (7 - WM_AUTHFAIL_FREE) * WM_AUTHFAIL_STEP_MS);
    /* the cluster holds it */
    wm_authfail_learn(ip, 0, 5000);
    assert_int_equal(wm_authfail_check(sa), -1);
    wm_authfail_learn(ip, 0, 5000); /* announced twice: one hold */
    wm_authfail_get_stats(&st);
    assert_int_equal(st.shared_holds, 1);
    assert_int_equal(st.bans, 0);
    wm_authfail_set_shared(NULL);
    wm_authfail_record(sa, false);
    assert_int_equal(hook_fails, 2);
    assert_int_equal(hook_held, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_delays_then_hold, reset),
        cmocka_unit_test_setup(test_success_forgets, reset),
        cmocka_unit_test_setup(test_untracked_and_eviction, reset),
        cmocka_unit_test_setup(test_eviction_keeps_holds, reset),
        cmocka_unit_test_setup(test_ipv6_per_64, reset),
        cmocka_unit_test_setup(test_shared, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
