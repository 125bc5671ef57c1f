/*
 * cluster/cluster_peer.c - carriers from this node to the other nodes: the
 * tunnel protocol (tunnel/mux.h) as a client with no mappings, user
 * "node:ID" and the cluster's node_password and/or our node certificate
 * (mutual TLS, cluster.h WM_CLUSTER_ALPN), dialed to the node's
 * advertised center address, kept up with backoff while that node holds
 * routes. Public connections for those routes are opened as streams on it.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"
#include "net/tls.h"
#include "tunnel/mux.h"
#include "tunnel/tunnel.h"

#define PEER_CONNECT_MS 5000

static void peer_connect(struct cpeer *p);

static void peer_retry(struct cpeer *p)
{
    cl_retry_later(p->retry_ev, &p->backoff_ms);
}

static void on_ready(struct wm_tun *t, void *arg)
{
    struct cpeer *p = arg;

    p->backoff_ms = CL_BACKOFF_MIN_MS;
    p->failed = false;
    wm_log(WM_LOG_INFO, wm_tun_id(t), "cluster: carrier to node %s (%s) ready (%s)", p->id,
           p->advertise, wm_tun_transport(t));
}

static void on_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                    void *arg)
{
    (void)t;
    (void)o;
    (void)arg;
    wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "a node carrier carries one way");
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    struct cpeer *p = arg;
    bool refused = wm_tun_was_refused(t);

    wm_log(WM_LOG_WARN, wm_tun_id(t), "cluster: carrier to node %s (%s) closed: %s%s", p->id,
           p->advertise, why, refused ? " (is node_password the same on every node? "
                                        "retrying in 15-30 s)" : "");
    p->t = NULL;
    p->failed = true;
    if (refused) {
        /* Retried every 2 s, a wrong password would put this node's address
         * on hold on every node within 20 s (10 failures a minute), also for
         * carriers to the nodes that take it. */
        p->backoff_ms = CL_PEER_REFUSED_MS;
    }
    peer_retry(p);
}

static const struct wm_tun_cbs peer_cbs = {
    .ready = on_ready,
    .open = on_open,
    .closed = on_closed,
};

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer, socklen_t plen,
                    void *arg)
{
    struct cpeer *p = arg;
    struct cluster *cl = p->cl;
    struct bufferevent *bev;
    struct wm_tun_conf tc;
    char user[CL_ID_MAX + 8];
    char ps[WM_ADDR_STR_MAX];

    (void)plen;
    p->dial = NULL;
    if (st != WM_DIAL_OK) {
        wm_log(WM_LOG_INFO, 0, "cluster: cannot reach node %s at %s: %s", p->id, p->advertise,
               wm_dial_status_str(st));
        p->failed = true;
        peer_retry(p);
        return;
    }
    wm_addr_format(peer, ps, sizeof(ps));
    if (!p->tls && cl->s->node_tls != NULL) {
        wm_log(WM_LOG_WARN, 0, "cluster: node %s's center (%s) does not speak TLS: mutual TLS "
               "between nodes (node_ca) needs tc = true on every node", p->id, p->advertise);
        close(fd);
        p->failed = true;
        peer_retry(p);
        return;
    }
    if (p->tls) {
        bev = wm_tls_wrap(wm_worker_base(cl->w), cl->s->peer_ctx, fd, false, NULL, ps);
    } else if ((bev = bufferevent_socket_new(wm_worker_base(cl->w), fd, BEV_OPT_CLOSE_ON_FREE)) ==
               NULL) {
        close(fd);
    }
    if (bev == NULL) {
        peer_retry(p);
        return;
    }
    snprintf(user, sizeof(user), "node:%s", cl->s->node_id);
    memset(&tc, 0, sizeof(tc));
    tc.role = WM_TUN_ROLE_CLIENT;
    tc.user = user;
    tc.pass = cl->s->node_password;
    tc.name = user;
    p->connects++;
    p->t = wm_tun_new(cl->w, bev, &tc, &peer_cbs, p, wm_log_next_id());
    if (p->t == NULL) {
        peer_retry(p);
    }
}

