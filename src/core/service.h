/*
 * core/service.h - what a listener hands its accepted sockets to.
 *
 * A service is immutable configuration plus an accept function, shared by
 * every worker's listener for the same address and refcounted: each live
 * connection holds a reference, so a reload can swap the listener's service
 * while old connections finish under the one they started with.
 * Concrete services embed struct wm_service as their first member.
 */
#ifndef WM_CORE_SERVICE_H
#define WM_CORE_SERVICE_H

#include <sys/socket.h>

struct wm_worker;
struct wm_service;
struct wm_listen_stats;

/* Take over fd (a connected, non-blocking socket) on worker w. peer is the
 * client address; stats belongs to the listener that accepted it (may be
 * NULL) and must be referenced with wm_listen_stats_ref() if kept. */
typedef void (*wm_service_accept_fn)(struct wm_service *svc, struct wm_worker *w, int fd,
                                     const struct sockaddr *peer, socklen_t peerlen,
                                     struct wm_listen_stats *stats);

/* Datagram services (UDP listeners): the bound socket fd of worker w is
 * readable. *state is the listener's (NULL at first): the service keeps
 * its per-socket state there (sessions), and it outlives a reload's
 * service swap; dgram_free releases it when the socket closes. */
typedef void (*wm_service_dgram_fn)(struct wm_service *svc, struct wm_worker *w, int fd,
                                    struct wm_listen_stats *stats, void **state);

struct wm_service {
    int refs;                         /* atomic */
    const char *kind;                 /* "proxy", "control", ... for logs and status */
    wm_service_accept_fn accept;
    void (*destroy)(struct wm_service *svc); /* frees the concrete service */
    wm_service_dgram_fn dgram;        /* set: a UDP service (accept unused) */
    void (*dgram_free)(void *state);
};

/* Set refs to 1 and fill the fields. */
void wm_service_init(struct wm_service *svc, const char *kind, wm_service_accept_fn accept,
                     void (*destroy)(struct wm_service *));
struct wm_service *wm_service_ref(struct wm_service *svc);
/* Drop a reference; the last one calls destroy. NULL is a no-op. */
void wm_service_unref(struct wm_service *svc);

/* Per listen address counters, shared by the workers' listeners and by the
 * connections they accepted (refcounted, atomic). */
struct wm_listen_stats {
    int refs;
    char addr[64];
    unsigned long long open;      /* connections now */
    unsigned long long accepted;  /* since start */
    unsigned long long bytes_in;  /* from clients */
    unsigned long long bytes_out; /* to clients */
};

struct wm_listen_stats *wm_listen_stats_new(const char *addr);
struct wm_listen_stats *wm_listen_stats_ref(struct wm_listen_stats *s);
void wm_listen_stats_unref(struct wm_listen_stats *s);
/* Connection accounting: open++ on start, open-- and bytes on close. */
void wm_listen_stats_conn_open(struct wm_listen_stats *s);
void wm_listen_stats_conn_close(struct wm_listen_stats *s, unsigned long long in,
                                unsigned long long out);
/* Client connections open on every listener of the process (those counted
 * above; any thread). */
size_t wm_listen_open_total(void);

#endif
