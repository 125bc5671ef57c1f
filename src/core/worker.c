#include "core/worker.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/logq.h"
#include "core/metrics.h"

struct post_item {
    struct post_item *next;
    wm_worker_fn fn;
    void *arg;
};

struct wm_worker {
    int index;
    pthread_t thread;
    bool started;
    struct event_base *base;
    struct evdns_base *dns;
    /* Cross-thread queue, drained by notify_ev on the worker's thread. */
    pthread_mutex_t lock;
    struct post_item *head;
    struct post_item *tail;
    struct event *notify_ev;
    int notify_fd; /* eventfd: other threads wake the loop through it */
    bool closed;   /* under lock: the loop is ending, posts are refused */
    /* Live connections. */
    struct wm_conn_link conns; /* sentinel */
    size_t nconns;
    bool draining;
    struct event *grace_ev;
    int grace_ms;
    wm_worker_fn drain_fn;
    void *drain_arg;
};

static struct wm_worker **workers;
static int nworkers;
static wm_worker_fn exit_hook;
static void *exit_hook_arg;
static __thread struct wm_worker *self_worker;

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_worker *w = arg;
    struct post_item *it;

    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: already drained by an earlier wake-up */
    }
    pthread_mutex_lock(&w->lock);
    it = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (it != NULL) {
        struct post_item *next = it->next;
        it->fn(w, it->arg);
        free(it);
        it = next;
    }
}

static struct wm_worker *worker_new(int index)
{
    struct wm_worker *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->index = index;
    w->conns.next = w->conns.prev = &w->conns;
    pthread_mutex_init(&w->lock, NULL);
    w->notify_fd = -1;
    /* No libevent locking: a base is only ever touched by its own thread;
     * other threads go through the queue and the eventfd. The changelist
     * folds the add/del pairs of one loop turn into one epoll_ctl. */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL) {
        goto fail;
    }
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (w->base == NULL) {
        goto fail;
    }
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->notify_fd < 0) {
        goto fail;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (w->dns == NULL) {
        /* No usable resolv.conf: keep /etc/hosts and IP literals working. */
        w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (w->dns == NULL) {
            goto fail;
        }
        evdns_base_load_hosts(w->dns, NULL);
        wm_log(WM_LOG_WARN, 0, "dns: no nameserver configured; only /etc/hosts resolves");
    }
    evdns_base_set_option(w->dns, "timeout:", "3");
    evdns_base_set_option(w->dns, "attempts:", "2");
    w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
    if (w->notify_ev == NULL) {
        goto fail;
    }
    event_add(w->notify_ev, NULL); /* keeps the loop alive until drained */
    return w;
fail:
    if (w->notify_fd >= 0) {
        close(w->notify_fd);
    }
    if (w->dns != NULL) {
        evdns_base_free(w->dns, 0);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
    pthread_mutex_destroy(&w->lock);
    free(w);
    return NULL;
}

static void worker_free(struct wm_worker *w)
{
    struct post_item *it = w->head;

    while (it != NULL) {
        struct post_item *next = it->next;
        free(it);
        it = next;
    }
    if (w->grace_ev != NULL) {
        event_free(w->grace_ev);
    }
    event_free(w->notify_ev);
    close(w->notify_fd);
    evdns_base_free(w->dns, 1);
    event_base_free(w->base);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int wm_workers_init(int n)
{
    if (n < 1) {
        n = 1;
    }
    workers = calloc((size_t)n, sizeof(*workers));
    if (workers == NULL) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        workers[i] = worker_new(i);
        if (workers[i] == NULL) {
            for (int j = 0; j < i; j++) {
                worker_free(workers[j]);
            }
            free(workers);
            workers = NULL;
            return -1;
        }
    }
    nworkers = n;
    return 0;
}

static void *worker_main(void *arg)
{
    struct wm_worker *w = arg;

    self_worker = w;
    wm_metrics_bind_thread(w->index);
    wm_logq_bind_thread(w->index);
    event_base_dispatch(w->base);
    pthread_mutex_lock(&w->lock);
    w->closed = true; /* however the loop ended */
    pthread_mutex_unlock(&w->lock);
    notify_cb(w->notify_fd, EV_READ, w); /* posts queued before the loop closed */
    if (exit_hook != NULL) {
        exit_hook(w, exit_hook_arg);
    }
    /* Deferred callbacks still queued hold references on their
     * bufferevents: let them run so everything is released. */
    for (int i = 0; i < 4; i++) {
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    }
    self_worker = NULL;
    return NULL;
}

void wm_workers_set_exit_hook(wm_worker_fn fn, void *arg)
{
    exit_hook = fn;
    exit_hook_arg = arg;
}

int wm_workers_start(void)
{
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i]->thread, NULL, worker_main, workers[i]) != 0) {
            return -1;
        }
        workers[i]->started = true;
    }
    return 0;
}

