/*
 * tunnel/mux.c - carrier I/O, the carrier's life cycle (states, guard,
 * heartbeat), flow control and the fair writer. Frames after the handshake
 * are handled in mux_recv.c, the handshake in mux_hs.c, stream objects and
 * the pair endpoint in mux_stream.c, socket-attached streams in
 * mux_sock.c.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/tlspump.h"
#include "tunnel/mux_int.h"

#define CARRIER_HIGH_WATER (256 * 1024) /* stop writing DATA above this */
#define CARRIER_MAX_IO (256 * 1024)
/* Stop reading frames while this much waits for the peer: a peer that
 * sends PINGs, OPENs or RSTs but reads none of our answers (a flood, or a
 * stuck reader) would make them pile up without bound. DATA stays under
 * CARRIER_HIGH_WATER (plus one socket turn), so only such a peer gets here. */
#define CARRIER_OUT_MAX (1024 * 1024)
#define SWEEP_MS 1000

/* ---- small helpers ---- */

static uint64_t now_ms(void)
{
    return wm_now_ms();
}

void tun_ready_remove(struct wm_tun *t, struct wm_tun_stream *s)
{
    if (!s->queued) {
        return;
    }
    if (s->rnext == s) {
        t->ready = NULL;
    } else {
        s->rprev->rnext = s->rnext;
        s->rnext->rprev = s->rprev;
        if (t->ready == s) {
            t->ready = s->rnext;
        }
    }
    s->queued = false;
    s->rnext = s->rprev = NULL;
}

void tun_ready_push(struct wm_tun *t, struct wm_tun_stream *s)
{
    if (s->queued) {
        return;
    }
    s->queued = true;
    if (t->ready == NULL) {
        s->rnext = s->rprev = s;
        t->ready = s;
    } else {
        /* at the tail, i.e. just before the head */
        s->rnext = t->ready;
        s->rprev = t->ready->rprev;
        t->ready->rprev->rnext = s;
        t->ready->rprev = s;
    }
}

/* ---- sending ---- */

void tun_send_frame(struct wm_tun *t, uint8_t type, uint8_t flags, uint32_t sid,
                    const uint8_t *payload, size_t len)
{
    uint8_t hdr[WM_TUN_HDR];
    struct evbuffer *out;

    if (tun_closed(t) || t->bev == NULL) {
        return;
    }
    out = bufferevent_get_output(t->bev);
    wm_tun_hdr_encode(hdr, (uint32_t)len, type, flags, sid);
    evbuffer_add(out, hdr, sizeof(hdr));
    if (len > 0) {
        evbuffer_add(out, payload, len);
    }
}

void tun_send_code(struct wm_tun *t, uint8_t type, uint32_t sid, bool wide, uint32_t code,
                   const char *reason)
{
    uint8_t buf[512];
    char r[400];

    snprintf(r, sizeof(r), "%s", reason != NULL ? reason : "");
    size_t n = wm_tun_code_encode(buf, sizeof(buf), wide, code, r);
    tun_send_frame(t, type, 0, sid, buf, n);
}

/* Write one DATA frame of s (header and payload contiguous, so a full frame
 * is exactly one TLS record). Returns bytes of payload sent. */
static size_t send_data(struct wm_tun *t, struct wm_tun_stream *s, struct evbuffer *src,
                        size_t n, bool fin)
{
    struct evbuffer *out = bufferevent_get_output(t->bev);
    struct evbuffer_iovec v;
    uint8_t hdr[WM_TUN_HDR];

    wm_tun_hdr_encode(hdr, (uint32_t)n, WM_TUN_DATA, fin ? WM_TUN_FLAG_FIN : 0, s->id);
    if (evbuffer_reserve_space(out, (ev_ssize_t)(WM_TUN_HDR + n), &v, 1) != 1 ||
        v.iov_len < WM_TUN_HDR + n) {
        /* fall back to two appends */
        evbuffer_add(out, hdr, WM_TUN_HDR);
        evbuffer_remove_buffer(src, out, n);
        return n;
    }
    memcpy(v.iov_base, hdr, WM_TUN_HDR);
    if (n > 0) {
        evbuffer_copyout(src, (char *)v.iov_base + WM_TUN_HDR, n);
        evbuffer_drain(src, n);
    }
    v.iov_len = WM_TUN_HDR + n;
    evbuffer_commit_space(out, &v, 1);
    return n;
}

