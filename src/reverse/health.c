/*
 * reverse/health.c - active health checks: on worker 0, every server
 * whose upstream has `health_check` gets an HTTP GET every interval;
 * `fall` failures in a row (connect error, timeout, a broken or cut
 * response head, a status it does not expect) take it out, `rise`
 * successes bring it back, each change logged.
 * The results live in the shared health records (upstream.c), so every
 * worker sees them and a reload keeps them.
 *
 * Ownership: a probe holds a reference on its record (taken under the
 * registry lock) and is freed when it ends or at worker exit.
 */
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
#include "core/util.h"
#include "core/worker.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/dial.h"
#include "reverse/rev.h"
#include "reverse/rev_int.h"

#define TICK_MS 200
#define PICK_BATCH 64          /* checks picked per pass of the registry lock */
#define MAX_IN_FLIGHT 1024     /* probes at once (descriptors): the rest wait a tick */

struct probe {
    struct probe *next;
    struct rv_health *h;
    struct rv_check c;
    struct wm_dial *dial;
    struct bufferevent *bev;
    struct wm_http_parser *resp; /* the answer's head, checked whole */
    int interim;                 /* 1xx heads skipped so far */
    struct event *timer;
};

static struct event *tick_ev;
static struct probe *probes;
/* Worker 0 once checker_start() ran; every worker reads it at exit
 * (rv_checker_stop()) while worker 0 may be clearing it: atomic. */
static struct wm_worker *checker_w;
static size_t in_flight;        /* probes started and not freed (checker_w's thread) */

static void probe_free(struct probe *p)
{
    for (struct probe **pp = &probes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->dial != NULL) {
        wm_dial_cancel(p->dial);
    }
    wm_bev_free(p->bev);
    wm_http_parser_free(p->resp);
    if (p->timer != NULL) {
        event_free(p->timer);
    }
    p->h->probing = false;
    rv_health_put(p->h);
    free(p);
    in_flight--;
}

static bool expected(const struct rv_check *c, int status)
{
    if (status >= 100 && status <= 599 && (c->classes & (1u << (status / 100)))) {
        return true;
    }
    for (int i = 0; i < c->ncodes; i++) {
        if (c->codes[i] == status) {
            return true;
        }
    }
    return false;
}

static void probe_done(struct probe *p, bool ok, const char *why)
{
    struct rv_health *h = p->h;
    bool down = atomic_load(&h->check_down);

    atomic_fetch_add(ok ? &h->checks_ok : &h->checks_failed, 1);
    if (ok) {
        h->fail_streak = 0;
        if (down && ++h->ok_streak >= p->c.rise) {
            atomic_store(&h->check_down, false);
            atomic_store(&h->fails, 0);
            wm_log(WM_LOG_WARN, 0, "health: %s is up again (%d check(s) passed)", h->key,
                   h->ok_streak);
        }
    } else {
        h->ok_streak = 0;
        if (!down && ++h->fail_streak >= p->c.fall) {
            atomic_store(&h->check_down, true);
            wm_log(WM_LOG_WARN, 0, "health: %s is down after %d failed check(s): %s", h->key,
                   h->fail_streak, why);
        }
    }
    probe_free(p);
}

/* The answer's head, parsed whole as the proxy parses upstream heads (a
 * server that sends a good status line and then a broken head would break
 * every proxied request too): its status, once it is complete. */
static void probe_read_cb(struct bufferevent *bev, void *arg)
{
    struct probe *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v;
    enum wm_http_res r = WM_HTTP_MORE;
    int status;

    while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
        size_t used = 0;
        r = wm_http_parser_feed_head(p->resp, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        status = r == WM_HTTP_HEAD_DONE ? wm_http_head_status(wm_http_parser_head(p->resp)) : 0;
        if (status == 101) {
            probe_done(p, false, "101 without an upgrade"); /* the GET asked for none */
            return;
        }
        if (status > 0 && status < 200) {
            /* an interim answer: the real one follows (a bounded number of
             * them, as for proxied requests) */
            if (++p->interim > WM_HTTP_MAX_INTERIM) {
                char why[64];
                snprintf(why, sizeof(why), "more than %d interim (1xx) responses",
                         WM_HTTP_MAX_INTERIM);
                probe_done(p, false, why);
                return;
            }
            wm_http_parser_next(p->resp);
            r = WM_HTTP_MORE;
            continue;
        }
        if (r != WM_HTTP_MORE) {
            break;
        }
    }
    if (r == WM_HTTP_MORE) {
        return;
    }
    if (r != WM_HTTP_HEAD_DONE) {
        char why[160];
        snprintf(why, sizeof(why), "bad response head: %s", wm_http_parser_error(p->resp));
        probe_done(p, false, why);
        return;
    }
    status = wm_http_head_status(wm_http_parser_head(p->resp));
    if (expected(&p->c, status)) {
        probe_done(p, true, NULL);
    } else {
        char why[48];
        snprintf(why, sizeof(why), "status %d", status);
        probe_done(p, false, why);
    }
}

