/*
 * tunnel/mux_int.h - the carrier and stream records, shared by mux.c
 * (frames, streams, flow control) and mux_hs.c (handshake). Internal.
 */
#ifndef WM_TUNNEL_MUX_INT_H
#define WM_TUNNEL_MUX_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/guard.h"
#include "tunnel/mux.h"

struct event;
struct evbuffer;

/* A stream whose endpoint closed in order (reader_gone) waits for the
 * peer's FIN, dropping what the peer still sends: at most this many bytes
 * and this long, then it is reset (nginx's lingering close, bounded). */
#define WM_TUN_LINGER_DROP_MAX (1024 * 1024)
#define WM_TUN_LINGER_MS 30000

/* The carrier's protocol state; changes go through tun_set_state() (mux.c),
 * which logs them at debug level. The handshake states are in wire order:
 * `state < TUN_READY` means "still in the handshake". */
enum tun_state {
    TUN_PREFACE = 0,  /* server: await "WMTUN/1\n"; client: preface sent, await CHALLENGE */
    TUN_HELLO,        /* server: await HELLO */
    TUN_AUTH,         /* server: CHALLENGE sent, await AUTH; client: AUTH sent, await result */
    TUN_REGISTER,     /* server: await REGISTER; client: REGISTER sent, await result */
    TUN_READY,        /* streams may flow */
    TUN_CLOSING,      /* we sent GOAWAY: input ignored, await the flush (or the tick), then end */
    TUN_CLOSED,       /* over (tun_end): streams reset and memory freed at the last leave */
    TUN_STATE_COUNT
};

/* A stream's state; changes go through tun_stream_set_state() (mux_stream.c).
 * A stream that ends is closed (its guard), not put in a state: it is off
 * every list at once, its memory goes at its last leave. */
enum stream_state {
    ST_OPENING = 0, /* we sent OPEN, await OPEN_RESULT (cb set) */
    ST_PENDING,     /* the peer sent OPEN, await the owner's accept/refuse (gone set) */
    ST_OPEN,        /* accepted either way: data flows (pair or attached socket) */
    ST_STATE_COUNT
};

struct wm_tun_stream {
    struct wm_guard guard; /* entries from its socket/pair events (core/guard.h) */
    struct wm_tun *t;
    uint32_t id;
    enum stream_state state;
    struct bufferevent *inner; /* ours; its partner "outer" belongs to the user */
    struct wm_tun_stream *hnext; /* hash chain */
    struct wm_tun_stream *rnext; /* ready ring */
    struct wm_tun_stream *rprev;
    bool queued;
    uint32_t send_window;  /* bytes the peer still accepts from us */
    uint32_t recv_avail;   /* bytes we still accept from the peer */
    uint32_t recv_credit;  /* consumed, not yet returned with WINDOW_UPDATE */
    uint32_t win;          /* our receive window now: t->window, grown by auto-tuning */
    bool local_eof;        /* the outer side wrote EOF: send FIN once drained */
    bool reader_gone;      /* the outer side closed in order (freed after its EOF): what
                            * is buffered still goes out with FIN, what the peer sends
                            * now is dropped (credit returned) until its FIN */
    uint64_t gone_ms;      /* when reader_gone was set (the sweep bounds the linger) */
    uint64_t dropped;      /* bytes dropped since then */
    bool fin_sent;
    bool remote_fin;
    wm_tun_open_cb cb;            /* ST_OPENING */
    void (*gone)(void *arg);      /* ST_PENDING, see wm_tun_stream_watch() */
    void *arg;
    /* Socket-attached streams (mux_sock.c): the mux reads and writes fd
     * itself. ev != NULL once attached (the mux then owns fd); until then
     * fd is the opener's. Pair streams have fd -1. */
    int fd;
    bool readable;            /* read edge seen, not yet drained */
    bool rdhup;               /* the peer's FIN is in (EV_CLOSED) */
    bool wr_blocked;          /* socket full: wait for the writable edge */
    bool wr_shut;             /* shutdown(SHUT_WR) done */
    bool flush_queued;        /* on the carrier's flush list */
    struct wm_tun_stream *fnext;
    struct event *ev;
    struct evbuffer *pend;    /* stream -> socket bytes not yet written; NULL when empty */
    wm_tun_sock_end_cb end;
    const char *why;          /* end reason when it is not plain "closed"/"reset" */
    int idle_ms;
    uint64_t last_ms;         /* coarse clock, last byte either way */
    uint64_t nin;             /* socket -> stream */
    uint64_t nout;            /* stream -> socket */
    uint32_t tag;             /* mapping streams: wm_tun_tag() of the mapping's name, else 0 */
    uint64_t open_sent_ms;    /* ST_OPENING: when our OPEN went (coarse clock) */
};

