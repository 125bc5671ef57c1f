/* reverse/pool: the worker's idle upstream connections, kept per key
 * (their count checked against the bound, not counted by a walk: that is
 * for the benchmark to show). A key keeps at most its keepalive bound (the
 * next put closes the connection), the newest is taken first, keys do not
 * share their bounds, emptied keys go, and a connection with unread bytes
 * is never kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "reverse/rev_int.h"

struct conn {
    struct bufferevent *bev; /* ours, given to the pool */
    int peer;                /* the other end: reads EOF once bev is freed */
};

static struct event_base *base;

static struct conn new_conn(void)
{
    int sv[2];
    struct conn c;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    c.bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(c.bev);
    c.peer = sv[1];
    return c;
}

/* Has the pool closed c's socket? (the peer reads EOF, not EAGAIN; a
 * freed bufferevent is finalized by the loop) */
static bool closed(const struct conn *c)
{
    char b;

    event_base_loop(base, EVLOOP_NONBLOCK);
    return read(c->peer, &b, 1) == 0;
}

static int setup(void **state)
{
    (void)state;
    base = event_base_new();
    return base == NULL;
}

static int teardown(void **state)
{
    (void)state;
    rv_pool_free_all();
    event_base_free(base);
    return 0;
}

static void test_bound_per_key_and_newest_first(void **state)
{
    struct conn c[5];

    (void)state;
    for (int i = 0; i < 5; i++) {
        c[i] = new_conn();
        rv_pool_put("127.0.0.1:80", c[i].bev, 3, 60000);
    }
    assert_false(closed(&c[0]));
    assert_false(closed(&c[2]));
    assert_true(closed(&c[3])); /* over the bound of 3: closed at once */
    assert_true(closed(&c[4]));
    /* another key has its own bound */
    struct conn o = new_conn();
    rv_pool_put("127.0.0.1:81", o.bev, 3, 60000);
    assert_false(closed(&o));
    /* newest first, then none */
    assert_ptr_equal(rv_pool_take("127.0.0.1:80"), c[2].bev);
    assert_ptr_equal(rv_pool_take("127.0.0.1:80"), c[1].bev);
    assert_ptr_equal(rv_pool_take("127.0.0.1:80"), c[0].bev);
    assert_null(rv_pool_take("127.0.0.1:80"));
    assert_null(rv_pool_take("127.0.0.1:8")); /* a prefix is another key */
    /* taken, the key has room again */
    struct conn again = new_conn();
    rv_pool_put("127.0.0.1:80", again.bev, 3, 60000);
    assert_false(closed(&again));
    for (int i = 0; i < 3; i++) {
        bufferevent_free(c[i].bev);
    }
    rv_pool_free_all(); /* closes what it still holds */
    assert_true(closed(&again));
    assert_true(closed(&o));
    for (int i = 0; i < 5; i++) {
        close(c[i].peer);
    }
    close(o.peer);
    close(again.peer);
}

/* Many keys, each used once: their emptied groups are swept, the
 * connections still held keep theirs. */
static void test_many_keys(void **state)
{
    enum { NK = 600 };
    static struct conn c[NK];
    char key[32];

    (void)state;
    for (int i = 0; i < NK; i++) {
        snprintf(key, sizeof(key), "10.0.%d.%d:80", i / 256, i % 256);
        c[i] = new_conn();
        rv_pool_put(key, c[i].bev, 1, 60000);
        if (i % 2 == 0) {
            assert_ptr_equal(rv_pool_take(key), c[i].bev);
            bufferevent_free(c[i].bev);
        }
    }
    for (int i = 1; i < NK; i += 2) {
        snprintf(key, sizeof(key), "10.0.%d.%d:80", i / 256, i % 256);
        assert_false(closed(&c[i]));
        assert_ptr_equal(rv_pool_take(key), c[i].bev);
        bufferevent_free(c[i].bev);
    }
    for (int i = 0; i < NK; i++) {
        close(c[i].peer);
    }
}

/* A connection with unread bytes (a stray answer) is never kept. */
static void test_bytes_waiting_not_kept(void **state)
{
    struct conn c = new_conn();

    (void)state;
    assert_int_equal(write(c.peer, "x", 1), 1);
    bufferevent_enable(c.bev, EV_READ);
    event_base_loop(base, EVLOOP_NONBLOCK);
    rv_pool_put("127.0.0.1:80", c.bev, 8, 60000);
    assert_true(closed(&c));
    assert_null(rv_pool_take("127.0.0.1:80"));
    close(c.peer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bound_per_key_and_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_waiting_not_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
