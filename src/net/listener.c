#include "net/listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/addr.h"

#define WM_ACCEPT_RETRY_MS 200
#define WM_ACCEPT_LOG_MS   1000 /* one pause line per listener at most this often */
#define WM_FULL_RETRY_MS   50   /* at max_connections: look again this often */

static size_t max_conns; /* wm_listener_set_max_connections(); 0: none */

void wm_listener_set_max_connections(size_t max)
{
    __atomic_store_n(&max_conns, max, __ATOMIC_RELAXED);
}

size_t wm_listener_max_connections(void)
{
    return __atomic_load_n(&max_conns, __ATOMIC_RELAXED);
}

static bool at_max(void)
{
    size_t max = __atomic_load_n(&max_conns, __ATOMIC_RELAXED);

    return max > 0 && wm_listen_open_total() >= max;
}

struct wm_listener {
    struct wm_worker *w;
    struct evconnlistener *evl;
    struct event *dgram_ev;  /* instead of evl for a UDP service */
    void *dgram_state;       /* the service's, kept across service swaps */
    void (*dgram_free)(void *state);
    struct event *retry_ev;
    struct wm_accept_pauses pauses;
    struct wm_service *svc;
    struct wm_listen_stats *stats;
    char addr[WM_ADDR_STR_MAX];
};

