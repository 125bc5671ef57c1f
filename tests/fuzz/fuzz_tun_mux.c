/*
 * tests/fuzz/fuzz_tun_mux.c - libFuzzer target: one tunnel carrier
 * (tunnel/mux.h) whose peer is the fuzzer.
 *
 * The input is what the peer sends on the carrier: preface, handshake,
 * then any frames. Byte 0 sets the scene:
 *   bit 0      role of our node: 0 server (the pre-auth side the internet
 *              reaches), 1 client
 *   bit 1      our node has credentials (the fuzzer cannot forge the MAC,
 *              so this explores the refusal paths)
 *   bit 2      the peer half-closes the carrier after its bytes
 *   bits 3-5   size of the pieces the bytes arrive in (1..8 KiB steps)
 * Without credentials the handshake needs no secret (AUTH with empty user
 * and zero MAC, docs/tunnel.md), so frames after it reach the stream code.
 *
 * Streams the peer opens are answered by their id: accepted as a
 * bufferevent (we write a greeting and half-close), accepted on a socket
 * (socketpair; the far end greets and half-closes), refused, or left
 * pending. Once ready our node also opens one stream of each kind itself,
 * so OPEN_RESULT, DATA and WINDOW_UPDATE for ids 1/3 (client) or 2/4
 * (server) reach live streams. Everything is torn down after each input;
 * ASan/UBSan and the leak checker do the judging.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/log.h"
#include "core/worker.h"
#include "tunnel/mux.h"
#include "fuzz_feed.h"

#define MAX_HELD 64

struct scene {
    struct wm_tun *tun; /* NULL once closed */
    struct bufferevent *held[MAX_HELD];
    int fds[MAX_HELD];
    size_t nheld, nfds;
    bool opened_ours;
};

static struct event_base *base;
static struct scene S;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    base = fuzz_start();
    return 0;
}

static void hold_bev(struct bufferevent *b)
{
    if (S.nheld < MAX_HELD) {
        S.held[S.nheld++] = b;
    } else {
        bufferevent_free(b);
    }
}

static void hold_fd(int fd)
{
    if (S.nfds < MAX_HELD) {
        S.fds[S.nfds++] = fd;
    } else {
        close(fd);
    }
}

/* A local endpoint that says hello and closes its sending side. */
static void greet_bev(struct bufferevent *b)
{
    bufferevent_write(b, "hello from the endpoint\n", 24);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

static int sock_pair(int v[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, v) != 0) {
        return -1;
    }
    if (write(v[1], "hello from the socket\n", 22) < 0) {
        /* nonblocking and empty: cannot fail here */
    }
    shutdown(v[1], SHUT_WR);
    return 0;
}

static void sock_end(void *arg, const struct wm_tun_sock_result *r)
{
    (void)arg;
    if (r->why == NULL) {
        abort(); /* always named */
    }
}

static void pending_gone(void *arg)
{
    (void)arg;
}

static void on_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                    void *arg)
{
    uint32_t id = wm_tun_stream_id(s);
    int v[2];

    (void)t;
    (void)o;
    (void)arg;
    switch ((id >> 1) & 3) {
    case 0: {
        struct bufferevent *b = wm_tun_stream_accept(s);
        if (b != NULL) {
            greet_bev(b);
            hold_bev(b);
        }
        break;
    }
    case 1:
        if (sock_pair(v) != 0) {
            wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "no sockets");
            break;
        }
        hold_fd(v[1]);
        if (wm_tun_stream_accept_sock(s, v[0], 1000, sock_end, NULL) != 0) {
            break; /* refused; v[0] closed by the mux */
        }
        break;
    case 2:
        wm_tun_stream_refuse(s, WM_TUN_OPEN_REFUSED, "refused by the fuzz harness");
        break;
    default:
        wm_tun_stream_watch(s, pending_gone, NULL);
        break;
    }
}