struct wm_tun {
    struct wm_worker *w;
    uint64_t id;
    enum tun_state state;
    enum wm_tun_role role;
    struct bufferevent *bev;
    struct wm_tun_cbs cbs;
    void *arg;
    char *user;
    char *pass;
    char peer_name[64];
    uint32_t window;      /* our receive window per stream */
    uint32_t peer_window; /* the peer's, initial send window */
    uint32_t window_max;  /* auto-tuning: a stream's window grows up to this */
    uint32_t grow_budget; /* ... and all together by at most this */
    uint32_t grown;       /* sum over streams of win - window (<= grow_budget) */
    uint8_t nonce_s[WM_TUN_NONCE];
    uint8_t nonce_c[WM_TUN_NONCE];
    bool auth_required;
    bool refusing;        /* server: AUTH refused, the answer held back (hs_timer) */
    bool refused;         /* client: the server refused our credentials */
    char refuse_why[96];
    struct wm_tun_counters counters;
    uint8_t *reg;
    size_t reglen;
    bool reg_again;       /* client: mappings changed while a REGISTER was unanswered */
    /* streams */
    struct wm_tun_stream **buckets;
    size_t nbuckets;
    size_t nstreams;
    size_t max_streams;   /* conf->max_streams, or WM_TUN_MAX_STREAMS */
    char refusal[64];     /* wm_tun_open_refusal() */
    uint64_t limit_log_ms[2]; /* last "max_streams" line (tun_limit_log): theirs, ours */
    uint64_t limit_quiet[2];  /* streams refused since, not logged */
    uint32_t next_id;
    struct wm_tun_stream *ready; /* ring head */
    struct wm_tun_stream *flushq; /* socket streams with output to write */
    /* timers */
    struct event *tick;       /* heartbeat */
    struct event *pump_ev;    /* deferred pump */
    struct event *hs_timer;   /* handshake deadline */
    bool rd_paused;           /* our output to the peer is over CARRIER_OUT_MAX: its
                               * frames wait unread until it reads ours (mux.c) */
    uint64_t last_rx_ms;
    uint64_t last_ping_ms;
    int64_t rtt_ms;          /* the last PING's round trip (-1: none yet) */
    int ping_ms;
    int dead_ms;
    int open_ms;             /* an OPEN unanswered this long is reset (sweep) */
    /* Lifetime (core/guard.h): every entry from the event loop is
     * tun_enter()/tun_leave(); tun_end() closes, and the last leave runs the
     * one free (streams reset, `closed` callback, memory). */
    struct wm_guard guard;
    char why[160];
};

/* mux.c */
/* Entry from the event loop (or a public call that may end t): enter, then
 * leave; the leave frees t when it was ended meanwhile and is the last. */
static inline void tun_enter(struct wm_tun *t)
{
    wm_guard_enter(&t->guard);
}
void tun_leave(struct wm_tun *t);
/* Ended (tun_end): memory still valid inside an entry, but no new work. */
static inline bool tun_closed(const struct wm_tun *t)
{
    return wm_guard_closed(&t->guard);
}
/* End t now (call inside an entry, or as the last use of t): state
 * TUN_CLOSED; the free waits for the last leave. Idempotent. */
void tun_end(struct wm_tun *t);
void tun_set_state(struct wm_tun *t, enum tun_state st);
/* A PING answer (its 8-byte payload) arrived: note the round trip. */
void tun_note_pong(struct wm_tun *t, const uint8_t *p);
void tun_send_frame(struct wm_tun *t, uint8_t type, uint8_t flags, uint32_t sid,
                    const uint8_t *payload, size_t len);
/* The carrier failed: with a code, send GOAWAY and end once it is flushed
 * (TUN_CLOSING); with WM_TUN_ERR_NONE, end now (tun_end). Inside an entry. */
