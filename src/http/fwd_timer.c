/*
 * http/fwd_timer.c - the engine's one timer per connection: the head,
 * keep-alive, body, transfer and HTTP/2 sink deadlines, and the quiet
 * moment when an idle keep-alive client gives its upstream back and parks
 * (fwd_park.c).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdint.h>

#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "http/fwd.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"

/* One deadline per connection, kept lazily: the libevent timer is only
 * moved when the new deadline is earlier than the armed one; when it fires
 * early it re-arms for what is left. Requests on a kept connection then
 * cost no timer operation at all. */
static void timer_at(struct wm_hfwd *f, uint64_t now, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(f->timer, &tv);
    f->timer_armed = true;
    f->timer_fires = now + ms;
}

/* ms <= 0 clears the deadline. */
void hf_arm_timer(struct wm_hfwd *f, int ms)
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

/* Time left for the client to send more of its body (t.client_read_ms);
 * UINT64_MAX when that limit does not apply now. */
static uint64_t body_wait_left(const struct wm_hfwd *f, uint64_t now)
{
    uint64_t ms = f->w->t.client_read_ms > 0 ? (uint64_t)f->w->t.client_read_ms : 0;

    if (ms == 0 || f->req_phase != HF_REQ_BODY || f->flow.client_paused) {
        return UINT64_MAX;
    }
    return now - f->last_cin_ms >= ms ? 0 : ms - (now - f->last_cin_ms);
}

/* The request body stopped coming: 408 while no response has started. */
static void body_timed_out(struct wm_hfwd *f)
{
    if (f->resp_phase == HF_RESP_HEAD) {
        wm_hfwd_fail(f, 408, NULL, "request body not received in time");
        return;
    }
    wm_log(WM_LOG_DEBUG, f->c->id, "http: request body stalled, closing");
    hf_log_request(f);
    hf_finish(f, "client-read-timeout");
}

/* A keep-alive client quiet for WM_HTTP_QUIET_MS (WM_HTTP_PARK_MS on a
 * plain socket, parked after this) gives its idle upstream to the shared
 * pool (ops->park) and frees its response parser and request state. Not at
 * once after each response: a busy client would move it to the pool and
 * back for every request, at two epoll changes each time; another client
 * that needs it meanwhile takes it (wm_hfwd_take_held). */
static void go_quiet(struct wm_hfwd *f)
{
    if (f->up != NULL && f->flow.up_idle && f->ops->park != NULL) {
        wm_log(WM_LOG_DEBUG, f->c->id, "http: client idle, upstream back to the pool");
        hf_release_upstream(f);
    }
    if (f->up == NULL) {
        wm_http_parser_free(f->resp); /* made again by the next request that needs it */
        f->resp = NULL;
    }
    hf_work_put(f);
}

static void deadline_passed(struct wm_hfwd *f, uint64_t now)
{
    struct wm_conn *c = f->c;
    uint64_t idle;
    bool buffered;
    bool no_head;

    switch (f->state) {
    case HF_READ_HEAD:
        buffered = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
        no_head = wm_http_head_size(wm_http_parser_head(f->req)) == 0;
        if (buffered && no_head) {
            /* A new request's bytes are in, their (deferred) read callback
             * has not run yet: read them now, the head timer starts. */
            hf_process_client(f);
        } else if (!buffered && no_head && now < f->ka_until) {
            go_quiet(f);
            if (wm_worker_draining(c->w)) {
                hf_finish(f, "shutdown"); /* stopping: an idle client goes (as parked ones do) */
            } else if (hf_park(f, f->ka_until - now) < 0) {
                hf_arm_timer(f, (int)(f->ka_until - now));
            }
        } else if (!buffered && no_head) {
            hf_finish(f, "keepalive-timeout");
        } else {
            wm_hfwd_fail(f, 408, NULL, "request head not received in time");
        }
        return;
    case HF_STREAM:
        if (now - f->last_ms < (uint64_t)c->limits.idle_ms) {
            hf_arm_timer(f, (int)((uint64_t)c->limits.idle_ms - (now - f->last_ms)));
        } else {
            wm_log(WM_LOG_DEBUG, c->id, "http: client not reading the body, closing");
            hf_log_request(f);
            hf_finish(f, "idle-timeout");
        }
        return;
    case HF_FORWARD:
        idle = (uint64_t)hf_fwd_idle_ms(f);
        if (body_wait_left(f, now) == 0) {
            body_timed_out(f);
        } else if (hf_sink_wait_left(f, now) == 0) { /* an HTTP/2 stream's (fwd_h2.c) */
            wm_log(WM_LOG_DEBUG, c->id, "http: the client did not read the response in time");
            hf_log_why(f, "the client did not read the answer in time"); /* as client_event */
            hf_finish(f, "client-write-timeout");
        } else if (now - f->last_ms < idle) {
            uint64_t left = idle - (now - f->last_ms);
            uint64_t body = body_wait_left(f, now);
            uint64_t sink = hf_sink_wait_left(f, now);
            left = body < left ? body : left;
            hf_arm_timer(f, (int)(sink < left ? sink : left));
        } else if (f->resp_phase == HF_RESP_HEAD) {
            if (!hf_up_result(f, WM_HFWD_UP_TIMEOUT, 0)) {
                wm_hfwd_fail(f, 504, NULL, "no response from the target in time");
            }
        } else {
            wm_log(WM_LOG_DEBUG, c->id, "http: transfer idle, closing");
            if (f->resp_phase != HF_RESP_DONE) { /* a cut answer's access line too */
                hf_log_why(f, "nothing of the answer moved in time");
            }
            hf_finish(f, "idle-timeout");
        }
        return;
    default:
        return;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_hfwd *f = arg;
    uint64_t now = wm_now_coarse_ms();

    (void)fd;
    (void)what;
    f->timer_armed = false;
    if (f->deadline == 0) {
        return;
    }
    if (now < f->deadline) {
        timer_at(f, now, f->deadline - now);
        return;
    }
    f->deadline = 0;
    hf_enter(f);
    deadline_passed(f, now);
    hf_leave(f);
}

int hf_timer_new(struct wm_hfwd *f)
{
    f->timer = evtimer_new(wm_worker_base(f->c->w), timer_cb, f);
    f->timer_armed = false;
    f->deadline = 0;
    return f->timer != NULL ? 0 : -1;
}
