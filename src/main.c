/*
 * main.c - the command line. Every feature lives in its subsystem; this
 * file only parses flags and calls the app module.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/gencert.h"
#include "conf/config.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/version.h"

#define AOFF(f) offsetof(struct wm_app_opts, f)

/* A row's fixed part: type, long name, short letter, destination. */
#define ROW(t, n, l, o) .type = (t), .name = (n), .letter = (l), .off = (o)
#define ASIZE(f) sizeof(((struct wm_app_opts *)0)->f)

static const char *const tunnel_modes[] = {"server", "client", NULL};

/* `wmproxy proxy`: the [proxy] section as flags. */
static const struct wm_cli_opt proxy_opts[] = {
    {ROW(WM_CLI_STR, "bind", 'b', AOFF(proxy.bind)), .arg = "ADDR",
     .help = "listen address (default " WM_APP_DEFAULT_BIND "; [::1]:port for IPv6)"},
    {ROW(WM_CLI_STR, "user", 0, AOFF(proxy.username)), .arg = "USER",
     .help = "require this user (HTTP Basic / SOCKS5 user/pass)"},
    {ROW(WM_CLI_STR, "pass", 0, AOFF(proxy.password)), .arg = "PASS",
     .help = "and this password"},
    {ROW(WM_CLI_FLAGS, "flag", 0, AOFF(proxy.flags)), .arg = "\"http https socks5\"",
     .bad = "--flag: expected words http, https, socks5 or a number 1..7",
     .help = "\nprotocols to serve (or a number 1..7)"},
    {ROW(WM_CLI_SECS, "connect-timeout", 0, AOFF(proxy.connect_timeout_ms)),
     .size = sizeof(uint64_t), .min = 1, .max = 86400 * 7,
     .bad = "timeout: expected seconds (>= 1)", .arg = "S",
     .help = "dial timeout (default 10)"},
    {ROW(WM_CLI_SECS, "idle-timeout", 0, AOFF(proxy.idle_timeout_ms)),
     .size = sizeof(uint64_t), .min = 1, .max = 86400 * 7,
     .bad = "timeout: expected seconds (>= 1)", .arg = "S",
     .help = "close a connection idle that long (default 300)"},
    {ROW(WM_CLI_SECS, "handshake-timeout", 0, AOFF(proxy.handshake_timeout_ms)),
     .size = sizeof(uint64_t), .min = 1, .max = 86400 * 7,
     .bad = "timeout: expected seconds (>= 1)", .arg = "S",
     .help = "client must complete its request in S (default 10)"},
    {.type = WM_CLI_SECTION,
     .help = "\ndestination and client rules (README, Security; repeatable):\n"},
    {ROW(WM_CLI_LIST, "deny-target", 0, AOFF(deny_targets)), .arg = "RULE",
     .help = "refuse targets: 10.0.0.0/8, *.internal, host:443, *:25"},
    {ROW(WM_CLI_LIST, "allow-target", 0, AOFF(allow_targets)), .arg = "RULE",
     .help = "allow only these targets (deny wins)"},
    {ROW(WM_CLI_LIST, "deny-client", 0, AOFF(deny_clients)), .arg = "CIDR",
     .help = "refuse clients from these addresses"},
    {ROW(WM_CLI_LIST, "allow-client", 0, AOFF(allow_clients)), .arg = "CIDR",
     .help = "only clients from these addresses"},
    {.type = WM_CLI_SECTION, .help = "\ntunnel (docs/tunnel.md):\n"},
    {ROW(WM_CLI_STR, "server", 'S', AOFF(proxy.server)), .arg = "HOST:PORT",
     .help = "forward every connection to this parent node"},
    {ROW(WM_CLI_TRUE, "ts", 0, AOFF(proxy.ts)), .help = "TLS towards the parent"},
    {ROW(WM_CLI_TRUE, "tc", 0, AOFF(proxy.tc)),
     .help = "accept child nodes on --bind (TLS); also --mode server"},
    {ROW(WM_CLI_ENUM, "mode", 0, AOFF(proxy.mode)), .choices = tunnel_modes,
     .bad = "--mode: expected server or client"},
    {ROW(WM_CLI_STR, "center-addr", 0, AOFF(proxy.center_addr)), .arg = "ADDR",
     .help = "accept child nodes here instead of --bind"},
    {ROW(WM_CLI_TRUE, "two-way-tls", 0, AOFF(proxy.two_way_tls)),
     .help = "mutual TLS (client certificates)"},
    {ROW(WM_CLI_STR, "cert", 0, AOFF(proxy.cert)), .usage = "--cert FILE --key FILE",
     .help = "this node's certificate and key"},
    {ROW(WM_CLI_STR, "key", 0, AOFF(proxy.key))},
    {ROW(WM_CLI_STR, "ca", 0, AOFF(proxy.ca)), .arg = "FILE",
     .help = "trust anchors for the peer"},
    {ROW(WM_CLI_STR, "server-fingerprint", 0, AOFF(proxy.server_fingerprint)),
     .arg = "FP", .help = "trust only the parent's certificate of this SHA256:... fingerprint"},
    {ROW(WM_CLI_STR, "known-hosts", 0, AOFF(proxy.known_hosts)), .arg = "FILE",
     .help = "--ts without --ca pins here (~/.config/wmproxy/known_hosts)"},
    {ROW(WM_CLI_STR, "state-dir", 0, AOFF(proxy.state_dir)), .arg = "DIR",
     .help = "--tc without --cert keeps its key here (~/.local/state/wmproxy)"},
    {ROW(WM_CLI_STR, "domain", 0, AOFF(proxy.domain)), .arg = "NAME",
     .help = "the parent's certificate name (default: its host)"},
    {ROW(WM_CLI_STR, "map-http-bind", 0, AOFF(proxy.map_http_bind)),
     .usage = "--map-http-bind ADDR, --map-https-bind ADDR, --map-tcp-bind ADDR,\n"
              "      --map-proxy-bind ADDR",
     .help = "public ports for the clients' mappings"},
    {ROW(WM_CLI_STR, "map-http", 0, AOFF(proxy.map_http_bind))},
    {ROW(WM_CLI_STR, "map-https-bind", 0, AOFF(proxy.map_https_bind))},
    {ROW(WM_CLI_STR, "map-https", 0, AOFF(proxy.map_https_bind))},
    {ROW(WM_CLI_STR, "map-tcp-bind", 0, AOFF(proxy.map_tcp_bind))},
    {ROW(WM_CLI_STR, "map-tcp", 0, AOFF(proxy.map_tcp_bind))},
    {ROW(WM_CLI_STR, "map-proxy-bind", 0, AOFF(proxy.map_proxy_bind))},
    {ROW(WM_CLI_STR, "map-proxy", 0, AOFF(proxy.map_proxy_bind))},
    {ROW(WM_CLI_STR, "map-cert", 0, AOFF(proxy.map_cert)),
     .usage = "--map-cert FILE --map-key FILE", .help = "certificate for --map-https-bind"},
    {ROW(WM_CLI_STR, "map-key", 0, AOFF(proxy.map_key))},
    {.type = WM_CLI_END},
};

