/*
 * tunnel/tmetrics.c - the tunnel in GET /metrics: carriers and their
 * clients, streams, bytes, heartbeat round trips, the center's gate
 * counters, and the client side's link to its parent. The tunnel lives on
 * worker 0, so the scrape runs there (wm_worker_call), like /status.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "core/limits.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "net/addr.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"
#include "tunnel/tunnel.h"

static void head(struct evbuffer *out, const char *name, enum wm_metric_type t, const char *help)
{
    wm_metrics_family_head(out, name, t, help);
}

static void center(struct evbuffer *out, const struct tserver *sv)
{
    const struct tcenter_stats *st = &sv->st;
    size_t ready = 0;

    for (const struct tcarrier *c = sv->carriers; c != NULL; c = c->next) {
        ready += c->ready;
    }
    head(out, "wmproxy_tunnel_carriers", WM_MT_GAUGE, "Client carriers attached and ready");
    evbuffer_add_printf(out, "wmproxy_tunnel_carriers %zu\n", ready);
    head(out, "wmproxy_tunnel_carriers_pending", WM_MT_GAUGE,
         "Carriers connected but not authenticated yet");
    evbuffer_add_printf(out, "wmproxy_tunnel_carriers_pending %zu\n", sv->npending);
    head(out, "wmproxy_tunnel_carriers_accepted_total", WM_MT_COUNTER,
         "Carrier connections taken in");
    evbuffer_add_printf(out, "wmproxy_tunnel_carriers_accepted_total %llu\n",
                        (unsigned long long)st->accepted);
    head(out, "wmproxy_tunnel_carrier_auth_total", WM_MT_COUNTER,
         "Carrier authentications by result");
    evbuffer_add_printf(out,
                        "wmproxy_tunnel_carrier_auth_total{result=\"ok\"} %llu\n"
                        "wmproxy_tunnel_carrier_auth_total{result=\"failed\"} %llu\n"
                        "wmproxy_tunnel_carrier_auth_total{result=\"anonymous\"} %llu\n",
                        (unsigned long long)st->auth_ok, (unsigned long long)st->auth_failed,
                        (unsigned long long)st->anonymous);
    head(out, "wmproxy_tunnel_carriers_refused_total", WM_MT_COUNTER,
         "Carriers closed at accept, by reason");
    evbuffer_add_printf(out,
                        "wmproxy_tunnel_carriers_refused_total{reason=\"too_many_pending\"} %llu\n"
                        "wmproxy_tunnel_carriers_refused_total{reason=\"on_hold\"} %llu\n",
                        (unsigned long long)st->refused_cap, (unsigned long long)st->refused_hold);
}

enum cfield { CF_CONNECTED, CF_STREAMS, CF_BYTES, CF_RTT, CF_MAPPINGS, CF_COUNT };

static void carrier_sample(struct evbuffer *out, const struct tcarrier *c, enum cfield f)
{
    char name[160], addr[160];
    struct wm_tun_counters k;

    wm_metrics_label(name, sizeof(name), wm_tun_peer_name(c->t), sizeof(name));
    wm_metrics_label(addr, sizeof(addr), c->peer, sizeof(c->peer));
    switch (f) {
    case CF_CONNECTED:
        evbuffer_add_printf(out, "wmproxy_tunnel_client_connected{client=\"%s\",addr=\"%s\"} 1\n",
                            name, addr);
        break;
    case CF_STREAMS:
        evbuffer_add_printf(out, "wmproxy_tunnel_client_streams{client=\"%s\",addr=\"%s\"} %zu\n",
                            name, addr, wm_tun_nstreams(c->t));
        break;
    case CF_BYTES:
        wm_tun_get_counters(c->t, &k);
        evbuffer_add_printf(out,
                            "wmproxy_tunnel_client_bytes_total{client=\"%s\",addr=\"%s\","
                            "direction=\"in\"} %llu\n"
                            "wmproxy_tunnel_client_bytes_total{client=\"%s\",addr=\"%s\","
                            "direction=\"out\"} %llu\n",
                            name, addr, (unsigned long long)k.bytes_in, name, addr,
                            (unsigned long long)k.bytes_out);
        break;
    case CF_RTT:
        if (wm_tun_rtt_ms(c->t) >= 0) {
            evbuffer_add_printf(out,
                                "wmproxy_tunnel_client_heartbeat_rtt_seconds{client=\"%s\",addr="
                                "\"%s\"} %.3f\n",
                                name, addr, (double)wm_tun_rtt_ms(c->t) / 1000.0);
        }
        break;
    case CF_MAPPINGS:
        for (size_t i = 0; i < c->nmaps; i++) {
            char m[160], r[160];
            if (!c->maps[i].active) {
                continue;
            }
            wm_metrics_label(m, sizeof(m), c->maps[i].name, sizeof(c->maps[i].name));
            wm_metrics_label(r, sizeof(r), c->maps[i].key, sizeof(c->maps[i].key));
            evbuffer_add_printf(out,
                                "wmproxy_tunnel_mapping_info{client=\"%s\",mapping=\"%s\",route="
                                "\"%s\"} 1\n",
                                name, m, r);
        }
        break;
    default:
        break;
    }
}

static void carriers(struct evbuffer *out, const struct tserver *sv)
{
    static const struct {
        const char *name;
        enum wm_metric_type type;
        const char *help;
    } fam[CF_COUNT] = {
        {"wmproxy_tunnel_client_connected", WM_MT_GAUGE, "1 per attached client carrier"},
        {"wmproxy_tunnel_client_streams", WM_MT_GAUGE, "Streams open on the client's carrier"},
        {"wmproxy_tunnel_client_bytes_total", WM_MT_COUNTER,
         "Carrier bytes of the client's current connection"},
        {"wmproxy_tunnel_client_heartbeat_rtt_seconds", WM_MT_GAUGE,
         "The last heartbeat's round trip"},
        {"wmproxy_tunnel_mapping_info", WM_MT_GAUGE,
         "Always 1: a mapping a client registered and its route"},
    };

    for (int f = 0; f < CF_COUNT; f++) {
        head(out, fam[f].name, fam[f].type, fam[f].help);
        for (const struct tcarrier *c = sv->carriers; c != NULL; c = c->next) {
            if (c->ready && c->t != NULL) {
                carrier_sample(out, c, (enum cfield)f);
            }
        }
    }
}

static void parent(struct evbuffer *out, struct tnode *n)
{
    struct wm_tun *t = tclient_carrier(n->client);

    head(out, "wmproxy_tunnel_parent_connected", WM_MT_GAUGE,
         "1 while the carrier to the tunnel server is up");
    evbuffer_add_printf(out, "wmproxy_tunnel_parent_connected %d\n", t != NULL ? 1 : 0);
    head(out, "wmproxy_tunnel_parent_connects_total", WM_MT_COUNTER,
         "Attempts to connect to the tunnel server (reconnects included)");
    evbuffer_add_printf(out, "wmproxy_tunnel_parent_connects_total %llu\n",
                        (unsigned long long)tclient_attempts(n->client));
    head(out, "wmproxy_tunnel_parent_streams", WM_MT_GAUGE, "Streams open to the server");
    evbuffer_add_printf(out, "wmproxy_tunnel_parent_streams %zu\n",
                        t != NULL ? wm_tun_nstreams(t) : 0);
    if (t != NULL && wm_tun_rtt_ms(t) >= 0) {
        head(out, "wmproxy_tunnel_parent_heartbeat_rtt_seconds", WM_MT_GAUGE,
             "The last heartbeat's round trip to the server");
        evbuffer_add_printf(out, "wmproxy_tunnel_parent_heartbeat_rtt_seconds %.3f\n",
                            (double)wm_tun_rtt_ms(t) / 1000.0);
    }
}

static void collect_on_worker(struct wm_worker *w, void *arg)
{
    struct evbuffer *out = arg;
    struct tnode *n = wm_tnode;

    (void)w;
    if (n == NULL) {
        return;
    }
    if (n->s->client && n->client != NULL) {
        parent(out, n);
    }
    if (n->server != NULL) {
        center(out, n->server);
        carriers(out, n->server);
    }
}

/* The client a mapping's bytes are counted for: the name it proved (a
 * [[proxy.clients]] entry, a node), else the name it gave in its hello (its
 * host name, as in wmproxy_tunnel_client_connected), else its IP address;
 * never its source port, which is new at each reconnect. */
