/*
 * cluster/cluster_int.h - internals of the cluster module: settings, the
 * worker-0 state, and the entry points its files share (cluster.c: life
 * cycle, hooks, status; cluster_redis.c: the Redis connection, claims and
 * the route cache; cluster_peer.c: carriers to the other nodes).
 */
#ifndef WM_CLUSTER_CLUSTER_INT_H
#define WM_CLUSTER_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "net/addr.h"

struct event;
struct event_base;
struct evbuffer;
struct redisAsyncContext;
struct wm_dial;
struct wm_tun;
typedef struct ssl_ctx_st SSL_CTX;

#define CL_ID_MAX 64     /* node ids, client and mapping names (63 bytes + NUL) */
#define CL_KEY_MAX 264   /* route keys: a domain, ":port", "@tcp", "@proxy" */
#define CL_BACKOFF_MIN_MS 200
#define CL_BACKOFF_MAX_MS 2000
#define CL_STABLE_MS 10000 /* a Redis connection up that long resets the backoff when lost */
#define CL_PEER_REFUSED_MS 30000 /* a carrier whose credentials a node refused retries
                                  * after 15-30 s: a few failures a minute, under the
                                  * failed-login hold (WM_AUTHFAIL_BAN_AFTER) */
#define CL_REPLY_BYTES_MAX (64 << 20)  /* a Redis reply not yet whole (cluster_ev.c) */
#define CL_REPLY_ELEMENTS_MAX 1048576 /* array elements in one reply, nested included */
#define CL_AUTH_CHANNEL "wm:authhold" /* "IP\tMS": an address put on hold */

struct wm_cluster_settings {
    char *redis_host;
    uint16_t redis_port;
    char *redis_user;          /* NULL: none */
    char *redis_pass;          /* NULL: none */
    int redis_db;
    SSL_CTX *redis_ctx;        /* rediss://: TLS towards Redis (cluster_tls.c), else NULL */
    char *redis_tls;           /* "ca\ncert\nkey" as configured (reload compares it), or NULL */
    char node_id[CL_ID_MAX];
    char advertise[WM_HOST_MAX + 8];
    char *node_password;       /* NULL: node certificates alone */
    char *node_tls;            /* "ca\ncert\nkey" with mutual TLS between nodes, or NULL */
    int ttl_ms;
    bool center_tls;
    SSL_CTX *peer_ctx;         /* TLS towards nodes whose center is TLS: without
                                * node_tls no certificate check (node_password's
                                * MAC, bound to the TLS session, authenticates both
                                * ends); with it, our node certificate and theirs
                                * checked against node_ca (ALPN WM_CLUSTER_ALPN) */
};

/* A route a local client holds, refreshed in Redis on every heartbeat. */
struct cclaim {
    struct cclaim *next;
    char ns[8];
    char key[CL_KEY_MAX];
    char group[CL_ID_MAX];
    char client[CL_ID_MAX];
    char mapping[CL_ID_MAX];
    int refs;                  /* local mappings holding it (group members) */
    bool stored;               /* the last claim in Redis succeeded */
    uint64_t contested_until;  /* taken over from a node we believe dead: Redis may
                                * refuse it until then (its keys expire) */
};

/* A node and a route it holds, as the cache last read them from Redis. */
struct cnode {
    char id[CL_ID_MAX];
    char advertise[WM_HOST_MAX + 8];
    bool tls;                  /* its center speaks TLS */
};
struct croute {
    char ns[8];
    char key[CL_KEY_MAX];
    char group[CL_ID_MAX];
    char client[CL_ID_MAX];
    char mapping[CL_ID_MAX];
    size_t node;               /* index into nodes */
};

/* A carrier to another node (we open streams on it). */
struct cpeer {
    struct cpeer *next;
    struct cluster *cl;
    char id[CL_ID_MAX];
    char advertise[WM_HOST_MAX + 8];
    bool tls;
    struct wm_tun *t;
    struct wm_dial *dial;
    struct event *retry_ev;
    unsigned backoff_ms;
    bool seen;                 /* still in the cache (sync) */
    bool failed;               /* the last dial or carrier failed: believed down */
    uint64_t seen_ms;          /* last time the cache listed it with routes */
    uint64_t connects;
};

