/*
 * tunnel/bridge.c - join one connection to a target reached through the
 * tunnel (or dialed directly), then relay. Used by every tunnel path:
 * client entry -> PROXY stream, incoming MAPPING stream -> local service,
 * public TCP -> MAPPING stream, child PROXY stream -> parent.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/relay.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"

struct bridge {
    struct wm_conn_link link; /* first: the worker's registry */
    uint64_t id;
    struct wm_worker *w;
    struct bufferevent *a;
    struct wm_dial *dial;
    struct wm_tun_stream *open;
    struct wm_relay *relay;
    struct wm_listen_stats *stats;
    int idle_ms;
    char peer[WM_ADDR_STR_MAX];
    char proto[24];
    char target[WM_HOST_MAX + 16];
    int code;
    uint64_t start_ms;
    uint64_t in;
    uint64_t out;
};

static void bridge_finish(struct bridge *b, const char *why)
{
    wm_log(WM_LOG_INFO, b->id, "access proto=%s client=%s target=%s code=%d in=%llu out=%llu "
                               "ms=%llu end=%s",
           b->proto, b->peer, b->target[0] ? b->target : "-", b->code,
           (unsigned long long)b->in, (unsigned long long)b->out,
           (unsigned long long)(wm_now_ms() - b->start_ms), why);
    wm_listen_stats_conn_close(b->stats, b->in, b->out);
    wm_worker_conn_del(b->w, &b->link);
    if (b->dial != NULL) {
        wm_dial_cancel(b->dial);
    }
    if (b->open != NULL) {
        wm_tun_open_cancel(b->open);
    }
    if (b->a != NULL) {
        wm_bev_free(b->a);
    }
    wm_listen_stats_unref(b->stats);
    free(b);
}

static void relay_done(void *arg, const struct wm_relay_result *res)
{
    struct bridge *b = arg;

    b->relay = NULL;
    b->in += res->a_to_b;
    b->out += res->b_to_a;
    bridge_finish(b, wm_relay_end_str(res->end));
}

static void abort_cb(struct wm_conn_link *link)
{
    struct bridge *b = (struct bridge *)link;

    if (b->relay != NULL) {
        wm_relay_abort(b->relay);
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

struct bridge *bridge_new(struct bufferevent *a, const char *peer, const char *proto,
                          struct wm_listen_stats *stats, int idle_ms)
{
    struct bridge *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        wm_bev_free(a);
        return NULL;
    }
    b->id = wm_log_next_id();
    b->w = wm_worker_self();
    b->a = a;
    b->idle_ms = idle_ms;
    b->start_ms = wm_now_ms();
    b->link.abort = abort_cb;
    b->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    snprintf(b->peer, sizeof(b->peer), "%s", peer != NULL ? peer : "-");
    snprintf(b->proto, sizeof(b->proto), "%s", proto);
    wm_worker_conn_add(b->w, &b->link);
    /* Reading waits until the target is there; bytes stay buffered. */
    bufferevent_setcb(a, NULL, NULL, wait_event_cb, b);
    bufferevent_disable(a, EV_READ);
    bufferevent_enable(a, EV_WRITE);
    return b;
}

static void start_relay(struct bridge *b, struct bufferevent *target)
{
    struct wm_relay_conf rc = {b->idle_ms, 0};

    b->relay = wm_relay_start(wm_worker_base(b->w), b->a, target, &rc, relay_done, b);
    if (b->relay == NULL) {
        wm_bev_free(target);
        bridge_finish(b, "out-of-memory");
        return;
    }
    b->a = NULL;
}

static void open_cb(struct bufferevent *outer, uint8_t code, const char *reason, void *arg)
{
    struct bridge *b = arg;

    b->open = NULL;
    b->code = code;
    if (outer == NULL) {
        wm_log(WM_LOG_DEBUG, b->id, "tunnel open %s: %s", b->target, reason);
        bridge_finish(b, wm_tun_open_code_str(code));
        return;
    }
    start_relay(b, outer);
}

void bridge_open_stream(struct bridge *b, struct wm_tun *t, const struct wm_tun_open *o,
                        const char *target)
{
    snprintf(b->target, sizeof(b->target), "%s", target);
    b->open = t != NULL ? wm_tun_open(t, o, open_cb, b) : NULL;
    if (b->open == NULL) {
        b->code = WM_TUN_OPEN_UNREACHABLE;
        bridge_finish(b, "tunnel-down");
    }
}

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer, socklen_t plen,
                    void *arg)
{
    struct bridge *b = arg;
    struct bufferevent *up;

    (void)peer;
    (void)plen;
    b->dial = NULL;
    if (st != WM_DIAL_OK) {
        b->code = st;
        wm_log(WM_LOG_DEBUG, b->id, "dial %s: %s", b->target, wm_dial_status_str(st));
        bridge_finish(b, wm_dial_status_str(st));
        return;
    }
    up = bufferevent_socket_new(wm_worker_base(b->w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (up == NULL) {
        close(fd);
        bridge_finish(b, "out-of-memory");
        return;
    }
    start_relay(b, up);
}

void bridge_dial(struct bridge *b, const char *host, uint16_t port, int timeout_ms)
{
    snprintf(b->target, sizeof(b->target), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    b->dial = wm_dial_start(b->w, host, port, timeout_ms, dial_cb, b);
    if (b->dial == NULL) {
        bridge_finish(b, "out-of-memory");
    }
}

void bridge_abort(struct bridge *b, const char *why)
{
    bridge_finish(b, why);
}
