/*
 * reverse/rev.h - the reverse proxy: [http] servers (virtual hosts) on
 * plain and TLS listeners, locations matched in config order, handlers
 * (proxy_url to an upstream or a URL, static_response), upstream
 * balancing with passive health and a keep-alive pool per worker.
 *
 * Life cycle across reloads: wm_rev_prepare() compiles a loaded [http]
 * section on the main thread into immutable settings (struct wm_rev,
 * refcounted); one service per listening address holds a reference, and
 * so does every connection it accepted, so old requests finish under the
 * settings they started with. Upstream health lives outside the settings,
 * keyed by upstream name and address, so it survives a reload.
 */
#ifndef WM_REVERSE_REV_H
#define WM_REVERSE_REV_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct wm_conf_http;
struct wm_err;
struct wm_rev;
struct wm_service;

/* Compile h. 0 with *out (refcount 1), or -1 with err (err->key names the
 * key in [http], e.g. "http.server[0].location[1].rule"). conf_dir: where
 * relative paths of the config are taken from (NULL: the cwd). */
int wm_rev_prepare(const struct wm_conf_http *h, const char *conf_dir, struct wm_rev **out,
                   struct wm_err *err);

struct wm_rev *wm_rev_ref(struct wm_rev *r);
void wm_rev_unref(struct wm_rev *r); /* NULL is a no-op */

/* Listening addresses, each once however many servers share it. */
size_t wm_rev_nlisten(const struct wm_rev *r);
const char *wm_rev_listen_addr(const struct wm_rev *r, size_t i, bool *tls);

/* The service of listening address i (refcount 1; holds a reference on r). */
struct wm_service *wm_rev_service_new(struct wm_rev *r, size_t i);

/* Start the active health checker on worker 0 (after the workers started;
 * it idles while no upstream has health_check). */
void wm_rev_checker_start(void);

/* Reopen every access/error log file (SIGUSR1, after logrotate moved
 * them). Any thread. */
void wm_rev_logs_reopen(void);

/* The upstream servers' families of GET /metrics (a collector of
 * core/metrics.h; arg unused). */
struct evbuffer;
void wm_rev_metrics_collect(struct evbuffer *out, void *arg);

/* Worker exit hook: free this worker's keep-alive pool (and on worker 0
 * the health checker). */
void wm_rev_worker_exit(void);

/* ---- cluster: shared limit_req zones (src/cluster/ installs the hook;
 * NULL: zones with shared=true count locally) ---- */
struct wm_rev_shared_limit {
    /* Any worker thread: may one more request of key (n bytes) pass zone
     * (rate in requests/s x 1000, burst)? on_error_allow: the answer while
     * the shared store cannot be asked. */
    bool (*allow)(const char *zone, const char *key, size_t n, uint64_t rate_milli,
                  uint64_t burst, bool on_error_allow);
};
/* Install or remove (NULL) the hook; readers load it atomically. */
void wm_rev_set_shared_limit(const struct wm_rev_shared_limit *h);

#endif
