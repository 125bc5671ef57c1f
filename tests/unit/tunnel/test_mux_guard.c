/*
 * tests/unit/tunnel/test_mux_guard.c - the carrier's lifetime (core/guard.h
 * in tunnel/mux.c): callbacks that end a carrier from inside its own
 * callbacks (a stream's open, a socket stream's end, the registration
 * answer, the closed callback itself). The carrier must be freed once, after
 * the outermost callback returned: the `closed` callback counts the frees,
 * and ASan turns any use after the free into a failure.
 *
 * Two carriers joined by a socketpair run in one event loop, as in
 * test_mux_sock.c.
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
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/util.h"
#include "core/worker.h"
#include "tunnel/mux.h"

/* What a callback does to its own carrier. */
enum action {
    ACT_NONE = 0,
    ACT_CLOSE,   /* wm_tun_close(t, WM_TUN_ERR_NONE, ...): ends at once */
    ACT_GOAWAY,  /* wm_tun_close(t, WM_TUN_ERR_SHUTDOWN, ...): flush GOAWAY, then end */
    ACT_DESTROY, /* wm_tun_destroy(t) */
};

struct side {
    struct wm_tun *t;
    int ready;
    int closed;       /* closed callbacks: the free, must stay <= 1 */
    bool in_cb;       /* inside a callback that ended the carrier */
    bool closed_in_cb; /* the closed callback ran while in_cb (too early) */
};

struct fixture {
    struct event_base *base;
    struct side srv;
    struct side cli;
    /* server: on an incoming stream */
    enum action on_open;
    int accept_fd; /* >= 0: accept attached to it, else a pair stream */
    int accept_idle;
    int gone;      /* pending stream gone callbacks */
    /* client: answer to REGISTER; the end of a socket stream */
    enum action on_register;
    enum action on_end;
    struct side *end_side; /* whose carrier on_end acts on */
    int ends;
    /* closed callback: act on the carrier being freed */
    enum action on_closed;
    /* client's open callback */
    int opened;
    uint8_t open_code;
    struct bufferevent *outer;
};

static struct fixture *F;

static void act(struct side *sd, enum action a)
{
    switch (a) {
    case ACT_CLOSE:
        wm_tun_close(sd->t, WM_TUN_ERR_NONE, "closed by a test callback");
        break;
    case ACT_GOAWAY:
        wm_tun_close(sd->t, WM_TUN_ERR_SHUTDOWN, "goaway from a test callback");
        break;
    case ACT_DESTROY:
        wm_tun_destroy(sd->t);
        sd->t = NULL; /* no closed callback after destroy */
        break;
    case ACT_NONE:
        break;
    }
}

