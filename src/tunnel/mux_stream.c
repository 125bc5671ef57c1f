/*
 * tunnel/mux_stream.c - stream objects: creation, the bufferevent-pair
 * endpoint handed to handlers (wm_tun_open / wm_tun_stream_accept), and the
 * small accessors of the public API. Socket-attached streams are in
 * mux_sock.c; frames and the fair writer in mux.c.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "tunnel/mux_int.h"

#define INNER_READ_MAX (64 * 1024) /* bytes taken ahead from the local endpoint */

/* ---- the carrier's stream table (hash by id) ---- */

static size_t bucket_of(const struct wm_tun *t, uint32_t id)
{
    return (size_t)((id * 2654435761u) & (t->nbuckets - 1));
}

struct wm_tun_stream *tun_stream_find(struct wm_tun *t, uint32_t id)
{
    for (struct wm_tun_stream *s = t->buckets[bucket_of(t, id)]; s != NULL; s = s->hnext) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void stream_grow(struct wm_tun *t)
{
    size_t nb = t->nbuckets * 2;
    struct wm_tun_stream **b = calloc(nb, sizeof(*b));

    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct wm_tun_stream *s = t->buckets[i], *n; s != NULL; s = n) {
            n = s->hnext;
            size_t k = (size_t)((s->id * 2654435761u) & (nb - 1));
            s->hnext = b[k];
            b[k] = s;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

void tun_stream_insert(struct wm_tun *t, struct wm_tun_stream *s)
{
    if (t->nstreams + 1 > t->nbuckets * 2) {
        stream_grow(t);
    }
    size_t k = bucket_of(t, s->id);
    s->hnext = t->buckets[k];
    t->buckets[k] = s;
    t->nstreams++;
}

void tun_stream_unlink(struct wm_tun *t, struct wm_tun_stream *s)
{
    for (struct wm_tun_stream **pp = &t->buckets[bucket_of(t, s->id)]; *pp != NULL;
         pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            t->nstreams--;
            return;
        }
    }
}

static const char *const stream_state_names[ST_STATE_COUNT] = {"opening", "pending", "open"};

void tun_stream_set_state(struct wm_tun_stream *s, enum stream_state st)
{
    if (s->state == st) {
        return;
    }
    wm_log(WM_LOG_DEBUG, s->t->id, "tunnel: stream %u %s -> %s", s->id,
           stream_state_names[s->state], stream_state_names[st]);
    s->state = st;
}

void tun_stream_enter(struct wm_tun_stream *s)
{
    tun_enter(s->t);
    wm_guard_enter(&s->guard);
}

void tun_stream_leave(struct wm_tun_stream *s)
{
    struct wm_tun *t = s->t;

    if (wm_guard_leave(&s->guard)) {
        free(s);
    }
    tun_leave(t);
}

static void inner_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_tun_stream *s = arg;

    (void)bev;
    tun_stream_enter(s);
    if (s->state == ST_OPEN && tun_stream_has_output(s)) {
        tun_ready_push(s->t, s);
        tun_pump_schedule(s->t);
    }
    tun_stream_leave(s);
}

/* Bytes the peer sent that wait here for the local endpoint. */
static size_t stream_buffered(const struct wm_tun_stream *s)
{
    if (s->pend != NULL) {
        return evbuffer_get_length(s->pend);
    }
    if (s->inner != NULL) {
        return evbuffer_get_length(bufferevent_get_output(s->inner));
    }
    return 0;
}

/* Window auto-tuning, at each credit return: when the sender has used
 * nearly all of the window (little of it left) while little waits here,
 * the window, not the local endpoint, is what holds the stream back
 * (a fast path with some latency on it). Then the window doubles, up to
 * the carrier's window_max and within its grow_budget; the
 * extra credit goes out with the returned one. Windows never shrink (the
 * peer may already use them); the budget comes back when the stream
 * ends. Returns the extra credit. */
static uint32_t window_grow(struct wm_tun_stream *s)
{
    struct wm_tun *t = s->t;
    uint32_t extra = s->win;

    if (s->win >= t->window_max || s->recv_avail > s->win / 4 ||
        stream_buffered(s) > s->win / 4) {
        return 0;
    }
    if (extra > t->window_max - s->win) {
        extra = t->window_max - s->win;
    }
    if (extra > t->grow_budget - t->grown) {
        extra = t->grow_budget - t->grown;
    }
    s->win += extra;
    t->grown += extra;
    return extra;
}

/* n bytes left our receive buffer towards the local endpoint: return
 * credit, in batches of a quarter window. */
