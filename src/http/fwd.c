/*
 * http/fwd.c - the HTTP/1 forwarding engine (see fwd.h): life cycle and
 * the client side. The upstream side is in fwd_up.c, the timer in
 * fwd_timer.c.
 *
 * One request at a time per client connection: the head is parsed and
 * rewritten (hop-by-hop headers dropped, header rules applied), the body
 * and the response body are forwarded as raw bytes, and only when the
 * response is complete is the next (pipelined) request read. The upstream
 * connection is kept for the next request with the same target key when
 * both sides allow keep-alive.
 *
 * Every entry from the event loop (the client's and the upstream's
 * callbacks, the timer, the ops' wm_hfwd_connected/fail/detach) runs
 * between hf_enter() and hf_leave(); code that called something that may
 * end the request tests f->state afterwards.
 */
#include "http/fwd.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/conn.h"

/* ---- life cycle ---- */

static const char *const state_names[HF_STATE_COUNT] = {
    "read-head", "connecting", "forward", "taken", "stream", "closing", "detached", "done",
};

void hf_set_state(struct wm_hfwd *f, enum hf_state st)
{
    if (f->state != st && wm_log_enabled(WM_LOG_TRACE)) {
        wm_log(WM_LOG_TRACE, f->c->id, "http: %s -> %s", state_names[f->state],
               state_names[st]);
    }
    f->state = st;
}

/* Spare request states of this worker (see struct hf_work). */
static __thread struct hf_work *work_cache;
static __thread size_t work_cached;

static void work_destroy(struct hf_work *w)
{
    if (w->head_out != NULL) {
        evbuffer_free(w->head_out);
    }
    if (w->scratch != NULL) {
        evbuffer_free(w->scratch);
    }
    if (w->body != NULL) {
        evbuffer_free(w->body);
    }
    if (w->replay != NULL) {
        evbuffer_free(w->replay);
    }
    free(w);
}

static void drain_all(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);

    if (n > 0) {
        evbuffer_drain(b, n);
    }
}

/* f->w goes: to the cache, emptied as if new, or freed. */
static void work_free(struct wm_hfwd *f)
{
    struct hf_work *w = f->w;

    if (w == NULL) {
        return;
    }
    f->w = NULL;
    if (f->ops->release != NULL && w->t.data != NULL) {
        f->ops->release(&w->t);
    }
    if (work_cached >= WM_HTTP_WORK_CACHE) {
        work_destroy(w);
        return;
    }
    /* What is read before the next request's route (reset_request clears
     * the target): an error on a head is logged without a target. */
    w->t.data = NULL;
    w->t.log[0] = '\0';
    w->reqline[0] = '\0';
    drain_all(w->head_out);
    drain_all(w->scratch);
    drain_all(w->body);
    if (w->replay != NULL) {
        drain_all(w->replay);
    }
    w->next = work_cache;
    work_cache = w;
    work_cached++;
}

void wm_hfwd_worker_exit(void)
{
    while (work_cache != NULL) {
        struct hf_work *w = work_cache;
        work_cache = w->next;
        work_destroy(w);
    }
    work_cached = 0;
}

int hf_work_get(struct wm_hfwd *f)
{
    struct hf_work *w;

    if (f->w != NULL) {
        return 0;
    }
    if (work_cache != NULL) {
        f->w = work_cache;
        work_cache = f->w->next;
        work_cached--;
        f->w->next = NULL;
        return 0;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -1;
    }
    w->head_out = evbuffer_new();
    w->scratch = evbuffer_new();
    w->body = evbuffer_new();
    if (w->head_out == NULL || w->scratch == NULL || w->body == NULL) {
        work_destroy(w);
        return -1;
    }
    f->w = w;
    return 0;
}

void hf_work_put(struct wm_hfwd *f)
{
    if (f->connecting == NULL) {
        work_free(f);
    }
}

