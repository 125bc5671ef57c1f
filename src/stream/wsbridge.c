/*
 * stream/wsbridge.c - the WebSocket <-> bytes pump (see wsbridge.h).
 *
 * Lifetime: the pump hangs on the connection (proto_data) and is freed
 * with it (st_ws_free from the connection's proto_free); every callback
 * runs between wm_conn_enter() and wm_conn_leave() and does nothing once
 * the connection is finished.
 */
#include "stream/wsbridge.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "net/conn.h"
#include "stream/ws.h"

#define WS_CHUNK (64 * 1024)   /* payload bytes moved (and framed) at once */
#define WS_CLOSE_MS 5000       /* the close handshake and final flush */
#define WS_HIGH WM_RELAY_HIGH_WATER

struct st_ws {
    struct wm_conn *c;
    struct bufferevent *ws;
    struct bufferevent *raw;
    bool server;       /* our role on the WebSocket side */
    bool client_is_ws;
    struct wm_ws_dec dec;
    bool in_frame;     /* f's payload is being read */
    struct wm_ws_frame f;
    uint64_t left;     /* payload bytes of f still to come */
    uint64_t off;      /* payload bytes of f done (mask offset) */
    bool close_sent;
    bool close_rcvd;
    uint16_t peer_code;  /* the peer's close code, echoed when the stream side ends */
    bool shut_pending;   /* the stream side gets EOF once its output is flushed */
    bool ending;       /* flushing the last bytes, then finish */
    bool ws_eof;       /* the WebSocket side's EOF (or error) was seen */
    bool ws_shut;      /* lingering: our FIN is out, the peer's input is dropped */
    const char *reason;
    uint64_t ws_bytes; /* payload read from the WebSocket side */
    uint64_t raw_bytes; /* bytes read from the stream side */
    uint64_t last_ms;
    int idle_ms;
    struct event *timer;
};

static __thread uint8_t scratch[WM_WS_HDR_MAX + WS_CHUNK];

void st_ws_free(void *arg)
{
    struct st_ws *p = arg;

    if (p == NULL) {
        return;
    }
    if (p->timer != NULL) {
        event_free(p->timer);
    }
    wm_bev_free(p->ws);
    wm_bev_free(p->raw);
    free(p);
}

static void end(struct st_ws *p, const char *reason)
{
    struct wm_conn *c = p->c;

    bufferevent_setcb(p->ws, NULL, NULL, NULL, NULL);
    bufferevent_setcb(p->raw, NULL, NULL, NULL, NULL);
    bufferevent_disable(p->ws, EV_READ | EV_WRITE);
    bufferevent_disable(p->raw, EV_READ | EV_WRITE);
    if (p->timer != NULL) {
        event_del(p->timer);
    }
    c->bytes_in = p->client_is_ws ? p->ws_bytes : p->raw_bytes;
    c->bytes_out = p->client_is_ws ? p->raw_bytes : p->ws_bytes;
    wm_conn_finish(c, reason);
}

/* The WebSocket peer sends nothing more (its close frame, EOF or error). */
static bool ws_peer_done(const struct st_ws *p)
{
    return p->close_rcvd || p->ws_eof;
}

static void arm(struct st_ws *p, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(p->timer, &tv);
}

/* Both outputs flushed while ending: finish, or when the WebSocket peer may
 * still be sending (we closed first, e.g. on its protocol error), half-close
 * and drop what it sends until its EOF or the closing bound. Closing a socket
 * with unread input resets it, and the peer's kernel would throw our close
 * frame away (nginx's lingering close). */
static void check_done(struct st_ws *p)
{
    if (!p->ending || p->ws_shut || evbuffer_get_length(bufferevent_get_output(p->ws)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(p->raw)) > 0) {
        return;
    }
    if (ws_peer_done(p)) {
        end(p, p->reason);
        return;
    }
    p->ws_shut = true;
    bufferevent_disable(p->ws, EV_WRITE);
    wm_bev_shutdown_write(p->ws);
}

