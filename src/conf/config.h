/*
 * conf/config.h - the configuration file (wmproxy's format, TOML or YAML by
 * extension) as C structs.
 *
 * wm_conf_load() reads, parses, decodes and validates a file; every problem
 * is reported as "file:line:col: key.path: message". A loaded config is
 * immutable and owned by one holder; it is freed with wm_conf_free().
 * Sections whose features arrive later (http, stream, tunnel keys) are
 * fully type-checked and reported as "accepted, not yet active".
 */
#ifndef WM_CONF_CONFIG_H
#define WM_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf/schema.h"
#include "conf/units.h"

struct wm_arena;
struct wm_cval;
struct wm_conf_http;
struct wm_conf_stream;
struct wm_conf_cluster;

/* [[proxy.mappings]]: a service inside the private network. */
/* Longest mapping name / group name (bytes), and domain (a DNS name). */
#define WM_CONF_MAP_NAME_MAX 63
#define WM_CONF_DOMAIN_MAX 253

struct wm_conf_mapping {
    const char *name;
    const char *mode;       /* "http", "https", "tcp", "proxy" */
    const char *local_addr; /* host:port inside */
    const char *domain;
    struct wm_conf_header *headers;
    size_t nheaders;
    int64_t remote_port;    /* tcp: public port on the server (0: none) */
    const char *bind;       /* tcp: public "ip:port" on the server */
    const char *group;      /* clients in one group share the mapping */
    int proxy_protocol;     /* PROXY header to local_addr: 0 off, 1 "v1", 2 "v2" */
};

/* [[proxy.clients]]: a tunnel client the server knows, and what it may
 * register (tunnel/tunnel.h struct wm_tunnel_client). */
struct wm_conf_tclient {
    const char *name;
    const char *password;
    const char *subject;     /* CN of its mutual-TLS certificate */
    const char **domains;
    size_t ndomains;
    const char *ports;       /* "2000-3000, 3306" (a list is joined into this form) */
    const char **groups;
    size_t ngroups;
};

/* [proxy] */
struct wm_conf_proxy {
    const char *bind;        /* bind_addr */
    unsigned flags;
    const char *mode;        /* "client" / "server" (informative) */
    const char *server;      /* parent node "host:port" */
    const char *username;
    const char *password;
    const char *udp_bind;
    const char *center_addr;
    const char *map_http_bind;
    const char *map_https_bind;
    const char *map_tcp_bind;
    const char *map_proxy_bind;
    const char *map_cert;
    const char *map_key;
    const char *allow_ports; /* server: ports clients may claim ("2000-3000, 3306") */
    bool center;
    bool ts;                 /* TLS towards the parent */
    bool tc;                 /* TLS from children */
    bool two_way_tls;
    const char *domain;
    const char *cert;
    const char *key;
    const char *ca;          /* trust anchors for the peer (tunnel TLS) */
    struct wm_conf_mapping *mappings;
    size_t nmappings;
    struct wm_conf_tclient *clients; /* server: per-client credentials and rights */
    size_t nclients;
    int64_t max_unauth_carriers;        /* server: carriers not authenticated yet */
    int64_t max_unauth_carriers_per_ip;
    int64_t max_streams;                /* streams open at once on one carrier */
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t handshake_timeout_ms;
    uint64_t heartbeat_ms;         /* tunnel PING interval */
    uint64_t heartbeat_timeout_ms; /* tunnel declared dead after this silence */
    /* destination and client rules (net/acl.h syntax), one rule a string */
    const char **deny_targets;
    size_t ndeny_targets;
    const char **allow_targets;
    size_t nallow_targets;
    const char **deny_clients;
    size_t ndeny_clients;
    const char **allow_clients;
    size_t nallow_clients;
    bool bind_set;           /* bind_addr was named (always true from flags): a
                              * tunnel server with center_addr opens no forward
                              * proxy on the default address */
    /* carrier trust without a CA (README "Security") */
    const char *state_dir;          /* server: where its generated key pair is kept */
    const char *known_hosts;        /* client: trust-on-first-use pins */
    const char *server_fingerprint; /* client: accept only this certificate */
};

