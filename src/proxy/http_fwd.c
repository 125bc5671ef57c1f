/*
 * proxy/http_fwd.c - the HTTP/1 forwarding engine (see http_fwd.h).
 *
 * One request at a time per client connection: the head is parsed and
 * rewritten (hop-by-hop headers dropped, header rules applied), the body
 * and the response body are forwarded as raw bytes, and only when the
 * response is complete is the next (pipelined) request read. The upstream
 * connection is kept for the next request with the same target key when
 * both sides allow keep-alive.
 */
#include "proxy/http_fwd.h"

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
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "proxy/http_fwd_int.h"
#include "proxy/pconn.h"

static void process_client(struct wm_hfwd *f);
static bool process_upstream(struct wm_hfwd *f);
static void send_request(struct wm_hfwd *f);
static void response_done(struct wm_hfwd *f);

/* ---- small helpers ---- */

static void hf_free(struct wm_pconn *c)
{
    struct wm_hfwd *f = c->proto_data;

    if (f == NULL) {
        return;
    }
    if (f->connecting != NULL && f->ops->cancel != NULL) {
        f->ops->cancel(f->connecting);
    }
    if (f->ops->release != NULL) {
        f->ops->release(&f->t);
    }
    wm_fastread_free(f->cfr);
    wm_fastread_free(f->ufr);
    wm_bev_free(f->up);
    if (f->timer != NULL) {
        event_free(f->timer);
    }
    if (f->head_out != NULL) {
        evbuffer_free(f->head_out);
    }
    if (f->scratch != NULL) {
        evbuffer_free(f->scratch);
    }
    wm_http_parser_free(f->req);
    wm_http_parser_free(f->resp);
    free(f);
    c->proto_data = NULL;
}

struct wm_pconn *wm_hfwd_conn(const struct wm_hfwd *f)
{
    return f->c;
}

/* One deadline per connection, kept lazily: the libevent timer is only
 * moved when the new deadline is earlier than the armed one; when it fires
 * early it re-arms for what is left. Requests on a kept connection then
 * cost no timer operation at all. ms <= 0 clears the deadline. */
static void timer_at(struct wm_hfwd *f, uint64_t now, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(f->timer, &tv);
    f->timer_armed = true;
    f->timer_fires = now + ms;
}

static void arm_timer(struct wm_hfwd *f, int ms)
{
    uint64_t now;

    if (ms <= 0) {
        f->deadline = 0;
        return;
    }
    now = wm_now_coarse_ms();
    f->deadline = now + (uint64_t)ms;
    if (!f->timer_armed || f->deadline < f->timer_fires) {
        timer_at(f, now, (uint64_t)ms);
    }
}

static void client_reading(struct wm_hfwd *f, bool on)
{
    on = on && !f->client_eof; /* after the client's FIN there is nothing to read */
    f->creading = on;
    if (f->cfr != NULL) {
        wm_fastread_set(f->cfr, on);
    } else if (on) {
        bufferevent_enable(f->c->bev, EV_READ);
    } else {
        bufferevent_disable(f->c->bev, EV_READ);
    }
}

static void up_reading(struct wm_hfwd *f, bool on)
{
    if (f->ufr != NULL) {
        wm_fastread_set(f->ufr, on);
    } else if (on) {
        bufferevent_enable(f->up, EV_READ);
    } else {
        bufferevent_disable(f->up, EV_READ);
    }
}

/* Give the client bufferevent back its own reading (closing, handing on). */
static void release_client_reads(struct wm_hfwd *f)
{
    wm_fastread_free(f->cfr);
    f->cfr = NULL;
}

static void drop_upstream(struct wm_hfwd *f)
{
    wm_fastread_free(f->ufr);
    f->ufr = NULL;
    wm_bev_free(f->up);
    f->up = NULL;
    f->up_key[0] = '\0';
    f->up_paused = false;
}

/* This connection serves no more requests: stop reading both sides, send
 * the client what it already has, then close. f may be freed on return. */
