/*
 * reverse/rev_up.c - the upstream side of a proxied request: connecting
 * (another server when a connect fails), what each request tells the
 * passive health checks, proxy_next_upstream (a failed request sent again
 * to another server, through the engine's up_result op, http/fwd.h), and
 * the worker's idle upstream connections.
 *
 * Failures that count towards a server's fall_times, as nginx's max_fails:
 * a connect error or timeout (an https server's TLS handshake included),
 * an upstream that closes, stops taking the
 * request or stays silent past proxy_read_timeout before the response
 * head, a malformed head: always; a 500, 502, 503, 504 or 429 only when
 * proxy_next_upstream lists it; 403 and 404 never. Any other response head
 * is a success and clears the count.
 *
 * Going to the next server: for a kind of failure proxy_next_upstream
 * lists, while proxy_next_upstream_tries servers have not all been tried
 * and proxy_next_upstream_timeout has not passed, never to a server that
 * failed this request. A failed connect sent nothing: any method goes on.
 * A request that was sent goes again only when idempotent (or with
 * non_idempotent) and when the engine says it can (nothing answered yet,
 * no body or all of it kept: t->replay_max).
 */
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf/config_http.h"
#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "http/head.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "reverse/rev_int.h"

/* Statuses that count as failures when listed (nginx: not 403, 404). */
#define COUNTED_STATUSES                                                                  \
    (WM_NEXT_HTTP_500 | WM_NEXT_HTTP_502 | WM_NEXT_HTTP_503 | WM_NEXT_HTTP_504 |          \
     WM_NEXT_HTTP_429)

/* Append src to dst[*at..cap) (cut at cap - 1, always terminated): the
 * per-request strings below, without snprintf's cost. */
static void put(char *dst, size_t cap, size_t *at, const char *src)
{
    size_t n = strlen(src);

    if (n > cap - 1 - *at) {
        n = cap - 1 - *at;
    }
    memcpy(dst + *at, src, n);
    *at += n;
    dst[*at] = '\0';
}

void rv_target_set(struct wm_hfwd_target *t, struct rv_req *q, const struct rv_server *s)
{
    const struct rv_location *l = q->loc;
    size_t at = 0;

    /* the TLS name: proxy_ssl_name or the URL's host, else this server's */
    put(q->sni, sizeof(q->sni), &at, l->sni != NULL ? l->sni : s->host);
    /* TLS: the location's context (its trust and client certificate) and
     * the name verified are part of the key: a connection checked against
     * one CA, or not checked, never serves a location that checks another.
     * The context goes by its number, not its address: a reload's new
     * context may be allocated where a freed one was, while connections
     * checked under the old one still wait in the pool. */
    at = 0;
    put(t->key, sizeof(t->key), &at, l->up_tls ? "s|" : "h|");
    put(t->key, sizeof(t->key), &at, s->addr);
    if (l->up_tls) {
        char hex[2 + 2 * sizeof(uint64_t) + 2] = "|";
        uint64_t v = l->tls_seq;
        for (size_t i = 0; i < 2 * sizeof(v); i++) {
            hex[1 + i] = "0123456789abcdef"[(v >> (4 * (2 * sizeof(v) - 1 - i))) & 15];
        }
        hex[1 + 2 * sizeof(v)] = '|';
        put(t->key, sizeof(t->key), &at, hex);
        put(t->key, sizeof(t->key), &at, q->sni);
    }
    at = 0;
    if (strcmp(l->up->name, s->addr) != 0) {
        put(t->log, sizeof(t->log), &at, l->up->name);
        put(t->log, sizeof(t->log), &at, "/");
    }
    put(t->log, sizeof(t->log), &at, s->addr);
    if (l->set_host || q->abs_host != NULL) {
        at = 0;
        put(t->host_hdr, sizeof(t->host_hdr), &at, l->set_host ? s->addr : q->abs_host);
    }
}

