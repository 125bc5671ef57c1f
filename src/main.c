/*
 * main.c - command line and process wiring. Every feature lives in its
 * subsystem; this file parses flags, builds services and runs the loops.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"
#include "core/err.h"
#include "core/limits.h"
#include "core/service.h"
#include "core/log.h"
#include "core/util.h"
#include "core/version.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/lset.h"
#include "proxy/proxy.h"

#define DEFAULT_BIND "127.0.0.1:8090"
#define DEFAULT_CONTROL "127.0.0.1:8837"
#define DEFAULT_PIDFILE "wmproxy.pid"

/* Flags every serving subcommand shares. */
struct run_opts {
    char control[WM_ADDR_STR_MAX];
    bool disable_control;
    bool disable_stdout;
    bool daemon;
    bool pidfile_set;
    char pidfile[512];
    int verbose;
    bool level_set;
    enum wm_log_level level;
    int workers;
    int grace_ms;
    char log_file[512];
};

enum {
    OPT_CONTROL = 1000,
    OPT_DISABLE_CONTROL,
    OPT_DISABLE_STDOUT,
    OPT_DAEMON,
    OPT_PIDFILE,
    OPT_DEFAULT_LEVEL,
    OPT_WORKERS,
    OPT_GRACE,
    OPT_LOG_FILE,
    OPT_USER,
    OPT_PASS,
    OPT_FLAG,
    OPT_CONNECT_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_HANDSHAKE_TIMEOUT,
};

static const char common_help[] =
    "      --control ADDR        control API address (default " DEFAULT_CONTROL ")\n"
    "      --disable-control     do not serve the control API\n"
    "      --disable-stdout      do not log to stdout\n"
    "      --log-file FILE       append log lines to FILE\n"
    "      --daemon              detach and run in the background\n"
    "      --pidfile FILE        write the process id to FILE (default " DEFAULT_PIDFILE
    " with --daemon)\n"
    "  -v                        more log detail (repeat for trace)\n"
    "      --default-level LVL   error|warn|info|debug|trace|off (default info)\n"
    "      --workers N           worker threads (default: number of cores)\n"
    "      --grace SECS          on SIGTERM, wait up to SECS for connections (default 10)\n"
    "  -h, --help                this help\n";

static void usage_main(FILE *f)
{
    fprintf(f,
            "wmproxy %s - HTTP/HTTPS/SOCKS5 proxy, reverse proxy, tunnel\n\n"
            "usage: wmproxy <command> [options]\n\n"
            "commands:\n"
            "  proxy     run a forward proxy (HTTP, CONNECT and SOCKS5 on one port)\n"
            "  version   print the version\n"
            "\n'wmproxy <command> --help' describes a command's options.\n",
            WM_VERSION);
}

static void usage_proxy(FILE *f)
{
    fprintf(f,
            "usage: wmproxy proxy [options]\n\n"
            "Serve HTTP proxy, HTTPS CONNECT and SOCKS5 (and SOCKS4/4a) on one port.\n\n"
            "  -b, --bind ADDR           listen address (default " DEFAULT_BIND
            "; [::1]:port for IPv6)\n"
            "      --user USER           require this user (HTTP Basic / SOCKS5 user/pass)\n"
            "      --pass PASS           and this password\n"
            "      --flag \"http https socks5\"\n"
            "                            protocols to serve (or a number 1..7)\n"
            "      --connect-timeout S   dial timeout (default 10)\n"
            "      --idle-timeout S      close a connection idle that long (default 300)\n"
            "      --handshake-timeout S client must complete its request in S (default 10)\n"
            "%s",
            common_help);
}

static int parse_secs(const char *s, int *ms)
{
    uint64_t v;

    if (wm_parse_u64(s, strlen(s), 86400 * 7, &v) < 0) {
        return -1;
    }
    *ms = (int)(v * 1000);
    return 0;
}

static int ncores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

