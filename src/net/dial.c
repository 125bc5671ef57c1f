#include "net/dial.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/acl.h"
#include "net/addr.h"
#include "net/lset.h"

#define WM_DIAL_MAX_ADDRS 8
#define WM_DIAL_MIN_ATTEMPT_MS 1000

struct wm_dial {
    struct wm_worker *w;
    wm_dial_cb cb;
    void *arg;
    uint16_t port;
    uint64_t deadline_ms;
    uint64_t start_ms;
    struct evdns_getaddrinfo_request *dns_req;
    struct event *ev;    /* write-ready on the connecting socket, or a deferred finish */
    struct event *timer; /* per-attempt timeout */
    int fd;
    struct sockaddr_storage addrs[WM_DIAL_MAX_ADDRS];
    socklen_t lens[WM_DIAL_MAX_ADDRS];
    int naddrs;
    int next;
    enum wm_dial_status worst;
    enum wm_dial_status deferred; /* for failures found before the loop runs */
    bool starting;                /* inside wm_dial_start() */
    bool cancelled;               /* owner gone; waiting for evdns to let go */
    bool acl_logged;              /* a refusal by the rules was logged */
    struct wm_acl *acl;           /* destination rules (a reference), or NULL */
    uint64_t conn_id;
    char name[WM_HOST_MAX];       /* the name asked for ("" for an IP literal) */
    char client[WM_ADDR_STR_MAX];
};

static void try_next(struct wm_dial *d);

const char *wm_dial_status_str(enum wm_dial_status st)
{
    static const char *const names[WM_DIAL_STATUS_COUNT] = {
        "ok", "connection refused", "host unreachable", "network unreachable",
        "name does not resolve", "connect timeout", "connect error",
        "target is this proxy's own listener",
        "target not allowed by this proxy's rules",
        "no socket for the connection (out of descriptors or memory)",
    };
    return (st >= 0 && st < WM_DIAL_STATUS_COUNT) ? names[st] : "?";
}

const char *wm_dial_status_end(enum wm_dial_status st)
{
    static const char *const names[WM_DIAL_STATUS_COUNT] = {
        "ok", "connection-refused", "host-unreachable", "network-unreachable",
        "name-does-not-resolve", "connect-timeout", "connect-error", "own-listener",
        "target-not-allowed", "no-socket",
    };
    return (st >= 0 && st < WM_DIAL_STATUS_COUNT) ? names[st] : "?";
}

enum wm_dial_status wm_dial_status_from_errno(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return WM_DIAL_REFUSED;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        return WM_DIAL_HOST_UNREACH;
    case ENETUNREACH:
    case ENETDOWN:
    case EAFNOSUPPORT:
    case EADDRNOTAVAIL:
        return WM_DIAL_NET_UNREACH;
    case ETIMEDOUT:
        return WM_DIAL_TIMEOUT;
    default:
        return WM_DIAL_ERROR;
    }
}

/* Keep the most telling error across attempts: refused beats timeout beats
 * unreachable beats generic. */
static void note_error(struct wm_dial *d, enum wm_dial_status st)
{
    static const int rank[WM_DIAL_STATUS_COUNT] = {0, 5, 3, 2, 1, 4, 1, 6, 7, 1};

    if (d->worst == WM_DIAL_OK || rank[st] > rank[d->worst]) {
        d->worst = st;
    }
}

static void dial_free(struct wm_dial *d)
{
    if (d->ev != NULL) {
        event_free(d->ev);
        d->ev = NULL;
    }
    if (d->timer != NULL) {
        event_free(d->timer);
        d->timer = NULL;
    }
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    wm_acl_unref(d->acl);
    d->acl = NULL;
    if (d->dns_req != NULL) {
        /* evdns reports the cancellation later, from the loop: d must stay
         * allocated until dns_cb sees it. */
        d->cancelled = true;
        evdns_getaddrinfo_cancel(d->dns_req);
        return;
    }
    free(d);
}