void tun_fail(struct wm_tun *t, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tun_set_ready(struct wm_tun *t);
/* A stream refused at max_streams (ours: one we were to open; else the
 * peer's OPEN): a WARN line, one per 10 s per carrier and kind at most. */
void tun_limit_log(struct wm_tun *t, bool ours);
/* mux_hs.c: REGISTER / REGISTER_RESULT after the handshake (a client that
 * reloaded its mappings re-registers over the live carrier). */
void tun_hs_reregister_frame(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p);

void tun_ready_remove(struct wm_tun *t, struct wm_tun_stream *s);
/* The stream has bytes the fair writer could send (pair or socket side). */
bool tun_stream_has_output(struct wm_tun_stream *s);

/* mux_stream.c */
/* The carrier's stream table. */
struct wm_tun_stream *tun_stream_find(struct wm_tun *t, uint32_t id);
void tun_stream_insert(struct wm_tun *t, struct wm_tun_stream *s);
void tun_stream_unlink(struct wm_tun *t, struct wm_tun_stream *s);
/* A new stream in state st, registered under id; NULL on OOM. */
struct wm_tun_stream *tun_stream_new(struct wm_tun *t, uint32_t id, enum stream_state st);
void tun_stream_set_state(struct wm_tun_stream *s, enum stream_state st);
/* Entry from the event loop into s: enters s and its carrier; the leave
 * frees s (then t) when closed meanwhile and last. */
void tun_stream_enter(struct wm_tun_stream *s);
void tun_stream_leave(struct wm_tun_stream *s);
/* Make the bufferevent pair of s; returns the end handed to the handler. */
struct bufferevent *tun_stream_attach(struct wm_tun_stream *s);
/* End s: off every list, pair or socket released, its owner told (see
 * mux_stream.c); the memory goes now, or at its last leave. Idempotent. */
void tun_stream_close(struct wm_tun_stream *s, bool notify_outer);
/* Closes s when both directions are finished. */
void tun_stream_maybe_done(struct wm_tun_stream *s);
void tun_ready_push(struct wm_tun *t, struct wm_tun_stream *s);
void tun_pump_schedule(struct wm_tun *t);
void tun_stream_consumed(struct wm_tun_stream *s, size_t n);
void tun_send_code(struct wm_tun *t, uint8_t type, uint32_t sid, bool wide, uint32_t code,
                   const char *reason);

/* mux_sock.c */
int tun_sock_attach(struct wm_tun_stream *s, int fd, int idle_ms, wm_tun_sock_end_cb end,
                    void *arg);
/* One turn of the fair writer: read once from the socket into a DATA frame. */
void tun_sock_pump(struct wm_tun *t, struct wm_tun_stream *s);
/* A DATA frame's payload (len bytes at the front of in) for the socket. */
void tun_sock_data(struct wm_tun_stream *s, struct evbuffer *in, size_t len, bool fin);
/* Write the output of every socket stream that got DATA in this read. */
void tun_sock_flush_all(struct wm_tun *t);
/* Queue a readable socket stream in the fair writer if it may send. */
void tun_sock_kick(struct wm_tun_stream *s);
/* Release the socket side (called by tun_stream_close); returns the end call
 * to make once s is gone. */
struct tun_sock_end {
    wm_tun_sock_end_cb end;
    void *arg;
    struct wm_tun_sock_result res;
};
void tun_sock_release(struct wm_tun_stream *s, bool reset, struct tun_sock_end *e);
/* Idle sweep: true when s timed out (the caller resets it). */
bool tun_sock_idle(const struct wm_tun_stream *s, uint64_t now);

/* mux_recv.c: one complete frame after the handshake, its header removed;
 * for DATA the payload is still at the front of in (in the handshake,
 * only GOAWAY comes here first). */
void tun_dispatch(struct wm_tun *t, const struct wm_tun_hdr *h, struct evbuffer *in);

/* mux_hs.c: handle a handshake frame (state < TUN_READY). */
void tun_hs_frame(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p);
/* Server: answer the AUTH refusal held back in t->refuse_why. */
void tun_hs_refuse_now(struct wm_tun *t);
/* Client: send preface + HELLO. */
void tun_hs_start_client(struct wm_tun *t);

#endif