static void hf_destroy(struct wm_hfwd *f)
{
    if (f->connecting != NULL && f->ops->cancel != NULL) {
        f->ops->cancel(f->connecting);
    }
    f->connecting = NULL;
    wm_fastread_free(f->cfr);
    hf_release_upstream(f);
    if (f->timer != NULL) {
        event_free(f->timer);
    }
    work_free(f);
    wm_http_parser_free(f->req);
    wm_http_parser_free(f->resp);
    free(f);
}

/* The connection's proto_free: it goes, and the engine with it. */
static void hf_conn_free(struct wm_conn *c)
{
    hf_destroy(c->proto_data);
    c->proto_data = NULL;
}

void hf_enter(struct wm_hfwd *f)
{
    wm_guard_enter(&f->guard);
    wm_conn_enter(f->c);
}

void hf_leave(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;

    if (wm_guard_leave(&f->guard)) {
        hf_destroy(f); /* detached while inside */
    }
    wm_conn_leave(c); /* may free c, and f with it when still attached */
}

/* The connection ends now (both sides closed, the line logged). */
void hf_finish(struct wm_hfwd *f, const char *reason)
{
    hf_set_state(f, HF_DONE);
    wm_conn_finish(f->c, reason);
}

struct wm_http_head *wm_hfwd_request(struct wm_hfwd *f)
{
    return wm_http_parser_head(f->req);
}

struct wm_conn *wm_hfwd_conn(const struct wm_hfwd *f)
{
    return f->c;
}

/* The client write timeout of the current target (libevent's: no write
 * progress for that long while output waits -> BEV_EVENT_TIMEOUT). */
static void client_write_limit(struct wm_hfwd *f, int ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (ms == f->cw_ms) {
        return;
    }
    f->cw_ms = ms;
    bufferevent_set_timeouts(f->c->bev, NULL, ms > 0 ? &tv : NULL);
}

/* ---- reading switches ---- */

void hf_client_reading(struct wm_hfwd *f, bool on)
{
    on = on && !f->flow.client_eof; /* after the client's FIN there is nothing to read */
    f->flow.creading = on;
    if (f->cfr != NULL) {
        wm_fastread_set(f->cfr, on);
    } else if (on) {
        bufferevent_enable(f->c->bev, EV_READ);
    } else {
        bufferevent_disable(f->c->bev, EV_READ);
    }
}

/* Give the client bufferevent back its own reading (closing, handing on). */
static void release_client_reads(struct wm_hfwd *f)
{
    wm_fastread_free(f->cfr);
    f->cfr = NULL;
}

/* This connection serves no more requests: stop reading both sides, send
 * the client what it already has, then close. */
void hf_end_after_flush(struct wm_hfwd *f, const char *reason)
{
    hf_set_state(f, HF_CLOSING);
    hf_arm_timer(f, 0);
    hf_release_upstream(f); /* an idle kept connection may serve others */
    release_client_reads(f);
    if (f->c->bev != NULL && (evbuffer_get_length(bufferevent_get_input(f->c->bev)) > 0 ||
                              (f->req != NULL && wm_http_parser_has_body(f->req)))) {
        wm_conn_set_linger(f->c); /* a body still coming: it must not reset our answer */
    }
    wm_conn_close_after_flush(f->c, reason);
}

