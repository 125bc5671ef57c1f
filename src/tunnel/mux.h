/*
 * tunnel/mux.h - one carrier: handshake, authentication, and many streams
 * with per-stream flow control over it (protocol: docs/tunnel.md).
 *
 * A stream is handed to the rest of the program as a bufferevent (one end
 * of a bufferevent_pair, "outer"): relays and protocol handlers use it like
 * a socket. The mux owns the other end. Ownership:
 *  - wm_tun_new() takes the carrier bufferevent;
 *  - the outer bufferevent of a stream belongs to whoever received it
 *    (open callback or wm_tun_stream_accept()); freeing it (after
 *    wm_bev_shutdown_write(), or with wm_bev_free()) ends the stream;
 *  - a wm_tun is freed by the mux itself after its `closed` callback, once
 *    no callback of it is on the stack (core/guard.h).
 * Everything runs on the carrier's worker thread.
 */
#ifndef WM_TUNNEL_MUX_H
#define WM_TUNNEL_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tunnel/frame.h"

struct bufferevent;
struct wm_tun;
struct wm_tun_stream;
struct wm_worker;

enum wm_tun_role { WM_TUN_ROLE_CLIENT, WM_TUN_ROLE_SERVER };

#define WM_TUN_WINDOW (256 * 1024)
/* Auto-tuning defaults (mux_stream.c, wm_tun_conf): a stream held back by
 * its window while we keep up has it doubled, up to WM_TUN_WINDOW_MAX,
 * while the carrier's streams together have grown by less than
 * WM_TUN_GROW_BUDGET. */
#define WM_TUN_WINDOW_MAX (4 * 1024 * 1024)
#define WM_TUN_GROW_BUDGET (32 * 1024 * 1024)
#define WM_TUN_PING_MS 15000
#define WM_TUN_DEAD_MS 45000
#define WM_TUN_HANDSHAKE_MS 10000
/* A stream we opened that the peer has not answered (OPEN_RESULT) in this
 * long is reset and its opener told WM_TUN_OPEN_TIMEOUT (wm_tun_conf). */
#define WM_TUN_OPEN_MS 60000
/* Streams open at once on one carrier, both directions together: the
 * ceiling of wm_tun_conf.max_streams. */
#define WM_TUN_MAX_STREAMS 65536

struct wm_tun_conf {
    enum wm_tun_role role;
    const char *user;   /* credentials, NULL for none */
    const char *pass;
    const char *name;   /* client: announced in HELLO (logs) */
    uint32_t window;    /* our receive window per stream (0: WM_TUN_WINDOW) */
    uint32_t window_max;  /* auto-tuning limit per stream (0: WM_TUN_WINDOW_MAX) */
    uint32_t grow_budget; /* auto-tuning budget per carrier (0: WM_TUN_GROW_BUDGET) */
    int ping_ms;        /* 0: defaults */
    int dead_ms;
    int handshake_ms;
    int open_ms;        /* 0: WM_TUN_OPEN_MS */
    /* streams open at once (0: WM_TUN_MAX_STREAMS): an OPEN beyond is
     * refused with WM_TUN_OPEN_LIMIT, wm_tun_open() beyond returns NULL */
    uint32_t max_streams;
    /* server: ask for credentials even without user/pass (the owner's
     * identify callback checks them) */
    bool require_auth;
    /* client: REGISTER payload (encoded mappings), sent after AUTH */
    const uint8_t *reg;
    size_t reglen;
};

struct wm_tun_cbs {
    /* Server: AUTH came from user (may be empty; not NUL-terminated). Return
     * 0 with *pass: the password its MAC must prove (NULL: none, the client
     * is known otherwise, e.g. by its certificate); or -1 with *why (static
     * or owned by the callee): refused. NULL callback: conf user/pass. */
    int (*identify)(struct wm_tun *t, const struct wm_tun_str *user, const char **pass,
                    const char **why, void *arg);
    /* Server: the outcome of AUTH (why: the refusal). Returns how long (ms)
     * to hold a refusal back before it is answered (a guesser waits). */
    int (*authenticated)(struct wm_tun *t, bool ok, const char *why, void *arg);
    /* Handshake finished (client: registration answered). */
    void (*ready)(struct wm_tun *t, void *arg);
    /* Server: the client's REGISTER. Fill ok[i] (1 accepted) and reason[i]
     * (static or owned by the callee until the next call) for n mappings. */
    void (*registered)(struct wm_tun *t, const struct wm_tun_mapping *m, size_t n, uint8_t *ok,
                       const char **reason, void *arg);
    /* Client: the server's answer to REGISTER. */
    void (*register_result)(struct wm_tun *t, const uint8_t *ok, const struct wm_tun_str *reason,
                            size_t n, void *arg);
    /* The peer opened stream s: call wm_tun_stream_accept() or
     * wm_tun_stream_refuse() on it, now or later (s stays valid until then,
     * unless it goes away: see wm_tun_stream_watch()). */
    void (*open)(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                 void *arg);
    /* The carrier ended; all streams are reset. t is freed after return. */
    void (*closed)(struct wm_tun *t, const char *why, void *arg);
};

