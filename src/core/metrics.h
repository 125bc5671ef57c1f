/*
 * core/metrics.h - counters and histograms for GET /metrics (Prometheus
 * text format 0.0.4), with no lock and no atomic read-modify-write on the
 * data path.
 *
 * A series (one family + one label set, e.g. wmproxy_http_requests_total
 * {proto="http",code="2xx"}) owns one slot (a counter) or a run of slots (a
 * histogram) in every thread's shard. Each worker thread adds to its own
 * shard only; other threads (main, control) share one extra shard with
 * atomic adds. A scrape sums the shards. Series are interned by name and
 * labels and never freed, so a counter keeps its value across reloads.
 *
 * Gauges and values owned elsewhere (listener stats, upstream health,
 * tunnel carriers) come from collectors: functions that append families to
 * the scrape (see wm_metrics_add_collector).
 *
 * Ownership: everything lives until wm_metrics_shutdown(); ids stay valid
 * for the process's life. Slot space is bounded (WM_METRICS_SLOTS): past it
 * new series share a dummy slot and one warning is logged.
 */
#ifndef WM_CORE_METRICS_H
#define WM_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define WM_METRICS_SLOTS 16384

typedef uint32_t wm_metric; /* a series; 0 is the dummy that counts nothing visible */

enum wm_metric_type { WM_MT_COUNTER, WM_MT_GAUGE, WM_MT_HISTOGRAM };

/* Before any thread starts: shards for nthreads worker threads. */
int wm_metrics_init(int nthreads);
void wm_metrics_shutdown(void);

/* A worker thread binds itself to shard index (0..nthreads-1) once. */
void wm_metrics_bind_thread(int index);

/* The series for family name (type and help used the first time the
 * family is seen) and labels, already formatted as Prometheus label pairs
 * without braces ('proto="http",code="2xx"', "" for none; values escaped
 * with wm_metrics_label()). The same pair returns the same id. Thread-safe
 * (takes a lock: call when setting up, not per request). */
wm_metric wm_metrics_counter(const char *name, const char *help, const char *labels);
wm_metric wm_metrics_histogram(const char *name, const char *help, const char *labels);

/* As wm_metrics_counter, for a family whose labels come from peers: once
 * the family holds max series, a new label set gets the dummy (0) and one
 * warning is logged, so it cannot take the slots of every other family. */
wm_metric wm_metrics_counter_max(const char *name, const char *help, const char *labels,
                                 size_t max);

/* Add n to a counter. */
void wm_metrics_add(wm_metric m, uint64_t n);
static inline void wm_metrics_inc(wm_metric m)
{
    wm_metrics_add(m, 1);
}

/* Record one duration (milliseconds) into a histogram; buckets are fixed:
 * 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s +Inf. */
void wm_metrics_observe_ms(wm_metric m, uint64_t ms);

/* Series looked up per event by a short key (a protocol name) without a
 * lock: the first time a key is seen, make() fills its ids (under a lock);
 * later lookups only compare keys. Declare caches static and zeroed. Past
 * WM_MCACHE_KEYS keys (or for keys longer than 23 bytes) the dummy ids
 * (all 0) come back. */
#define WM_MCACHE_KEYS 16
#define WM_MCACHE_IDS 12
struct wm_mcache {
    int n;
    char keys[WM_MCACHE_KEYS][24];
    wm_metric ids[WM_MCACHE_KEYS][WM_MCACHE_IDS];
};
const wm_metric *wm_mcache_get(struct wm_mcache *c, const char *key,
                               void (*make)(const char *key, wm_metric *ids));

/* Escape v (n bytes) as a label value into out (cap bytes, always
 * terminated). Controls and bytes that are not UTF-8 become '?'. A value
 * too long is cut between characters and ends with '~' and 8 hex digits
 * of a hash of the whole value (two long values stay two series).
 * Returns out. */
char *wm_metrics_label(char *out, size_t cap, const char *v, size_t n);

/* Collectors run on the scraping thread, in registration order, after the
 * interned series. Each appends complete families (# HELP, # TYPE, samples)
 * to out; wm_metrics_family_head() writes the two comment lines. */
typedef void (*wm_metrics_collector)(struct evbuffer *out, void *arg);
int wm_metrics_add_collector(wm_metrics_collector fn, void *arg);
void wm_metrics_family_head(struct evbuffer *out, const char *name, enum wm_metric_type type,
                            const char *help);

/* The whole exposition (series, then collectors). */
void wm_metrics_render(struct evbuffer *out);

/* One series' current sum over all shards (tests, /status). */
uint64_t wm_metrics_value(wm_metric m);

#endif
