/*
 * tunnel/tunnel.h - the tunnel node of this process: client part (one
 * carrier to a parent `server`, local two-level proxy entry, private
 * mappings) and/or server part (carriers from clients, public mapping
 * listeners, routing). Protocol: docs/tunnel.md.
 *
 * Life cycle across reloads:
 *   1. wm_tunnel_prepare() on the main thread builds immutable settings
 *      (TLS contexts, encoded mappings) and validates them;
 *   2. the caller opens the listeners (net/lset.h, pinned to worker 0) with
 *      the services below;
 *   3. wm_tunnel_install() hands the settings to worker 0, where all tunnel
 *      state lives: a client carrier whose settings did not change is kept,
 *      otherwise it is replaced; the server keeps its carriers.
 */
#ifndef WM_TUNNEL_TUNNEL_H
#define WM_TUNNEL_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct wm_err;
struct wm_proxy_opts;
struct wm_service;
struct wm_tunnel_settings;
struct wm_worker;

#define WM_TUNNEL_NAME_MAX 63     /* mapping and group names, bytes */
#define WM_TUNNEL_DOMAIN_MAX 253  /* mapping domains, bytes */
#define WM_TUNNEL_SERVERS_MAX 8    /* parent addresses a client fails over between */
#define WM_TUNNEL_PORT_BYTES 8192 /* allow_ports bitmap: bit p (byte p / 8, bit p % 8) */

/* A header rule of a mapping, applied by the server to what it forwards. */
struct wm_tunnel_rule {
    bool request;      /* to the request sent to the client (else the response) */
    char op;           /* '+' add, '-' remove, '=' set */
    const char *name;
    const char *value; /* NULL for '-' */
};

/* A mapping the client announces (docs/tunnel.md, REGISTER). */
struct wm_tunnel_mapping {
    const char *name;       /* at most WM_TUNNEL_NAME_MAX bytes */
    const char *mode;       /* "http", "https", "tcp" or "proxy" */
    const char *local_addr; /* "host:port" of the service inside; NULL for proxy */
    const char *domain;     /* http/https: the public name (may start "*.") */
    const struct wm_tunnel_rule *rules;
    size_t nrules;
    uint16_t remote_port;   /* tcp: public port on the server (0: none) */
    const char *bind;       /* tcp: public "ip:port" on the server, or NULL */
    const char *group;      /* clients of one group share the mapping, or NULL */
    int proxy_protocol;     /* PROXY header the client sends the service it dials
                             * (net/proxyproto.h: 0 off, 1, 2) */
};

/* A client the server knows ([[proxy.clients]]): how it proves who it is
 * and what it may register. Lists are patterns/names; absent = nothing. */
struct wm_tunnel_client {
    const char *name;             /* the AUTH user name */
    const char *password;         /* NULL: none (then subject identifies it) */
    const char *subject;          /* CN its (mutual TLS) certificate must carry, or NULL */
    const char *const *domains;   /* http/https domains: "app.x.com", "*.x.com", "*" */
    size_t ndomains;
    const uint8_t *ports;         /* WM_TUNNEL_PORT_BYTES bitmap of public ports, or NULL */
    const char *const *groups;    /* groups it may create or join */
    size_t ngroups;
};

/*
 * The options of a tunnel node, filled by the caller (the app, from its
 * configuration). Strings and arrays are borrowed: wm_tunnel_prepare()
 * copies what it keeps. Error keys (struct wm_err) name these fields.
 */
struct wm_tunnel_opts {
    /* roles: a client has a parent; a server has children (any of
     * center_addr, server_mode, tc or a map_*_bind makes one) */
    const char *server;         /* client: the parent "host:port", or NULL; several
                                 * separated by spaces or commas: tried in turn */
    bool server_mode;           /* a server node even without the keys below */
    const char *bind;           /* client: the local proxy entry; server: where
                                 * children attach unless center_addr is set */
    const char *center_addr;    /* server: where children attach */
    const char *map_http_bind;  /* server: public listeners, or NULL */
    const char *map_https_bind;
    const char *map_tcp_bind;
    const char *map_proxy_bind;
    const uint8_t *allow_ports; /* server: WM_TUNNEL_PORT_BYTES, ports clients may
                                 * claim; NULL: any */
    /* credentials: carrier authentication (and the streams' proxy, below) */
    const char *username;       /* NULL: none */
    const char *password;
    /* server: per-client credentials and rights (NULL/0: username/password
     * above admit any client to everything) */
    const struct wm_tunnel_client *clients;
    size_t nclients;
    int max_unauth;             /* carriers not yet authenticated (0: default) */
    int max_unauth_per_ip;      /* ... per source address (0: default) */
    int max_streams;            /* streams open at once on one carrier (0: default) */
    /* TLS of the carrier and of public HTTPS */
    bool ts;                    /* client: TLS to the parent */
    bool tc;                    /* server: TLS from children */
    bool two_way_tls;           /* mutual TLS */
    const char *domain;         /* client: SNI and name checked (NULL: the host) */
    const char *cert;           /* PEM files, or NULL */
    const char *key;
    const char *ca;
    const char *map_cert;       /* public HTTPS (NULL: cert/key) */
    const char *map_key;
    /* client: the mappings it announces */
    const struct wm_tunnel_mapping *mappings;
    size_t nmappings;
    /* timers, milliseconds (0: defaults where one exists) */
    int connect_timeout_ms;     /* dialing the parent and mapped services */
    int idle_timeout_ms;        /* streams */
    int ping_ms;                /* carrier heartbeat */
    int dead_ms;                /* carrier declared dead after this silence */
    /* trust of the carrier's TLS without a CA (net/tlspin.h, README
     * "Security"); NULL: the defaults */
    const char *state_dir;          /* server: keeps the key pair made when tc has no
                                     * cert/key */
    const char *known_hosts;        /* client: certificates trusted on first use */
    const char *server_fingerprint; /* client: only this certificate ("SHA256:...") */
    bool dry_run;                   /* `check`: write nothing to disk */
    /* required: the proxy served on streams (two-level proxy, proxy
     * mappings); its timeouts also serve public HTTP(S) */
    const struct wm_proxy_opts *proxy;
};

