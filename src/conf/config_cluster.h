/*
 * conf/config_cluster.h - the top-level [cluster] section: several tunnel
 * server nodes sharing routes and limits through Redis (docs/cluster.md).
 *
 * Decoded into the config's arena (owned by the struct wm_conf, freed with
 * it). The redis URL is checked and split by the validator.
 */
#ifndef WM_CONF_CONFIG_CLUSTER_H
#define WM_CONF_CONFIG_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/schema.h"

#define WM_CONF_NODE_ID_MAX 63

struct wm_conf_cluster {
    const char *redis;         /* "redis[s]://[user:pass@]host:port/db" as written */
    const char *redis_ca;      /* rediss://: trust anchors for Redis' certificate */
    const char *redis_cert;    /* rediss://: our client certificate (Redis' tls-auth-clients) */
    const char *redis_key;     /* and its key */
    const char *node_id;       /* [A-Za-z0-9._-], at most WM_CONF_NODE_ID_MAX bytes */
    const char *advertise;     /* "host:port": where other nodes reach our center */
    const char *node_password; /* authenticates the carriers between nodes (or the certs) */
    const char *node_ca;       /* mutual TLS between nodes: the CA of node certificates */
    const char *node_cert;     /* this node's certificate (PEM chain) */
    const char *node_key;      /* and its key */
    uint64_t ttl_ms;           /* a dead node's routes expire after this (default 5 s) */
    /* from redis, filled by the validator */
    const char *redis_host;
    uint16_t redis_port;
    const char *redis_user;    /* NULL: none */
    const char *redis_pass;    /* NULL: none */
    int64_t redis_db;
    bool redis_tls;            /* rediss:// */
};

#define WM_CONF_CLUSTER_TTL_MS 5000

extern const struct wm_cschema wm_conf_cluster_schema;

struct wm_conf;
struct wm_cval;
/* [proxy] server: "host:port", several separated by spaces or commas, or an
 * array of them; checked and joined by spaces (client failover). */
int wm_conf_decode_servers(struct wm_cctx *ctx, const struct wm_cval *v, void *dst,
                           const char *path);
/* Top-level check: [cluster] only on a tunnel server node. */
void wm_conf_cluster_check_roles(struct wm_cctx *ctx, const struct wm_conf *c,
                                 const struct wm_cval *top);

#endif