void tun_stream_consumed(struct wm_tun_stream *s, size_t n)
{
    struct wm_tun *t = s->t;

    if (n == 0 || tun_closed(t)) {
        return;
    }
    s->recv_credit += (uint32_t)n;
    if (s->recv_credit >= s->win / 4 && !s->remote_fin) {
        uint32_t inc = s->recv_credit + window_grow(s);
        uint8_t p[4] = {(uint8_t)(inc >> 24), (uint8_t)(inc >> 16), (uint8_t)(inc >> 8),
                        (uint8_t)inc};
        tun_send_frame(t, WM_TUN_WINDOW_UPDATE, 0, s->id, p, 4);
        s->recv_avail += inc;
        s->recv_credit = 0;
    }
}

static void inner_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    tun_stream_consumed(arg, info->n_deleted);
}

static void inner_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_tun_stream *s = arg;
    struct wm_tun *t = s->t;

    if (!(what & BEV_EVENT_EOF)) {
        return;
    }
    tun_stream_enter(s);
    /* An EOF is an orderly end even when the endpoint was freed right after
     * it (wm_bev_free flushes, then frees): what it wrote is in our input,
     * maybe more than the peer's window takes now, and all of it goes out
     * before the FIN. Only a free without EOF is an abort (the sweep). */
    if (bufferevent_pair_get_partner(bev) == NULL && !s->reader_gone) {
        s->reader_gone = true;
        s->gone_ms = wm_now_coarse_ms();
    }
    s->local_eof = true;
    tun_ready_push(t, s);
    tun_pump_schedule(t);
    tun_stream_leave(s);
}

/* Make the pair for an accepted/opened stream. Returns the outer end. */
struct bufferevent *tun_stream_attach(struct wm_tun_stream *s)
{
    struct bufferevent *pair[2];
    struct wm_tun *t = s->t;

    if (bufferevent_pair_new(wm_worker_base(t->w), BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
                             pair) < 0) {
        return NULL;
    }
    s->inner = pair[0];
    bufferevent_setcb(s->inner, inner_read_cb, NULL, inner_event_cb, s);
    bufferevent_setwatermark(s->inner, EV_READ, 0, INNER_READ_MAX);
    evbuffer_add_cb(bufferevent_get_output(s->inner), inner_out_cb, s);
    bufferevent_enable(s->inner, EV_READ | EV_WRITE);
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    tun_stream_set_state(s, ST_OPEN);
    return pair[1];
}

struct wm_tun_stream *tun_stream_new(struct wm_tun *t, uint32_t id, enum stream_state st)
{
    struct wm_tun_stream *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->t = t;
    s->id = id;
    s->fd = -1;
    s->state = st;
    t->counters.streams++;
    wm_log(WM_LOG_DEBUG, t->id, "tunnel: stream %u %s", id, stream_state_names[st]);
    s->send_window = t->peer_window;
    s->recv_avail = t->window;
    s->win = t->window;
    tun_stream_insert(t, s);
    return s;
}

/* End s. notify_outer: tell the local endpoint with an error event that
 * the stream was reset (its outer bufferevent stays the owner's); for a
 * socket stream, the end callback runs last, after s is gone from every
 * list. s's memory goes now, or at its last leave when inside one of its
 * entries (tun_stream_enter): callers there test wm_guard_closed(). */