static void end_after_flush(struct wm_hfwd *f, const char *reason)
{
    f->state = HF_CLOSING;
    arm_timer(f, 0);
    drop_upstream(f);
    release_client_reads(f);
    wm_pconn_close_after_flush(f->c, reason);
}


/* The access line; the request line is formatted only when it is shown. */
static void log_request(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;

    c->access_logged = true;
    if (!wm_log_enabled(WM_LOG_INFO)) {
        return;
    }
    if (f->reqline[0] == '\0' && wm_http_head_size(wm_http_parser_head(f->req)) > 0) {
        hfwd_set_reqline(f, wm_http_parser_head(f->req));
    }

    wm_log(WM_LOG_INFO, c->id,
           "access proto=%s client=%s user=%s target=%s req=\"%s\" code=%d in=%llu out=%llu "
           "ms=%llu",
           f->ops->proto, c->peer_str, c->user[0] ? c->user : "-",
           f->t.log[0] ? f->t.log : "-", f->reqline, f->status,
           (unsigned long long)f->req_in, (unsigned long long)f->req_out,
           (unsigned long long)(wm_now_ms() - f->req_start_ms));
}

void wm_hfwd_fail(struct wm_hfwd *f, int status, const char *extra, const char *detail)
{
    struct wm_pconn *c = f->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);

    f->status = status;
    c->code = status;
    if (f->connecting != NULL && f->ops->cancel != NULL) {
        f->ops->cancel(f->connecting);
    }
    f->connecting = NULL;
    wm_http_write_error(out, status, true, extra, detail);
    f->req_out += evbuffer_get_length(out) - before;
    c->bytes_out += evbuffer_get_length(out) - before;
    if (wm_http_head_size(wm_http_parser_head(f->req)) > 0 || status != 408) {
        log_request(f);
    }
    end_after_flush(f, "http-error");
}

void wm_hfwd_detach(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;

    hf_free(c);
    c->proto_free = NULL;
}