_Static_assert(WM_DIAL_STATUS_COUNT + 1 <= WM_MCACHE_IDS, "dial metrics fit a cache row");

static void make_dial_ids(const char *key, wm_metric *ids)
{
    static const char *const res[WM_DIAL_STATUS_COUNT] = {
        "ok", "refused", "host_unreachable", "net_unreachable", "resolve", "timeout",
        "error", "own_listener", "forbidden", "local"};
    char labels[64];

    (void)key;
    for (int i = 0; i < WM_DIAL_STATUS_COUNT; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", res[i]);
        ids[i] = wm_metrics_counter("wmproxy_upstream_connects_total",
                                    "Outgoing connections (upstreams, proxy targets, tunnel "
                                    "services) by result", labels);
    }
    ids[WM_DIAL_STATUS_COUNT] = wm_metrics_histogram(
        "wmproxy_upstream_connect_seconds", "Time to resolve and connect to an upstream", "");
}

static void count_dial(const struct wm_dial *d, enum wm_dial_status st)
{
    static struct wm_mcache cache;
    const wm_metric *ids = wm_mcache_get(&cache, "dial", make_dial_ids);

    if (st >= 0 && st < WM_DIAL_STATUS_COUNT) {
        wm_metrics_inc(ids[st]);
    }
    if (st == WM_DIAL_OK) {
        wm_metrics_observe_ms(ids[WM_DIAL_STATUS_COUNT], wm_now_ms() - d->start_ms);
    }
}

static void finish(struct wm_dial *d, int fd, enum wm_dial_status st)
{
    wm_dial_cb cb = d->cb;
    void *arg = d->arg;
    struct sockaddr_storage peer;
    socklen_t plen = 0;

    if (fd >= 0) {
        int idx = d->next - 1;
        peer = d->addrs[idx];
        plen = d->lens[idx];
        d->fd = -1; /* handed over */
    } else {
        memset(&peer, 0, sizeof(peer));
    }
    count_dial(d, st);
    dial_free(d);
    cb(fd, st, fd >= 0 ? (struct sockaddr *)&peer : NULL, plen, arg);
}

static void close_attempt(struct wm_dial *d)
{
    if (d->ev != NULL) {
        event_free(d->ev);
        d->ev = NULL;
    }
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    evtimer_del(d->timer);
}

static void connected_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_dial *d = arg;
    int err = 0;
    socklen_t elen = sizeof(err);

    if (what & EV_TIMEOUT) {
        return;
    }
    /* Watched for reading too: a failed connect reports EPOLLERR/EPOLLHUP,
     * which libevent turns into EV_READ | EV_WRITE, so EV_WRITE alone is a
     * connect that succeeded (no SO_ERROR query, one syscall less per
     * dial). With EV_READ (an error, or a server that spoke first) ask. */
    if ((what & EV_READ) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
        err = errno;
    }
    if (err == 0) {
        int one = 1;
        evtimer_del(d->timer);
        event_free(d->ev);
        d->ev = NULL;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        finish(d, fd, WM_DIAL_OK);
        return;
    }
    note_error(d, wm_dial_status_from_errno(err));
    close_attempt(d);
    try_next(d);
}

static void attempt_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_dial *d = arg;

    (void)fd;
    (void)what;
    note_error(d, WM_DIAL_TIMEOUT);
    close_attempt(d);
    try_next(d);
}

/* One line per dial refused by the rules (its first refused address). */
static void log_forbidden(struct wm_dial *d, const struct sockaddr *sa, const char *why)
{
    char as[WM_ADDR_STR_MAX] = "-";
    char target[WM_HOST_MAX + 8];

    if (d->acl_logged) {
        return;
    }
    d->acl_logged = true;
    if (sa != NULL) {
        wm_addr_format(sa, as, sizeof(as));
    }
    if (d->name[0] != '\0') {
        wm_addr_join(d->name, d->port, target, sizeof(target));
    } else {
        snprintf(target, sizeof(target), "%s", as);
    }
    wm_log(WM_LOG_WARN, d->conn_id, "acl: refused client=%s target=%s addr=%s rule=%s",
           d->client[0] ? d->client : "-", target, as, why);
}