int wm_listen_probe(const struct sockaddr *sa, socklen_t len, int type, struct wm_err *err)
{
    int probe = socket(sa->sa_family, type | SOCK_CLOEXEC, 0);
    int one = 1;
    int r = 0;

    if (probe < 0) {
        return 0; /* cannot tell: the real bind decides */
    }
    if (type == SOCK_STREAM) {
        /* TCP: only TIME_WAIT is let through (on UDP it would share the port) */
        setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (sa->sa_family == AF_INET6) {
        setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(probe, sa, len) < 0 && errno == EADDRINUSE) {
        char name[WM_ADDR_STR_MAX];
        wm_addr_format(sa, name, sizeof(name));
        wm_err_set(err, NULL, 0, 0, NULL, "bind %s: %s", name, strerror(EADDRINUSE));
        r = -1;
    }
    close(probe);
    return r;
}

int wm_listen_socket(const struct sockaddr *sa, socklen_t len, int type, struct wm_err *err)
{
    char name[WM_ADDR_STR_MAX];
    int one = 1;
    int fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    wm_addr_format(sa, name, sizeof(name));
    if (fd < 0) {
        wm_err_set(err, NULL, 0, 0, NULL, "socket for %s: %s", name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        wm_err_set(err, NULL, 0, 0, NULL, "SO_REUSEPORT on %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (sa->sa_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, sa, len) < 0) {
        wm_err_set(err, NULL, 0, 0, NULL, "bind %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, WM_LISTEN_BACKLOG) < 0) {
        wm_err_set(err, NULL, 0, 0, NULL, "listen %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Stop accepting for ms, saying why (what) once a second at most, not at
 * every pause. */
void wm_accept_pause_note(struct wm_accept_pauses *p, const char *who, const char *addr,
                          const char *what, int ms)
{
    uint64_t now = wm_now_coarse_ms();

    if (p->log_ms == 0 || now - p->log_ms >= WM_ACCEPT_LOG_MS) {
        wm_log(WM_LOG_WARN, 0, "%saccept on %s: %s; pausing %d ms (%lu more pauses since the "
               "last such line)", who, addr, what, ms, p->quiet);
        p->log_ms = now;
        p->quiet = 0;
    } else {
        p->quiet++;
    }
}

static void pause_accept(struct wm_listener *l, const char *what, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    wm_accept_pause_note(&l->pauses, "", l->addr, what, ms);
    evconnlistener_disable(l->evl);
    evtimer_add(l->retry_ev, &tv);
}

static void pause_full(struct wm_listener *l)
{
    char what[64];

    snprintf(what, sizeof(what), "max_connections (%zu) reached",
             __atomic_load_n(&max_conns, __ATOMIC_RELAXED));
    pause_accept(l, what, WM_FULL_RETRY_MS);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct wm_listener *l = arg;
    int one = 1;

    (void)evl;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    l->svc->accept(l->svc, l->w, fd, sa, (socklen_t)salen, l->stats);
    if (at_max() && l->evl != NULL) {
        pause_full(l); /* this one was taken; the next ones wait in the backlog */
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_listener *l = arg;

    (void)fd;
    (void)what;
    if (wm_worker_draining(l->w)) {
        return;
    }
    if (at_max()) {
        pause_full(l);
        return;
    }
    evconnlistener_enable(l->evl);
}

/* Out of descriptors or memory: pause instead of spinning on accept. */
static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    pause_accept(arg, strerror(errno), WM_ACCEPT_RETRY_MS);
}

static void dgram_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_listener *l = arg;

    (void)what;
    l->svc->dgram(l->svc, l->w, fd, l->stats, &l->dgram_state);
    l->dgram_free = l->svc->dgram_free;
}

/* A UDP service's socket: readable events go to svc->dgram. */
static struct wm_listener *dgram_new(struct wm_listener *l, int fd, struct wm_service *svc,
                                     struct wm_listen_stats *stats)
{
    l->dgram_ev = event_new(wm_worker_base(l->w), fd, EV_READ | EV_PERSIST, dgram_cb, l);
    if (l->dgram_ev == NULL || event_add(l->dgram_ev, NULL) < 0) {
        if (l->dgram_ev != NULL) {
            event_free(l->dgram_ev);
        }
        close(fd);
        free(l);
        return NULL;
    }
    l->svc = wm_service_ref(svc);
    l->stats = wm_listen_stats_ref(stats);
    return l;
}

struct wm_listener *wm_listener_new(struct wm_worker *w, int fd, const char *addr,
                                    struct wm_service *svc, struct wm_listen_stats *stats)
{
    struct wm_listener *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        close(fd);
        return NULL;
    }
    l->w = w;
    snprintf(l->addr, sizeof(l->addr), "%s", addr);
    if (svc->dgram != NULL) {
        return dgram_new(l, fd, svc, stats);
    }
    l->retry_ev = evtimer_new(wm_worker_base(w), retry_cb, l);
    l->evl = evconnlistener_new(wm_worker_base(w), accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (l->evl == NULL || l->retry_ev == NULL) {
        if (l->evl == NULL) {
            close(fd);
        } else {
            evconnlistener_free(l->evl);
        }
        if (l->retry_ev != NULL) {
            event_free(l->retry_ev);
        }
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, accept_error_cb);
    l->svc = wm_service_ref(svc);
    l->stats = wm_listen_stats_ref(stats);
    return l;
}

void wm_listener_set_service(struct wm_listener *l, struct wm_service *svc)
{
    struct wm_service *old = l->svc;

    l->svc = wm_service_ref(svc);
    wm_service_unref(old);
}

struct wm_service *wm_listener_service(const struct wm_listener *l)
{
    return l->svc;
}

struct wm_listen_stats *wm_listener_stats(const struct wm_listener *l)
{
    return l->stats;
}

const char *wm_listener_addr(const struct wm_listener *l)
{
    return l->addr;
}

void wm_listener_free(struct wm_listener *l)
{
    if (l == NULL) {
        return;
    }
    if (l->dgram_ev != NULL) {
        int fd = event_get_fd(l->dgram_ev);
        event_free(l->dgram_ev);
        if (l->dgram_free != NULL) {
            l->dgram_free(l->dgram_state);
        }
        close(fd);
    } else {
        evconnlistener_free(l->evl);
        event_free(l->retry_ev);
    }
    wm_service_unref(l->svc);
    wm_listen_stats_unref(l->stats);
    free(l);
}
