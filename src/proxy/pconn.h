/*
 * proxy/pconn.h - one client connection of the forward proxy (internal to
 * src/proxy). The protocol handlers (socks.c, http_proxy.c, socks_udp.c)
 * share this record and end it through wm_conn_finish(&c->conn, ...).
 * Ownership and lifetime are the generic record's (net/conn.h).
 */
#ifndef WM_PROXY_PCONN_H
#define WM_PROXY_PCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/service.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/conn.h"
#include "net/dial.h"
#include "proxy/proxy.h"
#include "proxy/socks_proto.h"

struct bufferevent;

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

/* A forward-proxy client: the generic record first (net/conn.h, freed
 * with it), then what the protocol handlers add. Allocated with calloc(). */
struct wm_pconn {
    struct wm_conn conn;              /* first */
    const struct wm_proxy_opts *opts; /* the service's, lives as long as conn.svc */
    enum wm_pconn_proto proto;
    int state;                        /* handler-specific */
    uint8_t nheld;                    /* SOCKS5: handshake reply bytes held back */
    uint8_t held[8];                  /* (sent with the next reply, see socks.c) */
};

/* A new connection record for bev (taken) under service svc (a proxy
 * service: its options give the timeouts and credentials). Registers it
 * with worker w. NULL on OOM (bev freed). The caller starts a handler. */
struct wm_pconn *wm_pconn_new(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                              const struct sockaddr *peer, socklen_t peerlen,
                              struct wm_listen_stats *stats);

/* The proxy record of a connection made by wm_pconn_new(). */
static inline struct wm_pconn *wm_pconn_of(struct wm_conn *c)
{
    return (struct wm_pconn *)c;
}

/* Set the protocol (and the access line's name for it). */
void wm_pconn_set_proto(struct wm_pconn *c, enum wm_pconn_proto proto);

/* Credentials check in constant time; true when no auth is configured. */
bool wm_pconn_auth_ok(const struct wm_pconn *c, const char *user, size_t ulen, const char *pass,
                      size_t plen);

/* Dial host:port for c under its service's destination rules and connect
 * timeout (net/dial.h wm_dial_start_req). NULL on OOM. */
struct wm_dial *wm_pconn_dial(struct wm_pconn *c, const char *host, uint16_t port,
                              void (*cb)(int, enum wm_dial_status, const struct sockaddr *,
                                         socklen_t, void *),
                              void *arg);

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