/* Start the protocol on carrier (connected; TLS already set up if any).
 * Takes carrier. id names it in logs. Returns NULL on OOM (carrier freed). */
struct wm_tun *wm_tun_new(struct wm_worker *w, struct bufferevent *carrier,
                          const struct wm_tun_conf *conf, const struct wm_tun_cbs *cbs, void *arg,
                          uint64_t id);

/* Close with GOAWAY(code, reason) (WM_TUN_ERR_NONE: without one); the
 * closed callback runs (maybe later). Safe from inside t's callbacks: t is
 * freed once, after the outermost of them returned. */
void wm_tun_close(struct wm_tun *t, uint32_t code, const char *reason);

/* Tear t down without its callbacks: streams are reset (their own callbacks
 * run), memory freed: now, or when called from inside one of t's callbacks,
 * once the outermost returns (t must not be used after this call either
 * way). For owners that go away themselves (shutdown, reconfiguration). */
void wm_tun_destroy(struct wm_tun *t);

/* Replace the callbacks and their argument (NULL cbs: none; incoming opens
 * are then refused). Lets an owner go away before a delayed close ends. */
void wm_tun_set_owner(struct wm_tun *t, const struct wm_tun_cbs *cbs, void *arg);

bool wm_tun_is_ready(const struct wm_tun *t);
/* Client: did the server refuse our credentials (AUTH_RESULT)? For the
 * closed callback, to retry no faster than the server's failed-login hold
 * allows. */
bool wm_tun_was_refused(const struct wm_tun *t);
uint64_t wm_tun_id(const struct wm_tun *t);
const char *wm_tun_peer_name(const struct wm_tun *t); /* HELLO name (server side) */
size_t wm_tun_nstreams(const struct wm_tun *t);
/* Why wm_tun_open() on t would return NULL now ("the carrier is down",
 * "N streams open (max_streams)"), or NULL when it can open. Static text,
 * or t's own buffer (valid until the next call). */
const char *wm_tun_open_refusal(struct wm_tun *t);
/* The last heartbeat's round trip in ms, -1 before the first answer. */
long long wm_tun_rtt_ms(const struct wm_tun *t);
/* How the carrier is carried, for log lines and /status: "plain" or
 * what net/tlspump.h reports ("TLS"). */
const char *wm_tun_transport(const struct wm_tun *t);

/* Open a stream to the peer. cb runs once: with the outer bufferevent
 * (caller owns it) and WM_TUN_OPEN_OK, or with NULL and a code/reason.
 * Returns a handle usable with wm_tun_open_cancel() until cb ran, or NULL
 * (cb not called) when the carrier cannot open streams now. */
typedef void (*wm_tun_open_cb)(struct bufferevent *outer, uint8_t code, const char *reason,
                               void *arg);
struct wm_tun_stream *wm_tun_open(struct wm_tun *t, const struct wm_tun_open *o,
                                  wm_tun_open_cb cb, void *arg);
/* Give up an open in progress: cb will not run; the stream is reset. */
void wm_tun_open_cancel(struct wm_tun_stream *s);

/* Accept an incoming stream: returns its outer bufferevent (caller owns),
 * or NULL on OOM (the stream is refused). */
struct bufferevent *wm_tun_stream_accept(struct wm_tun_stream *s);
void wm_tun_stream_refuse(struct wm_tun_stream *s, uint8_t code, const char *reason);
/* For an incoming stream answered later: gone(arg) runs if it goes away
 * first (reset by the opener, carrier closed or destroyed); s is then freed. */
void wm_tun_stream_watch(struct wm_tun_stream *s, void (*gone)(void *arg), void *arg);
uint32_t wm_tun_stream_id(const struct wm_tun_stream *s);
struct wm_tun *wm_tun_stream_tun(const struct wm_tun_stream *s);
/* Our receive window for s now (the configured one, grown by auto-tuning). */
uint32_t wm_tun_stream_window(const struct wm_tun_stream *s);