/* The access line; the request line is formatted only when it is shown. */
void hf_log_request(struct wm_hfwd *f)
{
    static const struct hf_work none; /* no request state (an error before any) */
    struct wm_conn *c = f->c;
    const struct hf_work *w = f->w != NULL ? f->w : &none;
    uint64_t ms = wm_now_ms() - f->req_start_ms;
    long long up_ms = f->up_head_ms >= f->up_sent_ms && f->up_sent_ms > 0
                          ? (long long)(f->up_head_ms - f->up_sent_ms)
                          : -1;

    c->access_logged = true;
    hf_count_request(f->ops->proto, f->status, ms, up_ms);
    if (f->ops->logged != NULL) {
        struct wm_hfwd_log l = {
            .status = f->status, .up_status = f->up_status, .bytes_in = f->req_in,
            .bytes_out = f->req_out,
            .body_out = f->req_out > f->resp_head_bytes ? f->req_out - f->resp_head_bytes : 0,
            .request_ms = ms, .up_response_ms = up_ms,
            .t = &w->t};
        f->ops->logged(f, &l);
    }
    if (!wm_log_enabled(WM_LOG_INFO)) {
        return;
    }
    if (f->w != NULL && f->w->reqline[0] == '\0' &&
        wm_http_head_size(wm_http_parser_head(f->req)) > 0) {
        hfwd_set_reqline(f, wm_http_parser_head(f->req));
    }
    wm_log(WM_LOG_INFO, c->id,
           "access proto=%s client=%s user=%s target=%s req=\"%s\" code=%d in=%llu out=%llu "
           "ms=%llu%s%s%s",
           f->ops->proto, c->peer_str, c->user != NULL ? c->user : "-",
           w->t.log[0] ? w->t.log : "-", w->reqline, f->status,
           (unsigned long long)f->req_in, (unsigned long long)f->req_out,
           (unsigned long long)(wm_now_ms() - f->req_start_ms), f->why != NULL ? " why=\"" : "",
           f->why != NULL ? f->why : "", f->why != NULL ? "\"" : "");
}

void hf_log_why(struct wm_hfwd *f, const char *why)
{
    f->why = why;
    hf_log_request(f);
    f->why = NULL;
}

void wm_hfwd_fail(struct wm_hfwd *f, int status, const char *extra, const char *detail)
{
    struct wm_conn *c = f->c;
    struct evbuffer *out;
    size_t before, n;

    if (hf_over(f)) {
        return; /* already answered or gone */
    }
    hf_enter(f);
    /* Measured apart, as hf_respond(): an HTTP/2 stream's pair moves what
     * its output is given on at once, before it could be measured there. */
    out = f->w != NULL && evbuffer_get_length(f->w->scratch) == 0 ? f->w->scratch
                                                                  : bufferevent_get_output(c->bev);
    before = evbuffer_get_length(out);
    f->status = status;
    c->code = status;
    if (f->connecting != NULL && f->ops->cancel != NULL) {
        f->ops->cancel(f->connecting);
    }
    f->connecting = NULL;
    wm_http_write_error(out, status, true, extra, detail);
    n = evbuffer_get_length(out) - before;
    if (f->w != NULL && out == f->w->scratch) {
        wm_bev_send(c->bev, out, n);
    }
    f->req_out += n;
    c->bytes_out += n;
    if (wm_http_head_size(wm_http_parser_head(f->req)) > 0 || status != 408) {
        hf_log_why(f, detail);
    }
    hf_end_after_flush(f, "http-error");
    hf_leave(f);
}

/* The head of a local answer into out. */
void hf_respond_head(struct wm_hfwd *f, struct evbuffer *out, int status, const char *extra,
                     const char *ctype, unsigned long long len, bool close)
{
    bool v10 = wm_http_head_minor(wm_http_parser_head(f->req)) == 0;

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n%s", status, wm_http_reason(status),
                        wm_http_date_line()); /* RFC 9110 6.6.1: ours is the origin's answer */
    if (ctype != NULL) {
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    }
    if (len == WM_HFWD_LEN_UNKNOWN) {
        if (!v10) {
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
        }
    } else if (status != 204 && status != 304) {
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", len);
    }
    if (extra != NULL) {
        evbuffer_add(out, extra, strlen(extra));
    }
    if (close) {
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    } else if (v10) {
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    } else {
        evbuffer_add(out, "\r\n", 2);
    }
}

void wm_hfwd_respond(struct wm_hfwd *f, int status, const char *extra, const char *ctype,
                     const void *body, size_t len)
{
    hf_respond(f, status, extra, ctype, body, len, false);
}