static void our_open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    (void)arg;
    if (outer != NULL) {
        if (code != WM_TUN_OPEN_OK) {
            abort();
        }
        greet_bev(outer);
        hold_bev(outer);
    } else if (code == WM_TUN_OPEN_OK || reason == NULL) {
        abort(); /* a failed open always has a code and a reason */
    }
}

/* A socket open that failed leaves the socket with us. */
static void our_sock_open_cb(struct bufferevent *outer, uint8_t code, const char *reason,
                             void *arg)
{
    if (outer != NULL || (code != WM_TUN_OPEN_OK && reason == NULL)) {
        abort();
    }
    if (code != WM_TUN_OPEN_OK) {
        close((int)(intptr_t)arg);
    }
}

static void on_ready(struct wm_tun *t, void *arg)
{
    struct wm_tun_open o = {.kind = WM_TUN_OPEN_MAPPING,
                            .name = {"web", 3},
                            .peer = {"127.0.0.1:1", 11}};
    int v[2];

    (void)arg;
    if (S.opened_ours) {
        return;
    }
    S.opened_ours = true;
    (void)wm_tun_open(t, &o, our_open_cb, NULL);
    if (sock_pair(v) == 0) {
        hold_fd(v[1]);
        if (wm_tun_open_sock(t, &o, v[0], 1000, our_sock_open_cb, sock_end,
                             (void *)(intptr_t)v[0]) == NULL) {
            close(v[0]);
        }
    }
}

static void on_registered(struct wm_tun *t, const struct wm_tun_mapping *m, size_t n,
                          uint8_t *ok, const char **reason, void *arg)
{
    (void)t;
    (void)arg;
    for (size_t i = 0; i < n; i++) {
        ok[i] = (m[i].name.n & 1) == 0;
        reason[i] = ok[i] ? "" : "odd names are refused here";
    }
}

static void on_register_result(struct wm_tun *t, const uint8_t *ok, const struct wm_tun_str *r,
                               size_t n, void *arg)
{
    (void)t;
    (void)ok;
    (void)r;
    (void)n;
    (void)arg;
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    (void)t;
    (void)arg;
    if (why == NULL) {
        abort();
    }
    S.tun = NULL;
}

static const struct wm_tun_cbs cbs = {.ready = on_ready,
                                      .registered = on_registered,
                                      .register_result = on_register_result,
                                      .open = on_open,
                                      .closed = on_closed};

static void spin(int fd, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        fuzz_drain(fd);
    }
}

static bool carrier_gone(void)
{
    return S.tun == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t reg[] = {0};
    int sv[2];

    if (size < 1) {
        return 0;
    }
    uint8_t ctl = data[0];
    size_t piece = (size_t)(((ctl >> 3) & 7) + 1) * 1024;
    struct wm_tun_conf conf = {.role = (ctl & 1) ? WM_TUN_ROLE_CLIENT : WM_TUN_ROLE_SERVER,
                               .name = "fuzz",
                               .window = 4096};

    if (ctl & 2) {
        conf.user = "user";
        conf.pass = "secret";
    }
    if (conf.role == WM_TUN_ROLE_CLIENT) {
        conf.reg = reg; /* an empty mapping list */
        conf.reglen = 0;
    }
    memset(&S, 0, sizeof(S));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        return 0;
    }
    struct bufferevent *carrier = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (carrier == NULL) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    S.tun = wm_tun_new(wm_worker_get(0), carrier, &conf, &cbs, NULL, 1);
    spin(sv[1], 2);
    fuzz_feed(sv[1], data + 1, size - 1, piece, spin, carrier_gone);
    if (ctl & 4) {
        shutdown(sv[1], SHUT_WR);
    }
    spin(sv[1], 8);
    if (S.tun != NULL) {
        wm_tun_destroy(S.tun);
        S.tun = NULL;
    }
    for (size_t i = 0; i < S.nheld; i++) {
        bufferevent_free(S.held[i]);
    }
    for (size_t i = 0; i < S.nfds; i++) {
        if (S.fds[i] >= 0) {
            close(S.fds[i]);
        }
    }
    spin(sv[1], 4);
    close(sv[1]);
    return 0;
}
