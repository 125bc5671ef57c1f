/*
 * stream/stream_int.h - internal to src/stream: the compiled settings of
 * one [[stream.server]] and the entry points of each mode.
 */
#ifndef WM_STREAM_STREAM_INT_H
#define WM_STREAM_STREAM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/service.h"
#include "net/addr.h"

typedef struct ssl_ctx_st SSL_CTX;
struct bufferevent;
struct wm_upstream;
struct wm_worker;
struct wm_stream;
struct rv_logfile;

enum st_mode { ST_TCP, ST_UDP, ST_WS2TCP, ST_TCP2WS, ST_TCP2WSS, ST_MODE_COUNT };

#define ST_UDP_ADDRS 64 /* resolved upstream addresses of a UDP server */

/* One [[stream.server]], immutable after prepare. */
struct st_server {
    enum st_mode mode;
    struct wm_upstream *up;     /* owned */
    char path[256];             /* tcp2ws(s): request-target of the ws URL */
    char domain[WM_HOST_MAX];   /* Host / SNI; "" : the upstream host */
    int connect_ms;
    int idle_ms;
    int udp_idle_ms;
    int pp_version;             /* PROXY header towards the upstream */
    bool accept_pp;
    bool proxy_ssl;
    size_t max_sessions;
    uint64_t max_message;
    uint64_t rate;              /* rate_limit (tcp): bytes per rate_ms each way; 0: none */
    uint32_t rate_ms;
    SSL_CTX *tls_in;            /* bind_ssl (owned) */
    SSL_CTX *tls_out;           /* proxy_ssl, tcp2wss (owned) */
    struct rv_logfile *alog;    /* access_log (a reference; reverse/alog.h) */
    struct sockaddr_storage udp_to[ST_UDP_ADDRS]; /* udp: per upstream server index */
    socklen_t udp_tolen[ST_UDP_ADDRS];
};

/* The service of one listening address. */
struct st_service {
    struct wm_service base;
    struct wm_stream *st;       /* reference */
    const struct st_server *srv; /* in st */
    bool tls;                   /* bind_ssl listener */
};

/* tcp.c: a TCP client on a tcp, tcp2ws(s) or ws2tcp listener. Takes fd. */
void st_tcp_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                   const struct sockaddr *peer, socklen_t peerlen, struct wm_listen_stats *stats);

/* udp.c: datagrams on a UDP listener (struct wm_service.dgram). */
void st_udp_readable(struct wm_service *svc, struct wm_worker *w, int fd,
                     struct wm_listen_stats *stats, void **state);
void st_udp_state_free(void *state);

/* stream.c: the access line of a connection or session to srv's
 * access_log, when it has one. */
void st_alog(const struct st_server *srv, const char *proto, const char *client,
             const char *target, int code, unsigned long long in, unsigned long long out,
             unsigned long long ms, const char *reason);

#endif
