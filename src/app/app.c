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
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app_int.h"
#include "app/obs.h"
#include "core/logq.h"
#include "conf/config.h"
#include "conf/cval.h"
#include "control/control.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/limits.h"
#include "core/json.h"
#include "core/log.h"
#include "core/sdnotify.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2.h"
#include "http/fwd.h"
#include "net/acl.h"
#include "net/addr.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/lset.h"
#include "net/tlspump.h"
#include "reverse/rev.h"
#include "tunnel/tunnel.h"
#include "cluster/cluster.h"

static const char *const secret_keys[] = {"password", "control_token", NULL};

struct app {
    struct wm_app_opts *o;
    struct event_base *base;
    struct event *sig_int;
    struct event *sig_term;
    struct event *sig_hup;
    struct event *sig_usr1;
    bool stopping;
    bool stopping_now;         /* a second stop signal came: no grace */
    int grace_ms;
    uint64_t workers_done;     /* workers whose loop has ended */
    int done_fd;               /* eventfd: each worker adds 1 as it ends */
    struct event *done_ev;     /* reads done_fd on the main loop */
    struct wm_conf *conf;          /* current file config (NULL in flags mode) */
    struct wm_app_services svcs;   /* current services */
    /* last reload */
    time_t reload_time;
    bool reload_ok;
    char reload_msg[2048];
    unsigned long reloads_ok;
    unsigned long reloads_failed;
    /* process */
    char control_addr[64];     /* where the control API listens ("" when off): a
                                * reload cannot move it */
    int workers;
    char pidfile[512]; /* "" for none */
    bool pid_written;
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
    wm_conf_proxy_defaults(&o->proxy);
    o->proxy.bind_set = true; /* `wmproxy proxy` keeps its documented default */
}

int wm_app_opts_rules(struct wm_app_opts *o)
{
    const struct {
        struct wm_cli_list *l;
        const char ***v;
        size_t *n;
        const char *flag;
        bool client;
    } lists[] = {
        {&o->deny_targets, &o->proxy.deny_targets, &o->proxy.ndeny_targets, "deny-target", false},
        {&o->allow_targets, &o->proxy.allow_targets, &o->proxy.nallow_targets, "allow-target",
         false},
        {&o->deny_clients, &o->proxy.deny_clients, &o->proxy.ndeny_clients, "deny-client", true},
        {&o->allow_clients, &o->proxy.allow_clients, &o->proxy.nallow_clients, "allow-client",
         true},
    };
    char msg[200];

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        for (size_t k = 0; k < lists[i].l->n; k++) {
            if (wm_acl_rule_check(lists[i].l->v[k], lists[i].client, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "wmproxy: --%s \"%s\": %s\n", lists[i].flag, lists[i].l->v[k],
                        msg);
                return -1;
            }
        }
        *lists[i].v = lists[i].l->v;
        *lists[i].n = lists[i].l->n;
    }
    return 0;
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

/* Load the file and build its services. 0, or -1 with err filled (every
 * config error, one line each) and *conf NULL. */
static int load(struct app *a, struct wm_conf **conf, struct wm_app_services *svcs,
                struct wm_err *err)
{
    struct wm_conf_diags d;

    wm_err_clear(err);
    if ((a->o->config_text != NULL
             ? wm_conf_load_text(a->o->config_name, a->o->config_text,
                                 strlen(a->o->config_text), true, conf, &d)
             : wm_conf_load(a->o->config, true, conf, &d)) < 0) {
        log_diags(&d);
        wm_conf_diags_errors(&d, err);
        wm_conf_diags_free(&d);
        return -1;
    }
    if (conf == &a->conf) {
        apply_logging(a); /* starting: the file's log settings cover its warnings */
    }
    log_diags(&d); /* warnings */
    wm_conf_diags_free(&d);
    if (wm_app_services_from_conf(*conf, svcs, err) < 0) {
        wm_conf_free(*conf);
        *conf = NULL;
        return -1;
    }
    return 0;
}

static int apply(struct wm_app_services *svcs, struct wm_err *err)
{
    if (wm_lset_apply(svcs->specs, svcs->n, err) < 0) {
        return -1;
    }
    /* The listeners are in place: hand the tunnel its settings (or remove
     * it when the configuration has none). */
    wm_tunnel_install(svcs->tunnel);
    svcs->tunnel = NULL;
    wm_cluster_install(svcs->cluster); /* NULL: no (more) cluster */
    svcs->cluster = NULL;
    return 0;
}

