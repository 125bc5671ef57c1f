#include "net/lset.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/service.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/listener.h"

/* Main-thread view of what is listening. */
struct entry {
    char addr[WM_ADDR_STR_MAX]; /* canonical form */
    struct sockaddr_storage sa; /* the same, parsed (wm_lset_is_self) */
    const char *kind;
    bool pinned; /* worker 0 only */
    struct wm_listen_stats *stats;
};

static struct entry *cur;
static size_t ncur;
static pthread_mutex_t cur_lock = PTHREAD_MUTEX_INITIALIZER;

/* Per worker, touched only by that worker's thread. */
struct wlist {
    struct wm_listener **ls;
    size_t n;
};
static struct wlist *wl;
static int nwl;

/* A reconcile job for one worker. */
struct item {
    char addr[WM_ADDR_STR_MAX];
    bool pinned; /* worker 0 only */
    int fd; /* -1: keep the existing socket */
    struct wm_service *svc;
    struct wm_listen_stats *stats;
};

struct job {
    struct item *items;
    size_t n;
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    int *pending;
};

static int canonical(const char *addr, char *out, size_t cap, struct sockaddr_storage *ss,
                     socklen_t *len)
{
    if (wm_addr_parse_listen(addr, ss, len) < 0) {
        return -1;
    }
    wm_addr_format((struct sockaddr *)ss, out, cap);
    return 0;
}

