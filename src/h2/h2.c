/*
 * h2/h2.c - one HTTP/2 connection: choosing HTTP/2 or HTTP/1 at accept,
 * the nghttp2 session and its I/O on the client's bufferevent, the flood
 * limits, GOAWAY on stop and reload. Streams are in h2_stream.c.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2_int.h"
#include "http/fwd.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/conn.h"
#include "net/tlspump.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24
#define SNIFF_LINE_MAX 8192 /* a request line longer than that goes to HTTP/1 */

/* The worker's HTTP/2 connections (GOAWAY on stop and reload). */
static __thread struct wm_h2 *live;

/* ---- flood limits ---- */

static void flood_window(struct wm_h2 *h)
{
    uint64_t now = wm_now_ms();

    if (now - h->win_start >= WM_H2_FLOOD_WINDOW_MS) {
        h->win_start = now;
        h->n_settings = h->n_ping = h->n_rst = h->n_empty = 0;
    }
}

void h2_flood(struct wm_h2 *h, const char *what)
{
    if (h->dying) {
        return;
    }
    h->dying = true;
    h->why = "h2-flood";
    wm_log(WM_LOG_WARN, h->c->id, "h2: %s flood from %s: GOAWAY ENHANCE_YOUR_CALM", what,
           h->c->peer_str);
    nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* HEADERS on a stream the client skipped (numerically smaller than one it
 * opened, never used): a connection error (RFC 9113 5.1.1), which nghttp2
 * lets pass as a closed stream. */
static bool skipped_stream(struct wm_h2 *h, nghttp2_session *s, int32_t id)
{
    if (id > h->max_id || nghttp2_session_find_stream(s, id) != NULL) {
        return false;
    }
    for (unsigned i = 0; i < h->nrecent && i < 64; i++) {
        if (h->recent[i] == id) {
            return false;
        }
    }
    return h->nrecent < 64 || id > h->recent[h->nrecent % 64]; /* older ones: unknown */
}

/* DATA past a window we gave: nghttp2 resets the stream or ends the
 * connection (FLOW_CONTROL_ERROR) without telling why. Its checks, made
 * here first: the stream's reset line says it (on_frame_send), the
 * connection's end gets a line. */
static void data_overrun(struct wm_h2 *h, nghttp2_session *s, const nghttp2_frame_hd *hd)
{
    struct h2_stream *st;

    if ((int64_t)hd->length > nghttp2_session_get_local_window_size(s)) {
        if (!h->dying) {
            wm_log(WM_LOG_INFO, h->c->id,
                   "h2: %s sent DATA past the connection's flow-control window: "
                   "GOAWAY FLOW_CONTROL_ERROR", h->c->peer_str);
        }
        return;
    }
    st = nghttp2_session_get_stream_user_data(s, hd->stream_id);
    if (st != NULL &&
        (int64_t)hd->length > nghttp2_session_get_stream_local_window_size(s, hd->stream_id)) {
        st->bad = "DATA past the stream's flow-control window";
    }
}

/* A SETTINGS_INITIAL_WINDOW_SIZE moves every stream's send window by the
 * same amount: one it takes over 2^31-1 is a connection error (RFC 9113
 * 6.9.2), which nghttp2 answers with a stream reset only. Before the
 * frame: the initial window and our largest stream window (a window we
 * cannot use, below 0, counts as 0: it cannot overflow). */
static void settings_begin(struct wm_h2 *h, nghttp2_session *s)
{
    h->iws_before = nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
    h->win_before = 0;
    for (struct h2_stream *st = h->streams; st != NULL; st = st->next) {
        int32_t w = nghttp2_session_get_stream_remote_window_size(s, st->id);
        h->win_before = w > h->win_before ? w : h->win_before;
    }
}

static void settings_check(struct wm_h2 *h, nghttp2_session *s, const nghttp2_settings *f)
{
    int64_t iws = h->iws_before;
    int64_t top = h->win_before;

    for (size_t i = 0; i < f->niv && !h->dying; i++) {
        if (f->iv[i].settings_id != NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) {
            continue;
        }
        top += (int64_t)f->iv[i].value - iws;
        iws = f->iv[i].value;
        if (top > NGHTTP2_MAX_WINDOW_SIZE) {
            wm_log(WM_LOG_INFO, h->c->id,
                   "h2: %s: SETTINGS_INITIAL_WINDOW_SIZE takes a stream's window over 2^31-1: "
                   "GOAWAY FLOW_CONTROL_ERROR", h->c->peer_str);
            h->dying = true;
            h->why = "h2-protocol-error";
            nghttp2_session_terminate_session(s, NGHTTP2_FLOW_CONTROL_ERROR);
        }
    }
}

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *user)
{
    struct wm_h2 *h = user;

    flood_window(h);
    if (hd->type == NGHTTP2_DATA && hd->stream_id != 0) {
        data_overrun(h, s, hd);
    } else if (hd->type == NGHTTP2_SETTINGS && !(hd->flags & NGHTTP2_FLAG_ACK)) {
        settings_begin(h, s);
    }
    if (hd->type == NGHTTP2_HEADERS && (hd->stream_id & 1) && skipped_stream(h, s, hd->stream_id)) {
        nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }
    if (hd->type == NGHTTP2_HEADERS && (hd->stream_id & 1) && hd->stream_id > h->max_id) {
        h->max_id = hd->stream_id;
        h->recent[h->nrecent++ % 64] = hd->stream_id;
    }
    if (hd->type == NGHTTP2_CONTINUATION) {
        if (++h->n_cont > WM_H2_MAX_CONT) {
            h2_flood(h, "CONTINUATION");
        }
        return 0;
    }
    h->n_cont = 0;
    if (hd->type == NGHTTP2_SETTINGS && !(hd->flags & NGHTTP2_FLAG_ACK) &&
        ++h->n_settings > WM_H2_MAX_SETTINGS) {
        h2_flood(h, "SETTINGS");
    } else if (hd->type == NGHTTP2_PING && !(hd->flags & NGHTTP2_FLAG_ACK) &&
               ++h->n_ping > WM_H2_MAX_PING) {
        h2_flood(h, "PING");
    } else if (hd->type == NGHTTP2_RST_STREAM && ++h->n_rst > WM_H2_MAX_RST) {
        h2_flood(h, "RST_STREAM (rapid reset)");
    } else if (((hd->type == NGHTTP2_DATA && !(hd->flags & NGHTTP2_FLAG_END_STREAM)) ||
                hd->type == NGHTTP2_PRIORITY || hd->type == NGHTTP2_WINDOW_UPDATE) &&
               hd->length == 0 && ++h->n_empty > WM_H2_MAX_EMPTY) {
        h2_flood(h, "empty frame");
    } else if (hd->type == NGHTTP2_PRIORITY && ++h->n_empty > 10 * WM_H2_MAX_EMPTY) {
        h2_flood(h, "PRIORITY");
    }
    return 0;
}