static void try_next(struct wm_dial *d)
{
    uint64_t now = wm_now_ms();

    while (d->next < d->naddrs) {
        int i = d->next++;
        const struct sockaddr *sa = (const struct sockaddr *)&d->addrs[i];
        int fd;

        if (now >= d->deadline_ms) {
            note_error(d, WM_DIAL_TIMEOUT);
            break;
        }
        if (wm_lset_is_self(sa)) {
            char as[WM_ADDR_STR_MAX];
            wm_addr_format(sa, as, sizeof(as));
            wm_log(WM_LOG_WARN, d->conn_id,
                   "dial: refused client=%s target=%s: one of this process's own listeners",
                   d->client[0] ? d->client : "-", as);
            note_error(d, WM_DIAL_DENIED);
            continue;
        }
        const char *why = NULL;
        if (!wm_acl_target_ok(d->acl, d->name[0] ? d->name : NULL, sa, &why)) {
            log_forbidden(d, sa, why);
            note_error(d, WM_DIAL_FORBIDDEN);
            continue;
        }
        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            note_error(d, errno == EAFNOSUPPORT ? WM_DIAL_NET_UNREACH : WM_DIAL_LOCAL);
            continue;
        }
        if (connect(fd, sa, d->lens[i]) < 0 && errno != EINPROGRESS) {
            note_error(d, wm_dial_status_from_errno(errno));
            close(fd);
            continue;
        }
        d->fd = fd;
        d->ev = event_new(wm_worker_base(d->w), fd, EV_READ | EV_WRITE, connected_cb, d);
        if (d->ev == NULL) {
            note_error(d, WM_DIAL_LOCAL);
            close(fd);
            d->fd = -1;
            continue;
        }
        event_add(d->ev, NULL);
        /* Share the remaining time among the remaining addresses, so one
         * black-holed address cannot eat the whole budget. */
        uint64_t left = d->deadline_ms - now;
        uint64_t slice = left / (uint64_t)(d->naddrs - i);
        if (slice < WM_DIAL_MIN_ATTEMPT_MS) {
            slice = left < WM_DIAL_MIN_ATTEMPT_MS ? left : WM_DIAL_MIN_ATTEMPT_MS;
        }
        struct timeval tv = {(time_t)(slice / 1000), (suseconds_t)(slice % 1000) * 1000};
        evtimer_add(d->timer, &tv);
        return;
    }
    finish(d, -1, d->worst == WM_DIAL_OK ? WM_DIAL_HOST_UNREACH : d->worst);
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct wm_dial *d = arg;

    d->dns_req = NULL;
    if (d->cancelled) {
        if (res != NULL) {
            evutil_freeaddrinfo(res);
        }
        free(d);
        return;
    }
    if (result != 0 || res == NULL) {
        if (res != NULL) {
            evutil_freeaddrinfo(res);
        }
        d->deferred = WM_DIAL_RESOLVE;
        goto done;
    }
    for (struct evutil_addrinfo *ai = res; ai != NULL && d->naddrs < WM_DIAL_MAX_ADDRS;
         ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(d->addrs[0])) {
            continue;
        }
        bool dup = false;
        for (int i = 0; i < d->naddrs; i++) {
            if (wm_addr_equal((struct sockaddr *)&d->addrs[i], ai->ai_addr)) {
                dup = true;
            }
        }
        if (dup) {
            continue;
        }
        memcpy(&d->addrs[d->naddrs], ai->ai_addr, ai->ai_addrlen);
        d->lens[d->naddrs] = (socklen_t)ai->ai_addrlen;
        /* evdns fills the port from the service; force ours. */
        if (ai->ai_family == AF_INET) {
            ((struct sockaddr_in *)&d->addrs[d->naddrs])->sin_port = htons(d->port);
        } else {
            ((struct sockaddr_in6 *)&d->addrs[d->naddrs])->sin6_port = htons(d->port);
        }
        d->naddrs++;
    }
    evutil_freeaddrinfo(res);
    if (d->naddrs == 0) {
        d->deferred = WM_DIAL_RESOLVE;
    }