/* ---- timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_hfwd *f = arg;
    struct wm_pconn *c = f->c;
    uint64_t idle = (uint64_t)c->opts->idle_timeout_ms;

    (void)fd;
    (void)what;
    f->timer_armed = false;
    if (f->deadline == 0) {
        return;
    }
    uint64_t now = wm_now_coarse_ms();
    if (now < f->deadline) {
        timer_at(f, now, f->deadline - now);
        return;
    }
    f->deadline = 0;
    switch (f->state) {
    case HF_READ_HEAD:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
            wm_http_head_size(wm_http_parser_head(f->req)) == 0) {
            wm_pconn_finish(c, "keepalive-timeout");
        } else {
            wm_hfwd_fail(f, 408, NULL, "request head not received in time");
        }
        return;
    case HF_FORWARD: {
        uint64_t since = now - f->last_ms;
        if (since < idle) {
            arm_timer(f, (int)(idle - since));
            return;
        }
        if (!f->resp_head_sent) {
            wm_hfwd_fail(f, 504, NULL, "no response from the target in time");
            return;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: transfer idle, closing");
        wm_pconn_finish(c, "idle-timeout");
        return;
    }
    default:
        return;
    }
}

/* ---- upstream I/O ---- */

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    if (f->client_paused && !f->req_done && f->state == HF_FORWARD) {
        f->client_paused = false;
        bufferevent_setwatermark(f->up, EV_WRITE, 0, 0);
        client_reading(f, true);
        process_client(f);
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

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_hfwd *f = arg;
    struct wm_pconn *c = f->c;

    (void)bev;
    if (f->state != HF_FORWARD) {
        /* A kept connection closed between requests: just forget it. */
        drop_upstream(f);
        return;
    }
    if ((what & BEV_EVENT_EOF) && f->resp_head_sent) {
        if (!process_upstream(f)) { /* drain what is buffered */
            return;                 /* the response ended (f may be gone) */
        }
        if (f->state != HF_FORWARD || f->resp_done) {
            return;
        }
        if (wm_http_parser_feed_eof(f->resp) == WM_HTTP_MSG_DONE) {
            f->client_close = true;
            response_done(f);
            return;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: target closed mid-response");
        log_request(f);
        end_after_flush(f, "target-closed");
        return;
    }
    if (!f->resp_head_sent && f->up_reused && !f->retried &&
        wm_http_head_size(wm_http_parser_head(f->resp)) == 0 &&
        !wm_http_parser_has_body(f->req) && idempotent(wm_http_parser_head(f->req))) {
        /* The kept connection was closed by the target as we reused it: an
         * idempotent request (RFC 9110 9.2.2) without a body is safe to send
         * again on a fresh connection, once. A POST is not: 502. */
        f->retried = true;
        drop_upstream(f);
        send_request(f);
        return;
    }
    if (!f->resp_head_sent) {
        wm_hfwd_fail(f, 502, NULL, "the target closed the connection without answering");
        return;
    }
    log_request(f);
    end_after_flush(f, "target-error"); /* what the client was sent still goes */
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    if (f->state != HF_FORWARD) {
        /* Bytes on an idle kept connection: it is unusable now. */
        drop_upstream(f);
        return;
    }
    process_upstream(f);
}

static void attach_upstream(struct wm_hfwd *f, struct bufferevent *up)
{
    f->up = up;
    wm_http_parser_reset(f->resp);
    snprintf(f->up_key, sizeof(f->up_key), "%s", f->t.key);
    bufferevent_setcb(up, up_read_cb, up_write_cb, up_event_cb, f);
    bufferevent_set_max_single_read(up, WM_RELAY_MAX_READ);
    bufferevent_enable(up, EV_READ | EV_WRITE);
    f->ufr = wm_fastread_new(up, WM_HTTP_BODY_HIGH_WATER, up_read_cb, up_event_cb, f);
}

void wm_hfwd_connected(struct wm_hfwd *f, struct bufferevent *up, int status, const char *detail)
{
    f->connecting = NULL;
    if (up == NULL) {
        wm_hfwd_fail(f, status > 0 ? status : 502, NULL, detail);
        return;
    }
    attach_upstream(f, up);
    f->up_reused = false;
    send_request(f);
}

/* ---- client I/O ---- */

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_hfwd *f = arg;

    (void)bev;
    if (f->up_paused && f->up != NULL) {
        f->up_paused = false;
        bufferevent_setwatermark(f->c->bev, EV_WRITE, 0, 0);
        up_reading(f, true);
        process_upstream(f);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_hfwd *f = arg;
    struct wm_pconn *c = f->c;

    (void)bev;
    if ((what & BEV_EVENT_EOF) && f->state == HF_FORWARD && f->req_done) {
        /* The client half-closed after its request: answer it and the
         * complete requests already buffered behind it, then close. */
        client_reading(f, false);
        f->client_eof = true;
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && f->state == HF_TAKEN) {
        /* CONNECT + early data + FIN before the dial ends: the relay reads
         * the socket again, gets the data and then the (lasting) EOF. */
        client_reading(f, false);
        return;
    }
    if (f->state == HF_FORWARD && !f->resp_done) {
        log_request(f);
    }
    wm_pconn_finish(c, (what & BEV_EVENT_EOF) ? "client-closed" : "client-error");
}

/* Send the prepared head on the current upstream (connecting one if
 * needed), then start moving the body and waiting for the response. */
static void send_request(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;

    if (f->up == NULL) {
        f->state = HF_CONNECTING;
        client_reading(f, false);
        arm_timer(f, 0);
        f->connecting = f->ops->connect(f, c, &f->t);
        if (f->connecting == NULL) {
            wm_hfwd_fail(f, 502, NULL, "the target cannot be reached now");
        }
        return;
    }
    f->state = HF_FORWARD;
    f->last_ms = wm_now_coarse_ms();
    arm_timer(f, c->opts->idle_timeout_ms);
    /* Copy, not move: kept for one retry on a kept connection. */
    if (f->up_reused && !f->retried) {
        size_t hl = evbuffer_get_length(f->head_out);
        wm_bev_send_bytes(f->up, evbuffer_pullup(f->head_out, -1), hl);
    } else {
        wm_bev_send(f->up, f->head_out, evbuffer_get_length(f->head_out));
    }
    wm_http_parser_expect_no_body(f->resp, f->is_head);
    client_reading(f, true);
    process_client(f);
}

static void handle_head(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    struct wm_http_head *hd = wm_http_parser_head(f->req);
    const char *detail = NULL;
    const char *extra = NULL;
    int r;

    f->status = 0;
    f->retried = false;
    f->req_done = f->resp_head_sent = f->resp_done = false;
    f->reqline[0] = '\0'; /* formatted when logged */
    f->is_head = wm_http_parser_method(f->req) == HTTP_HEAD;
    f->client_close = !wm_http_parser_keep_alive(f->req);
    f->wants_upgrade = wm_http_parser_upgrade(f->req) &&
                       wm_http_parser_method(f->req) != HTTP_CONNECT;
    if (f->ops->release != NULL) {
        f->ops->release(&f->t);
    }
    memset(&f->t, 0, sizeof(f->t));
    r = f->ops->route(f, c, hd, &f->t, &detail, &extra);
    if (r == WM_HFWD_TAKEN) {
        f->state = HF_TAKEN;
        client_reading(f, false); /* early bytes and a FIN wait for the relay */
        arm_timer(f, 0);
        return;
    }
    if (r != 0) {
        wm_hfwd_fail(f, r, extra, detail);
        return;
    }
    if (wm_log_enabled(WM_LOG_DEBUG)) {
        /* only debug lines of the connection read it */
        snprintf(c->target, sizeof(c->target), "%.*s", (int)sizeof(c->target) - 1, f->t.log);
    }
    if (f->wants_upgrade) {
        f->client_close = true; /* after an upgrade the connection is not HTTP any more */
    }
    hfwd_build_upstream_head(f, hd);
    if (f->up != NULL && strcmp(f->up_key, f->t.key) != 0) {
        drop_upstream(f);
    }
    f->up_reused = f->up != NULL;
    if (f->resp == NULL) {
        f->resp = wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
        if (f->resp == NULL) {
            wm_hfwd_fail(f, 500, NULL, "out of memory");
            return;
        }
    }
    send_request(f);
}

static void read_head(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (f->state == HF_READ_HEAD) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            if (f->client_eof) {
                end_after_flush(f, "client-closed"); /* a partial head is dropped */
            }
            return;
        }
        if (wm_http_head_size(wm_http_parser_head(f->req)) == 0) {
            /* First bytes of a request: the head must now come in time. */
            arm_timer(f, c->opts->handshake_timeout_ms);
            f->req_start_ms = wm_now_ms();
            f->req_in = f->req_out = 0;
        }
        r = wm_http_parser_feed_head(f->req, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        f->req_in += used;
        c->bytes_in += used;
        switch (r) {
        case WM_HTTP_MORE:
            continue;
        case WM_HTTP_HEAD_DONE:
            handle_head(f);
            return;
        case WM_HTTP_ERR_TOO_LARGE:
            wm_hfwd_fail(f, 431, NULL, "request head larger than the limit");
            return;
        case WM_HTTP_ERR_FRAMING:
            wm_hfwd_fail(f, 400, NULL, wm_http_parser_error(f->req));
            return;
        default:
            wm_log(WM_LOG_DEBUG, c->id, "http client=%s: malformed request: %s", c->peer_str,
                   wm_http_parser_error(f->req));
            wm_hfwd_fail(f, 400, NULL, "malformed request");
            return;
        }
    }
}

