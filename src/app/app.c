/*
 * app/app.c - process lifecycle: start, daemon, signals, control hooks,
 * graceful stop, and hot reload.
 *
 * Reload: the new file is loaded and validated first; if anything is wrong
 * the running configuration is untouched. Otherwise services are built and
 * applied to the listener set (net/lset.h), which keeps unchanged listening
 * sockets open and only swaps the service new connections go to; open
 * connections hold a reference to the service they started with.
 */
#include "app/app.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "app/app_int.h"
#include "conf/config.h"
#include "conf/cval.h"
#include "control/control.h"
#include "core/err.h"
#include "core/limits.h"
#include "core/json.h"
#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/lset.h"
#include "net/tlspump.h"
#include "tunnel/tunnel.h"

static const char *const secret_keys[] = {"password", "control_token", NULL};

struct app {
    struct wm_app_opts *o;
    struct event_base *base;
    struct event *sig_int;
    struct event *sig_term;
    struct event *sig_hup;
    bool stopping;
    int grace_ms;
    struct wm_conf *conf;          /* current file config (NULL in flags mode) */
    struct wm_app_services svcs;   /* current services */
    /* last reload */
    time_t reload_time;
    bool reload_ok;
    char reload_msg[2048];
    unsigned long reloads_ok;
    unsigned long reloads_failed;
};

void wm_app_opts_default(struct wm_app_opts *o)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    memset(o, 0, sizeof(*o));
    snprintf(o->control, sizeof(o->control), "%s", WM_APP_DEFAULT_CONTROL);
    snprintf(o->pidfile, sizeof(o->pidfile), "%s", WM_APP_DEFAULT_PIDFILE);
    o->workers = n < 1 ? 1 : (n > 64 ? 64 : (int)n);
    o->grace_ms = WM_SHUTDOWN_GRACE_MS;
    o->level = WM_LOG_INFO;
    o->proxy.bind = WM_APP_DEFAULT_BIND;
    o->proxy.flags = WM_PROXY_FLAG_ALL;
    o->proxy.connect_timeout_ms = WM_CONNECT_TIMEOUT_MS;
    o->proxy.idle_timeout_ms = WM_IDLE_TIMEOUT_MS;
    o->proxy.handshake_timeout_ms = WM_HANDSHAKE_TIMEOUT_MS;
    o->proxy.heartbeat_ms = 15000;
    o->proxy.heartbeat_timeout_ms = 45000;
}

/* ---- effective settings: command line over file over defaults ---- */

static void apply_logging(const struct app *a)
{
    const struct wm_app_opts *o = a->o;
    int lvl;

    if (o->level_set) {
        lvl = o->level;
    } else if (o->verbose > 0) {
        lvl = o->verbose >= 2 ? WM_LOG_TRACE : WM_LOG_DEBUG;
    } else if (a->conf != NULL && a->conf->default_level != -2) {
        lvl = a->conf->default_level;
    } else {
        lvl = WM_LOG_INFO;
    }
    wm_log_set_level((enum wm_log_level)lvl);
    bool quiet = o->daemon || (o->disable_stdout_set ? o->disable_stdout
                                                     : (a->conf != NULL && a->conf->disable_stdout));
    if (o->log_file[0] == '\0' && (a->conf == NULL || a->conf->log_file == NULL)) {
        wm_log_set_fd(quiet ? -1 : 1);
    }
}

static const char *eff_control(const struct app *a)
{
    if (a->o->control_set || a->conf == NULL) {
        return a->o->control;
    }
    return a->conf->control;
}

static bool eff_disable_control(const struct app *a)
{
    if (a->o->disable_control_set || a->conf == NULL) {
        return a->o->disable_control;
    }
    return a->conf->disable_control;
}

/* ---- loading ---- */

static void log_diags(const struct wm_conf_diags *d)
{
    char line[1400];

    for (size_t i = 0; i < d->n; i++) {
        wm_conf_diag_format(d, i, line, sizeof(line));
        wm_log(d->v[i].warning ? WM_LOG_WARN : WM_LOG_ERROR, 0, "config: %s", line);
    }
}

