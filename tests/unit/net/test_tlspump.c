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
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "net/tls.h"
#include "net/tlspump.h"

struct side {
    struct bufferevent *user;
    uint8_t *got;
    size_t ngot;
    size_t cap;
    bool eof;
    bool error;
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
    if (what & BEV_EVENT_ERROR) {
        sd->error = true;
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

/* Two pumps over a socketpair: a server and a client, each user end with
 * the read/event callbacks above; created by setup, freed by teardown. */
struct pumps {
    SSL_CTX *sctx;
    SSL_CTX *cctx;
    int sv[2];
    struct side srv;
    struct side cli;
};

static int pumps_setup(void **state)
{
    static struct pumps pp;
    char err[256];

    memset(&pp, 0, sizeof(pp));
    base = event_base_new();
    assert_non_null(base);
    pp.sctx = wm_tls_server_ctx_selfsigned("unit.test", err, sizeof(err));
    assert_non_null(pp.sctx);
    pp.cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(pp.cctx);
    SSL_CTX_set_verify(pp.cctx, SSL_VERIFY_NONE, NULL);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pp.sv), 0);
    fcntl(pp.sv[0], F_SETFL, O_NONBLOCK);
    fcntl(pp.sv[1], F_SETFL, O_NONBLOCK);
    *state = &pp;
    return 0;
}

/* Start both pumps on the socketpair (after the test set its options). */
static void pumps_start(struct pumps *pp, size_t srv_cap)
{
    pp->srv.got = malloc(srv_cap);
    pp->srv.cap = srv_cap;
    pp->cli.got = malloc(16);
    pp->cli.cap = 16;
    pp->srv.user = wm_tls_pump_new(base, pp->sctx, pp->sv[0], true, NULL, "unit-srv");
    pp->cli.user = wm_tls_pump_new(base, pp->cctx, pp->sv[1], false, NULL, "unit-cli");
    assert_non_null(pp->srv.user);
    assert_non_null(pp->cli.user);
    bufferevent_setcb(pp->srv.user, user_read_cb, NULL, user_event_cb, &pp->srv);
    bufferevent_setcb(pp->cli.user, user_read_cb, NULL, user_event_cb, &pp->cli);
    bufferevent_enable(pp->srv.user, EV_READ | EV_WRITE);
    bufferevent_enable(pp->cli.user, EV_READ | EV_WRITE);
}

static int pumps_teardown(void **state)
{
    struct pumps *pp = *state;

    wm_bev_free(pp->srv.user);
    wm_bev_free(pp->cli.user);
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    wm_tls_pump_free_all();
    SSL_CTX_free(pp->sctx);
    SSL_CTX_free(pp->cctx);
    event_base_free(base);
    free(pp->srv.got);
    free(pp->cli.got);
    return 0;
}