/* `wmproxy reverse-proxy`: one upstream behind one listener. */
static const struct wm_cli_opt reverse_opts[] = {
    {ROW(WM_CLI_STR, "from", 'f', AOFF(rev.from)), .arg = "ADDR",
     .help = "listen here (default 127.0.0.1:8869; lists and ranges as bind_addr)"},
    {ROW(WM_CLI_STR, "to", 't', AOFF(rev.to)), .arg = "HOST:PORT",
     .help = "the upstream server (required)"},
    {ROW(WM_CLI_LIST, "header", 'H', AOFF(rev.headers)), .arg = "RULE",
     .help = "a header rule, as in headers = [...] (repeat)"},
    {ROW(WM_CLI_TRUE, "tls", 0, AOFF(rev.tls)),
     .help = "https to the upstream (its certificate is verified)"},
    {ROW(WM_CLI_TRUE, "ws", 0, AOFF(rev.ws)), .help = "a WebSocket upstream (is_ws)"},
    {ROW(WM_CLI_STR, "access-log", 0, AOFF(rev.access_log)), .arg = "\"PATH [LEVEL]\"",
     .help = "\nalso write access lines (wmproxy's main format) to PATH"},
    {.type = WM_CLI_END},
};

/* `wmproxy file-server`: one directory on one listener. */
static const struct wm_cli_opt files_opts[] = {
    {ROW(WM_CLI_STR, "root", 'r', AOFF(files.root)), .arg = "DIR",
     .help = "the directory to serve (default: the current one)"},
    {ROW(WM_CLI_STR, "listen", 'l', AOFF(files.listen)), .arg = "ADDR",
     .help = "listen here (default 127.0.0.1:8869; lists and ranges as bind_addr)"},
    {ROW(WM_CLI_STR, "listen-ssl", 0, AOFF(files.listen_ssl)), .arg = "ADDR",
     .help = "also serve HTTPS here (with --cert and --key)"},
    {ROW(WM_CLI_STR, "cert", 0, AOFF(files.cert)), .usage = "--cert FILE --key FILE",
     .help = "certificate and key (PEM) for --listen-ssl"},
    {ROW(WM_CLI_STR, "key", 0, AOFF(files.key))},
    {ROW(WM_CLI_STR, "domain", 'd', AOFF(files.domain)), .arg = "NAME",
     .help = "the server's name (up_name; TLS certificate choice)"},
    {ROW(WM_CLI_TRUE, "browse", 'b', AOFF(files.browse)),
     .help = "list directories without an index file (HTML, or JSON on Accept)"},
    {ROW(WM_CLI_STR, "robots", 0, AOFF(files.robots)), .arg = "TEXT",
     .help = "answer /robots.txt with TEXT"},
    {ROW(WM_CLI_STR, "path404", 0, AOFF(files.path404)), .arg = "FILE",
     .help = "serve FILE (below the root) with status 404 for missing paths"},
    {ROW(WM_CLI_STR, "cache-time", 'c', AOFF(files.cache_time)), .arg = "DUR",
     .help = "Cache-Control: max-age (\"1h\", \"30m\", seconds)"},
    {ROW(WM_CLI_LIST, "ext-mimetype", 'e', AOFF(files.ext)), .arg = "EXT=TYPE",
     .help = "Content-Type for an extension, e.g. md=text/markdown (repeat)"},
    {ROW(WM_CLI_TRUE, "cors", 0, AOFF(files.cors)),
     .help = "Access-Control-Allow-Origin: * on every answer"},
    {ROW(WM_CLI_TRUE, "follow-symlinks", 0, AOFF(files.follow)),
     .help = "follow symlinks that point outside the root (refused by default)"},
    {ROW(WM_CLI_LIST, "header", 'H', AOFF(files.headers)), .arg = "RULE",
     .help = "a response header rule, as in headers = [...] (repeat)"},
    {ROW(WM_CLI_STR, "access-log", 0, AOFF(files.access_log)), .arg = "\"PATH [LEVEL]\"",
     .help = "\nalso write access lines (wmproxy's main format) to PATH"},
    {.type = WM_CLI_END},
};

