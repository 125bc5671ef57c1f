/*
 * tests/unit/tunnel/test_mux_sock.c - socket-attached tunnel streams
 * (tunnel/mux.h wm_tun_open_sock / wm_tun_stream_accept_sock): two carriers
 * joined by a socketpair in one event loop, each stream end attached to one
 * end of another socketpair whose other end the test drives by hand.
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
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "core/worker.h"
#include "tunnel/mux.h"

struct end {
    bool done;
    struct wm_tun_sock_result r;
};

struct fixture {
    struct event_base *base;
    struct wm_tun *srv;
    struct wm_tun *cli;
    bool srv_ready;
    bool cli_ready;
    /* what the server does with the next incoming stream */
    bool refuse;
    int accept_fd;     /* attached on accept */
    int accept_idle;
    struct wm_tun_stream *accepted; /* the server's last accepted stream */
    struct end srv_end;
    /* client side */
    bool opened;
    uint8_t open_code;
    struct end cli_end;
};

static struct fixture *F;

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

/* A connected TCP pair on loopback with small buffers (v[1] sends, v[0]
 * reads), so a tunnel stream writing to v[1] keeps data of its own.
 * (TCP, unlike a socketpair, wakes a writer only after it found the
 * socket full: the case a writer that stops early gets stuck in.) */