void wm_hfwd_rekey(struct wm_hfwd *f, const struct wm_hfwd_target *nt)
{
    struct wm_hfwd_target *t = &f->w->t;
    bool host_changed = strcmp(t->host_hdr, nt->host_hdr) != 0;

    snprintf(t->key, sizeof(t->key), "%s", nt->key);
    snprintf(t->log, sizeof(t->log), "%s", nt->log);
    snprintf(t->host_hdr, sizeof(t->host_hdr), "%s", nt->host_hdr);
    if (host_changed) {
        hfwd_build_upstream_head(f, wm_http_parser_head(f->req));
    }
}

void hf_respond(struct wm_hfwd *f, int status, const char *extra, const char *ctype,
                const void *body, size_t len, bool in_loop)
{
    struct wm_conn *c = f->c;
    struct evbuffer *out;
    size_t before, n;
    bool close;

    if (hf_over(f)) {
        return;
    }
    hf_enter(f);
    /* A body we do not read cannot be skipped safely: close after it. */
    close = f->ri.close_after || wm_http_parser_has_body(f->req);
    /* Gathered apart and handed to wm_bev_send(): on a plain socket with
     * nothing queued it is written at once, with no write event to arm
     * and disarm (two epoll_ctl) per answer. */
    out = f->w != NULL && evbuffer_get_length(f->w->scratch) == 0 ? f->w->scratch
                                                                  : bufferevent_get_output(c->bev);
    before = evbuffer_get_length(out);
    hf_respond_head(f, out, status, extra, ctype, len, close);
    f->resp_head_bytes = evbuffer_get_length(out) - before;
    if (!f->ri.is_head && status != 204 && status != 304 && len > 0) {
        evbuffer_add(out, body, len);
    }
    n = evbuffer_get_length(out) - before;
    if (f->w != NULL && out == f->w->scratch) {
        wm_bev_send(c->bev, out, n);
    }
    f->status = status;
    c->code = status;
    f->req_out += n;
    c->bytes_out += n;
    hf_local_done(f, close, in_loop);
    hf_leave(f);
}

void hf_local_done(struct wm_hfwd *f, bool close, bool in_loop)
{
    hf_log_request(f);
    if (close) {
        hf_end_after_flush(f, "done");
    } else {
        size_t used;
        wm_http_parser_feed_body(f->req, NULL, 0, &used); /* a bodyless request ends here */
        hf_await_next(f);
        if (!in_loop) {
            hf_process_client(f);
        }
    }
}

void hf_await_next(struct wm_hfwd *f)
{
    int quiet;

    if (f->ops->release != NULL) {
        f->ops->release(&f->w->t); /* what the route op kept for the request goes now */
    }
    f->w->t.data = NULL;
    f->w->reqline[0] = '\0';
    hf_work_put(f);
    wm_http_parser_next(f->req);
    hf_set_state(f, HF_READ_HEAD);
    /* the keep-alive wait, with a stop at WM_HTTP_QUIET_MS (go_quiet), sooner
     * on a plain socket, where the client is parked then */
    quiet = wm_bev_is_plain_socket(f->c->bev) ? WM_HTTP_PARK_MS : WM_HTTP_QUIET_MS;
    f->ka_until = wm_now_coarse_ms() + (uint64_t)(f->c->limits.idle_ms > 0 ? f->c->limits.idle_ms : 0);
    hf_arm_timer(f, f->c->limits.idle_ms > quiet ? quiet : f->c->limits.idle_ms);
    if (evbuffer_get_length(bufferevent_get_output(f->c->bev)) >= WM_HTTP_BODY_HIGH_WATER) {
        /* pipelined requests answered faster than the client reads: read
         * the next ones once half of the answers went out */
        f->flow.out_paused = true;
        bufferevent_setwatermark(f->c->bev, EV_WRITE, WM_HTTP_BODY_HIGH_WATER / 2, 0);
        hf_client_reading(f, false);
        return;
    }
    hf_client_reading(f, true); /* also resumes after pipelined input filled up */
}

void wm_hfwd_detach(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;

    hf_set_state(f, HF_DETACHED);
    hf_arm_timer(f, 0);
    release_client_reads(f);
    c->proto_data = NULL;
    c->proto_free = NULL;
    if (wm_guard_close(&f->guard)) {
        hf_destroy(f);
    }
}

