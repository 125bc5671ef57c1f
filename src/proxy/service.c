/*
 * proxy/service.c - the forward proxy service: accept, sniff the first byte,
 * hand over to the protocol handler.
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/relay.h"
#include "core/service.h"
#include "core/splice.h"
#include "core/util.h"
#include "proxy/pconn.h"

void wm_proxy_opts_default(struct wm_proxy_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->flags = WM_PROXY_FLAG_ALL;
    o->connect_timeout_ms = WM_CONNECT_TIMEOUT_MS;
    o->idle_timeout_ms = WM_IDLE_TIMEOUT_MS;
    o->handshake_timeout_ms = WM_HANDSHAKE_TIMEOUT_MS;
}

static void proxy_service_destroy(struct wm_service *svc)
{
    struct wm_proxy_service *ps = (struct wm_proxy_service *)svc;

    /* Wipe credentials before the memory goes back to the allocator. */
    explicit_bzero(&ps->opts, sizeof(ps->opts));
    free(ps);
}

static void proxy_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         struct wm_listen_stats *stats)
{
    struct bufferevent *bev = bufferevent_socket_new(wm_worker_base(w), fd, BEV_OPT_CLOSE_ON_FREE);

    if (bev == NULL) {
        close(fd);
        return;
    }
    wm_proxy_serve(svc, w, bev, peer, peerlen, stats);
}

struct wm_service *wm_proxy_service_new(const struct wm_proxy_opts *opts)
{
    struct wm_proxy_service *ps = calloc(1, sizeof(*ps));

    if (ps == NULL) {
        return NULL;
    }
    wm_service_init(&ps->base, "proxy", proxy_accept, proxy_service_destroy);
    ps->opts = *opts;
    return &ps->base;
}

static void pconn_abort(struct wm_conn_link *link)
{
    struct wm_pconn *c = (struct wm_pconn *)link;

    if (c->relay != NULL) {
        wm_relay_abort(c->relay); /* its callback finishes c */
        return;
    }
    if (c->splice != NULL) {
        wm_splice_abort(c->splice);
        return;
    }
    wm_pconn_finish(c, "shutdown");
}

static void handshake_timeout_cb(int fd, short what, void *arg)
{
    struct wm_pconn *c = arg;

    (void)fd;
    (void)what;
    wm_log(WM_LOG_DEBUG, c->id, "client=%s handshake timeout", c->peer_str);
    wm_pconn_finish(c, "handshake-timeout");
}

static void sniff_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    wm_pconn_finish(arg, "client-closed");
}

static void sniff_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_pconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned char first;

    if (evbuffer_copyout(in, &first, 1) != 1) {
        return;
    }
    if (first == 5) {
        c->proto = WM_PCONN_SOCKS5;
        wm_socks5_start(c);
    } else if (first == 4) {
        c->proto = WM_PCONN_SOCKS4;
        wm_socks4_start(c);
    } else if (isalpha(first)) {
        c->proto = WM_PCONN_HTTP;
        wm_http_proxy_start(c);
    } else {
        wm_log(WM_LOG_DEBUG, c->id, "client=%s unknown protocol (first byte 0x%02x)",
               c->peer_str, first);
        wm_pconn_finish(c, "unknown-protocol");
    }
}

struct wm_pconn *wm_pconn_new(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                              const struct sockaddr *peer, socklen_t peerlen,
                              struct wm_listen_stats *stats)
{
    struct wm_proxy_service *ps = (struct wm_proxy_service *)svc;
    struct wm_pconn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        wm_bev_free(bev);
        return NULL;
    }
    c->id = wm_log_next_id();
    c->w = w;
    c->svc = (struct wm_proxy_service *)wm_service_ref(svc);
    c->opts = &ps->opts;
    c->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    c->bev = bev;
    c->start_ms = wm_now_ms();
    c->link.abort = pconn_abort;
    if (peer != NULL && peerlen <= sizeof(c->peer)) {
        memcpy(&c->peer, peer, peerlen);
        c->peerlen = peerlen;
        wm_addr_format(peer, c->peer_str, sizeof(c->peer_str));
    } else {
        snprintf(c->peer_str, sizeof(c->peer_str), "stream");
    }
    wm_worker_conn_add(w, &c->link);
    wm_log(WM_LOG_DEBUG, c->id, "accept client=%s", c->peer_str);
    return c;
}

void wm_proxy_serve(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                    const struct sockaddr *peer, socklen_t peerlen,
                    struct wm_listen_stats *stats)
{
    struct wm_pconn *c = wm_pconn_new(svc, w, bev, peer, peerlen, stats);

    if (c == NULL) {
        return;
    }
    bufferevent_setcb(bev, sniff_read_cb, NULL, sniff_event_cb, c);
    /* Read only: replies go out with wm_bev_send_bytes(), which turns
     * writing on just when the kernel does not take them at once. */
    bufferevent_enable(bev, EV_READ);
    wm_pconn_set_timer(c, c->opts->handshake_timeout_ms, handshake_timeout_cb);
}