/* ---- session callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct wm_h2 *h = user;
    struct h2_stream *st;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    if (h->dying || h->goaway) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    st = h2s_new(h, f->hd.stream_id);
    if (st == NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    h2_idle_check(h);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

    (void)flags;
    (void)user;
    if (st != NULL && st->req != NULL && f->hd.type == NGHTTP2_HEADERS) {
        (void)wm_h2_req_add(st->req, name, nlen, value, vlen); /* errors answer at the end */
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct h2_stream *st;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        settings_check(user, s, &f->settings);
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && st->req != NULL) {
        h2s_start(st->h, st, end);
    } else if (end && st->answered_early) {
        st->req_done = true; /* nothing more goes to the engine: it has answered */
    } else if (end) {
        h2s_req_end(st); /* after DATA, or trailers (dropped) */
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    (void)flags;
    (void)user;
    if (st == NULL) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (st->answered_early) {
        /* the answer is out: the rest of the upload is read and dropped
         * (so a malformed frame still counts), up to a bound, then the
         * client is asked to stop (RFC 9113 8.1) */
        nghttp2_session_consume(s, id, len);
        st->discarded += len;
        if (st->discarded > H2_DISCARD_MAX) {
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
        }
        return 0;
    }
    h2s_data(st, data, len);
    return 0;
}

