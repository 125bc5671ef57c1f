/* core/authfail: delays grow after the free failures, a hold starts at
 * the limit, a success forgets, peers that are not IP are never tracked,
 * and a full table reuses the stalest slot. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_delays_then_hold, reset),
        cmocka_unit_test_setup(test_success_forgets, reset),
        cmocka_unit_test_setup(test_untracked_and_eviction, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
