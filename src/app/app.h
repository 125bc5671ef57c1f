/*
 * app/app.h - the process: start-up, daemon/supervisor, signals, the
 * control API hooks, and hot reload of the configuration file.
 */
#ifndef WM_APP_APP_H
#define WM_APP_APP_H

#include <stdbool.h>

#include "conf/config.h"
#include "core/cli.h"
#include "proxy/proxy.h"

#define WM_APP_DEFAULT_BIND WM_CONF_DEFAULT_BIND
#define WM_APP_DEFAULT_CONTROL "127.0.0.1:8837"
#define WM_APP_DEFAULT_PIDFILE "wmproxy.pid"

/* What the command line says. A `*_set` flag means the command line gave
 * the value, so it wins over the config file (and over reloads). */
struct wm_app_opts {
    const char *config; /* run from this file; NULL: from the flags below */
    /* Or from this text, built from the flags of `reverse-proxy` (named
     * config_name in messages); not reloadable. */
    const char *config_text;
    const char *config_name;

    char control[64];
    bool control_set;
    bool disable_control;
    bool disable_control_set;
    bool disable_stdout;
    bool disable_stdout_set;
    bool daemon;
    bool forever;
    char pidfile[512];
    bool pidfile_set;
    int verbose;
    int level;
    bool level_set;
    int workers;
    bool workers_set;
    int grace_ms;
    bool grace_set;
    int max_connections;   /* --max-connections: over the file's; 0 none */
    bool max_connections_set;
    char log_file[512];

    /* Flags mode (`wmproxy proxy`): the [proxy] section the flags describe
     * (strings point into argv). */
    struct wm_conf_proxy proxy;

    /* `wmproxy reverse-proxy` (strings point into argv). */
    struct {
        const char *from;
        const char *to;
        struct wm_cli_list headers;
        bool tls;
        bool ws;
        const char *access_log;
    } rev;
    /* `wmproxy file-server` (strings point into argv). */
    struct {
        const char *root;
        const char *listen;
        const char *listen_ssl;
        const char *cert;
        const char *key;
        const char *domain;
        const char *robots;
        const char *path404;
        const char *cache_time;
        const char *access_log;
        struct wm_cli_list ext;     /* EXT=TYPE */
        struct wm_cli_list headers;
        bool browse;
        bool cors;
        bool follow;
    } files;
    /* `wmproxy ws-proxy` (strings point into argv; from/to/access_log in rev). */
    struct {
        const char *mode;   /* ws2tcp | tcp2ws | tcp2wss */
        const char *domain;
    } ws;
    /* its rules (--deny-target ...), pointed to by proxy's lists */
    struct wm_cli_list deny_targets;
    struct wm_cli_list allow_targets;
    struct wm_cli_list deny_clients;
    struct wm_cli_list allow_clients;
};

void wm_app_opts_default(struct wm_app_opts *o);

/* After the flags are parsed: point o->proxy's rule lists at the flags'
 * and check each rule. 0, or -1 after a message on stderr. */
int wm_app_opts_rules(struct wm_app_opts *o);

/* Run until stopped. Returns the process exit code (0 clean stop, 1 start
 * failure). */
int wm_app_run(struct wm_app_opts *o);

/* `wmproxy reverse-proxy`: the [http] section its flags describe, as
 * config text in o->config_text (malloc'd; lives as long as the process).
 * 0, or -1 with a message on stderr. */
int wm_app_reverse_text(struct wm_app_opts *o);

/* `wmproxy file-server`: the same for its flags (one server, one
 * location "/" with a file_server). 0, or -1 with a message on stderr. */
int wm_app_files_text(struct wm_app_opts *o);
/* `wmproxy ws-proxy`: the [stream] section its flags describe, as config
 * text in o->config_text (malloc'd). 0, or -1 with a message on stderr. */
int wm_app_wsproxy_text(struct wm_app_opts *o);

/* `wmproxy check -c FILE`: print every diagnostic; 0 valid, 1 not. */
int wm_app_check(const char *path);

/* `wmproxy reload|stop -c FILE | -u URL`: ask the running instance.
 * Prints its answer; 0 when it accepted, 1 otherwise. */
int wm_app_remote(const char *what, const char *config, const char *url, const char *token);

/* `wmproxy status -c FILE | -u URL`: print a summary of the running
 * instance (its GET /status). 0, or 1 when it cannot be read. */
int wm_app_status(const char *config, const char *url, const char *token);

#endif
