/*
 * tunnel/server_int.h - registry records of the tunnel server (server.c)
 * and the routing entry points its HTTP front end (http_map.c) uses.
 */
#ifndef WM_TUNNEL_SERVER_INT_H
#define WM_TUNNEL_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/service.h"
#include "http/fwd.h"
#include "tunnel/node_int.h"

struct wm_listener;
struct wm_listen_stats;

/* Every header rule a carrier announced, strings exact, in one block. The
 * carrier and each request routed with its rules hold a reference (worker 0
 * only), so a response still flowing when the carrier is gone keeps them. */
struct rule_block {
    int refs;
    struct wm_hfwd_rule rules[]; /* then the strings */
};

struct rule_block *rule_block_ref(struct rule_block *b);
void rule_block_unref(struct rule_block *b);

/* One mapping announced by a client. */
struct rmap {
    struct tcarrier *owner;
    bool active;             /* accepted into the routing tables (set it with
                              * tserver_route_set only: the index follows) */
    struct rmap *rnext;      /* in its route bucket while active */
    uint8_t mode;            /* enum wm_tun_mode */
    char name[TUN_NAME_MAX];
    char key[WM_HOST_MAX + 8]; /* domain, "ip:port", "@tcp" or "@proxy" */
    char group[TUN_NAME_MAX];
    const struct wm_hfwd_rule *rules; /* nrules entries in the carrier's rule block */
    size_t nrules;
    char refused[256];       /* why it was refused (kept for the reply) */
    uint32_t m_in, m_out;    /* /metrics: visitor bytes (core/metrics.h series) */
    bool lost;               /* cluster: withdrawn, another node won the route */
    bool waiting;            /* refused because another client holds its key: takes it
                              * when that one goes (server.c promote_waiting) */
};

/* One attached client. */
struct tcarrier {
    struct tserver *sv;
    struct wm_tun *t;
    struct tcarrier *prev;
    struct tcarrier *next;
    struct tcarrier *idnext;  /* in its tserver.by_id bucket (id: its c=) */
    uint64_t id;              /* wm_tun_id(t); 0 until t is made */
    bool ready;
    bool pending;            /* not authenticated yet: counts against the caps */
    bool held;               /* its address is on hold (core/authfail.h) */
    bool registered;         /* its first REGISTER is in (a later one re-registers) */
    bool anon;               /* attached without credentials: two-level proxy streams
                              * only, each through the proxy's own auth (center.c) */
    bool node;               /* cluster: a carrier from another server node */
    struct sockaddr_storage addr; /* source address (alen 0: unknown) */
    socklen_t alen;
    struct wm_listen_stats *stats; /* the center listener's (referenced) */
    char user[TUN_NAME_MAX * 4]; /* [[proxy.clients]] name it proved, "" without the table */
    char peer[WM_ADDR_STR_MAX];
    char name[WM_ADDR_STR_MAX];
    struct rmap *maps;
    size_t nmaps;
    struct rule_block *rules; /* every mapping's header rules */
};

/* A public port opened for tcp mappings with their own address. */
struct pport {
    struct pport *next;
    char addr[WM_ADDR_STR_MAX + 4]; /* "ip:port", or "udp:ip:port" */
    struct wm_listener *l;
    struct wm_listen_stats *stats;
    int refs; /* mappings (group members) using it */
};

struct port_svc {
    struct wm_service base;
    char key[WM_ADDR_STR_MAX];
};

/* What the center saw since start (worker 0; /status "center"). */
struct tcenter_stats {
    uint64_t accepted;     /* carrier connections taken in */
    uint64_t auth_ok;
    uint64_t auth_failed;
    uint64_t anonymous;    /* admitted without credentials (proxy streams only) */
    uint64_t refused_cap;  /* closed at accept: too many unauthenticated carriers */
    uint64_t refused_hold; /* closed: the address is on hold after failed logins */
    uint64_t streams;      /* of carriers gone (live ones are added when read) */
    uint64_t bytes_in;
    uint64_t bytes_out;
};

/* Active mappings by (mode, key): a request routes in a bucket, not over
 * every client's mappings (frp-like servers hold thousands). */
#define TSERVER_ROUTE_BUCKETS 1024
#define TSERVER_ID_BUCKETS 256

struct tserver {
    struct tnode *n;
    struct tcarrier *carriers;
    struct pport *ports;
    struct rmap *routes[TSERVER_ROUTE_BUCKETS];
    struct tcarrier *by_id[TSERVER_ID_BUCKETS]; /* carriers by id (sequential) */
    uint64_t route_seed;  /* keys are the clients' choice: a keyed hash */
    size_t rr; /* round robin over group members */
    size_t npending;      /* carriers not authenticated yet */
    size_t pending_peak;  /* since it was last 0 (memory given back then) */
    uint64_t cap_log_ms;  /* last "refused: cap" log line */
    uint64_t cap_quiet;   /* refusals not logged since */
    struct tcenter_stats st;
};

/* ports.c: the public listener of a tcp mapping with its own address.
 * Acquire opens it (or shares it: one more reference); 0, or -1 with the
 * reason in err. Release drops a reference, closing it with the last. */