/* ---- client side ---- */

int hf_move_body(struct wm_http_parser *p, struct evbuffer *in, struct evbuffer *out,
                 size_t *moved)
{
    *moved = 0;
    for (;;) {
        struct evbuffer_iovec v = {NULL, 0};
        size_t used;
        int have = evbuffer_peek(in, -1, NULL, &v, 1);
        enum wm_http_res r = wm_http_parser_feed_body(p, v.iov_base, have > 0 ? v.iov_len : 0,
                                                      &used);

        if (r != WM_HTTP_MORE && r != WM_HTTP_MSG_DONE) {
            return r;
        }
        if (used > 0) {
            evbuffer_remove_buffer(in, out, used);
            *moved += used;
        }
        if (r == WM_HTTP_MSG_DONE || have < 1 || used == 0) {
            return r;
        }
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    if (f->state == HF_STREAM) {
        hf_enter(f);
        f->last_ms = wm_now_coarse_ms();
        hf_stream_pump(f, false);
        hf_leave(f);
        return;
    }
    if (f->flow.out_paused) {
        hf_enter(f);
        f->flow.out_paused = false;
        bufferevent_setwatermark(f->c->bev, EV_WRITE, 0, 0);
        hf_client_reading(f, true);
        hf_process_client(f);
        hf_leave(f);
        return;
    }
    if (f->flow.up_paused && f->up != NULL) {
        hf_enter(f);
        f->flow.up_paused = false;
        bufferevent_setwatermark(f->c->bev, EV_WRITE, 0, 0);
        hf_up_reading(f, true);
        hf_process_upstream(f);
        hf_leave(f);
    }
}

static void client_event(struct wm_hfwd *f, short what)
{
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && f->state == HF_FORWARD &&
        f->req_phase == HF_REQ_DONE) {
        /* The client half-closed after its request: answer it and the
         * complete requests already buffered behind it, then close. A
         * tunnel stream's FIN and reset can come as one deferred event
         * (EOF with ERROR): that client is gone, nothing reads an answer. */
        hf_client_reading(f, false);
        f->flow.client_eof = true;
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && f->state == HF_READ_HEAD) {
        /* Half-closed between requests: answer the pipelined ones still
         * buffered, let every answer out (some may wait for the client to
         * read: out_paused, then its drain goes on), then close. */
        hf_client_reading(f, false);
        f->flow.client_eof = true;
        if (!f->flow.out_paused) {
            hf_process_client(f);
        }
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && f->state == HF_STREAM &&
        (what & BEV_EVENT_READING)) {
        hf_client_reading(f, false); /* half-closed after its request: the body goes on */
        f->flow.client_eof = true;
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && f->state == HF_TAKEN) {
        /* CONNECT + early data + FIN before the dial ends: the relay reads
         * the socket again, gets the data and then the (lasting) EOF. */
        hf_client_reading(f, false);
        return;
    }
    if ((f->state == HF_FORWARD && f->resp_phase != HF_RESP_DONE) || f->state == HF_STREAM ||
        f->state == HF_CONNECTING) {
        /* a request cut short is logged too, with why */
        hf_log_why(f, f->cut_why != NULL             ? f->cut_why
                      : (what & BEV_EVENT_TIMEOUT) ? "the client did not read the answer in time"
                      : (what & BEV_EVENT_EOF)     ? "the client closed before the answer ended"
                                                   : "client connection error before the answer "
                                                     "ended");
    }
    if (what & BEV_EVENT_TIMEOUT) {
        wm_log(WM_LOG_DEBUG, f->c->id, "http: the client did not read the response in time");
        hf_finish(f, "client-write-timeout");
        return;
    }
    hf_finish(f, (what & BEV_EVENT_EOF) ? "client-closed" : "client-error");
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    hf_enter(f);
    client_event(f, what);
    hf_leave(f);
}

