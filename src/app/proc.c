/*
 * app/proc.c - process modes around the server: daemon, supervisor
 * (--forever), and the one-shot commands check, reload and stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "app/app_int.h"
#include "conf/config.h"
#include "conf/cval.h"
#include "conf/yaml.h"
#include "control/client.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#define SUPERVISE_MAX_BACKOFF_MS 30000
#define SUPERVISE_FAST_FAIL_MS 2000
#define SUPERVISE_FAST_FAILS 5

/* Fork into the background. The parent waits for the child to report
 * readiness (or the start error) over a pipe, prints the error and exits
 * with the child's verdict, so --daemon fails as loudly as a foreground
 * start. Returns the pipe's write end in the child, -1 on failure. */
static int daemonize(void)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid > 0) {
        char msg[2048];
        ssize_t n;
        size_t off = 0;
        close(p[1]);
        while (off < sizeof(msg) - 1 && (n = read(p[0], msg + off, sizeof(msg) - 1 - off)) > 0) {
            off += (size_t)n;
        }
        msg[off] = '\0';
        if (off > 0 && msg[0] == 'O') {
            _exit(0);
        }
        fprintf(stderr, "wmproxy: %s\n", off > 1 ? msg + 1 : "the daemon failed to start");
        _exit(1);
    }
    close(p[0]);
    setsid();
    if (fork() > 0) {
        _exit(0);
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2) {
            close(devnull);
        }
    }
    return p[1];
}

/* ---- supervisor ---- */

static volatile sig_atomic_t sup_child;
static volatile sig_atomic_t sup_stop;

static void sup_signal(int sig)
{
    if (sig == SIGTERM || sig == SIGINT) {
        sup_stop = 1;
    }
    if (sup_child > 0) {
        kill((pid_t)sup_child, sig);
    }
}

/* pidfile: where the supervisor keeps its own pid ("" for none); the
 * server children write none. */
static int supervise(struct wm_app_opts *o, int notify, const char *pidfile)
{
    struct sigaction sa;
    unsigned backoff_ms = 500;
    int fast_fails = 0;
    bool pid_written = false;
    char msg[700];

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sup_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pidfile[0] != '\0') {
        if (wm_app_write_pidfile(pidfile) < 0) {
            snprintf(msg, sizeof(msg), "cannot write pidfile %s: %s", pidfile,
                     errno == EINVAL ? "not a regular file" : strerror(errno));
            wm_app_report(notify, false, msg);
            return 1;
        }
        pid_written = true;
    }
    for (;;) {
        uint64_t started = wm_now_ms();
        pid_t pid = fork();
        if (pid < 0) {
            wm_app_report(notify, false, "fork failed");
            return 1;
        }
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            signal(SIGHUP, SIG_DFL);
            _exit(wm_app_serve(o, notify));
        }
        sup_child = pid;
        if (notify >= 0) {
            close(notify); /* only the first child reports readiness */
            notify = -1;
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        sup_child = 0;
        if (sup_stop || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            if (pid_written) {
                unlink(pidfile);
            }
            return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
        }
        uint64_t ran = wm_now_ms() - started;
        if (ran < SUPERVISE_FAST_FAIL_MS) {
            if (++fast_fails >= SUPERVISE_FAST_FAILS) {
                wm_log(WM_LOG_ERROR, 0, "supervisor: the server keeps failing at start; giving up");
                if (pid_written) {
                    unlink(pidfile);
                }
                return 1;
            }
        } else {
            fast_fails = 0;
            backoff_ms = 500;
        }
        if (WIFSIGNALED(status)) {
            wm_log(WM_LOG_ERROR, 0, "supervisor: server killed by signal %d; restarting in %u ms",
                   WTERMSIG(status), backoff_ms);
        } else {
            wm_log(WM_LOG_ERROR, 0, "supervisor: server exited with %d; restarting in %u ms",
                   WEXITSTATUS(status), backoff_ms);
        }
        struct timespec ts = {backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L};
        while (!sup_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
        if (sup_stop) {
            if (pid_written) {
                unlink(pidfile);
            }
            return 0;
        }
        backoff_ms = backoff_ms * 2 > SUPERVISE_MAX_BACKOFF_MS ? SUPERVISE_MAX_BACKOFF_MS
                                                              : backoff_ms * 2;
    }
}