/* Load the file and build its services. 0, or -1 with msg. */
static int load(struct app *a, struct wm_conf **conf, struct wm_app_services *svcs, char *msg,
                size_t cap)
{
    struct wm_conf_diags d;

    if (wm_conf_load(a->o->config, true, conf, &d) < 0) {
        log_diags(&d);
        wm_conf_diags_errors(&d, msg, cap);
        wm_conf_diags_free(&d);
        return -1;
    }
    log_diags(&d); /* warnings */
    wm_conf_diags_free(&d);
    if (wm_app_services_from_conf(*conf, svcs, msg, cap) < 0) {
        wm_conf_free(*conf);
        *conf = NULL;
        return -1;
    }
    return 0;
}

static int apply(struct wm_app_services *svcs, char *msg, size_t cap)
{
    struct wm_err err;

    if (wm_lset_apply(svcs->specs, svcs->n, &err) < 0) {
        wm_err_format(&err, msg, cap);
        return -1;
    }
    /* The listeners are in place: hand the tunnel its settings (or remove
     * it when the configuration has none). */
    wm_tunnel_install(svcs->tunnel);
    svcs->tunnel = NULL;
    return 0;
}

/* Exit hook, on every worker after its loop: free what only that thread
 * may touch (tunnel state on worker 0, TLS pumps). */
static void worker_exit(struct wm_worker *w, void *arg)
{
    wm_tunnel_worker_exit(w, arg);
    wm_tls_pump_free_all();
}

/* Drain hook, on every worker: stop accepting; the tunnel (worker 0)
 * stops reconnecting and closes idle carriers. */
static void drain_worker(struct wm_worker *w, void *arg)
{
    wm_lset_close_worker(w, arg);
    if (wm_worker_index(w) == 0) {
        wm_tunnel_drain(w);
    }
}

/* ---- reload ---- */

static int reload(struct app *a, char *msg, size_t cap)
{
    struct wm_conf *nc = NULL;
    struct wm_app_services ns;
    char why[2048];

    memset(&ns, 0, sizeof(ns));
    a->reload_time = time(NULL);
    if (a->o->config == NULL) {
        snprintf(msg, cap, "started from flags, not from a config file: nothing to reload");
        return -1;
    }
    if (a->stopping) {
        snprintf(msg, cap, "stopping");
        return -1;
    }
    if (load(a, &nc, &ns, why, sizeof(why)) < 0 || apply(&ns, why, sizeof(why)) < 0) {
        wm_app_services_free(&ns);
        wm_conf_free(nc);
        a->reload_ok = false;
        a->reloads_failed++;
        snprintf(a->reload_msg, sizeof(a->reload_msg), "%s", why);
        snprintf(msg, cap, "reload refused, still running the previous configuration:\n%s", why);
        wm_log(WM_LOG_ERROR, 0, "reload of %s refused; the previous configuration stays",
               a->o->config);
        return -1;
    }
    /* Committed: listeners now hand new connections to the new services. */
    if (strcmp(a->conf->control, nc->control) != 0 && !a->o->control_set) {
        wm_log(WM_LOG_WARN, 0, "reload: control address change to %s needs a restart",
               nc->control);
    }
    if (nc->workers != a->conf->workers && !a->o->workers_set) {
        wm_log(WM_LOG_WARN, 0, "reload: worker count change needs a restart");
    }
    wm_app_services_free(&a->svcs);
    a->svcs = ns;
    wm_conf_free(a->conf);
    a->conf = nc;
    apply_logging(a);
    wm_control_set_token(nc->control_token);
    if (!a->o->grace_set && nc->grace_ms > 0) {
        a->grace_ms = (int)nc->grace_ms;
    }
    a->reload_ok = true;
    a->reloads_ok++;
    snprintf(a->reload_msg, sizeof(a->reload_msg), "reloaded %s: %zu listener(s)",
             a->o->config, ns.n);
    snprintf(msg, cap, "%s", a->reload_msg);
    wm_log(WM_LOG_INFO, 0, "%s", a->reload_msg);
    return 0;
}

/* ---- stop ---- */

