/*
 * net/dial.h - the one dialer: resolve (evdns, A + AAAA) and connect, trying
 * each address in turn, under one overall timeout.
 *
 * The result is a connected, non-blocking socket fd handed to the callback;
 * the caller wraps it (plain bufferevent, TLS, splice relay). Errors are
 * classified so callers can answer precisely (SOCKS reply codes, 502/504).
 */
#ifndef WM_NET_DIAL_H
#define WM_NET_DIAL_H

#include <stdint.h>
#include <sys/socket.h>

struct wm_acl;
struct wm_worker;
struct wm_dial;

enum wm_dial_status {
    WM_DIAL_OK = 0,
    WM_DIAL_REFUSED,      /* RST on connect */
    WM_DIAL_HOST_UNREACH, /* no route to host, or every address failed */
    WM_DIAL_NET_UNREACH,  /* network unreachable / address family unusable */
    WM_DIAL_RESOLVE,      /* name does not resolve */
    WM_DIAL_TIMEOUT,      /* no answer within the connect timeout */
    WM_DIAL_ERROR,        /* anything else (local failure) */
    WM_DIAL_DENIED,       /* the target is one of this process's own listeners */
    WM_DIAL_FORBIDDEN,    /* the destination rules (net/acl.h) refuse the target */
    WM_DIAL_LOCAL,        /* our own socket() failed (out of descriptors, memory): not the
                           * target's fault, so no upstream server is marked failed for it */
    WM_DIAL_STATUS_COUNT
};

/* Called once, on the worker's thread. On WM_DIAL_OK, fd is a connected
 * non-blocking socket now owned by the callee, and peer/peerlen is the
 * address it reached; otherwise fd is -1. The wm_dial is freed after return. */
typedef void (*wm_dial_cb)(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                           socklen_t peerlen, void *arg);

/* Start dialing host (name or IP literal, no brackets) : port on worker w.
 * Every resolved address is checked before it is tried: one this process
 * listens on (net/lset.h) is skipped, logged, and when no other address is
 * left the dial ends with WM_DIAL_DENIED (a proxy must never hand a client
 * its own control API or tunnel ports).
 * timeout_ms covers resolution and all connect attempts. The callback may
 * run before this returns only never: it always runs from the event loop.
 * Returns a handle for wm_dial_cancel(), or NULL on immediate failure (OOM). */
struct wm_dial *wm_dial_start(struct wm_worker *w, const char *host, uint16_t port,
                              int timeout_ms, wm_dial_cb cb, void *arg);

/* A dial on behalf of a proxy client, under destination rules. */
struct wm_dial_req {
    const char *host;    /* name or IP literal, no brackets */
    uint16_t port;
    int timeout_ms;
    struct wm_acl *acl;  /* destination rules, or NULL; the dial holds a reference */
    uint64_t conn_id;    /* the client's connection, for the refusal's log line */
    const char *client;  /* "ip:port" of the client, or NULL (copied) */
};

/* wm_dial_start() under req->acl: a name a deny rule names is refused
 * before it is resolved; then each resolved address is judged
 * (wm_acl_target_ok) after the self check, a refused one skipped; when no
 * address is left the dial ends with WM_DIAL_FORBIDDEN. The first refusal
 * of a dial is logged once (warn: client, target, address, rule). */
struct wm_dial *wm_dial_start_req(struct wm_worker *w, const struct wm_dial_req *req,
                                  wm_dial_cb cb, void *arg);

/* Cancel a dial in progress: the callback will not run; d is freed. */
void wm_dial_cancel(struct wm_dial *d);

const char *wm_dial_status_str(enum wm_dial_status st);

/* The same as one token ("connection-refused", "no-socket"), for an access
 * line's end= field, which a space would split. */
const char *wm_dial_status_end(enum wm_dial_status st);

/* Map an errno from connect() to a status. */
enum wm_dial_status wm_dial_status_from_errno(int err);

#endif