/* Exit hook, on every worker after its loop: free what only that thread
 * may touch (tunnel state on worker 0, TLS pumps), then tell the main loop
 * (workers_done_cb). */
static void worker_exit(struct wm_worker *w, void *arg)
{
    struct app *a = arg;
    uint64_t one = 1;

    wm_cluster_worker_exit(w); /* before the tunnel: its carriers carry tunnel streams */
    wm_tunnel_worker_exit(w, NULL);
    wm_rev_worker_exit();
    wm_tls_pump_free_all();
    wm_hfwd_worker_exit(); /* last: the closes above may give request states back */
    if (write(a->done_fd, &one, sizeof(one)) < 0) {
        /* cannot fail on an eventfd short of overflow */
    }
}

/* Drain hook, on every worker: stop accepting, close parked (idle
 * keep-alive) clients; the tunnel (worker 0) stops reconnecting and
 * closes idle carriers. */
static void drain_worker(struct wm_worker *w, void *arg)
{
    wm_lset_close_worker(w, arg);
    wm_h2_goaway_worker(w, NULL); /* open HTTP/2 streams finish, no new ones */
    wm_conn_close_parked(w);      /* idle keep-alive clients: nothing to finish */
    if (wm_worker_index(w) == 0) {
        wm_tunnel_drain(w);
    }
}

/* ---- reload ---- */

/* Append each line of text (already escaped) to err. */
static void add_lines(struct wm_err *err, const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        wm_err_add_line(err, "%.*s", (int)n, text);
        text += n + (text[n] == '\n');
    }
}

/* Is addr among specs? */
static bool has_addr(const struct wm_app_services *s, const char *addr)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->specs[i].addr, addr) == 0) {
            return true;
        }
    }
    return false;
}

/* "; opened A (kind), B (kind); closed C (kind)" (or nothing) into buf. */
static void listener_diff(const struct wm_app_services *old, const struct wm_app_services *now,
                          char *buf, size_t cap)
{
    size_t off = 0;

    buf[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const struct wm_app_services *a = pass == 0 ? now : old;
        const struct wm_app_services *b = pass == 0 ? old : now;
        bool first = true;
        for (size_t i = 0; i < a->n && off < cap; i++) {
            if (has_addr(b, a->specs[i].addr)) {
                continue;
            }
            int r = snprintf(buf + off, cap - off, "%s%s (%s)",
                             first ? (pass == 0 ? "; opened " : "; closed ") : ", ",
                             a->specs[i].addr, a->specs[i].svc->kind);
            off = r < 0 ? off : off + (size_t)r;
            first = false;
        }
    }
    if (off >= cap && cap > 4) {
        memcpy(buf + cap - 4, "...", 4);
    }
}

/* A refused reload: its reason, one log line per error, whoever asked. */
static void log_refusal(const struct app *a, const char *by)
{
    const char *t = a->reload_msg;

    wm_log(WM_LOG_ERROR, 0, "reload of %s refused (asked by %s); the previous configuration "
                            "stays:", a->o->config, by);
    while (*t != '\0') {
        size_t n = strcspn(t, "\n");
        wm_log(WM_LOG_ERROR, 0, "reload refused: %.*s", (int)n, t);
        t += n + (t[n] == '\n');
    }
}

/* The control API stays where it was opened whatever the new file says
 * (moving it needs a restart), and the new file's token replaces the old:
 * there, a file without control_token would leave it open to anyone. 0, or
 * -1 with err filled. */
static int check_control(const struct app *a, const struct wm_conf *nc, struct wm_err *err)
{
    if (a->control_addr[0] == '\0' || wm_addr_listen_is_loopback(a->control_addr) ||
        (nc->control_token != NULL && nc->control_token[0] != '\0')) {
        return 0;
    }
    return wm_err_set(err, NULL, 0, 0, "control",
                      "the control API listens on %s, beyond loopback, and the new file has no "
                      "control_token: keep one (or restart with the control API on 127.0.0.1)",
                      a->control_addr);
}

