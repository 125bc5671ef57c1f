/*
 * http/fwd_stream.c - local answers whose body is produced piece by piece
 * (route() returned WM_HFWD_STREAM; static files). The head goes out
 * first; then t.stream->pump() fills the client's output while it holds
 * less than WM_HTTP_STREAM_LOW bytes, again from the client's write
 * callback as it drains, or when the producer resumes after a pause (rate
 * limits). Bodies of unknown length are chunked to HTTP/1.1 clients and
 * end with the connection for HTTP/1.0 ones.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <sys/socket.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"

/* sendfile moves up to this much per write event on plain sockets
 * (libevent's default is 16 KiB) */
#define STREAM_MAX_SINGLE_WRITE (1024 * 1024)

bool wm_hfwd_plain(const struct wm_hfwd *f)
{
    return wm_bev_is_plain_socket(f->c->bev);
}

/* The head, from f->w->scratch. On an idle plain socket it goes out at once
 * with MSG_MORE, so the kernel sends it in one segment with the start of
 * the body that sendfile() adds next (what nginx gets from tcp_nopush);
 * the rest waits in out. */
static void send_head(struct wm_hfwd *f, struct evbuffer *out, bool body)
{
    size_t n = evbuffer_get_length(f->w->scratch);

    f->head_sent = 0;
    if (body && evbuffer_get_length(out) == 0 && wm_bev_is_plain_socket(f->c->bev)) {
        ssize_t w = send(bufferevent_getfd(f->c->bev), evbuffer_pullup(f->w->scratch, -1), n,
                         MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            evbuffer_drain(f->w->scratch, (size_t)w);
            f->head_sent = (size_t)w;
        }
    }
    evbuffer_add_buffer(out, f->w->scratch);
}

void hf_stream_start(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    const struct wm_hfwd_stream *s = f->w->t.stream;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool v10 = wm_http_head_minor(wm_http_parser_head(f->req)) == 0;
    bool unknown = s->length == WM_HFWD_LEN_UNKNOWN;
    size_t before = evbuffer_get_length(out);
    bool bodyless = f->ri.is_head || f->w->t.local_status == 204 || f->w->t.local_status == 304;

    hf_set_state(f, HF_STREAM);
    f->stream_close = f->ri.close_after || wm_http_parser_has_body(f->req) ||
                      (unknown && v10 && !bodyless);
    f->stream_chunked = unknown && !v10 && !bodyless;
    hf_respond_head(f, f->w->scratch, f->w->t.local_status, f->w->t.local_extra, f->w->t.local_ctype,
                    s->length, f->stream_close);
    send_head(f, out, !bodyless);
    f->resp_head_bytes = evbuffer_get_length(out) - before + f->head_sent;
    f->req_out += f->resp_head_bytes;
    c->bytes_out += f->resp_head_bytes;
    f->status = f->w->t.local_status;
    c->code = f->status;
    if (bodyless) {
        hf_local_done(f, f->stream_close, true);
        return;
    }
    hf_client_reading(f, false); /* pipelined requests wait for this body */
    if (wm_bev_is_plain_socket(c->bev)) {
        bufferevent_set_max_single_write(c->bev, STREAM_MAX_SINGLE_WRITE);
    }
    bufferevent_setwatermark(c->bev, EV_WRITE, WM_HTTP_STREAM_LOW / 2, 0);
    f->last_ms = wm_now_coarse_ms();
    hf_arm_timer(f, c->limits.idle_ms);
    hf_stream_pump(f, true);
}

void wm_hfwd_stream_resume(struct wm_hfwd *f)
{
    if (f->state != HF_STREAM) {
        return;
    }
    hf_enter(f);
    hf_stream_pump(f, false);
    hf_leave(f);
}

/* One pump() call; the bytes it added are counted (and chunk-framed). */
static enum wm_hfwd_pump pump_once(struct wm_hfwd *f, struct evbuffer *out, size_t *added)
{
    const struct wm_hfwd_stream *s = f->w->t.stream;
    /* The output of a pair (an HTTP/2 stream) or of TLS hands bytes on as
     * they are added, so they are gathered in scratch to be counted (and
     * chunk-framed); only a plain socket's output keeps what it is given
     * (file segments for sendfile, which scratch would read into memory). */
    bool gather = f->stream_chunked || !wm_bev_is_plain_socket(f->c->bev);
    struct evbuffer *dst = gather ? f->w->scratch : out;
    size_t before = evbuffer_get_length(dst);
    enum wm_hfwd_pump r = s->pump(s->arg, dst);
    size_t n = evbuffer_get_length(dst) - before;
    size_t framing = 0;

    if (f->stream_chunked && n > 0) {
        char line[24];
        int k = snprintf(line, sizeof(line), "%zx\r\n", n);
        evbuffer_add(out, line, (size_t)k);
        evbuffer_remove_buffer(f->w->scratch, out, n);
        evbuffer_add(out, "\r\n", 2);
        framing = (size_t)k + 2;
    } else if (gather && n > 0) {
        evbuffer_remove_buffer(f->w->scratch, out, n);
    }
    if (f->stream_chunked && r == WM_HFWD_PUMP_DONE) {
        evbuffer_add(out, "0\r\n\r\n", 5);
        framing += 5;
    }
    *added = n + framing;
    f->req_out += n + framing;
    f->c->bytes_out += n + framing;
    return r;
}

void hf_stream_pump(struct wm_hfwd *f, bool in_loop)
{
    struct evbuffer *out = bufferevent_get_output(f->c->bev);
    /* A bufferevent pair (an HTTP/2 stream) hands each write to its partner
     * at once, so out never fills: at most WM_HTTP_STREAM_LOW bytes per
     * call, the (deferred) write callback comes back for more once the
     * partner took them, and stops coming while it does not. */
    size_t budget = WM_HTTP_STREAM_LOW;

    while (f->state == HF_STREAM && evbuffer_get_length(out) < WM_HTTP_STREAM_LOW && budget > 0) {
        size_t added;
        enum wm_hfwd_pump r = pump_once(f, out, &added);

        budget -= added < budget ? added : budget;

        switch (r) {
        case WM_HFWD_PUMP_DONE:
            bufferevent_setwatermark(f->c->bev, EV_WRITE, 0, 0);
            hf_local_done(f, f->stream_close, in_loop);
            return;
        case WM_HFWD_PUMP_FAIL:
            wm_log(WM_LOG_INFO, f->c->id, "http: local body cut (%s)", f->w->t.log);
            hf_log_request(f);
            hf_finish(f, "body-cut");
            return;
        case WM_HFWD_PUMP_WAIT:
            return;
        case WM_HFWD_PUMP_MORE:
            break; /* progress (maybe input only, as a compressor's): again */
        }
    }
}