/* Move request body bytes (raw) from the client to the target. */
static void forward_body(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(f->up);

    while (!f->req_done) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;
        int have = evbuffer_peek(in, -1, NULL, &v, 1);

        if (have < 1) {
            v.iov_base = NULL;
            v.iov_len = 0;
        }
        r = wm_http_parser_feed_body(f->req, v.iov_base, v.iov_len, &used);
        if (r == WM_HTTP_MSG_DONE || r == WM_HTTP_MORE) {
            if (used > 0) {
                wm_bev_send(f->up, in, used);
                f->req_in += used;
                c->bytes_in += used;
                f->last_ms = wm_now_coarse_ms();
            }
            if (r == WM_HTTP_MSG_DONE) {
                /* Pipelined requests wait in the input buffer, bounded by its
                 * read watermark, until this response is complete. */
                f->req_done = true;
                break;
            }
            if (have < 1 || used == 0) {
                break;
            }
            continue;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: bad request body: %s", wm_http_parser_error(f->req));
        if (!f->resp_head_sent) {
            wm_hfwd_fail(f, 400, NULL, "malformed request body");
        } else {
            log_request(f);
            wm_pconn_finish(c, "bad-request-body");
        }
        return;
    }
    if (!f->req_done && f->client_eof && evbuffer_get_length(in) == 0) {
        log_request(f); /* a buffered request whose body was cut by the FIN */
        wm_pconn_finish(c, "client-closed");
        return;
    }
    if (!f->req_done && evbuffer_get_length(out) >= WM_HTTP_BODY_HIGH_WATER) {
        f->client_paused = true;
        client_reading(f, false);
        bufferevent_setwatermark(f->up, EV_WRITE, WM_HTTP_BODY_HIGH_WATER / 2, 0);
    }
}