/* Stop reading; finish once both outputs are flushed (bounded). */
static void closing(struct st_ws *p, const char *reason)
{
    if (p->ending) {
        return;
    }
    p->ending = true;
    p->reason = reason;
    if (ws_peer_done(p)) {
        bufferevent_disable(p->ws, EV_READ);
    } else {
        bufferevent_setwatermark(p->ws, EV_READ, 0, 0); /* ws_read_cb drops what comes */
        bufferevent_enable(p->ws, EV_READ);
    }
    bufferevent_disable(p->raw, EV_READ);
    bufferevent_setwatermark(p->ws, EV_WRITE, 0, 0); /* write_cb once flushed */
    bufferevent_setwatermark(p->raw, EV_WRITE, 0, 0);
    arm(p, WS_CLOSE_MS);
    check_done(p);
}

/* One frame to the WebSocket side, masked when we are its client. */
static void send_frame(struct st_ws *p, uint8_t op, const uint8_t *data, size_t n)
{
    uint8_t hdr[WM_WS_HDR_MAX];
    uint8_t mask[4];
    uint8_t buf[WM_WS_CONTROL_MAX];
    struct evbuffer *out = bufferevent_get_output(p->ws);
    uint64_t r = wm_random_u64();

    memcpy(mask, &r, 4);
    evbuffer_add(out, hdr, wm_ws_header(hdr, true, op, n, p->server ? NULL : mask));
    if (n > 0) {
        memcpy(buf, data, n);
        if (!p->server) {
            wm_ws_mask(buf, n, mask, 0);
        }
        evbuffer_add(out, buf, n);
    }
}

static void send_close(struct st_ws *p, uint16_t code)
{
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};

    if (!p->close_sent) {
        p->close_sent = true;
        send_frame(p, WM_WS_OP_CLOSE, b, code == WM_WS_CLOSE_NO_STATUS ? 0 : 2);
    }
}

static void protocol_error(struct st_ws *p, uint16_t code, const char *why)
{
    wm_log(WM_LOG_INFO, p->c->id, "websocket peer broke the protocol: %s (close %u)", why, code);
    send_close(p, code);
    closing(p, "ws-protocol-error");
}

static void shut_raw(struct st_ws *p)
{
    if (p->shut_pending && evbuffer_get_length(bufferevent_get_output(p->raw)) == 0) {
        p->shut_pending = false;
        wm_bev_shutdown_write(p->raw);
    }
}

/* A whole control frame's payload (unmasked) has arrived. */
static void control(struct st_ws *p, const uint8_t *d, size_t n)
{
    uint16_t code;

    if (p->f.op == WM_WS_OP_PING) {
        if (!p->close_sent) {
            send_frame(p, WM_WS_OP_PONG, d, n);
        }
    } else if (p->f.op == WM_WS_OP_CLOSE) {
        p->close_rcvd = true;
        if (wm_ws_close_parse(d, n, &code) < 0) {
            protocol_error(p, code, "bad close frame");
            return;
        }
        if (p->close_sent) {
            closing(p, "ws-close");
            return;
        }
        /* The peer is done sending: the stream side gets EOF, and what it
         * still answers goes out before our close echo (5.5.1 allows the
         * delay), so a bridge keeps TCP half-close semantics. */
        p->peer_code = code;
        p->shut_pending = true;
        bufferevent_setwatermark(p->raw, EV_WRITE, 0, 0);
        shut_raw(p);
    }
}

/* Read the next frame header from in. 1: have one, 0: need more, -1: c ended. */
static int next_header(struct st_ws *p, struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    size_t take = n < WM_WS_HDR_MAX ? n : WM_WS_HDR_MAX;
    uint16_t code = 0;
    int r = wm_ws_dec_header(&p->dec, evbuffer_pullup(in, (ssize_t)take), take, &p->f, &code);

    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        protocol_error(p, code, code == WM_WS_CLOSE_TOO_BIG ? "message over the size limit"
                                                            : "bad frame header");
        return -1;
    }
    if (p->f.op == WM_WS_OP_TEXT) {
        protocol_error(p, WM_WS_CLOSE_UNSUPPORTED, "text message (binary only)");
        return -1;
    }
    evbuffer_drain(in, (size_t)r);
    p->in_frame = true;
    p->left = p->f.len;
    p->off = 0;
    return 1;
}

