/*
 * tests/unit/tunnel/test_mux_rereg.c - mappings changed on a live carrier
 * (docs/tunnel.md "Reloads"): the client sends REGISTER again after the
 * handshake, the server's registered callback sees the new list and
 * answers, and wm_tun_reset_streams() ends only the streams of mappings no
 * longer kept while the others carry on.
 *
 * Two carriers joined by a socketpair run in one event loop, as in
 * test_mux_guard.c.
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
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/util.h"
#include "core/worker.h"
#include "tunnel/mux.h"

/* One end of a mapping stream: its bufferevent and what it saw. */
struct end {
    struct bufferevent *bev;
    int errors; /* reset */
    char got[64];
    size_t ngot;
};

struct fixture {
    struct event_base *base;
    struct wm_tun *srv;
    struct wm_tun *cli;
    int ready;
    int registered;      /* server: REGISTER calls */
    size_t last_n;       /* ... mappings in the last one */
    char last_names[64]; /* ... their names, space separated */
    int results;         /* client: REGISTER_RESULT calls */
    int opened;          /* server: open callbacks */
    struct end srv_end[2]; /* server side of streams "a", "b" */
    struct end cli_end[2]; /* client side */
    int accepted;
    const char *keep;    /* the mapping name kept by reset */
};

static struct fixture *F;

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

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

static void on_ready(struct wm_tun *t, void *arg)
{
    (void)t;
    ((struct fixture *)arg)->ready++;
}

static void on_registered(struct wm_tun *t, const struct wm_tun_mapping *m, size_t n,
                          uint8_t *ok, const char **reason, void *arg)
{
    struct fixture *f = arg;
    size_t off = 0;

    (void)t;
    (void)ok;
    (void)reason;
    f->registered++;
    f->last_n = n;
    f->last_names[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(f->last_names + off, sizeof(f->last_names) - off, "%s%.*s",
                                i ? " " : "", (int)m[i].name.n, m[i].name.p);
    }
}

static void on_result(struct wm_tun *t, const uint8_t *ok, const struct wm_tun_str *reason,
                      size_t n, void *arg)
{
    (void)t;
    (void)ok;
    (void)reason;
    (void)n;
    ((struct fixture *)arg)->results++;
}

static void end_read(struct bufferevent *b, void *arg)
{
    struct end *e = arg;
    size_t n = evbuffer_remove(bufferevent_get_input(b), e->got + e->ngot,
                               sizeof(e->got) - 1 - e->ngot);

    e->ngot += n;
}

static void end_event(struct bufferevent *b, short what, void *arg)
{
    struct end *e = arg;

    (void)b;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        e->errors++;
    }
}

static void watch(struct end *e, struct bufferevent *b)
{
    e->bev = b;
    bufferevent_setcb(b, end_read, NULL, end_event, e);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* Client: the server opens a mapping stream; accept it. */
static void on_cli_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                        void *arg)
{
    struct fixture *f = arg;
    int i = o->name.n == 1 && o->name.p[0] == 'b';

    (void)t;
    watch(&f->cli_end[i], wm_tun_stream_accept(s));
    f->accepted++;
}

static void srv_open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct end *e = arg;

    (void)reason;
    assert_int_equal(code, WM_TUN_OPEN_OK);
    watch(e, outer);
    F->opened++;
}

static const struct wm_tun_cbs srv_cbs = {.ready = on_ready, .registered = on_registered};
static const struct wm_tun_cbs cli_cbs = {
    .ready = on_ready, .register_result = on_result, .open = on_cli_open};

/* REGISTER payload for the mappings named in names (one letter each). */
static size_t reg_of(const char *names, uint8_t *buf, size_t cap)
{
    struct wm_tun_mapping m[4];
    size_t n = strlen(names);

    memset(m, 0, sizeof(m));
    for (size_t i = 0; i < n; i++) {
        m[i].name.p = names + i;
        m[i].name.n = 1;
        m[i].mode = WM_TUN_MODE_TCP;
    }
    return wm_tun_register_encode(buf, cap, m, n);
}