/* `wmproxy ws-proxy`: one WebSocket bridge. */
static const struct wm_cli_opt wsproxy_opts[] = {
    {ROW(WM_CLI_STR, "from", 'f', AOFF(rev.from)), .arg = "ADDR",
     .help = "listen here (default 127.0.0.1:8869; lists and ranges as bind_addr)"},
    {ROW(WM_CLI_STR, "to", 't', AOFF(rev.to)), .arg = "ADDR|URL",
     .help = "the target: HOST:PORT, or a ws://, wss://, tcp:// URL (required)"},
    {ROW(WM_CLI_STR, "mode", 0, AOFF(ws.mode)), .arg = "MODE",
     .help = "ws2tcp (WebSocket in, TCP out), tcp2ws or tcp2wss (required)"},
    {ROW(WM_CLI_STR, "domain", 0, AOFF(ws.domain)), .arg = "NAME",
     .help = "Host header and TLS SNI towards the target"},
    {ROW(WM_CLI_STR, "access-log", 0, AOFF(rev.access_log)), .arg = "\"PATH [LEVEL]\"",
     .help = "\nalso write access lines to PATH"},
    {ROW(WM_CLI_TRUE, "ws", 0, AOFF(rev.ws)), .help = "accepted for wmproxy (unused)"},
    {.type = WM_CLI_END},
};