/* The log file lines go to with config c: the flag's, else c's (NULL: none). */
static const char *eff_log_file(const struct app *a, const struct wm_conf *c)
{
    if (a->o->log_file[0] != '\0') {
        return a->o->log_file;
    }
    return c != NULL ? c->log_file : NULL;
}

/* The log file nc names when it is not the one open now, else NULL. */
static const char *new_log_file(const struct app *a, const struct wm_conf *nc)
{
    const char *now = eff_log_file(a, a->conf);
    const char *next = eff_log_file(a, nc);

    return next != NULL && (now == NULL || strcmp(now, next) != 0) ? next : NULL;
}

/* Can the new file's log file be opened? Checked before anything changes,
 * as at a start. 0, or -1 with err filled. */
static int check_log_file(const struct app *a, const struct wm_conf *nc, struct wm_err *err)
{
    const char *path = new_log_file(a, nc);
    int fd;

    if (path == NULL) {
        return 0;
    }
    fd = wm_open_append(path, 0644);
    if (fd < 0) {
        return wm_err_set(err, NULL, 0, 0, "log_file", "cannot open log file %s: %s", path,
                          errno == ENXIO ? "a FIFO that no process reads" : strerror(errno));
    }
    close(fd);
    return 0;
}

/* 0 with a summary in err->msg, or -1 with err filled. by: who asked
 * ("SIGHUP", "control API"), for the log. */
static int reload(struct app *a, struct wm_err *err, const char *by)
{
    struct wm_conf *nc = NULL;
    struct wm_app_services ns;
    struct wm_err why;
    char diff[768];

    memset(&ns, 0, sizeof(ns));
    a->reload_time = time(NULL);
    if (a->o->config == NULL) {
        wm_log(WM_LOG_INFO, 0, "%s: started from flags, not from a config file: nothing to "
                               "reload", by);
        return wm_err_set(err, NULL, 0, 0, NULL,
                          "started from flags, not from a config file: nothing to reload");
    }
    if (a->stopping) {
        return wm_err_set(err, NULL, 0, 0, NULL, "stopping");
    }
    wm_sd_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
                 wm_sd_monotonic_usec(), a->o->config);
    if (load(a, &nc, &ns, &why) < 0 || check_control(a, nc, &why) < 0 ||
        check_log_file(a, nc, &why) < 0 || apply(&ns, &why) < 0) {
        wm_app_services_free(&ns);
        wm_conf_free(nc);
        a->reload_ok = false;
        a->reloads_failed++;
        wm_app_obs_reload(false, a->o->config, a->o->config_text);
        wm_err_format(&why, a->reload_msg, sizeof(a->reload_msg));
        wm_err_set(err, NULL, 0, 0, NULL,
                   "reload refused, still running the previous configuration:");
        add_lines(err, a->reload_msg);
        log_refusal(a, by);
        wm_sd_notify("READY=1\nSTATUS=reload refused, previous configuration serving");
        return -1;
    }
    /* Committed: listeners now hand new connections to the new services. */
    if (a->control_addr[0] != '\0' && !nc->disable_control &&
        strcmp(a->control_addr, nc->control) != 0 && !a->o->control_set) {
        wm_log(WM_LOG_WARN, 0, "reload: control address change to %s needs a restart",
               nc->control);
    }
    if (!a->o->disable_control_set && nc->disable_control != (a->control_addr[0] == '\0')) {
        wm_log(WM_LOG_WARN, 0, "reload: disable_control = %s needs a restart (the control API %s)",
               nc->disable_control ? "true" : "false",
               a->control_addr[0] != '\0' ? "stays on" : "stays off");
    }
    if (nc->workers != a->conf->workers && !a->o->workers_set) {
        wm_log(WM_LOG_WARN, 0, "reload: worker count change needs a restart");
    }
    const char *npid = nc->pidfile != NULL ? nc->pidfile : (a->o->daemon ? a->o->pidfile : "");
    if (!a->o->pidfile_set && strcmp(npid, a->pidfile) != 0) {
        if (npid[0] == '\0') {
            wm_log(WM_LOG_WARN, 0, "reload: pidfile removal needs a restart (the pid stays in "
                                   "\"%s\")", a->pidfile);
        } else if (a->pidfile[0] == '\0') {
            wm_log(WM_LOG_WARN, 0, "reload: pidfile change to \"%s\" needs a restart (no pidfile "
                                   "is written until then)", npid);
        } else {
            wm_log(WM_LOG_WARN, 0, "reload: pidfile change to \"%s\" needs a restart (the pid "
                                   "stays in \"%s\")", npid, a->pidfile);
        }
    }
    listener_diff(&a->svcs, &ns, diff, sizeof(diff));
    const char *log_file = new_log_file(a, nc); /* in nc: outlives the old conf */
    wm_app_services_free(&a->svcs);
    a->svcs = ns;
    wm_conf_free(a->conf);
    a->conf = nc;
    apply_logging(a);
    if (log_file != NULL && wm_log_open_file(log_file) < 0) {
        wm_log(WM_LOG_ERROR, 0, "reload: cannot open log file %s: %s", log_file,
               strerror(errno));
    }
    wm_control_set_token(nc->control_token);
    if (!a->o->max_connections_set) {
        wm_listener_set_max_connections((size_t)nc->max_connections);
    }
    if (!a->o->grace_set && nc->grace_ms > 0) {
        a->grace_ms = (int)nc->grace_ms;
    }
    /* HTTP/2 clients reconnect to the new configuration (as nginx's old
     * workers do): GOAWAY, their open streams finish. */
    for (int i = 0; i < wm_worker_count(); i++) {
        wm_worker_post(wm_worker_get(i), wm_h2_goaway_worker, NULL);
    }
    a->reload_ok = true;
    a->reloads_ok++;
    wm_app_obs_reload(true, a->o->config, a->o->config_text);
    snprintf(a->reload_msg, sizeof(a->reload_msg), "reloaded %s: %zu listener(s)%s",
             a->o->config, ns.n, diff);
    wm_err_set(err, NULL, 0, 0, NULL, "%s", a->reload_msg);
    wm_log(WM_LOG_INFO, 0, "%s (%s)", a->reload_msg, by);
    wm_sd_notify("READY=1\nSTATUS=serving %zu listener(s)", ns.n);
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
    wm_sd_notify("STOPPING=1\nSTATUS=stopping (%s)", why);
    wm_workers_drain(a->grace_ms, drain_worker, NULL);
    /* The main loop runs on, taking signals, until workers_done_cb. */
}