struct cluster {
    struct wm_worker *w;
    struct wm_cluster_settings *s;
    /* Redis: one connection for commands, one subscribed to wm:events */
    struct redisAsyncContext *cmd;
    struct redisAsyncContext *sub;
    struct ctls *cmd_tls;      /* rediss://: what carries cmd and sub (else NULL) */
    struct ctls *sub_tls;
    bool up;                   /* cmd connected and answering */
    bool closing;              /* tearing down: callbacks do nothing */
    bool reply_refused;        /* the connection is being dropped for a reply
                                * cluster_ev.c refused (last_error says why) */
    unsigned backoff_ms;
    struct event *retry_ev;
    struct event *beat_ev;
    uint64_t last_reply_ms;
    uint64_t dial_ms;          /* when the current connection attempt began */
    uint64_t up_since_ms;      /* when the connection (re)started */
    bool down_logged;          /* this outage (or the first failed attempt) was logged */
    uint64_t connects;
    uint64_t disconnects;
    uint64_t claims_refused;   /* new claims refused (held elsewhere, Redis down) */
    uint64_t claims_lost;      /* withdrawn: another node won the race */
    uint64_t refreshes;
    char last_error[160];
    uint64_t err_log_ms;       /* the last WARN for a failed command: one a minute */
    uint64_t err_quiet;        /* failed commands since, logged at debug level */
    /* what this node holds */
    struct cclaim *claims;
    /* the route cache (every node, ourselves included) */
    struct cnode *nodes;
    size_t nnodes;
    struct croute *routes;
    size_t nroutes;
    uint64_t cache_ms;         /* when it was last read (0: never) */
    /* carriers to other nodes */
    struct cpeer *peers;
    size_t rr;
    bool check_contested;      /* the last check let a claim take over (for claimed) */
};

/* cluster_redis.c */
void credis_start(struct cluster *cl);
void credis_stop(struct cluster *cl);
/* Store c in Redis (announce: publish the change). */
void credis_claim(struct cluster *cl, struct cclaim *c, bool announce);
void credis_release(struct cluster *cl, const struct cclaim *c);
/* The connection failed (why): drop both contexts, retry with backoff. */
void credis_lost(struct cluster *cl, const char *why);

/* cluster_ev.c: attach ac (its data already cl) to base, as hiredis'
 * libevent adapter does, with replies bounded (CL_REPLY_*) and their
 * shapes checked where hiredis would abort. 0, or -1. */
int cev_attach(struct redisAsyncContext *ac, struct event_base *base);

/* cluster_tls.c: rediss://. A hiredis context (not yet attached to the
 * event base) whose bytes go over TLS to s->redis_host:port; *link carries
 * them and belongs to the caller, who frees it with ctls_free() once the
 * context is freed or gone (the link never frees the context; it calls
 * credis_lost() when the dial or TLS fails). NULL with cl->last_error. */
struct ctls;
struct redisAsyncContext *ctls_connect(struct cluster *cl, struct ctls **link);
void ctls_free(struct ctls *t);
/* Log the TLS alerts Redis sends on ctx's connections (a client
 * certificate it wants, one it refuses: after a TLS 1.3 handshake these
 * come as alerts) and keep the last one for cl->last_error. */
void ctls_watch_alerts(SSL_CTX *ctx);

/* cluster_peer.c */
/* The cache changed: a carrier to every other node that holds routes. */
void cpeer_sync(struct cluster *cl);
/* Is node id believed down (our carrier to it failed and is not back)? */
bool cpeer_down(struct cluster *cl, const char *id);
/* The ready carrier to node id, or NULL. */
struct wm_tun *cpeer_carrier(struct cluster *cl, const char *id);
void cpeer_free_all(struct cluster *cl);
/* Append `"peers":[...]`. */
void cpeer_status_json(struct cluster *cl, struct evbuffer *out);

/* cluster_limit.c: shared limit_req zones (reverse/rev.h hook) */
void climit_install(bool on);
void climit_set_up(bool up);
void climit_status_json(struct evbuffer *out);

/* cluster_authfail.c: failed authentications counted in Redis (core/authfail.h hook) */
void cauth_install(bool on);
/* A message on CL_AUTH_CHANNEL (worker 0). */
void cauth_announced(const char *msg, size_t len);
void cauth_status_json(struct evbuffer *out);

/* cluster.c: arm ev for a retry after a jittered *backoff_ms (half to all
 * of it), then double *backoff_ms up to CL_BACKOFF_MAX_MS. */
void cl_retry_later(struct event *ev, unsigned *backoff_ms);

/* cluster.c: the current cluster (worker 0), or NULL. Worker 0 alone
 * dereferences it; it stores it atomically because the main thread peeks at
 * it (wm_cluster_install(), wm_cluster_status_json()). */
extern struct cluster *wm_cluster_current;
/* A claim of ours lost in Redis: withdraw it locally. */
void cluster_claim_lost(struct cluster *cl, struct cclaim *c, const char *holder);

#endif