/* nghttp2 found a frame malformed (RFC 9113 8.1.1: an upper-case or
 * connection-specific field, a pseudo-header out of place...): it resets
 * the stream (or ends the connection) itself, before the request reaches
 * the engine. The reason goes into the stream's reset line (on_frame_send);
 * a frame of no stream of ours has its own line. */
static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int err, void *user)
{
    struct wm_h2 *h = user;
    struct h2_stream *st = f->hd.stream_id != 0
                               ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id)
                               : NULL;

    if (st != NULL) {
        st->bad = nghttp2_strerror(err);
    } else if (!h->dying) {
        wm_log(WM_LOG_INFO, h->c->id, "h2: bad frame from %s (stream %d): %s", h->c->peer_str,
               f->hd.stream_id, nghttp2_strerror(err));
    }
    return 0;
}

/* RST_STREAM codes nghttp2 sends on its own verdict: a malformed request
 * (ours, INTERNAL_ERROR, REFUSED_STREAM, HTTP_1_1_REQUIRED, NO_ERROR, are
 * logged where they are decided). */
static bool reset_is_verdict(uint32_t code)
{
    return code == NGHTTP2_PROTOCOL_ERROR || code == NGHTTP2_FLOW_CONTROL_ERROR ||
           code == NGHTTP2_STREAM_CLOSED || code == NGHTTP2_FRAME_SIZE_ERROR;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct h2_stream *st;

    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        struct wm_h2 *h = user; /* nghttp2's own verdict: closed with a linger */
        h->dying = true;
        h->why = h->why != NULL ? h->why : "h2-error";
        return 0;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM && reset_is_verdict(f->rst_stream.error_code) &&
        (st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) != NULL) {
        /* a malformed request (a field, or DATA that disagrees with its
         * content-length), or a window overrun (data_overrun), or one a
         * SETTINGS took over 2^31-1 (settings_check): nothing reached the
         * engine, or it is aborted */
        struct wm_h2 *h = user;
        const char *why = st->bad;
        if (why == NULL) {
            why = f->rst_stream.error_code == NGHTTP2_FLOW_CONTROL_ERROR
                      ? "SETTINGS_INITIAL_WINDOW_SIZE takes its window over 2^31-1"
                      : "DATA against its content-length";
        }
        wm_log(WM_LOG_INFO, h->c->id, "h2: bad request from %s, stream %d: %s: RST_STREAM %s",
               h->c->peer_str, f->hd.stream_id, why,
               nghttp2_http2_strerror(f->rst_stream.error_code));
        return 0;
    }
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS)) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st != NULL && !st->req_done && !st->answered_early) {
        /* answered before the whole request came: the rest of it is dropped
         * (on_data_chunk), or stopped past H2_DISCARD_MAX; nothing is in
         * flight, so it holds the connection no longer than the idle limit */
        struct wm_h2 *h = user;
        st->answered_early = true;
        if (++h->nearly == h->nstreams) {
            h2_idle_check(h);
        }
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    struct wm_h2 *h = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    if (st == NULL) {
        return 0;
    }
    if (code != NGHTTP2_NO_ERROR && st->resp_phase != H2S_DONE && !st->reset_ours) {
        flood_window(h); /* cancelled before its answer: counts as a reset */
        if (++h->n_rst > WM_H2_MAX_RST) {
            h2_flood(h, "RST_STREAM (rapid reset)");
        }
    }
    if (st->cut == NULL && !st->reset_ours) {
        st->cut = code != NGHTTP2_NO_ERROR ? "stream reset by the client"
                                           : "stream closed by the client";
    }
    nghttp2_session_set_stream_user_data(s, id, NULL);
    h2s_free(st);
    h2_idle_check(h);
    return 0;
}

/* ---- I/O ---- */