bool tun_stream_has_output(struct wm_tun_stream *s)
{
    if (s->fin_sent) {
        return false;
    }
    if (s->inner == NULL) {
        return false; /* socket streams queue themselves when readable */
    }
    size_t avail = evbuffer_get_length(bufferevent_get_input(s->inner));

    if (avail > 0 && s->send_window > 0) {
        return true;
    }
    return avail == 0 && s->local_eof;
}

/* Drop a finished stream: both directions have FIN (and a socket stream
 * has passed its FIN on to the socket). */
void tun_stream_maybe_done(struct wm_tun_stream *s)
{
    if (s->fin_sent && s->remote_fin && (s->ev == NULL || s->wr_shut)) {
        tun_stream_close(s, false);
    }
}

static void pump(struct wm_tun *t)
{
    struct evbuffer *out;
    size_t budget;

    if (t->state != TUN_READY) {
        return;
    }
    out = bufferevent_get_output(t->bev);
    if (evbuffer_get_length(out) >= CARRIER_HIGH_WATER) {
        return; /* the write callback calls us again */
    }
    (void)budget;
    /* A stream's end callback may end t: then nothing more is sent. */
    while (t->state == TUN_READY && t->ready != NULL &&
           evbuffer_get_length(out) < CARRIER_HIGH_WATER) {
        struct wm_tun_stream *s = t->ready;
        tun_ready_remove(t, s);
        if (s->inner == NULL) {
            tun_sock_pump(t, s);
            continue;
        }
        struct evbuffer *src = bufferevent_get_input(s->inner);
        size_t avail = evbuffer_get_length(src);
        size_t n = avail;
        if (n > s->send_window) {
            n = s->send_window;
        }
        if (n > WM_TUN_MAX_PAYLOAD) {
            n = WM_TUN_MAX_PAYLOAD;
        }
        bool fin = s->local_eof && n == avail && !s->fin_sent;
        if (n == 0 && !fin) {
            continue;
        }
        send_data(t, s, src, n, fin);
        s->send_window -= (uint32_t)n;
        if (fin) {
            s->fin_sent = true;
            tun_stream_maybe_done(s);
            continue;
        }
        if (tun_stream_has_output(s)) {
            tun_ready_push(t, s); /* back of the line: fairness */
        }
    }
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)fd;
    (void)what;
    tun_enter(t);
    pump(t);
    tun_leave(t);
}

void tun_pump_schedule(struct wm_tun *t)
{
    if (!tun_closed(t) && t->pump_ev != NULL) {
        event_active(t->pump_ev, EV_TIMEOUT, 0);
    }
}