static void nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop until *flag (an int) reaches want or ms elapse. */
static bool run_until(const int *flag, int want, int ms)
{
    struct event *t = event_new(F->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    uint64_t end = wm_now_ms() + (uint64_t)ms;

    event_add(t, &tv);
    while (*flag < want && wm_now_ms() < end) {
        event_base_loop(F->base, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag >= want;
}

static void run_for(int ms)
{
    int never = 0;

    run_until(&never, 1, ms);
}

static struct side *side_of(struct wm_tun *t)
{
    return t == F->srv.t ? &F->srv : &F->cli;
}

static void on_ready(struct wm_tun *t, void *arg)
{
    (void)arg;
    side_of(t)->ready++;
}

static void pending_gone(void *arg)
{
    (void)arg;
    F->gone++;
}

static void on_srv_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                        void *arg)
{
    struct fixture *f = arg;

    (void)o;
    if (f->on_open != ACT_NONE) {
        f->srv.in_cb = true;
        act(&f->srv, f->on_open);
        /* t is still valid memory here: the free waits for the carrier's
         * outermost callback to return. s too: it is reset at the free. */
        assert_true(wm_tun_stream_id(s) > 0);
        wm_tun_stream_watch(s, pending_gone, f);
        f->srv.in_cb = false;
        return;
    }
    if (f->accept_fd >= 0) {
        assert_int_equal(wm_tun_stream_accept_sock(s, f->accept_fd, f->accept_idle, NULL, NULL),
                         0);
        return;
    }
    struct bufferevent *b = wm_tun_stream_accept(s);
    assert_non_null(b);
    wm_bev_free(b);
    (void)t;
}

static void on_register_result(struct wm_tun *t, const uint8_t *ok,
                               const struct wm_tun_str *reason, size_t n, void *arg)
{
    struct fixture *f = arg;

    (void)t;
    (void)ok;
    (void)reason;
    (void)n;
    if (f->on_register != ACT_NONE) {
        f->cli.in_cb = true;
        act(&f->cli, f->on_register);
        f->cli.in_cb = false;
    }
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    struct fixture *f = arg;
    struct side *sd = side_of(t);

    (void)why;
    sd->closed++;
    if (sd->in_cb) {
        sd->closed_in_cb = true;
    }
    /* Closing or destroying the carrier being freed is a no-op. */
    if (f->on_closed != ACT_NONE) {
        wm_tun_close(t, WM_TUN_ERR_NONE, "again");
        wm_tun_close(t, WM_TUN_ERR_SHUTDOWN, "again");
        wm_tun_destroy(t);
        assert_null(wm_tun_open(t, &(struct wm_tun_open){WM_TUN_OPEN_PROXY, {"", 0}, {"", 0}},
                                NULL, NULL));
    }
    sd->t = NULL; /* freed after return */
}

static const struct wm_tun_cbs srv_cbs = {
    .ready = on_ready, .open = on_srv_open, .closed = on_closed};
static const struct wm_tun_cbs cli_cbs = {
    .ready = on_ready, .register_result = on_register_result, .closed = on_closed};

/* Two carriers; returns once both are ready (unless the test's register
 * action stops the client first). */
static void start(struct fixture *f)
{
    int sv[2];
    struct wm_tun_conf sc = {.role = WM_TUN_ROLE_SERVER};
    struct wm_tun_conf cc = {.role = WM_TUN_ROLE_CLIENT, .name = "unit"};

    pair(sv);
    struct bufferevent *bs = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bc = bufferevent_socket_new(f->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bs);
    assert_non_null(bc);
    f->srv.t = wm_tun_new(wm_worker_get(0), bs, &sc, &srv_cbs, f, 1);
    f->cli.t = wm_tun_new(wm_worker_get(0), bc, &cc, &cli_cbs, f, 2);
    assert_non_null(f->srv.t);
    assert_non_null(f->cli.t);
    if (f->on_register == ACT_NONE) {
        assert_true(run_until(&f->cli.ready, 1, 3000));
        assert_int_equal(f->srv.ready, 1);
    }
}

static int setup(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    f.accept_fd = -1;
    F = &f;
    assert_int_equal(wm_workers_init(1), 0);
    f.base = wm_worker_base(wm_worker_get(0));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f->cli.t != NULL) {
        wm_tun_destroy(f->cli.t);
    }
    if (f->srv.t != NULL) {
        wm_tun_destroy(f->srv.t);
    }
    if (f->outer != NULL) {
        wm_bev_free(f->outer);
    }
    wm_workers_join();
    return 0;
}

static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct fixture *f = arg;

    (void)reason;
    f->opened++;
    f->open_code = code;
    f->outer = outer;
}

static void open_stream(struct fixture *f)
{
    struct wm_tun_open o = {WM_TUN_OPEN_PROXY, {"", 0}, {"test", 4}};

    assert_non_null(wm_tun_open(f->cli.t, &o, open_cb, f));
}

/* The server's open callback ends its carrier: the pending stream and the
 * carrier are freed once, after the callback (and the carrier read that
 * called it) returned; the client hears the carrier go. */
static void test_close_inside_open(void **state)
{
    struct fixture *f = *state;

    start(f);
    f->on_open = ACT_CLOSE;
    open_stream(f);
    assert_true(run_until(&f->srv.closed, 1, 3000));
    assert_false(f->srv.closed_in_cb);
    assert_int_equal(f->gone, 1); /* the watched pending stream went away */
    assert_true(run_until(&f->cli.closed, 1, 3000));
    assert_int_equal(f->opened, 1);
    assert_int_equal(f->open_code, WM_TUN_OPEN_UNREACHABLE);
    run_for(20);
    assert_int_equal(f->srv.closed, 1);
    assert_int_equal(f->cli.closed, 1);
}

/* Same with a GOAWAY to flush first (TUN_CLOSING): the end comes later,
 * from the write callback, still once. */
static void test_goaway_inside_open(void **state)
{
    struct fixture *f = *state;

    start(f);
    f->on_open = ACT_GOAWAY;
    open_stream(f);
    assert_true(run_until(&f->srv.closed, 1, 3000));
    assert_false(f->srv.closed_in_cb);
    assert_true(run_until(&f->cli.closed, 1, 3000));
    run_for(20);
    assert_int_equal(f->srv.closed, 1);
    assert_int_equal(f->cli.closed, 1);
    assert_int_equal(f->gone, 1);
}