static void probe_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    probe_done(arg, false, "connection closed before the response head");
}

static void probe_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    probe_done(arg, false, "timed out");
}

static void probe_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                          socklen_t peerlen, void *arg)
{
    struct probe *p = arg;

    (void)peer;
    (void)peerlen;
    p->dial = NULL;
    if (st != WM_DIAL_OK) {
        probe_done(p, false, wm_dial_status_str(st));
        return;
    }
    if (p->c.tcp) {
        close(fd); /* [stream] upstreams: accepting the connection is enough */
        probe_done(p, true, NULL);
        return;
    }
    p->bev = bufferevent_socket_new(wm_worker_base(checker_w), fd, BEV_OPT_CLOSE_ON_FREE);
    p->resp = wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    if (p->bev == NULL || p->resp == NULL) {
        if (p->bev == NULL) {
            close(fd);
        }
        probe_done(p, false, "out of memory");
        return;
    }
    bufferevent_setcb(p->bev, probe_read_cb, NULL, probe_event_cb, p);
    evbuffer_add_printf(bufferevent_get_output(p->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wmproxy-health\r\n"
                        "Connection: close\r\n\r\n",
                        p->c.path, p->c.host);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
}

static void probe_start(struct rv_health *h, const struct rv_check *c)
{
    struct probe *p = calloc(1, sizeof(*p));
    struct timeval tv = {(time_t)(c->timeout_ms / 1000), (suseconds_t)(c->timeout_ms % 1000) * 1000};

    if (p == NULL) {
        h->probing = false;
        rv_health_put(h);
        return;
    }
    in_flight++; /* probe_free() counts it out */
    p->h = h;
    p->c = *c;
    p->next = probes;
    probes = p;
    p->timer = evtimer_new(wm_worker_base(checker_w), probe_timeout_cb, p);
    if (p->timer == NULL) {
        probe_free(p);
        return;
    }
    evtimer_add(p->timer, &tv);
    p->dial = wm_dial_start(checker_w, h->host, h->port, (int)c->timeout_ms, probe_dial_cb, p);
    if (p->dial == NULL) {
        probe_free(p);
    }
}

/* Pick up to PICK_BATCH checks that are due (under the registry lock). */
static size_t pick_due(struct rv_health **due, struct rv_check *checks, size_t room, uint64_t now)
{
    size_t n = 0;

    rv_registry_lock();
    for (struct rv_health *h = rv_registry_head(); h != NULL && n < room; h = h->next) {
        if (!h->check.on || h->probing || now < h->next_ms) {
            continue;
        }
        h->probing = true;
        /* from when it was due, not from this tick: each interval came
         * up to a tick (200 ms) late, a 300 ms one every 400 ms */
        h->next_ms = h->next_ms + h->check.interval_ms > now ? h->next_ms + h->check.interval_ms
                                                             : now + h->check.interval_ms;
        h->refs++;
        due[n] = h;
        checks[n++] = h->check;
    }
    rv_registry_unlock();
    return n;
}

/* Start every check that is due, a batch at a time (the registry lock is
 * not held while probes start), up to MAX_IN_FLIGHT at once: the first
 * cut of 64 per tick probed servers past about 320 late at a 1 s
 * interval. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rv_health *due[PICK_BATCH];
    struct rv_check checks[PICK_BATCH];
    uint64_t now = wm_now_ms();
    size_t n;

    (void)fd;
    (void)what;
    (void)arg;
    do {
        size_t room = MAX_IN_FLIGHT - in_flight < PICK_BATCH ? MAX_IN_FLIGHT - in_flight
                                                                 : PICK_BATCH;
        n = room > 0 ? pick_due(due, checks, room, now) : 0;
        for (size_t i = 0; i < n; i++) {
            probe_start(due[i], &checks[i]);
        }
    } while (n == PICK_BATCH && in_flight < MAX_IN_FLIGHT);
}

static void checker_start(struct wm_worker *w, void *arg)
{
    struct timeval tv = {0, TICK_MS * 1000};

    (void)arg;
    __atomic_store_n(&checker_w, w, __ATOMIC_RELAXED);
    tick_ev = event_new(wm_worker_base(w), -1, EV_PERSIST, tick_cb, NULL);
    if (tick_ev != NULL) {
        event_add(tick_ev, &tv);
    }
}

void wm_rev_checker_start(void)
{
    wm_worker_post(wm_worker_get(0), checker_start, NULL);
}

void rv_checker_stop(void)
{
    struct wm_worker *w = __atomic_load_n(&checker_w, __ATOMIC_RELAXED);

    if (w == NULL || wm_worker_self() != w) {
        return;
    }
    while (probes != NULL) {
        probe_free(probes);
    }
    if (tick_ev != NULL) {
        event_free(tick_ev);
        tick_ev = NULL;
    }
    __atomic_store_n(&checker_w, NULL, __ATOMIC_RELAXED);
}