static void process_client(struct wm_hfwd *f)
{
    switch (f->state) {
    case HF_READ_HEAD:
        read_head(f);
        break;
    case HF_FORWARD:
        if (!f->req_done) {
            forward_body(f);
        }
        break;
    default:
        return;
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_client(arg);
}

/* ---- response ---- */

/* Send what process_upstream() gathered for the client, in one write. */
static void flush_scratch(struct wm_hfwd *f)
{
    size_t n = evbuffer_get_length(f->scratch);

    if (n > 0) {
        wm_bev_send(f->c->bev, f->scratch, n);
    }
}

static void become_tunnel(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    struct bufferevent *up = f->up;

    log_request(f);
    wm_fastread_free(f->ufr); /* the relay reads on its own */
    f->ufr = NULL;
    f->up = NULL;
    wm_hfwd_detach(f);
    /* Bytes already buffered on either side are the first the relay moves. */
    wm_pconn_relay_bev(c, up);
}

static void response_done(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    bool keep_up;

    f->resp_done = true;
    log_request(f);
    keep_up = f->up != NULL && wm_http_parser_keep_alive(f->resp) &&
              !wm_http_parser_needs_eof(f->resp) &&
              evbuffer_get_length(bufferevent_get_input(f->up)) == 0;
    if (!keep_up) {
        drop_upstream(f);
    } else {
        wm_http_parser_next(f->resp);
    }
    if (f->client_close || !f->req_done) {
        /* A response that ended before its request body cannot be followed
         * by another request on this connection. */
        end_after_flush(f, "done");
        return;
    }
    wm_http_parser_next(f->req);
    f->state = HF_READ_HEAD;
    f->reqline[0] = '\0';
    evbuffer_drain(f->head_out, evbuffer_get_length(f->head_out));
    arm_timer(f, c->opts->idle_timeout_ms);
    client_reading(f, true); /* also resumes after pipelined input filled up */
    process_client(f);
}

/* Move response bytes to the client. Returns false when the response or
 * the connection ended here (f may be freed), true when it waits for
 * more from the target. */
static bool process_upstream(struct wm_hfwd *f)
{
    struct wm_pconn *c = f->c;
    struct evbuffer *in;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (f->up == NULL || f->state != HF_FORWARD) {
        return true;
    }
    in = bufferevent_get_input(f->up);
    while (f->state == HF_FORWARD && !f->resp_done) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;
        int have = evbuffer_peek(in, -1, NULL, &v, 1);

        if (have < 1) {
            v.iov_base = NULL;
            v.iov_len = 0;
        }
        if (!f->resp_head_sent) {
            if (v.iov_len == 0) {
                flush_scratch(f); /* interim responses */
                return true;
            }
            f->last_ms = wm_now_coarse_ms();
            r = wm_http_parser_feed_head(f->resp, v.iov_base, v.iov_len, &used);
            evbuffer_drain(in, used);
            if (r == WM_HTTP_MORE) {
                continue;
            }
            if (r != WM_HTTP_HEAD_DONE) {
                wm_log(WM_LOG_DEBUG, c->id, "http: bad response from %s: %s", c->target,
                       wm_http_parser_error(f->resp));
                wm_hfwd_fail(f, 502, NULL, "malformed response from the target");
                return false;
            }
            int status = wm_http_head_status(wm_http_parser_head(f->resp));
            f->status = status;
            c->code = status;
            if (status == 101 && f->wants_upgrade) {
                hfwd_write_response_head(f);
                flush_scratch(f);
                become_tunnel(f);
                return false;
            }
            if (status >= 100 && status < 200) {
                /* Interim response: pass it on, the final one follows. */
                hfwd_write_response_head(f);
                wm_http_parser_next(f->resp);
                wm_http_parser_expect_no_body(f->resp, f->is_head);
                continue;
            }
            if (wm_http_parser_needs_eof(f->resp)) {
                f->client_close = true;
            }
            hfwd_write_response_head(f);
            f->resp_head_sent = true;
            continue;
        }
        r = wm_http_parser_feed_body(f->resp, v.iov_base, v.iov_len, &used);
        if (r != WM_HTTP_MORE && r != WM_HTTP_MSG_DONE) {
            wm_log(WM_LOG_DEBUG, c->id, "http: bad response body from %s: %s", c->target,
                   wm_http_parser_error(f->resp));
            flush_scratch(f);
            log_request(f);
            end_after_flush(f, "bad-response");
            return false;
        }
        if (used > 0) {
            evbuffer_remove_buffer(in, f->scratch, used);
            f->req_out += used;
            c->bytes_out += used;
            f->last_ms = wm_now_coarse_ms();
        }
        if (r == WM_HTTP_MSG_DONE) {
            flush_scratch(f);
            response_done(f);
            return false;
        }
        if (have < 1 || used == 0) {
            break;
        }
    }
    flush_scratch(f);
    if (f->up != NULL && evbuffer_get_length(out) >= WM_HTTP_BODY_HIGH_WATER) {
        f->up_paused = true;
        up_reading(f, false);
        bufferevent_setwatermark(c->bev, EV_WRITE, WM_HTTP_BODY_HIGH_WATER / 2, 0);
    }
    return true;
}

void wm_hfwd_start(struct wm_pconn *c, const struct wm_hfwd_ops *ops)
{
    struct wm_hfwd *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    f->c = c;
    f->ops = ops;
    f->req = wm_http_parser_new(WM_HTTP_REQUEST, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    f->head_out = evbuffer_new();
    f->scratch = evbuffer_new();
    f->timer = evtimer_new(wm_worker_base(c->w), timer_cb, f);
    c->proto_data = f;
    c->proto_free = hf_free;
    if (f->req == NULL || f->head_out == NULL || f->scratch == NULL || f->timer == NULL) {
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    wm_pconn_clear_timer(c); /* our own timer takes over */
    f->state = HF_READ_HEAD;
    bufferevent_setwatermark(c->bev, EV_READ, 0, WM_HTTP_CLIENT_READ_MAX);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, f);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    f->creading = true;
    f->cfr = wm_fastread_new(c->bev, WM_HTTP_CLIENT_READ_MAX, client_read_cb, client_event_cb, f);
    arm_timer(f, c->opts->handshake_timeout_ms);
    process_client(f);
}