/* Move payload of the current data frame to the stream side. */
static void data_bytes(struct st_ws *p, struct evbuffer *in)
{
    size_t k = evbuffer_get_length(in);
    struct evbuffer *out = bufferevent_get_output(p->raw);

    k = k < p->left ? k : (size_t)p->left;
    k = k < WS_CHUNK ? k : WS_CHUNK;
    if (p->close_rcvd) {
        /* data after the peer's close frame (5.5.1 forbids it): the stream
         * side has had its EOF, a write now would fail it and lose what it
         * still answers */
        evbuffer_drain(in, k);
    } else if (p->f.masked) {
        evbuffer_remove(in, scratch, k);
        wm_ws_mask(scratch, k, p->f.mask, p->off);
        evbuffer_add(out, scratch, k);
        p->ws_bytes += k;
    } else {
        evbuffer_remove_buffer(in, out, k);
        p->ws_bytes += k;
    }
    p->left -= k;
    p->off += k;
}

static void ws_pump(struct st_ws *p)
{
    struct evbuffer *in = bufferevent_get_input(p->ws);
    struct evbuffer *rout = bufferevent_get_output(p->raw);

    while (!p->ending) {
        if (!p->in_frame && next_header(p, in) <= 0) {
            return;
        }
        if (p->f.op >= 0x8) {
            if (evbuffer_get_length(in) < p->left) {
                return; /* control payloads (<= 125 bytes) are taken whole */
            }
            if (evbuffer_get_length(bufferevent_get_output(p->ws)) >= WS_HIGH) {
                /* our pongs would pile up for a peer that pings and does
                 * not read: read it no more until it does (ws write_cb) */
                bufferevent_disable(p->ws, EV_READ);
                return;
            }
            evbuffer_remove(in, scratch, (size_t)p->left);
            if (p->f.masked) {
                wm_ws_mask(scratch, (size_t)p->left, p->f.mask, 0);
            }
            p->in_frame = false;
            control(p, scratch, (size_t)p->left);
            continue;
        }
        if (p->left > 0 && evbuffer_get_length(in) == 0) {
            return;
        }
        if (evbuffer_get_length(rout) >= WS_HIGH) {
            bufferevent_disable(p->ws, EV_READ); /* raw_write_cb resumes */
            return;
        }
        if (p->left > 0) {
            data_bytes(p, in);
        }
        if (p->left == 0) {
            p->in_frame = false;
        }
    }
}

/* Frame what the stream side sent, WS_CHUNK bytes per binary frame. */
static void raw_pump(struct st_ws *p)
{
    struct evbuffer *in = bufferevent_get_input(p->raw);
    struct evbuffer *out = bufferevent_get_output(p->ws);
    size_t n;

    while (!p->ending && (n = evbuffer_get_length(in)) > 0) {
        uint8_t mask[4];
        uint64_t r = wm_random_u64();
        if (evbuffer_get_length(out) >= WS_HIGH) {
            bufferevent_disable(p->raw, EV_READ); /* ws_write_cb resumes */
            return;
        }
        n = n < WS_CHUNK ? n : WS_CHUNK;
        memcpy(mask, &r, 4);
        size_t h = wm_ws_header(scratch, true, WM_WS_OP_BINARY, n, p->server ? NULL : mask);
        if (p->server) {
            evbuffer_add(out, scratch, h);
            evbuffer_remove_buffer(in, out, n);
        } else {
            evbuffer_remove(in, scratch + h, n);
            wm_ws_mask(scratch + h, n, mask, 0);
            evbuffer_add(out, scratch, h + n);
        }
        p->raw_bytes += n;
    }
}

static void ws_read_cb(struct bufferevent *bev, void *arg)
{
    struct st_ws *p = arg;

    wm_conn_enter(p->c);
    if (wm_conn_closed(p->c)) {
        /* nothing */
    } else if (p->ending) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in)); /* closing: what still comes is dropped */
    } else {
        p->last_ms = wm_now_coarse_ms();
        ws_pump(p);
    }
    wm_conn_leave(p->c);
}