int wm_app_run(struct wm_app_opts *o)
{
    int notify = -1;
    char pidfile[sizeof(o->pidfile)] = "";
    bool file_pidfile = false;

    if (o->config != NULL) {
        /* Fail in the foreground, before forking, on a broken file. */
        struct wm_conf *c = NULL;
        struct wm_conf_diags d;
        char line[1400];
        if (wm_conf_load(o->config, true, &c, &d) < 0) {
            for (size_t i = 0; i < d.n; i++) {
                fprintf(stderr, "wmproxy: %s\n", wm_conf_diag_format(&d, i, line, sizeof(line)));
            }
            wm_conf_diags_free(&d);
            return 1;
        }
        wm_conf_diags_free(&d);
        /* The supervisor's pidfile, chosen as the server's would be: the
         * flag, else the file's key, else the default with --daemon. */
        if (!o->pidfile_set && c->pidfile != NULL) {
            snprintf(pidfile, sizeof(pidfile), "%s", c->pidfile);
            file_pidfile = true;
        }
        wm_conf_free(c);
    }
    if (!file_pidfile && (o->pidfile_set || o->daemon)) {
        snprintf(pidfile, sizeof(pidfile), "%s", o->pidfile);
    }
    if (o->daemon) {
        notify = daemonize();
        if (notify < 0) {
            fprintf(stderr, "wmproxy: cannot daemonize: %s\n", strerror(errno));
            return 1;
        }
    }
    if (o->forever) {
        return supervise(o, notify, pidfile);
    }
    return wm_app_serve(o, notify);
}

int wm_app_check(const char *path)
{
    struct wm_conf *c = NULL;
    struct wm_conf_diags d;
    char line[1400];
    int r = wm_conf_load(path, true, &c, &d);

    for (size_t i = 0; i < d.n; i++) {
        fprintf(stderr, "%s\n", wm_conf_diag_format(&d, i, line, sizeof(line)));
    }
    if (r == 0 && c->proxy != NULL && wm_app_tunnel_wanted(c->proxy)) {
        /* Certificates, roles, mapping sizes: what only building checks. */
        struct wm_err e;
        char msg[1024];
        wm_log_set_fd(2);
        if (wm_app_tunnel_check(c->proxy, &e) < 0) {
            fprintf(stderr, "%s: %s\n", path, wm_err_format(&e, msg, sizeof(msg)));
            d.nerrors++;
            r = -1;
        }
        if (r == 0 && wm_app_cluster_check(c, &e) < 0) {
            fprintf(stderr, "%s: %s\n", path, wm_err_format(&e, msg, sizeof(msg)));
            d.nerrors++;
            r = -1;
        }
    }
    if (r == 0 && (c->http != NULL || c->stream != NULL)) {
        struct wm_err e;
        char msg[1024];
        if (wm_app_http_check(c, &e) < 0) {
            /* located errors read "file:line:col: key: message" */
            fprintf(stderr, "%s%s%s\n", e.file[0] ? "" : path, e.file[0] ? "" : ": ",
                    wm_err_format(&e, msg, sizeof(msg)));
            d.nerrors++;
            r = -1;
        }
    }
    if (r < 0) {
        fprintf(stderr, "wmproxy: %s: %zu error(s); the configuration is not valid\n", path,
                d.nerrors);
    } else {
        printf("wmproxy: %s: the configuration is valid\n", path);
    }
    wm_conf_diags_free(&d);
    wm_conf_free(c);
    return r < 0 ? 1 : 0;
}

int wm_app_remote(const char *what, const char *config, const char *url, const char *token)
{
    char target[256];
    char tok[512] = "";
    char path[32];
    char body[8192];
    char why[256];
    int status = 0;

    snprintf(target, sizeof(target), "%s", url != NULL ? url : WM_APP_DEFAULT_CONTROL);
    if (config != NULL && url == NULL) {
        if (wm_conf_peek_control(config, target, sizeof(target), tok, sizeof(tok), why,
                                 sizeof(why)) < 0) {
            fprintf(stderr, "wmproxy: %s: %s\n", config, why);
            return 1;
        }
    }
    if (token != NULL) {
        snprintf(tok, sizeof(tok), "%s", token);
    }
    snprintf(path, sizeof(path), "/%s", what);
    if (wm_control_call(target, "POST", path, tok, 30000, &status, body, sizeof(body)) < 0) {
        fprintf(stderr, "wmproxy: %s: %s\n", what, body);
        return 1;
    }
    /* The answer is {"ok":..,"message":".."} (JSON, which YAML reads):
     * print the message as text, its escapes decoded. */
    struct wm_err err;
    struct wm_cval *doc = wm_yaml_parse(body, strlen(body), "answer", &err);
    const struct wm_cval *mv = doc != NULL ? wm_cval_get(doc, "message") : NULL;
    const char *m = mv != NULL ? wm_cval_str(mv, NULL) : NULL;
    char text[8192];
    if (m != NULL) {
        snprintf(text, sizeof(text), "%s", m);
    } else {
        snprintf(text, sizeof(text), "HTTP %d: %.8000s", status, body);
    }
    wm_cval_free(doc);
    fprintf(status == 200 ? stdout : stderr, "%s%s\n", status == 200 ? "" : "wmproxy: ", text);
    return status == 200 ? 0 : 1;
}
