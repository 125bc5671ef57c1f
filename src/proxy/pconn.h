/*
 * proxy/pconn.h - one client connection of the forward proxy (internal to
 * src/proxy). The protocol handlers (socks.c, http_proxy.c, socks_udp.c)
 * share this record and end it through wm_pconn_finish().
 *
 * Ownership: the pconn owns bev until it is handed to a relay (then the
 * relay owns it and bev is NULL); it owns dial, relay, timer and proto_data;
 * it holds one reference on svc and on stats.
 */
#ifndef WM_PROXY_PCONN_H
#define WM_PROXY_PCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/service.h"
#include "core/worker.h"
#include "net/addr.h"
#include "proxy/proxy.h"
#include "proxy/socks_proto.h"

struct bufferevent;
struct event;
struct wm_dial;
struct wm_relay;
struct wm_splice;

enum wm_pconn_proto {
    WM_PCONN_SNIFF = 0, /* waiting for the first byte */
    WM_PCONN_HTTP,      /* absolute-URI HTTP proxy */
    WM_PCONN_CONNECT,   /* HTTP CONNECT tunnel */
    WM_PCONN_SOCKS5,
    WM_PCONN_SOCKS4,
    WM_PCONN_UDP,       /* SOCKS5 UDP ASSOCIATE */
    WM_PCONN_PROTO_COUNT
};

struct wm_proxy_service {
    struct wm_service base;
    struct wm_proxy_opts opts;
};

struct wm_pconn {
    struct wm_conn_link link; /* first: the worker's registry */
    uint64_t id;
    struct wm_worker *w;
    struct wm_proxy_service *svc;
    const struct wm_proxy_opts *opts; /* = &svc->opts */
    struct wm_listen_stats *stats;
    struct bufferevent *bev;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    char peer_str[WM_ADDR_STR_MAX];
    enum wm_pconn_proto proto;
    char user[64];                /* for the access log; "-" when none */
    char target[WM_HOST_MAX + 8]; /* host:port */
    int code;                     /* HTTP status or SOCKS reply code */
    int state;                    /* handler-specific */
    uint64_t bytes_in;            /* from client */
    uint64_t bytes_out;           /* to client */
    uint64_t start_ms;
    struct event *timer;
    struct wm_dial *dial;
    struct wm_relay *relay;
    struct wm_splice *splice; /* instead of relay when both ends are plain sockets */
    void *proto_data;
    void (*proto_free)(struct wm_pconn *c);
    bool access_logged;           /* the handler already wrote its access line(s) */
    uint8_t nheld;                /* SOCKS5: handshake reply bytes held back */
    uint8_t held[8];              /* (sent with the next reply, see socks.c) */
};

/* A new connection record for bev (taken) under service svc (a proxy
 * service: its options give the timeouts and credentials). Registers it
 * with worker w. NULL on OOM (bev freed). The caller starts a handler. */
struct wm_pconn *wm_pconn_new(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                              const struct sockaddr *peer, socklen_t peerlen,
                              struct wm_listen_stats *stats);

/* Log the access line (unless already done), release everything. */
void wm_pconn_finish(struct wm_pconn *c, const char *reason);

/* Stop reading; finish once the output is flushed (or after a short bound). */
void wm_pconn_close_after_flush(struct wm_pconn *c, const char *reason);

/* Arm (or re-arm) the connection's one-shot timer. */
void wm_pconn_set_timer(struct wm_pconn *c, int ms, void (*cb)(int, short, void *));
void wm_pconn_clear_timer(struct wm_pconn *c);

/* Wrap a connected target socket and relay it with the client until both
 * are done; then finish. Takes fd. */
void wm_pconn_relay_fd(struct wm_pconn *c, int fd);
/* Same with a ready bufferevent for the target (takes up). */
void wm_pconn_relay_bev(struct wm_pconn *c, struct bufferevent *up);

/* Record the user name for the access log (truncated, made printable). */
void wm_pconn_set_user(struct wm_pconn *c, const char *user, size_t n);

/* Credentials check in constant time; true when no auth is configured. */
bool wm_pconn_auth_ok(const struct wm_pconn *c, const char *user, size_t ulen, const char *pass,
                      size_t plen);

/* Map a dial failure to a SOCKS5 reply code / an HTTP status. */
int wm_pconn_socks5_rep(int dial_status);
int wm_pconn_http_status(int dial_status);

/* Entry points of the protocol handlers (client's first byte decided). */
void wm_socks5_start(struct wm_pconn *c);
void wm_socks4_start(struct wm_pconn *c);
void wm_http_proxy_start(struct wm_pconn *c);
/* UDP ASSOCIATE after a successful SOCKS5 request (socks_udp.c). */
void wm_socks5_udp_start(struct wm_pconn *c, const struct wm_socks_addr *hint);

#endif
