/* Request counters for GET /metrics (core/metrics.h), one set per protocol
 * of the engine's users ("http", "reverse", "tunnel-http", ...). */
#include "core/metrics.h"
#include "http/fwd_int.h"

#include <stdio.h>

enum { ID_1XX, ID_2XX, ID_3XX, ID_4XX, ID_5XX, ID_NONE, ID_DURATION, ID_UPSTREAM };

static void make_ids(const char *proto, wm_metric *ids)
{
    static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};
    char p[64], labels[128];

    wm_metrics_label(p, sizeof(p), proto, sizeof(p));
    for (int i = ID_1XX; i <= ID_NONE; i++) {
        snprintf(labels, sizeof(labels), "proto=\"%s\",code=\"%s\"", p, cls[i]);
        ids[i] = wm_metrics_counter("wmproxy_http_requests_total",
                                    "HTTP requests answered, by protocol and status class "
                                    "(none: the client got no status)",
                                    labels);
    }
    snprintf(labels, sizeof(labels), "proto=\"%s\"", p);
    ids[ID_DURATION] = wm_metrics_histogram("wmproxy_http_request_duration_seconds",
                                            "From the request's first byte to its end", labels);
    ids[ID_UPSTREAM] = wm_metrics_histogram("wmproxy_upstream_response_seconds",
                                            "From the request sent upstream to the response head",
                                            labels);
}

void hf_count_request(const char *proto, int status, uint64_t ms, long long up_ms)
{
    static struct wm_mcache cache;
    const wm_metric *ids = wm_mcache_get(&cache, proto, make_ids);
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : ID_NONE;

    wm_metrics_inc(ids[cls]);
    wm_metrics_observe_ms(ids[ID_DURATION], ms);
    if (up_ms >= 0) {
        wm_metrics_observe_ms(ids[ID_UPSTREAM], (uint64_t)up_ms);
    }
}

void wm_hfwd_count_request(const char *proto, int status)
{
    hf_count_request(proto, status, 0, -1);
}
