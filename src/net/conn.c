/*
 * net/conn.c - the accepted-connection record (see conn.h).
 */
#include "net/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/relay.h"
#include "core/service.h"
#include "core/splice.h"
#include "core/util.h"
#include "net/dial.h"
#include "net/proxyproto.h"
#include "net/tlspump.h"

#define WM_FLUSH_BOUND_MS 5000
#define WM_LINGER_MS 5000      /* wm_conn_set_linger(): the most a closing client is read */

/* The memory and what still hangs on it; finish already closed the rest. */
static void conn_free(struct wm_conn *c)
{
    if (c->proto_free != NULL) {
        c->proto_free(c);
    }
    wm_bev_free(c->bev); /* after proto_free: the handler may still hold read hooks on it */
    free(c->origin);
    free(c->user);
    free(c->target);
    wm_listen_stats_unref(c->stats);
    wm_service_unref(c->svc);
    free(c);
}

void wm_conn_leave(struct wm_conn *c)
{
    if (wm_guard_leave(&c->guard)) {
        conn_free(c);
    }
}

static void conn_abort(struct wm_conn_link *link)
{
    struct wm_conn *c = (struct wm_conn *)link;

    if (c->relay != NULL) {
        wm_relay_abort(c->relay); /* its callback finishes c */
        return;
    }
    if (c->splice != NULL) {
        wm_splice_abort(c->splice);
        return;
    }
    wm_conn_finish(c, "shutdown");
}

void wm_conn_init(struct wm_conn *c, struct wm_service *svc, struct wm_worker *w,
                  struct bufferevent *bev, const struct sockaddr *peer, socklen_t peerlen,
                  struct wm_listen_stats *stats, const struct wm_conn_limits *limits)
{
    c->id = wm_log_next_id();
    c->w = w;
    c->svc = wm_service_ref(svc);
    c->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    c->limits = *limits;
    c->bev = bev;
    wm_tls_pump_set_id(bev, c->id); /* TLS lines carry the connection's id */
    c->start_ms = wm_now_ms();
    c->link.abort = conn_abort;
    if (peer != NULL && peerlen <= sizeof(c->peer)) {
        memcpy(&c->peer, peer, peerlen);
        c->peerlen = peerlen;
        wm_addr_format(peer, c->peer_str, sizeof(c->peer_str));
    } else {
        snprintf(c->peer_str, sizeof(c->peer_str), "stream");
    }
    wm_worker_conn_add(w, &c->link);
    wm_log(WM_LOG_DEBUG, c->id, "accept client=%s", c->peer_str);
}

static socklen_t addr_len(const struct sockaddr *sa)
{
    if (sa == NULL) {
        return 0;
    }
    return sa->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
           : sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                       : 0;
}

int wm_conn_set_origin(struct wm_conn *c, const struct sockaddr *src, const struct sockaddr *dst,
                       int pp_version)
{
    socklen_t sl = addr_len(src);
    socklen_t dl = addr_len(dst);

    if (sl > 0) {
        wm_addr_format(src, c->peer_str, sizeof(c->peer_str));
    }
    if (pp_version == 0) {
        return 0;
    }
    if (c->origin == NULL && (c->origin = calloc(1, sizeof(*c->origin))) == NULL) {
        return -1;
    }
    if (sl > 0) {
        memcpy(&c->origin->src, src, sl);
    }
    if (dl > 0) {
        memcpy(&c->origin->dst, dst, dl);
    }
    c->origin->srclen = sl;
    c->origin->dstlen = dl;
    c->origin->pp_version = (uint8_t)pp_version;
    return 0;
}

static void make_conn_ids(const char *proto, wm_metric *ids)
{
    char p[64], labels[128];

    wm_metrics_label(p, sizeof(p), proto, sizeof(p));
    snprintf(labels, sizeof(labels), "proto=\"%s\",result=\"ok\"", p);
    ids[0] = wm_metrics_counter("wmproxy_connections_total",
                                "Client connections ended, by protocol and result (error: a "
                                "refusal or failure status was answered)",
                                labels);
    snprintf(labels, sizeof(labels), "proto=\"%s\",result=\"error\"", p);
    ids[1] = wm_metrics_counter("wmproxy_connections_total", "", labels);
    snprintf(labels, sizeof(labels), "proto=\"%s\"", p);
    ids[2] = wm_metrics_counter("wmproxy_connections_timed_out_total",
                                "Client connections cut by a timeout", labels);
}

/* /metrics: what the connection was and how it ended. */
static void count_conn(const struct wm_conn *c, const char *reason)
{
    static struct wm_mcache cache;
    const wm_metric *ids = wm_mcache_get(&cache, c->proto, make_conn_ids);
    bool ok = c->code == 0 || (c->code >= 100 && c->code < 400);

    wm_metrics_inc(ids[ok ? 0 : 1]);
    if (reason != NULL && (strstr(reason, "timeout") != NULL || strstr(reason, "timed out") != NULL)) {
        wm_metrics_inc(ids[2]);
    }
}