#define WM_CONF_DEFAULT_BIND "127.0.0.1:8090"

/* Fill p with the defaults of a [proxy] section (also what `wmproxy proxy`
 * starts from): every protocol, limits.h timeouts, no tunnel. */
void wm_conf_proxy_defaults(struct wm_conf_proxy *p);

/* Forward proxy credentials no client could send: a user or password over
 * 255 bytes (SOCKS5 carries no more), a user with ':' (HTTP Basic ends the
 * user there, RFC 7617). -1 with the reason in msg, else 0. */
int wm_conf_proxy_user_check(const char *user, char *msg, size_t cap);
int wm_conf_proxy_pass_check(const char *pass, char *msg, size_t cap);

struct wm_conf {
    struct wm_arena *arena;
    struct wm_cval *tree;   /* the parsed file, for GET /now */
    const char *file;
    const char *control;
    bool disable_stdout;
    bool disable_control;
    const char *pidfile;
    int default_level;      /* enum wm_log_level; -2 when not set */
    const char *control_token;
    const char *log_file;
    int64_t workers;        /* 0: number of cores */
    int64_t max_connections; /* client connections open at once; 0: no cap */
    uint64_t grace_ms;
    struct wm_conf_proxy *proxy; /* NULL without [proxy] */
    struct wm_conf_http *http;   /* NULL without [http] (conf/config_http.h) */
    struct wm_conf_stream *stream; /* NULL without [stream] (conf/config_stream.h) */
    struct wm_conf_cluster *cluster; /* NULL without [cluster] (conf/config_cluster.h) */
    const char *legacy_bind;     /* top-level bind_addr (wmproxy 0.1 layout) */
    bool has_http;
    bool has_stream;
};

/* Diagnostics of a load (errors and warnings, in file order). */
struct wm_conf_diags {
    struct wm_cdiag *v;
    size_t n;
    size_t nerrors;
};

/* Load and validate path (".toml", ".yaml"/".yml"; other extensions are
 * tried as TOML). On success returns 0 and *out (caller frees). On failure
 * returns -1, *out is NULL. diags receives every error and warning either
 * way (free with wm_conf_diags_free). check_files: also open cert/key files
 * and verify each pair matches. */
int wm_conf_load(const char *path, bool check_files, struct wm_conf **out,
                 struct wm_conf_diags *diags);

/* Same from text already in memory (tests); name is used in messages. */
int wm_conf_load_text(const char *name, const char *text, size_t len, bool check_files,
                      struct wm_conf **out, struct wm_conf_diags *diags);

void wm_conf_free(struct wm_conf *c);

/* An error found after loading (e->key a dotted path such as
 * "http.server[0].location[1].proxy_url"): fill e->file, line and col with
 * where that key (or the deepest table on its path) is written in c's
 * file. No-op when e already has a file or c has no file. */
struct wm_err;
void wm_conf_locate(const struct wm_conf *c, struct wm_err *e);

/* Every config key, one dotted path a line (conf/schema.h
 * wm_schema_dump_keys): `wmproxy schema-keys`. */
void wm_conf_dump_keys(FILE *f);

/* Read only `control` and `control_token` from a file, leniently (the rest
 * may be broken: `wmproxy reload -c` must still reach the instance); after
 * a syntax error, from the top-level lines that set them.
 * Missing values keep what addr/token hold. Returns 0, or -1 if unreadable
 * with the reason in why. */
int wm_conf_peek_control(const char *path, char *addr, size_t acap, char *token, size_t tcap,
                         char *why, size_t wcap);
void wm_conf_diags_free(struct wm_conf_diags *d);

/* Format diagnostic i as one line ("file:line:col: key: message"), with a
 * "warning: " prefix for warnings. Returns buf. */
const char *wm_conf_diag_format(const struct wm_conf_diags *d, size_t i, char *buf, size_t cap);

/* Append every error, one line each, to err->msg (wm_err_add_line): the
 * answer to a refused start or reload. */
void wm_conf_diags_errors(const struct wm_conf_diags *d, struct wm_err *err);

#endif