done:
    if (d->starting) {
        event_active(d->ev, EV_TIMEOUT, 0); /* never call back from inside start */
        return;
    }
    event_free(d->ev);
    d->ev = NULL;
    if (d->deferred != WM_DIAL_OK) {
        finish(d, -1, d->deferred);
        return;
    }
    try_next(d);
}

static void deferred_start_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_dial *d = arg;

    (void)fd;
    (void)what;
    event_free(d->ev);
    d->ev = NULL;
    if (d->deferred != WM_DIAL_OK) {
        finish(d, -1, d->deferred);
        return;
    }
    try_next(d);
}

/* Resolve host (a name) under the overall timeout; dns_cb goes on. */
static void resolve(struct wm_dial *d, const char *host, int timeout_ms)
{
    struct evutil_addrinfo hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* Resolution is bounded by the overall timeout through the timer. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(d->timer, &tv);
    d->starting = true;
    d->dns_req = evdns_getaddrinfo(wm_worker_dns(d->w), host, NULL, &hints, dns_cb, d);
    d->starting = false;
}

struct wm_dial *wm_dial_start_req(struct wm_worker *w, const struct wm_dial_req *req,
                                  wm_dial_cb cb, void *arg)
{
    struct wm_dial *d = calloc(1, sizeof(*d));
    int timeout_ms = req->timeout_ms;
    const char *why = NULL;

    if (d == NULL) {
        return NULL;
    }
    d->w = w;
    d->cb = cb;
    d->arg = arg;
    d->port = req->port;
    d->fd = -1;
    d->start_ms = wm_now_ms();
    d->deadline_ms = d->start_ms + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1);
    d->timer = evtimer_new(wm_worker_base(w), attempt_timeout_cb, d);
    if (d->timer == NULL) {
        free(d);
        return NULL;
    }
    d->ev = event_new(wm_worker_base(w), -1, 0, deferred_start_cb, d);
    if (d->ev == NULL) {
        event_free(d->timer);
        free(d);
        return NULL;
    }
    d->acl = wm_acl_ref(req->acl);
    d->conn_id = req->conn_id;
    snprintf(d->client, sizeof(d->client), "%s", req->client != NULL ? req->client : "");
    if (wm_addr_from_ip(req->host, req->port, &d->addrs[0], &d->lens[0]) == 0) {
        d->naddrs = 1;
        event_active(d->ev, EV_TIMEOUT, 0);
        return d;
    }
    snprintf(d->name, sizeof(d->name), "%s", req->host);
    if (!wm_addr_name_resolvable(d->name)) {
        d->deferred = WM_DIAL_RESOLVE;
        event_active(d->ev, EV_TIMEOUT, 0);
        return d;
    }
    if (wm_acl_name_denied(d->acl, d->name, d->port, &why)) {
        /* No lookup for a name the rules refuse whatever it resolves to. */
        log_forbidden(d, NULL, why);
        d->deferred = WM_DIAL_FORBIDDEN;
        event_active(d->ev, EV_TIMEOUT, 0);
        return d;
    }
    resolve(d, req->host, timeout_ms);
    return d;
}

struct wm_dial *wm_dial_start(struct wm_worker *w, const char *host, uint16_t port,
                              int timeout_ms, wm_dial_cb cb, void *arg)
{
    struct wm_dial_req req = {.host = host, .port = port, .timeout_ms = timeout_ms};

    return wm_dial_start_req(w, &req, cb, arg);
}

void wm_dial_cancel(struct wm_dial *d)
{
    if (d != NULL) {
        dial_free(d);
    }
}