static void peer_connect(struct cpeer *p)
{
    char host[WM_HOST_MAX];
    uint16_t port;

    if (p->t != NULL || p->dial != NULL) {
        return;
    }
    if (wm_addr_split(p->advertise, strlen(p->advertise), host, sizeof(host), &port) < 0) {
        wm_log(WM_LOG_WARN, 0, "cluster: node %s advertises a bad address \"%s\"", p->id,
               p->advertise);
        peer_retry(p);
        return;
    }
    p->dial = wm_dial_start(p->cl->w, host, port, PEER_CONNECT_MS, dial_cb, p);
    if (p->dial == NULL) {
        peer_retry(p);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    peer_connect(arg);
}

static void peer_free(struct cpeer *p)
{
    if (p->dial != NULL) {
        wm_dial_cancel(p->dial);
    }
    if (p->t != NULL) {
        wm_tun_destroy(p->t);
    }
    if (p->retry_ev != NULL) {
        event_free(p->retry_ev);
    }
    free(p);
}

static struct cpeer *peer_find(struct cluster *cl, const char *id)
{
    for (struct cpeer *p = cl->peers; p != NULL; p = p->next) {
        if (strcmp(p->id, id) == 0) {
            return p;
        }
    }
    return NULL;
}

/* Every tcp route ":PORT" held by another node is published here too. */
static void publish_ports(struct cluster *cl)
{
    uint16_t ports[256];
    size_t n = 0;

    for (size_t i = 0; i < cl->nroutes && n < 256; i++) {
        const struct croute *r = &cl->routes[i];
        char *end;
        unsigned long p;
        if (strcmp(r->ns, "tcp") != 0 || r->key[0] != ':' ||
            strcmp(cl->nodes[r->node].id, cl->s->node_id) == 0) {
            continue;
        }
        p = strtoul(r->key + 1, &end, 10);
        if (*end == '\0' && p > 0 && p <= 65535) {
            ports[n++] = (uint16_t)p;
        }
    }
    wm_tunnel_publish_ports(ports, n);
}

void cpeer_sync(struct cluster *cl)
{
    publish_ports(cl);
    for (struct cpeer *p = cl->peers; p != NULL; p = p->next) {
        p->seen = false;
    }
    for (size_t i = 0; i < cl->nnodes; i++) {
        const struct cnode *n = &cl->nodes[i];
        struct cpeer *p;
        bool holds = false;
        for (size_t k = 0; k < cl->nroutes && !holds; k++) {
            holds = cl->routes[k].node == i;
        }
        if (!holds || strcmp(n->id, cl->s->node_id) == 0) {
            continue;
        }
        if ((p = peer_find(cl, n->id)) != NULL && strcmp(p->advertise, n->advertise) == 0 &&
            p->tls == n->tls) {
            p->seen = true;
            p->seen_ms = wm_now_ms();
            continue;
        }
        if (p == NULL) {
            if ((p = calloc(1, sizeof(*p))) == NULL ||
                (p->retry_ev = evtimer_new(wm_worker_base(cl->w), retry_cb, p)) == NULL) {
                free(p);
                continue;
            }
            p->cl = cl;
            p->backoff_ms = CL_BACKOFF_MIN_MS;
            snprintf(p->id, sizeof(p->id), "%s", n->id);
            p->next = cl->peers;
            cl->peers = p;
        } else if (p->t != NULL) {
            wm_tun_destroy(p->t); /* it moved: a new address */
            p->t = NULL;
        }
        snprintf(p->advertise, sizeof(p->advertise), "%s", n->advertise);
        p->tls = n->tls;
        p->seen = true;
        p->seen_ms = wm_now_ms();
        peer_connect(p);
    }
    /* Nodes that left (or hold nothing any more) for two ttl: their
     * carriers go (a node briefly missing, e.g. after a Redis restart,
     * keeps its carrier). */
    uint64_t now = wm_now_ms();
    for (struct cpeer **pp = &cl->peers; *pp != NULL;) {
        struct cpeer *p = *pp;
        if (p->seen || now - p->seen_ms < 2 * (uint64_t)cl->s->ttl_ms ||
            (p->t != NULL && wm_tun_nstreams(p->t) > 0)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        peer_free(p);
    }
}

struct wm_tun *cpeer_carrier(struct cluster *cl, const char *id)
{
    struct cpeer *p = peer_find(cl, id);

    return p != NULL && p->t != NULL && wm_tun_is_ready(p->t) ? p->t : NULL;
}

bool cpeer_down(struct cluster *cl, const char *id)
{
    struct cpeer *p = peer_find(cl, id);

    return p != NULL && p->failed && (p->t == NULL || !wm_tun_is_ready(p->t));
}

void cpeer_free_all(struct cluster *cl)
{
    while (cl->peers != NULL) {
        struct cpeer *p = cl->peers;
        cl->peers = p->next;
        peer_free(p);
    }
}

void cpeer_status_json(struct cluster *cl, struct evbuffer *out)
{
    size_t k = 0;

    evbuffer_add(out, "\"carriers\":[", 12);
    for (struct cpeer *p = cl->peers; p != NULL; p = p->next) {
        if (k++ > 0) {
            evbuffer_add(out, ",", 1);
        }
        evbuffer_add(out, "{\"node\":", 8);
        wm_json_string(out, p->id);
        evbuffer_add(out, ",\"addr\":", 8);
        wm_json_string(out, p->advertise);
        evbuffer_add_printf(out, ",\"state\":\"%s\",\"connects\":%llu,\"streams\":%zu}",
                            p->t != NULL && wm_tun_is_ready(p->t) ? "ready"
                            : p->t != NULL || p->dial != NULL     ? "connecting"
                                                                  : "down",
                            (unsigned long long)p->connects,
                            p->t != NULL ? wm_tun_nstreams(p->t) : (size_t)0);
    }
    evbuffer_add(out, "]", 1);
}