/* n bytes of pattern from the client's user to the server's, checked. */
static void send_to_server(struct pumps *pp, uint8_t *src, size_t n)
{
    fill(src, n);
    bufferevent_write(pp->cli.user, src, n);
    uint64_t end = wm_now_ms() + 5000;
    while (pp->srv.ngot < n && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_int_equal(pp->srv.ngot, n);
    assert_memory_equal(pp->srv.got, src, n);
}

/* A close_notify right behind a large write reaches the user only after
 * every byte, even when the user reads with a small high-water mark (the
 * HTTP engine reads with 64 KiB) and pauses reading for a while (as it
 * does while the target is slow). */
static void test_eof_after_all_data_with_read_watermark(void **state)
{
    struct pumps *pp = *state;
    struct side *srv = &pp->srv;
    size_t n = 300 * 1024 + 17;
    uint8_t *src = malloc(n);

    pumps_start(pp, n);
    bufferevent_setwatermark(srv->user, EV_READ, 0, 64 * 1024);
    bufferevent_disable(srv->user, EV_READ); /* paused for now */

    fill(src, n);
    bufferevent_write(pp->cli.user, src, n);
    /* as callers do: EOF once the output is handed on */
    uint64_t end = wm_now_ms() + 5000;
    while (evbuffer_get_length(bufferevent_get_output(pp->cli.user)) > 0 && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    wm_bev_shutdown_write(pp->cli.user);
    bool never = false;
    run_until(&never, 300); /* data and close_notify arrive meanwhile */
    bufferevent_enable(srv->user, EV_READ);
    assert_true(run_until(&srv->eof, 5000));
    assert_int_equal(srv->at_eof, n);
    user_read_cb(srv->user, srv);
    assert_memory_equal(srv->got, src, n);
    free(src);
}

/* A bulk write through a socket that takes everything at once: the pump
 * stops encrypting at its high mark, flushes, and must then go on with
 * the rest (it used to stop reading its user and wait for a writable
 * event that never came: the stream stalled after the first 256 KiB). */
static void test_bulk_goes_on_after_a_full_flush(void **state)
{
    struct pumps *pp = *state;
    int big = 4 * 1024 * 1024;
    size_t n = 6 * 1024 * 1024 + 5;
    uint8_t *src = malloc(n);

    for (int i = 0; i < 2; i++) {
        (void)setsockopt(pp->sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        (void)setsockopt(pp->sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    }
    pumps_start(pp, n);
    send_to_server(pp, src, n);
    free(src);
}

/* n bytes up and m down at once, then EOF each way (close_notify):
 * every byte arrives, in order, before EOF. */
static void both_ways_then_close(struct pumps *pp, size_t n, size_t m)
{
    uint8_t *up = malloc(n);
    uint8_t *down = malloc(m);

    pumps_start(pp, n);
    free(pp->cli.got);
    pp->cli.got = malloc(m + 4);
    pp->cli.cap = m + 4;
    fill(up, n);
    fill(down, m);
    down[0] ^= 0x5a;
    /* in uneven pieces, some before the handshake is over */
    for (size_t at = 0; at < n; at += 100003) {
        bufferevent_write(pp->cli.user, up + at, n - at < 100003 ? n - at : 100003);
    }
    bufferevent_write(pp->srv.user, down, m);
    uint64_t end = wm_now_ms() + 10000;
    while ((pp->srv.ngot < n || pp->cli.ngot < m) && wm_now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_string_equal(wm_tls_pump_transport(pp->srv.user), "TLS");
    assert_string_equal(wm_tls_pump_transport(pp->cli.user), "TLS");
    assert_int_equal(pp->srv.ngot, n);
    assert_int_equal(pp->cli.ngot, m);
    assert_memory_equal(pp->srv.got, up, n);
    assert_memory_equal(pp->cli.got, down, m);
    wm_bev_shutdown_write(pp->cli.user);
    assert_true(run_until(&pp->srv.eof, 5000));
    assert_false(pp->cli.eof); /* half-closed: the other way still open */
    bufferevent_write(pp->srv.user, "late", 4);
    wm_bev_shutdown_write(pp->srv.user);
    assert_true(run_until(&pp->cli.eof, 5000));
    assert_int_equal(pp->cli.at_eof, m + 4);
    free(up);
    free(down);
}

static void test_both_ways_then_close(void **state)
{
    both_ways_then_close(*state, 3 * 1024 * 1024 + 333, 2 * 1024 * 1024 + 1);
}

/* TLS 1.2 (still allowed on the carrier). */
static void test_tls12_both_ways_then_close(void **state)
{
    struct pumps *pp = *state;

    SSL_CTX_set_max_proto_version(pp->cctx, TLS1_2_VERSION);
    both_ways_then_close(pp, 1000003, 777777);
}

/* Not a pump's user end: no transport. */
static void test_transport_of_other_bevs(void **state)
{
    struct bufferevent *pair[2];

    (void)state;
    assert_null(wm_tls_pump_transport(NULL));
    assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
    assert_null(wm_tls_pump_transport(pair[0]));
    bufferevent_free(pair[0]);
    bufferevent_free(pair[1]);
}

/* ---- log capture: the pump logs its state changes at debug ---- */

static char log_path[64];

static void log_capture_start(void)
{
    snprintf(log_path, sizeof(log_path), "/tmp/wm-unit-log-XXXXXX");
    int fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);
    wm_log_set_level(WM_LOG_DEBUG);
    assert_int_equal(wm_log_open_file(log_path), 0);
}

/* What was logged so far (static buffer). */
static const char *log_text(void)
{
    static char buf[65536];
    FILE *f = fopen(log_path, "r");
    size_t r;

    assert_non_null(f);
    r = fread(buf, 1, sizeof(buf) - 1, f);
    buf[r] = '\0';
    fclose(f);
    return buf;
}

static void log_capture_end(void)
{
    wm_log_set_fd(2);
    wm_log_set_level(WM_LOG_WARN);
    unlink(log_path);
}

/* Run the loop until the log holds needle (at most ms). */
static bool run_until_logged(const char *needle, int ms)
{
    uint64_t end = wm_now_ms() + (uint64_t)ms;
    bool never = false;

    while (strstr(log_text(), needle) == NULL) {
        if (wm_now_ms() >= end) {
            print_error("no \"%s\" in the log:\n%s\n", needle, log_text());
            return false;
        }
        run_until(&never, 10);
    }
    return true;
}

/* mTLS with TLS 1.3: the client ends its handshake before the server
 * checks its certificate; the server's alert then comes as a record. The
 * client logs the alert. */
static void test_client_logs_the_servers_alert(void **state)
{
    struct pumps *pp = *state;

    log_capture_start();
    SSL_CTX_set_verify(pp->sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    pumps_start(pp, 16);
    bufferevent_write(pp->cli.user, "hello", 5);
    /* the alert itself, not the unverified certificate (the client does
     * not verify here) */
    assert_true(run_until_logged("unit-cli: error:0A00045C:SSL routines::tlsv13 alert "
                                 "certificate required", 2000));
    assert_null(strstr(log_text(), "unit-cli: certificate verify failed"));
    assert_int_equal(pp->srv.ngot, 0);
    log_capture_end();
}

/* A name OpenSSL refuses (SNI is at most 255 bytes) fails the
 * connection at once, logged: it never goes on without the name check. */
static void test_client_refuses_a_name_openssl_refuses(void **state)
{
    struct pumps *pp = *state;
    char host[301];

    memset(host, 'a', 300);
    host[300] = '\0';
    log_capture_start();
    SSL_CTX_set_verify(pp->cctx, SSL_VERIFY_PEER, NULL);
    struct bufferevent *b = wm_tls_pump_new(base, pp->cctx, pp->sv[1], false, host, "unit-cli");
    assert_null(b);
    assert_int_equal(fcntl(pp->sv[1], F_GETFD), -1); /* taken and closed */
    assert_non_null(strstr(log_text(), "unit-cli: refused: OpenSSL does not take"));
    assert_non_null(strstr(log_text(), "as the server name (SNI)"));
    log_capture_end();
    close(pp->sv[0]);
}

/* Every state a clean exchange goes through, each way, as logged. */
static void test_states_of_a_clean_close(void **state)
{
    static const char *const want[] = {
        "tls unit-cli: handshake -> open",
        "tls unit-srv: handshake -> open",
        "tls unit-cli: TLSv1.3 TLS_AES_128_GCM_SHA256, kernel TLS off",
        "tls unit-cli: open -> half-closed-local",
        "tls unit-srv: open -> half-closed-remote",
        "tls unit-srv: half-closed-remote -> closed",
        "tls unit-cli: half-closed-local -> closed",
        "tls unit-srv: closed -> dead",
        "tls unit-cli: closed -> dead",
    };
    struct pumps *pp = *state;

    log_capture_start();
    both_ways_then_close(pp, 100000, 5000);
    /* both users go: each pump ends once its close_notify is out */
    wm_bev_free(pp->srv.user);
    wm_bev_free(pp->cli.user);
    pp->srv.user = pp->cli.user = NULL;
    assert_true(run_until_logged("tls unit-cli: closed -> dead", 2000));
    assert_true(run_until_logged("tls unit-srv: closed -> dead", 2000));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(log_text(), want[i]) == NULL) {
            fail_msg("no \"%s\" in the log:\n%s", want[i], log_text());
        }
    }
    log_capture_end();
}

/* EOF from the user before the handshake is over: its bytes, then
 * close_notify, follow the handshake. */
static void test_eof_before_the_handshake_ends(void **state)
{
    struct pumps *pp = *state;
    size_t n = 100000;
    uint8_t *src = malloc(n);

    log_capture_start();
    pumps_start(pp, n);
    fill(src, n);
    bufferevent_write(pp->cli.user, src, n);
    wm_bev_shutdown_write(pp->cli.user);
    assert_true(run_until(&pp->srv.eof, 5000));
    assert_int_equal(pp->srv.at_eof, n);
    user_read_cb(pp->srv.user, &pp->srv);
    assert_memory_equal(pp->srv.got, src, n);
    assert_non_null(strstr(log_text(), "tls unit-cli: handshake -> handshake-eof"));
    assert_non_null(strstr(log_text(), "tls unit-cli: handshake-eof -> half-closed-local"));
    log_capture_end();
    free(src);
}

/* The user frees its end during the handshake: the pump ends at once
 * (nothing was sent, nobody to tell); the other side sees the close. */
static void test_user_gone_during_the_handshake(void **state)
{
    struct pumps *pp = *state;

    log_capture_start();
    pumps_start(pp, 16);
    wm_bev_free(pp->cli.user);
    pp->cli.user = NULL;
    assert_true(run_until_logged("tls unit-cli: handshake -> dead", 2000));
    assert_true(run_until_logged("tls unit-srv: closed during the handshake", 2000));
    log_capture_end();
}

/* A server pump on sv[0] (its user in pp->srv) and a plain OpenSSL client
 * on sv[1], handshaken; the caller frees the SSL and closes sv[1]. */
static SSL *server_and_raw_client(struct pumps *pp)
{
    SSL *c = SSL_new(pp->cctx);

    assert_non_null(c);
    pp->srv.got = malloc(64);
    pp->srv.cap = 64;
    pp->srv.user = wm_tls_pump_new(base, pp->sctx, pp->sv[0], true, NULL, "unit-srv");
    bufferevent_setcb(pp->srv.user, user_read_cb, NULL, user_event_cb, &pp->srv);
    bufferevent_enable(pp->srv.user, EV_READ | EV_WRITE);
    SSL_set_fd(c, pp->sv[1]);
    SSL_set_connect_state(c);
    for (int i = 0; i < 2000 && SSL_do_handshake(c) != 1; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    return c;
}

/* SSL_read on the raw client, running the loop while it wants more. */
static int raw_read(SSL *c, char *buf, int n)
{
    int r = 0;

    for (int i = 0; i < 2000 && (r = SSL_read(c, buf, n)) <= 0 &&
                    SSL_get_error(c, r) == SSL_ERROR_WANT_READ;
         i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    return r;
}

/* A peer that closes TCP without close_notify after sending data: every
 * byte reaches the user, then EOF, as for close_notify (our BIO does not
 * report BIO_eof, so OpenSSL does not call it a truncation; for the
 * carrier docs/tunnel.md says why that is safe). The pump goes on
 * sending: half-closed remote. */
static void test_tcp_close_without_close_notify(void **state)
{
    struct pumps *pp = *state;
    SSL *c = server_and_raw_client(pp);

    assert_int_equal(SSL_write(c, "hi there", 8), 8);
    shutdown(pp->sv[1], SHUT_WR);
    assert_true(run_until(&pp->srv.eof, 2000));
    assert_int_equal(pp->srv.at_eof, 8);
    user_read_cb(pp->srv.user, &pp->srv);
    assert_int_equal(pp->srv.ngot, 8);
    assert_memory_equal(pp->srv.got, "hi there", 8);
    assert_false(pp->srv.error);
    /* the other way is still open: the pump's close_notify reaches c */
    wm_bev_shutdown_write(pp->srv.user);
    char buf[8];
    int r = raw_read(c, buf, sizeof(buf));
    assert_int_equal(SSL_get_error(c, r), SSL_ERROR_ZERO_RETURN);
    SSL_free(c);
    close(pp->sv[1]);
}

/* The user goes right after its answer while the peer is still sending:
 * the pump sends the answer and close_notify, half-closes (the peer reads
 * EOF on the socket), and reads and drops what still comes instead of
 * closing on it (which would reset a TCP peer); it ends at the peer's
 * close, well before the close bound. */
static void test_linger_after_the_user_went(void **state)
{
    struct pumps *pp = *state;
    SSL *c;
    static uint8_t junk[65536];
    char buf[16];
    int r;
    ssize_t n;

    log_capture_start();
    c = server_and_raw_client(pp);
    assert_true(run_until_logged("tls unit-srv: handshake -> open", 2000));
    bufferevent_write(pp->srv.user, "answer", 6);
    wm_bev_free(pp->srv.user);
    pp->srv.user = NULL;
    r = raw_read(c, buf, sizeof(buf));
    assert_int_equal(r, 6);
    assert_memory_equal(buf, "answer", 6);
    r = raw_read(c, buf, sizeof(buf));
    assert_int_equal(SSL_get_error(c, r), SSL_ERROR_ZERO_RETURN);
    /* the peer keeps sending: read and dropped, the pump stays */
    for (int k = 0; k < 8; k++) {
        int w = 0;
        for (int i = 0; i < 2000 && (w = SSL_write(c, junk, sizeof(junk))) <= 0 &&
                        SSL_get_error(c, w) == SSL_ERROR_WANT_WRITE;
             i++) {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        }
        assert_int_equal(w, (int)sizeof(junk));
    }
    for (int i = 0; i < 50; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_null(strstr(log_text(), "tls unit-srv: half-closed-local -> dead"));
    n = read(pp->sv[1], junk, sizeof(junk)); /* our FIN came behind close_notify */
    assert_int_equal(n, 0);
    uint64_t t0 = wm_now_ms();
    close(pp->sv[1]);
    assert_true(run_until_logged("tls unit-srv: half-closed-local -> dead", 2000));
    assert_true(wm_now_ms() - t0 < 2000);
    assert_null(strstr(log_text(), "close timed out"));
    SSL_free(c);
    log_capture_end();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eof_after_all_data_with_read_watermark,
                                        pumps_setup, pumps_teardown),
        cmocka_unit_test_setup_teardown(test_bulk_goes_on_after_a_full_flush, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_both_ways_then_close, pumps_setup, pumps_teardown),
        cmocka_unit_test_setup_teardown(test_tls12_both_ways_then_close, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_client_logs_the_servers_alert, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_transport_of_other_bevs, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_states_of_a_clean_close, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_eof_before_the_handshake_ends, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_user_gone_during_the_handshake, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_linger_after_the_user_went, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_close_without_close_notify, pumps_setup,
                                        pumps_teardown),
        cmocka_unit_test_setup_teardown(test_client_refuses_a_name_openssl_refuses, pumps_setup,
                                        pumps_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