static const char *bytes_client(const struct tcarrier *c, char *buf, size_t cap)
{
    const char *given = c->t != NULL ? wm_tun_peer_name(c->t) : "";

    if (c->user[0] != '\0' || c->node || strcmp(c->name, c->peer) != 0) {
        return c->name;
    }
    if (given[0] != '\0') {
        return given;
    }
    if (c->alen > 0) {
        return wm_addr_format_ip((const struct sockaddr *)&c->addr, buf, cap);
    }
    return "-";
}

void tmetrics_mapping(const struct tcarrier *carrier, const char *mapping, uint32_t *in,
                      uint32_t *out)
{
    static const char help[] = "Bytes of visitors through a mapping (in: from them)";
    char c[160], m[160], l[400], ip[WM_ADDR_STR_MAX];
    const char *client = bytes_client(carrier, ip, sizeof(ip));

    wm_metrics_label(c, sizeof(c), client, strlen(client));
    wm_metrics_label(m, sizeof(m), mapping, strlen(mapping));
    snprintf(l, sizeof(l), "client=\"%s\",mapping=\"%s\",direction=\"in\"", c, m);
    *in = wm_metrics_counter_max("wmproxy_tunnel_mapping_bytes_total", help, l,
                                 WM_TUNNEL_MAPPING_SERIES_MAX);
    snprintf(l, sizeof(l), "client=\"%s\",mapping=\"%s\",direction=\"out\"", c, m);
    *out = wm_metrics_counter_max("wmproxy_tunnel_mapping_bytes_total", help, l,
                                  WM_TUNNEL_MAPPING_SERIES_MAX);
}

void wm_tunnel_metrics_collect(struct evbuffer *out, void *arg)
{
    (void)arg;
    if (!wm_tnode_present()) {
        return;
    }
    wm_worker_call(wm_worker_get(0), collect_on_worker, out);
}