/* `wmproxy run`: the file. */
static const struct wm_cli_opt run_opts[] = {
    {ROW(WM_CLI_STR, "config", 'c', AOFF(config)), .arg = "FILE",
     .help = "the configuration file"},
    {.type = WM_CLI_END},
};

/* `proxy`, `run` and `reverse-proxy`: the process. */
static const struct wm_cli_opt common_opts[] = {
    {.type = WM_CLI_SECTION, .help = "\nshared options (proxy, run, reverse-proxy):\n"},
    {ROW(WM_CLI_BUF, "control", 0, AOFF(control)), .off_set = AOFF(control_set),
     .size = ASIZE(control), .arg = "ADDR",
     .help = "control API address (default " WM_APP_DEFAULT_CONTROL ")"},
    {ROW(WM_CLI_TRUE, "disable-control", 0, AOFF(disable_control)),
     .off_set = AOFF(disable_control_set),
     .help = "do not serve the control API"},
    {ROW(WM_CLI_TRUE, "disable-stdout", 0, AOFF(disable_stdout)),
     .off_set = AOFF(disable_stdout_set),
     .help = "do not log to stdout"},
    {ROW(WM_CLI_BUF, "log-file", 0, AOFF(log_file)), .size = ASIZE(log_file),
     .arg = "FILE", .help = "append log lines to FILE"},
    {ROW(WM_CLI_TRUE, "daemon", 0, AOFF(daemon)), .help = "detach and run in the background"},
    {ROW(WM_CLI_TRUE, "forever", 0, AOFF(forever)),
     .help = "keep a supervisor that restarts the server if it dies"},
    {ROW(WM_CLI_BUF, "pidfile", 0, AOFF(pidfile)), .off_set = AOFF(pidfile_set),
     .size = ASIZE(pidfile), .arg = "FILE",
     .help = "write the process id to FILE (default " WM_APP_DEFAULT_PIDFILE " with --daemon)"},
    {ROW(WM_CLI_COUNT, NULL, 'v', AOFF(verbose)), .help = "more log detail (repeat for trace)"},
    {ROW(WM_CLI_LEVEL, "default-level", 0, AOFF(level)), .off_set = AOFF(level_set), .arg = "LVL",
     .bad = "--default-level: expected error|warn|info|debug|trace|off",
     .help = "error|warn|info|debug|trace|off (default info)"},
    {ROW(WM_CLI_UINT, "workers", 0, AOFF(workers)), .off_set = AOFF(workers_set),
     .size = sizeof(int), .min = 1, .max = 256, .bad = "--workers: expected 1..256", .arg = "N",
     .help = "worker threads (default: number of cores)"},
    {ROW(WM_CLI_UINT, "max-connections", 0, AOFF(max_connections)),
     .off_set = AOFF(max_connections_set), .size = sizeof(int), .min = 0, .max = 100000000,
     .bad = "--max-connections: expected 0..100000000", .arg = "N",
     .help = "client connections open at once; then new ones wait (default 0: no cap)"},
    {ROW(WM_CLI_SECS, "grace", 0, AOFF(grace_ms)), .off_set = AOFF(grace_set),
     .size = sizeof(int),
     .max = 86400 * 7, .bad = "--grace: expected seconds", .arg = "SECS",
     .help = "on SIGTERM, wait up to SECS for connections (default 10)"},
    {ROW(WM_CLI_HELP, "help", 'h', 0), .help = "this help"},
    {.type = WM_CLI_END},
};

/* `wmproxy check`, `reload`, `stop`: where the instance is. */
struct remote_args {
    const char *config;
    const char *url;
    const char *token;
};
#define ROFF(f) offsetof(struct remote_args, f)

static const struct wm_cli_opt check_opts[] = {
    {ROW(WM_CLI_STR, "config", 'c', ROFF(config))},
    {ROW(WM_CLI_HELP, "help", 'h', 0)},
    {.type = WM_CLI_END},
};

static const struct wm_cli_opt remote_opts[] = {
    {ROW(WM_CLI_STR, "config", 'c', ROFF(config)), .arg = "FILE",
     .help = "read the control address (and token) from FILE"},
    {ROW(WM_CLI_STR, "url", 'u', ROFF(url)), .arg = "URL",
     .help = "the control API, e.g. http://127.0.0.1:8837"},
    {ROW(WM_CLI_STR, "token", 0, ROFF(token)), .arg = "TOKEN",
     .help = "bearer token when the instance sets control_token"},
    {ROW(WM_CLI_HELP, "help", 'h', 0), .help = "this help"},
    {.type = WM_CLI_END},
};

