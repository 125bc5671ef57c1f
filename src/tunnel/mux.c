/*
 * tunnel/mux.c - carrier I/O, frame dispatch, flow control and the fair
 * writer. The handshake lives in mux_hs.c, stream objects and the pair
 * endpoint in mux_stream.c, socket-attached streams in mux_sock.c.
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
#define SWEEP_MS 1000

static void tun_finalize(struct wm_tun *t);

/* ---- small helpers ---- */

static uint64_t now_ms(void)
{
    return wm_now_ms();
}

static size_t bucket_of(const struct wm_tun *t, uint32_t id)
{
    return (size_t)((id * 2654435761u) & (t->nbuckets - 1));
}

static struct wm_tun_stream *stream_find(struct wm_tun *t, uint32_t id)
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

    if (t->dead || t->bev == NULL) {
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
bool tun_stream_maybe_done(struct wm_tun_stream *s)
{
    if (s->fin_sent && s->remote_fin && (s->ev == NULL || s->wr_shut)) {
        tun_stream_free(s, false);
        return true;
    }
    return false;
}

static void pump(struct wm_tun *t)
{
    struct evbuffer *out;
    size_t budget;

    if (t->dead || t->state != TUN_READY) {
        return;
    }
    out = bufferevent_get_output(t->bev);
    if (evbuffer_get_length(out) >= CARRIER_HIGH_WATER) {
        return; /* the write callback calls us again */
    }
    (void)budget;
    while (t->ready != NULL && evbuffer_get_length(out) < CARRIER_HIGH_WATER) {
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

void tun_pump_now(struct wm_tun *t)
{
    t->busy++;
    pump(t);
    tun_leave(t);
}

void tun_leave(struct wm_tun *t)
{
    t->busy--;
    if (t->dead && t->busy == 0) {
        tun_finalize(t);
    }
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tun_pump_now(arg);
}

void tun_pump_schedule(struct wm_tun *t)
{
    if (!t->dead && t->pump_ev != NULL) {
        event_active(t->pump_ev, EV_TIMEOUT, 0);
    }
}

/* ---- receiving ---- */

static void on_open(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_open o;
    bool theirs = (h->sid & 1) == (t->role == WM_TUN_ROLE_SERVER ? 1u : 0u);

    if (!theirs || stream_find(t, h->sid) != NULL) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "OPEN with a bad or reused stream id %u", h->sid);
        return;
    }
    if (wm_tun_open_decode(p, h->len, &o) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed OPEN");
        return;
    }
    if (t->nstreams >= WM_TUN_MAX_STREAMS) {
        tun_send_code(t, WM_TUN_OPEN_RESULT, h->sid, false, WM_TUN_OPEN_LIMIT, "too many streams");
        return;
    }
    struct wm_tun_stream *s = tun_stream_new(t, h->sid, ST_PENDING);
    if (s == NULL) {
        tun_send_code(t, WM_TUN_OPEN_RESULT, h->sid, false, WM_TUN_OPEN_LIMIT, "out of memory");
        return;
    }
    if (t->cbs.open != NULL) {
        t->cbs.open(t, s, &o, t->arg);
    } else {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "streams not accepted here");
    }
}

static void on_open_result(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_stream *s = stream_find(t, h->sid);
    uint32_t code;
    struct wm_tun_str reason;
    char r[256];

    if (s == NULL) {
        return; /* cancelled meanwhile */
    }
    if (s->state != ST_OPENING || wm_tun_code_decode(p, h->len, false, &code, &reason) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "unexpected OPEN_RESULT on stream %u", h->sid);
        return;
    }
    wm_tun_open_cb cb = s->cb;
    void *arg = s->arg;
    s->cb = NULL;
    if (code != WM_TUN_OPEN_OK) {
        wm_tun_str_copy(r, sizeof(r), reason);
        tun_stream_free(s, false);
        cb(NULL, (uint8_t)code, r[0] ? r : wm_tun_open_code_str((uint8_t)code), arg);
        return;
    }
    if (s->fd >= 0) {
        if (tun_sock_attach(s, s->fd, s->idle_ms, s->end, arg) < 0) {
            s->fd = -1; /* still the caller's */
            tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "out of memory");
            tun_stream_free(s, false);
            cb(NULL, WM_TUN_OPEN_LIMIT, "out of memory", arg);
            return;
        }
        cb(NULL, WM_TUN_OPEN_OK, "ok", arg);
        return;
    }
    struct bufferevent *outer = tun_stream_attach(s);
    if (outer == NULL) {
        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "out of memory");
        tun_stream_free(s, false);
        cb(NULL, WM_TUN_OPEN_LIMIT, "out of memory", arg);
        return;
    }
    cb(outer, WM_TUN_OPEN_OK, "ok", arg);
}

