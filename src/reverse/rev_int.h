/*
 * reverse/rev_int.h - the compiled reverse-proxy settings, shared by the
 * files of src/reverse (nothing else includes it).
 *
 * Everything below is built once by rconf.c into one arena owned by
 * struct wm_rev and is read-only afterwards (any worker may read it). The
 * only mutable parts are reached through pointers: upstream health
 * (struct rv_health, atomics, owned by the health registry in
 * upstream.c) and the round-robin counters (atomics).
 */
#ifndef WM_REVERSE_REV_INT_H
#define WM_REVERSE_REV_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/fwd.h"
#include "net/addr.h"
#include "net/conn.h"

struct wm_arena;
struct wm_conn;
struct wm_dial;
struct wm_files_req;
struct bufferevent;
struct wm_http_head;
struct rv_logfile;
struct rv_zone;
struct wm_files;
struct evbuffer;
typedef struct ssl_ctx_st SSL_CTX;

/* ---- matching (match.c) ---- */

enum rv_pat_kind {
    RV_PAT_ANY,    /* no path condition */
    RV_PAT_PREFIX, /* no '*': the path starts with it (nginx's "location /x") */
    RV_PAT_EXACT,  /* "=/x": the whole path */
    RV_PAT_GLOB,   /* '*' wildcards: prefix, middle parts in order, suffix */
    RV_PAT_REGEX,  /* anything else with regex syntax: PCRE2, unanchored */
    RV_PAT_NEVER,  /* "@name" of no match_names entry (a warning at check) */
};

struct rv_pattern {
    enum rv_pat_kind kind;
    const char *text;       /* as written */
    const char **parts;     /* GLOB: the pieces between '*' */
    size_t nparts;
    bool lead_star;         /* GLOB: starts with '*' */
    bool trail_star;        /* GLOB: ends with '*' */
    void *re;               /* REGEX: pcre2_code (freed with the settings) */
};

/* An IP network for client_ip / allow_ip / deny_ip. */
struct rv_cidr {
    int family;             /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
};

/* ---- upstreams (upstream.c) ---- */

/* Health of one upstream server, shared by workers and kept across
 * reloads (registry key "upstream-name|host:port"). */
/* An active check (health_check = {...}); set under the registry lock. */
struct rv_check {
    bool on;
    char path[256];
    char host[WM_HOST_MAX];      /* Host header */
    uint64_t interval_ms;
    uint64_t timeout_ms;
    unsigned classes;            /* bit c: status class c (2 for 2xx) is healthy */
    int codes[8];                /* or these exact codes */
    int ncodes;
    bool tcp;                    /* a TCP connect is the whole check ([stream]) */
    int rise;                    /* successes that bring a server back */
    int fall;                    /* failures that take it out */
};

struct rv_health {
    int refs;                    /* registry lock */
    char key[WM_HOST_MAX + 96];
    char host[WM_HOST_MAX];      /* the server */
    uint16_t port;
    atomic_int fails;            /* failures in a row */
    atomic_ullong down_until_ms; /* passive: skipped until then (wm_now_ms clock) */
    atomic_int active;           /* connections now (least_conn) */
    atomic_ullong total_fails;
    atomic_ullong checks_ok;     /* active checks passed / failed (for /metrics) */
    atomic_ullong checks_failed;
    atomic_bool check_down;      /* the active check says down */
    struct rv_check check;       /* registry lock */
    struct rv_server *checkers;  /* registry lock: servers asking for a check, newest first */
    /* the checker's own (worker 0) */
    uint64_t next_ms;
    int ok_streak;
    int fail_streak;
    bool probing;
    struct rv_health *next;
};

struct rv_server {
    char host[WM_HOST_MAX];
    uint16_t port;
    char addr[WM_HOST_MAX + 8];  /* host:port as written */
    int weight;
    uint64_t fail_timeout_ms;
    int fall_times;
    bool backup;
    bool checked;                /* in h->checkers (registry lock) */
    struct rv_check check;       /* its settings' check */
    struct rv_server *check_next;
    struct rv_health *h;
};

enum rv_balance { RV_BAL_WEIGHT, RV_BAL_RR, RV_BAL_LEAST_CONN, RV_BAL_IP_HASH, RV_BAL_RANDOM };

struct rv_upstream {
    const char *name;
    struct rv_server *servers;
    size_t nservers;
    enum rv_balance balance;
    uint16_t *rr_seq;            /* smooth weighted round-robin order, server indexes */
    size_t rr_len;
    atomic_ulong *rr_next;       /* in the arena, shared by workers */
    int keepalive;               /* idle connections per server and worker */
    uint64_t keepalive_ms;
};

/* ---- one proxied request (rev.c routes it, rev_up.c connects it) ---- */

/* Request body bytes kept so that a failed request can go to another
 * server (proxy_next_upstream); a longer body is not sent again. */