static const struct wm_cli_opt *const proxy_tables[] = {proxy_opts, common_opts, NULL};
static const struct wm_cli_opt *const run_tables[] = {run_opts, common_opts, NULL};
static const struct wm_cli_opt *const reverse_tables[] = {reverse_opts, common_opts, NULL};
static const struct wm_cli_opt *const files_tables[] = {files_opts, common_opts, NULL};
static const struct wm_cli_opt *const wsproxy_tables[] = {wsproxy_opts, common_opts, NULL};
static const struct wm_cli_opt *const check_tables[] = {check_opts, NULL};
static const struct wm_cli_opt *const remote_tables[] = {remote_opts, NULL};

static const struct wm_cli_cmd proxy_cmd = {
    .tables = proxy_tables,
    .head = "usage: wmproxy proxy [options]\n\n"
            "Serve HTTP proxy, HTTPS CONNECT and SOCKS5 (and SOCKS4/4a) on one port.\n\n",
    .col = 28,
};

static const struct wm_cli_cmd run_cmd = {
    .tables = run_tables,
    .head = "usage: wmproxy run -c FILE [options]\n\n"
            "Run everything FILE describes (TOML, or YAML for .yaml/.yml). SIGHUP or\n"
            "`wmproxy reload` re-reads it without dropping connections.\n\n",
    .col = 28,
};

static const struct wm_cli_cmd reverse_cmd = {
    .tables = reverse_tables,
    .head = "usage: wmproxy reverse-proxy -t HOST:PORT [-f ADDR] [-H RULE]... [options]\n\n"
            "Serve ADDR as a reverse proxy of one upstream server (as [http] with one\n"
            "server and one location; see README).\n\n",
    .col = 28,
};

static const struct wm_cli_cmd files_cmd = {
    .tables = files_tables,
    .head = "usage: wmproxy file-server [-r DIR] [-l ADDR] [-b] [options]\n\n"
            "Serve the files of DIR (default: the current directory) on ADDR (default\n"
            "127.0.0.1:8869): GET/HEAD, ranges, conditional requests, gzip (as [http] with\n"
            "one server and one file_server location; see README).\n\n",
    .col = 30,
};

static const struct wm_cli_cmd wsproxy_cmd = {
    .tables = wsproxy_tables,
    .head = "usage: wmproxy ws-proxy --mode ws2tcp|tcp2ws|tcp2wss -t ADDR [-f ADDR] [options]\n\n"
            "Bridge TCP and WebSocket (as one [[stream.server]] with that bind_mode; see\n"
            "README): ws2tcp serves WebSocket clients and carries their binary messages\n"
            "to a TCP target; tcp2ws / tcp2wss carry the bytes of TCP clients as binary\n"
            "messages to a ws:// / wss:// server.\n\n",
    .col = 28,
};

static const struct wm_cli_cmd check_cmd = {
    .tables = check_tables,
    .head = "usage: wmproxy check -c FILE\n\nValidate FILE (syntax, keys, addresses, "
            "cert/key files, references) and list every error.\n",
    .brief = "usage: wmproxy check -c FILE\n",
    .col = 28,
};

#define REMOTE_HEAD(cmd, what)                                                            \
    "usage: wmproxy " cmd " (-c FILE | -u URL) [--token TOKEN]\n\n"                       \
    "Ask a running instance, through its control API, to " what ".\n\n"

static const struct wm_cli_cmd reload_cmd = {
    .tables = remote_tables,
    .head = REMOTE_HEAD("reload", "reload its configuration"),
    .col = 22,
};

static const struct wm_cli_cmd stop_cmd = {
    .tables = remote_tables,
    .head = REMOTE_HEAD("stop", "stop gracefully"),
    .col = 22,
};

static const struct wm_cli_cmd status_cmd = {
    .tables = remote_tables,
    .head = "usage: wmproxy status [-c FILE | -u URL] [--token TOKEN]\n\n"
            "Print a summary of a running instance (listeners, connections, tunnel\n"
            "clients, the last reload, recent errors) from its control API's /status.\n"
            "Without -c or -u it asks " WM_APP_DEFAULT_CONTROL ".\n\n",
    .col = 22,
};