static void on_data(struct wm_tun *t, const struct wm_tun_hdr *h, struct evbuffer *in)
{
    struct wm_tun_stream *s = stream_find(t, h->sid);

    if (s == NULL || s->state != ST_OPEN) {
        /* A stream we already reset: its frames in flight are dropped. */
        evbuffer_drain(in, h->len);
        if (s != NULL) {
            tun_fail(t, WM_TUN_ERR_PROTOCOL, "DATA before the stream was open");
        }
        return;
    }
    if (s->remote_fin) {
        evbuffer_drain(in, h->len);
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "DATA after FIN on stream %u", h->sid);
        return;
    }
    if (h->len > s->recv_avail) {
        evbuffer_drain(in, h->len);
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "stream %u sent %u bytes beyond its window", h->sid,
                 h->len - s->recv_avail);
        return;
    }
    if (s->inner == NULL) {
        s->recv_avail -= h->len;
        tun_sock_data(s, in, h->len, (h->flags & WM_TUN_FLAG_FIN) != 0);
        return;
    }
    if (bufferevent_pair_get_partner(s->inner) == NULL) {
        /* Nobody reads any more: stop the sender. */
        evbuffer_drain(in, h->len);
        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE, "endpoint closed");
        tun_stream_free(s, false);
        return;
    }
    s->recv_avail -= h->len;
    if (h->len > 0) {
        evbuffer_remove_buffer(in, bufferevent_get_output(s->inner), h->len);
    }
    if (h->flags & WM_TUN_FLAG_FIN) {
        s->remote_fin = true;
        /* Delivers what is buffered, then EOF, to the local endpoint. */
        bufferevent_flush(s->inner, EV_WRITE, BEV_FINISHED);
        tun_stream_maybe_done(s);
    }
}

static void on_window(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_stream *s = stream_find(t, h->sid);
    uint32_t inc = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];

    if (s == NULL) {
        return;
    }
    if (inc == 0 || (uint64_t)s->send_window + inc > 0x7fffffffu) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "bad WINDOW_UPDATE on stream %u", h->sid);
        return;
    }
    s->send_window += inc;
    if (s->ev != NULL) {
        tun_sock_kick(s);
        return;
    }
    if (s->state == ST_OPEN && tun_stream_has_output(s)) {
        tun_ready_push(t, s);
        tun_pump_schedule(t);
    }
}

static void on_rst(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_stream *s = stream_find(t, h->sid);
    uint32_t code;
    struct wm_tun_str reason;

    if (s == NULL) {
        return;
    }
    if (wm_tun_code_decode(p, h->len, true, &code, &reason) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed RST");
        return;
    }
    if (s->state == ST_OPENING) {
        wm_tun_open_cb cb = s->cb;
        void *arg = s->arg;
        tun_stream_free(s, false);
        if (cb != NULL) {
            cb(NULL, WM_TUN_OPEN_REFUSED, "reset by peer", arg);
        }
        return;
    }
    if (s->state == ST_PENDING) {
        void (*gone)(void *) = s->gone;
        void *arg = s->arg;
        tun_stream_free(s, false);
        if (gone != NULL) {
            gone(arg);
        }
        return;
    }
    tun_stream_free(s, true);
}

/* One complete frame whose header was already removed; for DATA the
 * payload is still at the front of `in`. */
