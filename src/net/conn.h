/*
 * net/conn.h - one accepted client connection, whatever the service: the
 * record every front (forward proxy, tunnel mapping ports, next the reverse
 * proxy) keeps for a client, its access line, its counters and its one end.
 *
 * Services read and write the public fields; the functions below own the
 * life cycle. A service that needs more state embeds struct wm_conn as its
 * first member (proxy/pconn.h) or hangs it on proto_data.
 *
 * Lifetime (core/guard.h): every callback a handler registers for the
 * connection runs between wm_conn_enter() and wm_conn_leave().
 * wm_conn_finish() logs and counts at once; the memory (and proto_free)
 * goes at the last leave, so a handler may finish the connection at any
 * depth and must only test wm_conn_closed() after calls that may do so.
 *
 * Ownership: the conn owns bev until it is handed to a relay (then the
 * relay owns it and bev is NULL); it owns dial, relay/splice, timer and
 * proto_data (through proto_free); it holds one reference on svc and on
 * stats.
 *
 * Parking (wm_conn_park): a client idle between requests on a plain socket
 * need not keep a bufferevent (two evbuffers, two events, ~1 KiB). Parked,
 * the conn owns the bare fd and one event (`park`, EV_READ with the
 * remaining wait as its timeout) and bev is NULL; nothing else changes
 * (registry, /status counters, access line). When the client sends (or
 * closes), or the wait ends, the conn makes a new socket bufferevent on
 * the same fd with the options every front accepts with
 * (BEV_OPT_CLOSE_ON_FREE) and calls the wake callback, which re-applies
 * whatever the handler had set on the old one (callbacks, watermarks,
 * timeouts, enabled events). wm_conn_finish() closes a parked fd like any
 * other end, so a graceful stop aborts parked clients as before. TLS
 * (bind_ssl, net/tlspump), HTTP/2 and tunnel streams are not plain sockets:
 * they keep their bufferevent.
 */
#ifndef WM_NET_CONN_H
#define WM_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/guard.h"
#include "core/limits.h"
#include "core/worker.h"
#include "net/addr.h"

struct bufferevent;
struct event;
struct wm_dial;
struct wm_listen_stats;
struct wm_relay;
struct wm_service;
struct wm_splice;

/* Where a client reached through a tunnel stream really is (the stream's
 * OPEN names it, docs/tunnel.md), when a PROXY protocol header must tell
 * each target so. */
struct wm_conn_origin {
    struct sockaddr_storage src; /* the visitor */
    socklen_t srclen;            /* 0: unknown */
    struct sockaddr_storage dst; /* the address it connected to */
    socklen_t dstlen;            /* 0: unknown */
    uint8_t pp_version;          /* net/proxyproto.h: WM_PP_V1, WM_PP_V2, or 0 */
};

/* A client's address (IPv4 or IPv6; sa.sa_family says which): a quarter
 * of a sockaddr_storage, since every connection keeps one. */
union wm_conn_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Timeouts a connection lives by (ms; <= 0: none). */
struct wm_conn_limits {
    int head_ms; /* the client's first request or handshake */
    int idle_ms; /* no byte either way once serving */
    uint64_t rate;    /* relayed bytes per rate_ms, each way (0: no limit; core/relay.h) */
    uint32_t rate_ms;
};

struct wm_conn {
    struct wm_conn_link link; /* first: the worker's registry */
    struct wm_guard guard;
    uint64_t id;
    struct wm_worker *w;
    struct wm_service *svc;
    struct wm_listen_stats *stats;
    struct wm_conn_limits limits;
    struct bufferevent *bev;
    union wm_conn_addr peer;
    socklen_t peerlen;
    char peer_str[WM_ADDR_STR_MAX]; /* "stream" for a virtual (tunnel) stream */
    const char *proto;              /* access line; NULL: none written (not identified yet) */
    char *user;                     /* access line; owned, NULL when none (wm_conn_set_user) */
    char *target;                   /* host:port for logs; owned, NULL when none */
    uint64_t bytes_in;              /* from the client */
    uint64_t bytes_out;             /* to the client */
    uint64_t start_ms;
    int code;                       /* HTTP status or SOCKS reply code */
    bool access_logged;             /* the handler already wrote its access line(s) */
    bool linger;                    /* wm_conn_set_linger(): half-close, then drain */
    bool internal;                  /* an HTTP/2 stream's engine, not a client connection:
                                     * not in wmproxy_connections_total */
    const char *end_why;            /* wm_conn_close_after_flush()'s reason (static) */
    struct event *timer;
    struct event *park;             /* parked: EV_READ on the fd, bev NULL (see above) */
    void (*on_wake)(struct wm_conn *c, short what); /* parked: the handler's wake callback */
    struct wm_dial *dial;
    struct wm_relay *relay;
    struct wm_splice *splice;       /* instead of relay when both ends are plain sockets */
    void *proto_data;
    void (*proto_free)(struct wm_conn *c); /* called once, when the memory goes */
    struct wm_conn_origin *origin;  /* owned; NULL unless a PROXY header goes to targets */
    /* Called once by wm_conn_finish() after the access line (a service's
     * own access log); NULL: none. */
    void (*on_finish)(struct wm_conn *c, const char *reason);
};

