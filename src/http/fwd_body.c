/*
 * http/fwd_body.c - the forwarding engine's request body: moving it to the
 * target with back-pressure, the body limit (t.max_body), and
 * Expect: 100-continue, answered by the engine itself as nginx does: the
 * client gets our 100 Continue when its request is routed to a target
 * (after the route's checks, so a 413 on Content-Length or a 403 comes
 * alone, which is what Expect is for), Expect is not sent upstream, and a
 * 100 from the upstream is dropped (fwd_up.c), so the client never sees
 * two. Another expectation is answered 417 (RFC 9110 10.1.1). Internal to
 * http/fwd (see fwd_int.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"

int hf_expect(struct wm_hfwd *f, struct wm_http_head *hd)
{
    struct wm_http_field fl;

    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        const char *v;
        size_t n;
        wm_http_head_field(hd, i, &fl);
        if (!wm_strieq(fl.name, fl.nlen, "expect")) {
            continue;
        }
        v = fl.value;
        n = fl.vlen;
        wm_trim(&v, &n);
        if (!wm_strieq(v, n, "100-continue")) {
            wm_log(WM_LOG_DEBUG, f->c->id, "http client=%s: unsupported Expect: 417",
                   f->c->peer_str);
            return 417;
        }
        f->ri.expect = true;
    }
    return 0;
}

void hf_send_continue(struct wm_hfwd *f)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct wm_conn *c = f->c;
    size_t n = sizeof(cont) - 1;

    /* RFC 9110 15.2: no 1xx to an HTTP/1.0 client; a client that already
     * sends its body does not wait for one (nginx skips it then too). */
    if (!f->ri.expect || !wm_http_parser_has_body(f->req) ||
        wm_http_head_minor(wm_http_parser_head(f->req)) == 0 ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        return;
    }
    wm_bev_send_bytes(c->bev, cont, n); /* at once on a plain socket, behind queued bytes */
    f->req_out += n;
    c->bytes_out += n;
    f->resp_head_bytes += n;
}

/* The body went over t.max_body: the bytes in f->w->body do not go, the
 * upstream connection is closed with the request cut (never pooled), the
 * client answered 413 or, when its answer has begun, cut. */
static void body_too_large(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;

    evbuffer_drain(f->w->body, evbuffer_get_length(f->w->body));
    wm_log(WM_LOG_INFO, c->id,
           "http client=%s target=%s: request body over client_max_body_size (%llu bytes): "
           "413, upstream connection aborted",
           c->peer_str, f->w->t.log, f->w->t.max_body);
    hf_drop_upstream(f);
    if (f->resp_phase == HF_RESP_HEAD) {
        wm_hfwd_fail(f, 413, NULL, "request body larger than client_max_body_size");
        return;
    }
    hf_log_request(f);
    hf_finish(f, "body-too-large");
}

void hf_forward_body(struct wm_hfwd *f)
{
    struct wm_conn *c = f->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t moved;
    int r = hf_move_body(f->req, in, f->w->body, &moved);

    if (moved > 0) {
        f->req_in += moved;
        c->bytes_in += moved;
        if (f->w->t.max_body > 0 && wm_http_parser_body_bytes(f->req) > f->w->t.max_body) {
            body_too_large(f);
            return;
        }
        hf_keep_body(f, f->w->body, moved);
        wm_bev_send(f->up, f->w->body, moved);
        f->last_ms = wm_now_coarse_ms();
        f->last_cin_ms = f->last_ms;
    }
    if (r == WM_HTTP_MSG_DONE) {
        /* Pipelined requests wait in the input buffer, bounded by its read
         * watermark, until this response is complete. */
        f->req_phase = HF_REQ_DONE;
        return;
    }
    if (r != WM_HTTP_MORE) {
        wm_log(WM_LOG_DEBUG, c->id, "http: bad request body: %s", wm_http_parser_error(f->req));
        if (f->resp_phase == HF_RESP_HEAD) {
            hf_drop_upstream(f); /* it holds a cut request */
            wm_hfwd_fail(f, 400, NULL, "malformed request body");
        } else {
            hf_log_request(f);
            hf_finish(f, "bad-request-body");
        }
        return;
    }
    if (f->flow.client_eof && evbuffer_get_length(in) == 0) {
        hf_log_request(f); /* a buffered request whose body was cut by the FIN */
        hf_finish(f, "client-closed");
        return;
    }
    size_t queue = f->ops->queue_max > 0 ? f->ops->queue_max : WM_HTTP_BODY_HIGH_WATER;
    if (evbuffer_get_length(bufferevent_get_output(f->up)) >= queue) {
        f->flow.client_paused = true;
        hf_client_reading(f, false);
        bufferevent_setwatermark(f->up, EV_WRITE, queue / 2, 0);
    } else if (moved > 0 && f->flow.creading) {
        /* Reads stop by themselves when the input holds WM_HTTP_CLIENT_READ_MAX
         * (body that came while connecting): now drained, they go on. */
        hf_client_reading(f, true);
    }
}
