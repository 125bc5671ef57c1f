/*
 * reverse/upstream_pub.c - upstream groups for other services (see
 * reverse/upstream.h), built on the reverse proxy's own records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config_http.h"
#include "core/arena.h"
#include "net/addr.h"
#include "reverse/rev_int.h"
#include "reverse/upstream.h"

struct wm_upstream {
    struct wm_arena *arena;
    struct rv_upstream u;
};

static enum rv_balance balance_of(const char *s)
{
    static const char *const names[] = {"weight", "round_robin", "least_conn", "ip_hash",
                                        "random"};

    for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            return (enum rv_balance)i;
        }
    }
    return RV_BAL_WEIGHT;
}

_Static_assert(RV_BAL_RR == 1 && RV_BAL_RANDOM == 4, "balance names follow the enum");

static struct wm_upstream *group_new(const char *scope, const char *name, size_t n)
{
    struct wm_upstream *g = calloc(1, sizeof(*g));
    char full[256];

    if (g == NULL || (g->arena = wm_arena_new()) == NULL) {
        free(g);
        return NULL;
    }
    snprintf(full, sizeof(full), "%s:%s", scope, name);
    g->u.name = wm_arena_strdup(g->arena, full);
    g->u.servers = wm_arena_alloc(g->arena, (n ? n : 1) * sizeof(*g->u.servers));
    if (g->u.name == NULL || g->u.servers == NULL) {
        wm_upstream_free(g);
        return NULL;
    }
    memset(g->u.servers, 0, (n ? n : 1) * sizeof(*g->u.servers));
    return g;
}

/* The TCP check of health_check = {interval, timeout} for server cs. */
static void tcp_check(const struct wm_conf_health *ch, const struct wm_conf_upserver *cs,
                      struct rv_check *c)
{
    memset(c, 0, sizeof(*c));
    if (ch == NULL) {
        return;
    }
    c->on = true;
    c->tcp = true;
    c->interval_ms = ch->interval_ms > 0 ? ch->interval_ms : 5000;
    c->timeout_ms = ch->timeout_ms > 0 ? ch->timeout_ms : 2000;
    c->rise = cs->rise_times > 0 ? (int)cs->rise_times : 2;
    c->fall = cs->fall_times > 0 ? (int)cs->fall_times : 2;
}

struct wm_upstream *wm_upstream_new(const char *scope, const struct wm_conf_upstream *cu,
                                    char *msg, size_t cap)
{
    struct wm_upstream *g = group_new(scope, cu->name, cu->nservers);

    if (g == NULL) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    g->u.balance = balance_of(cu->balance);
    for (size_t i = 0; i < cu->nservers; i++) {
        struct rv_server *s = &g->u.servers[g->u.nservers];
        struct rv_check c;
        int r = rv_server_init(&g->u, s, &cu->servers[i]);
        if (r < 0) {
            snprintf(msg, cap, r == -1 ? "bad server address \"%s\"" : "out of memory%.0s",
                     cu->servers[i].addr);
            wm_upstream_free(g);
            return NULL;
        }
        tcp_check(cu->health, &cu->servers[i], &c);
        rv_health_set_check(s, &c);
        g->u.nservers++;
    }
    if (g->u.nservers == 0 || rv_rr_sequence(&g->u, g->arena) < 0) {
        snprintf(msg, cap, g->u.nservers == 0 ? "upstream has no server" : "out of memory");
        wm_upstream_free(g);
        return NULL;
    }
    return g;
}

struct wm_upstream *wm_upstream_single(const char *scope, const char *host, uint16_t port)
{
    char addr[WM_HOST_MAX + 8];
    struct wm_conf_upserver cs = {.addr = addr};
    struct wm_upstream *g;

    wm_addr_join(host, port, addr, sizeof(addr));
    g = group_new(scope, addr, 1);
    if (g == NULL) {
        return NULL;
    }
    if (rv_server_init(&g->u, &g->u.servers[0], &cs) < 0) {
        wm_upstream_free(g);
        return NULL;
    }
    g->u.nservers = 1;
    if (rv_rr_sequence(&g->u, g->arena) < 0) {
        wm_upstream_free(g);
        return NULL;
    }
    return g;
}

void wm_upstream_free(struct wm_upstream *g)
{
    if (g == NULL) {
        return;
    }
    for (size_t i = 0; i < g->u.nservers; i++) {
        rv_health_check_put(&g->u.servers[i]);
        rv_health_put(g->u.servers[i].h);
    }
    wm_arena_free(g->arena);
    free(g);
}

const char *wm_upstream_name(const struct wm_upstream *g)
{
    return g->u.name;
}

size_t wm_upstream_count(const struct wm_upstream *g)
{
    return g->u.nservers;
}

int wm_upstream_pick(struct wm_upstream *g, const struct sockaddr *client, uint64_t tried,
                     const char **host, uint16_t *port)
{
    struct rv_server *s = rv_upstream_pick(&g->u, client, tried);

    if (s == NULL) {
        return -1;
    }
    *host = s->host;
    *port = s->port;
    return (int)(s - g->u.servers);
}

void wm_upstream_failed(struct wm_upstream *g, int i, const char *why)
{
    rv_server_failed(&g->u, &g->u.servers[i], why);
}

void wm_upstream_ok(struct wm_upstream *g, int i)
{
    rv_server_ok(&g->u.servers[i]);
}

void wm_upstream_active(struct wm_upstream *g, int i, int delta)
{
    atomic_fetch_add(&g->u.servers[i].h->active, delta);
}

void wm_upstream_server(const struct wm_upstream *g, int i, const char **host, uint16_t *port)
{
    *host = g->u.servers[i].host;
    *port = g->u.servers[i].port;
}