static void usage_main(FILE *f)
{
    fprintf(f,
            "wmproxy %s - HTTP/HTTPS/SOCKS5 proxy, reverse proxy, tunnel\n\n"
            "usage: wmproxy <command> [options]\n\n"
            "commands:\n"
            "  proxy          run a forward proxy from flags (HTTP, CONNECT, SOCKS5 on one port)\n"
            "  run            run everything a config file describes (-c FILE); alias: config\n"
            "  check          validate a config file (-c FILE) and list every error\n"
            "  reload         ask the running instance to reload its config (-c FILE | -u URL)\n"
            "  stop           ask the running instance to stop gracefully (-c FILE | -u URL)\n"
            "  status         summarize the running instance (-c FILE | -u URL)\n"
            "  reverse-proxy  serve one upstream server as a reverse proxy (-f ADDR -t ADDR)\n"
            "  file-server    serve a directory's files over HTTP (-r DIR -l ADDR)\n"
            "  ws-proxy       bridge TCP and WebSocket (--mode ws2tcp|tcp2ws|tcp2wss -t ADDR)\n"
            "  gen-cert       make a private CA and server/client certificates for a TLS tunnel\n"
            "  version        print the version\n"
            "\n'wmproxy <command> --help' describes a command's options.\n",
            WM_VERSION);
}

/* Parse a command's flags; the exit code when it ends here, or -1. */
static int parse(const struct wm_cli_cmd *cmd, int argc, char **argv, void *obj, int *next)
{
    switch (wm_cli_parse(cmd, argc, argv, obj, next)) {
    case WM_CLI_OK:
        return -1;
    case WM_CLI_SHOWN:
        return 0;
    default:
        return 2;
    }
}

static int cmd_proxy(int argc, char **argv)
{
    struct wm_app_opts o;
    int next;
    int rc;

    wm_app_opts_default(&o);
    if ((rc = parse(&proxy_cmd, argc, argv, &o, &next)) >= 0) {
        return rc;
    }
    if (next < argc) {
        fprintf(stderr, "wmproxy: unexpected argument \"%s\"\n", argv[next]);
        wm_cli_usage(&proxy_cmd, stderr);
        return 2;
    }
    if ((o.proxy.username != NULL) != (o.proxy.password != NULL)) {
        fprintf(stderr, "wmproxy: --user and --pass go together\n");
        return 2;
    }
    char msg[160];
    if (o.proxy.username != NULL) {
        const char *flag = "user";
        int r = wm_conf_proxy_user_check(o.proxy.username, msg, sizeof(msg));
        if (r == 0) {
            flag = "pass";
            r = wm_conf_proxy_pass_check(o.proxy.password, msg, sizeof(msg));
        }
        if (r < 0) {
            fprintf(stderr, "wmproxy: --%s: %s\n", flag, msg);
            return 2;
        }
    }
    if (wm_app_opts_rules(&o) < 0) {
        return 2;
    }
    return wm_app_run(&o);
}

static int cmd_reverse(int argc, char **argv)
{
    struct wm_app_opts o;
    int next;
    int rc;

    wm_app_opts_default(&o);
    o.rev.from = "127.0.0.1:8869";
    if ((rc = parse(&reverse_cmd, argc, argv, &o, &next)) >= 0) {
        return rc;
    }
    if (next < argc || o.rev.to == NULL) {
        fprintf(stderr, next < argc ? "wmproxy: unexpected argument \"%s\"\n"
                                    : "wmproxy: reverse-proxy needs --to HOST:PORT%s\n",
                next < argc ? argv[next] : "");
        wm_cli_usage(&reverse_cmd, stderr);
        return 2;
    }
    if (wm_app_reverse_text(&o) < 0) {
        return 1;
    }
    rc = wm_app_run(&o);
    free((char *)o.config_text);
    return rc;
}