static void h2_finish(struct wm_h2 *h, const char *reason)
{
    wm_conn_finish(h->c, reason);
}

/* nghttp2 hands its frames over one by one (a HEADERS of 30 bytes, a
 * DATA of 1 KiB...): gathered here and added to the output a record's worth
 * at a time, the output is a few 16 KiB chains, which the TLS pump writes
 * as whole records, instead of many small chains (an allocation each, and
 * a record each). One per worker thread: flush_to is the output whose
 * bytes flush_buf holds (the outermost h2_flush's); a flush run from a
 * callback of another first spills them, then adds its frames directly,
 * so no connection's frames change order. */
static __thread uint8_t flush_buf[H2_FLUSH_BUF];
static __thread struct evbuffer *flush_to;
static __thread size_t flush_have;

static void flush_spill(void)
{
    if (flush_have > 0) {
        evbuffer_add(flush_to, flush_buf, flush_have);
        flush_have = 0;
    }
}

/* The send timeout (wm_h2_front.send_ms): while frames wait in the output,
 * a timer looks every quarter of it whether the socket (or the TLS pump)
 * took bytes since the last look (what h2_flush() added, c->bytes_out,
 * less what still waits); when none went for send_ms since the last look
 * that saw some, the connection goes: at most a quarter late. */
static int send_ms_of(const struct wm_h2 *h)
{
    return h->fr->send_ms > 0 ? h->fr->send_ms : WM_H2_SEND_MS;
}

static void send_look_later(struct wm_h2 *h)
{
    int ms = send_ms_of(h) / 4 > 0 ? send_ms_of(h) / 4 : 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(h->send_ev, &tv);
}

/* Bytes in the client socket's send queue that its peer has not
 * acknowledged, or -1. A client that reads frees that queue long before
 * the kernel wakes a writer again (a third of a buffer that is megabytes
 * large), so the look counts those too. */
static int send_queued(const struct wm_h2 *h)
{
    return wm_sock_sendq(wm_tls_pump_transport(h->c->bev) != NULL ? wm_tls_pump_fd(h->c->bev)
                                                                : bufferevent_getfd(h->c->bev));
}

static void send_arm(struct wm_h2 *h, size_t waiting)
{
    h->send_taken = h->c->bytes_out - waiting;
    h->send_queued = send_queued(h);
    h->send_moved_ms = wm_now_coarse_ms();
    h->send_armed = true;
    send_look_later(h);
}

static void send_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_h2 *h = arg;
    struct wm_conn *c = h->c;

    (void)fd;
    (void)what;
    h->send_armed = false;
    if (wm_conn_closed(c) || c->bev == NULL) {
        return;
    }
    size_t waiting = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (waiting == 0) {
        return; /* armed again by the next h2_flush() that leaves bytes */
    }
    int queued = send_queued(h);
    if (c->bytes_out - waiting != h->send_taken ||
        (queued >= 0 && h->send_queued >= 0 && queued < h->send_queued)) {
        send_arm(h, waiting); /* bytes went since the last look (or left the socket) */
        return;
    }
    if (wm_now_coarse_ms() - h->send_moved_ms < (uint64_t)send_ms_of(h)) {
        h->send_armed = true;
        send_look_later(h);
        return;
    }
    wm_conn_enter(c);
    wm_log(WM_LOG_INFO, c->id, "h2: %s took none of the %zu bytes waiting in %g s: closing",
           c->peer_str, waiting, send_ms_of(h) / 1000.0);
    h2_finish(h, "client-write-timeout");
    wm_conn_leave(c);
}