static void carrier_read(struct wm_tun *t)
{
    struct evbuffer *in = bufferevent_get_input(t->bev);

    t->last_rx_ms = now_ms();
    if (t->state == TUN_PREFACE && t->role == WM_TUN_ROLE_SERVER) {
        uint8_t pre[WM_TUN_PREFACE_LEN];
        if (evbuffer_get_length(in) < WM_TUN_PREFACE_LEN) {
            return;
        }
        evbuffer_remove(in, pre, sizeof(pre));
        if (memcmp(pre, WM_TUN_PREFACE, WM_TUN_PREFACE_LEN) != 0) {
            if (memcmp(pre, "WMTUN/", 6) == 0) {
                tun_fail(t, WM_TUN_ERR_VERSION, "unsupported protocol version \"%.1s\"", pre + 6);
            } else if (pre[0] == 0x16 && pre[1] == 0x03) {
                tun_fail(t, WM_TUN_ERR_PROTOCOL, "TLS client on a plain-TCP tunnel port");
            } else {
                tun_fail(t, WM_TUN_ERR_PROTOCOL, "not a wmproxy tunnel client");
            }
            return;
        }
        tun_set_state(t, TUN_HELLO);
    }
    /* After our GOAWAY (TUN_CLOSING) the rest of the input is not read. */
    while (t->state < TUN_CLOSING) {
        uint8_t hb[WM_TUN_HDR];
        struct wm_tun_hdr h;
        const char *why;

        if (evbuffer_get_length(bufferevent_get_output(t->bev)) >= CARRIER_OUT_MAX) {
            /* The write callback resumes once the peer read most of it. */
            t->rd_paused = true;
            bufferevent_disable(t->bev, EV_READ);
            wm_log(WM_LOG_DEBUG, t->id, "tunnel: the peer does not read, %zu bytes queued: "
                   "its frames wait", evbuffer_get_length(bufferevent_get_output(t->bev)));
            return;
        }
        if (evbuffer_copyout(in, hb, sizeof(hb)) < (ev_ssize_t)sizeof(hb)) {
            return;
        }
        if (wm_tun_hdr_decode(hb, &h) < 0) {
            tun_fail(t, WM_TUN_ERR_PROTOCOL, "bad frame header (length %u or reserved bit)",
                     (unsigned)((hb[0] << 16) | (hb[1] << 8) | hb[2]));
            return;
        }
        if ((why = wm_tun_hdr_check(&h)) != NULL) {
            tun_fail(t, WM_TUN_ERR_PROTOCOL, "%s (type 0x%02x, stream %u)", why, h.type, h.sid);
            return;
        }
        if (evbuffer_get_length(in) < WM_TUN_HDR + h.len) {
            return;
        }
        evbuffer_drain(in, WM_TUN_HDR);
        tun_dispatch(t, &h, in);
    }
}

static void carrier_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_tun *t = arg;

    tun_enter(t);
    wm_bev_read_more(bev, CARRIER_MAX_IO); /* plain carriers: big reads */
    carrier_read(t);
    if (!tun_closed(t)) {
        tun_sock_flush_all(t);
    }
    if (!tun_closed(t)) {
        pump(t);
    }
    tun_leave(t);
}

static void carrier_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_tun *t = arg;

    (void)bev;
    tun_enter(t);
    if (t->state == TUN_CLOSING && evbuffer_get_length(bufferevent_get_output(t->bev)) == 0) {
        tun_end(t); /* our GOAWAY is out */
    } else if (t->rd_paused && t->state < TUN_CLOSING) {
        /* Below the low mark: the frames that waited (the read callback
         * only comes for new bytes), then the carrier's reads again. */
        t->rd_paused = false;
        bufferevent_enable(t->bev, EV_READ);
        carrier_read_cb(t->bev, t);
    } else {
        pump(t);
    }
    tun_leave(t);
}

static void carrier_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        return; /* TLS handshake done: nothing to do */
    }
    tun_enter(t);
    if (what & BEV_EVENT_EOF) {
        tun_fail(t, WM_TUN_ERR_NONE, "carrier closed by the peer");
    } else if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        /* A TLS carrier's reason was logged by its pump (net/tlspump.c:
         * a warning for a failed handshake or a refusal right after it). */
        tun_fail(t, WM_TUN_ERR_NONE, "carrier error: %s",
                 bufferevent_getfd(t->bev) >= 0 && err != 0 ? evutil_socket_error_to_string(err)
                                                            : "connection or TLS failure");
    }
    tun_leave(t);
}

/* Carrier byte counters: what the socket (or TLS pump) took from our
 * output, and what arrived in our input. */
static void count_out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct wm_tun *t = arg;

    (void)b;
    t->counters.bytes_out += info->n_deleted;
}

static void count_in_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct wm_tun *t = arg;

    (void)b;
    t->counters.bytes_in += info->n_added;
}

void wm_tun_get_counters(const struct wm_tun *t, struct wm_tun_counters *out)
{
    *out = t->counters;
}