#define RV_REPLAY_MAX (64 * 1024)

/* One request's routing (the target's data; freed by release()). */
struct rv_req {
    struct wm_hfwd *f;
    const struct rv_location *loc;
    struct rv_server *srv;
    uint64_t tried;              /* servers that failed this request, by index */
    int ntries;                  /* servers tried so far, this one included */
    uint64_t start_ms;           /* routed (proxy_next_upstream_timeout runs from it) */
    struct wm_dial *dial;
    struct bufferevent *hs;      /* an https server's connection while its TLS
                                  * handshake runs (part of the connect) */
    struct event *hs_timer;      /* bounds it by proxy_connect_timeout */
    bool connecting;
    bool timed_out;              /* the last connect failed by its timeout */
    bool tls_failed;             /* the last connect failed in its TLS handshake */
    char sni[WM_HOST_MAX];
    struct evbuffer *local;      /* a local answer's body */
    struct wm_files_req *files;  /* a file_server answer */
    struct evbuffer *extra;      /* its header lines after the response rules */
    const char *abs_host;        /* absolute-form: its authority, the Host sent (in path[]) */
    char path[];                 /* request-target sent upstream, when rewritten */
};

/* The client connection: the keep-alive settings of its last upstream. */
struct rv_conn {
    struct wm_conn conn; /* first */
    int ka_max;
    uint64_t ka_ms;
};

/* ---- logs (alog.c) ---- */

/* An access log: a shared file and a line format (wmproxy's variables). */
struct rv_alog {
    struct rv_logfile *file;
    const char *format;
    bool json; /* log_format "json": JSON lines instead of format */
};

/* What one line is made of. */
struct rv_logctx {
    struct wm_http_head *req;
    const struct wm_hfwd_log *l;
    const struct wm_conn *c;
    const char *up_addr;
    const char *ssl_protocol;
    const char *ssl_cipher;
};

/* ---- locations and servers ---- */

enum rv_handler { RV_H_PROXY, RV_H_STATIC, RV_H_FILES, RV_H_NONE };

/* A try_paths candidate (try.c): a path template, or (re != NULL) a
 * subject template matched by re and rewritten as repl. */
struct rv_try {
    const char *fmt;
    struct rv_pattern *re;
    const char *repl;
};

struct rv_location {
    int index;                   /* in its server, for logs */
    struct rv_pattern path;
    const char **hosts;          /* rule.host patterns; none: any */
    size_t nhosts;
    uint64_t methods;            /* bit per llhttp method; 0: any */
    unsigned schemes;            /* bit 0 http, bit 1 https; 0: any */
    struct rv_cidr *client_ip;   /* rule.client_ip; none: any */
    size_t nclient_ip;
    struct rv_cidr *allow_ip;
    size_t nallow_ip;
    struct rv_cidr *deny_ip;
    size_t ndeny_ip;
    enum rv_handler handler;
    const char *static_body;     /* RV_H_STATIC, with variables */
    struct wm_files *files;      /* RV_H_FILES (owned by struct wm_rev) */
    struct rv_try *tries;        /* try_paths; none: ntries 0 */
    size_t ntries;
    int try_status;              /* its =CODE (404) */
    /* RV_H_PROXY */
    struct rv_upstream *up;
    bool up_tls;                 /* https:// */
    const char *up_path;         /* the URL's path prefix ("" when none) */
    const char *sni;             /* TLS: SNI and verified name; NULL: the server's host */
    SSL_CTX *tls;                /* https:// upstreams (own reference) */
    uint64_t tls_seq;            /* tls's number, unique in the process: the pool key
                                  * (an address may be reused by a later reload's) */
    bool set_host;               /* send the upstream's host:port as Host */
    bool is_ws;
    struct wm_hfwd_rule *rules;  /* request and response rules, expanded per request */
    size_t nrules;
    int connect_ms;
    int read_ms;                 /* upstream silence while a response is due */
    int up_write_ms;             /* the upstream not taking the request: 504 */
    int body_ms;                 /* client silence while its body is due: 408 */
    int send_ms;                 /* the client not reading the response: cut */
    uint64_t max_body;           /* client_max_body_size; 0: no limit */
    unsigned next_up;            /* proxy_next_upstream: WM_NEXT_* (conf/config_http.h) */
    int next_tries;              /* proxy_next_upstream_tries: servers per request */
    uint64_t next_ms;            /* proxy_next_upstream_timeout; 0: none */
    struct rv_zone *zone;        /* limit_req, or NULL */
    const struct rv_zone_conf *zone_conf; /* its settings in this generation */
    const char *zone_key;        /* the zone's key template ("{client_ip}") */
    uint64_t burst;
    int limit_status;            /* answer to a refused request (default 503) */
    struct rv_alog *alog;        /* access_log, or NULL (the main log has a line anyway) */
    struct rv_alog *elog;        /* error_log: a line per 5xx answer, or NULL */
};

