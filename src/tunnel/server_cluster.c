/*
 * tunnel/server_cluster.c - the tunnel server's side of a cluster (the
 * hooks of tunnel.h that src/cluster/ installs): routing keys as the
 * cluster names them, claims checked and announced, streams from other
 * nodes relayed to the local client that holds the mapping (http ones
 * served by the HTTP engine with its header rules, http_map.c), and public
 * connections for keys a client of another node holds carried there.
 * Nothing here runs without [cluster] (wm_tunnel_cluster NULL).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"

const struct wm_tunnel_cluster *wm_tunnel_cluster;

/* The cluster's name of r's route: namespace and key. */
static const char *ns_key(const struct rmap *r, char *key, size_t cap)
{
    switch (r->mode) {
    case WM_TUN_MODE_HTTP:
    case WM_TUN_MODE_HTTPS:
        snprintf(key, cap, "%s", r->key);
        return "web";
    case WM_TUN_MODE_TCP:
        if (r->key[0] != '@' && strrchr(r->key, ':') != NULL) {
            snprintf(key, cap, "%s", strrchr(r->key, ':')); /* ":port": every node publishes it */
        } else {
            snprintf(key, cap, "%s", r->key);
        }
        return "tcp";
    case WM_TUN_MODE_UDP: /* claimed cluster-wide; datagrams are served where they land */
        snprintf(key, cap, "%s", r->key);
        return "udp";
    default:
        snprintf(key, cap, "%s", r->key);
        return "proxy";
    }
}

const char *tcluster_check(struct tcarrier *c, struct rmap *r)
{
    char key[WM_HOST_MAX + 8];
    const char *ns = ns_key(r, key, sizeof(key));

    (void)c;
    return wm_tunnel_cluster->check(ns, key, r->group, r->refused, sizeof(r->refused));
}

void tcluster_claimed(struct tcarrier *c, struct rmap *r, bool held)
{
    char key[WM_HOST_MAX + 8];
    const char *ns = ns_key(r, key, sizeof(key));

    if (held) {
        wm_tunnel_cluster->claimed(ns, key, r->group, c->name, r->name);
    } else {
        wm_tunnel_cluster->released(ns, key, r->group, c->name, r->name);
    }
}

struct rmap *tcluster_pick_local(struct tserver *sv, const char *ns, const char *key)
{
    struct rmap *cand[64];
    size_t n = 0;
    char k[WM_HOST_MAX + 8];

    for (struct tcarrier *c = sv->carriers; c != NULL && n < 64; c = c->next) {
        if (!c->ready || c->node || !wm_tun_is_ready(c->t)) {
            continue;
        }
        for (size_t i = 0; i < c->nmaps && n < 64; i++) {
            struct rmap *r = &c->maps[i];
            if (r->active && strcmp(ns_key(r, k, sizeof(k)), ns) == 0 && strcmp(k, key) == 0) {
                cand[n++] = r;
            }
        }
    }
    return n == 0 ? NULL : cand[sv->rr++ % n];
}

/* Split an OPEN name from another node, "ns key". */
static int split_name(struct wm_tun_str name, char *ns, size_t ncap, char *key, size_t kcap)
{
    char buf[WM_HOST_MAX + 16];
    char *sp;

    wm_tun_str_copy(buf, sizeof(buf), name);
    sp = strchr(buf, ' ');
    if (sp == NULL || (size_t)(sp - buf) >= ncap) {
        return -1;
    }
    *sp = '\0';
    memcpy(ns, buf, (size_t)(sp - buf) + 1);
    snprintf(key, kcap, "%s", sp + 1);
    return 0;
}