void tun_stream_close(struct wm_tun_stream *s, bool notify_outer)
{
    struct wm_tun *t = s->t;
    struct tun_sock_end e = {NULL, NULL, {0, 0, NULL}};

    if (wm_guard_closed(&s->guard)) {
        return;
    }
    if (s->ev != NULL) {
        tun_sock_release(s, notify_outer, &e);
    }
    tun_ready_remove(t, s);
    tun_stream_unlink(t, s);
    t->grown -= s->win - t->window; /* the auto-tuning budget comes back */
    if (s->inner != NULL) {
        struct bufferevent *outer = bufferevent_pair_get_partner(s->inner);
        if (outer != NULL) {
            if (notify_outer) {
                bufferevent_trigger_event(outer, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
            } else if (!s->remote_fin) {
                bufferevent_flush(s->inner, EV_WRITE, BEV_FINISHED);
            }
        }
        evbuffer_remove_cb(bufferevent_get_output(s->inner), inner_out_cb, s);
        bufferevent_free(s->inner);
        s->inner = NULL;
    }
    if (wm_guard_close(&s->guard)) {
        free(s);
    }
    if (e.end != NULL) {
        e.end(e.arg, &e.res);
    }
}

struct wm_tun_stream *wm_tun_open(struct wm_tun *t, const struct wm_tun_open *o,
                                  wm_tun_open_cb cb, void *arg)
{
    uint8_t buf[WM_TUN_MAX_PAYLOAD];
    size_t n;
    struct wm_tun_stream *s;

    const char *why = wm_tun_open_refusal(t);
    if (why != NULL) {
        if (why == t->refusal) {
            tun_limit_log(t, true); /* max_streams: the one text t composes */
        }
        return NULL;
    }
    n = wm_tun_open_encode(buf, sizeof(buf), o);
    if (n == 0) {
        return NULL;
    }
    s = tun_stream_new(t, t->next_id, ST_OPENING);
    if (s == NULL) {
        return NULL;
    }
    t->next_id += 2;
    s->open_sent_ms = wm_now_coarse_ms();
    s->cb = cb;
    s->arg = arg;
    if (o->kind == WM_TUN_OPEN_MAPPING) {
        s->tag = wm_tun_tag(o->name.p, o->name.n);
    }
    tun_send_frame(t, WM_TUN_OPEN, 0, s->id, buf, n);
    return s;
}

struct wm_tun_stream *wm_tun_open_sock(struct wm_tun *t, const struct wm_tun_open *o, int fd,
                                       int idle_ms, wm_tun_open_cb cb, wm_tun_sock_end_cb end,
                                       void *arg)
{
    struct wm_tun_stream *s = wm_tun_open(t, o, cb, arg);

    if (s != NULL) {
        s->fd = fd;
        s->idle_ms = idle_ms;
        s->end = end;
    }
    return s;
}

void wm_tun_open_cancel(struct wm_tun_stream *s)
{
    tun_send_code(s->t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "cancelled");
    tun_stream_close(s, false);
}

struct bufferevent *wm_tun_stream_accept(struct wm_tun_stream *s)
{
    struct bufferevent *outer = tun_stream_attach(s);
    uint8_t ok = WM_TUN_OPEN_OK;

    if (outer == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "out of memory");
        return NULL;
    }
    tun_send_frame(s->t, WM_TUN_OPEN_RESULT, 0, s->id, &ok, 1);
    return outer;
}

void wm_tun_stream_refuse(struct wm_tun_stream *s, uint8_t code, const char *reason)
{
    tun_send_code(s->t, WM_TUN_OPEN_RESULT, s->id, false, code, reason);
    tun_stream_close(s, false);
}

void wm_tun_stream_watch(struct wm_tun_stream *s, void (*gone)(void *arg), void *arg)
{
    s->gone = gone;
    s->arg = arg;
}

uint32_t wm_tun_stream_id(const struct wm_tun_stream *s)
{
    return s->id;
}

uint32_t wm_tun_stream_window(const struct wm_tun_stream *s)
{
    return s->win;
}

struct wm_tun *wm_tun_stream_tun(const struct wm_tun_stream *s)
{
    return s->t;
}


uint32_t wm_tun_tag(const char *name, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    }
    return h != 0 ? h : 1;
}

/* Reset one stream as an RST from the peer would, telling the peer too. */
static void reset_one(struct wm_tun_stream *s, const char *reason)
{
    struct wm_tun *t = s->t;
    wm_tun_open_cb cb = s->state == ST_OPENING ? s->cb : NULL;
    void (*gone)(void *) = s->state == ST_PENDING ? s->gone : NULL;
    void *arg = s->arg;

    tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, reason);
    if (s->ev != NULL) {
        s->why = "mapping-removed";
    }
    tun_stream_close(s, gone == NULL && cb == NULL);
    if (cb != NULL) {
        cb(NULL, WM_TUN_OPEN_NO_MAPPING, reason, arg);
    } else if (gone != NULL) {
        gone(arg);
    }
}

size_t wm_tun_reset_streams(struct wm_tun *t, bool (*keep)(uint32_t tag, void *arg), void *arg,
                            const char *reason)
{
    uint32_t *ids;
    size_t nids = 0;
    size_t n = 0;

    if (t->nstreams == 0) {
        return 0;
    }
    /* Ids first: a reset unlinks its stream, and its owner's callbacks
     * may open or end others meanwhile. */
    ids = malloc(t->nstreams * sizeof(*ids));
    if (ids == NULL) {
        return 0;
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct wm_tun_stream *s = t->buckets[i]; s != NULL && nids < t->nstreams;
             s = s->hnext) {
            if (s->tag != 0 && !keep(s->tag, arg)) {
                ids[nids++] = s->id;
            }
        }
    }
    tun_enter(t);
    for (size_t i = 0; i < nids && !tun_closed(t); i++) {
        struct wm_tun_stream *s = tun_stream_find(t, ids[i]);
        if (s != NULL) {
            reset_one(s, reason);
            n++;
        }
    }
    tun_leave(t);
    free(ids);
    return n;
}