struct rv_vhost {
    int index;                   /* in [http].server, for logs */
    const char **names;          /* up_name / domain words ("*.x.com" allowed) */
    size_t nnames;
    struct rv_location *locs;
    size_t nlocs;
    SSL_CTX *tls;                /* its certificate (own reference), or NULL */
    int head_ms;                 /* client_read_timeout */
    int ka_ms;                   /* client_ka_timeout */
    bool http2;                  /* HTTP/2 offered (http2 = false turns it off) */
};

/* A server name of an address, exact or "*.suffix", and the position of
 * its server in rv_listen.hosts (the first server to list it). */
struct rv_name {
    const char *name; /* NULL: a free slot of the exact table */
    size_t pos;
};

struct rv_listen {
    char addr[WM_ADDR_STR_MAX];
    bool tls;
    struct rv_vhost **hosts;     /* servers on this address, in config order */
    size_t nhosts;
    /* Server selection by Host (rv_listen_index; arena memory): exact names
     * in an open-addressing table (a power of two, at most half full),
     * "*.suffix" names in config order. A Host costs one probe and a walk
     * of the wildcards listed before its exact match, not one compare per
     * name of every server (hosting setups list thousands). */
    struct rv_name *exact;
    size_t exact_mask;
    struct rv_name *wild;
    size_t nwild;
};

/* Build l's name index (after every server is listed); -1 on OOM. */
int rv_listen_index(struct rv_listen *l, struct wm_arena *a);
/* The server for Host host[0..n) (port stripped) on l: the first in config
 * order with a matching name, else the first (the default, as nginx). */
const struct rv_vhost *rv_listen_vhost(const struct rv_listen *l, const char *host, size_t n);
/* The server whose certificate a TLS client asking for SNI name[0..n) gets:
 * the first in config order with a certificate and a matching name, else
 * NULL (the address's default certificate). One index lookup, as for a
 * Host. */
const struct rv_vhost *rv_listen_sni(const struct rv_listen *l, const char *name, size_t n);

struct wm_rev {
    atomic_int refs;
    struct wm_arena *arena;
    struct rv_vhost *vhosts;
    size_t nvhosts;
    struct rv_upstream **ups;    /* every upstream, for freeing health refs */
    size_t nups;
    struct rv_listen *listens;
    size_t nlistens;
    struct rv_pattern **pats;    /* every compiled pattern, for freeing regexes */
    size_t npats;
    SSL_CTX **ctxs;              /* every context, for freeing */
    size_t nctxs;
    struct rv_zone **zones;      /* limit_req zones (references) */
    size_t nzones;
    struct rv_zone_conf *zone_confs; /* their settings (arena) */
    const char **zone_names;     /* their names and key templates (arena) */
    const char **zone_keys;
    struct rv_logfile **files;   /* log files (references) */
    size_t nfiles;
    struct wm_files **fservers;  /* file_server settings (owned) */
    size_t nfservers;
};

/* match.c */
/* Compile pattern text (may be NULL: any). 0, or -1 with msg. */
int rv_pattern_compile(struct rv_pattern *p, const char *text, struct wm_arena *a, char *msg,
                       size_t cap);
void rv_pattern_free(struct rv_pattern *p);
bool rv_pattern_match(const struct rv_pattern *p, const char *s, size_t n);
/* "10.0.0.0/8", "::1", "2001:db8::/32". 0 or -1. */
int rv_cidr_parse(const char *s, struct rv_cidr *c);
bool rv_cidr_match(const struct rv_cidr *c, size_t n, const struct sockaddr *sa);
/* The path of a request-target for matching: up to '?', %XX decoded,
 * "//" merged, "." and ".." resolved. -1 when malformed, above the root,
 * holding a NUL, or longer than cap - 1. */
int rv_path_normalize(const char *uri, size_t n, char *out, size_t cap, size_t *outlen);
/* Host (no port, any case, a trailing dot ignored) against a name or
 * "*.example.com". */
bool rv_host_match(const char *pattern, const char *host, size_t n);
/* llhttp's number of an HTTP method name (any case), -1 when unknown. */
int rv_method_index(const char *m, size_t n);

/* try.c: compile try_paths into l (regexes also appended to *res, freed
 * with the settings). 0, or -1 with msg. */
int rv_try_compile(struct rv_location *l, const char *spec, struct wm_arena *a,
                   struct rv_pattern ***res, size_t *nres, char *msg, size_t cap);
/* Candidate t for the current request of f into out. 0, or -1 when its
 * regex does not match. */
int rv_try_candidate(const struct rv_try *t, struct wm_hfwd *f, struct evbuffer *out);