/* ---- life cycle ---- */

void tun_fail(struct wm_tun *t, uint32_t code, const char *fmt, ...)
{
    va_list ap;

    if (t->state >= TUN_CLOSING) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    if (code != WM_TUN_ERR_NONE) {
        tun_send_code(t, WM_TUN_GOAWAY, 0, true, code, t->why);
        /* Flush the GOAWAY, then close (bounded by the tick timer). */
        tun_set_state(t, TUN_CLOSING);
        bufferevent_disable(t->bev, EV_READ);
        bufferevent_setwatermark(t->bev, EV_WRITE, 0, 0);
        if (evbuffer_get_length(bufferevent_get_output(t->bev)) > 0) {
            struct timeval tv = {2, 0};
            event_add(t->tick, &tv);
            return;
        }
    }
    tun_end(t);
}

void wm_tun_close(struct wm_tun *t, uint32_t code, const char *reason)
{
    tun_enter(t);
    tun_fail(t, code, "%s", reason);
    tun_leave(t);
}

/* Heartbeat: PING every ping_ms, declare the peer dead after dead_ms of
 * silence. */
static void heartbeat(struct wm_tun *t, uint64_t now)
{
    uint8_t ping[8];

    if (now - t->last_rx_ms >= (uint64_t)t->dead_ms) {
        if (t->rd_paused) {
            tun_fail(t, WM_TUN_ERR_NONE, "the peer stopped reading: %zu bytes queued to it, its "
                     "frames unread for %d s",
                     evbuffer_get_length(bufferevent_get_output(t->bev)), t->dead_ms / 1000);
        } else {
            tun_fail(t, WM_TUN_ERR_NONE, "no heartbeat for %d s", t->dead_ms / 1000);
        }
        return;
    }
    if (t->state == TUN_READY && now - t->last_ping_ms >= (uint64_t)t->ping_ms) {
        t->last_ping_ms = now;
        for (int i = 0; i < 8; i++) {
            ping[i] = (uint8_t)(now >> (56 - 8 * i));
        }
        tun_send_frame(t, WM_TUN_PING, 0, 0, ping, sizeof(ping));
    }
}

/* Our OPENs the peer has not answered in open_ms (a stuck or hostile
 * peer: the visitor would wait as long as the carrier lives): reset, the
 * opener told "timeout" (504, or a closed connection). ids were collected
 * by the sweep: the openers' callbacks may open or end other streams. */
static void expire_opens(struct wm_tun *t, const uint32_t *ids, size_t n)
{
    char why[64];

    snprintf(why, sizeof(why), "no answer from the tunnel peer in %d s", t->open_ms / 1000);
    for (size_t i = 0; i < n && !tun_closed(t); i++) {
        struct wm_tun_stream *s = tun_stream_find(t, ids[i]);
        if (s == NULL || s->state != ST_OPENING) {
            continue;
        }
        wm_tun_open_cb cb = s->cb;
        void *arg = s->arg;
        wm_log(WM_LOG_INFO, t->id, "tunnel: stream %u: the peer did not answer its OPEN in "
               "%d s: reset", s->id, t->open_ms / 1000);
        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_TIMEOUT, why);
        tun_stream_close(s, false);
        if (cb != NULL) {
            cb(NULL, WM_TUN_OPEN_TIMEOUT, why, arg);
        }
    }
}

/* Reset idle socket streams, streams whose local endpoint was freed
 * without a word, and OPENs left unanswered. */
