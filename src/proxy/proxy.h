/*
 * proxy/proxy.h - the forward proxy service: HTTP, HTTPS CONNECT, SOCKS5 and
 * SOCKS4/4a on one port; the first byte of a connection picks the protocol.
 */
#ifndef WM_PROXY_PROXY_H
#define WM_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct bufferevent;
struct wm_listen_stats;
struct wm_service;
struct wm_worker;

/* Protocol bits, wmproxy's numbering ("flag = 7" means all three). */
enum {
    WM_PROXY_FLAG_HTTP = 1,
    WM_PROXY_FLAG_HTTPS = 2, /* CONNECT */
    WM_PROXY_FLAG_SOCKS5 = 4, /* SOCKS5, and SOCKS4/4a when no auth is set */
    WM_PROXY_FLAG_ALL = 7,
};

#define WM_PROXY_CRED_MAX 256

struct wm_proxy_opts {
    bool auth;                      /* credentials required */
    char user[WM_PROXY_CRED_MAX];
    char pass[WM_PROXY_CRED_MAX];
    unsigned flags;                 /* WM_PROXY_FLAG_* */
    int connect_timeout_ms;
    int idle_timeout_ms;
    int handshake_timeout_ms;
};

/* Fill opts with the defaults (all protocols, no auth, limits.h timeouts). */
void wm_proxy_opts_default(struct wm_proxy_opts *opts);

/* Parse wmproxy's flag syntax: "http https socks5" (any order, spaces or
 * commas) or a number 1..7. Returns 0 or -1. */
int wm_proxy_parse_flags(const char *s, unsigned *flags);

/* A new proxy service (refcount 1) with a copy of opts. NULL on OOM. */
struct wm_service *wm_proxy_service_new(const struct wm_proxy_opts *opts);

/* Serve one client connection that is already a bufferevent (socket, TLS or
 * tunnel stream). Takes bev. peer may be NULL for virtual streams; stats may
 * be NULL. Must run on w's thread. */
void wm_proxy_serve(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                    const struct sockaddr *peer, socklen_t peerlen,
                    struct wm_listen_stats *stats);

#endif
