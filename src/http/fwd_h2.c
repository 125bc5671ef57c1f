/*
 * http/fwd_h2.c - the forwarding engine's answers handed parsed to a sink
 * (wm_hfwd_give_head, an HTTP/2 stream) instead of written as HTTP/1
 * bytes on the client bufferevent: the response head as the engine's
 * parser read it, then the body with its chunk framing removed, then the
 * end. Same request, same routing, limits and logs as the bytes path: the
 * log counts the bytes the HTTP/1 answer would have had. Internal to
 * http/fwd (see fwd_int.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdint.h>

#include "core/log.h"
#include "core/util.h"
#include "http/fwd.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"

/* The target's response header rules need the bytes path (fwd_head.c). */
static bool response_rules(const struct wm_hfwd *f)
{
    for (size_t i = 0; i < f->w->t.nrules; i++) {
        if (!f->w->t.rules[i].request) {
            return true;
        }
    }
    return false;
}

void hf_chunk_to_scratch(void *arg, const char *p, size_t n)
{
    struct wm_hfwd *f = arg;

    evbuffer_add(f->w->scratch, p, n);
}

int hf_decode_chunked(struct wm_hfwd *f, struct evbuffer *in, size_t *raw)
{
    enum wm_http_res r = WM_HTTP_MORE;
    struct evbuffer_iovec v;
    size_t used;

    *raw = 0;
    while (r == WM_HTTP_MORE && evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
        r = wm_http_parser_feed_body(f->resp, v.iov_base, v.iov_len, &used);
        if (r != WM_HTTP_MORE && r != WM_HTTP_MSG_DONE) {
            return r;
        }
        evbuffer_drain(in, used);
        *raw += used;
    }
    return r;
}

bool hf_sink_head(struct wm_hfwd *f)
{
    struct wm_http_head *hd = wm_http_parser_head(f->resp);
    int status = wm_http_head_status(hd);
    size_t used;
    size_t n;
    bool last;

    if (!f->sink_on && response_rules(f)) {
        return false;
    }
    f->sink_on = true;
    if (status >= 200 && wm_http_parser_needs_eof(f->resp)) {
        f->ri.close_after = true; /* as response_head(): before the head is measured */
    }
    n = hfwd_response_head_len(f);
    f->req_out += n;
    f->c->bytes_out += n;
    f->resp_head_bytes += n;
    if (status < 200) {
        /* interim (1xx; a 101 nobody asked for is the sink's to refuse) */
        if (f->sink != NULL) {
            f->sink->head(f->sink_arg, hd, false);
        }
        wm_http_parser_next(f->resp);
        wm_http_parser_expect_no_body(f->resp, f->ri.is_head);
        return true;
    }
    last = wm_http_parser_feed_body(f->resp, NULL, 0, &used) == WM_HTTP_MSG_DONE;
    if (wm_http_parser_chunked(f->resp)) {
        wm_http_parser_set_body_cb(f->resp, hf_chunk_to_scratch, f);
    }
    f->resp_phase = HF_RESP_BODY;
    if (f->sink != NULL) {
        f->sink->head(f->sink_arg, hd, last);
    }
    return true;
}

bool hf_sink_body(struct wm_hfwd *f, struct evbuffer *in)
{
    struct evbuffer *out = f->w->scratch;
    size_t moved;
    int r = wm_http_parser_chunked(f->resp) ? hf_decode_chunked(f, in, &moved)
                                            : hf_move_body(f->resp, in, out, &moved);

    if (moved > 0) {
        f->req_out += moved; /* raw, as the bytes path counts them */
        f->c->bytes_out += moved;
        f->last_ms = wm_now_coarse_ms();
    }
    if (evbuffer_get_length(out) > 0 && f->sink != NULL &&
        !f->sink->body(f->sink_arg, out)) {
        f->sink_full = true;
    }
    evbuffer_drain(out, evbuffer_get_length(out)); /* the sink is gone: dropped */
    if (!hf_response_body_end(f, r) && f->sink_full && f->up != NULL && !f->flow.up_paused) {
        f->flow.up_paused = true; /* until wm_hfwd_sink_resume() */
        hf_up_reading(f, false);
        f->sink_since = wm_now_coarse_ms();
        hf_arm_timer(f, f->w->t.client_write_ms); /* only moves the deadline earlier */
    }
    return false;
}

uint64_t hf_sink_wait_left(const struct wm_hfwd *f, uint64_t now)
{
    uint64_t ms = f->w->t.client_write_ms > 0 ? (uint64_t)f->w->t.client_write_ms : 0;

    if (ms == 0 || !f->sink_full || !f->flow.up_paused) {
        return UINT64_MAX;
    }
    return now - f->sink_since >= ms ? 0 : ms - (now - f->sink_since);
}

void hf_sink_done(struct wm_hfwd *f, bool keep)
{
    const struct wm_hfwd_sink *sink = f->sink;
    bool on = f->sink_on;

    f->sink = NULL;
    f->sink_on = f->sink_full = false;
    if (f->resp != NULL) {
        wm_http_parser_set_body_cb(f->resp, NULL, NULL);
    }
    if (on && sink != NULL) {
        sink->done(f->sink_arg, keep);
    }
}

void wm_hfwd_sink_drop(struct bufferevent *client)
{
    struct wm_hfwd *f = hf_from_client(client);

    if (f != NULL) {
        f->sink = NULL; /* sink_on stays: the rest of the answer is read and dropped */
    }
}

void wm_hfwd_cut_reason(struct bufferevent *client, const char *why)
{
    struct wm_hfwd *f = hf_from_client(client);

    if (f != NULL) {
        f->cut_why = why;
    }
}

void wm_hfwd_sink_resume(struct bufferevent *client)
{
    struct wm_hfwd *f = hf_from_client(client);

    if (f == NULL || !f->sink_full) {
        return;
    }
    hf_enter(f);
    f->sink_full = false;
    if (f->flow.up_paused && f->up != NULL && f->state == HF_FORWARD) {
        f->flow.up_paused = false;
        hf_up_reading(f, true);
        hf_process_upstream(f);
    }
    hf_leave(f);
}