int wm_worker_post(struct wm_worker *w, wm_worker_fn fn, void *arg)
{
    struct post_item *it = malloc(sizeof(*it));

    if (it == NULL) {
        return -1;
    }
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->closed) {
        /* Nobody would run it (and a wm_worker_call would wait forever). */
        pthread_mutex_unlock(&w->lock);
        free(it);
        return -1;
    }
    if (w->tail != NULL) {
        w->tail->next = it;
    } else {
        w->head = it;
    }
    w->tail = it;
    pthread_mutex_unlock(&w->lock);
    uint64_t one = 1;
    if (write(w->notify_fd, &one, sizeof(one)) < 0) {
        /* counter saturated: a wake-up is pending anyway */
    }
    return 0;
}

struct sync_call {
    wm_worker_fn fn;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void sync_trampoline(struct wm_worker *w, void *arg)
{
    struct sync_call *c = arg;

    c->fn(w, c->arg);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int wm_worker_call(struct wm_worker *w, wm_worker_fn fn, void *arg)
{
    struct sync_call c = {fn, arg, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

    if (!w->started) {
        fn(w, arg); /* no loop runs yet: the calling thread may touch it */
        return 0;
    }
    if (wm_worker_post(w, sync_trampoline, &c) < 0) {
        return -1;
    }
    pthread_mutex_lock(&c.lock);
    while (!c.done) {
        pthread_cond_wait(&c.cond, &c.lock);
    }
    pthread_mutex_unlock(&c.lock);
    pthread_mutex_destroy(&c.lock);
    pthread_cond_destroy(&c.cond);
    return 0;
}

static void worker_finish_drain(struct wm_worker *w)
{
    /* Remove what keeps the loop alive; pending DNS requests are cancelled.
     * Posts from now on are refused; those already queued run in
     * worker_main once the loop has ended. */
    pthread_mutex_lock(&w->lock);
    w->closed = true;
    pthread_mutex_unlock(&w->lock);
    event_del(w->notify_ev);
    if (w->grace_ev != NULL) {
        event_del(w->grace_ev);
    }
    event_base_loopexit(w->base, NULL);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_worker *w = arg;

    (void)fd;
    (void)what;
    if (w->nconns > 0) {
        wm_log(WM_LOG_WARN, 0, "worker %d: grace period over, closing %zu connection(s)",
               w->index, w->nconns);
    }
    while (w->conns.next != &w->conns) {
        struct wm_conn_link *l = w->conns.next;
        l->abort(l); /* unlinks itself */
        if (w->conns.next == l) {
            wm_worker_conn_del(w, l); /* defensive: never spin */
        }
    }
    worker_finish_drain(w);
}

static void drain_on_worker(struct wm_worker *w, void *arg)
{
    (void)arg;
    /* Under the lock: a second wm_workers_drain() may be writing them. */
    pthread_mutex_lock(&w->lock);
    int grace_ms = w->grace_ms;
    wm_worker_fn drain_fn = w->drain_fn;
    void *drain_arg = w->drain_arg;
    pthread_mutex_unlock(&w->lock);
    if (w->draining) {
        /* A second request with no grace: stop waiting, abort what is left. */
        if (grace_ms == 0 && w->grace_ev != NULL && evtimer_pending(w->grace_ev, NULL)) {
            grace_cb(-1, 0, w);
        }
        return;
    }
    w->draining = true;
    if (drain_fn != NULL) {
        drain_fn(w, drain_arg);
    }
    if (w->nconns == 0) {
        worker_finish_drain(w);
        return;
    }
    w->grace_ev = evtimer_new(w->base, grace_cb, w);
    if (w->grace_ev == NULL) {
        grace_cb(-1, 0, w);
        return;
    }
    struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
    evtimer_add(w->grace_ev, &tv);
}

void wm_workers_drain(int grace_ms, wm_worker_fn drain_fn, void *arg)
{
    for (int i = 0; i < nworkers; i++) {
        struct wm_worker *w = workers[i];
        /* Set before posting; read on the worker thread after the post's lock. */
        pthread_mutex_lock(&w->lock);
        bool closed = w->closed;
        w->grace_ms = grace_ms;
        w->drain_fn = drain_fn;
        w->drain_arg = arg;
        pthread_mutex_unlock(&w->lock);
        if (closed) {
            continue; /* its loop has ended: nothing left to stop */
        }
        if (wm_worker_post(w, drain_on_worker, NULL) < 0) {
            wm_log(WM_LOG_ERROR, 0, "worker %d: cannot deliver the stop request", i);
        }
    }
}

void wm_workers_join(void)
{
    for (int i = 0; i < nworkers; i++) {
        if (workers[i]->started) {
            pthread_join(workers[i]->thread, NULL);
        }
    }
    for (int i = 0; i < nworkers; i++) {
        worker_free(workers[i]);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}

int wm_worker_count(void)
{
    return nworkers;
}

struct wm_worker *wm_worker_get(int i)
{
    return (i >= 0 && i < nworkers) ? workers[i] : NULL;
}

struct wm_worker *wm_worker_self(void)
{
    return self_worker;
}

int wm_worker_index(const struct wm_worker *w)
{
    return w->index;
}

struct event_base *wm_worker_base(struct wm_worker *w)
{
    return w->base;
}

struct evdns_base *wm_worker_dns(struct wm_worker *w)
{
    return w->dns;
}

void wm_worker_conn_add(struct wm_worker *w, struct wm_conn_link *link)
{
    link->next = w->conns.next;
    link->prev = &w->conns;
    w->conns.next->prev = link;
    w->conns.next = link;
    __atomic_add_fetch(&w->nconns, 1, __ATOMIC_RELAXED);
}

void wm_worker_conn_del(struct wm_worker *w, struct wm_conn_link *link)
{
    if (link->next == NULL) {
        return;
    }
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->next = link->prev = NULL;
    /* release: pairs with the acquire in wm_worker_conn_count(), so whoever
     * sees the connection gone also sees what was done before (its stats). */
    __atomic_sub_fetch(&w->nconns, 1, __ATOMIC_RELEASE);
    if (w->draining && w->nconns == 0) {
        worker_finish_drain(w);
    }
}

void wm_worker_conn_each(struct wm_worker *w, void (*fn)(struct wm_conn_link *link))
{
    for (struct wm_conn_link *l = w->conns.next, *next; l != &w->conns; l = next) {
        next = l->next; /* fn may unlink l */
        fn(l);
    }
}

size_t wm_worker_conn_count(const struct wm_worker *w)
{
    return __atomic_load_n(&w->nconns, __ATOMIC_ACQUIRE);
}

size_t wm_workers_conn_total(void)
{
    size_t n = 0;

    for (int i = 0; i < nworkers; i++) {
        n += wm_worker_conn_count(workers[i]);
    }
    return n;
}

bool wm_worker_draining(const struct wm_worker *w)
{
    return w->draining;
}
