#include "proxy/pconn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/relay.h"
#include "core/bev.h"
#include "core/service.h"
#include "core/splice.h"
#include "core/util.h"
#include "net/dial.h"

#define WM_FLUSH_BOUND_MS 5000

static const char *const proto_names[WM_PCONN_PROTO_COUNT] = {
    "none", "http", "connect", "socks5", "socks4", "udp",
};

void wm_pconn_finish(struct wm_pconn *c, const char *reason)
{
    if (!c->access_logged && c->proto != WM_PCONN_SNIFF) {
        wm_log(WM_LOG_INFO, c->id,
               "access proto=%s client=%s user=%s target=%s code=%d in=%llu out=%llu "
               "ms=%llu end=%s",
               proto_names[c->proto], c->peer_str, c->user[0] ? c->user : "-",
               c->target[0] ? c->target : "-", c->code, (unsigned long long)c->bytes_in,
               (unsigned long long)c->bytes_out,
               (unsigned long long)(wm_now_ms() - c->start_ms), reason);
    } else {
        wm_log(WM_LOG_DEBUG, c->id, "close client=%s end=%s", c->peer_str, reason);
    }
    /* Counters first: /status must never show a closed connection as open
     * on its listener after the worker stopped counting it. */
    wm_listen_stats_conn_close(c->stats, c->bytes_in, c->bytes_out);
    wm_worker_conn_del(c->w, &c->link);
    if (c->proto_free != NULL) {
        c->proto_free(c);
    }
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
    }
    if (c->timer != NULL) {
        event_free(c->timer);
    }
    if (c->bev != NULL) {
        wm_bev_free(c->bev);
    }
    wm_listen_stats_unref(c->stats);
    wm_service_unref(&c->svc->base);
    free(c);
}

static void flush_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_pconn *c = arg;

    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        wm_pconn_finish(c, "closed");
    }
}

static void flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_pconn *c = arg;

    (void)bev;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        wm_pconn_finish(c, "closed");
    }
}

static void flush_timeout_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wm_pconn_finish(arg, "flush-timeout");
}

static void flush_read_cb(struct bufferevent *bev, void *arg)
{
    /* Discard whatever the client keeps sending while we close. */
    struct evbuffer *in = bufferevent_get_input(bev);

    (void)arg;
    evbuffer_drain(in, evbuffer_get_length(in));
}

void wm_pconn_close_after_flush(struct wm_pconn *c, const char *reason)
{
    (void)reason;
    if (c->bev == NULL) {
        wm_pconn_finish(c, reason);
        return;
    }
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
        c->dial = NULL;
    }
    bufferevent_setcb(c->bev, flush_read_cb, flush_write_cb, flush_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    wm_pconn_set_timer(c, WM_FLUSH_BOUND_MS, flush_timeout_cb);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        wm_pconn_finish(c, reason);
    }
}

void wm_pconn_set_timer(struct wm_pconn *c, int ms, void (*cb)(int, short, void *))
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (c->timer != NULL) {
        event_free(c->timer);
    }
    c->timer = evtimer_new(wm_worker_base(c->w), cb, c);
    if (c->timer != NULL) {
        evtimer_add(c->timer, &tv);
    }
}

void wm_pconn_clear_timer(struct wm_pconn *c)
{
    if (c->timer != NULL) {
        event_free(c->timer);
        c->timer = NULL;
    }
}

static void relay_done(void *arg, const struct wm_relay_result *res)
{
    struct wm_pconn *c = arg;

    c->relay = NULL;
    c->splice = NULL;
    c->bytes_in += res->a_to_b;
    c->bytes_out += res->b_to_a;
    wm_pconn_finish(c, wm_relay_end_str(res->end));
}

void wm_pconn_relay_bev(struct wm_pconn *c, struct bufferevent *up)
{
    struct wm_relay_conf rc = {c->opts->idle_timeout_ms, 0};

    wm_pconn_clear_timer(c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0); /* the relay bounds reading itself */
    c->relay = wm_relay_start(wm_worker_base(c->w), c->bev, up, &rc, relay_done, c);
    if (c->relay == NULL) {
        bufferevent_free(up);
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    c->bev = NULL; /* the relay owns it now */
}

void wm_pconn_relay_fd(struct wm_pconn *c, int fd)
{
    if (wm_bev_is_plain_socket(c->bev)) {
        /* Two plain sockets: zero-copy splice. What the client sent early
         * and what we still owe it (a SOCKS reply) go first. */
        struct wm_relay_conf rc = {c->opts->idle_timeout_ms, 0};
        int cfd = bufferevent_getfd(c->bev);
        wm_pconn_clear_timer(c);
        /* A socket bufferevent keeps its output's start frozen. */
        evbuffer_unfreeze(bufferevent_get_output(c->bev), 1);
        c->splice = wm_splice_start(wm_worker_base(c->w), cfd, fd, bufferevent_get_input(c->bev),
                                    bufferevent_get_output(c->bev), &rc, relay_done, c);
        if (c->splice != NULL) {
            bufferevent_setfd(c->bev, -1); /* the splice owns cfd now */
            bufferevent_free(c->bev);
            c->bev = NULL;
            return;
        }
    }
    struct bufferevent *up = bufferevent_socket_new(wm_worker_base(c->w), fd,
                                                    BEV_OPT_CLOSE_ON_FREE);

    if (up == NULL) {
        close(fd);
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    wm_pconn_relay_bev(c, up);
}

void wm_pconn_set_user(struct wm_pconn *c, const char *user, size_t n)
{
    size_t i;

    for (i = 0; i < n && i < sizeof(c->user) - 1; i++) {
        unsigned char ch = (unsigned char)user[i];
        c->user[i] = (ch <= ' ' || ch >= 0x7f || ch == '"') ? '?' : (char)ch;
    }
    c->user[i] = '\0';
}

bool wm_pconn_auth_ok(const struct wm_pconn *c, const char *user, size_t ulen, const char *pass,
                      size_t plen)
{
    const struct wm_proxy_opts *o = c->opts;
    bool u;
    bool p;

    if (!o->auth) {
        return true;
    }
    /* Evaluate both, always, so timing does not tell which one was wrong. */
    u = wm_ct_equal(user, ulen, o->user, strlen(o->user));
    p = wm_ct_equal(pass, plen, o->pass, strlen(o->pass));
    return u & p;
}

int wm_pconn_socks5_rep(int st)
{
    switch ((enum wm_dial_status)st) {
    case WM_DIAL_OK:
        return WM_SOCKS5_REP_OK;
    case WM_DIAL_REFUSED:
        return WM_SOCKS5_REP_REFUSED;
    case WM_DIAL_HOST_UNREACH:
    case WM_DIAL_RESOLVE:
        return WM_SOCKS5_REP_HOST_UNREACH;
    case WM_DIAL_NET_UNREACH:
        return WM_SOCKS5_REP_NET_UNREACH;
    case WM_DIAL_TIMEOUT:
        return WM_SOCKS5_REP_TTL_EXPIRED;
    default:
        return WM_SOCKS5_REP_FAILURE;
    }
}

int wm_pconn_http_status(int st)
{
    return st == WM_DIAL_TIMEOUT ? 504 : 502;
}