/* On the main loop: done_fd counted more workers out of their loops. */
static void workers_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    uint64_t n;

    (void)what;
    if (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
        a->workers_done += n;
    }
    if (a->workers_done >= (uint64_t)a->workers) {
        /* Leave the control API a moment to flush its answer (POST /stop). */
        struct timeval tv = {0, 200 * 1000};
        event_base_loopexit(a->base, &tv);
    }
}

/* Block (SIG_BLOCK) or unblock the stop and reload signals in the calling
 * thread. The workers inherit them blocked, so only the main thread takes
 * them: through its loop while it runs, and nobody during the teardown after
 * it, so a late signal cannot kill a process already on its way out. */
static void mask_signals(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(how, &set, NULL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    struct wm_err err;

    (void)what;
    if (sig == SIGUSR1) {
        /* logrotate: the files were moved; write to new ones */
        const char *lf = a->o->log_file[0] ? a->o->log_file
                                           : (a->conf != NULL ? a->conf->log_file : NULL);
        if (lf != NULL && wm_log_open_file(lf) < 0) {
            wm_log(WM_LOG_ERROR, 0, "SIGUSR1: cannot reopen %s", lf);
        }
        wm_rev_logs_reopen();
        wm_log(WM_LOG_INFO, 0, "SIGUSR1: log files reopened");
        return;
    }
    if (sig == SIGHUP) {
        wm_log(WM_LOG_INFO, 0, "SIGHUP: reloading");
        reload(a, &err, "SIGHUP"); /* logs its outcome */
        return;
    }
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (a->stopping) {
        /* As nginx does: a second stop signal means now, still exit 0. */
        if (!a->stopping_now) {
            a->stopping_now = true;
            wm_log(WM_LOG_INFO, 0, "%s during the grace period: stopping now", name);
            wm_workers_drain(0, drain_worker, NULL);
        }
        return;
    }
    begin_stop(a, name);
}

/* ---- control hooks ---- */

static int hook_reload(void *arg, struct wm_err *err)
{
    return reload(arg, err, "control API");
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
    wm_cluster_status_json(out);
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

int wm_app_write_pidfile(const char *path)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    /* O_NONBLOCK: a FIFO there must not hang the start (refused below) */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    struct stat st;

    if (fd < 0) {
        if (errno == ENXIO) {
            errno = EINVAL; /* a FIFO without a reader */
        }
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL; /* "Invalid argument": not a regular file */
        return -1;
    }
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
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

static void report_err(int fd, const struct wm_err *err)
{
    char msg[WM_ERR_MSG_MAX + WM_ERR_FILE_MAX + WM_ERR_KEY_MAX + 32];

    wm_app_report(fd, false, wm_err_format(err, msg, sizeof(msg)));
}

/* The services (from the file or the flags), the file's grace and the log
 * file. 0, or -1 with err filled. */
static int start_services(struct app *a, struct wm_err *err)
{
    const struct wm_app_opts *o = a->o;

    if (o->config == NULL && o->config_text == NULL) {
        if (wm_app_services_from_flags(o, &a->svcs, err) < 0) {
            return -1;
        }
    } else if (load(a, &a->conf, &a->svcs, err) < 0) {
        return -1;
    } else if (!o->grace_set && a->conf->grace_ms > 0) {
        a->grace_ms = (int)a->conf->grace_ms;
    }
    if (o->max_connections_set) {
        wm_listener_set_max_connections((size_t)o->max_connections);
    } else if (a->conf != NULL) {
        wm_listener_set_max_connections((size_t)a->conf->max_connections);
    }
    const char *log_file = o->log_file[0] ? o->log_file
                                          : (a->conf != NULL ? a->conf->log_file : NULL);
    if (log_file != NULL && wm_log_open_file(log_file) < 0) {
        return wm_err_set(err, NULL, 0, 0, NULL, "cannot open log file %s: %s", log_file,
                          strerror(errno));
    }
    a->workers = o->workers;
    if (!o->workers_set && a->conf != NULL && a->conf->workers > 0) {
        a->workers = (int)a->conf->workers;
    }
    return 0;
}

/* Once the workers run: the main loop, the listeners, the control API and
 * the pidfile. 0, or -1 with err filled (undone by close_process()). */
static int open_process(struct app *a, struct wm_err *err)
{
    const struct wm_app_opts *o = a->o;

    a->base = event_base_new();
    if (a->base == NULL) {
        return wm_err_set(err, NULL, 0, 0, NULL, "cannot create the event loop");
    }
    if (apply(&a->svcs, err) < 0) {
        return -1;
    }
    if (!eff_disable_control(a)) {
        struct wm_control_hooks hooks = {.reload = hook_reload, .stop = hook_stop, .now = hook_now,
                                         .status = hook_status, .arg = a};
        const char *token = a->conf != NULL ? a->conf->control_token : NULL;
        if ((token == NULL || token[0] == '\0') && !wm_addr_listen_is_loopback(eff_control(a))) {
            return wm_err_set(err, NULL, 0, 0, "control",
                              "%s is reachable beyond loopback: the control API needs "
                              "control_token there (a config file's key), or listen on "
                              "127.0.0.1, or --disable-control",
                              eff_control(a));
        }
        if (wm_control_start(a->base, eff_control(a), token, &hooks, err) < 0) {
            return -1;
        }
        snprintf(a->control_addr, sizeof(a->control_addr), "%s", eff_control(a));
    }
    if (o->pidfile_set || (o->daemon && (a->conf == NULL || a->conf->pidfile == NULL))) {
        snprintf(a->pidfile, sizeof(a->pidfile), "%s", o->pidfile);
    } else if (a->conf != NULL && a->conf->pidfile != NULL) {
        snprintf(a->pidfile, sizeof(a->pidfile), "%s", a->conf->pidfile);
    }
    if (a->pidfile[0] != '\0' && !o->forever) {
        if (wm_app_write_pidfile(a->pidfile) < 0) {
            return wm_err_set(err, NULL, 0, 0, NULL, "cannot write pidfile %s: %s", a->pidfile,
                              errno == EINVAL ? "not a regular file" : strerror(errno));
        }
        a->pid_written = true;
    }
    a->done_ev = event_new(a->base, a->done_fd, EV_READ | EV_PERSIST, workers_done_cb, a);
    event_add(a->done_ev, NULL);
    a->sig_int = evsignal_new(a->base, SIGINT, signal_cb, a);
    a->sig_term = evsignal_new(a->base, SIGTERM, signal_cb, a);
    a->sig_hup = evsignal_new(a->base, SIGHUP, signal_cb, a);
    a->sig_usr1 = evsignal_new(a->base, SIGUSR1, signal_cb, a);
    evsignal_add(a->sig_usr1, NULL);
    evsignal_add(a->sig_int, NULL);
    evsignal_add(a->sig_term, NULL);
    evsignal_add(a->sig_hup, NULL);
    mask_signals(SIG_UNBLOCK); /* one that came meanwhile is taken now */
    return 0;
}

static void close_process(struct app *a)
{
    wm_lset_free();
    if (a->sig_int != NULL) {
        event_free(a->sig_int);
        event_free(a->sig_term);
        event_free(a->sig_hup);
        event_free(a->sig_usr1);
    }
    if (a->done_ev != NULL) {
        event_free(a->done_ev);
    }
    if (a->base != NULL) {
        event_base_free(a->base);
    }
    if (a->pid_written) {
        unlink(a->pidfile);
    }
}

static void log_started(const struct app *a)
{
    for (size_t i = 0; i < a->svcs.n; i++) {
        wm_log(WM_LOG_INFO, 0, "listening on %s (%s), %d worker(s)", a->svcs.specs[i].addr,
               a->svcs.specs[i].svc->kind, a->workers);
    }
    if (a->svcs.n == 0) {
        wm_log(WM_LOG_WARN, 0, "nothing to serve: the configuration opens no listener");
    }
    if (!eff_disable_control(a)) {
        wm_log(WM_LOG_INFO, 0, "control API on http://%s", eff_control(a));
    }
}

/* The serving process proper. notify: where to report readiness (-1: none). */
int wm_app_serve(struct wm_app_opts *o, int notify)
{
    struct app a;
    struct wm_err err;
    int rc = 1;

    memset(&a, 0, sizeof(a));
    a.o = o;
    a.done_fd = -1;
    a.grace_ms = o->grace_ms;
    apply_logging(&a);
    if (start_services(&a, &err) < 0) {
        report_err(notify, &err);
        goto free_conf;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    a.done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a.done_fd < 0) {
        wm_app_report(notify, false, "cannot create an eventfd");
        goto free_conf;
    }
    if (wm_app_obs_init(a.workers, o->config, o->config_text) < 0 ||
        wm_logq_start(a.workers) < 0) {
        wm_app_report(notify, false, "out of memory for metrics and log queues");
        goto free_conf;
    }
    mask_signals(SIG_BLOCK); /* before the workers start: they inherit it */
    wm_workers_set_exit_hook(worker_exit, &a);
    if (wm_workers_init(a.workers) < 0 || wm_workers_start() < 0) {
        wm_app_report(notify, false, "cannot start worker threads");
        goto free_conf;
    }
    wm_rev_checker_start();
    if (open_process(&a, &err) < 0) {
        report_err(notify, &err);
        wm_control_stop();
        wm_workers_drain(0, drain_worker, NULL);
        wm_workers_join();
        goto close;
    }
    log_started(&a);
    wm_app_report(notify, true, "");
    /* systemd Type=notify: the listeners are open */
    wm_sd_notify("READY=1\nSTATUS=serving %zu listener(s)", a.svcs.n);

    event_base_dispatch(a.base);
    mask_signals(SIG_BLOCK); /* until exit */
    if (!a.stopping) {
        begin_stop(&a, "loop ended");
    }
    wm_control_stop();
    wm_workers_join();
    wm_log(WM_LOG_INFO, 0, "stopped");
    rc = 0;
close:
    close_process(&a);
free_conf:
    if (a.done_fd >= 0) {
        close(a.done_fd);
    }
    wm_app_services_free(&a.svcs);
    wm_conf_free(a.conf);
    wm_logq_stop(); /* every line queued is written */
    wm_app_obs_free();
    libevent_global_shutdown();
    return rc;
}