void tcluster_node_open(struct tserver *sv, struct tcarrier *c, struct wm_tun_stream *s,
                        const struct wm_tun_open *o)
{
    char ns[8];
    char key[WM_HOST_MAX + 8];
    char field[WM_TUN_PEER_MAX];
    char peer[WM_ADDR_STR_MAX] = "-";
    char target[200];
    struct wm_tun_peer pe;
    struct rmap *r;

    if (o->kind != WM_TUN_OPEN_MAPPING ||
        split_name(o->name, ns, sizeof(ns), key, sizeof(key)) < 0) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "a node opens mapping streams by route");
        return;
    }
    if ((r = tcluster_pick_local(sv, ns, key)) == NULL) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NO_MAPPING, "no client of this node holds the route");
        return;
    }
    wm_tun_str_copy(field, sizeof(field), o->peer);
    if (strcmp(ns, "web") == 0) { /* HTTP: served here, with the mapping's header rules */
        tserver_http_node_stream(sv, s, key, c->name, field);
        return;
    }
    wm_tun_peer_parse(o->peer, &pe);
    if (pe.srclen > 0) {
        wm_addr_format((struct sockaddr *)&pe.src, peer, sizeof(peer));
    }
    struct bridge *b = bridge_new_child(s, peer, "tunnel-node", sv->n->s->idle_timeout_ms);
    if (b == NULL) {
        return;
    }
    snprintf(target, sizeof(target), "%s/%s(from %s)", r->owner->name, r->name, c->name);
    struct wm_tun_open po = {WM_TUN_OPEN_MAPPING, {r->name, strlen(r->name)},
                             {field, strlen(field)}};
    bridge_open_stream(b, r->owner->t, &po, target);
}

bool tcluster_route_tcp(struct tserver *sv, const char *key, int fd, const char *ps,
                        const char *field, struct wm_listen_stats *stats, bool proxy)
{
    char node[64];
    char name[WM_HOST_MAX + 16];
    char target[160];
    const char *ns = proxy ? "proxy" : "tcp";
    const char *k = key[0] == '@' || strrchr(key, ':') == NULL ? key : strrchr(key, ':');
    struct wm_tun *t = wm_tunnel_cluster->route(ns, k, node, sizeof(node));

    if (t == NULL && node[0] != '\0' && proxy) {
        /* answered in the client's protocol (502, SOCKS reply) */
        snprintf(target, sizeof(target), "the cluster node %s serving this proxy port is "
                 "unreachable", node);
        tnode_refuse_proxy(fd, ps, "tunnel-proxy", target, stats, true);
        return true;
    }
    if (t == NULL && node[0] != '\0') {
        wm_log(WM_LOG_INFO, 0, "access proto=tunnel-tcp client=%s target=node:%s/%s code=%d "
               "end=node-unreachable", ps, node, k, WM_TUN_OPEN_UNREACHABLE);
        close(fd);
        return true;
    }
    if (t == NULL) {
        return false;
    }
    struct bridge *b = bridge_new_fd(fd, ps, proxy ? "tunnel-proxy" : "tunnel-tcp", stats,
                                     sv->n->s->idle_timeout_ms);
    if (b == NULL) {
        return true;
    }
    if (proxy) {
        bridge_answer_failures(b);
    }
    snprintf(name, sizeof(name), "%s %s", ns, k);
    snprintf(target, sizeof(target), "node:%s/%s", node, k);
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {name, strlen(name)}, {field, strlen(field)}};
    bridge_open_stream(b, t, &o, target);
    return true;
}

