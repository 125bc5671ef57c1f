/*
 * control/expo.c - the collectors GET /metrics always has: the process
 * (Prometheus' standard process_* names), the build, every listener's
 * counters and the failed-authentication throttle.
 */
#include "control/expo.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/authfail.h"
#include "core/logq.h"
#include "core/metrics.h"
#include "core/service.h"
#include "core/version.h"
#include "net/lset.h"

static double start_time;

static unsigned long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned long n = 0;

    if (d == NULL) {
        return 0;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

/* utime, stime (clock ticks), vsize (bytes) and rss (pages) from
 * /proc/self/stat; 0 when unreadable. */
static void read_stat(unsigned long long *ticks, unsigned long long *vsize, long long *rss)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    unsigned long long ut = 0, st = 0;

    *ticks = *vsize = 0;
    *rss = 0;
    if (f != NULL) {
        fclose(f);
    }
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                            "%*d %*d %*d %*u %llu %lld",
                            &ut, &st, vsize, rss) != 4) {
        return;
    }
    *ticks = ut + st;
}

static void gauge(struct evbuffer *out, const char *name, const char *help, const char *fmt,
                  double v)
{
    wm_metrics_family_head(out, name, WM_MT_GAUGE, help);
    evbuffer_add_printf(out, "%s ", name);
    evbuffer_add_printf(out, fmt, v);
    evbuffer_add(out, "\n", 1);
}

static void collect_process(struct evbuffer *out, void *arg)
{
    unsigned long long ticks, vsize;
    long long rss;
    long hz = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;

    (void)arg;
    read_stat(&ticks, &vsize, &rss);
    wm_metrics_family_head(out, "process_cpu_seconds_total", WM_MT_COUNTER,
                           "User and system CPU time spent in seconds");
    evbuffer_add_printf(out, "process_cpu_seconds_total %.2f\n",
                        hz > 0 ? (double)ticks / (double)hz : 0.0);
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes", "%.0f",
          (double)rss * (double)page);
    gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes", "%.0f",
          (double)vsize);
    gauge(out, "process_open_fds", "Number of open file descriptors", "%.0f",
          (double)count_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        gauge(out, "process_max_fds", "Maximum number of open file descriptors", "%.0f",
              (double)rl.rlim_cur);
    }
    gauge(out, "process_start_time_seconds", "Start time of the process since the epoch",
          "%.3f", start_time);
    wm_metrics_family_head(out, "wmproxy_build_info", WM_MT_GAUGE,
                           "Always 1; the version in a label");
    evbuffer_add_printf(out, "wmproxy_build_info{version=\"%s\"} 1\n", WM_VERSION);
}

/* ---- listeners: one family at a time (samples of a family are adjacent) ---- */

enum lfield { LF_ACCEPTED, LF_OPEN, LF_IN, LF_OUT, LF_COUNT };

struct lwalk {
    enum lfield field;
    struct evbuffer *out;
};

static void listener_sample(const struct wm_listen_stats *s, const char *kind, void *arg)
{
    static const char *const names[LF_COUNT] = {
        "wmproxy_listener_connections_accepted_total", "wmproxy_listener_connections_open",
        "wmproxy_listener_received_bytes_total", "wmproxy_listener_sent_bytes_total"};
    const unsigned long long *v[LF_COUNT] = {&s->accepted, &s->open, &s->bytes_in,
                                             &s->bytes_out};
    struct lwalk *w = arg;
    char a[160], k[64];

    wm_metrics_label(a, sizeof(a), s->addr, sizeof(s->addr));
    wm_metrics_label(k, sizeof(k), kind, strlen(kind));
    evbuffer_add_printf(w->out, "%s{listener=\"%s\",kind=\"%s\"} %llu\n", names[w->field], a, k,
                        __atomic_load_n(v[w->field], __ATOMIC_RELAXED));
}

static void collect_listeners(struct evbuffer *out, void *arg)
{
    static const struct {
        const char *name;
        enum wm_metric_type type;
        const char *help;
    } fam[LF_COUNT] = {
        {"wmproxy_listener_connections_accepted_total", WM_MT_COUNTER,
         "Connections accepted on a listening address"},
        {"wmproxy_listener_connections_open", WM_MT_GAUGE, "Connections open now"},
        {"wmproxy_listener_received_bytes_total", WM_MT_COUNTER,
         "Bytes received from clients (of connections that ended)"},
        {"wmproxy_listener_sent_bytes_total", WM_MT_COUNTER,
         "Bytes sent to clients (of connections that ended)"},
    };

    (void)arg;
    for (int i = 0; i < LF_COUNT; i++) {
        struct lwalk w = {.field = (enum lfield)i, .out = out};
        wm_metrics_family_head(out, fam[i].name, fam[i].type, fam[i].help);
        wm_lset_foreach_stats(listener_sample, &w);
    }
}

static void collect_authfail(struct evbuffer *out, void *arg)
{
    struct wm_authfail_stats st;

    (void)arg;
    wm_authfail_get_stats(&st);
    wm_metrics_family_head(out, "wmproxy_auth_failures_total", WM_MT_COUNTER,
                           "Failed authentications (proxy users, tunnel carriers, control token)");
    evbuffer_add_printf(out, "wmproxy_auth_failures_total %llu\n",
                        (unsigned long long)st.failures);
    wm_metrics_family_head(out, "wmproxy_auth_holds_total", WM_MT_COUNTER,
                           "Client addresses put on hold after repeated failures");
    evbuffer_add_printf(out, "wmproxy_auth_holds_total %llu\n", (unsigned long long)st.bans);
    wm_metrics_family_head(out, "wmproxy_auth_refused_on_hold_total", WM_MT_COUNTER,
                           "Attempts refused while their address was on hold");
    evbuffer_add_printf(out, "wmproxy_auth_refused_on_hold_total %llu\n",
                        (unsigned long long)st.refused);
    wm_metrics_family_head(out, "wmproxy_auth_holds_shared_total", WM_MT_COUNTER,
                           "Holds learned from the other cluster nodes ([cluster])");
    evbuffer_add_printf(out, "wmproxy_auth_holds_shared_total %llu\n",
                        (unsigned long long)st.shared_holds);
}

static void collect_logq(struct evbuffer *out, void *arg)
{
    (void)arg;
    wm_metrics_family_head(out, "wmproxy_log_dropped_lines_total", WM_MT_COUNTER,
                           "Log lines dropped because the writer could not keep up");
    evbuffer_add_printf(out, "wmproxy_log_dropped_lines_total %llu\n",
                        (unsigned long long)wm_logq_dropped());
}

int wm_expo_register(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (wm_metrics_add_collector(collect_process, NULL) < 0 ||
        wm_metrics_add_collector(collect_listeners, NULL) < 0 ||
        wm_metrics_add_collector(collect_authfail, NULL) < 0 ||
        wm_metrics_add_collector(collect_logq, NULL) < 0) {
        return -1;
    }
    return 0;
}