bool rv_req_resendable(const struct rv_req *q)
{
    size_t n;
    const char *m;

    if (q->loc->next_up & WM_NEXT_NON_IDEMPOTENT) {
        return true;
    }
    m = wm_http_head_method(wm_hfwd_request(q->f), &n);
    switch (rv_method_index(m, n)) {
    case HTTP_GET: /* RFC 9110 9.2.2 */
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
        return true;
    default:
        return false;
    }
}

/* ---- the next server ---- */

static unsigned status_bit(int status)
{
    switch (status) {
    case 500:
        return WM_NEXT_HTTP_500;
    case 502:
        return WM_NEXT_HTTP_502;
    case 503:
        return WM_NEXT_HTTP_503;
    case 504:
        return WM_NEXT_HTTP_504;
    case 403:
        return WM_NEXT_HTTP_403;
    case 404:
        return WM_NEXT_HTTP_404;
    case 429:
        return WM_NEXT_HTTP_429;
    default:
        return 0;
    }
}

/* Servers tried for this request: bit i % 64 (rv_upstream_pick). Past 64
 * servers two share a bit: an untried one may be passed over, a failed
 * one is never taken again (it was, past the 64th). */
static void mark_tried(struct rv_req *q)
{
    size_t i = (size_t)(q->srv - q->loc->up->servers);

    q->tried |= 1ULL << (i % 64);
}

/* May a failure of kind `bit` send the request on? sent: it reached the
 * upstream (then only a resendable method goes again). */
static bool may_go_next(const struct rv_req *q, unsigned bit, bool sent)
{
    const struct rv_location *l = q->loc;

    if (!(l->next_up & bit) || q->ntries >= l->next_tries || (sent && !rv_req_resendable(q))) {
        return false;
    }
    return l->next_ms == 0 || wm_now_coarse_ms() - q->start_ms < l->next_ms;
}

/* Move q from its server, which failed (why), to another one that is up
 * and has not failed it. false when there is none. */
static bool go_next(struct rv_req *q, const char *why)
{
    struct wm_conn *c = wm_hfwd_conn(q->f);
    struct rv_server *was = q->srv;
    struct rv_server *next = rv_upstream_pick(
        q->loc->up, c->peerlen > 0 ? (const struct sockaddr *)&c->peer : NULL, q->tried);
    size_t ml;
    size_t ul;
    const char *m;
    const char *u;

    if (next == NULL || next == was) {
        return false;
    }
    atomic_fetch_sub(&was->h->active, 1);
    atomic_fetch_add(&next->h->active, 1);
    q->srv = next;
    q->ntries++;
    m = wm_http_head_method(wm_hfwd_request(q->f), &ml);
    u = wm_http_head_url(wm_hfwd_request(q->f), &ul);
    wm_log(WM_LOG_WARN, c->id, "upstream %s: %.*s %.*s failed on %s (%s), trying %s (try %d of %d)",
           q->loc->up->name, (int)(ml < 20 ? ml : 20), m, (int)(ul < 200 ? ul : 200), u,
           was->addr, why, next->addr, q->ntries, q->loc->next_tries);
    return true;
}

/* ---- connecting ---- */

static void dial_server(struct rv_req *q);

static struct bufferevent *wrap(struct rv_req *q, int fd)
{
    struct wm_conn *c = wm_hfwd_conn(q->f);
    struct event_base *base = wm_worker_base(c->w);
    struct bufferevent *up;

    if (q->loc->up_tls) {
        return wm_tls_wrap(base, q->loc->tls, fd, false, q->sni, q->srv->addr);
    }
    up = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (up == NULL) {
        close(fd);
    }
    return up;
}

/* ---- the TLS handshake of an https server: part of its connect ---- */

/* As nginx's: proxy_connect_timeout bounds the handshake too, and a
 * handshake that fails or times out sent nothing of the request, so it
 * counts and goes on as a failed connect (any method, the next server). */
