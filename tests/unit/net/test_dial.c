/*
 * tests/unit/net/test_dial.c - the dialer (net/dial.h): addresses tried in
 * turn, the status when all fail, the overall timeout and its sharing
 * between addresses, cancel. Names resolve through a hosts file loaded into
 * the worker's resolver; the worker's loop runs on the test's thread.
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
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"

#define WAIT_MS 10000

struct result {
    bool done;
    int fd;
    enum wm_dial_status st;
    char peer[INET_ADDRSTRLEN];
};

static struct wm_worker *W;
static char hosts_path[64];

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                    socklen_t peerlen, void *arg)
{
    struct result *r = arg;

    (void)peerlen;
    assert_false(r->done);
    r->done = true;
    r->fd = fd;
    r->st = st;
    if (peer != NULL && peer->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, r->peer,
                  sizeof(r->peer));
    }
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the worker's loop here until *flag or ms elapse. */
static bool run_until(const bool *flag, int ms)
{
    struct event_base *base = wm_worker_base(W);
    struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    uint64_t end = wm_now_ms() + (uint64_t)ms;

    event_add(t, &tv);
    while (!*flag && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag;
}

static void dial(const char *host, uint16_t port, int timeout_ms, struct result *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    assert_non_null(wm_dial_start(W, host, port, timeout_ms, dial_cb, r));
    assert_false(r->done); /* never from inside start */
    assert_true(run_until(&r->done, WAIT_MS));
    if (r->fd >= 0) {
        close(r->fd);
    }
}

/* A listening socket on ip:port (port 0: any); returns the fd, *port set. */
static int listen_on(const char *ip, uint16_t *port, int backlog)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(*port)};
    socklen_t sl = sizeof(sa);
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    assert_int_equal(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, backlog), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return l;
}

/* A port on which nothing listens on 127.0.0.0/8 addresses used here. */
static uint16_t closed_port(void)
{
    uint16_t port = 0;
    int l = listen_on("127.0.0.1", &port, 1);

    close(l);
    return port;
}

/* Fill the accept queue of l (backlog 0) so that new SYNs are dropped and
 * a connect hangs. The fillers are returned in f[0..2]. */
static void fill_backlog(int l, int f[3])
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    struct pollfd p[3];

    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    for (int i = 0; i < 3; i++) {
        f[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(f[i] >= 0);
        assert_true(connect(f[i], (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
                    errno == EINPROGRESS);
        p[i].fd = f[i];
        p[i].events = POLLOUT;
    }
    /* Full once one handshake completed (a backlog of 0 holds one). */
    assert_true(poll(p, 3, WAIT_MS) > 0);
}

static int setup(void **state)
{
    FILE *f;
    int fd;

    (void)state;
    snprintf(hosts_path, sizeof(hosts_path), "/tmp/wm-test-dial-XXXXXX");
    fd = mkstemp(hosts_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    /* Entries in the order the resolver gives them back. */
    fputs("127.0.0.2 fallback.test\n"
          "127.0.0.1 fallback.test\n"
          "127.0.0.3 order.test\n"
          "127.0.0.1 order.test\n"
          "127.0.0.2 refused.test\n"
          "127.0.0.3 refused.test\n"
          "127.0.0.4 slow.test\n"
          "127.0.0.1 slow.test\n",
          f);
    fclose(f);
    assert_int_equal(wm_workers_init(1), 0); /* not started: we run its loop */
    W = wm_worker_get(0);
    assert_int_equal(evdns_base_load_hosts(wm_worker_dns(W), hosts_path), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    wm_workers_join();
    unlink(hosts_path);
    return 0;
}

/* The first address is refused, the second answers: the dial succeeds on
 * the second. (order.test shows the addresses are tried in that order.) */
static void test_first_refused_second_works(void **state)
{
    struct result r;
    uint16_t port = 0;
    int l1 = listen_on("127.0.0.1", &port, 8);
    int l3 = listen_on("127.0.0.3", &port, 8);

    (void)state;
    dial("order.test", port, 5000, &r);
    assert_int_equal(r.st, WM_DIAL_OK);
    assert_string_equal(r.peer, "127.0.0.3");
    close(l3);
    dial("fallback.test", port, 5000, &r);
    assert_int_equal(r.st, WM_DIAL_OK);
    assert_true(r.fd >= 0);
    assert_string_equal(r.peer, "127.0.0.1");
    close(l1);
}

/* Every address refused: one error status, no fd. An IP literal too. */
static void test_all_refused(void **state)
{
    struct result r;
    uint16_t port = closed_port();

    (void)state;
    dial("refused.test", port, 5000, &r);
    assert_int_equal(r.st, WM_DIAL_REFUSED);
    assert_int_equal(r.fd, -1);
    dial("127.0.0.1", port, 5000, &r);
    assert_int_equal(r.st, WM_DIAL_REFUSED);
    assert_int_equal(r.fd, -1);
    assert_string_equal(wm_dial_status_str(r.st), "connection refused");
}

/* No answer at all: WM_DIAL_TIMEOUT once the timeout passed. */
static void test_timeout(void **state)
{
    struct result r;
    uint16_t port = 0;
    int l = listen_on("127.0.0.1", &port, 0);
    int f[3];

    (void)state;
    fill_backlog(l, f);
    uint64_t t0 = wm_now_ms();
    dial("127.0.0.1", port, 300, &r);
    uint64_t took = wm_now_ms() - t0;
    assert_int_equal(r.st, WM_DIAL_TIMEOUT);
    assert_int_equal(r.fd, -1);
    assert_true(took >= 250);
    assert_true(took < 5000);
    for (int i = 0; i < 3; i++) {
        close(f[i]);
    }
    close(l);
}

/* A black-holed first address takes only its share of the time: the
 * second still gets dialed within the overall timeout. */
static void test_slow_first_address_leaves_time_for_the_next(void **state)
{
    struct result r;
    uint16_t port = 0;
    int l1 = listen_on("127.0.0.1", &port, 8);
    int l4 = listen_on("127.0.0.4", &port, 0);
    int f[3];

    (void)state;
    fill_backlog(l4, f);
    dial("slow.test", port, 2000, &r);
    assert_int_equal(r.st, WM_DIAL_OK);
    assert_string_equal(r.peer, "127.0.0.1");
    for (int i = 0; i < 3; i++) {
        close(f[i]);
    }
    close(l4);
    close(l1);
}

/* Cancelled: the callback never runs, nothing leaks (ASan checks). */
static void test_cancel(void **state)
{
    struct result r;
    uint16_t port = 0;
    int l = listen_on("127.0.0.1", &port, 0);
    int f[3];

    (void)state;
    fill_backlog(l, f);
    memset(&r, 0, sizeof(r));
    struct wm_dial *d = wm_dial_start(W, "slow.test", port, 5000, dial_cb, &r);
    assert_non_null(d);
    run_until(&r.done, 50);
    assert_false(r.done);
    wm_dial_cancel(d);
    run_until(&r.done, 50);
    assert_false(r.done);
    /* Cancelled before the loop ran at all. */
    d = wm_dial_start(W, "127.0.0.1", port, 5000, dial_cb, &r);
    assert_non_null(d);
    wm_dial_cancel(d);
    run_until(&r.done, 50);
    assert_false(r.done);
    for (int i = 0; i < 3; i++) {
        close(f[i]);
    }
    close(l);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_refused_second_works, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_first_address_leaves_time_for_the_next, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
