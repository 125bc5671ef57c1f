/*
 * proxy/proxy.h - the forward proxy service: HTTP, HTTPS CONNECT, SOCKS5 and
 * SOCKS4/4a on one port; the first byte of a connection picks the protocol.
 */
#ifndef WM_PROXY_PROXY_H
#define WM_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/limits.h"     /* WM_PROXY_CRED_MAX */
#include "core/proxyflags.h" /* WM_PROXY_FLAG_* */

struct bufferevent;
struct wm_acl;
struct wm_listen_stats;
struct wm_service;
struct wm_worker;

struct wm_proxy_opts {
    bool auth;                      /* credentials required */
    char user[WM_PROXY_CRED_MAX];
    char pass[WM_PROXY_CRED_MAX];
    unsigned flags;                 /* WM_PROXY_FLAG_* */
    int connect_timeout_ms;
    int idle_timeout_ms;
    int handshake_timeout_ms;
    struct wm_acl *acl;             /* destination and client rules (net/acl.h), or
                                     * NULL; borrowed: a service takes its own reference */
};

/* Fill opts with the defaults (all protocols, no auth, limits.h timeouts). */
void wm_proxy_opts_default(struct wm_proxy_opts *opts);

/* A new proxy service (refcount 1) with a copy of opts. NULL on OOM. */
struct wm_service *wm_proxy_service_new(const struct wm_proxy_opts *opts);

/* The client rules of svc (a proxy service) for a socket just accepted:
 * true when they refuse peer; then the refusal is logged, the client gets
 * a best-effort "403 Forbidden" and fd is closed. Any thread. */
bool wm_proxy_refuse_client(struct wm_service *svc, int fd, const struct sockaddr *peer);

/* Serve one client connection that is already a bufferevent (socket, TLS or
 * tunnel stream). Takes bev. peer may be NULL for virtual streams; stats may
 * be NULL. Must run on w's thread. */
void wm_proxy_serve(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                    const struct sockaddr *peer, socklen_t peerlen,
                    struct wm_listen_stats *stats);

/* The same for a tunnel stream (no peer) whose client is really at src
 * (may be NULL): see wm_conn_set_origin() (net/conn.h) for src, dst and
 * pp_version (a PROXY protocol header to each CONNECT / SOCKS target). */
void wm_proxy_serve_origin(struct wm_service *svc, struct wm_worker *w, struct bufferevent *bev,
                           const struct sockaddr *src, const struct sockaddr *dst,
                           int pp_version);

#endif
