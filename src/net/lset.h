/*
 * net/lset.h - the set of listening addresses of the whole process, applied
 * to every worker at once (start and reload).
 *
 * wm_lset_apply() runs on the main thread: new addresses are bound there
 * first (one SO_REUSEPORT socket per worker), so a bind error fails the call
 * before anything changed. Then each worker, on its own thread, keeps its
 * sockets for addresses that stay (only their service is swapped: no
 * close/re-bind gap), adopts the new ones and closes the removed ones.
 * Connections already accepted are never touched.
 */
#ifndef WM_NET_LSET_H
#define WM_NET_LSET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct wm_err;
struct wm_service;
struct wm_worker;
struct wm_listen_stats;

struct wm_lspec {
    const char *addr;        /* "127.0.0.1:8090", "[::1]:8090" */
    struct wm_service *svc;  /* borrowed; the listeners take references */
    bool pinned;             /* only worker 0 listens (tunnel services) */
    bool dgram;              /* a UDP socket (svc->dgram); named "udp:ADDR" */
};

/* Make the listening set exactly specs[0..n). Returns 0, or -1 with err
 * filled (and nothing changed). Workers must be initialised; they may be
 * running or not yet started. Main thread only. */
int wm_lset_apply(const struct wm_lspec *specs, size_t n, struct wm_err *err);

/* Would a connection to target reach one of the listeners of the set? (A
 * wildcard listener is reached through loopback, the unspecified address
 * and every interface address.) Any thread. */
bool wm_lset_is_self(const struct sockaddr *target);

/* A listener of this process outside the set (the control API) that
 * wm_lset_is_self() must know too; up to WM_LSET_SELF_MAX. Any thread. */
#define WM_LSET_SELF_MAX 8
void wm_lset_self_add(const struct sockaddr *sa, socklen_t len);
void wm_lset_self_remove(const struct sockaddr *sa);

/* Close all listeners of worker w (drain at shutdown). Worker thread. */
void wm_lset_close_worker(struct wm_worker *w, void *unused);

/* Forget the main-thread bookkeeping after workers are joined. */
void wm_lset_free(void);

/* Per-address counters for status reporting: calls fn for each address. */
void wm_lset_foreach_stats(void (*fn)(const struct wm_listen_stats *s, const char *kind,
                                      void *arg),
                           void *arg);

#endif