static void dispatch(struct wm_tun *t, const struct wm_tun_hdr *h, struct evbuffer *in)
{
    uint8_t p[WM_TUN_MAX_PAYLOAD];

    if (h->type == WM_TUN_DATA && t->state == TUN_READY) {
        on_data(t, h, in);
        return;
    }
    evbuffer_remove(in, p, h->len);
    if (t->state < TUN_READY) {
        if (h->type == WM_TUN_GOAWAY) {
            uint32_t code;
            struct wm_tun_str reason;
            char r[256] = "";
            if (wm_tun_code_decode(p, h->len, true, &code, &reason) == 0) {
                wm_tun_str_copy(r, sizeof(r), reason);
            }
            tun_fail(t, WM_TUN_ERR_NONE, "refused by the peer: %s", r);
            return;
        }
        tun_hs_frame(t, h, p);
        return;
    }
    switch (h->type) {
    case WM_TUN_OPEN:
        on_open(t, h, p);
        break;
    case WM_TUN_OPEN_RESULT:
        on_open_result(t, h, p);
        break;
    case WM_TUN_WINDOW_UPDATE:
        on_window(t, h, p);
        break;
    case WM_TUN_RST:
        on_rst(t, h, p);
        break;
    case WM_TUN_PING:
        if (!(h->flags & WM_TUN_FLAG_ACK)) {
            tun_send_frame(t, WM_TUN_PING, WM_TUN_FLAG_ACK, 0, p, 8);
        }
        break;
    case WM_TUN_GOAWAY: {
        uint32_t code;
        struct wm_tun_str reason;
        char r[256] = "";
        if (wm_tun_code_decode(p, h->len, true, &code, &reason) == 0) {
            wm_tun_str_copy(r, sizeof(r), reason);
        }
        tun_fail(t, WM_TUN_ERR_NONE, "peer said goodbye: %s", r);
        break;
    }
    default:
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "%s frame after the handshake", wm_tun_type_name(h->type));
        break;
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
        t->state = TUN_HELLO;
    }
    while (!t->dead) {
        uint8_t hb[WM_TUN_HDR];
        struct wm_tun_hdr h;
        const char *why;

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
        dispatch(t, &h, in);
    }
}

static void carrier_read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_tun *t = arg;

    t->busy++;
    wm_bev_read_more(bev, CARRIER_MAX_IO); /* plain carriers: big reads */
    carrier_read(t);
    if (!t->dead) {
        tun_sock_flush_all(t);
    }
    t->busy--;
    if (t->dead && t->busy == 0) {
        tun_finalize(t);
    } else if (!t->dead) {
        pump(t);
    }
}

static void carrier_write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_tun *t = arg;

    (void)bev;
    if (t->state == TUN_CLOSING && evbuffer_get_length(bufferevent_get_output(t->bev)) == 0) {
        t->dead = true;
        if (t->busy == 0) {
            tun_finalize(t);
        }
        return;
    }
    t->busy++;
    pump(t);
    t->busy--;
    if (t->dead && t->busy == 0) {
        tun_finalize(t);
    }
}

static void carrier_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        return; /* TLS handshake done: nothing to do */
    }
    if (what & BEV_EVENT_EOF) {
        tun_fail(t, WM_TUN_ERR_NONE, "carrier closed by the peer");
    } else if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        /* A TLS carrier's reason was logged by its pump (net/tlspump.c). */
        tun_fail(t, WM_TUN_ERR_NONE, "carrier error: %s",
                 bufferevent_getfd(t->bev) >= 0 && err != 0 ? evutil_socket_error_to_string(err)
                                                            : "connection or TLS failure");
    }
    if (t->busy == 0 && t->dead) {
        tun_finalize(t);
    }
}

/* ---- life cycle ---- */

void tun_fail(struct wm_tun *t, uint32_t code, const char *fmt, ...)
{
    va_list ap;

    if (t->dead || t->state == TUN_CLOSING) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    if (code != WM_TUN_ERR_NONE) {
        tun_send_code(t, WM_TUN_GOAWAY, 0, true, code, t->why);
        /* Flush the GOAWAY, then close (bounded by the tick timer). */
        t->state = TUN_CLOSING;
        bufferevent_disable(t->bev, EV_READ);
        bufferevent_setwatermark(t->bev, EV_WRITE, 0, 0);
        if (evbuffer_get_length(bufferevent_get_output(t->bev)) > 0) {
            struct timeval tv = {2, 0};
            event_add(t->tick, &tv);
            return;
        }
    }
    t->dead = true;
}

