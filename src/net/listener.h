/*
 * net/listener.h - one listening socket on one worker (SO_REUSEPORT, so
 * every worker has its own socket on the same address and the kernel spreads
 * connections among them).
 */
#ifndef WM_NET_LISTENER_H
#define WM_NET_LISTENER_H

#include <stdint.h>
#include <sys/socket.h>

struct wm_err;
struct wm_listen_stats;
struct wm_listener;
struct wm_service;
struct wm_worker;

/* Create a bound socket for sa (SOCK_STREAM listening, or SOCK_DGRAM bound),
 * with SO_REUSEADDR + SO_REUSEPORT, IPV6_V6ONLY for v6, non-blocking.
 * Returns the fd, or -1 with err filled ("bind 127.0.0.1:80: Address in use"). */
int wm_listen_socket(const struct sockaddr *sa, socklen_t len, int type, struct wm_err *err);

/* Is the address free for type (SOCK_STREAM, SOCK_DGRAM)? SO_REUSEPORT
 * would let a new socket share a port that someone (this process included)
 * already holds, so this probes with an exclusive bind. Returns 0, or -1
 * with err filled. */
int wm_listen_probe(const struct sockaddr *sa, socklen_t len, int type, struct wm_err *err);

/* Accept on the listening socket fd (from wm_listen_socket) in worker w,
 * handing accepted sockets to svc. Takes fd (closed on failure too) and a
 * reference on svc and on stats (stats may be NULL). addr names it in logs.
 * Returns NULL on failure (OOM). Call on w's thread or before w starts. */
struct wm_listener *wm_listener_new(struct wm_worker *w, int fd, const char *addr,
                                    struct wm_service *svc, struct wm_listen_stats *stats);

/* At most max client connections open in the process (0: no cap but the
 * descriptors): at the cap every TCP listener stops accepting (one warn line
 * a second per listener) until connections close; new clients wait in the
 * kernel's backlog. Any thread (start, reload). */
void wm_listener_set_max_connections(size_t max);
size_t wm_listener_max_connections(void);

/* A listener's accept pauses (out of descriptors, at max_connections):
 * one warn line a second at most, with the count of pauses not logged. */
struct wm_accept_pauses {
    uint64_t log_ms;         /* when the last line went out */
    unsigned long quiet;     /* pauses since, not logged */
};
/* One pause of ms on addr, for what; who prefixes the line ("" or
 * "control: "). */
void wm_accept_pause_note(struct wm_accept_pauses *p, const char *who, const char *addr,
                          const char *what, int ms);

/* Replace the service new connections go to (reload). References svc,
 * releases the old one. Worker thread only. */
void wm_listener_set_service(struct wm_listener *l, struct wm_service *svc);

struct wm_service *wm_listener_service(const struct wm_listener *l);
struct wm_listen_stats *wm_listener_stats(const struct wm_listener *l);
const char *wm_listener_addr(const struct wm_listener *l); /* "127.0.0.1:8090" */

/* Stop accepting and close the socket; releases svc and stats. NULL: no-op. */
void wm_listener_free(struct wm_listener *l);

#endif