void h2_flush(struct wm_h2 *h)
{
    struct wm_conn *c = h->c;
    struct evbuffer *out;
    bool gather;

    if (wm_conn_closed(c) || c->bev == NULL) {
        return;
    }
    out = bufferevent_get_output(c->bev);
    gather = flush_to == NULL;
    if (gather) {
        flush_to = out;
    } else {
        flush_spill();
    }
    while (evbuffer_get_length(out) + (gather ? flush_have : 0) < WM_H2_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->s, &data);
        if (n < 0) {
            if (gather) {
                flush_spill();
                flush_to = NULL;
            }
            wm_log(WM_LOG_INFO, c->id, "h2: send: %s", nghttp2_strerror((int)n));
            h2_finish(h, "h2-error");
            return;
        }
        if (n == 0) {
            break;
        }
        c->bytes_out += (uint64_t)n;
        if (!gather || (size_t)n > sizeof(flush_buf) - flush_have) {
            flush_spill();
        }
        if (!gather || (size_t)n >= sizeof(flush_buf)) {
            evbuffer_add(out, data, (size_t)n);
        } else {
            memcpy(flush_buf + flush_have, data, (size_t)n);
            flush_have += (size_t)n;
        }
    }
    if (gather) {
        flush_spill();
        flush_to = NULL;
    }
    if (!h->send_armed && evbuffer_get_length(out) > 0) {
        send_arm(h, evbuffer_get_length(out));
    }
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
        if (h->dying) {
            /* the client may still be sending: a close with its bytes
             * unread would reset the connection and could lose our GOAWAY */
            wm_conn_set_linger(c);
        }
        wm_conn_close_after_flush(c, h->why != NULL ? h->why : "h2-done");
    }
}

void h2_feed(struct wm_h2 *h)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);
    struct evbuffer_iovec v;

    wm_conn_enter(h->c);
    if (!nghttp2_session_want_read(h->s)) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* going away: nothing more is read */
    }
    while (!wm_conn_closed(h->c) && evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        ssize_t n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            wm_log(n == NGHTTP2_ERR_FLOODED ? WM_LOG_WARN : WM_LOG_INFO, h->c->id,
                   "h2: %s from %s", nghttp2_strerror((int)n), h->c->peer_str);
            if (n == NGHTTP2_ERR_FLOODED) {
                h2_finish(h, "h2-error");
                break;
            }
            if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
                h2_flood(h, "CONTINUATION"); /* nghttp2 counted first (CVE-2024-27316) */
            } else {
                h->dying = true;
                h->why = "h2-protocol-error";
                nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
            }
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        h->c->bytes_in += (uint64_t)n;
        evbuffer_drain(in, (size_t)n);
    }
    h2_flush(h);
    wm_conn_leave(h->c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    h2_feed(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_h2 *h = arg;

    (void)bev;
    wm_conn_enter(h->c);
    h2_flush(h);
    wm_conn_leave(h->c);
}

/* Answers the engines handed over parsed (h2_stream.c) go out together,
 * once per loop turn. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_h2 *h = arg;

    (void)fd;
    (void)what;
    h->flush_soon = false;
    wm_conn_enter(h->c);
    h2_flush(h);
    wm_conn_leave(h->c);
}

void h2_flush_soon(struct wm_h2 *h)
{
    if (!h->flush_soon) {
        h->flush_soon = true;
        event_active(h->flush_ev, EV_TIMEOUT, 0);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_h2 *h = arg;

    (void)bev;
    wm_conn_enter(h->c);
    h2_finish(h, (what & BEV_EVENT_EOF) ? "client-closed" : "client-error");
    wm_conn_leave(h->c);
}

static void idle_cb(int fd, short what, void *arg)
{
    struct wm_conn *c = arg;
    struct wm_h2 *h = c->proto_data;

    (void)fd;
    (void)what;
    wm_conn_enter(c);
    if (h != NULL && !wm_conn_closed(c)) {
        h->goaway = true;
        for (struct h2_stream *st = h->streams; st != NULL; st = st->next) {
            if (st->answered_early) { /* the rest of its request never came */
                nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
            }
        }
        h2_flush(h); /* the resets before the GOAWAY, which goes first and ends the session */
        nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
        h2_flush(h);
    }
    wm_conn_leave(c);
}

/* How long waiting engines outlive the connection's last stream: at most
 * its idle limit, which a shorter one keeps to. */