/*
 * Socket-attached streams. For a plain connected socket the mux needs no
 * bufferevent and no relay: it reads the socket straight into DATA frames
 * when the stream's turn comes in the fair writer, and writes DATA payloads
 * straight to the socket, keeping only what the kernel did not take (at
 * most the receive window). Credit goes back as bytes reach the socket.
 * Half-close both ways, per-stream idle timeout (swept once a second),
 * reset on socket errors. The end callback runs once, after the stream and
 * its socket are gone (fd closed), with the byte counts and a reason.
 */
struct wm_tun_sock_result {
    uint64_t in;     /* bytes read from the socket into the stream */
    uint64_t out;    /* bytes written to the socket */
    const char *why; /* "closed", "reset", "idle", "socket-error", "carrier-closed",
                        "aborted", "out-of-memory" */
};
typedef void (*wm_tun_sock_end_cb)(void *arg, const struct wm_tun_sock_result *r);

/* Open a stream for connected socket fd. cb runs once as for wm_tun_open
 * but never with an outer bufferevent: WM_TUN_OPEN_OK means the mux now
 * owns fd and `end` will run; any other code leaves fd with the caller.
 * Until cb runs fd is not touched (early bytes wait in the kernel). */
struct wm_tun_stream *wm_tun_open_sock(struct wm_tun *t, const struct wm_tun_open *o, int fd,
                                       int idle_ms, wm_tun_open_cb cb, wm_tun_sock_end_cb end,
                                       void *arg);
/* Accept an incoming stream with connected socket fd, which the mux owns
 * from now on (closed on failure). Returns 0, or -1 when out of memory
 * (the stream is refused, end is not called). */
int wm_tun_stream_accept_sock(struct wm_tun_stream *s, int fd, int idle_ms,
                              wm_tun_sock_end_cb end, void *arg);
/* End an attached socket stream now (the peer gets RST); end runs, with
 * why "aborted", before this returns. */
void wm_tun_sock_abort(struct wm_tun_stream *s);

/*
 * Re-registration (docs/tunnel.md "Changing mappings on a live carrier").
 * Every stream of kind WM_TUN_OPEN_MAPPING carries a tag: wm_tun_tag() of
 * its mapping's name (0 for other streams).
 */
uint32_t wm_tun_tag(const char *name, size_t len);
/* Client: replace the REGISTER payload (copied) and send it again over the
 * live carrier (or after the answer to one still in flight; a carrier in
 * the handshake sends the new one). The answer comes to register_result.
 * Returns 0, -1 on OOM (the old payload stays). */
int wm_tun_reregister(struct wm_tun *t, const uint8_t *reg, size_t reglen);
/* Reset every mapping stream whose tag keep() refuses (the peer gets RST
 * with reason, local owners their usual reset callbacks). Returns how many. */
size_t wm_tun_reset_streams(struct wm_tun *t, bool (*keep)(uint32_t tag, void *arg), void *arg,
                            const char *reason);

/* Counters of a carrier, for /status. */
struct wm_tun_counters {
    uint64_t bytes_in;  /* carrier bytes read (plaintext under TLS) */
    uint64_t bytes_out; /* carrier bytes written */
    uint64_t streams;   /* streams opened either way */
};
void wm_tun_get_counters(const struct wm_tun *t, struct wm_tun_counters *out);

/* The carrier's TLS connection, or NULL (plain). */
struct ssl_st;
struct ssl_st *wm_tun_ssl(const struct wm_tun *t);

/* The common name of the peer's certificate when the carrier is TLS and
 * that certificate was verified (mutual TLS): true with cn filled. */
bool wm_tun_peer_subject(const struct wm_tun *t, char *cn, size_t cap);

/* HMAC-SHA-256 of the handshake (docs/tunnel.md "Handshake"; exposed for
 * tests): HMAC(pass, label || n1 || n2 || binding || user), binding being
 * blen bytes of TLS exporter output (0 on a plain carrier). */
void wm_tun_mac(const char *pass, const char *label, const uint8_t *n1, const uint8_t *n2,
                const uint8_t *binding, size_t blen, const char *user, size_t ulen,
                uint8_t out[WM_TUN_MAC]);

/* The TLS exporter label of the channel binding (RFC 5705 / RFC 8446 7.5). */
#define WM_TUN_EXPORTER_LABEL "EXPORTER-wmproxy-tunnel-auth"

#endif
