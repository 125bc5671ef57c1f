/*
 * reverse/rmetrics.c - the upstream servers in GET /metrics: health,
 * connections, failures and active-check results, read from the health
 * registry (upstream.c) under its lock.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"
#include "reverse/rev.h"
#include "reverse/rev_int.h"

enum ufield { UF_UP, UF_ACTIVE, UF_FAILS, UF_CHECK_OK, UF_CHECK_FAIL, UF_COUNT };

static void sample(struct evbuffer *out, const struct rv_health *h, enum ufield f, uint64_t now)
{
    char up[160], srv[160];
    const char *bar = strchr(h->key, '|'); /* key: "upstream|addr" */
    size_t ulen = bar != NULL ? (size_t)(bar - h->key) : strlen(h->key);

    wm_metrics_label(up, sizeof(up), h->key, ulen);
    wm_metrics_label(srv, sizeof(srv), bar != NULL ? bar + 1 : "", sizeof(srv));
    switch (f) {
    case UF_UP: {
        bool isup = atomic_load(&h->down_until_ms) <= now && !atomic_load(&h->check_down);
        evbuffer_add_printf(out, "wmproxy_upstream_server_up{upstream=\"%s\",server=\"%s\"} %d\n",
                            up, srv, isup ? 1 : 0);
        break;
    }
    case UF_ACTIVE:
        evbuffer_add_printf(out,
                            "wmproxy_upstream_server_active_connections{upstream=\"%s\",server="
                            "\"%s\"} %d\n",
                            up, srv, atomic_load(&h->active));
        break;
    case UF_FAILS:
        evbuffer_add_printf(out,
                            "wmproxy_upstream_server_failures_total{upstream=\"%s\",server="
                            "\"%s\"} %llu\n",
                            up, srv, (unsigned long long)atomic_load(&h->total_fails));
        break;
    case UF_CHECK_OK:
    case UF_CHECK_FAIL:
        evbuffer_add_printf(out,
                            "wmproxy_upstream_server_health_checks_total{upstream=\"%s\",server="
                            "\"%s\",result=\"%s\"} %llu\n",
                            up, srv, f == UF_CHECK_OK ? "ok" : "failed",
                            (unsigned long long)atomic_load(f == UF_CHECK_OK ? &h->checks_ok
                                                                              : &h->checks_failed));
        break;
    default:
        break;
    }
}

void wm_rev_metrics_collect(struct evbuffer *out, void *arg)
{
    static const struct {
        const char *name;
        enum wm_metric_type type;
        const char *help;
    } fam[] = {
        {"wmproxy_upstream_server_up", WM_MT_GAUGE,
         "1 when the server takes requests (not marked down by failures or checks)"},
        {"wmproxy_upstream_server_active_connections", WM_MT_GAUGE,
         "Connections to the server in use now"},
        {"wmproxy_upstream_server_failures_total", WM_MT_COUNTER,
         "Failed connects, timeouts and bad answers (passive health)"},
        {"wmproxy_upstream_server_health_checks_total", WM_MT_COUNTER,
         "Active health checks by result"},
    };
    uint64_t now = wm_now_ms();

    (void)arg;
    rv_registry_lock();
    for (int i = 0; i < 4; i++) {
        wm_metrics_family_head(out, fam[i].name, fam[i].type, fam[i].help);
        for (const struct rv_health *h = rv_registry_head(); h != NULL; h = h->next) {
            sample(out, h, (enum ufield)i, now);
            if (i == 3) {
                sample(out, h, UF_CHECK_FAIL, now);
            }
        }
    }
    rv_registry_unlock();
}