static void begin_stop(struct app *a, const char *why)
{
    if (a->stopping) {
        return;
    }
    a->stopping = true;
    wm_log(WM_LOG_INFO, 0, "stopping (%s): no new connections, grace %d ms", why, a->grace_ms);
    wm_workers_drain(a->grace_ms, drain_worker, NULL);
    /* Leave the control API a moment to flush its answer (POST /stop). */
    struct timeval tv = {0, 200 * 1000};
    event_base_loopexit(a->base, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    char msg[2048];

    (void)what;
    if (sig == SIGHUP) {
        wm_log(WM_LOG_INFO, 0, "SIGHUP: reloading");
        if (reload(a, msg, sizeof(msg)) < 0 && a->o->config == NULL) {
            wm_log(WM_LOG_INFO, 0, "SIGHUP: %s", msg);
        }
        return;
    }
    begin_stop(a, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- control hooks ---- */

static int hook_reload(void *arg, char *msg, size_t cap)
{
    return reload(arg, msg, cap);
}

static void hook_stop(void *arg)
{
    begin_stop(arg, "control API");
}

static void hook_now(void *arg, struct evbuffer *out)
{
    struct app *a = arg;
    char *json = NULL;
    size_t len = 0;

    if (a->conf == NULL) {
        evbuffer_add(out, "{\"proxy\":{\"bind_addr\":", 22);
        wm_json_string(out, a->o->proxy.bind != NULL ? a->o->proxy.bind : "");
        evbuffer_add_printf(out, ",\"flag\":%u,\"auth\":%s", a->o->proxy.flags,
                            a->o->proxy.username != NULL ? "true" : "false");
        if (a->o->proxy.server != NULL) {
            evbuffer_add(out, ",\"server\":", 10);
            wm_json_string(out, a->o->proxy.server);
        }
        evbuffer_add(out, "}}", 2);
        return;
    }
    if (wm_cval_to_json_masked(a->conf->tree, false, secret_keys, &json, &len) == 0) {
        evbuffer_add(out, json, len);
    } else {
        evbuffer_add(out, "null", 4);
    }
    free(json);
}

static void hook_status(void *arg, struct evbuffer *out)
{
    struct app *a = arg;

    evbuffer_add(out, ",\"config\":", 10);
    if (a->o->config != NULL) {
        wm_json_string(out, a->o->config);
    } else {
        evbuffer_add(out, "null", 4);
    }
    evbuffer_add_printf(out, ",\"reload\":{\"ok\":%lu,\"failed\":%lu,\"last_time\":%lld,"
                             "\"last_ok\":%s,\"last_message\":",
                        a->reloads_ok, a->reloads_failed, (long long)a->reload_time,
                        a->reload_time == 0 ? "null" : (a->reload_ok ? "true" : "false"));
    wm_json_string(out, a->reload_msg);
    evbuffer_add(out, "}", 1);
    wm_tunnel_status_json(out);
}

/* ---- process plumbing ---- */

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int write_pidfile(const char *path)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        return -1;
    }
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return close(fd);
}

void wm_app_report(int fd, bool ok, const char *msg)
{
    char buf[2048];
    int n;

    if (fd < 0) {
        if (!ok) {
            fprintf(stderr, "wmproxy: %s\n", msg);
        }
        return;
    }
    n = snprintf(buf, sizeof(buf), "%c%s", ok ? 'O' : 'E', msg);
    if (n > 0 && write(fd, buf, (size_t)n) < 0) {
        /* the parent is gone: nothing to tell */
    }
    close(fd);
}

/* The serving process proper. notify: where to report readiness (-1: none). */
int wm_app_serve(struct wm_app_opts *o, int notify)
{
    struct app a;
    char msg[4096];
    int rc = 0;
    bool pid_written = false;
    char pidfile[512] = "";
    struct wm_err err;

    memset(&a, 0, sizeof(a));
    a.o = o;
    a.grace_ms = o->grace_ms;
    apply_logging(&a);
    if (o->config != NULL) {
        struct wm_conf_diags d;
        if (wm_conf_load(o->config, true, &a.conf, &d) < 0) {
            log_diags(&d);
            wm_conf_diags_errors(&d, msg, sizeof(msg));
            wm_conf_diags_free(&d);
            wm_app_report(notify, false, msg);
            return 1;
        }
        apply_logging(&a);
        log_diags(&d);
        wm_conf_diags_free(&d);
        if (!o->grace_set && a.conf->grace_ms > 0) {
            a.grace_ms = (int)a.conf->grace_ms;
        }
        if (wm_app_services_from_conf(a.conf, &a.svcs, msg, sizeof(msg)) < 0) {
            wm_app_report(notify, false, msg);
            wm_conf_free(a.conf);
            return 1;
        }
    } else if (wm_app_services_from_flags(o, &a.svcs, msg, sizeof(msg)) < 0) {
        wm_app_report(notify, false, msg);
        return 1;
    }
    const char *log_file = o->log_file[0] ? o->log_file
                                          : (a.conf != NULL ? a.conf->log_file : NULL);
    if (log_file != NULL && wm_log_open_file(log_file) < 0) {
        snprintf(msg, sizeof(msg), "cannot open log file %s: %s", log_file, strerror(errno));
        wm_app_report(notify, false, msg);
        rc = 1;
        goto free_conf;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    int workers = o->workers;
    if (!o->workers_set && a.conf != NULL && a.conf->workers > 0) {
        workers = (int)a.conf->workers;
    }
    wm_workers_set_exit_hook(worker_exit, NULL);
    if (wm_workers_init(workers) < 0 || wm_workers_start() < 0) {
        wm_app_report(notify, false, "cannot start worker threads");
        rc = 1;
        goto free_conf;
    }
    a.base = event_base_new();
    if (a.base == NULL) {
        wm_app_report(notify, false, "cannot create the event loop");
        rc = 1;
        goto stop_workers;
    }
    if (apply(&a.svcs, msg, sizeof(msg)) < 0) {
        wm_app_report(notify, false, msg);
        rc = 1;
        goto stop_workers;
    }
    if (!eff_disable_control(&a)) {
        struct wm_control_hooks hooks = {.reload = hook_reload, .stop = hook_stop, .now = hook_now,
                                         .status = hook_status, .arg = &a};
        const char *token = a.conf != NULL ? a.conf->control_token : NULL;
        if (wm_control_start(a.base, eff_control(&a), token, &hooks, &err) < 0) {
            wm_app_report(notify, false, wm_err_format(&err, msg, sizeof(msg)));
            rc = 1;
            goto stop_workers;
        }
    }
    if (o->pidfile_set || (o->daemon && (a.conf == NULL || a.conf->pidfile == NULL))) {
        snprintf(pidfile, sizeof(pidfile), "%s", o->pidfile);
    } else if (a.conf != NULL && a.conf->pidfile != NULL) {
        snprintf(pidfile, sizeof(pidfile), "%s", a.conf->pidfile);
    }
    if (pidfile[0] != '\0' && !o->forever) {
        if (write_pidfile(pidfile) < 0) {
            snprintf(msg, sizeof(msg), "cannot write pidfile %s: %s", pidfile, strerror(errno));
            wm_app_report(notify, false, msg);
            rc = 1;
            goto stop_workers;
        }
        pid_written = true;
    }
    a.sig_int = evsignal_new(a.base, SIGINT, signal_cb, &a);
    a.sig_term = evsignal_new(a.base, SIGTERM, signal_cb, &a);
    a.sig_hup = evsignal_new(a.base, SIGHUP, signal_cb, &a);
    evsignal_add(a.sig_int, NULL);
    evsignal_add(a.sig_term, NULL);
    evsignal_add(a.sig_hup, NULL);
    for (size_t i = 0; i < a.svcs.n; i++) {
        wm_log(WM_LOG_INFO, 0, "listening on %s (%s), %d worker(s)", a.svcs.specs[i].addr,
               a.svcs.specs[i].svc->kind, workers);
    }
    if (a.svcs.n == 0) {
        wm_log(WM_LOG_WARN, 0, "nothing to serve: the configuration opens no listener");
    }
    if (!eff_disable_control(&a)) {
        wm_log(WM_LOG_INFO, 0, "control API on http://%s", eff_control(&a));
    }
    wm_app_report(notify, true, "");
    notify = -1;

    event_base_dispatch(a.base);
    if (!a.stopping) {
        begin_stop(&a, "loop ended");
    }
    wm_control_stop();
    wm_workers_join();
    wm_log(WM_LOG_INFO, 0, "stopped");
    goto cleanup;

stop_workers:
    wm_control_stop();
    wm_workers_drain(0, drain_worker, NULL);
    wm_workers_join();
cleanup:
    wm_lset_free();
    if (a.sig_int != NULL) {
        event_free(a.sig_int);
        event_free(a.sig_term);
        event_free(a.sig_hup);
    }
    if (a.base != NULL) {
        event_base_free(a.base);
    }
    if (pid_written) {
        unlink(pidfile);
    }
free_conf:
    wm_app_services_free(&a.svcs);
    wm_conf_free(a.conf);
    libevent_global_shutdown();
    return rc;
}
