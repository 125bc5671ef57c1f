/*
 * http/fwd_up.c - the forwarding engine's upstream side: sending the
 * request, reading the response (interim heads, body, end, 101 Upgrade),
 * keeping the connection for the next request, one retry of an idempotent
 * request on a kept connection the target closed, and sending a request
 * again elsewhere when ops->up_result asks for it. Internal to http/fwd
 * (see fwd_int.h); entries from the event loop are wrapped as in fwd.c.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/fwd.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"

void hf_up_reading(struct wm_hfwd *f, bool on)
{
    if (f->ufr != NULL) {
        wm_fastread_set(f->ufr, on);
    } else if (on) {
        bufferevent_enable(f->up, EV_READ);
    } else {
        bufferevent_disable(f->up, EV_READ);
    }
}

/* Clients of this worker that hold an idle upstream their ops could pool
 * (ops->park), oldest first, for wm_hfwd_take_held(). */
static __thread struct wm_hfwd *held_head;
static __thread struct wm_hfwd *held_tail;

void hf_up_idle(struct wm_hfwd *f, bool idle)
{
    bool listed = f->flow.up_idle && f->ops->park != NULL;

    f->flow.up_idle = idle;
    if (listed == (idle && f->ops->park != NULL)) {
        return;
    }
    if (idle) {
        f->held_prev = held_tail;
        f->held_next = NULL;
        *(held_tail != NULL ? &held_tail->held_next : &held_head) = f;
        held_tail = f;
        return;
    }
    *(f->held_prev != NULL ? &f->held_prev->held_next : &held_head) = f->held_next;
    *(f->held_next != NULL ? &f->held_next->held_prev : &held_tail) = f->held_prev;
    f->held_prev = f->held_next = NULL;
}

void hf_drop_upstream(struct wm_hfwd *f)
{
    wm_fastread_free(f->ufr);
    f->ufr = NULL;
    wm_bev_free(f->up);
    f->up = NULL;
    free(f->up_key);
    f->up_key = NULL;
    f->flow.up_paused = false;
    hf_up_idle(f, false);
}

/* Take f's idle upstream off it, callbacks cleared; f->up_key stays for
 * the caller to use and free. */
static struct bufferevent *unhook_idle(struct wm_hfwd *f)
{
    struct bufferevent *up = f->up;

    wm_fastread_free(f->ufr);
    f->ufr = NULL;
    f->up = NULL;
    f->flow.up_paused = false;
    hf_up_idle(f, false);
    bufferevent_setcb(up, NULL, NULL, NULL, NULL);
    return up;
}

void hf_release_upstream(struct wm_hfwd *f)
{
    struct bufferevent *up;

    if (f->up == NULL || !f->flow.up_idle || f->ops->park == NULL || f->up_key == NULL) {
        hf_drop_upstream(f);
        return;
    }
    up = unhook_idle(f);
    f->ops->park(f, f->up_key, up);
    free(f->up_key);
    f->up_key = NULL;
}

/* Only from HTTP/1 clients on a plain socket: an HTTP/2 stream's engine
 * waiting for the connection's next stream keeps its upstream for it (taken
 * from there, each stream took the next one's: an epoll change per request).
 * Not from a client whose callbacks are on the stack, nor one with bytes
 * from the target waiting (that connection is unusable). */
struct bufferevent *wm_hfwd_take_held(struct wm_hfwd *f, const char *key)
{
    int n = 0;

    for (struct wm_hfwd *g = held_head; g != NULL && n < WM_HTTP_HELD_SCAN;
         g = g->held_next, n++) {
        if (g != f && g->guard.depth == 0 && !g->flow.up_paused && g->up_key != NULL &&
            g->c->bev != NULL && wm_bev_is_plain_socket(g->c->bev) &&
            strcmp(g->up_key, key) == 0 &&
            evbuffer_get_length(bufferevent_get_input(g->up)) == 0) {
            struct bufferevent *up = unhook_idle(g);

            free(g->up_key);
            g->up_key = NULL;
            return up;
        }
    }
    return NULL;
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    if (f->flow.client_paused && f->req_phase == HF_REQ_BODY && f->state == HF_FORWARD) {
        hf_enter(f);
        f->flow.client_paused = false;
        f->last_cin_ms = wm_now_coarse_ms(); /* the client's time runs again */
        bufferevent_setwatermark(f->up, EV_WRITE, 0, 0);
        hf_client_reading(f, true);
        hf_process_client(f);
        hf_leave(f);
    }
}