enum wm_tunnel_listen {
    WM_TUNNEL_LISTEN_ENTRY,     /* client: local two-level proxy entry */
    WM_TUNNEL_LISTEN_CENTER,    /* server: carriers from clients */
    WM_TUNNEL_LISTEN_MAP_HTTP,  /* server: public HTTP, routed by Host */
    WM_TUNNEL_LISTEN_MAP_HTTPS, /* server: public HTTPS (terminated here) */
    WM_TUNNEL_LISTEN_MAP_TCP,   /* server: public TCP, the default tcp mapping */
    WM_TUNNEL_LISTEN_MAP_PROXY, /* server: public port to a client's proxy */
    WM_TUNNEL_LISTEN_COUNT
};

/* Do these options ask for a tunnel role at all? */
bool wm_tunnel_wanted(const struct wm_tunnel_opts *o);

/* Build settings from o. Returns 0 with *out (caller frees, or installs),
 * or -1 with err filled (a certificate that does not load, ...; err->key
 * names the field of o, "" when none). */
int wm_tunnel_prepare(const struct wm_tunnel_opts *o, struct wm_tunnel_settings **out,
                      struct wm_err *err);
void wm_tunnel_settings_free(struct wm_tunnel_settings *s);

/* [cluster] mutual TLS between nodes: a carrier whose TLS ClientHello
 * offers ALPN alpn (another node) is answered with cert/key and must
 * present a certificate that chains to ca; it is then a node carrier
 * (node_password, when set, is still proved on top). Needs a TLS center
 * (tc). alpn is kept, not copied: a string that outlives the settings (a
 * literal: WM_CLUSTER_ALPN). Before install (main thread). 0, or -1 with
 * err (key: the [cluster] key). */
int wm_tunnel_set_node_tls(struct wm_tunnel_settings *s, const char *alpn, const char *ca,
                           const char *cert, const char *key, struct wm_err *err);

/* The listening addresses the settings need: fills addr[i]/kind[i] for
 * up to max entries, returns the count. */
size_t wm_tunnel_listeners(const struct wm_tunnel_settings *s, const char **addr,
                           enum wm_tunnel_listen *kind, size_t max);

/* A service for one kind of tunnel listener (refcount 1). */
struct wm_service *wm_tunnel_service_new(enum wm_tunnel_listen kind);

/* Install s (taken; NULL removes the tunnel) on worker 0 and wait. Call
 * from the main thread after the listeners were applied. */
void wm_tunnel_install(struct wm_tunnel_settings *s);

/* Append `,"tunnel":{...}` (roles, parent connection, attached clients,
 * open streams, registered mappings) to a JSON object being built. Main
 * thread; asks worker 0 for a snapshot. Appends nothing without a tunnel. */
void wm_tunnel_status_json(struct evbuffer *out);

/* The tunnel's families of GET /metrics (a core/metrics.h collector; arg
 * unused). Runs the reading on worker 0. */
void wm_tunnel_metrics_collect(struct evbuffer *out, void *arg);

/* Worker 0, graceful stop: no reconnects, carriers close once idle. */
void wm_tunnel_drain(struct wm_worker *w);

/* Worker exit hook: on worker 0, free all tunnel state while its event
 * base still exists. */
void wm_tunnel_worker_exit(struct wm_worker *w, void *arg);

/* ---- cluster hooks (src/cluster/ installs them; NULL: a single node) ----
 * Everything here runs on worker 0. A route's namespace `ns` is "web"
 * (http/https domains, lowercase), "tcp" (":port" for a mapping's own port,
 * "@tcp" for the shared map_tcp_bind slot) or "proxy" ("@proxy"). */
struct wm_tun;
struct wm_tunnel_cluster {
    /* May a local client claim ns/key? NULL, or why not (in why). */
    const char *(*check)(const char *ns, const char *key, const char *group, char *why,
                         size_t cap);
    /* A local client holds ns/key now / no longer. */
    void (*claimed)(const char *ns, const char *key, const char *group, const char *client,
                    const char *mapping);
    void (*released)(const char *ns, const char *key, const char *group, const char *client,
                     const char *mapping);
    /* A key no local client holds: a ready carrier to a node whose client
     * holds it (node gets its id), or NULL (node gets the id of a node that
     * holds it but whose carrier is not ready, or ""). */
    struct wm_tun *(*route)(const char *ns, const char *key, char *node, size_t cap);
    /* AUTH user of a carrier: the node password if it names another node
     * ("node:ID"), else NULL (an ordinary client). */
    const char *(*node_password)(const char *user, size_t len);
};
extern const struct wm_tunnel_cluster *wm_tunnel_cluster;
/* Worker 0: publish exactly these public tcp ports (routes ":PORT" held by
 * clients of other nodes) on this node too, where allow_ports allows;
 * ports no longer listed are closed (unless a local client holds them). */
void wm_tunnel_publish_ports(const uint16_t *ports, size_t n);
/* Worker 0: withdraw the local mappings of ns/key (another node won it). */
void wm_tunnel_withdraw(const char *ns, const char *key, const char *why);

#endif