static int linger_ms(const struct wm_h2 *h)
{
    int idle_ms = h->c->limits.idle_ms;

    return idle_ms > 0 && idle_ms < WM_H2_ENGINE_LINGER_MS ? idle_ms : WM_H2_ENGINE_LINGER_MS;
}

/* The connection has had no stream for linger_ms(): its waiting engines
 * go, then the idle limit runs for the rest. */
static void linger_cb(int fd, short what, void *arg)
{
    struct wm_conn *c = arg;
    struct wm_h2 *h = c->proto_data;

    (void)fd;
    (void)what;
    wm_conn_enter(c);
    if (h != NULL && !wm_conn_closed(c) && h->nstreams == h->nearly) {
        int idle_ms = h->c->limits.idle_ms;
        h2v_free_all(h);
        h2s_spares_free(h);
        if (idle_ms > linger_ms(h)) {
            wm_conn_set_timer(c, idle_ms - linger_ms(h), idle_cb);
        } else if (idle_ms > 0) {
            idle_cb(fd, what, arg); /* the idle limit came first */
        }
    }
    wm_conn_leave(c);
}

void h2_idle_check(struct wm_h2 *h)
{
    if (h->nstreams > h->nearly) {
        wm_conn_clear_timer(h->c);
        return;
    }
    /* An idle connection keeps no engine: their upstream connections go
     * back to the shared pool, the memory to the worker. Not at once: a
     * client with many streams in flight often has none for an instant
     * between its bursts, and its next requests take the waiting engines
     * (and their upstream connections) instead of starting new ones. */
    if (h->nidle > 0 && !h->goaway && !h->dying) {
        wm_conn_set_timer(h->c, linger_ms(h), linger_cb);
        return;
    }
    h2v_free_all(h);
    h2s_spares_free(h);
    if (h->c->limits.idle_ms > 0) {
        wm_conn_set_timer(h->c, h->c->limits.idle_ms, idle_cb);
    }
}

static void h2_free(struct wm_conn *c)
{
    struct wm_h2 *h = c->proto_data;

    if (h == NULL) {
        return;
    }
    h2v_free_all(h);
    while (h->streams != NULL) {
        if (h->s != NULL) {
            nghttp2_session_set_stream_user_data(h->s, h->streams->id, NULL);
        }
        if (h->streams->cut == NULL) {
            h->streams->cut = "the HTTP/2 connection closed";
        }
        h2s_free(h->streams);
    }
    h2s_spares_free(h); /* the spare answer parsers too */
    nghttp2_session_del(h->s);
    event_free(h->flush_ev);
    event_free(h->send_ev);
    wm_h2_req_free(h->spare_req);
    if (h->prev != NULL) {
        h->prev->next = h->next;
    } else if (live == h) {
        live = h->next;
    }
    if (h->next != NULL) {
        h->next->prev = h->prev;
    }
    free(h);
    c->proto_data = NULL;
}

/* nghttp2's allocations (stream records, header copies, frame items) go
 * through the per-thread block cache (core/mem.h). The only big block it
 * keeps is the session's 16 KiB frame buffer, made once per connection:
 * of an idle connection's, the pages its frames never reached take no
 * memory (wm_mem_malloc_lazy; 47 -> 37 KiB per idle connection). */
static void *mem_malloc(size_t n, void *ud)
{
    (void)ud;
    return wm_mem_malloc_lazy(n);
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    wm_mem_free(p);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
    (void)ud;
    return wm_mem_calloc(nmemb, size);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return p == NULL ? wm_mem_malloc_lazy(n) : wm_mem_realloc(p, n); /* the frame buffer's way */
}

static nghttp2_mem h2_mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

static nghttp2_session *session_new(struct wm_h2 *h)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s = NULL;

    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return NULL;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, 2 * WM_H2_MAX_CONT); /* ours logs first */
    nghttp2_option_set_max_settings(opt, 64);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_stream_reset_rate_limit(opt, 4 * WM_H2_MAX_RST, WM_H2_MAX_RST / 10);
    if (nghttp2_session_server_new3(&s, cb, h, opt, &h2_mem) != 0) {
        s = NULL;
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return s;
}

