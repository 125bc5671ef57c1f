/*
 * tests/unit/net/test_tlspump.c - the TLS pump (net/tlspump.h): two pumps
 * joined by a socketpair in one event loop, a client and a server, each
 * user end driven by the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/util.h"
#include "net/tls.h"
#include "net/tlspump.h"

struct side {
    struct bufferevent *user;
    uint8_t *got;
    size_t ngot;
    size_t cap;
    bool eof;
    size_t at_eof; /* bytes read or waiting in the input when EOF came */
};

static struct event_base *base;

static void user_read_cb(struct bufferevent *bev, void *arg)
{
    struct side *sd = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);

    assert_true(sd->ngot + n <= sd->cap);
    evbuffer_remove(in, sd->got + sd->ngot, n);
    sd->ngot += n;
}

static void user_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct side *sd = arg;

    if (what & BEV_EVENT_EOF) {
        sd->eof = true;
        sd->at_eof = sd->ngot + evbuffer_get_length(bufferevent_get_input(bev));
    }
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static bool run_until(const bool *flag, int ms)
{
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

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 7u + (i >> 9));
    }
}

/* A close_notify right behind a large write reaches the user only after
 * every byte, even when the user reads with a small high-water mark (the
 * HTTP engine reads with 64 KiB) and pauses reading for a while (as it
 * does while the target is slow). */
static void test_eof_after_all_data_with_read_watermark(void **state)
{
    char err[256];
    int sv[2];
    size_t n = 300 * 1024 + 17;
    uint8_t *src = malloc(n);
    struct side srv = {.got = malloc(n), .cap = n};
    struct side cli = {.got = malloc(16), .cap = 16};

    (void)state;
    base = event_base_new();
    assert_non_null(base);
    SSL_CTX *sctx = wm_tls_server_ctx_selfsigned("unit.test", err, sizeof(err));
    assert_non_null(sctx);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    srv.user = wm_tls_pump_new(base, sctx, sv[0], true, NULL, "unit-srv");
    cli.user = wm_tls_pump_new(base, cctx, sv[1], false, NULL, "unit-cli");
    assert_non_null(srv.user);
    assert_non_null(cli.user);
    bufferevent_setcb(srv.user, user_read_cb, NULL, user_event_cb, &srv);
    bufferevent_setcb(cli.user, user_read_cb, NULL, user_event_cb, &cli);
    bufferevent_setwatermark(srv.user, EV_READ, 0, 64 * 1024);
    bufferevent_disable(srv.user, EV_READ); /* paused for now */
    bufferevent_enable(cli.user, EV_READ | EV_WRITE);

    fill(src, n);
    bufferevent_write(cli.user, src, n);
    /* as callers do: EOF once the output is handed on */
    uint64_t end = wm_now_ms() + 5000;
    while (evbuffer_get_length(bufferevent_get_output(cli.user)) > 0 && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    wm_bev_shutdown_write(cli.user);
    bool never = false;
    run_until(&never, 300); /* data and close_notify arrive meanwhile */
    bufferevent_enable(srv.user, EV_READ);
    assert_true(run_until(&srv.eof, 5000));
    assert_int_equal(srv.at_eof, n);
    user_read_cb(srv.user, &srv);
    assert_memory_equal(srv.got, src, n);

    wm_bev_free(srv.user);
    wm_bev_free(cli.user);
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    wm_tls_pump_free_all();
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    event_base_free(base);
    free(src);
    free(srv.got);
    free(cli.got);
}

/* A bulk write through a socket that takes everything at once: the pump
 * stops encrypting at its high mark, flushes, and must then go on with
 * the rest (it used to stop reading its user and wait for a writable
 * event that never came: the stream stalled after the first 256 KiB). */
static void test_bulk_goes_on_after_a_full_flush(void **state)
{
    char err[256];
    int sv[2];
    int big = 4 * 1024 * 1024;
    size_t n = 6 * 1024 * 1024 + 5;
    uint8_t *src = malloc(n);
    struct side srv = {.got = malloc(n), .cap = n};
    struct side cli = {.got = malloc(16), .cap = 16};

    (void)state;
    base = event_base_new();
    assert_non_null(base);
    SSL_CTX *sctx = wm_tls_server_ctx_selfsigned("unit.test", err, sizeof(err));
    assert_non_null(sctx);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (int i = 0; i < 2; i++) {
        fcntl(sv[i], F_SETFL, O_NONBLOCK);
        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        (void)setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    }
    srv.user = wm_tls_pump_new(base, sctx, sv[0], true, NULL, "unit-srv");
    cli.user = wm_tls_pump_new(base, cctx, sv[1], false, NULL, "unit-cli");
    assert_non_null(srv.user);
    assert_non_null(cli.user);
    bufferevent_setcb(srv.user, user_read_cb, NULL, user_event_cb, &srv);
    bufferevent_setcb(cli.user, user_read_cb, NULL, user_event_cb, &cli);
    bufferevent_enable(srv.user, EV_READ | EV_WRITE);
    bufferevent_enable(cli.user, EV_READ | EV_WRITE);

    fill(src, n);
    bufferevent_write(cli.user, src, n);
    uint64_t end = wm_now_ms() + 5000;
    while (srv.ngot < n && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_int_equal(srv.ngot, n);
    assert_memory_equal(srv.got, src, n);

    wm_bev_free(srv.user);
    wm_bev_free(cli.user);
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    wm_tls_pump_free_all();
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    event_base_free(base);
    free(src);
    free(srv.got);
    free(cli.got);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eof_after_all_data_with_read_watermark),
        cmocka_unit_test(test_bulk_goes_on_after_a_full_flush),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