/* Fill c (zeroed by the caller, or embedded in a zeroed record) for bev
 * (taken) under svc, and register it with worker w. peer may be NULL for a
 * virtual stream, stats NULL. The caller then starts a handler. */
void wm_conn_init(struct wm_conn *c, struct wm_service *svc, struct wm_worker *w,
                  struct bufferevent *bev, const struct sockaddr *peer, socklen_t peerlen,
                  struct wm_listen_stats *stats, const struct wm_conn_limits *limits);

/* A virtual stream's client is really at src (may be NULL): the access
 * line names it. With pp_version set, wm_conn_relay_fd() first writes a
 * PROXY protocol header from src to dst (NULL: unknown) to each target.
 * peer stays empty, so rules on the client's own address (auth throttling,
 * client ACLs) treat the stream as before. Returns 0, -1 on OOM. */
int wm_conn_set_origin(struct wm_conn *c, const struct sockaddr *src, const struct sockaddr *dst,
                       int pp_version);

/* Around every callback of the connection (see the lifetime note above).
 * wm_conn_leave() may free c. */
static inline void wm_conn_enter(struct wm_conn *c)
{
    wm_guard_enter(&c->guard);
}
void wm_conn_leave(struct wm_conn *c);
static inline bool wm_conn_closed(const struct wm_conn *c)
{
    return wm_guard_closed(&c->guard);
}

/* Log the access line (unless already done), count, close every side; the
 * memory goes at once or at the last leave. A second call is a no-op. */
void wm_conn_finish(struct wm_conn *c, const char *reason);

/* Stop reading; finish once the output is flushed (or after a short bound:
 * "flush-timeout"). The access line then gives reason, also when the
 * client closes first or the linger ends: a string that lives as long as
 * the program (a literal; the record keeps only the pointer). Once only: a
 * later call (a handler that still has output to add) changes nothing. */
void wm_conn_close_after_flush(struct wm_conn *c, const char *reason);

/* Before wm_conn_close_after_flush(): the client may still be sending (a
 * request body it was answered before we read). Once the answer is out, a
 * plain socket is half-closed (FIN) and what the client still sends is read
 * and dropped until it closes or WM_LINGER_MS pass, so that its kernel does
 * not reset the connection and throw our answer away (nginx's
 * lingering_close). TLS and virtual streams close as before. */
void wm_conn_set_linger(struct wm_conn *c);

/* Arm (or re-arm) the connection's one-shot timer; cb gets c as its arg. */
void wm_conn_set_timer(struct wm_conn *c, int ms, void (*cb)(int, short, void *));
void wm_conn_clear_timer(struct wm_conn *c);

/* Relay the client with a connected target until both are done, then
 * finish. Bytes already buffered either way go first. relay_fd takes fd
 * (splices when both ends are plain sockets; a PROXY protocol header goes
 * first when the origin asks for one); relay_bev takes up, and queues up to
 * high_water bytes for either side (0: WM_RELAY_HIGH_WATER). */
void wm_conn_relay_fd(struct wm_conn *c, int fd);
void wm_conn_relay_bev(struct wm_conn *c, struct bufferevent *up, size_t high_water);

/* Park an idle client: c->bev must be a plain socket bufferevent with
 * nothing buffered either way, set up by the caller's handler (which has
 * already dropped its own hooks on it, e.g. net fast reads). Frees bev and
 * waits on its fd for readability or up to timeout_ms (<= 0: no timeout).
 * Then, inside wm_conn_enter()/wm_conn_leave(), c->bev is a new socket
 * bufferevent (reading and writing disabled, no callbacks, nothing read
 * yet) and wake(c, EV_READ or EV_TIMEOUT) runs; the handler sets its
 * callbacks and settings again, reads, or finishes c. When the new
 * bufferevent cannot be made, c is finished ("out-of-memory") and wake is
 * not called. Returns 0 (parked), or -1 with c unchanged (not a plain
 * socket, bytes buffered, out of memory). */
int wm_conn_park(struct wm_conn *c, int timeout_ms, void (*wake)(struct wm_conn *c, short what));

static inline bool wm_conn_parked(const struct wm_conn *c)
{
    return c->park != NULL;
}

/* Close every parked client of worker w now (a graceful stop: an idle
 * keep-alive client has nothing to finish; nginx does the same). */
void wm_conn_close_parked(struct wm_worker *w);

/* Record the user name for the access line (truncated to
 * WM_CONN_USER_MAX, made printable). Out of memory: none is shown. */
#define WM_CONN_USER_MAX 63
void wm_conn_set_user(struct wm_conn *c, const char *user, size_t n);

/* Record the target (host:port) for logs (copied; NULL or "" clears it).
 * Out of memory: none is shown. */
void wm_conn_set_target(struct wm_conn *c, const char *target);

/* The user and target recorded, "" when none. */
static inline const char *wm_conn_user(const struct wm_conn *c)
{
    return c->user != NULL ? c->user : "";
}
static inline const char *wm_conn_target(const struct wm_conn *c)
{
    return c->target != NULL ? c->target : "";
}

#endif
