/*
 * http/fwd_park.c - the keep-alive wait of an idle client without a
 * bufferevent (see hf_park in fwd_int.h, wm_conn_park in net/conn.h).
 *
 * After WM_HTTP_PARK_MS of silence the idle upstream has gone back to the
 * pool (go_quiet in fwd_timer.c; ops without a pool keep it attached); a client
 * on a plain socket then also gives up its bufferevent, the engine's timer
 * and its request parser: what stays is struct wm_conn, struct wm_hfwd
 * (and a kept upstream) and the one park event, which carries the rest of
 * the keep-alive wait as its timeout. On the first byte (or FIN) the engine
 * hooks itself on the new bufferevent exactly as at the start, reads what
 * came and serves it; at the end of the wait the connection closes as
 * before (keepalive-timeout).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/fwd_int.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"

/* Nothing of a request held: no request state, nothing buffered; an
 * upstream kept for the next request (ops without a pool: forward proxy,
 * tunnel HTTP mappings) may stay, idle, as its callbacks never touch the
 * client while no request is in progress (they only drop it). */
static bool parkable(const struct wm_hfwd *f)
{
    bool up_ok = f->up == NULL || (f->flow.up_idle && !f->flow.up_paused);

    return f->state == HF_READ_HEAD && up_ok && f->connecting == NULL && f->w == NULL &&
           !f->flow.client_eof && !f->flow.out_paused && f->req != NULL &&
           wm_http_head_size(wm_http_parser_head(f->req)) == 0 && f->c->bev != NULL &&
           wm_bev_is_plain_socket(f->c->bev);
}

/* Back from the park: c->bev is new, the engine makes its timer and parser
 * again; then either the wait is over or bytes (or a FIN) are there. */
static void wake(struct wm_conn *c, short what)
{
    struct wm_hfwd *f = c->proto_data;
    uint64_t now;

    hf_enter(f);
    f->req = wm_http_parser_new(WM_HTTP_REQUEST, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    if (f->req == NULL || hf_timer_new(f) < 0) {
        hf_finish(f, "out-of-memory");
    } else if (what & EV_TIMEOUT) {
        hf_finish(f, "keepalive-timeout");
    } else {
        hf_client_hook(f, true);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
            hf_process_client(f); /* the head timer starts with the first byte */
        } else {
            /* A FIN or an error, reported by the next read; or nothing:
             * the wait goes on (and may park again). */
            now = wm_now_coarse_ms();
            hf_arm_timer(f, f->ka_until > now ? (int)(f->ka_until - now) : 1);
        }
    }
    hf_leave(f);
}

int hf_park(struct wm_hfwd *f, uint64_t left_ms)
{
    struct wm_conn *c = f->c;

    if (!parkable(f)) {
        return -1;
    }
    wm_fastread_free(f->cfr); /* it hooks the bufferevent's fd */
    f->cfr = NULL;
    if (wm_conn_park(c, (int)left_ms, wake) < 0) {
        hf_client_fastread(f);
        return -1;
    }
    /* Called from the engine's own timer, which is not pending now. */
    event_free(f->timer);
    f->timer = NULL;
    f->timer_armed = false;
    f->deadline = 0;
    wm_http_parser_free(f->req);
    f->req = NULL;
    f->flow.creading = false;
    return 0;
}