void wm_conn_finish(struct wm_conn *c, const char *reason)
{
    if (wm_conn_closed(c)) {
        return;
    }
    if (!c->access_logged && c->proto != NULL) {
        wm_log(WM_LOG_INFO, c->id,
               "access proto=%s client=%s user=%s target=%s code=%d in=%llu out=%llu "
               "ms=%llu end=%s",
               c->proto, c->peer_str, c->user != NULL ? c->user : "-",
               c->target != NULL ? c->target : "-", c->code, (unsigned long long)c->bytes_in,
               (unsigned long long)c->bytes_out,
               (unsigned long long)(wm_now_ms() - c->start_ms), reason);
    } else {
        wm_log(WM_LOG_DEBUG, c->id, "close client=%s end=%s", c->peer_str, reason);
    }
    if (c->proto != NULL && !c->internal) {
        count_conn(c, reason);
    }
    if (c->on_finish != NULL) {
        c->on_finish(c, reason);
    }
    /* Counters first: /status must never show a closed connection as open
     * on its listener after the worker stopped counting it. */
    wm_listen_stats_conn_close(c->stats, c->bytes_in, c->bytes_out);
    wm_worker_conn_del(c->w, &c->link);
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
        c->dial = NULL;
    }
    wm_conn_clear_timer(c);
    if (c->park != NULL) {
        evutil_socket_t fd = event_get_fd(c->park);
        event_free(c->park);
        c->park = NULL;
        close(fd);
    }
    if (c->bev != NULL) {
        /* Nothing of ours may run for it any more, even before the free. */
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    }
    if (wm_guard_close(&c->guard)) {
        conn_free(c);
    }
}

static void linger_timeout_cb(int fd, short what, void *arg)
{
    struct wm_conn *c = arg;

    (void)fd;
    (void)what;
    wm_conn_finish(c, c->end_why);
}

/* The answer is out: half-close and keep dropping what comes (flush_read_cb)
 * until EOF (flush_event_cb) or WM_LINGER_MS. false: close now instead. */
static bool start_linger(struct wm_conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    if (!c->linger || !wm_bev_is_plain_socket(c->bev) || fd < 0) {
        return false;
    }
    c->linger = false;
    if (shutdown(fd, SHUT_WR) != 0) {
        return false;
    }
    bufferevent_disable(c->bev, EV_WRITE);
    wm_conn_set_timer(c, WM_LINGER_MS, linger_timeout_cb);
    return true;
}

void wm_conn_set_linger(struct wm_conn *c)
{
    c->linger = true;
}

static void flush_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_conn *c = arg;

    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !start_linger(c)) {
        wm_conn_finish(c, c->end_why);
    }
}

static void flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_conn *c = arg;

    if (what & BEV_EVENT_ERROR) {
        wm_conn_finish(c, c->end_why);
    } else if (what & BEV_EVENT_EOF) {
        /* The client's FIN (again, if it half-closed after its request):
         * it can still read what we owe it; the flush bound stays. */
        bufferevent_disable(bev, EV_READ);
        c->linger = false; /* nothing more comes to drain */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !start_linger(c)) {
            wm_conn_finish(c, c->end_why);
        }
    }
}

static void flush_timeout_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wm_conn_finish(arg, "flush-timeout");
}

static void flush_read_cb(struct bufferevent *bev, void *arg)
{
    /* Discard whatever the client keeps sending while we close. */
    struct evbuffer *in = bufferevent_get_input(bev);

    (void)arg;
    evbuffer_drain(in, evbuffer_get_length(in));
}

void wm_conn_close_after_flush(struct wm_conn *c, const char *reason)
{
    if (wm_conn_closed(c) || c->end_why != NULL) {
        return; /* closing already: its bound and its linger are not started again */
    }
    if (c->bev == NULL) {
        wm_conn_finish(c, reason);
        return;
    }
    if (c->dial != NULL) {
        wm_dial_cancel(c->dial);
        c->dial = NULL;
    }
    c->end_why = reason != NULL ? reason : "closed";
    bufferevent_setcb(c->bev, flush_read_cb, flush_write_cb, flush_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    wm_conn_set_timer(c, WM_FLUSH_BOUND_MS, flush_timeout_cb);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !start_linger(c)) {
        wm_conn_finish(c, reason);
    }
}

/* ---- parking (see conn.h) ---- */

static void park_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_conn *c = arg;
    void (*wake)(struct wm_conn *, short) = c->on_wake;
    struct bufferevent *bev;

    wm_conn_enter(c);
    bev = bufferevent_socket_new(wm_worker_base(c->w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        wm_conn_finish(c, "out-of-memory"); /* closes the parked fd */
    } else {
        event_free(c->park);
        c->park = NULL;
        c->on_wake = NULL;
        c->bev = bev;
        what = (what & EV_READ) ? EV_READ : EV_TIMEOUT;
        wm_log(WM_LOG_DEBUG, c->id, "resumed (%s)", what == EV_READ ? "readable" : "wait over");
        wake(c, what);
    }
    wm_conn_leave(c);
}