static void reset_request(struct wm_hfwd *f)
{
    f->status = 0;
    f->up_status = 0;
    f->up_sent_ms = f->up_head_ms = 0;
    f->resp_head_bytes = 0;
    memset(&f->ri, 0, sizeof(f->ri));
    if (f->w->replay != NULL) {
        drain_all(f->w->replay); /* a body kept for a resend is this request's */
    }
    f->req_phase = HF_REQ_BODY;
    f->resp_phase = HF_RESP_HEAD;
    f->w->reqline[0] = '\0'; /* formatted when logged */
    f->ri.is_head = wm_http_parser_method(f->req) == HTTP_HEAD;
    f->ri.has_body = wm_http_parser_has_body(f->req);
    f->ri.close_after = !wm_http_parser_keep_alive(f->req);
    f->ri.wants_upgrade = wm_http_parser_upgrade(f->req) &&
                          wm_http_parser_method(f->req) != HTTP_CONNECT;
    if (f->ri.wants_upgrade) {
        f->ri.close_after = true; /* after an upgrade the connection is not HTTP any more */
    }
    if (f->ops->release != NULL) {
        f->ops->release(&f->w->t);
    }
    memset(&f->w->t, 0, sizeof(f->w->t));
}

static void handle_head(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    struct wm_http_head *hd = wm_http_parser_head(f->req);
    const char *detail = NULL;
    const char *extra = NULL;
    int r;

    reset_request(f);
    if ((r = hf_expect(f, hd)) != 0) {
        wm_hfwd_fail(f, r, NULL, "unsupported expectation (only 100-continue is)");
        return;
    }
    r = f->ops->route(f, c, hd, &f->w->t, &detail, &extra);
    if (r == 0 || r == WM_HFWD_LOCAL) {
        client_write_limit(f, f->w->t.client_write_ms);
    }
    if (r == WM_HFWD_TAKEN) {
        hf_set_state(f, HF_TAKEN);
        hf_client_reading(f, false); /* early bytes and a FIN wait for the relay */
        hf_arm_timer(f, 0);
        return;
    }
    if (r == WM_HFWD_STREAM) {
        hf_stream_start(f);
        return;
    }
    if (r == WM_HFWD_LOCAL) {
        hf_set_state(f, HF_TAKEN);
        hf_respond(f, f->w->t.local_status, f->w->t.local_extra, f->w->t.local_ctype, f->w->t.local_body,
                   f->w->t.local_len, true);
        return;
    }
    if (r != 0) {
        wm_hfwd_fail(f, r, extra, detail);
        return;
    }
    if (wm_log_enabled(WM_LOG_DEBUG)) {
        /* only debug lines of the connection read it */
        wm_conn_set_target(c, f->w->t.log);
    }
    hfwd_build_upstream_head(f, hd);
    hf_send_continue(f);
    if (f->up != NULL && (f->up_key == NULL || strcmp(f->up_key, f->w->t.key) != 0)) {
        hf_release_upstream(f);
    }
    f->ri.reused = f->up != NULL;
    if (f->resp == NULL) {
        f->resp = wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
        if (f->resp == NULL) {
            wm_hfwd_fail(f, 500, NULL, "out of memory");
            return;
        }
    }
    hf_send_request(f);
}

static void head_error(struct wm_hfwd *f, enum wm_http_res r)
{
    if (r == WM_HTTP_ERR_TOO_LARGE) {
        wm_hfwd_fail(f, 431, NULL, "request head larger than the limit");
        return;
    }
    wm_log(WM_LOG_DEBUG, f->c->id, "http client=%s: bad request: %s", f->c->peer_str,
           wm_http_parser_error(f->req));
    wm_hfwd_fail(f, wm_http_parser_error_status(f->req), NULL, wm_http_parser_error(f->req));
}

static void client_read_cb(struct bufferevent *bev, void *arg);

/* First bytes (or the given head) of a request: its state, its clock. */
static int begin_request(struct wm_hfwd *f)
{
    if (hf_work_get(f) < 0) {
        hf_finish(f, "out-of-memory");
        return -1;
    }
    hf_arm_timer(f, f->c->limits.head_ms); /* the head must now come in time */
    f->req_start_ms = wm_now_ms();
    f->req_in = f->req_out = 0;
    return 0;
}