static int send_settings(struct wm_h2 *h)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, WM_H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WM_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, WM_HTTP_MAX_HEAD},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };

    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        return -1;
    }
    return nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, WM_H2_CONN_WINDOW);
}

struct wm_h2 *h2_begin(struct wm_conn *c, const struct wm_h2_front *fr)
{
    struct wm_h2 *h = calloc(1, sizeof(*h));

    if (h == NULL || (h->s = session_new(h)) == NULL ||
        (h->flush_ev = event_new(wm_worker_base(c->w), -1, 0, flush_cb, h)) == NULL ||
        (h->send_ev = evtimer_new(wm_worker_base(c->w), send_cb, h)) == NULL) {
        if (h != NULL) {
            nghttp2_session_del(h->s);
            if (h->flush_ev != NULL) {
                event_free(h->flush_ev);
            }
        }
        free(h);
        wm_conn_finish(c, "out-of-memory");
        return NULL;
    }
    h->c = c;
    h->fr = fr;
    h->win_start = wm_now_ms();
    h->next = live;
    if (live != NULL) {
        live->prev = h;
    }
    live = h;
    c->proto_data = h;
    c->proto_free = h2_free;
    c->access_logged = true; /* each stream writes its own access line */
    if (send_settings(h) < 0) {
        wm_conn_finish(c, "out-of-memory");
        return NULL;
    }
    bufferevent_setwatermark(c->bev, EV_WRITE, WM_H2_OUT_HIGH / 2, 0);
    bufferevent_set_timeouts(c->bev, NULL, NULL); /* an h2c upgrade's: send_cb instead */
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, h);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    h2_idle_check(h);
    wm_log(WM_LOG_DEBUG, c->id, "h2: connection from %s", c->peer_str);
    return h;
}

/* ---- choosing the framing at accept ---- */

struct sniff {
    const struct wm_hfwd_ops *h1;
    const struct wm_h2_front *h2;
};

static void sniff_free(struct wm_conn *c)
{
    free(c->proto_data);
    c->proto_data = NULL;
}

static bool alpn_h2(struct bufferevent *bev)
{
    SSL *ssl = wm_tls_pump_ssl(bev);
    const unsigned char *p = NULL;
    unsigned int n = 0;

    if (ssl == NULL) {
        return false;
    }
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

/* A plain port: HTTP/1 when the first line is an HTTP/1 request line (it
 * ends in "HTTP/1.x") or empty, else HTTP/2 (prior knowledge: the preface; anything
 * else gets GOAWAY PROTOCOL_ERROR, RFC 9113 3.4). -1: wait for more. */
static int plain_is_h2(struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
    char tail[10];

    char first;

    if (evbuffer_copyout(in, &first, 1) == 1 && (first == '\r' || first == '\n')) {
        return 0; /* an empty line before a request line, which HTTP/1 skips (RFC 9112 2.2) */
    }
    if (n >= PREFACE_LEN) {
        unsigned char buf[PREFACE_LEN];
        evbuffer_copyout(in, buf, PREFACE_LEN);
        if (memcmp(buf, preface, PREFACE_LEN) == 0) {
            return 1;
        }
    }
    if (eol.pos < 0) {
        return n >= SNIFF_LINE_MAX ? 0 : -1; /* a huge line: the engine answers it */
    }
    size_t end = (size_t)eol.pos;
    end -= end > 0 && evbuffer_pullup(in, (ssize_t)end)[end - 1] == '\r';
    if (end < 9) {
        return 1;
    }
    struct evbuffer_ptr at;
    evbuffer_ptr_set(in, &at, end - 9, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(in, &at, tail, 9);
    return memcmp(tail, " HTTP/1.", 8) == 0 && tail[8] >= '0' && tail[8] <= '9' ? 0 : 1;
}

static void sniff_decide(struct wm_conn *c)
{
    struct sniff *sn = c->proto_data;
    const struct wm_hfwd_ops *h1 = sn->h1;
    const struct wm_h2_front *h2 = sn->h2;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool is_h2;

    if (h2->tls) {
        is_h2 = alpn_h2(c->bev);
    } else {
        int r = plain_is_h2(in);
        if (r < 0) {
            return; /* the first line is not complete yet */
        }
        is_h2 = r == 1;
    }
    sniff_free(c);
    c->proto_free = NULL;
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    wm_conn_clear_timer(c);
    if (!is_h2) {
        wm_hfwd_start(c, h1);
        return;
    }
    struct wm_h2 *h = h2_begin(c, h2);
    if (h != NULL) {
        h2_goaway_if_draining(h);
        h2_feed(h);
    }
}

static void sniff_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_conn *c = arg;

    (void)bev;
    wm_conn_enter(c);
    sniff_decide(c);
    wm_conn_leave(c);
}

static void sniff_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_conn *c = arg;

    (void)bev;
    wm_conn_enter(c);
    wm_conn_finish(c, (what & BEV_EVENT_EOF) ? "client-closed" : "client-error");
    wm_conn_leave(c);
}

