/* reverse/upstream: picking a server. round_robin gives every server its
 * turn (past the 64th too), ip_hash follows the weights, and a server that
 * failed a request is not taken again for it, whatever its index. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "reverse/rev_int.h"

struct fixture {
    struct wm_arena *a;
    struct rv_upstream u;
    struct rv_server s[100];
    struct rv_health h[100];
};

static struct fixture *make(size_t n, enum rv_balance bal, const int *weights)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->a = wm_arena_new();
    assert_non_null(f->a);
    for (size_t i = 0; i < n; i++) {
        f->s[i].weight = weights != NULL ? weights[i] : 100;
        f->s[i].fall_times = 2;
        f->s[i].h = &f->h[i];
    }
    f->u.name = "u";
    f->u.servers = f->s;
    f->u.nservers = n;
    f->u.balance = bal;
    assert_int_equal(rv_rr_sequence(&f->u, f->a), 0);
    return f;
}

static void drop(struct fixture *f)
{
    wm_arena_free(f->a);
    free(f);
}

static struct sockaddr_in client(int net)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x0a000001u | ((uint32_t)net << 8)); /* 10.x.y.1: its own /24 */
    return a;
}

static void test_round_robin_reaches_every_server(void **state)
{
    struct fixture *f = make(70, RV_BAL_RR, NULL);
    int seen[70] = {0};

    (void)state;
    for (int k = 0; k < 140; k++) {
        struct rv_server *s = rv_upstream_pick(&f->u, NULL, 0);
        assert_non_null(s);
        seen[s - f->s]++;
    }
    for (int i = 0; i < 70; i++) {
        assert_int_equal(seen[i], 2);
    }
    drop(f);
}

static void test_ip_hash_follows_weights(void **state)
{
    static const int w[2] = {300, 100};
    struct fixture *f = make(2, RV_BAL_IP_HASH, w);
    int first = 0;

    (void)state;
    for (int net = 0; net < 4000; net++) {
        struct sockaddr_in c = client(net);
        struct rv_server *s = rv_upstream_pick(&f->u, (struct sockaddr *)&c, 0);
        assert_non_null(s);
        first += s == &f->s[0];
        /* the same client, the same server */
        assert_ptr_equal(rv_upstream_pick(&f->u, (struct sockaddr *)&c, 0), s);
    }
    assert_in_range(first, 2700, 3300); /* 3:1 */
    drop(f);
}

static void test_tried_server_is_not_taken_again(void **state)
{
    struct fixture *f = make(70, RV_BAL_IP_HASH, NULL);
    int checked = 0;

    (void)state;
    for (int net = 0; net < 2000 && checked < 20; net++) {
        struct sockaddr_in c = client(net);
        struct rv_server *s = rv_upstream_pick(&f->u, (struct sockaddr *)&c, 0);
        size_t i = (size_t)(s - f->s);
        if (i < 64) {
            continue; /* the servers past the 64th are the case */
        }
        uint64_t tried = 1ULL << (i % 64);
        struct rv_server *again = rv_upstream_pick(&f->u, (struct sockaddr *)&c, tried);
        assert_non_null(again);
        assert_ptr_not_equal(again, s);
        checked++;
    }
    assert_int_equal(checked, 20);
    drop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_reaches_every_server),
        cmocka_unit_test(test_ip_hash_follows_weights),
        cmocka_unit_test(test_tried_server_is_not_taken_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
