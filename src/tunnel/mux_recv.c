/*
 * tunnel/mux_recv.c - frames after the handshake (docs/tunnel.md
 * "Frames"): OPEN, OPEN_RESULT, DATA, WINDOW_UPDATE, RST, PING and GOAWAY.
 * Runs inside the carrier's read callback (mux.c carrier_read), so every
 * handler may end the carrier or a stream: t stays valid memory until that
 * callback's leave (core/guard.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "tunnel/mux_int.h"

static void on_open(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_open o;
    bool theirs = (h->sid & 1) == (t->role == WM_TUN_ROLE_SERVER ? 1u : 0u);

    if (!theirs || tun_stream_find(t, h->sid) != NULL) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "OPEN with a bad or reused stream id %u", h->sid);
        return;
    }
    if (wm_tun_open_decode(p, h->len, &o) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed OPEN on stream %u", h->sid);
        return;
    }
    if (t->nstreams >= t->max_streams) {
        tun_limit_log(t, false);
        tun_send_code(t, WM_TUN_OPEN_RESULT, h->sid, false, WM_TUN_OPEN_LIMIT,
                      "too many streams (max_streams)");
        return;
    }
    struct wm_tun_stream *s = tun_stream_new(t, h->sid, ST_PENDING);
    if (s == NULL) {
        tun_send_code(t, WM_TUN_OPEN_RESULT, h->sid, false, WM_TUN_OPEN_LIMIT, "out of memory");
        return;
    }
    if (o.kind == WM_TUN_OPEN_MAPPING) {
        s->tag = wm_tun_tag(o.name.p, o.name.n);
    }
    if (t->cbs.open != NULL) {
        t->cbs.open(t, s, &o, t->arg);
    } else {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "streams not accepted here");
    }
}

static void on_open_result(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_stream *s = tun_stream_find(t, h->sid);
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
        tun_stream_close(s, false);
        cb(NULL, (uint8_t)code, r[0] ? r : wm_tun_open_code_str((uint8_t)code), arg);
        return;
    }
    if (s->fd >= 0) {
        if (tun_sock_attach(s, s->fd, s->idle_ms, s->end, arg) < 0) {
            s->fd = -1; /* still the caller's */
            tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "out of memory");
            tun_stream_close(s, false);
            cb(NULL, WM_TUN_OPEN_LIMIT, "out of memory", arg);
            return;
        }
        cb(NULL, WM_TUN_OPEN_OK, "ok", arg);
        return;
    }
    struct bufferevent *outer = tun_stream_attach(s);
    if (outer == NULL) {
        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "out of memory");
        tun_stream_close(s, false);
        cb(NULL, WM_TUN_OPEN_LIMIT, "out of memory", arg);
        return;
    }
    cb(outer, WM_TUN_OPEN_OK, "ok", arg);
}

static void on_data(struct wm_tun *t, const struct wm_tun_hdr *h, struct evbuffer *in)
{
    struct wm_tun_stream *s = tun_stream_find(t, h->sid);

    if (s == NULL || s->state != ST_OPEN) {
        /* A stream we already reset: its frames in flight are dropped. */
        evbuffer_drain(in, h->len);
        if (s != NULL) {
            tun_fail(t, WM_TUN_ERR_PROTOCOL, "DATA on stream %u before it was open", h->sid);
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
    if (s->reader_gone) {
        /* The endpoint closed in order, its last bytes may still be on
         * their way out: drop what comes (credit returned, so the sender
         * never stalls on it) until the peer's FIN ends the stream, as a
         * lingering close does; a peer that keeps sending is reset. */
        s->recv_avail -= h->len;
        evbuffer_drain(in, h->len);
        s->dropped += h->len;
        tun_stream_consumed(s, h->len);
        if (s->dropped > WM_TUN_LINGER_DROP_MAX) {
            tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE, "endpoint closed");
            tun_stream_close(s, false);
        } else if (h->flags & WM_TUN_FLAG_FIN) {
            s->remote_fin = true;
            tun_stream_maybe_done(s);
        }
        return;
    }
    if (bufferevent_pair_get_partner(s->inner) == NULL) {
        /* Freed without an EOF: nobody reads any more, stop the sender. */
        evbuffer_drain(in, h->len);
        tun_send_code(t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE, "endpoint closed");
        tun_stream_close(s, false);
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
    struct wm_tun_stream *s = tun_stream_find(t, h->sid);
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
    struct wm_tun_stream *s = tun_stream_find(t, h->sid);
    uint32_t code;
    struct wm_tun_str reason;

    if (s == NULL) {
        return;
    }
    if (wm_tun_code_decode(p, h->len, true, &code, &reason) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed RST on stream %u", h->sid);
        return;
    }
    if (s->state == ST_OPENING) {
        wm_tun_open_cb cb = s->cb;
        void *arg = s->arg;
        tun_stream_close(s, false);
        if (cb != NULL) {
            cb(NULL, WM_TUN_OPEN_REFUSED, "reset by peer", arg);
        }
        return;
    }
    if (s->state == ST_PENDING) {
        void (*gone)(void *) = s->gone;
        void *arg = s->arg;
        tun_stream_close(s, false);
        if (gone != NULL) {
            gone(arg);
        }
        return;
    }
    tun_stream_close(s, true);
}

/* The peer ends the carrier (in the handshake: it refuses us); its reason
 * goes into our log line. A malformed reason is not worth another error. */
static void on_goaway(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    uint32_t code;
    struct wm_tun_str reason;
    char r[256] = "";

    if (wm_tun_code_decode(p, h->len, true, &code, &reason) == 0) {
        wm_tun_str_copy(r, sizeof(r), reason);
    }
    tun_fail(t, WM_TUN_ERR_NONE, "%s: %s",
             t->state < TUN_READY ? "refused by the peer" : "peer said goodbye", r);
}

/* One complete frame whose header was already removed; for DATA the
 * payload is still at the front of `in`. */
void tun_dispatch(struct wm_tun *t, const struct wm_tun_hdr *h, struct evbuffer *in)
{
    uint8_t p[WM_TUN_MAX_PAYLOAD];

    if (h->type == WM_TUN_DATA && t->state == TUN_READY) {
        on_data(t, h, in);
        return;
    }
    evbuffer_remove(in, p, h->len);
    if (h->type == WM_TUN_GOAWAY) {
        on_goaway(t, h, p);
        return;
    }
    if (t->state < TUN_READY) {
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
    case WM_TUN_REGISTER:
    case WM_TUN_REGISTER_RESULT:
        tun_hs_reregister_frame(t, h, p);
        break;
    case WM_TUN_PING:
        if (!(h->flags & WM_TUN_FLAG_ACK)) {
            tun_send_frame(t, WM_TUN_PING, WM_TUN_FLAG_ACK, 0, p, 8);
        } else {
            tun_note_pong(t, p);
        }
        break;
    default:
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "%s frame after the handshake", wm_tun_type_name(h->type));
        break;
    }
}