struct wm_tun *tcluster_route_host(const char *host, size_t hlen, char *key, size_t kcap,
                                   char *node, size_t ncap)
{
    char h[WM_HOST_MAX];
    char down[64] = "";
    char down_key[WM_HOST_MAX + 8];
    struct wm_tun *t;

    if (ncap > 0) {
        node[0] = '\0';
    }
    if (hlen == 0 || hlen >= sizeof(h)) {
        return NULL;
    }
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    char *rb = strchr(h, ']');
    char *colon = strrchr(h, ':');
    if (colon != NULL && (rb == NULL || colon > rb)) {
        *colon = '\0';
    }
    for (char *p = h; *p != '\0'; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    if ((t = wm_tunnel_cluster->route("web", h, node, ncap)) != NULL) {
        snprintf(key, kcap, "%s", h);
        return t;
    }
    /* else the most specific holder we cannot reach, if any */
    snprintf(down, sizeof(down), "%s", node);
    snprintf(down_key, sizeof(down_key), "%s", h);
    for (const char *dot = strchr(h, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
        snprintf(key, kcap, "*%s", dot);
        if ((t = wm_tunnel_cluster->route("web", key, node, ncap)) != NULL) {
            return t;
        }
        if (down[0] == '\0') {
            snprintf(down, sizeof(down), "%s", node);
            snprintf(down_key, sizeof(down_key), "%s", key);
        }
    }
    snprintf(node, ncap, "%s", down);
    if (down[0] != '\0') {
        snprintf(key, kcap, "%s", down_key);
    }
    return NULL;
}

void wm_tunnel_withdraw(const char *ns, const char *key, const char *why)
{
    struct tserver *sv = wm_tnode != NULL ? wm_tnode->server : NULL;
    char k[WM_HOST_MAX + 8];

    for (struct tcarrier *c = sv != NULL ? sv->carriers : NULL; c != NULL; c = c->next) {
        for (size_t i = 0; i < c->nmaps; i++) {
            struct rmap *r = &c->maps[i];
            if (!r->active || strcmp(ns_key(r, k, sizeof(k)), ns) != 0 || strcmp(k, key) != 0) {
                continue;
            }
            tserver_route_set(sv, r, false); /* its public port stays open until the carrier goes */
            r->lost = true;
            wm_log(WM_LOG_WARN, wm_tun_id(c->t), "tunnel: client %s: mapping \"%s\" withdrawn: %s",
                   c->name, r->name, why);
        }
    }
}

/* Ports published for other nodes' routes (worker 0; a fixed table: the
 * cluster publishes at most WM_TUNNEL_PUBLISH_MAX of them). */
#define WM_TUNNEL_PUBLISH_MAX 256
static struct {
    struct tserver *sv; /* the server they were opened on */
    uint16_t port[WM_TUNNEL_PUBLISH_MAX];
    size_t n;
} published;

static void port_addr(const struct tserver *sv, uint16_t port, char *out, size_t cap)
{
    const char *ip = sv->n->s->port_ip;

    snprintf(out, cap, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
}

static bool listed(const uint16_t *ports, size_t n, uint16_t p)
{
    for (size_t i = 0; i < n; i++) {
        if (ports[i] == p) {
            return true;
        }
    }
    return false;
}

void wm_tunnel_publish_ports(const uint16_t *ports, size_t n)
{
    struct tserver *sv = wm_tnode != NULL ? wm_tnode->server : NULL;
    const uint8_t *allow = sv != NULL ? sv->n->s->allow_ports : NULL;
    char addr[WM_ADDR_STR_MAX];
    char err[256];
    size_t k = 0;

    if (published.sv != sv) {
        published.n = 0; /* that server and its ports are gone */
        published.sv = sv;
    }
    if (sv == NULL) {
        return;
    }
    for (size_t i = 0; i < published.n; i++) { /* close what is no longer listed */
        if (listed(ports, n, published.port[i])) {
            published.port[k++] = published.port[i];
        } else {
            port_addr(sv, published.port[i], addr, sizeof(addr));
            tserver_port_release(sv, addr);
        }
    }
    published.n = k;
    for (size_t i = 0; i < n && published.n < WM_TUNNEL_PUBLISH_MAX; i++) {
        if (ports[i] == 0 || listed(published.port, published.n, ports[i]) ||
            (allow != NULL && !(allow[ports[i] / 8] & (1u << (ports[i] % 8))))) {
            continue;
        }
        port_addr(sv, ports[i], addr, sizeof(addr));
        if (tserver_port_acquire(sv, addr, err, sizeof(err)) < 0) {
            wm_log(WM_LOG_WARN, 0, "cluster: cannot publish port %s held on another node: %s",
                   addr, err);
            continue;
        }
        published.port[published.n++] = ports[i];
    }
}
