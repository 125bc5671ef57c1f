/*
 * tests/unit/core/test_relay.c - the byte relay (core/relay.h) and the
 * splice relay (core/splice.h), which share one contract: each scenario runs
 * against both. The relay's ends are loopback TCP sockets whose peers (the
 * "apps") the test drives by hand, in one event loop.
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
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/relay.h"
#include "core/splice.h"
#include "core/util.h"

#define WAIT_MS 10000 /* generous: the suite runs under ASan on a loaded host */

struct fx;

/* One implementation of the relay contract. */
struct impl {
    const char *name;
    /* Start on the relay ends fd a and b; pre_a: bytes already read from
     * a, for b. Returns 0 or -1. */
    int (*start)(struct fx *f, int a, int b, const char *pre_a, const struct wm_relay_conf *c);
    void (*abort)(struct fx *f);
    void (*counts)(struct fx *f, uint64_t *a_to_b, uint64_t *b_to_a);
};

struct fx {
    const struct impl *impl;
    struct event_base *base;
    int a_app; /* the test's end towards relay side a */
    int b_app;
    struct wm_relay *relay;
    struct wm_splice *splice;
    struct bufferevent *bev_b; /* the relay's end b (byte relay only) */
    bool done;
    struct wm_relay_result res;
};

/* ---- the two implementations ---- */

static void done_cb(void *arg, const struct wm_relay_result *res)
{
    struct fx *f = arg;

    assert_false(f->done); /* once */
    f->done = true;
    f->res = *res;
    f->relay = NULL;
    f->splice = NULL;
}

static int relay_start(struct fx *f, int a, int b, const char *pre_a,
                       const struct wm_relay_conf *c)
{
    struct bufferevent *ba = bufferevent_socket_new(f->base, a, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bb = bufferevent_socket_new(f->base, b, BEV_OPT_CLOSE_ON_FREE);

    assert_non_null(ba);
    assert_non_null(bb);
    if (pre_a != NULL) {
        /* As behind a handshake: the bufferevent itself has read them. */
        uint64_t end = wm_now_ms() + WAIT_MS;
        assert_int_equal(send(f->a_app, pre_a, strlen(pre_a), 0), (ssize_t)strlen(pre_a));
        bufferevent_enable(ba, EV_READ);
        while (evbuffer_get_length(bufferevent_get_input(ba)) < strlen(pre_a)) {
            assert_true(wm_now_ms() < end);
            event_base_loop(f->base, EVLOOP_NONBLOCK);
        }
    }
    f->bev_b = bb;
    f->relay = wm_relay_start(f->base, ba, bb, c, done_cb, f);
    return f->relay != NULL ? 0 : -1;
}

static void relay_abort(struct fx *f)
{
    wm_relay_abort(f->relay);
}

static void relay_counts(struct fx *f, uint64_t *ab, uint64_t *ba)
{
    wm_relay_counts(f->relay, ab, ba);
}

static int splice_start(struct fx *f, int a, int b, const char *pre_a,
                        const struct wm_relay_conf *c)
{
    struct evbuffer *pre = evbuffer_new();

    assert_non_null(pre);
    if (pre_a != NULL) {
        evbuffer_add(pre, pre_a, strlen(pre_a));
    }
    f->splice = wm_splice_start(f->base, a, b, pre, NULL, c, done_cb, f);
    evbuffer_free(pre);
    return f->splice != NULL ? 0 : -1;
}

static void splice_abort(struct fx *f)
{
    wm_splice_abort(f->splice);
}

static void splice_counts(struct fx *f, uint64_t *ab, uint64_t *ba)
{
    wm_splice_counts(f->splice, ab, ba);
}

static const struct impl relay_impl = {"relay", relay_start, relay_abort, relay_counts};
static const struct impl splice_impl = {"splice", splice_start, splice_abort, splice_counts};

/* ---- sockets and the loop ---- */

static void nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

static void small_bufs(int fd, int size)
{
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
}

/* A connected loopback TCP pair: v[0] the app's end, v[1] the relay's.
 * bufsize > 0 shrinks the kernel's buffers both ways (set before
 * connecting, so the window is small from the start), so that what the
 * relay itself holds is what a back-pressure test measures. */
static void tcp_pair(int v[2], int bufsize)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    v[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(v[0] >= 0);
    if (bufsize > 0) {
        small_bufs(l, bufsize); /* inherited by the accepted socket */
        small_bufs(v[0], bufsize);
    }
    assert_int_equal(connect(v[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
    v[1] = accept(l, NULL, NULL);
    assert_true(v[1] >= 0);
    close(l);
    nonblock(v[0]);
    nonblock(v[1]);
}

/* Start the relay between two fresh pairs. bufsize: see tcp_pair. */
static void start(struct fx *f, const char *pre_a, const struct wm_relay_conf *c, int bufsize)
{
    int pa[2];
    int pb[2];

    tcp_pair(pa, bufsize);
    tcp_pair(pb, bufsize);
    f->a_app = pa[0];
    f->b_app = pb[0];
    assert_int_equal(f->impl->start(f, pa[1], pb[1], pre_a, c), 0);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Run the loop for about ms. */
static void run_for(struct fx *f, int ms)
{
    struct event *t = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 5000};
    uint64_t end = wm_now_ms() + (uint64_t)ms;

    event_add(t, &tv);
    while (wm_now_ms() < end) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    event_free(t);
}

static bool run_until_done(struct fx *f)
{
    uint64_t end = wm_now_ms() + WAIT_MS;

    while (!f->done && wm_now_ms() < end) {
        run_for(f, 5);
    }
    return f->done;
}

/* Read exactly n bytes from fd (running the loop meanwhile). */
static void read_exact(struct fx *f, int fd, char *buf, size_t n)
{
    size_t got = 0;
    uint64_t end = wm_now_ms() + WAIT_MS;

    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        assert_true(r < 0 && errno == EAGAIN); /* no early EOF, no error */
        assert_true(wm_now_ms() < end);
        run_for(f, 5);
    }
}

/* Wait for EOF on fd (after no more data); false on timeout. */
static bool read_eof(struct fx *f, int fd)
{
    uint64_t end = wm_now_ms() + WAIT_MS;
    char c;

    while (wm_now_ms() < end) {
        ssize_t r = recv(fd, &c, 1, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            return true;
        }
        assert_true(r < 0 && errno == EAGAIN);
        run_for(f, 5);
    }
    return false;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void expect_str(struct fx *f, int fd, const char *s)
{
    char buf[256];

    assert_true(strlen(s) < sizeof(buf));
    read_exact(f, fd, buf, strlen(s));
    buf[strlen(s)] = '\0';
    assert_string_equal(buf, s);
}

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 131u) ^ (i >> 9));
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->impl = *state;
    f->base = event_base_new();
    assert_non_null(f->base);
    f->a_app = f->b_app = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f->relay != NULL || f->splice != NULL) {
        f->impl->abort(f);
    }
    if (f->a_app >= 0) {
        close(f->a_app);
    }
    if (f->b_app >= 0) {
        close(f->b_app);
    }
    event_base_free(f->base);
    free(f);
    return 0;
}