/* upstream.c */
struct rv_health *rv_health_get(const char *upname, const char *addr, const char *host,
                                uint16_t port);
void rv_health_put(struct rv_health *h);
/* Set the active check of s->h (c->on: the newest settings win while s
 * lives, until rv_health_check_put(s)). */
void rv_health_set_check(struct rv_server *s, const struct rv_check *c);
/* s no longer checks its server: the check of the newest settings left
 * applies again (a refused reload's are gone); with none left it is off. */
void rv_health_check_put(struct rv_server *s);
/* health.c: the checker on worker 0 (started by wm_rev_checker_start());
 * stop: at worker exit, on its worker (elsewhere a no-op). */
void rv_checker_stop(void);
void rv_registry_lock(void);
void rv_registry_unlock(void);
struct rv_health *rv_registry_head(void);
/* Pick a server for a request from client sa, skipping `tried` (bit i % 64 for
 * server i). NULL when none is up (then the least recently failed
 * one is not retried: the caller answers 502). */
struct rv_server *rv_upstream_pick(struct rv_upstream *u, const struct sockaddr *client,
                                   uint64_t tried);
void rv_server_failed(struct rv_upstream *u, struct rv_server *s, const char *why);
/* rconf_up.c: fill s from cs (its health record is that of u->name):
 * 0, -1 bad address, -2 out of memory. */
struct wm_conf_upserver;
int rv_server_init(const struct rv_upstream *u, struct rv_server *s,
                   const struct wm_conf_upserver *cs);
/* rconf_up.c: the smooth weighted round-robin order of u, in a. 0 or -1. */
int rv_rr_sequence(struct rv_upstream *u, struct wm_arena *a);
void rv_server_ok(struct rv_server *s);

/* limit.c: limit_req zones, shared by workers and kept across reloads by
 * name. A zone holds only the counts; its settings are the generation's
 * (struct rv_zone_conf, passed with each request), so a reload refused
 * after compiling changes nothing. bytes: the zone's size (limit=), for
 * its chains. NULL on OOM. */
#define RV_RATE_MICRO_MAX 1000000000000000ULL /* 10^9 requests per second */
struct rv_zone_conf {
    uint64_t rate_micro;         /* requests per second x 10^6 */
    size_t max_entries;          /* keys kept (limit= / rv_zone_entries()) */
    bool shared;                 /* cluster: counted in the shared store */
    bool on_error_allow;         /* cluster: on_redis_error=allow */
};
size_t rv_zone_entries(uint64_t bytes);
struct rv_zone *rv_zone_get(const char *name, uint64_t bytes);
void rv_zone_put(struct rv_zone *z);
/* One request of key k: within c's rate plus burst? */
bool rv_zone_allow(struct rv_zone *z, const struct rv_zone_conf *c, const char *k, size_t n,
                   uint64_t burst);

/* alog.c: log files by path, shared and kept open across reloads. NULL
 * with msg when the file cannot be opened. */
struct rv_logfile *rv_logfile_get(const char *path, char *msg, size_t cap);
void rv_logfile_put(struct rv_logfile *f);
void rv_alog_write(const struct rv_alog *a, const struct rv_logctx *x);

/* rev.c: the TLS version and cipher of a client connection (NULLs on
 * plain ones). */
void rv_tls_info(const struct wm_conn *c, const char **proto, const char **cipher);

/* rev.c: TLS front contexts: SNI chooses the certificate among the
 * servers of the address connected to, ALPN offers h2 first unless the
 * server says http2 = false, then http/1.1, on v's context. 0 or -1. */
int rv_tls_front_setup(SSL_CTX *ctx, const struct rv_vhost *v);

/* rev_up.c: the upstream side of the engine's ops (connect, cancel,
 * take_idle, park, up_result), and q's target on server s (key, access
 * log name, Host when proxy_set_host). */
void *rv_connect_op(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t);
void rv_cancel_op(void *handle);
struct bufferevent *rv_take_idle(struct wm_hfwd *f, const struct wm_hfwd_target *t);
void rv_park(struct wm_hfwd *f, const char *key, struct bufferevent *up);
bool rv_up_result(struct wm_hfwd *f, struct wm_hfwd_target *t, enum wm_hfwd_up r, int status,
                  bool replayable);
/* The target's key, log name and Host (proxy_set_host) for server s, and
 * q->sni, the TLS name to send and verify there. */
void rv_target_set(struct wm_hfwd_target *t, struct rv_req *q, const struct rv_server *s);
/* The request may be sent again (its method, or non_idempotent)? */
bool rv_req_resendable(const struct rv_req *q);

/* pool.c: idle upstream connections of this worker, by key */
struct bufferevent *rv_pool_take(const char *key);
void rv_pool_put(const char *key, struct bufferevent *bev, int max_per_key, uint64_t idle_ms);
void rv_pool_free_all(void);

#endif