static void sweep(struct wm_tun *t)
{
    uint64_t coarse = wm_now_coarse_ms();
    uint32_t late[64];
    size_t nlate = 0;

    for (size_t i = 0; i < t->nbuckets && !tun_closed(t); i++) {
        for (struct wm_tun_stream *s = t->buckets[i], *n; s != NULL; s = n) {
            n = s->hnext;
            if (s->state == ST_OPENING) {
                /* the rest at the next sweep, a second later */
                if (coarse - s->open_sent_ms >= (uint64_t)t->open_ms && nlate < 64) {
                    late[nlate++] = s->id;
                }
                continue;
            }
            if (s->ev != NULL) {
                if (tun_sock_idle(s, coarse)) {
                    tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_TIMEOUT,
                                  "idle timeout");
                    s->why = "idle";
                    tun_stream_close(s, false);
                }
                continue;
            }
            if (s->reader_gone && coarse - s->gone_ms >= WM_TUN_LINGER_MS) {
                tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_TIMEOUT,
                              "endpoint closed, no FIN from the peer");
                tun_stream_close(s, false);
                continue;
            }
            if (s->state == ST_OPEN && s->inner != NULL &&
                bufferevent_pair_get_partner(s->inner) == NULL && !s->local_eof) {
                tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE,
                              "endpoint closed");
                tun_stream_close(s, false);
            }
        }
    }
    expire_opens(t, late, nlate);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)fd;
    (void)what;
    tun_enter(t);
    if (t->state == TUN_CLOSING) {
        tun_end(t); /* the GOAWAY flush took too long */
    } else {
        heartbeat(t, now_ms());
    }
    if (t->state == TUN_READY) {
        sweep(t);
    }
    if (!tun_closed(t) && t->state != TUN_CLOSING) {
        int every = t->ping_ms < SWEEP_MS ? t->ping_ms : SWEEP_MS;
        struct timeval tv = {every / 1000, (every % 1000) * 1000};
        event_add(t->tick, &tv);
    }
    tun_leave(t);
}

static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)fd;
    (void)what;
    tun_enter(t);
    if (t->refusing) {
        tun_hs_refuse_now(t); /* a refused AUTH, held back */
    } else if (t->state < TUN_READY) {
        tun_fail(t, WM_TUN_ERR_TIMEOUT, "handshake not finished in time");
    }
    tun_leave(t);
}

static const char *const tun_state_names[TUN_STATE_COUNT] = {
    "preface", "hello", "auth", "register", "ready", "closing", "closed",
};

void tun_set_state(struct wm_tun *t, enum tun_state st)
{
    if (t->state == st) {
        return;
    }
    wm_log(WM_LOG_DEBUG, t->id, "tunnel: carrier %s -> %s", tun_state_names[t->state],
           tun_state_names[st]);
    t->state = st;
}

void tun_set_ready(struct wm_tun *t)
{
    tun_set_state(t, TUN_READY);
    event_del(t->hs_timer);
    if (t->cbs.ready != NULL) {
        t->cbs.ready(t, t->arg);
    }
}

/* The one free of a carrier, from the last leave after tun_end(): reset
 * every stream (their owners learn it from their callbacks), tell the
 * owner, release. The guard is entered meanwhile because those callbacks
 * may call back into t (wm_tun_close, wm_tun_open_cancel, ...): being
 * closed, t starts nothing new, and their leaves cannot free it again. */
static void tun_finalize(struct wm_tun *t)
{
    char why[sizeof(t->why)];

    wm_guard_enter(&t->guard);
    snprintf(why, sizeof(why), "%s", t->why[0] ? t->why : "closed");
    for (size_t i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL) {
            struct wm_tun_stream *s = t->buckets[i];
            wm_tun_open_cb cb = s->state == ST_OPENING ? s->cb : NULL;
            void (*gone)(void *) = s->state == ST_PENDING ? s->gone : NULL;
            void *arg = s->arg;
            if (s->ev != NULL) {
                s->why = "carrier-closed";
            }
            tun_stream_close(s, true);
            if (cb != NULL) {
                cb(NULL, WM_TUN_OPEN_UNREACHABLE, "tunnel carrier closed", arg);
            } else if (gone != NULL) {
                gone(arg);
            }
        }
    }
    if (t->cbs.closed != NULL) {
        t->cbs.closed(t, why, t->arg);
    }
    if (t->bev != NULL) {
        evbuffer_remove_cb(bufferevent_get_output(t->bev), count_out_cb, t);
        evbuffer_remove_cb(bufferevent_get_input(t->bev), count_in_cb, t);
    }
    wm_bev_free(t->bev);
    event_free(t->tick);
    event_free(t->pump_ev);
    event_free(t->hs_timer);
    free(t->buckets);
    if (t->pass != NULL) {
        explicit_bzero(t->pass, strlen(t->pass));
    }
    free(t->user);
    free(t->pass);
    free(t->reg);
    free(t);
}

