/*
 * tunnel/bridge.c - join one connection to a target reached through the
 * tunnel (or dialed directly), with access logging and graceful-stop
 * registration. Used by every tunnel path:
 *  - client entry / public tcp port: a socket -> a new stream, attached to
 *    the socket directly (mux_sock.c, no relay);
 *  - incoming mapping stream -> dial the local service, then accept the
 *    stream attached to the dialed socket;
 *  - child PROXY stream -> parent (middle node): a stream's bufferevent ->
 *    a new stream, with the relay.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/relay.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"
#include "net/proxyproto.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"

/* The bridge's hold on its tunnel stream; changes go through set_stream(). */
enum bridge_stream {
    BS_NONE = 0, /* no stream: not opened yet, handed to the relay, or gone */
    BS_OPENING,  /* we opened it, awaiting the peer's answer (st: cancel it) */
    BS_PENDING,  /* the peer opened it, we are dialing (st: refuse it) */
    BS_ATTACHED, /* socket stream: the mux moves the bytes; sock_end ends us */
    BS_COUNT
};

struct bridge {
    struct wm_conn_link link; /* first: the worker's registry */
    uint64_t id;
    struct wm_worker *w;
    struct bufferevent *a;     /* relay side (stream to stream), or NULL */
    int fd;                    /* our socket until the mux takes it, or -1 */
    enum bridge_stream sk;
    bool swap;                 /* fd is the target side: swap the counts */
    bool answer;               /* fd's client speaks a proxy protocol: answer failures */
    struct wm_tun_stream *st;
    struct wm_tun_stream *child; /* middle node: the child's pending stream, or NULL */
    struct wm_dial *dial;
    struct wm_relay *relay;
    struct wm_listen_stats *stats;
    const char *proto;         /* static string */
    char *target;
    uint8_t *preamble;         /* PROXY protocol header for the dialed socket, or NULL */
    size_t npreamble;
    int idle_ms;
    int code;
    uint64_t start_ms;
    uint64_t in;
    uint64_t out;
    wm_metric m_in, m_out;     /* a mapping's byte counters, or 0 */
    char peer[WM_ADDR_STR_MAX];
};

static const char *const bs_names[BS_COUNT] = {"none", "opening", "pending", "attached"};

static void set_stream(struct bridge *b, enum bridge_stream sk, struct wm_tun_stream *st)
{
    if (b->sk != sk) {
        wm_log(WM_LOG_DEBUG, b->id, "bridge: stream %s -> %s", bs_names[b->sk], bs_names[sk]);
    }
    b->sk = sk;
    b->st = st;
}

/* The one end of a bridge: log, count, release. Every path calls it as its
 * last use of b (no callback of b runs on after it), so a bridge needs no
 * lifetime guard. */
static void bridge_finish(struct bridge *b, const char *why)
{
    wm_log(WM_LOG_INFO, b->id, "access proto=%s client=%s target=%s code=%d in=%llu out=%llu "
                               "ms=%llu end=%s",
           b->proto, b->peer, b->target != NULL ? b->target : "-", b->code,
           (unsigned long long)b->in, (unsigned long long)b->out,
           (unsigned long long)(wm_now_ms() - b->start_ms), why);
    wm_listen_stats_conn_close(b->stats, b->in, b->out);
    wm_metrics_add(b->m_in, b->swap ? b->out : b->in);
    wm_metrics_add(b->m_out, b->swap ? b->in : b->out);
    wm_worker_conn_del(b->w, &b->link);
    if (b->dial != NULL) {
        wm_dial_cancel(b->dial);
    }
    if (b->child != NULL) {
        wm_tun_stream_refuse(b->child, WM_TUN_OPEN_UNREACHABLE, why);
    }
    switch (b->sk) {
    case BS_OPENING:
        wm_tun_open_cancel(b->st);
        break;
    case BS_PENDING:
        wm_tun_stream_refuse(b->st, WM_TUN_OPEN_UNREACHABLE, why);
        break;
    case BS_ATTACHED: /* only reached through sock_end: st is gone */
    case BS_NONE:
    case BS_COUNT:
        break;
    }
    if (b->a != NULL) {
        wm_bev_free(b->a);
    }
    if (b->fd >= 0) {
        close(b->fd);
    }
    wm_listen_stats_unref(b->stats);
    free(b->target);
    free(b->preamble);
    free(b);
}

