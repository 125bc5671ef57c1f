/*
 * core/worker.h - worker threads: one event_base and one DNS resolver each.
 *
 * Every connection belongs to exactly one worker and is only touched from
 * that worker's thread. Other threads reach a worker by wm_worker_post().
 * Each worker keeps a list of its live connections (struct wm_conn_link) so a
 * graceful stop can wait for them and, after the grace period, abort them.
 */
#ifndef WM_CORE_WORKER_H
#define WM_CORE_WORKER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evdns_base;
struct wm_worker;

/* Embedded in every connection object; the worker links it while live. */
struct wm_conn_link {
    struct wm_conn_link *prev;
    struct wm_conn_link *next;
    /* Close the connection now (graceful-stop deadline). Must unlink. */
    void (*abort)(struct wm_conn_link *link);
};

typedef void (*wm_worker_fn)(struct wm_worker *w, void *arg);

/* Create n workers (n >= 1), each with its own event_base and evdns_base.
 * Threads are not started yet. Returns 0 or -1. */
int wm_workers_init(int n);

/* Start the worker threads. Returns 0 or -1. */
int wm_workers_start(void);

/* Ask every worker to stop accepting (drain_fn runs on each worker first, to
 * close its listeners), wait up to grace_ms for its connections to finish,
 * abort the rest, then leave its loop. Thread-safe; returns at once.
 * Called again during a drain with grace_ms 0, it aborts the connections
 * still open without waiting for the rest of the grace period. */
void wm_workers_drain(int grace_ms, wm_worker_fn drain_fn, void *arg);

/* Run fn(w, arg) on every worker thread right after its loop ended (its
 * event base still exists). Set before wm_workers_start(). */
void wm_workers_set_exit_hook(wm_worker_fn fn, void *arg);

/* Wait for all worker threads to exit, then free them. */
void wm_workers_join(void);

int wm_worker_count(void);
struct wm_worker *wm_worker_get(int i);

/* The worker running on the calling thread, or NULL on other threads. */
struct wm_worker *wm_worker_self(void);

int wm_worker_index(const struct wm_worker *w);
struct event_base *wm_worker_base(struct wm_worker *w);
struct evdns_base *wm_worker_dns(struct wm_worker *w);

/* Run fn(w, arg) on w's thread, soon. Thread-safe. Returns 0 or -1 (OOM). */
int wm_worker_post(struct wm_worker *w, wm_worker_fn fn, void *arg);

/* Run fn(w, arg) on w's thread and wait until it returned. Call only from
 * a thread that is not a worker. Returns 0, or -1 (OOM: fn did not run). */
int wm_worker_call(struct wm_worker *w, wm_worker_fn fn, void *arg);

/* Register / unregister a live connection (worker thread only). */
void wm_worker_conn_add(struct wm_worker *w, struct wm_conn_link *link);
void wm_worker_conn_del(struct wm_worker *w, struct wm_conn_link *link);

/* Call fn for each live connection of w (worker thread). fn may unlink
 * (close) the one it is given, and no other. */
void wm_worker_conn_each(struct wm_worker *w, void (*fn)(struct wm_conn_link *link));

/* Live connections on w (worker thread), or on all workers (any thread, approximate). */
size_t wm_worker_conn_count(const struct wm_worker *w);
size_t wm_workers_conn_total(void);

/* True once a drain has started on w. */
bool wm_worker_draining(const struct wm_worker *w);

#endif