/* ---- scenarios ---- */

/* Bytes flow both ways; early data read before the start goes first. */
static void test_both_ways(void **state)
{
    struct fx *f = *state;
    uint64_t ab;
    uint64_t ba;

    start(f, "early,", NULL, 0);
    send_str(f->a_app, "ping");
    expect_str(f, f->b_app, "early,ping");
    send_str(f->b_app, "pong");
    expect_str(f, f->a_app, "pong");
    f->impl->counts(f, &ab, &ba);
    assert_int_equal(ab, 10);
    assert_int_equal(ba, 4);
    assert_false(f->done);
}

/* EOF from one side becomes a write shutdown on the other; the other
 * direction keeps flowing; both EOFs end the relay as closed. */
static void test_half_close(void **state)
{
    struct fx *f = *state;

    start(f, NULL, NULL, 0);
    send_str(f->a_app, "last words");
    assert_int_equal(shutdown(f->a_app, SHUT_WR), 0);
    expect_str(f, f->b_app, "last words");
    assert_true(read_eof(f, f->b_app));
    assert_false(f->done);
    send_str(f->b_app, "still heard");
    expect_str(f, f->a_app, "still heard");
    assert_int_equal(shutdown(f->b_app, SHUT_WR), 0);
    assert_true(read_eof(f, f->a_app));
    assert_true(run_until_done(f));
    assert_int_equal(f->res.end, WM_RELAY_END_CLOSED);
    assert_int_equal(f->res.a_to_b, 10);
    assert_int_equal(f->res.b_to_a, 11);
}

/* A reader that stops: the relay stops reading the source (its counts stop
 * and the source's writes block) with memory bounded; once the reader
 * drains, everything arrives intact and in order. */
