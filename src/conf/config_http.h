/*
 * conf/config_http.h - the [http] section (reverse proxy) as C structs.
 *
 * Decoded by conf/config_http.c into the config's arena (owned by the
 * struct wm_conf that holds them, freed with it). Values are as written:
 * inheritance (http -> server -> location) and defaults are applied by the
 * reverse proxy when it compiles them (reverse/rconf.h). A zero duration
 * or size, a NULL string and a -1 tri-state mean "not set here".
 */
#ifndef WM_CONF_CONFIG_HTTP_H
#define WM_CONF_CONFIG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/schema.h"
#include "conf/units.h"

/* [[...upstream]].server entries. */
struct wm_conf_upserver {
    const char *addr;         /* host:port */
    int64_t weight;           /* 0: default (100, as wmproxy) */
    uint64_t fail_timeout_ms; /* 0: default (30 s) */
    int64_t fall_times;       /* failures in a row that mark it down (0: 2) */
    int64_t rise_times;       /* active-check successes that bring it back (0: 2) */
    bool backup;              /* used only when every other server is down */
};

/* health_check = { ... } */
struct wm_conf_health {
    const char *path;         /* NULL: "/" */
    uint64_t interval_ms;     /* 0: 5 s */
    uint64_t timeout_ms;      /* 0: 2 s */
    const char *expect_status; /* "2xx 3xx" classes or codes; NULL: 2xx/3xx */
    const char *host;         /* Host header sent; NULL: the server's address */
};

/* [[http.upstream]] (also at server and location level). */
struct wm_conf_upstream {
    const char *name;
    struct wm_conf_upserver *servers;
    size_t nservers;
    const char *balance;      /* "weight" (default), "round_robin", "least_conn",
                               * "ip_hash", "random" */
    struct wm_conf_health *health; /* NULL: passive checks only */
    int64_t keepalive;        /* idle connections kept per server and worker (-1: 32) */
    uint64_t keepalive_timeout_ms; /* 0: 60 s */
};

/* proxy_next_upstream words (nginx's), bits of wm_conf_hcommon.proxy_next_upstream. */
enum {
    WM_NEXT_ERROR = 1 << 0,          /* connect error, or closed before a response head */
    WM_NEXT_TIMEOUT = 1 << 1,        /* connect, write or read timeout before the head */
    WM_NEXT_INVALID_HEADER = 1 << 2, /* a malformed response head */
    WM_NEXT_HTTP_500 = 1 << 3,
    WM_NEXT_HTTP_502 = 1 << 4,
    WM_NEXT_HTTP_503 = 1 << 5,
    WM_NEXT_HTTP_504 = 1 << 6,
    WM_NEXT_HTTP_403 = 1 << 7,
    WM_NEXT_HTTP_404 = 1 << 8,
    WM_NEXT_HTTP_429 = 1 << 9,
    WM_NEXT_NON_IDEMPOTENT = 1 << 10, /* POST, PATCH, ... may go again too */
};