void wm_tun_close(struct wm_tun *t, uint32_t code, const char *reason)
{
    tun_fail(t, code, "%s", reason);
    if (t->dead && t->busy == 0) {
        tun_finalize(t);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun *t = arg;
    uint64_t now = now_ms();
    uint8_t ping[8];

    (void)fd;
    (void)what;
    if (t->state == TUN_CLOSING) {
        t->dead = true; /* GOAWAY flush took too long */
        tun_finalize(t);
        return;
    }
    if (now - t->last_rx_ms >= (uint64_t)t->dead_ms) {
        tun_fail(t, WM_TUN_ERR_NONE, "no heartbeat for %d s", t->dead_ms / 1000);
        if (t->busy == 0) {
            tun_finalize(t);
        }
        return;
    }
    if (t->state == TUN_READY) {
        if (now - t->last_ping_ms >= (uint64_t)t->ping_ms) {
            t->last_ping_ms = now;
            for (int i = 0; i < 8; i++) {
                ping[i] = (uint8_t)(now >> (56 - 8 * i));
            }
            tun_send_frame(t, WM_TUN_PING, 0, 0, ping, sizeof(ping));
        }
        /* Sweep idle socket streams, and streams whose local endpoint was
         * freed without a word. */
        uint64_t coarse = wm_now_coarse_ms();
        for (size_t i = 0; i < t->nbuckets; i++) {
            for (struct wm_tun_stream *s = t->buckets[i], *n; s != NULL; s = n) {
                n = s->hnext;
                if (s->ev != NULL) {
                    if (tun_sock_idle(s, coarse)) {
                        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_TIMEOUT,
                                      "idle timeout");
                        s->why = "idle";
                        tun_stream_free(s, false);
                    }
                    continue;
                }
                if (s->state == ST_OPEN && s->inner != NULL &&
                    bufferevent_pair_get_partner(s->inner) == NULL && !s->local_eof) {
                    tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE,
                              "endpoint closed");
                    tun_stream_free(s, false);
                }
            }
        }
    }
    int every = t->ping_ms < SWEEP_MS ? t->ping_ms : SWEEP_MS;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    event_add(t->tick, &tv);
}

static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun *t = arg;

    (void)fd;
    (void)what;
    if (t->state < TUN_READY) {
        tun_fail(t, WM_TUN_ERR_TIMEOUT, "handshake not finished in time");
        if (t->dead && t->busy == 0) {
            tun_finalize(t);
        }
    }
}

void tun_set_ready(struct wm_tun *t)
{
    t->state = TUN_READY;
    event_del(t->hs_timer);
    if (t->cbs.ready != NULL) {
        t->cbs.ready(t, t->arg);
    }
}

static void tun_finalize(struct wm_tun *t)
{
    char why[sizeof(t->why)];

    if (t->busy > 0) {
        return;
    }
    t->busy = 1000; /* no second finalize from callbacks below */
    snprintf(why, sizeof(why), "%s", t->why[0] ? t->why : "closed");
    /* Reset every stream; their owners learn it from their callbacks. */
    for (size_t i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL) {
            struct wm_tun_stream *s = t->buckets[i];
            wm_tun_open_cb cb = s->state == ST_OPENING ? s->cb : NULL;
            void (*gone)(void *) = s->state == ST_PENDING ? s->gone : NULL;
            void *arg = s->arg;
            if (s->ev != NULL) {
                s->why = "carrier-closed";
            }
            tun_stream_free(s, true);
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
    t->peer_window = WM_TUN_WINDOW;
    t->ping_ms = conf->ping_ms > 0 ? conf->ping_ms : WM_TUN_PING_MS;
    t->dead_ms = conf->dead_ms > 0 ? conf->dead_ms : WM_TUN_DEAD_MS;
    t->next_id = conf->role == WM_TUN_ROLE_CLIENT ? 1 : 2;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->user = conf->user != NULL ? strdup(conf->user) : NULL;
    t->pass = conf->pass != NULL ? strdup(conf->pass) : NULL;
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
        t->busy = 0;
        t->why[0] = '\0';
        t->cbs.closed = NULL;
        tun_finalize(t);
        return NULL;
    }
    t->last_rx_ms = t->last_ping_ms = now_ms();
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
    if (!t->dead && t->state != TUN_CLOSING) {
        tun_send_code(t, WM_TUN_GOAWAY, 0, true, WM_TUN_ERR_SHUTDOWN, "shutting down");
    }
    snprintf(t->why, sizeof(t->why), "destroyed by its owner");
    t->dead = true;
    t->busy = 0;
    tun_finalize(t);
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
    return t->state == TUN_READY && !t->dead;
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

size_t wm_tun_nstreams(const struct wm_tun *t)
{
    return t->nstreams;
}