static void tcp_pair(int v[2])
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int small = 4096;
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    v[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(v[0] >= 0);
    assert_int_equal(setsockopt(v[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(connect(v[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
    v[1] = accept(l, NULL, NULL);
    assert_true(v[1] >= 0);
    assert_int_equal(setsockopt(v[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    close(l);
    nonblock(v[0]);
    nonblock(v[1]);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop until *flag or ms elapse; returns *flag. */
static bool run_until(const bool *flag, int ms)
{
    struct event *t = event_new(F->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    uint64_t end = wm_now_ms() + (uint64_t)ms;

    event_add(t, &tv);
    while (!*flag && wm_now_ms() < end) {
        event_base_loop(F->base, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag;
}

static void run_for(int ms)
{
    bool never = false;

    run_until(&never, ms);
}

static void srv_end_cb(void *arg, const struct wm_tun_sock_result *r)
{
    struct end *e = arg;

    e->done = true;
    e->r = *r;
}

static void on_srv_ready(struct wm_tun *t, void *arg)
{
    (void)t;
    ((struct fixture *)arg)->srv_ready = true;
}

static void on_cli_ready(struct wm_tun *t, void *arg)
{
    (void)t;
    ((struct fixture *)arg)->cli_ready = true;
}

static void on_srv_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                        void *arg)
{
    struct fixture *f = arg;

    (void)t;
    (void)o;
    if (f->refuse) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_REFUSED, "test refuses");
        return;
    }
    assert_int_equal(wm_tun_stream_accept_sock(s, f->accept_fd, f->accept_idle, srv_end_cb,
                                               &f->srv_end),
                     0);
    f->accepted = s;
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    struct fixture *f = arg;

    (void)why;
    if (t == f->srv) {
        f->srv = NULL;
    } else if (t == f->cli) {
        f->cli = NULL;
    }
}

static const struct wm_tun_cbs srv_cbs = {
    .ready = on_srv_ready, .open = on_srv_open, .closed = on_closed};
static const struct wm_tun_cbs cli_cbs = {.ready = on_cli_ready, .closed = on_closed};

/* auto-tuning limits of the server (receiving) side; 0: the defaults */
static uint32_t setup_window_max;
static uint32_t setup_grow_budget;

static int setup(void **state)
{
    static struct fixture f;
    int sv[2];
    struct wm_tun_conf sc = {.role = WM_TUN_ROLE_SERVER, .window = 64 * 1024,
                             .window_max = setup_window_max,
                             .grow_budget = setup_grow_budget};
    struct wm_tun_conf cc = {.role = WM_TUN_ROLE_CLIENT, .name = "unit", .window = 64 * 1024};

    memset(&f, 0, sizeof(f));
    F = &f;
    assert_int_equal(wm_workers_init(1), 0);
    f.base = wm_worker_base(wm_worker_get(0));
    pair(sv);
    struct bufferevent *bs = bufferevent_socket_new(f.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bc = bufferevent_socket_new(f.base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bs);
    assert_non_null(bc);
    f.srv = wm_tun_new(wm_worker_get(0), bs, &sc, &srv_cbs, &f, 1);
    f.cli = wm_tun_new(wm_worker_get(0), bc, &cc, &cli_cbs, &f, 2);
    assert_non_null(f.srv);
    assert_non_null(f.cli);
    assert_true(run_until(&f.cli_ready, 3000));
    assert_true(f.srv_ready);
    *state = &f;
    return 0;
}

static int setup_small_budget(void **state)
{
    setup_window_max = 256 * 1024;
    setup_grow_budget = 512 * 1024;
    return setup(state);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    setup_window_max = 0;
    setup_grow_budget = 0;

    if (f->cli != NULL) {
        wm_tun_destroy(f->cli);
    }
    if (f->srv != NULL) {
        wm_tun_destroy(f->srv);
    }
    wm_workers_join();
    return 0;
}

/* arg is the end record (one argument serves both callbacks). */
static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct fixture *f = F;

    (void)reason;
    assert_ptr_equal(arg, &f->cli_end);
    assert_null(outer);
    f->opened = true;
    f->open_code = code;
}

/* Open a client stream attached to a[1] and accepted by the server attached
 * to b[1]; the test keeps a[0] and b[0]. */
static void open_pair(struct fixture *f, int a[2], int b[2], int idle_ms)
{
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {"m", 1}, {"test", 4}};

    pair(a);
    pair(b);
    f->accept_fd = b[1];
    f->accept_idle = 0;
    f->opened = false;
    assert_non_null(wm_tun_open_sock(f->cli, &o, a[1], idle_ms, open_cb, srv_end_cb,
                                     &f->cli_end));
    assert_true(run_until(&f->opened, 3000));
    assert_int_equal(f->open_code, WM_TUN_OPEN_OK);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)((i * 31u + seed) ^ (i >> 11));
    }
}

/* Move src -> dst through the tunnel: write what the socket takes, read
 * what arrives, run the loop in between. Returns bytes received. */
static size_t pump_bytes(int wfd, const uint8_t *src, size_t n, int rfd, uint8_t *dst,
                         int ms)
{
    size_t sent = 0;
    size_t got = 0;
    uint64_t end = wm_now_ms() + (uint64_t)ms;

    while (got < n && wm_now_ms() < end) {
        if (sent < n) {
            ssize_t w = write(wfd, src + sent, n - sent);
            if (w > 0) {
                sent += (size_t)w;
            }
        }
        for (;;) {
            ssize_t r = read(rfd, dst + got, n - got);
            if (r <= 0) {
                break;
            }
            got += (size_t)r;
        }
        run_for(2);
    }
    return got;
}

static void test_roundtrip_and_half_close(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    size_t up = 1024 * 1024 + 777;  /* more than the window: credit must flow */
    size_t down = 300 * 1024 + 5;
    uint8_t *src = malloc(up);
    uint8_t *dst = malloc(up);
    char buf[16];

    open_pair(f, a, b, 0);
    fill(src, up, 1);
    assert_int_equal(pump_bytes(a[0], src, up, b[0], dst, 10000), up);
    assert_memory_equal(src, dst, up);
    fill(src, down, 2);
    assert_int_equal(pump_bytes(b[0], src, down, a[0], dst, 10000), down);
    assert_memory_equal(src, dst, down);

    /* a's side ends its sending: b reads EOF, and can still answer */
    assert_int_equal(shutdown(a[0], SHUT_WR), 0);
    ssize_t r = -1;
    for (int i = 0; i < 500 && r != 0; i++) {
        run_for(5);
        r = read(b[0], buf, sizeof(buf));
    }
    assert_int_equal(r, 0);
    assert_false(f->cli_end.done);
    /* the last bytes and the FIN arrive together: one edge for both */
    assert_int_equal(write(b[0], "bye", 3), 3);
    assert_int_equal(shutdown(b[0], SHUT_WR), 0);
    r = -1;
    for (int i = 0; i < 500 && r != 3; i++) {
        run_for(5);
        r = read(a[0], buf, sizeof(buf));
    }
    assert_int_equal(r, 3);
    assert_memory_equal(buf, "bye", 3);
    assert_true(run_until(&f->cli_end.done, 3000));
    assert_true(run_until(&f->srv_end.done, 3000));
    assert_string_equal(f->cli_end.r.why, "closed");
    assert_string_equal(f->srv_end.r.why, "closed");
    assert_int_equal(f->cli_end.r.in, up);
    assert_int_equal(f->cli_end.r.out, down + 3);
    assert_int_equal(f->srv_end.r.in, down + 3);
    assert_int_equal(f->srv_end.r.out, up);
    assert_int_equal(read(a[0], buf, sizeof(buf)), 0);
    close(a[0]);
    close(b[0]);
    free(src);
    free(dst);
}

/* A reader that stops: the writer is blocked after about one window (plus
 * the socket buffers), then everything arrives intact once it reads. */
static void test_backpressure(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    size_t n = 16 * 1024 * 1024;
    uint8_t *src = malloc(n);
    uint8_t *dst = malloc(n);
    size_t sent = 0;

    open_pair(f, a, b, 0);
    fill(src, n, 3);
    for (int i = 0; i < 300; i++) {
        ssize_t w = write(a[0], src + sent, n - sent);
        if (w > 0) {
            sent += (size_t)w;
        }
        run_for(2);
    }
    assert_true(sent < n); /* blocked: nothing buffers without bound */
    size_t got = 0;
    uint64_t end = wm_now_ms() + 20000;
    while (got < n && wm_now_ms() < end) {
        ssize_t w = sent < n ? write(a[0], src + sent, n - sent) : 0;
        if (w > 0) {
            sent += (size_t)w;
        }
        ssize_t r;
        while ((r = read(b[0], dst + got, n - got)) > 0) {
            got += (size_t)r;
        }
        run_for(1);
    }
    assert_int_equal(got, n);
    assert_memory_equal(src, dst, n);
    close(a[0]);
    close(b[0]);
    free(src);
    free(dst);
}

static void test_refused_leaves_fd(void **state)
{
    struct fixture *f = *state;
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {"m", 1}, {"test", 4}};
    int a[2];

    pair(a);
    f->refuse = true;
    assert_non_null(wm_tun_open_sock(f->cli, &o, a[1], 0, open_cb, srv_end_cb, &f->cli_end));
    assert_true(run_until(&f->opened, 3000));
    assert_int_equal(f->open_code, WM_TUN_OPEN_REFUSED);
    assert_false(f->cli_end.done);
    assert_int_equal(fcntl(a[1], F_GETFD) >= 0, 1); /* still ours */
    close(a[0]);
    close(a[1]);
}

static void test_idle_timeout(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    char buf[8];

    open_pair(f, a, b, 1200);
    assert_true(run_until(&f->cli_end.done, 5000));
    assert_string_equal(f->cli_end.r.why, "idle");
    assert_true(run_until(&f->srv_end.done, 3000));
    assert_string_equal(f->srv_end.r.why, "reset");
    run_for(10);
    assert_int_equal(read(a[0], buf, sizeof(buf)), 0); /* closed */
    assert_int_equal(read(b[0], buf, sizeof(buf)), 0);
    close(a[0]);
    close(b[0]);
}

static void test_carrier_loss_ends_streams(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    char buf[8];

    open_pair(f, a, b, 0);
    wm_tun_destroy(f->cli);
    f->cli = NULL;
    assert_true(f->cli_end.done); /* at once, from destroy */
    assert_string_equal(f->cli_end.r.why, "carrier-closed");
    assert_true(run_until(&f->srv_end.done, 3000));
    assert_string_equal(f->srv_end.r.why, "carrier-closed");
    run_for(10);
    assert_int_equal(read(a[0], buf, sizeof(buf)), 0);
    assert_int_equal(read(b[0], buf, sizeof(buf)), 0);
    close(a[0]);
    close(b[0]);
}

static void test_peer_gone_resets(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    uint8_t big[65536];

    open_pair(f, a, b, 0);
    close(a[0]); /* a's application vanishes; b keeps sending */
    memset(big, 7, sizeof(big));
    for (int i = 0; i < 200 && !f->srv_end.done; i++) {
        (void)write(b[0], big, sizeof(big));
        run_for(2);
    }
    assert_true(run_until(&f->cli_end.done, 3000));
    assert_true(run_until(&f->srv_end.done, 3000));
    /* a: reads EOF first (FIN to b), then the write fails */
    assert_string_equal(f->cli_end.r.why, "socket-error");
    assert_string_equal(f->srv_end.r.why, "reset");
    close(b[0]);
}

static void test_abort(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {"m", 1}, {"test", 4}};

    pair(a);
    pair(b);
    f->accept_fd = b[1];
    struct wm_tun_stream *s =
        wm_tun_open_sock(f->cli, &o, a[1], 0, open_cb, srv_end_cb, &f->cli_end);
    assert_non_null(s);
    assert_true(run_until(&f->opened, 3000));
    wm_tun_sock_abort(s);
    assert_true(f->cli_end.done);
    assert_string_equal(f->cli_end.r.why, "aborted");
    assert_true(run_until(&f->srv_end.done, 3000));
    assert_string_equal(f->srv_end.r.why, "reset");
    close(a[0]);
    close(b[0]);
}

/* Many tiny DATA frames for a reader that stops, then reads: every byte
 * arrives, in order. (The end-to-end test with real nodes,
 * test_tiny_writes_to_a_paused_reader_all_arrive, covers the case where
 * each frame arrives in a carrier read of its own.) */
static void test_small_frames_slow_reader(void **state)
{
    struct fixture *f = *state;
    int a[2], b[2];
    size_t n = 512 * 1024;
    uint8_t *src = malloc(n);
    uint8_t *dst = malloc(n);
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {"m", 1}, {"test", 4}};
    size_t sent = 0;
    size_t got = 0;

    pair(a);
    tcp_pair(b);
    f->accept_fd = b[1];
    assert_non_null(wm_tun_open_sock(f->cli, &o, a[1], 0, open_cb, srv_end_cb, &f->cli_end));
    assert_true(run_until(&f->opened, 3000));
    fill(src, n, 5);
    /* 100 bytes at a time, the loop turning in between: one frame each,
     * until the window and the socket buffers are full */
    uint64_t idle_since = wm_now_ms();
    while (sent < n && wm_now_ms() - idle_since < 300) {
        ssize_t w = write(a[0], src + sent, n - sent < 100 ? n - sent : 100);
        if (w > 0) {
            sent += (size_t)w;
            idle_since = wm_now_ms();
        }
        for (int i = 0; i < 4; i++) {
            event_base_loop(f->base, EVLOOP_NONBLOCK);
        }
    }
    assert_true(sent > 64 * 1024); /* more than a window went in */
    uint64_t end = wm_now_ms() + 10000;
    while (got < n && wm_now_ms() < end) {
        ssize_t w = sent < n ? write(a[0], src + sent, n - sent < 100 ? n - sent : 100) : 0;
        if (w > 0) {
            sent += (size_t)w;
        }
        ssize_t r;
        while ((r = read(b[0], dst + got, n - got)) > 0) {
            got += (size_t)r;
        }
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (w <= 0 && r < 0) {
            run_for(1);
        }
    }
    assert_int_equal(got, n);
    assert_memory_equal(src, dst, n);
    close(a[0]);
    close(b[0]);
    free(src);
    free(dst);
}

/* Open a stream (a[], b[] as in open_pair) and move n bytes of src through
 * it with a reader that keeps up; returns the server's stream record. */
static struct wm_tun_stream *bulk_stream(struct fixture *f, int a[2], int b[2],
                                         const uint8_t *src, uint8_t *dst, size_t n)
{
    open_pair(f, a, b, 0);
    struct wm_tun_stream *s = f->accepted;
    assert_int_equal(wm_tun_stream_window(s), 64 * 1024); /* the configured one, to start */
    assert_int_equal(pump_bytes(a[0], src, n, b[0], dst, 20000), n);
    assert_memory_equal(src, dst, n);
    return s;
}

/* Window auto-tuning: a bulk stream whose reader keeps up gets a bigger
 * window than the configured 64 KiB, at most WM_TUN_WINDOW_MAX; many such
 * streams together grow by at most WM_TUN_GROW_BUDGET; a stream whose
 * reader never reads grows only while the socket buffer takes its bytes. */
static void test_window_grows_within_budget(void **state)
{
    struct fixture *f = *state;
    enum { NS = 10 };
    int a[NS][2], b[NS][2];
    struct wm_tun_stream *srv[NS];
    size_t n = 8 * 1024 * 1024;
    uint8_t *src = malloc(n);
    uint8_t *dst = malloc(n);
    uint64_t grown = 0;

    fill(src, n, 7);
    for (int i = 0; i < NS; i++) {
        srv[i] = bulk_stream(f, a[i], b[i], src, dst, n);
        uint32_t w = wm_tun_stream_window(srv[i]);
        assert_true(w <= WM_TUN_WINDOW_MAX);
        grown += w - 64 * 1024;
        if (i == 0) {
            assert_true(w > 64 * 1024); /* the first one had the whole budget */
        }
    }
    assert_true(grown <= WM_TUN_GROW_BUDGET);
    assert_true(grown > 4 * 1024 * 1024); /* several streams grew */

    /* a reader that never reads: the writer stops after the window plus
     * the socket buffers, and the window grew at most by what the socket
     * buffer took (a few hundred KiB) */
    int c[2], d[2];
    size_t sent = 0;
    open_pair(f, c, d, 0);
    for (int i = 0; i < 200; i++) {
        ssize_t w = write(c[0], src + sent, n - sent);
        if (w > 0) {
            sent += (size_t)w;
        }
        run_for(2);
    }
    assert_true(sent < n);
    assert_true(wm_tun_stream_window(f->accepted) <= WM_TUN_WINDOW_MAX / 2);
    close(c[0]);
    close(d[0]);
    for (int i = 0; i < NS; i++) {
        close(a[i][0]);
        close(b[i][0]);
    }
    free(src);
    free(dst);
}

/* The growth budget is shared by the carrier's streams and comes back when
 * a stream ends (server side: 64 KiB windows, growth to at most 256 KiB
 * each and 512 KiB together). */
static void test_window_budget_shared_and_returned(void **state)
{
    struct fixture *f = *state;
    enum { NS = 6 };
    int a[NS][2], b[NS][2];
    struct wm_tun_stream *srv[NS];
    size_t n = 4 * 1024 * 1024;
    uint8_t *src = malloc(n);
    uint8_t *dst = malloc(n);
    uint32_t grown = 0;

    fill(src, n, 9);
    for (int i = 0; i < NS; i++) {
        srv[i] = bulk_stream(f, a[i], b[i], src, dst, n);
        assert_true(wm_tun_stream_window(srv[i]) <= 256 * 1024);
        grown += wm_tun_stream_window(srv[i]) - 64 * 1024;
    }
    assert_int_equal(grown, 512 * 1024); /* the budget, reached exactly */
    assert_int_equal(wm_tun_stream_window(srv[NS - 1]), 64 * 1024);

    /* a grown stream ends: a new bulk stream grows again */
    uint32_t freed = 0;
    for (int i = 0; i < NS && freed == 0; i++) {
        if (wm_tun_stream_window(srv[i]) > 64 * 1024) {
            freed = wm_tun_stream_window(srv[i]) - 64 * 1024;
            close(a[i][0]);
            close(b[i][0]);
            a[i][0] = b[i][0] = -1;
        }
    }
    assert_true(freed > 0);
    run_for(300);
    int c[2], d[2];
    struct wm_tun_stream *fresh = bulk_stream(f, c, d, src, dst, n);
    assert_true(wm_tun_stream_window(fresh) > 64 * 1024);
    assert_true(wm_tun_stream_window(fresh) - 64 * 1024 <= freed);
    close(c[0]);
    close(d[0]);
    for (int i = 0; i < NS; i++) {
        if (a[i][0] >= 0) {
            close(a[i][0]);
            close(b[i][0]);
        }
    }
    free(src);
    free(dst);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the program does: EPIPE, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_and_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_leaves_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_carrier_loss_ends_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_frames_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_grows_within_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_budget_shared_and_returned,
                                        setup_small_budget, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