int wm_conn_park(struct wm_conn *c, int timeout_ms, void (*wake)(struct wm_conn *c, short what))
{
    struct bufferevent *bev = c->bev;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    if (bev == NULL || c->park != NULL || wm_conn_closed(c) || !wm_bev_is_plain_socket(bev) ||
        evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return -1;
    }
    c->park = event_new(wm_worker_base(c->w), bufferevent_getfd(bev), EV_READ, park_cb, c);
    if (c->park == NULL) {
        return -1;
    }
    if (event_add(c->park, timeout_ms > 0 ? &tv : NULL) < 0) {
        event_free(c->park);
        c->park = NULL;
        return -1;
    }
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    bufferevent_setfd(bev, -1); /* the fd stays: the park event waits on it */
    bufferevent_free(bev);
    c->bev = NULL;
    c->on_wake = wake;
    wm_log(WM_LOG_DEBUG, c->id, "parked (idle, no bufferevent, %d ms left)", timeout_ms);
    return 0;
}

static void close_if_parked(struct wm_conn_link *link)
{
    struct wm_conn *c = (struct wm_conn *)link;

    if (link->abort == conn_abort && c->park != NULL) {
        wm_conn_finish(c, "shutdown");
    }
}

void wm_conn_close_parked(struct wm_worker *w)
{
    wm_worker_conn_each(w, close_if_parked);
}

void wm_conn_set_timer(struct wm_conn *c, int ms, void (*cb)(int, short, void *))
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    wm_conn_clear_timer(c);
    c->timer = evtimer_new(wm_worker_base(c->w), cb, c);
    if (c->timer != NULL) {
        evtimer_add(c->timer, &tv);
    }
}

void wm_conn_clear_timer(struct wm_conn *c)
{
    if (c->timer != NULL) {
        event_free(c->timer);
        c->timer = NULL;
    }
}

static void relay_done(void *arg, const struct wm_relay_result *res)
{
    struct wm_conn *c = arg;

    c->relay = NULL;
    c->splice = NULL;
    c->bytes_in += res->a_to_b;
    c->bytes_out += res->b_to_a;
    wm_conn_finish(c, wm_relay_end_str(res->end));
}

void wm_conn_relay_bev(struct wm_conn *c, struct bufferevent *up, size_t high_water)
{
    struct wm_relay_conf rc = {.idle_ms = c->limits.idle_ms, .high_water = high_water,
                               .rate = c->limits.rate, .rate_ms = c->limits.rate_ms};

    wm_conn_clear_timer(c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0); /* the relay bounds reading itself */
    c->relay = wm_relay_start(wm_worker_base(c->w), c->bev, up, &rc, relay_done, c);
    if (c->relay == NULL) {
        bufferevent_free(up);
        wm_conn_finish(c, "out-of-memory");
        return;
    }
    c->bev = NULL; /* the relay owns it now */
}

void wm_conn_relay_fd(struct wm_conn *c, int fd)
{
    const struct wm_conn_origin *o = c->origin;

    if (o != NULL && o->pp_version != 0 &&
        wm_pp_send(fd, o->pp_version, o->srclen > 0 ? (const struct sockaddr *)&o->src : NULL,
                   o->dstlen > 0 ? (const struct sockaddr *)&o->dst : NULL) < 0) {
        wm_log(WM_LOG_WARN, c->id, "target %s: cannot send the PROXY protocol header: %s",
               wm_conn_target(c), strerror(errno));
        close(fd);
        wm_conn_finish(c, "proxy-protocol-failed");
        return;
    }
    if (c->limits.rate == 0 && wm_bev_is_plain_socket(c->bev)) {
        /* Two plain sockets: zero-copy splice. What the client sent early
         * and what we still owe it (a SOCKS reply) go first. A rate limit
         * takes the relay instead (it meters what it moves). */
        struct wm_relay_conf rc = {.idle_ms = c->limits.idle_ms};
        int cfd = bufferevent_getfd(c->bev);
        wm_conn_clear_timer(c);
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
        wm_conn_finish(c, "out-of-memory");
        return;
    }
    wm_conn_relay_bev(c, up, 0);
}

void wm_conn_set_user(struct wm_conn *c, const char *user, size_t n)
{
    size_t i;

    if (n > WM_CONN_USER_MAX) {
        n = WM_CONN_USER_MAX;
    }
    free(c->user);
    c->user = n > 0 ? malloc(n + 1) : NULL;
    if (c->user == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)user[i];
        c->user[i] = (ch <= ' ' || ch >= 0x7f || ch == '"') ? '?' : (char)ch;
    }
    c->user[i] = '\0';
}

void wm_conn_set_target(struct wm_conn *c, const char *target)
{
    free(c->target);
    c->target = target != NULL && target[0] != '\0' ? strdup(target) : NULL;
}