void tun_end(struct wm_tun *t)
{
    if (tun_closed(t)) {
        return;
    }
    tun_set_state(t, TUN_CLOSED);
    if (wm_guard_close(&t->guard)) {
        tun_finalize(t);
    }
}

void tun_leave(struct wm_tun *t)
{
    if (wm_guard_leave(&t->guard)) {
        tun_finalize(t);
    }
}

struct wm_tun *wm_tun_new(struct wm_worker *w, struct bufferevent *carrier,
                          const struct wm_tun_conf *conf, const struct wm_tun_cbs *cbs, void *arg,
                          uint64_t id)
{
    struct wm_tun *t = calloc(1, sizeof(*t));
    struct event_base *base = wm_worker_base(w);

    if (t == NULL) {
        bufferevent_free(carrier);
        return NULL;
    }
    t->w = w;
    t->id = id;
    t->bev = carrier;
    t->role = conf->role;
    t->cbs = *cbs;
    t->arg = arg;
    t->window = conf->window ? conf->window : WM_TUN_WINDOW;
    t->window_max = conf->window_max ? conf->window_max : WM_TUN_WINDOW_MAX;
    t->grow_budget = conf->grow_budget ? conf->grow_budget : WM_TUN_GROW_BUDGET;
    t->max_streams = conf->max_streams > 0 && conf->max_streams < WM_TUN_MAX_STREAMS
                         ? conf->max_streams
                         : WM_TUN_MAX_STREAMS;
    t->peer_window = WM_TUN_WINDOW;
    t->ping_ms = conf->ping_ms > 0 ? conf->ping_ms : WM_TUN_PING_MS;
    t->dead_ms = conf->dead_ms > 0 ? conf->dead_ms : WM_TUN_DEAD_MS;
    t->open_ms = conf->open_ms > 0 ? conf->open_ms : WM_TUN_OPEN_MS;
    t->next_id = conf->role == WM_TUN_ROLE_CLIENT ? 1 : 2;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->user = conf->user != NULL ? strdup(conf->user) : NULL;
    t->pass = conf->pass != NULL ? strdup(conf->pass) : NULL;
    t->auth_required = conf->require_auth;
    if (conf->name != NULL) {
        snprintf(t->peer_name, sizeof(t->peer_name), "%s", conf->name);
    }
    if (conf->reglen > 0) {
        t->reg = malloc(conf->reglen);
        if (t->reg != NULL) {
            memcpy(t->reg, conf->reg, conf->reglen);
            t->reglen = conf->reglen;
        }
    }
    t->tick = evtimer_new(base, tick_cb, t);
    t->pump_ev = event_new(base, -1, 0, pump_cb, t);
    t->hs_timer = evtimer_new(base, hs_timeout_cb, t);
    if (t->buckets == NULL || t->tick == NULL || t->pump_ev == NULL || t->hs_timer == NULL ||
        (conf->user != NULL && t->user == NULL) || (conf->pass != NULL && t->pass == NULL) ||
        (conf->reglen > 0 && t->reg == NULL)) {
        t->cbs.closed = NULL;
        tun_end(t); /* nobody inside yet: freed now */
        return NULL;
    }
    t->last_rx_ms = t->last_ping_ms = now_ms();
    t->rtt_ms = -1;
    evbuffer_add_cb(bufferevent_get_output(carrier), count_out_cb, t);
    evbuffer_add_cb(bufferevent_get_input(carrier), count_in_cb, t);
    bufferevent_setcb(carrier, carrier_read_cb, carrier_write_cb, carrier_event_cb, t);
    bufferevent_setwatermark(carrier, EV_WRITE, CARRIER_HIGH_WATER / 2, 0);
    bufferevent_set_max_single_read(carrier, CARRIER_MAX_IO);
    bufferevent_set_max_single_write(carrier, CARRIER_MAX_IO);
    bufferevent_enable(carrier, EV_READ | EV_WRITE);
    int hs = conf->handshake_ms > 0 ? conf->handshake_ms : WM_TUN_HANDSHAKE_MS;
    struct timeval tv = {hs / 1000, (hs % 1000) * 1000};
    evtimer_add(t->hs_timer, &tv);
    struct timeval tk = {1, 0};
    evtimer_add(t->tick, &tk);
    if (t->role == WM_TUN_ROLE_CLIENT) {
        tun_hs_start_client(t);
    }
    return t;
}