static void test_backpressure(void **state)
{
    struct fx *f = *state;
    const size_t total = 8u << 20;
    /* Far below total: what the relay holds (high water + one read, or the
     * splice pipe) plus the small kernel buffers on both sides. */
    const size_t bound = 2u << 20;
    struct wm_relay_conf c = {.idle_ms = 0, .high_water = 64 * 1024};
    static char buf[1 << 16];
    size_t sent = 0;
    size_t got = 0;
    uint64_t ab1;
    uint64_t ab2;
    uint64_t ba;

    start(f, NULL, &c, 16 * 1024);
    /* Write until the whole path is full: no progress over 200 ms. */
    for (int still = 0; still < 40 && sent < total;) {
        size_t n = total - sent < (1 << 16) ? total - sent : (1 << 16);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)pat(sent + i);
        }
        ssize_t w = send(f->a_app, buf, n, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            still = 0;
            continue;
        }
        assert_true(w < 0 && errno == EAGAIN);
        run_for(f, 5);
        still++;
    }
    assert_true(sent < bound);
    f->impl->counts(f, &ab1, &ba);
    run_for(f, 100);
    f->impl->counts(f, &ab2, &ba);
    assert_int_equal(ab1, ab2); /* paused */
    /* Drain at the far end while writing the rest: reading resumes. */
    uint64_t end = wm_now_ms() + 60000;
    while (got < total) {
        bool progress = false;
        assert_true(wm_now_ms() < end);
        if (sent < total) {
            size_t n = total - sent < (1 << 16) ? total - sent : (1 << 16);
            for (size_t i = 0; i < n; i++) {
                buf[i] = (char)pat(sent + i);
            }
            ssize_t w = send(f->a_app, buf, n, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                progress = true;
            }
        }
        ssize_t r = recv(f->b_app, buf, 1 << 16, 0);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++) {
                assert_int_equal((uint8_t)buf[i], pat(got + (size_t)i));
            }
            got += (size_t)r;
            progress = true;
        } else {
            assert_true(r < 0 && errno == EAGAIN);
        }
        if (progress) {
            event_base_loop(f->base, EVLOOP_NONBLOCK);
        } else {
            run_for(f, 1);
        }
    }
    f->impl->counts(f, &ab2, &ba);
    assert_int_equal(ab2, total);
}

/* One side closes: the other side gets EOF, and when it closes too the
 * relay ends as closed. */
static void test_close_one_side(void **state)
{
    struct fx *f = *state;

    start(f, NULL, NULL, 0);
    send_str(f->b_app, "bye");
    close(f->b_app);
    f->b_app = -1;
    expect_str(f, f->a_app, "bye");
    assert_true(read_eof(f, f->a_app));
    close(f->a_app);
    f->a_app = -1;
    assert_true(run_until_done(f));
    assert_int_equal(f->res.end, WM_RELAY_END_CLOSED);
    assert_int_equal(f->res.b_to_a, 3);
}

/* A reset on one side ends the relay with that side's error; the other
 * side is closed. */
static void test_reset_one_side(void **state)
{
    struct fx *f = *state;
    struct linger lg = {1, 0};

    start(f, NULL, NULL, 0);
    send_str(f->a_app, "hello");
    expect_str(f, f->b_app, "hello");
    assert_int_equal(setsockopt(f->b_app, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(f->b_app);
    f->b_app = -1;
    assert_true(run_until_done(f));
    assert_int_equal(f->res.end, WM_RELAY_END_ERR_B);
    assert_int_equal(f->res.err, ECONNRESET);
    assert_true(read_eof(f, f->a_app));
}

static void test_idle(void **state)
{
    struct fx *f = *state;
    struct wm_relay_conf c = {.idle_ms = 100};
    uint64_t t0 = wm_now_ms();

    start(f, NULL, &c, 0);
    assert_true(run_until_done(f));
    assert_int_equal(f->res.end, WM_RELAY_END_IDLE);
    assert_true(wm_now_ms() - t0 >= 90);
    assert_true(read_eof(f, f->a_app));
    assert_true(read_eof(f, f->b_app));
}

/* Abort calls back before it returns. */
static void test_abort(void **state)
{
    struct fx *f = *state;

    start(f, NULL, NULL, 0);
    send_str(f->a_app, "x");
    expect_str(f, f->b_app, "x");
    f->impl->abort(f);
    assert_true(f->done);
    assert_int_equal(f->res.end, WM_RELAY_END_ABORTED);
    assert_int_equal(f->res.a_to_b, 1);
    assert_true(read_eof(f, f->b_app));
}

/* An EOF that comes with an error (a tunnel stream's FIN and reset merged
 * into one deferred event of its bufferevent pair) is that side's error:
 * nobody reads what the other side still sends, so the relay ends at once
 * instead of relaying into the void until the idle timeout. */
static void test_eof_with_error(void **state)
{
    struct fx *f = *state;

    start(f, NULL, NULL, 0);
    send_str(f->a_app, "hello");
    expect_str(f, f->b_app, "hello");
    bufferevent_trigger_event(f->bev_b, BEV_EVENT_READING | BEV_EVENT_EOF | BEV_EVENT_ERROR, 0);
    assert_true(run_until_done(f));
    assert_int_equal(f->res.end, WM_RELAY_END_ERR_B);
    assert_true(read_eof(f, f->a_app));
}

/* Each scenario against both implementations, named after them. */
#define BOTH(t)                                                                              \
    {#t "(relay)", t, setup, teardown, (void *)&relay_impl},                                 \
        {#t "(splice)", t, setup, teardown, (void *)&splice_impl}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the program does: EPIPE, not a signal */
    const struct CMUnitTest tests[] = {
        BOTH(test_both_ways),      BOTH(test_half_close), BOTH(test_backpressure),
        BOTH(test_close_one_side), BOTH(test_reset_one_side), BOTH(test_idle),
        BOTH(test_abort),
        {"test_eof_with_error(relay)", test_eof_with_error, setup, teardown, (void *)&relay_impl},
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