/* The owner destroys the carrier from inside its open callback: no closed
 * callback, no use of the freed carrier once the callback returns. */
static void test_destroy_inside_open(void **state)
{
    struct fixture *f = *state;

    start(f);
    f->on_open = ACT_DESTROY;
    open_stream(f);
    assert_true(run_until(&f->cli.closed, 1, 3000));
    assert_null(f->srv.t);
    assert_int_equal(f->srv.closed, 0); /* destroy: no callbacks */
    assert_int_equal(f->gone, 1);       /* but the stream's watcher hears it */
}

/* The client's registration answer closes the carrier: it never becomes
 * ready (the handshake does not go on over a closed carrier). */
static void test_close_inside_register_result(void **state)
{
    struct fixture *f = *state;

    f->on_register = ACT_GOAWAY;
    start(f);
    assert_true(run_until(&f->cli.closed, 1, 3000));
    assert_false(f->cli.closed_in_cb);
    assert_int_equal(f->cli.ready, 0);
    assert_true(run_until(&f->srv.closed, 1, 3000));
    run_for(20);
    assert_int_equal(f->cli.closed, 1);
}

/* The closed callback closes and destroys its own carrier (and tries to
 * open a stream on it): all no-ops, one free. */
static void test_close_inside_closed(void **state)
{
    struct fixture *f = *state;

    start(f);
    f->on_closed = ACT_CLOSE;
    wm_tun_close(f->cli.t, WM_TUN_ERR_NONE, "test"); /* from outside: now */
    assert_int_equal(f->cli.closed, 1);
    assert_true(run_until(&f->srv.closed, 1, 3000));
    run_for(20);
    assert_int_equal(f->cli.closed, 1);
    assert_int_equal(f->srv.closed, 1);
}

static void end_cb(void *arg, const struct wm_tun_sock_result *r)
{
    struct fixture *f = arg;

    (void)r;
    f->ends++;
    if (f->on_end != ACT_NONE && f->end_side->t != NULL) {
        f->end_side->in_cb = true;
        act(f->end_side, f->on_end);
        f->end_side->in_cb = false;
    }
}

static void sock_open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct fixture *f = arg;

    (void)reason;
    assert_null(outer);
    f->opened++;
    f->open_code = code;
}

/* A socket stream's end callback (run from inside a stream's or the
 * carrier's callback) ends the carrier. */
static void sock_end_closes(struct fixture *f, enum action a, int idle_ms)
{
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {"m", 1}, {"test", 4}};
    int x[2], y[2];
    char big[65536];

    start(f);
    pair(x);
    pair(y);
    f->accept_fd = y[1];
    f->on_end = a;
    f->end_side = &f->cli;
    assert_non_null(wm_tun_open_sock(f->cli.t, &o, x[1], idle_ms, sock_open_cb, end_cb, f));
    assert_true(run_until(&f->opened, 1, 3000));
    assert_int_equal(f->open_code, WM_TUN_OPEN_OK);
    if (idle_ms == 0) {
        /* the client's application goes; the server side keeps sending:
         * the client's write to x[1] fails (socket-error) */
        close(x[0]);
        x[0] = -1;
        memset(big, 7, sizeof(big));
        for (int i = 0; i < 200 && f->ends == 0; i++) {
            (void)write(y[0], big, sizeof(big));
            run_for(2);
        }
    }
    assert_true(run_until(&f->ends, 1, 5000));
    if (a != ACT_DESTROY) {
        assert_true(run_until(&f->cli.closed, 1, 3000));
        assert_false(f->cli.closed_in_cb);
    } else {
        assert_null(f->cli.t);
    }
    assert_true(run_until(&f->srv.closed, 1, 3000));
    run_for(20);
    assert_true(f->cli.closed <= 1);
    assert_int_equal(f->srv.closed, 1);
    if (x[0] >= 0) {
        close(x[0]);
    }
    close(y[0]);
}

static void test_sock_error_end_closes(void **state)
{
    sock_end_closes(*state, ACT_CLOSE, 0);
}

static void test_sock_error_end_destroys(void **state)
{
    sock_end_closes(*state, ACT_DESTROY, 0);
}

/* From the idle sweep (the carrier's tick). */
static void test_idle_end_closes(void **state)
{
    sock_end_closes(*state, ACT_CLOSE, 300);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the program does: EPIPE, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_close_inside_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_inside_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_inside_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_register_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sock_error_end_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sock_error_end_destroys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_end_closes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