static void set_target(struct bridge *b, const char *target)
{
    free(b->target);
    b->target = strdup(target);
}

static void relay_done(void *arg, const struct wm_relay_result *res)
{
    struct bridge *b = arg;

    b->relay = NULL;
    b->in += res->a_to_b;
    b->out += res->b_to_a;
    bridge_finish(b, wm_relay_end_str(res->end));
}

/* The mux finished an attached socket stream (fd already closed). */
static void sock_end(void *arg, const struct wm_tun_sock_result *r)
{
    struct bridge *b = arg;

    set_stream(b, BS_NONE, NULL);
    b->in += b->swap ? r->out : r->in;
    b->out += b->swap ? r->in : r->out;
    bridge_finish(b, r->why);
}

static void abort_cb(struct wm_conn_link *link)
{
    struct bridge *b = (struct bridge *)link;

    if (b->relay != NULL) {
        wm_relay_abort(b->relay);
        return;
    }
    if (b->sk == BS_ATTACHED) {
        wm_tun_sock_abort(b->st); /* sock_end finishes b */
        return;
    }
    bridge_finish(b, "shutdown");
}

/* While connecting, a going away is the end. */
static void wait_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    bridge_finish(arg, "client-closed");
}

const char *tnode_peer_field(int fd, const struct sockaddr *peer, char *out, size_t cap)
{
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);

    if (peer == NULL || fd < 0 || getsockname(fd, (struct sockaddr *)&local, &llen) < 0) {
        return wm_tun_peer_format(out, cap, peer, NULL);
    }
    return wm_tun_peer_format(out, cap, peer, (struct sockaddr *)&local);
}

static struct bridge *bridge_alloc(const char *peer, const char *proto,
                                   struct wm_listen_stats *stats, int idle_ms)
{
    struct bridge *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->id = wm_log_next_id();
    b->w = wm_worker_self();
    b->fd = -1;
    b->idle_ms = idle_ms;
    b->start_ms = wm_now_ms();
    b->link.abort = abort_cb;
    b->proto = proto;
    b->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    snprintf(b->peer, sizeof(b->peer), "%s", peer != NULL ? peer : "-");
    wm_worker_conn_add(b->w, &b->link);
    return b;
}

struct bridge *bridge_new(struct bufferevent *a, const char *peer, const char *proto,
                          struct wm_listen_stats *stats, int idle_ms)
{
    struct bridge *b = bridge_alloc(peer, proto, stats, idle_ms);

    if (b == NULL) {
        wm_bev_free(a);
        return NULL;
    }
    b->a = a;
    /* Reading waits until the target is there; bytes stay buffered. */
    bufferevent_setcb(a, NULL, NULL, wait_event_cb, b);
    bufferevent_disable(a, EV_READ);
    bufferevent_enable(a, EV_WRITE);
    return b;
}

struct bridge *bridge_new_fd(int fd, const char *peer, const char *proto,
                             struct wm_listen_stats *stats, int idle_ms)
{
    struct bridge *b = bridge_alloc(peer, proto, stats, idle_ms);

    if (b == NULL) {
        close(fd);
        return NULL;
    }
    b->fd = fd; /* not read until the stream is open: early bytes wait in the kernel */
    return b;
}

static void bridge_abandoned(void *arg)
{
    struct bridge *b = arg;

    if (b->child != NULL) {
        b->child = NULL; /* gone; the parent's stream, if opening, is cancelled */
    } else {
        set_stream(b, BS_NONE, NULL);
    }
    bridge_finish(b, "reset-by-peer");
}

