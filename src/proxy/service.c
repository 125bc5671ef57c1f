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
#include <sys/socket.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/relay.h"
#include "core/service.h"
#include "core/splice.h"
#include "core/util.h"
#include "net/acl.h"
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

    wm_acl_unref(ps->opts.acl);
    /* Wipe credentials before the memory goes back to the allocator. */
    explicit_bzero(&ps->opts, sizeof(ps->opts));
    free(ps);
}

bool wm_proxy_refuse_client(struct wm_service *svc, int fd, const struct sockaddr *peer)
{
    static const char forbidden[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                                    "Content-Length: 41\r\nConnection: close\r\n\r\n"
                                    "client not allowed by this proxy's rules\n";
    const struct wm_proxy_service *ps = (const struct wm_proxy_service *)svc;
    const char *why = NULL;
    char as[WM_ADDR_STR_MAX] = "-";

    if (wm_acl_client_ok(ps->opts.acl, peer, &why)) {
        return false;
    }
    wm_addr_format(peer, as, sizeof(as));
    wm_log(WM_LOG_WARN, 0, "acl: refused client=%s rule=%s", as, why);
    /* The protocol is not known yet: an HTTP client reads this, any other
     * sees the connection close. Never wait for the socket. */
    if (send(fd, forbidden, sizeof(forbidden) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        shutdown(fd, SHUT_WR);
    }
    close(fd);
    return true;
}

static void proxy_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                         const struct sockaddr *peer, socklen_t peerlen,
                         struct wm_listen_stats *stats)
{
    if (wm_proxy_refuse_client(svc, fd, peer)) {
        return;
    }
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
    wm_acl_ref(ps->opts.acl);
    return &ps->base;
}

static void handshake_timeout_cb(int fd, short what, void *arg)
{
    struct wm_pconn *c = arg;

    (void)fd;
    (void)what;
    wm_log(WM_LOG_DEBUG, c->conn.id, "client=%s handshake timeout", c->conn.peer_str);
    wm_conn_finish(&c->conn, "handshake-timeout");
}

static void sniff_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    wm_conn_finish(arg, "client-closed");
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
        wm_pconn_set_proto(c, WM_PCONN_SOCKS5);
        wm_socks5_start(c);
    } else if (first == 4) {
        wm_pconn_set_proto(c, WM_PCONN_SOCKS4);
        wm_socks4_start(c);
    } else if (isalpha(first)) {
        wm_pconn_set_proto(c, WM_PCONN_HTTP);
        wm_http_proxy_start(c);
    } else {
        wm_log(WM_LOG_DEBUG, c->conn.id, "client=%s unknown protocol (first byte 0x%02x)",
               c->conn.peer_str, first);
        wm_conn_finish(&c->conn, "unknown-protocol");
    }
}

struct wm_pconn *wm_pconn_new(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                              const struct sockaddr *peer, socklen_t peerlen,
                              struct wm_listen_stats *stats)
{
    struct wm_proxy_service *ps = (struct wm_proxy_service *)svc;
    struct wm_conn_limits lim = {.head_ms = ps->opts.handshake_timeout_ms,
                                 .idle_ms = ps->opts.idle_timeout_ms};
    struct wm_pconn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        wm_bev_free(bev);
        return NULL;
    }
    c->opts = &ps->opts;
    wm_conn_init(&c->conn, svc, w, bev, peer, peerlen, stats, &lim);
    return c;
}

static void serve(struct wm_pconn *c, struct bufferevent *bev)
{
    bufferevent_setcb(bev, sniff_read_cb, NULL, sniff_event_cb, c);
    /* Read only: replies go out with wm_bev_send_bytes(), which turns
     * writing on just when the kernel does not take them at once. */
    bufferevent_enable(bev, EV_READ);
    wm_conn_set_timer(&c->conn, c->opts->handshake_timeout_ms, handshake_timeout_cb);
}

void wm_proxy_serve(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                    const struct sockaddr *peer, socklen_t peerlen,
                    struct wm_listen_stats *stats)
{
    struct wm_pconn *c = wm_pconn_new(svc, w, bev, peer, peerlen, stats);

    if (c != NULL) {
        serve(c, bev);
    }
}

void wm_proxy_serve_origin(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                           const struct sockaddr *src, const struct sockaddr *dst,
                           int pp_version)
{
    struct wm_pconn *c = wm_pconn_new(svc, w, bev, NULL, 0, NULL);

    if (c == NULL) {
        return;
    }
    if (wm_conn_set_origin(&c->conn, src, dst, pp_version) < 0) {
        wm_conn_finish(&c->conn, "out-of-memory");
        return;
    }
    serve(c, bev);
}