static bool idempotent(struct wm_http_head *hd)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    size_t n;
    const char *m = wm_http_head_method(hd, &n);

    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++) {
        if (n == strlen(safe[i]) && memcmp(m, safe[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* The kept connection was closed by the target as we reused it: an
 * idempotent request (RFC 9110 9.2.2) without a body, or whose body was
 * kept (a PUT), is safe to send again on a fresh connection, once. A POST
 * is not. */
static bool may_retry(struct wm_hfwd *f)
{
    /* a body goes again only when all of it sent so far was kept
     * (t.replay_max: the reverse proxy's; hf_send_request sends it) */
    bool body_again = !f->ri.has_body || (f->w->t.replay_max > 0 && !f->ri.replay_lost &&
                                          f->ops->up_result != NULL);

    return f->ri.reused && !f->ri.retried &&
           wm_http_head_size(wm_http_parser_head(f->resp)) == 0 && body_again &&
           idempotent(wm_http_parser_head(f->req));
}

/* The target's EOF after the final head: the body may end with it. */
static void up_eof_in_body(struct wm_hfwd *f)
{
    hf_process_upstream(f); /* drain what is buffered */
    if (f->state != HF_FORWARD || f->resp_phase == HF_RESP_DONE) {
        return;
    }
    if (wm_http_parser_feed_eof(f->resp) == WM_HTTP_MSG_DONE) {
        f->ri.close_after = true;
        hf_response_done(f);
        return;
    }
    wm_log(WM_LOG_DEBUG, f->c->id, "http: target closed mid-response");
    hf_log_why(f, "the target closed before the answer ended");
    hf_end_after_flush(f, "target-closed");
}

static void up_event(struct wm_hfwd *f, short what)
{
    if (f->state != HF_FORWARD) {
        hf_drop_upstream(f); /* a kept connection closed between requests: forget it */
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) { /* t.up_write_ms: the target stopped taking bytes */
        if (f->resp_phase == HF_RESP_HEAD) {
            if (!hf_up_result(f, WM_HFWD_UP_TIMEOUT, 0)) {
                wm_hfwd_fail(f, 504, NULL, "the target did not take the request in time");
            }
        } else {
            hf_log_why(f, "the target did not take the request in time");
            hf_end_after_flush(f, "target-write-timeout");
        }
        return;
    }
    if ((what & BEV_EVENT_EOF) && f->resp_phase == HF_RESP_BODY) {
        up_eof_in_body(f);
        return;
    }
    if (f->resp_phase == HF_RESP_HEAD && may_retry(f)) {
        f->ri.retried = true;
        hf_drop_upstream(f);
        hf_send_request(f);
        return;
    }
    if (f->resp_phase == HF_RESP_HEAD) {
        if (!hf_up_result(f, WM_HFWD_UP_ERROR, 0)) {
            /* ERROR: a reset, or TLS refused (its log line has the cause) */
            wm_hfwd_fail(f, 502, NULL,
                         (what & BEV_EVENT_ERROR)
                             ? "the connection to the target failed before an answer"
                             : "the target closed the connection without answering");
        }
        return;
    }
    hf_log_why(f, (what & BEV_EVENT_ERROR) ? "target connection error before the answer ended"
                                           : "the target closed before the answer ended");
    hf_end_after_flush(f, "target-error"); /* what the client was sent still goes */
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    hf_enter(f);
    up_event(f, what);
    hf_leave(f);
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    hf_enter(f);
    if (f->state != HF_FORWARD) {
        hf_drop_upstream(f); /* bytes on an idle kept connection: it is unusable now */
    } else {
        hf_process_upstream(f);
    }
    hf_leave(f);
}

void hf_attach_upstream(struct wm_hfwd *f, struct bufferevent *up)
{
    f->up = up;
    wm_http_parser_reset(f->resp);
    free(f->up_key);
    f->up_key = strdup(f->w->t.key); /* NULL (out of memory): not pooled after */
    bufferevent_setcb(up, up_read_cb, up_write_cb, up_event_cb, f);
    bufferevent_set_max_single_read(up, WM_RELAY_MAX_READ);
    /* Plain sockets: writes go out directly and enable EV_WRITE only when
     * bytes are left (core/bev.h), so a kept connection taken again costs
     * no epoll change; TLS needs its write side on for the handshake. */
    bufferevent_enable(up, wm_bev_is_plain_socket(up) ? EV_READ : EV_READ | EV_WRITE);
    f->ufr = wm_fastread_new(up, WM_HTTP_BODY_HIGH_WATER, up_read_cb, up_event_cb, f);
    if (f->w->t.up_write_ms > 0) {
        struct timeval tv = {(time_t)(f->w->t.up_write_ms / 1000),
                             (suseconds_t)(f->w->t.up_write_ms % 1000) * 1000};
        bufferevent_set_timeouts(up, NULL, &tv);
    }
}

void wm_hfwd_connected(struct wm_hfwd *f, struct bufferevent *up, int status, const char *detail)
{
    hf_enter(f);
    f->connecting = NULL;
    if (up == NULL) {
        wm_hfwd_fail(f, status > 0 ? status : 502, NULL, detail);
    } else {
        hf_attach_upstream(f, up);
        f->ri.reused = false;
        hf_send_request(f);
    }
    hf_leave(f);
}

/* Send the prepared head on the current upstream (connecting one if
 * needed), then start moving the body and waiting for the response. */
void hf_send_request(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;

    if (f->up == NULL && !f->ri.retried && f->ops->take_idle != NULL) {
        struct bufferevent *idle = f->ops->take_idle(f, &f->w->t);
        if (idle != NULL) {
            hf_attach_upstream(f, idle);
            f->ri.reused = true;
        }
    }
    if (f->up == NULL) {
        hf_set_state(f, HF_CONNECTING);
        hf_client_reading(f, false);
        hf_arm_timer(f, 0);
        f->connecting = f->ops->connect(f, c, &f->w->t);
        if (f->connecting == NULL) {
            wm_hfwd_fail(f, 502, NULL, "the target cannot be reached now");
        }
        return;
    }
    hf_set_state(f, HF_FORWARD);
    hf_up_idle(f, false);
    f->up_sent_ms = wm_now_ms();
    f->last_ms = wm_now_coarse_ms();
    f->last_cin_ms = f->last_ms;
    hf_arm_timer(f, f->w->t.client_read_ms > 0 && f->w->t.client_read_ms < hf_fwd_idle_ms(f)
                        ? f->w->t.client_read_ms
                        : hf_fwd_idle_ms(f));
    /* Copy, not move: kept for one retry on a kept connection. */
    if (f->ri.reused && !f->ri.retried) {
        size_t hl = evbuffer_get_length(f->w->head_out);
        wm_bev_send_bytes(f->up, evbuffer_pullup(f->w->head_out, -1), hl);
    } else {
        wm_bev_send(f->up, f->w->head_out, evbuffer_get_length(f->w->head_out));
    }
    if (f->w->replay != NULL && evbuffer_get_length(f->w->replay) > 0) {
        /* sent again: the body so far (a copy: kept for a further try) */
        size_t bl = evbuffer_get_length(f->w->replay);
        wm_bev_send_bytes(f->up, evbuffer_pullup(f->w->replay, -1), bl);
    }
    wm_http_parser_expect_no_body(f->resp, f->ri.is_head);
    hf_client_reading(f, true);
    hf_process_client(f);
}

void hf_keep_body(struct wm_hfwd *f, struct evbuffer *b, size_t n)
{
    struct hf_work *w = f->w;
    struct evbuffer_iovec v;

    if (w->t.replay_max == 0 || f->ri.replay_lost || f->ops->up_result == NULL) {
        return;
    }
    if (w->replay == NULL) {
        w->replay = evbuffer_new(); /* kept with the request state for the next ones */
    }
    if (w->replay == NULL || evbuffer_get_length(w->replay) + n > w->t.replay_max ||
        evbuffer_reserve_space(w->replay, (ev_ssize_t)n, &v, 1) != 1 || v.iov_len < n) {
        f->ri.replay_lost = true;
        if (w->replay != NULL) {
            evbuffer_drain(w->replay, evbuffer_get_length(w->replay));
        }
        return;
    }
    evbuffer_copyout(b, v.iov_base, n);
    v.iov_len = n;
    evbuffer_commit_space(w->replay, &v, 1);
}

/* Can the request go to another upstream? Nothing of an answer went to
 * the client, and all the body sent so far (if any) was kept. */
static bool replayable(struct wm_hfwd *f)
{
    if (f->req_out != 0 || f->resp_phase != HF_RESP_HEAD || f->sink_on) {
        return false;
    }
    return !f->ri.has_body || (f->w->t.replay_max > 0 && !f->ri.replay_lost);
}

bool hf_up_result(struct wm_hfwd *f, enum wm_hfwd_up r, int status)
{
    bool again;

    if (f->ops->up_result == NULL) {
        return false;
    }
    again = replayable(f);
    if (!f->ops->up_result(f, &f->w->t, r, status, again) || !again) {
        return false;
    }
    /* the op moved t elsewhere: this connection (maybe with a response
     * being read) is closed, the head rebuilt for the new target */
    hf_drop_upstream(f);
    f->status = f->up_status = 0;
    f->c->code = 0;
    f->up_sent_ms = f->up_head_ms = 0;
    f->flow.client_paused = false; /* its watermark was on the old connection */
    f->ri.reused = false;
    hfwd_build_upstream_head(f, wm_http_parser_head(f->req));
    if (wm_log_enabled(WM_LOG_DEBUG)) {
        wm_conn_set_target(f->c, f->w->t.log);
    }
    hf_send_request(f);
    return true;
}

/* Send what hf_process_upstream() gathered for the client, in one write. */
static void flush_scratch(struct wm_hfwd *f)
{
    size_t n = evbuffer_get_length(f->w->scratch);

    if (n > 0) {
        wm_bev_send(f->c->bev, f->w->scratch, n);
    }
}

/* 101 to an Upgrade request: from now on a byte relay. */
static void become_tunnel(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    struct bufferevent *up = f->up;
    size_t queue = f->ops->queue_max; /* f may be gone after the detach */

    if (f->w != NULL && f->w->t.idle_ms > 0) {
        /* as nginx: an upgraded connection lives by the target's read
         * timeout (proxy_read_timeout), no longer by the keep-alive one */
        c->limits.idle_ms = f->w->t.idle_ms;
    }
    hf_log_request(f);
    wm_fastread_free(f->ufr); /* the relay reads on its own */
    f->ufr = NULL;
    f->up = NULL;
    wm_hfwd_detach(f);
    /* Bytes already buffered on either side are the first the relay moves. */
    wm_conn_relay_bev(c, up, queue);
}

void hf_response_done(struct wm_hfwd *f)
{
    bool keep_up;

    f->resp_phase = HF_RESP_DONE;
    hf_log_request(f);
    /* Not while the request body is still due: the target would read the
     * next request's bytes as the rest of this body. */
    keep_up = f->up != NULL && f->req_phase == HF_REQ_DONE && wm_http_parser_keep_alive(f->resp) &&
              !wm_http_parser_needs_eof(f->resp) &&
              evbuffer_get_length(bufferevent_get_input(f->up)) == 0;
    if (!keep_up) {
        hf_drop_upstream(f);
    } else {
        wm_http_parser_next(f->resp);
        hf_up_idle(f, true); /* back to the pool if the client goes quiet (fwd_timer.c) */
    }
    if (f->sink != NULL) {
        hf_sink_done(f, !f->ri.close_after && f->req_phase == HF_REQ_DONE);
    }
    if (f->ri.close_after || f->req_phase != HF_REQ_DONE) {
        /* A response that ended before its request body cannot be followed
         * by another request on this connection. */
        hf_end_after_flush(f, "done");
        return;
    }
    evbuffer_drain(f->w->head_out, evbuffer_get_length(f->w->head_out));
    hf_await_next(f);
    hf_process_client(f);
}

/* A response head is complete: pass it on; the status decides what
 * follows. false when the request went to another upstream instead. */
static bool response_head(struct wm_hfwd *f)
{
    int status = wm_http_head_status(wm_http_parser_head(f->resp));
    size_t n;

    if (status == 101 &&
        (!f->ri.wants_upgrade ||
         wm_http_head_get_id(wm_http_parser_head(f->resp), WM_HDR_UPGRADE, &n) == NULL)) {
        /* RFC 9110 15.2.2: a 101 answers a request that asked to upgrade
         * and names the protocol in Upgrade. Else the target left HTTP on
         * a connection the client still speaks HTTP on: not relayed. */
        wm_log(WM_LOG_INFO, f->c->id, "http: %s answered 101 %s", f->w->t.log,
               f->ri.wants_upgrade ? "without Upgrade" : "to a request without Upgrade");
        if (!hf_up_result(f, WM_HFWD_UP_INVALID, 0)) {
            wm_hfwd_fail(f, 502, NULL, "101 without an upgrade from the target");
        }
        return false;
    }
    if ((status >= 200 || (status == 101 && f->ri.wants_upgrade)) &&
        hf_up_result(f, WM_HFWD_UP_STATUS, status)) {
        return false;
    }
    if (status < 200 && !(status == 101 && f->ri.wants_upgrade) &&
        ++f->ri.interim > WM_HTTP_MAX_INTERIM) {
        /* Each is passed on at once, without back-pressure on an HTTP/2
         * stream, and each restarts proxy_read_timeout: an endless run
         * would hold the request, and memory, for ever. */
        wm_log(WM_LOG_WARN, f->c->id, "http: %s sent more than %d interim (1xx) responses",
               f->w->t.log, WM_HTTP_MAX_INTERIM);
        if (!hf_up_result(f, WM_HFWD_UP_INVALID, 0)) {
            wm_hfwd_fail(f, 502, NULL, "too many interim responses from the target");
        }
        return false;
    }
    if (status >= 200 || status == 101) {
        /* an interim answer (100, 103) is not what the request got: a
         * client gone before the final one logs none */
        f->status = status;
        f->c->code = status;
        f->up_status = status;
        f->up_head_ms = wm_now_ms();
    }
    if (status == 101 && f->ri.wants_upgrade) {
        hfwd_write_response_head(f);
        flush_scratch(f);
        become_tunnel(f);
        return true;
    }
    if (status == 100 && f->ri.expect) {
        /* The client had ours (fwd_body.c), or none for HTTP/1.0: drop it. */
        wm_http_parser_next(f->resp);
        wm_http_parser_expect_no_body(f->resp, f->ri.is_head);
        return true;
    }
    if (f->sink != NULL && hf_sink_head(f)) {
        return true; /* an HTTP/2 stream takes it parsed (fwd_h2.c) */
    }
    if (status >= 100 && status < 200) {
        /* Interim response: pass it on, the final one follows; not to an
         * HTTP/1.0 client (RFC 9110 15.2), which would take it as the answer. */
        if (wm_http_head_minor(wm_http_parser_head(f->req)) != 0) {
            hfwd_write_response_head(f);
        }
        wm_http_parser_next(f->resp);
        wm_http_parser_expect_no_body(f->resp, f->ri.is_head);
        return true;
    }
    if (status != 204 && status != 304 && !f->ri.is_head && wm_http_parser_chunked(f->resp) &&
        wm_http_head_minor(wm_http_parser_head(f->req)) == 0) {
        /* RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client; its
         * body goes decoded and ends with the connection (as nginx does) */
        f->ri.dechunk = true;
        f->ri.close_after = true;
        wm_http_parser_set_body_cb(f->resp, hf_chunk_to_scratch, f);
    }
    if (wm_http_parser_needs_eof(f->resp) || f->req_phase != HF_REQ_DONE) {
        /* The head says so, written before it: a body read to the close,
         * or an answer before the request's body ended (a 401 to an
         * upload), after which the connection ends (response_done). */
        f->ri.close_after = true;
    }
    hfwd_write_response_head(f);
    f->resp_phase = HF_RESP_BODY;
    return true;
}

/* Parse response head bytes; false when nothing more can be done now. */
static bool read_response_head(struct wm_hfwd *f, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    size_t used;
    enum wm_http_res r;

    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        flush_scratch(f); /* interim responses */
        return false;
    }
    f->last_ms = wm_now_coarse_ms();
    r = wm_http_parser_feed_head(f->resp, v.iov_base, v.iov_len, &used);
    evbuffer_drain(in, used);
    if (r == WM_HTTP_HEAD_DONE) {
        return response_head(f); /* false: `in` belonged to a connection now gone */
    }
    if (r != WM_HTTP_MORE) {
        wm_log(WM_LOG_INFO, f->c->id, "http: bad response from %s: %s", f->w->t.log,
               wm_http_parser_error(f->resp));
        if (!hf_up_result(f, WM_HFWD_UP_INVALID, 0)) {
            wm_hfwd_fail(f, 502, NULL, "malformed response from the target");
        }
        return false;
    }
    return true;
}


/* What hf_move_body() said of the response body: its end completes the
 * answer, a bad body ends the connection once what came is flushed.
 * true when the body is over either way (f may be finished). */
bool hf_response_body_end(struct wm_hfwd *f, int r)
{
    if (r != WM_HTTP_MORE && f->ri.dechunk) {
        wm_http_parser_set_body_cb(f->resp, NULL, NULL);
    }
    if (r == WM_HTTP_MSG_DONE) {
        hf_response_done(f);
        return true;
    }
    if (r != WM_HTTP_MORE) {
        wm_log(WM_LOG_INFO, f->c->id, "http: bad response body from %s: %s", f->w->t.log,
               wm_http_parser_error(f->resp));
        hf_log_why(f, "malformed response body from the target");
        hf_end_after_flush(f, "bad-response");
        return true;
    }
    return false;
}
/* Move response body bytes to the client; false when nothing more can be
 * done now. */
static bool read_response_body(struct wm_hfwd *f, struct evbuffer *in)
{
    size_t moved;
    int r;

    if (f->sink_on) {
        return hf_sink_body(f, in);
    }
    if (f->ri.dechunk) {
        size_t before = evbuffer_get_length(f->w->scratch);
        size_t raw;
        r = hf_decode_chunked(f, in, &raw);
        moved = evbuffer_get_length(f->w->scratch) - before; /* what the client gets */
        if (raw > 0) {
            f->last_ms = wm_now_coarse_ms();
        }
    } else {
        r = hf_move_body(f->resp, in, f->w->scratch, &moved);
    }
    if (moved > 0) {
        f->req_out += moved;
        f->c->bytes_out += moved;
        f->last_ms = wm_now_coarse_ms();
    }
    flush_scratch(f);
    hf_response_body_end(f, r);
    return false;
}

/* Move response bytes to the client while there are any; pause the
 * upstream when the client's output is full: ops.queue_max for an HTTP/2
 * stream, whose own buffer waits for the client's window behind it. */
void hf_process_upstream(struct wm_hfwd *f)
{
    size_t queue = f->ops->queue_max > 0 ? f->ops->queue_max : WM_HTTP_BODY_HIGH_WATER;
    struct evbuffer *in;

    if (f->up == NULL || f->state != HF_FORWARD) {
        return;
    }
    in = bufferevent_get_input(f->up);
    while (f->state == HF_FORWARD && f->resp_phase != HF_RESP_DONE) {
        bool more = f->resp_phase == HF_RESP_HEAD ? read_response_head(f, in)
                                                  : read_response_body(f, in);
        if (!more) {
            break;
        }
    }
    if (f->state == HF_FORWARD && f->up != NULL &&
        evbuffer_get_length(bufferevent_get_output(f->c->bev)) >= queue) {
        f->flow.up_paused = true;
        hf_up_reading(f, false);
        bufferevent_setwatermark(f->c->bev, EV_WRITE, queue / 2, 0);
    }
}