static void run_opts_default(struct run_opts *ro)
{
    memset(ro, 0, sizeof(*ro));
    snprintf(ro->control, sizeof(ro->control), "%s", DEFAULT_CONTROL);
    snprintf(ro->pidfile, sizeof(ro->pidfile), "%s", DEFAULT_PIDFILE);
    ro->workers = ncores();
    ro->grace_ms = WM_SHUTDOWN_GRACE_MS;
    ro->level = WM_LOG_INFO;
}

/* Handle one of the shared flags. Returns 0 if handled, 1 if not ours, -1 bad. */
static int common_opt(struct run_opts *ro, int opt, const char *arg)
{
    uint64_t v;

    switch (opt) {
    case OPT_CONTROL:
        snprintf(ro->control, sizeof(ro->control), "%s", arg);
        return 0;
    case OPT_DISABLE_CONTROL:
        ro->disable_control = true;
        return 0;
    case OPT_DISABLE_STDOUT:
        ro->disable_stdout = true;
        return 0;
    case OPT_DAEMON:
        ro->daemon = true;
        return 0;
    case OPT_PIDFILE:
        snprintf(ro->pidfile, sizeof(ro->pidfile), "%s", arg);
        ro->pidfile_set = true;
        return 0;
    case OPT_LOG_FILE:
        snprintf(ro->log_file, sizeof(ro->log_file), "%s", arg);
        return 0;
    case 'v':
        ro->verbose++;
        return 0;
    case OPT_DEFAULT_LEVEL:
        if (wm_log_parse_level(arg, &ro->level) < 0) {
            fprintf(stderr, "wmproxy: --default-level: expected error|warn|info|debug|trace|off, "
                            "got \"%s\"\n", arg);
            return -1;
        }
        ro->level_set = true;
        return 0;
    case OPT_WORKERS:
        if (wm_parse_u64(arg, strlen(arg), 256, &v) < 0 || v == 0) {
            fprintf(stderr, "wmproxy: --workers: expected 1..256, got \"%s\"\n", arg);
            return -1;
        }
        ro->workers = (int)v;
        return 0;
    case OPT_GRACE:
        if (parse_secs(arg, &ro->grace_ms) < 0) {
            fprintf(stderr, "wmproxy: --grace: expected seconds, got \"%s\"\n", arg);
            return -1;
        }
        return 0;
    default:
        return 1;
    }
}

#define COMMON_LONGOPTS                                                                   \
    {"control", required_argument, NULL, OPT_CONTROL},                                    \
        {"disable-control", no_argument, NULL, OPT_DISABLE_CONTROL},                      \
        {"disable-stdout", no_argument, NULL, OPT_DISABLE_STDOUT},                        \
        {"daemon", no_argument, NULL, OPT_DAEMON},                                        \
        {"pidfile", required_argument, NULL, OPT_PIDFILE},                                \
        {"log-file", required_argument, NULL, OPT_LOG_FILE},                              \
        {"default-level", required_argument, NULL, OPT_DEFAULT_LEVEL},                    \
        {"workers", required_argument, NULL, OPT_WORKERS},                                \
        {"grace", required_argument, NULL, OPT_GRACE},                                    \
        {"help", no_argument, NULL, 'h'}

/* ---- serving ---- */

struct server {
    struct run_opts *ro;
    struct event_base *base;
    struct event *sig_int;
    struct event *sig_term;
    struct event *sig_hup;
    bool stopping;
};