static void start(struct fixture *f, const char *names, const char *then)
{
    int sv[2];
    uint8_t reg[512];
    uint8_t reg2[512];
    size_t len = reg_of(names, reg, sizeof(reg));
    struct wm_tun_conf sc = {.role = WM_TUN_ROLE_SERVER};
    struct wm_tun_conf cc = {.role = WM_TUN_ROLE_CLIENT, .name = "unit", .reg = reg,
                             .reglen = len};

    assert_true(len > 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    f->srv = wm_tun_new(wm_worker_get(0),
                        bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE), &sc,
                        &srv_cbs, f, 1);
    f->cli = wm_tun_new(wm_worker_get(0),
                        bufferevent_socket_new(f->base, sv[1], BEV_OPT_CLOSE_ON_FREE), &cc,
                        &cli_cbs, f, 2);
    assert_non_null(f->srv);
    assert_non_null(f->cli);
    if (then != NULL) {
        /* changed before the handshake sent anything: the new list goes */
        size_t len2 = reg_of(then, reg2, sizeof(reg2));
        assert_int_equal(wm_tun_reregister(f->cli, reg2, len2), 0);
    }
    assert_true(run_until(&f->ready, 2, 3000));
}

static int setup(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    F = &f;
    assert_int_equal(wm_workers_init(1), 0);
    f.base = wm_worker_base(wm_worker_get(0));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int never = 0;

    wm_tun_destroy(f->cli);
    wm_tun_destroy(f->srv);
    run_until(&never, 1, 20); /* the streams' deferred reset events */
    for (int i = 0; i < 2; i++) {
        if (f->srv_end[i].bev != NULL) {
            wm_bev_free(f->srv_end[i].bev);
        }
        if (f->cli_end[i].bev != NULL) {
            wm_bev_free(f->cli_end[i].bev);
        }
    }
    run_until(&never, 1, 20);
    wm_workers_join();
    return 0;
}

static bool keep_named(uint32_t tag, void *arg)
{
    const char *name = arg;

    return tag == wm_tun_tag(name, strlen(name));
}

/* A list changed before the handshake is what the server sees first. */
static void test_change_before_register(void **state)
{
    struct fixture *f = *state;

    start(f, "ab", "c");
    assert_int_equal(f->registered, 1);
    assert_string_equal(f->last_names, "c");
}

/* Re-register over the ready carrier: the server sees the new list, the
 * client its answer; resetting the removed mapping's stream leaves the
 * other one flowing both ways. */
static void test_reregister_and_reset_only_removed(void **state)
{
    struct fixture *f = *state;
    uint8_t reg[512];

    start(f, "ab", NULL);
    assert_int_equal(f->registered, 1);
    assert_string_equal(f->last_names, "a b");
    for (int i = 0; i < 2; i++) {
        struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {i ? "b" : "a", 1}, {"", 0}};
        assert_non_null(wm_tun_open(f->srv, &o, srv_open_cb, &f->srv_end[i]));
    }
    assert_true(run_until(&f->opened, 2, 3000));
    assert_int_equal(f->accepted, 2);

    assert_int_equal(wm_tun_reregister(f->cli, reg, reg_of("a", reg, sizeof(reg))), 0);
    assert_true(run_until(&f->results, 2, 3000));
    assert_int_equal(f->registered, 2);
    assert_string_equal(f->last_names, "a");
    assert_true(wm_tun_is_ready(f->srv) && wm_tun_is_ready(f->cli));

    assert_int_equal(wm_tun_reset_streams(f->srv, keep_named, "a", "mapping removed"), 1);
    assert_true(run_until(&f->cli_end[1].errors, 1, 3000)); /* b: reset on both sides */
    assert_int_equal(f->srv_end[1].errors, 1);
    assert_int_equal(wm_tun_nstreams(f->srv), 1);

    bufferevent_write(f->srv_end[0].bev, "ping", 4); /* a: still both ways */
    bufferevent_write(f->cli_end[0].bev, "pong", 4);
    uint64_t end = wm_now_ms() + 3000;
    while ((f->cli_end[0].ngot < 4 || f->srv_end[0].ngot < 4) && wm_now_ms() < end) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_memory_equal(f->cli_end[0].got, "ping", 4);
    assert_memory_equal(f->srv_end[0].got, "pong", 4);
    assert_int_equal(f->cli_end[0].errors + f->srv_end[0].errors, 0);
    /* nothing else to reset */
    assert_int_equal(wm_tun_reset_streams(f->cli, keep_named, "a", "mapping removed"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_change_before_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reregister_and_reset_only_removed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