int tserver_port_acquire(struct tserver *sv, const char *addr, char *err, size_t cap);
void tserver_port_release(struct tserver *sv, const char *addr);
/* The server the per-port services route to; close every port at free. */
void tserver_ports_owner(struct tserver *sv);
void tserver_ports_free(struct tserver *sv);

/* The carrier whose tunnel has id (wm_tun_id), or NULL once it is gone. */
struct tcarrier *tserver_carrier_by_id(struct tserver *sv, uint64_t id);
/* Mapping r enters (active) or leaves the routing index; r must leave it
 * before its storage goes. No-op when r->active is already so. */
void tserver_route_set(struct tserver *sv, struct rmap *r, bool active);
/* A live client's mapping for key (mode tcp/proxy/http/https), balanced
 * over a group; NULL if none. */
struct rmap *tserver_pick(struct tserver *sv, uint8_t mode, const char *key);
/* The http/https mapping for a Host header value (port ignored, wildcards). */
struct rmap *tserver_pick_host(struct tserver *sv, const char *host, size_t hlen);
/* A UDP mapping's public port (udp_map.c): key "udp:ip:port"; its
 * datagrams open a stream per peer. Refcount 1; NULL on OOM. */
struct wm_service *tudp_port_service_new(const char *key);
/* The carrier and mapping name that hold UDP key now: 0, or -1 (none). */
struct wm_tun;
int tserver_route_udp(const char *key, struct wm_tun **t, char *name, size_t cap);
/* Route an accepted public TCP connection by key. Takes fd. */
void tserver_route_tcp(struct tserver *sv, const char *key, int fd, const struct sockaddr *peer,
                       socklen_t plen, struct wm_listen_stats *stats);
/* http_map.c: serve a public HTTP(S) connection. Takes fd. */
void tserver_http_accept(struct tserver *sv, bool tls, int fd, const struct sockaddr *peer,
                         socklen_t plen, struct wm_listen_stats *stats);

/* tmetrics.c: the byte counters of a mapping of carrier c (kept by client
 * and mapping name, so they survive reconnects; at most
 * WM_TUNNEL_MAPPING_SERIES_MAX series, then 0: not shown). */
void tmetrics_mapping(const struct tcarrier *c, const char *mapping, uint32_t *in,
                      uint32_t *out);

/* center.c: the gate for carriers. */
/* The carrier authenticated or went: it no longer counts as pending. */
void tcenter_unpend(struct tcarrier *c);
/* wm_tun_cbs identify / authenticated of server carriers (arg: tcarrier). */
int tcenter_identify(struct wm_tun *t, const struct wm_tun_str *user, const char **pass,
                     const char **why, void *arg);
int tcenter_authenticated(struct wm_tun *t, bool ok, const char *why, void *arg);
/* Why a new carrier from peer is closed at accept ("" when its address is
 * on hold: not logged again), or NULL to take it. Counts the refusal. */
const char *tcenter_refusal(struct tserver *sv, const struct sockaddr *peer);
/* Log a refusal at accept, one line per second at most. */
void tcenter_log_refusal(struct tserver *sv, const char *peer, const char *why);

/* server_cluster.c: the cluster hooks' side of the server (only called
 * when wm_tunnel_cluster is set). */
/* Why the cluster refuses r (in r->refused), or NULL. */
const char *tcluster_check(struct tcarrier *c, struct rmap *r);
/* r is held (true) / no longer held (false) by a local client. */
void tcluster_claimed(struct tcarrier *c, struct rmap *r, bool held);
/* A stream from another node (carrier c): relay it to the local client
 * that holds the route it names, or refuse it. */
void tcluster_node_open(struct tserver *sv, struct tcarrier *c, struct wm_tun_stream *s,
                        const struct wm_tun_open *o);
/* A public TCP connection for key that no local client holds: carry it to
 * the node that holds it. true when taken (fd is then ours; closed with an
 * access line when that node cannot be reached), false when no node holds
 * it. */
bool tcluster_route_tcp(struct tserver *sv, const char *key, int fd, const char *ps,
                        const char *field, struct wm_listen_stats *stats, bool proxy);
/* A local client's live mapping for ns/key as the cluster names it
 * (group members in turn), or NULL. */
struct rmap *tcluster_pick_local(struct tserver *sv, const char *ns, const char *key);
/* http_map.c: an http(s) stream from another node (node: its id) for the
 * local route key: served by the HTTP engine with the mapping's header
 * rules, as if the visitor (field: the OPEN's peer field) had come here. */
void tserver_http_node_stream(struct tserver *sv, struct wm_tun_stream *s, const char *key,
                              const char *node, const char *field);
/* The carrier to a node that holds the domain of host (port dropped,
 * wildcards), with the route's key and the node's id; or NULL (node: the
 * id of a node that holds it but cannot be reached now, or ""). */
struct wm_tun *tcluster_route_host(const char *host, size_t hlen, char *key, size_t kcap,
                                   char *node, size_t ncap);

#endif