void wm_tun_destroy(struct wm_tun *t)
{
    memset(&t->cbs, 0, sizeof(t->cbs));
    t->arg = NULL;
    if (tun_closed(t)) {
        return; /* its free is already on the way */
    }
    if (t->state != TUN_CLOSING) {
        tun_send_code(t, WM_TUN_GOAWAY, 0, true, WM_TUN_ERR_SHUTDOWN, "shutting down");
    }
    snprintf(t->why, sizeof(t->why), "destroyed by its owner");
    tun_end(t);
}

void wm_tun_set_owner(struct wm_tun *t, const struct wm_tun_cbs *cbs, void *arg)
{
    if (cbs != NULL) {
        t->cbs = *cbs;
    } else {
        memset(&t->cbs, 0, sizeof(t->cbs));
    }
    t->arg = arg;
}

bool wm_tun_is_ready(const struct wm_tun *t)
{
    return t->state == TUN_READY;
}

bool wm_tun_was_refused(const struct wm_tun *t)
{
    return t->refused;
}

uint64_t wm_tun_id(const struct wm_tun *t)
{
    return t->id;
}

const char *wm_tun_peer_name(const struct wm_tun *t)
{
    return t->peer_name;
}

const char *wm_tun_transport(const struct wm_tun *t)
{
    const char *tr = wm_tls_pump_transport(t->bev);

    return tr != NULL ? tr : "plain";
}

/* Our PING came back: its payload is the time we sent it (heartbeat()). */
void tun_note_pong(struct wm_tun *t, const uint8_t *p)
{
    uint64_t sent = 0, now = now_ms();

    for (int i = 0; i < 8; i++) {
        sent = sent << 8 | p[i];
    }
    if (sent <= now && now - sent < 3600 * 1000) {
        t->rtt_ms = (int64_t)(now - sent);
    }
}

long long wm_tun_rtt_ms(const struct wm_tun *t)
{
    return t->rtt_ms;
}

size_t wm_tun_nstreams(const struct wm_tun *t)
{
    return t->nstreams;
}

void tun_limit_log(struct wm_tun *t, bool ours)
{
    uint64_t now = wm_now_coarse_ms();

    if (t->limit_log_ms[ours] != 0 && now - t->limit_log_ms[ours] < 10000) {
        t->limit_quiet[ours]++;
        return;
    }
    wm_log(WM_LOG_WARN, t->id,
           "tunnel: %zu streams open on the carrier (max_streams): %s refused "
           "(%llu more since the last such line)",
           t->nstreams, ours ? "a new stream" : "the peer's OPEN",
           (unsigned long long)t->limit_quiet[ours]);
    t->limit_log_ms[ours] = now;
    t->limit_quiet[ours] = 0;
}

const char *wm_tun_open_refusal(struct wm_tun *t)
{
    if (t->state != TUN_READY) {
        return "the carrier is down";
    }
    if (t->nstreams >= t->max_streams) {
        snprintf(t->refusal, sizeof(t->refusal), "%zu streams open on the carrier (max_streams)",
                 t->nstreams);
        return t->refusal;
    }
    if (t->next_id > 0x7ffffffdu) {
        return "the carrier's stream ids are used up";
    }
    return NULL;
}