static void begin_stop(struct server *s, const char *why)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    wm_log(WM_LOG_INFO, 0, "stopping (%s): no new connections, grace %d ms", why,
           s->ro->grace_ms);
    wm_workers_drain(s->ro->grace_ms, wm_lset_close_worker, NULL);
    /* Leave the control API a moment to flush its answer (POST /stop). */
    struct timeval tv = {0, 200 * 1000};
    event_base_loopexit(s->base, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    if (sig == SIGHUP) {
        wm_log(WM_LOG_INFO, 0, "SIGHUP: nothing to reload (started from flags, not a file)");
        return;
    }
    begin_stop(s, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void control_stop_hook(void *arg)
{
    begin_stop(arg, "control API");
}

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

/* Fork into the background. The parent waits for the child to report
 * readiness (or the startup error) over a pipe, prints the error and exits
 * with the child's verdict, so `--daemon` fails loudly like a foreground
 * start. Returns the write end of the pipe in the child. */
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
        char msg[1024];
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
        fprintf(stderr, "wmproxy: %s\n", off > 1 ? msg + 1 : "daemon failed to start");
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

static void report(int fd, bool ok, const char *msg)
{
    char buf[1024];
    int n;

    if (fd < 0) {
        if (!ok) {
            fprintf(stderr, "wmproxy: %s\n", msg);
        }
        return;
    }
    n = snprintf(buf, sizeof(buf), "%c%s", ok ? 'O' : 'E', msg);
    if (n > 0 && write(fd, buf, (size_t)n) < 0) {
        /* the parent is gone; nothing to tell */
    }
    close(fd);
}

static void setup_logging(const struct run_opts *ro)
{
    enum wm_log_level lvl = ro->level;

    if (!ro->level_set) {
        lvl = ro->verbose >= 2 ? WM_LOG_TRACE : (ro->verbose == 1 ? WM_LOG_DEBUG : WM_LOG_INFO);
    }
    wm_log_set_level(lvl);
    if (ro->disable_stdout || ro->daemon) {
        wm_log_set_fd(-1);
    }
}

/* Run the listeners described by specs until stopped. Returns the exit code. */
static int serve(struct run_opts *ro, const struct wm_lspec *specs, size_t nspecs)
{
    struct server s = {.ro = ro};
    struct wm_err err;
    char msg[1200];
    int notify = -1;
    int rc = 0;

    setup_logging(ro);
    /* Validate addresses before forking, so typos fail in the foreground. */
    for (size_t i = 0; i < nspecs; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (wm_addr_parse_listen(specs[i].addr, &ss, &len) < 0) {
            fprintf(stderr, "wmproxy: bad listen address \"%s\" (expected ip:port)\n",
                    specs[i].addr);
            return 1;
        }
    }
    if (ro->daemon) {
        notify = daemonize();
        if (notify < 0) {
            fprintf(stderr, "wmproxy: cannot daemonize: %s\n", strerror(errno));
            return 1;
        }
        if (!ro->pidfile_set) {
            ro->pidfile_set = true; /* --daemon writes the default pidfile */
        }
    }
    if (ro->log_file[0] != '\0' && wm_log_open_file(ro->log_file) < 0) {
        snprintf(msg, sizeof(msg), "cannot open log file %s: %s", ro->log_file, strerror(errno));
        report(notify, false, msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (wm_workers_init(ro->workers) < 0 || wm_workers_start() < 0) {
        report(notify, false, "cannot start worker threads");
        return 1;
    }
    s.base = event_base_new();
    if (s.base == NULL) {
        report(notify, false, "cannot create the event loop");
        rc = 1;
        goto stop_workers;
    }
    if (wm_lset_apply(specs, nspecs, &err) < 0) {
        report(notify, false, wm_err_format(&err, msg, sizeof(msg)));
        rc = 1;
        goto stop_workers;
    }
    if (!ro->disable_control) {
        struct wm_control_hooks hooks = {.stop = control_stop_hook, .arg = &s};
        if (wm_control_start(s.base, ro->control, NULL, &hooks, &err) < 0) {
            report(notify, false, wm_err_format(&err, msg, sizeof(msg)));
            rc = 1;
            goto stop_workers;
        }
    }
    if (ro->pidfile_set && write_pidfile(ro->pidfile) < 0) {
        snprintf(msg, sizeof(msg), "cannot write pidfile %s: %s", ro->pidfile, strerror(errno));
        report(notify, false, msg);
        rc = 1;
        goto stop_workers;
    }
    s.sig_int = evsignal_new(s.base, SIGINT, signal_cb, &s);
    s.sig_term = evsignal_new(s.base, SIGTERM, signal_cb, &s);
    s.sig_hup = evsignal_new(s.base, SIGHUP, signal_cb, &s);
    evsignal_add(s.sig_int, NULL);
    evsignal_add(s.sig_term, NULL);
    evsignal_add(s.sig_hup, NULL);
    for (size_t i = 0; i < nspecs; i++) {
        wm_log(WM_LOG_INFO, 0, "listening on %s (%s), %d worker(s)", specs[i].addr,
               specs[i].svc->kind, ro->workers);
    }
    if (!ro->disable_control) {
        wm_log(WM_LOG_INFO, 0, "control API on http://%s", ro->control);
    }
    report(notify, true, "");
    notify = -1;

    event_base_dispatch(s.base);
    if (!s.stopping) {
        begin_stop(&s, "loop ended");
    }
    wm_control_stop();
    wm_workers_join();
    wm_log(WM_LOG_INFO, 0, "stopped");
    goto cleanup;

stop_workers:
    wm_control_stop();
    wm_workers_drain(0, wm_lset_close_worker, NULL);
    wm_workers_join();
cleanup:
    wm_lset_free();
    if (s.sig_int != NULL) {
        event_free(s.sig_int);
        event_free(s.sig_term);
        event_free(s.sig_hup);
    }
    if (s.base != NULL) {
        event_base_free(s.base);
    }
    if (ro->pidfile_set && rc == 0) {
        unlink(ro->pidfile);
    }
    libevent_global_shutdown();
    return rc;
}

/* ---- subcommands ---- */

static int cmd_proxy(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"user", required_argument, NULL, OPT_USER},
        {"pass", required_argument, NULL, OPT_PASS},
        {"flag", required_argument, NULL, OPT_FLAG},
        {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
        COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct run_opts ro;
    struct wm_proxy_opts po;
    char bind[WM_ADDR_STR_MAX] = DEFAULT_BIND;
    bool have_user = false;
    bool have_pass = false;
    int opt;

    run_opts_default(&ro);
    wm_proxy_opts_default(&po);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "b:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            snprintf(bind, sizeof(bind), "%s", optarg);
            break;
        case OPT_USER:
            snprintf(po.user, sizeof(po.user), "%s", optarg);
            have_user = true;
            break;
        case OPT_PASS:
            snprintf(po.pass, sizeof(po.pass), "%s", optarg);
            have_pass = true;
            break;
        case OPT_FLAG:
            if (wm_proxy_parse_flags(optarg, &po.flags) < 0) {
                fprintf(stderr, "wmproxy: --flag: expected words http, https, socks5 "
                                "or a number 1..7, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case OPT_CONNECT_TIMEOUT:
        case OPT_IDLE_TIMEOUT:
        case OPT_HANDSHAKE_TIMEOUT: {
            int *dst = opt == OPT_CONNECT_TIMEOUT ? &po.connect_timeout_ms
                       : opt == OPT_IDLE_TIMEOUT  ? &po.idle_timeout_ms
                                                  : &po.handshake_timeout_ms;
            if (parse_secs(optarg, dst) < 0) {
                fprintf(stderr, "wmproxy: %s: expected seconds, got \"%s\"\n", argv[optind - 2],
                        optarg);
                return 2;
            }
            break;
        }
        case 'h':
            usage_proxy(stdout);
            return 0;
        default: {
            int r = common_opt(&ro, opt, optarg);
            if (r == 0) {
                break;
            }
            if (r > 0) {
                usage_proxy(stderr);
            }
            return 2;
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wmproxy: unexpected argument \"%s\"\n", argv[optind]);
        usage_proxy(stderr);
        return 2;
    }
    if (have_user != have_pass) {
        fprintf(stderr, "wmproxy: --user and --pass go together\n");
        return 2;
    }
    po.auth = have_user;
    struct wm_service *svc = wm_proxy_service_new(&po);
    explicit_bzero(&po, sizeof(po));
    if (svc == NULL) {
        fprintf(stderr, "wmproxy: out of memory\n");
        return 1;
    }
    struct wm_lspec spec = {bind, svc};
    int rc = serve(&ro, &spec, 1);
    wm_service_unref(svc);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    if (strcmp(argv[1], "proxy") == 0) {
        return cmd_proxy(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0 ||
        strcmp(argv[1], "-V") == 0) {
        printf("wmproxy %s\n", WM_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "wmproxy: unknown command \"%s\"\n\n", argv[1]);
    usage_main(stderr);
    return 2;
}