/* The first line did not come in time. Part of an HTTP/1 request line
 * gets the 408 the engine gives a head that does not end in time (README);
 * nothing, or part of the HTTP/2 preface, only the close. */
static void sniff_timeout_cb(int fd, short what, void *arg)
{
    struct wm_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    size_t k = n < PREFACE_LEN ? n : PREFACE_LEN;

    (void)fd;
    (void)what;
    wm_conn_enter(c);
    if (n == 0 || memcmp(evbuffer_pullup(in, (ssize_t)k), preface, k) == 0) {
        wm_conn_finish(c, "head-timeout");
    } else {
        c->bytes_in += n;
        c->code = 408;
        evbuffer_drain(in, n);
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t before = evbuffer_get_length(out);
        wm_http_write_error(out, 408, true, NULL, "request head not received in time");
        c->bytes_out += evbuffer_get_length(out) - before;
        wm_conn_close_after_flush(c, "head-timeout");
    }
    wm_conn_leave(c);
}

void wm_h2_serve(struct wm_conn *c, const struct wm_hfwd_ops *h1, const struct wm_h2_front *h2)
{
    struct sniff *sn;

    if (h2 == NULL || (sn = calloc(1, sizeof(*sn))) == NULL) {
        wm_hfwd_start(c, h1);
        return;
    }
    sn->h1 = h1;
    sn->h2 = h2;
    c->proto_data = sn;
    c->proto_free = sniff_free;
    bufferevent_setcb(c->bev, sniff_read_cb, NULL, sniff_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (c->limits.head_ms > 0) {
        wm_conn_set_timer(c, c->limits.head_ms, sniff_timeout_cb);
    }
}

/* ---- ALPN, GOAWAY ---- */

int wm_h2_alpn_select(const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                      unsigned int inlen, bool h2)
{
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char h1[] = "\x08http/1.1";
    const unsigned char *mine = h2 ? both : h1;
    unsigned int mlen = h2 ? sizeof(both) - 1 : sizeof(h1) - 1;

    if (SSL_select_next_proto((unsigned char **)out, outlen, mine, mlen, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

static void goaway_one(struct wm_h2 *h)
{
    struct wm_conn *c = h->c;

    wm_conn_enter(c);
    h->goaway = true;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    wm_log(WM_LOG_DEBUG, c->id, "h2: GOAWAY (stop or reload), %zu stream(s) finish", h->nstreams);
    h2_flush(h);
    wm_conn_leave(c);
}

void h2_goaway_if_draining(struct wm_h2 *h)
{
    if (!h->goaway && !wm_conn_closed(h->c) && wm_worker_draining(h->c->w)) {
        goaway_one(h);
    }
}

void wm_h2_goaway_worker(struct wm_worker *w, void *arg)
{
    (void)w;
    (void)arg;
    for (struct wm_h2 *h = live; h != NULL;) {
        struct wm_h2 *next = h->next;
        if (!h->goaway && !wm_conn_closed(h->c)) {
            goaway_one(h);
        }
        h = next;
    }
}