static void hs_stop(struct rv_req *q)
{
    if (q->hs_timer != NULL) {
        event_free(q->hs_timer);
        q->hs_timer = NULL;
    }
    if (q->hs != NULL) {
        bufferevent_setcb(q->hs, NULL, NULL, NULL, NULL);
        wm_bev_free(q->hs);
        q->hs = NULL;
    }
}

static void dial_next(struct rv_req *q, const char *why);

static void hs_failed(struct rv_req *q, const char *why, bool timed_out)
{
    hs_stop(q);
    q->timed_out = timed_out;
    q->tls_failed = true;
    rv_server_failed(q->loc->up, q->srv, why);
    mark_tried(q);
    dial_next(q, why);
}

static void hs_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct rv_req *q = arg;

    if (!(what & BEV_EVENT_CONNECTED)) {
        /* the pump's warn line gives the cause (certificate, name, alert) */
        hs_failed(q, "TLS handshake failed", false);
        return;
    }
    q->hs = NULL;
    event_free(q->hs_timer);
    q->hs_timer = NULL;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    q->connecting = false;
    wm_hfwd_connected(q->f, bev, 0, NULL);
}

static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hs_failed(arg, "TLS handshake timed out", true);
}

/* up: a new TLS connection to q->srv; the request goes once its
 * handshake is over. */
static void hs_start(struct rv_req *q, struct bufferevent *up)
{
    struct wm_conn *c = wm_hfwd_conn(q->f);
    struct timeval tv = {(time_t)(q->loc->connect_ms / 1000),
                         (suseconds_t)(q->loc->connect_ms % 1000) * 1000};

    q->hs = up;
    wm_tls_pump_set_id(up, c->id);
    q->hs_timer = evtimer_new(wm_worker_base(c->w), hs_timeout_cb, q);
    if (q->hs_timer == NULL || wm_tls_pump_notify_ready(up) < 0) {
        hs_stop(q);
        q->connecting = false;
        wm_hfwd_connected(q->f, NULL, 502, "out of memory");
        return;
    }
    bufferevent_setcb(up, NULL, NULL, hs_event_cb, q);
    bufferevent_enable(up, EV_READ | EV_WRITE);
    evtimer_add(q->hs_timer, &tv);
}

/* After a failed connect (nothing was sent): the next server, or the
 * error answer (as nginx: a connect that timed out is a 504, else 502). */
static void dial_next(struct rv_req *q, const char *why)
{
    struct wm_hfwd_target nt;

    if (!may_go_next(q, q->timed_out ? WM_NEXT_TIMEOUT : WM_NEXT_ERROR, false) ||
        !go_next(q, why)) {
        wm_log(WM_LOG_INFO, wm_hfwd_conn(q->f)->id, "upstream %s server %s: %s",
               q->loc->up->name, q->srv->addr, why);
        q->connecting = false;
        wm_hfwd_connected(q->f, NULL, q->timed_out ? 504 : 502,
                          q->timed_out    ? "no upstream server answered in time"
                          : q->tls_failed ? "the TLS connection to the target failed"
                                          : "no upstream server could be reached");
        return;
    }
    nt.host_hdr[0] = '\0';
    rv_target_set(&nt, q, q->srv);
    wm_hfwd_rekey(q->f, &nt);
    dial_server(q);
}

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                    socklen_t peerlen, void *arg)
{
    struct rv_req *q = arg;
    struct bufferevent *up;

    (void)peer;
    (void)peerlen;
    q->dial = NULL;
    if (st != WM_DIAL_OK) {
        q->timed_out = st == WM_DIAL_TIMEOUT;
        if (st != WM_DIAL_LOCAL) { /* our own lack of descriptors is not the server's fault */
            rv_server_failed(q->loc->up, q->srv, wm_dial_status_str(st));
        }
        mark_tried(q);
        dial_next(q, wm_dial_status_str(st));
        return;
    }
    /* not yet a success for the health count: the response head is (up_result) */
    up = wrap(q, fd);
    if (up != NULL && q->loc->up_tls) {
        hs_start(q, up);
        return;
    }
    q->connecting = false;
    wm_hfwd_connected(q->f, up, up != NULL ? 0 : 502, up != NULL ? NULL : "out of memory");
}