struct bridge *bridge_new_child(struct wm_tun_stream *s, const char *peer, const char *proto,
                                int idle_ms)
{
    struct bridge *b = bridge_alloc(peer, proto, NULL, idle_ms);

    if (b == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "out of memory");
        return NULL;
    }
    b->child = s;
    wm_tun_stream_watch(s, bridge_abandoned, b);
    return b;
}

/* Middle node: the parent answered; pass its answer on to the child. Returns
 * the child's end (accepted), or NULL (refused, or nothing to do). */
static struct bufferevent *child_answer(struct bridge *b, uint8_t code, const char *reason)
{
    struct wm_tun_stream *child = b->child;

    if (child == NULL) {
        return NULL;
    }
    b->child = NULL;
    if (code != WM_TUN_OPEN_OK) {
        wm_tun_stream_refuse(child, code, reason);
        return NULL;
    }
    return wm_tun_stream_accept(child); /* refuses it itself on failure */
}

struct bridge *bridge_new_stream(struct wm_tun_stream *s, const char *peer, const char *proto,
                                 int idle_ms)
{
    struct bridge *b = bridge_alloc(peer, proto, NULL, idle_ms);

    if (b == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "out of memory");
        return NULL;
    }
    set_stream(b, BS_PENDING, s);
    b->swap = true;
    wm_tun_stream_watch(s, bridge_abandoned, b);
    return b;
}


void bridge_answer_failures(struct bridge *b)
{
    b->answer = true;
}

void bridge_count_to(struct bridge *b, uint32_t m_in, uint32_t m_out)
{
    b->m_in = m_in;
    b->m_out = m_out;
}

/* The stream could not be opened: end, after handing a proxy client its
 * answer (its socket was not read yet). */
static void open_failed(struct bridge *b, const char *end, const char *reason)
{
    char peer[WM_ADDR_STR_MAX];
    char why[160];
    const char *proto = b->proto;
    int fd = b->answer ? b->fd : -1;

    if (fd < 0) {
        bridge_finish(b, end);
        return;
    }
    b->fd = -1;
    snprintf(peer, sizeof(peer), "%s", b->peer);
    snprintf(why, sizeof(why), "the tunnel could not open a stream: %s", reason);
    bridge_finish(b, end);
    tnode_refuse_proxy(fd, peer, proto, why, NULL, false);
}

static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct bridge *b = arg;

    b->code = code;
    if (b->child != NULL) {
        b->a = child_answer(b, code, reason);
        if (code == WM_TUN_OPEN_OK && b->a == NULL) {
            wm_bev_free(outer);
            set_stream(b, BS_NONE, NULL);
            bridge_finish(b, "out-of-memory");
            return;
        }
    }
    if (code != WM_TUN_OPEN_OK) {
        set_stream(b, BS_NONE, NULL);
        wm_log(WM_LOG_DEBUG, b->id, "tunnel open %s: %s", b->target != NULL ? b->target : "-", reason);
        open_failed(b, wm_tun_open_code_end(code), reason);
        return;
    }
    if (outer == NULL) {
        set_stream(b, BS_ATTACHED, b->st); /* the mux owns the socket now */
        b->fd = -1;
        return;
    }
    set_stream(b, BS_NONE, NULL);
    struct wm_relay_conf rc = {.idle_ms = b->idle_ms};
    b->relay = wm_relay_start(wm_worker_base(b->w), b->a, outer, &rc, relay_done, b);
    if (b->relay == NULL) {
        wm_bev_free(outer);
        bridge_finish(b, "out-of-memory");
        return;
    }
    b->a = NULL;
}