static void reconcile(struct wm_worker *w, void *arg)
{
    struct job *j = arg;
    struct wlist *l = &wl[wm_worker_index(w)];
    struct wm_listener **next = calloc(j->n ? j->n : 1, sizeof(*next));
    size_t nn = 0;

    for (size_t i = 0; i < j->n; i++) {
        struct item *it = &j->items[i];
        struct wm_listener *found = NULL;
        if (it->pinned && wm_worker_index(w) != 0) {
            continue; /* an old unpinned listener for it is closed below */
        }
        for (size_t k = 0; k < l->n; k++) {
            if (l->ls[k] != NULL && strcmp(wm_listener_addr(l->ls[k]), it->addr) == 0) {
                found = l->ls[k];
                l->ls[k] = NULL;
                break;
            }
        }
        if (found != NULL) {
            wm_listener_set_service(found, it->svc);
            if (it->fd >= 0) {
                close(it->fd);
            }
        } else if (it->fd >= 0) {
            found = wm_listener_new(w, it->fd, it->addr, it->svc, it->stats);
            if (found == NULL) {
                wm_log(WM_LOG_ERROR, 0, "worker %d: cannot listen on %s: out of memory",
                       wm_worker_index(w), it->addr);
            }
        }
        if (found != NULL && next != NULL) {
            next[nn++] = found;
        } else if (found != NULL) {
            wm_listener_free(found);
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        wm_listener_free(l->ls[k]); /* removed addresses (NULL: moved above) */
    }
    free(l->ls);
    l->ls = next;
    l->n = nn;
    for (size_t i = 0; i < j->n; i++) {
        wm_service_unref(j->items[i].svc);
        wm_listen_stats_unref(j->items[i].stats);
    }
    free(j->items);
    pthread_mutex_lock(j->lock);
    (*j->pending)--;
    pthread_cond_signal(j->cond);
    pthread_mutex_unlock(j->lock);
    free(j);
}

static struct entry *find_cur(const char *addr)
{
    for (size_t i = 0; i < ncur; i++) {
        if (strcmp(cur[i].addr, addr) == 0) {
            return &cur[i];
        }
    }
    return NULL;
}

/* Step 1 for specs[i], on the main thread: its canonical address (used
 * once), its counters, and the sockets it newly needs in fds[i * nw + k]
 * (k: worker). 0, or -1 with err filled. */
static int bind_spec(const struct wm_lspec *specs, size_t i, struct entry *nent, int *fds, int nw,
                     struct wm_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int *wfd = fds + i * (size_t)nw;
    int first;
    int last;

    if (canonical(specs[i].addr, nent[i].addr, sizeof(nent[i].addr), &ss, &len) < 0) {
        return wm_err_set(err, NULL, 0, 0, NULL, "bad listen address \"%s\"", specs[i].addr);
    }
    if (specs[i].dgram) {
        /* UDP and TCP on one port are two listeners */
        char tmp[WM_ADDR_STR_MAX];
        snprintf(tmp, sizeof(tmp), "%s", nent[i].addr);
        snprintf(nent[i].addr, sizeof(nent[i].addr), "udp:%.*s",
                 (int)sizeof(nent[i].addr) - 5, tmp);
    }
    for (size_t k = 0; k < i; k++) {
        if (strcmp(nent[k].addr, nent[i].addr) == 0) {
            return wm_err_set(err, NULL, 0, 0, NULL, "address %s is used twice", nent[i].addr);
        }
    }
    nent[i].sa = ss;
    nent[i].kind = specs[i].svc->kind;
    nent[i].pinned = specs[i].pinned;
    struct entry *old = find_cur(nent[i].addr);
    if (old != NULL) {
        nent[i].stats = wm_listen_stats_ref(old->stats);
        /* Worker 0 keeps its socket. A port that was worker 0's only (a
         * tunnel port) and now serves on every worker gets sockets for the
         * others; the other way, theirs close in reconcile. */
        first = 1;
        last = old->pinned && !specs[i].pinned ? nw : 1;
    } else {
        if (!specs[i].dgram && wm_listen_probe((struct sockaddr *)&ss, len, SOCK_STREAM, err) < 0) {
            return -1; /* in use, by another process or by us */
        }
        nent[i].stats = wm_listen_stats_new(nent[i].addr);
        first = 0;
        last = specs[i].pinned ? 1 : nw;
    }
    for (int k = first; k < last; k++) {
        wfd[k] = wm_listen_socket((struct sockaddr *)&ss, len,
                                  specs[i].dgram ? SOCK_DGRAM : SOCK_STREAM, err);
        if (wfd[k] < 0) {
            return -1;
        }
    }
    return 0;
}

/* Worker k's part of the new set; its sockets move from fds into the job.
 * NULL when out of memory (the sockets stay in fds). */
static struct job *job_new(const struct wm_lspec *specs, size_t n, const struct entry *nent,
                           int *fds, int nw, int k)
{
    struct job *j = calloc(1, sizeof(*j));
    struct item *items = calloc(n ? n : 1, sizeof(*items));

    if (j == NULL || items == NULL) {
        free(j);
        free(items);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(items[i].addr, sizeof(items[i].addr), "%s", nent[i].addr);
        items[i].pinned = specs[i].pinned;
        items[i].fd = fds[i * (size_t)nw + (size_t)k];
        fds[i * (size_t)nw + (size_t)k] = -1;
        items[i].svc = wm_service_ref(specs[i].svc);
        items[i].stats = wm_listen_stats_ref(nent[i].stats);
    }
    j->items = items;
    j->n = n;
    return j;
}

/* Step 2: hand each worker its part; wait until all are done. */
static void run_jobs(const struct wm_lspec *specs, size_t n, const struct entry *nent, int *fds,
                     int nw)
{
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int pending = 0;

    for (int k = 0; k < nw; k++) {
        struct job *j = job_new(specs, n, nent, fds, nw, k);
        if (j == NULL) {
            /* Cannot fail half-way sensibly: log and carry on with fewer. */
            wm_log(WM_LOG_ERROR, 0, "listeners: out of memory for worker %d", k);
            continue;
        }
        j->lock = &lock;
        j->cond = &cond;
        j->pending = &pending;
        pthread_mutex_lock(&lock);
        pending++;
        pthread_mutex_unlock(&lock);
        if (wm_worker_post(wm_worker_get(k), reconcile, j) < 0) {
            wm_log(WM_LOG_ERROR, 0, "listeners: cannot reach worker %d", k);
            reconcile(wm_worker_get(k), j); /* workers not running: safe enough */
        }
    }
    pthread_mutex_lock(&lock);
    while (pending > 0) {
        pthread_cond_wait(&cond, &lock);
    }
    pthread_mutex_unlock(&lock);
    pthread_mutex_destroy(&lock);
    pthread_cond_destroy(&cond);
}

/* Step 3: nent[0..n) becomes the current set (taken over). */
static void swap_current(struct entry *nent, size_t n)
{
    pthread_mutex_lock(&cur_lock);
    for (size_t i = 0; i < ncur; i++) {
        wm_listen_stats_unref(cur[i].stats);
    }
    free(cur);
    cur = nent;
    ncur = n;
    pthread_mutex_unlock(&cur_lock);
}

static void close_fds(int *fds, size_t nfds)
{
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
}

int wm_lset_apply(const struct wm_lspec *specs, size_t n, struct wm_err *err)
{
    int nw = wm_worker_count();
    size_t nfds = (n ? n : 1) * (size_t)nw;
    struct entry *nent = calloc(n ? n : 1, sizeof(*nent));
    int *fds = malloc(nfds * sizeof(int));

    if (wl == NULL && nent != NULL && fds != NULL) {
        wl = calloc((size_t)nw, sizeof(*wl));
        nwl = wl != NULL ? nw : 0;
    }
    if (nent == NULL || fds == NULL || wl == NULL) {
        free(nent);
        free(fds);
        return wm_err_set(err, NULL, 0, 0, NULL, "out of memory");
    }
    for (size_t i = 0; i < nfds; i++) {
        fds[i] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (bind_spec(specs, i, nent, fds, nw, err) < 0) {
            close_fds(fds, nfds);
            for (size_t k = 0; k < n; k++) {
                wm_listen_stats_unref(nent[k].stats);
            }
            free(nent);
            free(fds);
            return -1;
        }
    }
    run_jobs(specs, n, nent, fds, nw);
    close_fds(fds, nfds); /* those of a worker whose job could not be made */
    swap_current(nent, n);
    free(fds);
    return 0;
}

void wm_lset_close_worker(struct wm_worker *w, void *unused)
{
    struct wlist *l;

    (void)unused;
    if (wl == NULL) {
        return;
    }
    l = &wl[wm_worker_index(w)];
    for (size_t k = 0; k < l->n; k++) {
        wm_listener_free(l->ls[k]);
    }
    free(l->ls);
    l->ls = NULL;
    l->n = 0;
}

void wm_lset_free(void)
{
    if (wl != NULL) {
        for (int k = 0; k < nwl; k++) {
            for (size_t i = 0; i < wl[k].n; i++) {
                wm_listener_free(wl[k].ls[i]);
            }
            free(wl[k].ls);
        }
        free(wl);
        wl = NULL;
        nwl = 0;
    }
    pthread_mutex_lock(&cur_lock);
    for (size_t i = 0; i < ncur; i++) {
        wm_listen_stats_unref(cur[i].stats);
    }
    free(cur);
    cur = NULL;
    ncur = 0;
    pthread_mutex_unlock(&cur_lock);
}

void wm_lset_foreach_stats(void (*fn)(const struct wm_listen_stats *s, const char *kind,
                                      void *arg),
                           void *arg)
{
    pthread_mutex_lock(&cur_lock);
    for (size_t i = 0; i < ncur; i++) {
        fn(cur[i].stats, cur[i].kind, arg);
    }
    pthread_mutex_unlock(&cur_lock);
}

/* ---- this process's own addresses ---- */

/* Is ip one of this host's interface addresses? (Only asked when a
 * wildcard listener has the target's port: rare, so no cache.) */
static bool is_local_interface(const struct sockaddr *ip)
{
    struct ifaddrs *ifs;
    bool found = false;

    if (getifaddrs(&ifs) < 0) {
        return true; /* cannot tell: refuse rather than reach ourselves */
    }
    for (struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
        found = i->ifa_addr != NULL && wm_addr_same_ip(i->ifa_addr, ip);
    }
    freeifaddrs(ifs);
    return found;
}

/* Would a connection to target reach the listener bound to l? */
static bool reaches(const struct sockaddr *l, const struct sockaddr *target)
{
    int tc = wm_addr_ip_class(target);

    if (wm_addr_port(l) != wm_addr_port(target)) {
        return false;
    }
    if (tc == WM_ADDR_UNSPECIFIED || wm_addr_same_ip(l, target)) {
        return true; /* connecting to 0.0.0.0 / :: reaches a local listener */
    }
    if (wm_addr_ip_class(l) != WM_ADDR_UNSPECIFIED) {
        return false;
    }
    return tc == WM_ADDR_LOOPBACK || is_local_interface(target);
}

/* Listeners outside the set (the control API), by wm_lset_self_add(). */
static struct sockaddr_storage extra[WM_LSET_SELF_MAX];
static size_t nextra;

void wm_lset_self_add(const struct sockaddr *sa, socklen_t len)
{
    pthread_mutex_lock(&cur_lock);
    if (nextra < WM_LSET_SELF_MAX && len <= sizeof(extra[0])) {
        memset(&extra[nextra], 0, sizeof(extra[0]));
        memcpy(&extra[nextra++], sa, len);
    }
    pthread_mutex_unlock(&cur_lock);
}

void wm_lset_self_remove(const struct sockaddr *sa)
{
    pthread_mutex_lock(&cur_lock);
    for (size_t i = 0; i < nextra; i++) {
        if (wm_addr_equal((const struct sockaddr *)&extra[i], sa)) {
            extra[i] = extra[--nextra];
            break;
        }
    }
    pthread_mutex_unlock(&cur_lock);
}

bool wm_lset_is_self(const struct sockaddr *target)
{
    bool self = false;

    pthread_mutex_lock(&cur_lock);
    for (size_t i = 0; i < nextra && !self; i++) {
        self = reaches((const struct sockaddr *)&extra[i], target);
    }
    for (size_t i = 0; i < ncur && !self; i++) {
        /* dials are TCP: a UDP port of ours is not one of them */
        self = strncmp(cur[i].addr, "udp:", 4) != 0 &&
               reaches((const struct sockaddr *)&cur[i].sa, target);
    }
    pthread_mutex_unlock(&cur_lock);
    return self;
}