/* Keys of every level (http, server, location), inherited downwards. */
struct wm_conf_hcommon {
    uint64_t max_read_buf;
    struct wm_rate rate_limit;
    uint64_t client_read_timeout_ms;
    uint64_t client_write_timeout_ms;
    uint64_t client_timeout_ms;
    uint64_t client_ka_timeout_ms;
    uint64_t proxy_connect_timeout_ms;
    uint64_t proxy_read_timeout_ms;
    uint64_t proxy_write_timeout_ms;
    uint64_t proxy_timeout_ms;
    uint64_t client_max_body_size;
    const char *access_log;
    const char *error_log;
    struct wm_conf_kv *log_format;
    size_t nlog_format;
    struct wm_conf_kv *log_names;
    size_t nlog_names;
    struct wm_conf_kv *match_names;
    size_t nmatch_names;
    const char *limit_req;
    int64_t limit_req_status;
    struct wm_conf_header *headers;
    size_t nheaders;
    const char *proxy_url;
    const char **allow_ip;
    size_t nallow_ip;
    const char **deny_ip;
    size_t ndeny_ip;
    const char *root;
    const char *domain;
    struct wm_conf_upstream *upstreams;
    size_t nupstreams;
    int proxy_ssl_verify;     /* tri-state: -1 unset, 0, 1 */
    int proxy_set_host;       /* tri-state: 1 send the upstream address as Host (wmproxy),
                               * 0 keep the client's (default, as nginx users expect) */
    const char *proxy_ssl_name; /* https upstreams: SNI and the name verified; NULL:
                                 * each server's host (named upstream) or the URL's */
    const char *proxy_ssl_trusted_certificate; /* PEM CAs for upstreams; NULL: system */
    const char *proxy_ssl_certificate;     /* PEM chain we present to upstreams (mTLS) */
    const char *proxy_ssl_certificate_key; /* its key */
    int proxy_next_upstream;  /* WM_NEXT_* bits; -1 unset, 0 "off" */
    int64_t proxy_next_upstream_tries;      /* servers per request, the first included */
    uint64_t proxy_next_upstream_timeout_ms; /* no new try after this (from the request) */
};

/* file_server = { ... } of a location (wmproxy's FileServer keys, plus
 * follow_symlinks, cache_control, charset). */
struct wm_conf_files {
    const char *root;             /* NULL: the location's root, else the cwd */
    const char *prefix;           /* NULL: the location path up to its first '*' */
    const char **hide;            /* entries whose target path contains one are 404 */
    size_t nhide;
    const char **index;           /* NULL: index.html, index.htm */
    size_t nindex;
    bool browse;                  /* directory listings */
    bool disable_compress;        /* no on-the-fly gzip */
    const char **precompressed;   /* NULL: gzip, br siblings */
    size_t nprecompressed;
    const char *cache_control;    /* Cache-Control as written (wins over cache_time) */
    uint64_t cache_time_ms;       /* Cache-Control: max-age */
    const char *charset;          /* for text types (default utf-8) */
    const char *path404;          /* served with `status` when nothing matches */
    int64_t status;               /* 0: 404 */
    const char *robots;           /* the body of /robots.txt */
    const char *default_mimetype; /* NULL: application/octet-stream */
    struct wm_conf_kv *ext_mimetype;
    size_t next_mimetype;
    bool cors;                    /* Access-Control-Allow-Origin: * */
    bool follow_symlinks;         /* symlinks may leave root */
    struct wm_rate rate_limit;    /* amount 0: the location's rate_limit */
    uint64_t max_read_buf;        /* 0: the location's, else 64 KiB */
};

/* rule = "/path*" | { path, host, method, scheme, client_ip } */
struct wm_conf_rule {
    const char *path;
    const char *host;
    const char *method;    /* "GET POST" */
    const char *scheme;    /* "http https" */
    const char **client_ip;
    size_t nclient_ip;
    int line;              /* where the rule is written, for messages */
};

/* [[http.server.location]] */
struct wm_conf_location {
    struct wm_conf_rule rule;
    const char *static_response;
    const char *try_paths;
    bool has_file_server;
    struct wm_conf_files *file_server; /* NULL when absent */
    bool is_ws;
    const char *up_name;
    struct wm_conf_hcommon c;
};

/* [[http.server]] */
struct wm_conf_hserver {
    const char *bind_addr;  /* address list as written ("a:1 b:2", ranges) */
    const char *bind_ssl;
    const char *up_name;    /* virtual host names, space separated */
    const char *cert;
    const char *key;
    int http2;              /* tri-state */
    const char *static_response; /* without locations: the answer to everything */
    struct wm_conf_location *locations;
    size_t nlocations;
    struct wm_conf_hcommon c;
};

/* [http] */
struct wm_conf_http {
    struct wm_conf_hserver *servers;
    size_t nservers;
    struct wm_conf_kv *limit_req_zone;
    size_t nlimit_req_zone;
    struct wm_conf_hcommon c;
};

#endif