static void read_head(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (f->state == HF_READ_HEAD && !f->flow.out_paused) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            if (f->flow.client_eof) {
                hf_end_after_flush(f, "client-closed"); /* a partial head is dropped */
            }
            return;
        }
        if (wm_http_head_size(wm_http_parser_head(f->req)) == 0 && begin_request(f) < 0) {
            return;
        }
        r = wm_http_parser_feed_head(f->req, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        f->req_in += used;
        c->bytes_in += used;
        if (r == WM_HTTP_HEAD_DONE) {
            f->sink = NULL; /* a head read as bytes is answered as bytes */
            handle_head(f);
            continue; /* a local answer is complete: the next pipelined request */
        }
        if (r != WM_HTTP_MORE) {
            head_error(f, r);
            return;
        }
    }
}

struct wm_hfwd *hf_from_client(struct bufferevent *client)
{
    bufferevent_data_cb rcb = NULL;
    void *arg = NULL;

    if (client == NULL) {
        return NULL;
    }
    bufferevent_getcb(client, &rcb, NULL, NULL, &arg);
    return rcb == client_read_cb ? arg : NULL;
}

int wm_hfwd_give_head(struct bufferevent *client, struct wm_http_head **head,
                      const struct wm_hfwd_sink *sink, void *arg)
{
    struct wm_hfwd *f = hf_from_client(client);
    size_t n = wm_http_head_size(*head);

    if (f == NULL || f->state != HF_READ_HEAD || f->flow.client_eof ||
        evbuffer_get_length(bufferevent_get_input(client)) > 0 ||
        wm_http_parser_give_head(f->req, head) < 0) {
        return -1;
    }
    hf_enter(f);
    f->sink = sink;
    f->sink_arg = arg;
    f->sink_on = f->sink_full = false;
    if (begin_request(f) == 0) {
        f->req_in = n;
        f->c->bytes_in += n;
        handle_head(f);
    }
    hf_leave(f);
    return 0;
}

void hf_process_client(struct wm_hfwd *f)
{
    if (f->state == HF_READ_HEAD) {
        read_head(f);
    } else if (f->state == HF_FORWARD && f->req_phase == HF_REQ_BODY) {
        hf_forward_body(f);
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    hf_enter(f);
    hf_process_client(f);
    hf_leave(f);
}

void hf_client_fastread(struct wm_hfwd *f)
{
    f->cfr = wm_fastread_new(f->c->bev, WM_HTTP_CLIENT_READ_MAX, client_read_cb, client_event_cb, f);
}

void hf_client_hook(struct wm_hfwd *f, bool read_now)
{
    struct bufferevent *bev = f->c->bev;

    bufferevent_setwatermark(bev, EV_READ, 0, WM_HTTP_CLIENT_READ_MAX);
    bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, f);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    f->flow.creading = true;
    f->cw_ms = 0; /* a new bufferevent has no write timeout */
    if (read_now) {
        wm_bev_read_more(bev, WM_HTTP_CLIENT_READ_MAX);
    }
    hf_client_fastread(f);
}

void wm_hfwd_start(struct wm_conn *c, const struct wm_hfwd_ops *ops)
{
    struct wm_hfwd *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        wm_conn_finish(c, "out-of-memory");
        return;
    }
    f->c = c;
    f->ops = ops;
    f->req = wm_http_parser_new(WM_HTTP_REQUEST, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    hf_timer_new(f);
    c->proto_data = f;
    c->proto_free = hf_conn_free;
    if (f->req == NULL || f->timer == NULL) {
        wm_conn_finish(c, "out-of-memory");
        return;
    }
    wm_conn_clear_timer(c); /* our own timer takes over */
    hf_set_state(f, HF_READ_HEAD);
    hf_client_hook(f, false);
    hf_arm_timer(f, c->limits.head_ms);
    hf_enter(f);
    hf_process_client(f);
    hf_leave(f);
}
