/*
 * cluster/cluster.h - several tunnel server nodes behind one name, sharing
 * their route table through Redis (docs/cluster.md).
 *
 * Each node keeps a connection to Redis on worker 0's event base
 * (reconnecting with backoff), records which domains, ports and groups its
 * clients hold (keys with a TTL refreshed by a heartbeat; claims are
 * atomic Lua scripts), learns the other nodes' routes (a local cache,
 * refreshed on every heartbeat and at once on a pub/sub announcement), and
 * carries public connections for routes held elsewhere to their node over
 * an inter-node carrier: the tunnel protocol, authenticated with the
 * cluster's node_password. It plugs into the tunnel through the hooks of
 * tunnel/tunnel.h (struct wm_tunnel_cluster).
 *
 * Life cycle (as the tunnel's): wm_cluster_prepare() on the main thread
 * builds immutable settings; wm_cluster_install() hands them to worker 0
 * (NULL: no cluster), where all cluster state lives.
 */
#ifndef WM_CLUSTER_CLUSTER_H
#define WM_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct wm_err;
struct wm_worker;
struct wm_cluster_settings;

/* Filled by the app from [cluster]; strings borrowed (prepare copies). */
struct wm_cluster_opts {
    const char *redis_host;
    uint16_t redis_port;
    const char *redis_user;    /* NULL: none */
    const char *redis_pass;    /* NULL: none */
    int redis_db;
    bool redis_tls;            /* rediss:// */
    const char *redis_ca;      /* its trust anchors (NULL: the system's) */
    const char *redis_cert;    /* client certificate and key, or NULL */
    const char *redis_key;
    const char *node_id;
    const char *advertise;     /* "host:port" of our center, for other nodes */
    const char *node_password; /* NULL: the node certificates alone */
    const char *node_ca;       /* mutual TLS between nodes (all three, or NULL) */
    const char *node_cert;
    const char *node_key;
    int ttl_ms;                /* route and node keys live this long unrefreshed */
    bool center_tls;           /* our center speaks TLS (tc): peers dial it so */
};

/* ALPN protocol a node offers on its carriers to other nodes with mutual
 * TLS: their center then answers with the node certificate and requires
 * ours (tunnel/tunnel.h wm_tunnel_set_node_tls). */
#define WM_CLUSTER_ALPN "wmproxy-node"

/* Build settings (caller frees, or installs). 0, or -1 with err. */
int wm_cluster_prepare(const struct wm_cluster_opts *o, struct wm_cluster_settings **out,
                       struct wm_err *err);
void wm_cluster_settings_free(struct wm_cluster_settings *s);

/* Install s (taken; NULL removes the cluster) on worker 0 and wait. Main
 * thread, after wm_tunnel_install(). Unchanged settings keep the Redis
 * connection and carriers. */
void wm_cluster_install(struct wm_cluster_settings *s);

/* Append `,"cluster":{...}` (this node, Redis state, every node and the
 * routes it holds, our claims, inter-node carriers) to a JSON object being
 * built. Main thread; nothing without a cluster. */
void wm_cluster_status_json(struct evbuffer *out);

/* Worker exit hook (worker 0): free everything while the base exists. */
void wm_cluster_worker_exit(struct wm_worker *w);

#endif