static void raw_read_cb(struct bufferevent *bev, void *arg)
{
    struct st_ws *p = arg;

    (void)bev;
    wm_conn_enter(p->c);
    if (!wm_conn_closed(p->c)) {
        p->last_ms = wm_now_coarse_ms();
        raw_pump(p);
    }
    wm_conn_leave(p->c);
}

/* An output drained below the low mark: resume the other side. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    struct st_ws *p = arg;

    wm_conn_enter(p->c);
    if (!wm_conn_closed(p->c)) {
        if (p->ending) {
            check_done(p);
        } else if (bev == p->raw && p->shut_pending) {
            shut_raw(p);
        } else if (bev == p->raw) {
            bufferevent_enable(p->ws, EV_READ);
            ws_pump(p);
        } else {
            bufferevent_enable(p->raw, EV_READ);
            raw_pump(p);
            bufferevent_enable(p->ws, EV_READ); /* a ping waiting on this output */
            ws_pump(p);
        }
    }
    wm_conn_leave(p->c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct st_ws *p = arg;
    bool eof = (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR);

    wm_conn_enter(p->c);
    if (wm_conn_closed(p->c)) {
        wm_conn_leave(p->c);
        return;
    }
    if (bev == p->raw) {
        if (eof && !p->ending) {
            raw_pump(p); /* what it sent before the EOF */
        }
        if (!eof) {
            send_close(p, WM_WS_CLOSE_GOING_AWAY);
            closing(p, "stream-error");
        } else if (p->close_rcvd) {
            send_close(p, p->peer_code); /* the delayed echo */
            closing(p, "closed");
        } else {
            send_close(p, WM_WS_CLOSE_NORMAL); /* then await the peer's close */
        }
    } else {
        p->ws_eof = true;
        if (p->ending && eof && !p->ws_shut) {
            check_done(p); /* its EOF while ours still flushes */
        } else if (p->ending) {
            end(p, p->reason); /* gone, or the lingering close is over */
        } else if (eof) {
            closing(p, p->close_rcvd ? "ws-close" : "ws-eof");
        } else {
            end(p, "ws-error");
        }
    }
    wm_conn_leave(p->c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct st_ws *p = arg;
    uint64_t now = wm_now_coarse_ms();

    (void)fd;
    (void)what;
    wm_conn_enter(p->c);
    if (wm_conn_closed(p->c)) {
        /* nothing */
    } else if (p->ending) {
        end(p, p->reason);
    } else if (now - p->last_ms >= (uint64_t)p->idle_ms) {
        send_close(p, WM_WS_CLOSE_GOING_AWAY);
        closing(p, "idle");
    } else {
        arm(p, (int)((uint64_t)p->idle_ms - (now - p->last_ms)));
    }
    wm_conn_leave(p->c);
}

void st_ws_start(struct wm_conn *c, struct bufferevent *up, bool client_is_ws, uint64_t max_message,
                 int idle_ms)
{
    struct st_ws *p = calloc(1, sizeof(*p));

    if (p == NULL || (p->timer = evtimer_new(wm_worker_base(c->w), timer_cb, p)) == NULL) {
        free(p);
        wm_bev_free(up);
        wm_conn_finish(c, "out-of-memory");
        return;
    }
    p->c = c;
    p->client_is_ws = client_is_ws;
    p->server = client_is_ws;
    p->ws = client_is_ws ? c->bev : up;
    p->raw = client_is_ws ? up : c->bev;
    c->bev = NULL;
    c->proto_data = p;
    p->dec.server = p->server;
    p->dec.max = max_message;
    p->idle_ms = idle_ms > 0 ? idle_ms : 600000;
    p->last_ms = wm_now_coarse_ms();
    wm_conn_clear_timer(c);
    arm(p, p->idle_ms);
    for (int i = 0; i < 2; i++) {
        struct bufferevent *b = i ? p->raw : p->ws;
        bufferevent_setcb(b, i ? raw_read_cb : ws_read_cb, write_cb, event_cb, p);
        bufferevent_setwatermark(b, EV_READ, 0, WS_HIGH);
        bufferevent_setwatermark(b, EV_WRITE, WS_HIGH / 2, 0);
        bufferevent_enable(b, EV_READ | EV_WRITE);
    }
    ws_pump(p); /* bytes that arrived with the handshake */
    raw_pump(p);
}