static int cmd_files(int argc, char **argv)
{
    struct wm_app_opts o;
    int next;
    int rc;

    wm_app_opts_default(&o);
    o.files.listen = "127.0.0.1:8869";
    if ((rc = parse(&files_cmd, argc, argv, &o, &next)) >= 0) {
        return rc;
    }
    if (next < argc) {
        fprintf(stderr, "wmproxy: unexpected argument \"%s\"\n", argv[next]);
        wm_cli_usage(&files_cmd, stderr);
        return 2;
    }
    if (wm_app_files_text(&o) < 0) {
        return 2;
    }
    rc = wm_app_run(&o);
    free((char *)o.config_text);
    return rc;
}

static int cmd_wsproxy(int argc, char **argv)
{
    struct wm_app_opts o;
    int next;
    int rc;

    wm_app_opts_default(&o);
    o.rev.from = "127.0.0.1:8869";
    if ((rc = parse(&wsproxy_cmd, argc, argv, &o, &next)) >= 0) {
        return rc;
    }
    if (next < argc || o.rev.to == NULL || o.ws.mode == NULL) {
        if (next < argc) {
            fprintf(stderr, "wmproxy: unexpected argument \"%s\"\n", argv[next]);
        } else {
            fprintf(stderr, "wmproxy: ws-proxy needs %s\n",
                    o.rev.to == NULL ? "--to ADDR" : "--mode ws2tcp|tcp2ws|tcp2wss");
        }
        wm_cli_usage(&wsproxy_cmd, stderr);
        return 2;
    }
    if (wm_app_wsproxy_text(&o) < 0) {
        return 2;
    }
    rc = wm_app_run(&o);
    free((char *)o.config_text);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    struct wm_app_opts o;
    int next;
    int rc;

    wm_app_opts_default(&o);
    if ((rc = parse(&run_cmd, argc, argv, &o, &next)) >= 0) {
        return rc;
    }
    if (next < argc || o.config == NULL) {
        if (next < argc) {
            fprintf(stderr, "wmproxy: unexpected argument \"%s\"\n", argv[next]);
        } else {
            fprintf(stderr, "wmproxy: run needs -c FILE\n");
        }
        wm_cli_usage(&run_cmd, stderr);
        return 2;
    }
    return wm_app_run(&o);
}

static int cmd_check(int argc, char **argv)
{
    struct remote_args r = {NULL, NULL, NULL};
    int next;
    int rc;

    if ((rc = parse(&check_cmd, argc, argv, &r, &next)) >= 0) {
        return rc;
    }
    if (r.config == NULL || next < argc) {
        fputs(check_cmd.brief, stderr);
        return 2;
    }
    return wm_app_check(r.config);
}

static int cmd_remote(int argc, char **argv, const char *what)
{
    const struct wm_cli_cmd *cmd = strcmp(what, "reload") == 0 ? &reload_cmd : &stop_cmd;
    struct remote_args r = {NULL, NULL, NULL};
    int next;
    int rc;

    if ((rc = parse(cmd, argc, argv, &r, &next)) >= 0) {
        return rc;
    }
    if ((r.config == NULL && r.url == NULL) || next < argc) {
        wm_cli_usage(cmd, stderr);
        return 2;
    }
    return wm_app_remote(what, r.config, r.url, r.token);
}

static int cmd_status(int argc, char **argv)
{
    struct remote_args r = {NULL, NULL, NULL};
    int next;
    int rc;

    if ((rc = parse(&status_cmd, argc, argv, &r, &next)) >= 0) {
        return rc;
    }
    if (next < argc) {
        wm_cli_usage(&status_cmd, stderr);
        return 2;
    }
    return wm_app_status(r.config, r.url, r.token);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    wm_mem_install(); /* before anything of libevent's */
    if (cmd == NULL) {
        usage_main(stderr);
        return 2;
    }
    if (strcmp(cmd, "proxy") == 0) {
        return cmd_proxy(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "reverse-proxy") == 0) {
        return cmd_reverse(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "file-server") == 0) {
        return cmd_files(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "ws-proxy") == 0) {
        return cmd_wsproxy(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "config") == 0) {
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "check") == 0) {
        return cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "gen-cert") == 0) {
        return wm_gencert_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "stop") == 0) {
        return cmd_remote(argc - 1, argv + 1, cmd);
    }
    if (strcmp(cmd, "status") == 0) {
        return cmd_status(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "schema-keys") == 0) {
        /* hidden: every config key, for the man-page check (tests/ops) */
        wm_conf_dump_keys(stdout);
        return 0;
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
