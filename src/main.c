/*
 * main.c - the command line. Every feature lives in its subsystem; this
 * file only parses flags and calls the app module.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/log.h"
#include "core/util.h"
#include "core/version.h"

enum {
    OPT_CONTROL = 1000,
    OPT_DISABLE_CONTROL,
    OPT_DISABLE_STDOUT,
    OPT_DAEMON,
    OPT_FOREVER,
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
    OPT_TOKEN,
    OPT_TS,
    OPT_TC,
    OPT_TWO_WAY_TLS,
    OPT_CERT,
    OPT_KEY,
    OPT_CA,
    OPT_DOMAIN,
    OPT_MODE,
    OPT_CENTER_ADDR,
    OPT_MAP_HTTP,
    OPT_MAP_HTTPS,
    OPT_MAP_TCP,
    OPT_MAP_PROXY,
    OPT_MAP_CERT,
    OPT_MAP_KEY,
};

static const char common_help[] =
    "      --control ADDR        control API address (default " WM_APP_DEFAULT_CONTROL ")\n"
    "      --disable-control     do not serve the control API\n"
    "      --disable-stdout      do not log to stdout\n"
    "      --log-file FILE       append log lines to FILE\n"
    "      --daemon              detach and run in the background\n"
    "      --forever             keep a supervisor that restarts the server if it dies\n"
    "      --pidfile FILE        write the process id to FILE (default " WM_APP_DEFAULT_PIDFILE
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
            "  proxy     run a forward proxy from flags (HTTP, CONNECT, SOCKS5 on one port)\n"
            "  run       run everything a config file describes (-c FILE); alias: config\n"
            "  check     validate a config file (-c FILE) and list every error\n"
            "  reload    ask the running instance to reload its config (-c FILE | -u URL)\n"
            "  stop      ask the running instance to stop gracefully (-c FILE | -u URL)\n"
            "  version   print the version\n"
            "\n'wmproxy <command> --help' describes a command's options.\n",
            WM_VERSION);
}

static void usage_proxy(FILE *f)
{
    fprintf(f,
            "usage: wmproxy proxy [options]\n\n"
            "Serve HTTP proxy, HTTPS CONNECT and SOCKS5 (and SOCKS4/4a) on one port.\n\n"
            "  -b, --bind ADDR           listen address (default " WM_APP_DEFAULT_BIND
            "; [::1]:port for IPv6)\n"
            "      --user USER           require this user (HTTP Basic / SOCKS5 user/pass)\n"
            "      --pass PASS           and this password\n"
            "      --flag \"http https socks5\"\n"
            "                            protocols to serve (or a number 1..7)\n"
            "      --connect-timeout S   dial timeout (default 10)\n"
            "      --idle-timeout S      close a connection idle that long (default 300)\n"
            "      --handshake-timeout S client must complete its request in S (default 10)\n"
            "\ntunnel (docs/tunnel.md):\n"
            "  -S, --server HOST:PORT    forward every connection to this parent node\n"
            "      --ts                  TLS towards the parent\n"
            "      --tc                  accept child nodes on --bind (TLS); also --mode server\n"
            "      --center-addr ADDR    accept child nodes here instead of --bind\n"
            "      --two-way-tls         mutual TLS (client certificates)\n"
            "      --cert FILE --key FILE  this node's certificate and key\n"
            "      --ca FILE             trust anchors for the peer\n"
            "      --domain NAME         the parent's certificate name (default: its host)\n"
            "      --map-http-bind ADDR, --map-https-bind ADDR, --map-tcp-bind ADDR,\n"
            "      --map-proxy-bind ADDR public ports for the clients' mappings\n"
            "      --map-cert FILE --map-key FILE  certificate for --map-https-bind\n"
            "%s",
            common_help);
}

static void usage_run(FILE *f)
{
    fprintf(f,
            "usage: wmproxy run -c FILE [options]\n\n"
            "Run everything FILE describes (TOML, or YAML for .yaml/.yml). SIGHUP or\n"
            "`wmproxy reload` re-reads it without dropping connections.\n\n"
            "  -c, --config FILE         the configuration file\n"
            "%s",
            common_help);
}

static void usage_remote(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: wmproxy %s (-c FILE | -u URL) [--token TOKEN]\n\n"
            "Ask a running instance, through its control API, to %s.\n\n"
            "  -c, --config FILE   read the control address (and token) from FILE\n"
            "  -u, --url URL       the control API, e.g. http://127.0.0.1:8837\n"
            "      --token TOKEN   bearer token when the instance sets control_token\n"
            "  -h, --help          this help\n",
            cmd, strcmp(cmd, "reload") == 0 ? "reload its configuration" : "stop gracefully");
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

/* One of the shared flags: 0 handled, 1 not ours, -1 bad value. */
static int common_opt(struct wm_app_opts *o, int opt, const char *arg)
{
    uint64_t v;
    enum wm_log_level lvl;

    switch (opt) {
    case OPT_CONTROL:
        snprintf(o->control, sizeof(o->control), "%s", arg);
        o->control_set = true;
        return 0;
    case OPT_DISABLE_CONTROL:
        o->disable_control = o->disable_control_set = true;
        return 0;
    case OPT_DISABLE_STDOUT:
        o->disable_stdout = o->disable_stdout_set = true;
        return 0;
    case OPT_DAEMON:
        o->daemon = true;
        return 0;
    case OPT_FOREVER:
        o->forever = true;
        return 0;
    case OPT_PIDFILE:
        snprintf(o->pidfile, sizeof(o->pidfile), "%s", arg);
        o->pidfile_set = true;
        return 0;
    case OPT_LOG_FILE:
        snprintf(o->log_file, sizeof(o->log_file), "%s", arg);
        return 0;
    case 'v':
        o->verbose++;
        return 0;
    case OPT_DEFAULT_LEVEL:
        if (wm_log_parse_level(arg, &lvl) < 0) {
            fprintf(stderr, "wmproxy: --default-level: expected error|warn|info|debug|trace|off, "
                            "got \"%s\"\n", arg);
            return -1;
        }
        o->level = (int)lvl;
        o->level_set = true;
        return 0;
    case OPT_WORKERS:
        if (wm_parse_u64(arg, strlen(arg), 256, &v) < 0 || v == 0) {
            fprintf(stderr, "wmproxy: --workers: expected 1..256, got \"%s\"\n", arg);
            return -1;
        }
        o->workers = (int)v;
        o->workers_set = true;
        return 0;
    case OPT_GRACE:
        if (parse_secs(arg, &o->grace_ms) < 0) {
            fprintf(stderr, "wmproxy: --grace: expected seconds, got \"%s\"\n", arg);
            return -1;
        }
        o->grace_set = true;
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
        {"forever", no_argument, NULL, OPT_FOREVER},                                      \
        {"pidfile", required_argument, NULL, OPT_PIDFILE},                                \
        {"log-file", required_argument, NULL, OPT_LOG_FILE},                              \
        {"default-level", required_argument, NULL, OPT_DEFAULT_LEVEL},                    \
        {"workers", required_argument, NULL, OPT_WORKERS},                                \
        {"grace", required_argument, NULL, OPT_GRACE},                                    \
        {"help", no_argument, NULL, 'h'}

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
        {"server", required_argument, NULL, 'S'},
        {"ts", no_argument, NULL, OPT_TS},
        {"tc", no_argument, NULL, OPT_TC},
        {"two-way-tls", no_argument, NULL, OPT_TWO_WAY_TLS},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ca", required_argument, NULL, OPT_CA},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"mode", required_argument, NULL, OPT_MODE},
        {"center-addr", required_argument, NULL, OPT_CENTER_ADDR},
        {"map-http-bind", required_argument, NULL, OPT_MAP_HTTP},
        {"map-http", required_argument, NULL, OPT_MAP_HTTP},
        {"map-https-bind", required_argument, NULL, OPT_MAP_HTTPS},
        {"map-https", required_argument, NULL, OPT_MAP_HTTPS},
        {"map-tcp-bind", required_argument, NULL, OPT_MAP_TCP},
        {"map-tcp", required_argument, NULL, OPT_MAP_TCP},
        {"map-proxy-bind", required_argument, NULL, OPT_MAP_PROXY},
        {"map-proxy", required_argument, NULL, OPT_MAP_PROXY},
        {"map-cert", required_argument, NULL, OPT_MAP_CERT},
        {"map-key", required_argument, NULL, OPT_MAP_KEY},
        COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct wm_app_opts o;
    bool have_user = false;
    bool have_pass = false;
    int opt;

    wm_app_opts_default(&o);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "b:S:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            o.proxy.bind = optarg;
            break;
        case 'S':
            o.proxy.server = optarg;
            break;
        case OPT_TS:
            o.proxy.ts = true;
            break;
        case OPT_TC:
            o.proxy.tc = true;
            break;
        case OPT_TWO_WAY_TLS:
            o.proxy.two_way_tls = true;
            break;
        case OPT_CERT:
            o.proxy.cert = optarg;
            break;
        case OPT_KEY:
            o.proxy.key = optarg;
            break;
        case OPT_CA:
            o.proxy.ca = optarg;
            break;
        case OPT_DOMAIN:
            o.proxy.domain = optarg;
            break;
        case OPT_MODE:
            if (strcmp(optarg, "server") != 0 && strcmp(optarg, "client") != 0) {
                fprintf(stderr, "wmproxy: --mode: expected server or client\n");
                return 2;
            }
            o.proxy.mode = optarg;
            break;
        case OPT_CENTER_ADDR:
            o.proxy.center_addr = optarg;
            break;
        case OPT_MAP_HTTP:
            o.proxy.map_http_bind = optarg;
            break;
        case OPT_MAP_HTTPS:
            o.proxy.map_https_bind = optarg;
            break;
        case OPT_MAP_TCP:
            o.proxy.map_tcp_bind = optarg;
            break;
        case OPT_MAP_PROXY:
            o.proxy.map_proxy_bind = optarg;
            break;
        case OPT_MAP_CERT:
            o.proxy.map_cert = optarg;
            break;
        case OPT_MAP_KEY:
            o.proxy.map_key = optarg;
            break;
        case OPT_USER:
            o.proxy.username = optarg;
            have_user = true;
            break;
        case OPT_PASS:
            o.proxy.password = optarg;
            have_pass = true;
            break;
        case OPT_FLAG:
            if (wm_proxy_parse_flags(optarg, &o.proxy.flags) < 0) {
                fprintf(stderr, "wmproxy: --flag: expected words http, https, socks5 "
                                "or a number 1..7, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case OPT_CONNECT_TIMEOUT:
        case OPT_IDLE_TIMEOUT:
        case OPT_HANDSHAKE_TIMEOUT: {
            uint64_t *dst = opt == OPT_CONNECT_TIMEOUT ? &o.proxy.connect_timeout_ms
                            : opt == OPT_IDLE_TIMEOUT  ? &o.proxy.idle_timeout_ms
                                                       : &o.proxy.handshake_timeout_ms;
            int ms;
            if (parse_secs(optarg, &ms) < 0 || ms == 0) {
                fprintf(stderr, "wmproxy: timeout: expected seconds (>= 1), got \"%s\"\n",
                        optarg);
                return 2;
            }
            *dst = (uint64_t)ms;
            break;
        }
        case 'h':
            usage_proxy(stdout);
            return 0;
        default: {
            int r = common_opt(&o, opt, optarg);
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
    return wm_app_run(&o);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct wm_app_opts o;
    int opt;

    wm_app_opts_default(&o);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
        if (opt == 'c') {
            o.config = optarg;
        } else if (opt == 'h') {
            usage_run(stdout);
            return 0;
        } else {
            int r = common_opt(&o, opt, optarg);
            if (r != 0) {
                if (r > 0) {
                    usage_run(stderr);
                }
                return 2;
            }
        }
    }
    if (optind < argc || o.config == NULL) {
        fprintf(stderr, "wmproxy: %s\n", o.config == NULL ? "run needs -c FILE"
                                                          : "unexpected argument");
        usage_run(stderr);
        return 2;
    }
    return wm_app_run(&o);
}

static int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        if (opt == 'c') {
            config = optarg;
        } else if (opt == 'h') {
            printf("usage: wmproxy check -c FILE\n\nValidate FILE (syntax, keys, addresses, "
                   "cert/key files, references) and list every error.\n");
            return 0;
        } else {
            fprintf(stderr, "usage: wmproxy check -c FILE\n");
            return 2;
        }
    }
    if (config == NULL || optind < argc) {
        fprintf(stderr, "usage: wmproxy check -c FILE\n");
        return 2;
    }
    return wm_app_check(config);
}

static int cmd_remote(int argc, char **argv, const char *what)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    const char *url = NULL;
    const char *token = NULL;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:u:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case 'h':
            usage_remote(stdout, what);
            return 0;
        default:
            usage_remote(stderr, what);
            return 2;
        }
    }
    if ((config == NULL && url == NULL) || optind < argc) {
        usage_remote(stderr, what);
        return 2;
    }
    return wm_app_remote(what, config, url, token);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd == NULL) {
        usage_main(stderr);
        return 2;
    }
    if (strcmp(cmd, "proxy") == 0) {
        return cmd_proxy(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "config") == 0) {
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "check") == 0) {
        return cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "stop") == 0) {
        return cmd_remote(argc - 1, argv + 1, cmd);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("wmproxy %s\n", WM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "wmproxy: unknown command \"%s\"\n\n", cmd);
    usage_main(stderr);
    return 2;
}