static void dial_server(struct rv_req *q)
{
    struct wm_conn *c = wm_hfwd_conn(q->f);

    q->dial = wm_dial_start(c->w, q->srv->host, q->srv->port, q->loc->connect_ms, dial_cb, q);
    if (q->dial == NULL) {
        q->connecting = false;
        wm_hfwd_connected(q->f, NULL, 502, "out of memory");
    }
}

void *rv_connect_op(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t)
{
    struct rv_req *q = t->data;

    (void)f;
    (void)c;
    if (q == NULL || q->srv == NULL) {
        return NULL;
    }
    q->connecting = true;
    dial_server(q);
    return q;
}

void rv_cancel_op(void *handle)
{
    struct rv_req *q = handle;

    if (q->dial != NULL) {
        wm_dial_cancel(q->dial);
        q->dial = NULL;
    }
    hs_stop(q);
    q->connecting = false;
}

/* ---- what became of a request that was sent ---- */

bool rv_up_result(struct wm_hfwd *f, struct wm_hfwd_target *t, enum wm_hfwd_up r, int status,
                  bool replayable)
{
    struct rv_req *q = t->data;
    char why[48];
    unsigned bit;

    (void)f;
    if (q == NULL || q->srv == NULL) {
        return false;
    }
    switch (r) {
    case WM_HFWD_UP_STATUS:
        bit = status_bit(status);
        if (!(q->loc->next_up & bit)) {
            rv_server_ok(q->srv); /* an answer (bit 0: not one proxy_next_upstream names) */
            return false;
        }
        wm_fmt(why, sizeof(why), "status %d", status);
        if (bit & COUNTED_STATUSES) {
            rv_server_failed(q->loc->up, q->srv, why);
        } else {
            rv_server_ok(q->srv);
        }
        break;
    case WM_HFWD_UP_TIMEOUT:
        bit = WM_NEXT_TIMEOUT;
        wm_fmt(why, sizeof(why), "%s", "no response head in time");
        rv_server_failed(q->loc->up, q->srv, why);
        break;
    case WM_HFWD_UP_INVALID:
        bit = WM_NEXT_INVALID_HEADER;
        wm_fmt(why, sizeof(why), "%s", "malformed response head");
        rv_server_failed(q->loc->up, q->srv, why);
        break;
    case WM_HFWD_UP_ERROR:
    default:
        bit = WM_NEXT_ERROR;
        wm_fmt(why, sizeof(why), "%s", "closed before the response head");
        rv_server_failed(q->loc->up, q->srv, why);
        break;
    }
    mark_tried(q);
    if (!replayable || !may_go_next(q, bit, true) || !go_next(q, why)) {
        return false; /* the error answer, or this response as it is (nginx does so) */
    }
    rv_target_set(t, q, q->srv);
    return true;
}

/* ---- the worker's idle upstream connections ---- */

/* From the pool, else from a client between requests (not with
 * keepalive = 0: then no connection serves two clients). */
struct bufferevent *rv_take_idle(struct wm_hfwd *f, const struct wm_hfwd_target *t)
{
    const struct rv_conn *rc = (const struct rv_conn *)wm_hfwd_conn(f);
    struct bufferevent *up = rv_pool_take(t->key);

    return up != NULL || rc->ka_max <= 0 ? up : wm_hfwd_take_held(f, t->key);
}

void rv_park(struct wm_hfwd *f, const char *key, struct bufferevent *up)
{
    const struct rv_conn *rc = (const struct rv_conn *)wm_hfwd_conn(f);

    rv_pool_put(key, up, rc->ka_max, rc->ka_ms);
}