void bridge_open_stream(struct bridge *b, struct wm_tun *t, const struct wm_tun_open *o,
                        const char *target)
{
    struct wm_tun_stream *st = NULL;

    set_target(b, target);
    if (t != NULL && b->fd >= 0) {
        st = wm_tun_open_sock(t, o, b->fd, b->idle_ms, open_cb, sock_end, b);
    } else if (t != NULL) {
        st = wm_tun_open(t, o, open_cb, b);
    }
    if (st == NULL) {
        const char *why = t != NULL ? wm_tun_open_refusal(t) : NULL;
        bool full = t != NULL && why != NULL && wm_tun_is_ready(t);
        b->code = full ? WM_TUN_OPEN_LIMIT : WM_TUN_OPEN_UNREACHABLE;
        open_failed(b, full ? "stream-limit" : "tunnel-down",
                    why != NULL ? why : "the carrier is down");
        return;
    }
    set_stream(b, BS_OPENING, st);
}

static uint8_t open_code_of(enum wm_dial_status st)
{
    switch (st) {
    case WM_DIAL_REFUSED:
        return WM_TUN_OPEN_REFUSED;
    case WM_DIAL_TIMEOUT:
        return WM_TUN_OPEN_TIMEOUT;
    default:
        return WM_TUN_OPEN_UNREACHABLE;
    }
}

/* The PROXY protocol header goes first on a socket that just connected:
 * its send buffer is empty, so the few bytes go whole. */
static int send_preamble(struct bridge *b, int fd)
{
    ssize_t r;

    do {
        r = send(fd, b->preamble, b->npreamble, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0 || (size_t)r != b->npreamble) {
        wm_log(WM_LOG_WARN, b->id, "dial %s: cannot send the PROXY protocol header: %s",
               b->target != NULL ? b->target : "-", r < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

int bridge_set_proxy_protocol(struct bridge *b, int version, const struct sockaddr *src,
                              const struct sockaddr *dst)
{
    uint8_t buf[WM_PP_BUILD_MAX];
    size_t n = wm_pp_build(version, src, dst, buf, sizeof(buf));

    free(b->preamble);
    b->preamble = n > 0 ? malloc(n) : NULL;
    if (b->preamble == NULL) {
        bridge_finish(b, n > 0 ? "out-of-memory" : "bad-proxy-protocol");
        return -1;
    }
    memcpy(b->preamble, buf, n);
    b->npreamble = n;
    return 0;
}

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer, socklen_t plen,
                    void *arg)
{
    struct bridge *b = arg;
    struct wm_tun_stream *s = b->st;

    (void)peer;
    (void)plen;
    b->dial = NULL;
    b->code = st == WM_DIAL_OK ? WM_TUN_OPEN_OK : open_code_of(st); /* what the opener hears */
    if (st != WM_DIAL_OK) {
        wm_log(WM_LOG_DEBUG, b->id, "dial %s: %s", b->target != NULL ? b->target : "-",
               wm_dial_status_str(st));
        set_stream(b, BS_NONE, NULL);
        wm_tun_stream_refuse(s, open_code_of(st), wm_dial_status_str(st));
        bridge_finish(b, wm_dial_status_end(st));
        return;
    }
    if (b->preamble != NULL && send_preamble(b, fd) < 0) {
        close(fd);
        set_stream(b, BS_NONE, NULL);
        wm_tun_stream_refuse(s, WM_TUN_OPEN_UNREACHABLE, "cannot send the PROXY header");
        bridge_finish(b, "proxy-protocol-failed");
        return;
    }
    set_stream(b, BS_ATTACHED, s);
    if (wm_tun_stream_accept_sock(s, fd, b->idle_ms, sock_end, b) < 0) {
        set_stream(b, BS_NONE, NULL); /* refused: sock_end does not run */
        bridge_finish(b, "out-of-memory");
    }
}

void bridge_dial(struct bridge *b, const char *host, uint16_t port, int timeout_ms)
{
    char t[WM_HOST_MAX + 16];

    snprintf(t, sizeof(t), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    set_target(b, t);
    b->dial = wm_dial_start(b->w, host, port, timeout_ms, dial_cb, b);
    if (b->dial == NULL) {
        bridge_finish(b, "out-of-memory");
    }
}

void bridge_abort(struct bridge *b, const char *why)
{
    if (b->sk == BS_ATTACHED) {
        wm_tun_sock_abort(b->st);
        return;
    }
    bridge_finish(b, why);
}
