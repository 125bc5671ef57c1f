/*
 * reverse/rconf_up.c - compiling upstreams: servers, balancing order,
 * health records (reverse/upstream.c), and the lookup of an upstream name
 * from a location.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/util.h"
#include "http/util.h"
#include "net/addr.h"
#include "reverse/rconf_int.h"

/* ---- upstreams ---- */

static enum rv_balance balance_of(const char *s)
{
    static const struct {
        const char *name;
        enum rv_balance b;
    } t[] = {{"round_robin", RV_BAL_RR}, {"least_conn", RV_BAL_LEAST_CONN},
             {"ip_hash", RV_BAL_IP_HASH}, {"random", RV_BAL_RANDOM}};

    for (size_t i = 0; s != NULL && i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i].name) == 0) {
            return t[i].b;
        }
    }
    return RV_BAL_WEIGHT;
}

/* nginx's smooth weighted round-robin, unrolled into a fixed order (weights
 * scaled down so one cycle stays short). */
int rv_rr_sequence(struct rv_upstream *u, struct wm_arena *a)
{
    uint64_t total = 0;
    int div = 1;
    size_t n = u->nservers;
    /* every server has its turns (it took the first 64 only) */
    int64_t *cur = calloc(n > 0 ? n : 1, sizeof(*cur));

    if (cur == NULL) {
        return -1;
    }

    for (size_t i = 0; i < n; i++) {
        total += (uint64_t)u->servers[i].weight;
    }
    while (total / (uint64_t)div > 4096) {
        div *= 2;
    }
    total = 0;
    for (size_t i = 0; i < n; i++) {
        total += (uint64_t)(u->servers[i].weight / div > 0 ? u->servers[i].weight / div : 1);
    }
    u->rr_seq = wm_arena_alloc(a, (total > 0 ? total : 1) * sizeof(*u->rr_seq));
    u->rr_next = wm_arena_alloc(a, sizeof(*u->rr_next));
    if (u->rr_seq == NULL || u->rr_next == NULL) {
        free(cur);
        return -1;
    }
    for (size_t k = 0; k < total; k++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            int w = u->servers[i].weight / div > 0 ? u->servers[i].weight / div : 1;
            cur[i] += w;
            if (cur[i] > cur[best]) {
                best = i;
            }
        }
        cur[best] -= (int64_t)total;
        u->rr_seq[k] = (uint16_t)best;
    }
    free(cur);
    u->rr_len = total;
    return 0;
}

int rv_server_init(const struct rv_upstream *u, struct rv_server *s,
                   const struct wm_conf_upserver *cs)
{
    if (wm_http_parse_authority(cs->addr, strlen(cs->addr), s->host, sizeof(s->host), &s->port,
                                0) < 0) {
        return -1;
    }
    snprintf(s->addr, sizeof(s->addr), "%s", cs->addr);
    s->weight = cs->weight > 0 ? (int)cs->weight : RV_WEIGHT;
    s->fail_timeout_ms = cs->fail_timeout_ms > 0 ? cs->fail_timeout_ms : RV_FAIL_TIMEOUT_MS;
    s->fall_times = cs->fall_times > 0 ? (int)cs->fall_times : RV_FALL_TIMES;
    s->backup = cs->backup;
    s->h = rv_health_get(u->name, s->addr, s->host, s->port);
    return s->h != NULL ? 0 : -2;
}

static int server_of(struct build *b, struct rv_upstream *u, struct rv_server *s,
                     const struct wm_conf_upserver *cs, const char *key)
{
    int r = rv_server_init(u, s, cs);

    if (r == -1) {
        return rconf_fail(b, key, "bad server address \"%s\"%s", cs->addr, "");
    }
    if (r < 0) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    return 0;
}

/* A health check's path or Host: printable, no space (it goes into the
 * probe's request head as it is). */
static bool check_word(const char *w)
{
    for (const unsigned char *p = (const unsigned char *)w; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

/* health_check = {path, interval, timeout, expect_status, host} for s. */
static int check_of(struct build *b, const struct wm_conf_health *ch,
                    const struct wm_conf_upserver *cs, const struct rv_server *s,
                    struct rv_check *c, const char *key)
{
    const char *exp = ch->expect_status != NULL ? ch->expect_status : "2xx 3xx";

    const char *path = ch->path != NULL ? ch->path : "/";
    const char *host = ch->host != NULL ? ch->host : s->addr;

    memset(c, 0, sizeof(*c));
    c->on = true;
    c->interval_ms = ch->interval_ms > 0 ? ch->interval_ms : 5000;
    c->timeout_ms = ch->timeout_ms > 0 ? ch->timeout_ms : 2000;
    c->rise = cs->rise_times > 0 ? (int)cs->rise_times : 2;
    c->fall = cs->fall_times > 0 ? (int)cs->fall_times : 2;
    /* both go into the probe's head as they are: whole, no space or control */
    if (path[0] != '/' || !check_word(path) || strlen(path) >= sizeof(c->path)) {
        return rconf_fail(b, key, "health_check.path: a path starting with / without spaces or "
                                  "control characters, shorter than 256 bytes (got \"%s\")%s",
                          path, "");
    }
    if (host[0] == '\0' || !check_word(host) || strlen(host) >= sizeof(c->host)) {
        return rconf_fail(b, key, "health_check.host: a host name without spaces or control "
                                  "characters, shorter than 256 bytes (got \"%s\")%s", host, "");
    }
    memcpy(c->path, path, strlen(path) + 1);
    memcpy(c->host, host, strlen(host) + 1);
    for (const char *p = exp; *p != '\0';) {
        char w[16];
        size_t n;
        p += strspn(p, " \t,");
        n = strcspn(p, " \t,");
        if (n == 0) {
            break;
        }
        wm_fmt(w, sizeof(w), "%.*s", (int)n, p);
        p += n;
        if (n == 3 && w[0] >= '1' && w[0] <= '5' && (w[1] == 'x' || w[1] == 'X') &&
            (w[2] == 'x' || w[2] == 'X')) {
            c->classes |= 1u << (w[0] - '0');
        } else if (n == 3 && atoi(w) >= 100 && atoi(w) <= 599 && c->ncodes < 8) {
            c->codes[c->ncodes++] = atoi(w);
        } else if (n == 3 && atoi(w) >= 100 && atoi(w) <= 599) {
            return rconf_fail(b, key, "health_check.expect_status: at most 8 codes (classes like "
                                      "\"2xx\" take the rest), got \"%s\"%s", w, "");
        } else {
            return rconf_fail(b, key, "health_check.expect_status: expected codes or classes "
                                      "like \"200 3xx\", got \"%s\"%s", w, "");
        }
    }
    if (c->classes == 0 && c->ncodes == 0) {
        /* no status would pass: every server would be taken out */
        return rconf_fail(b, key, "health_check.expect_status: names no status (got \"%s\"); "
                                  "leave it out for \"2xx 3xx\"%s", exp, "");
    }
    return 0;
}

static struct rv_upstream *upstream_new(struct build *b, const char *name, size_t n)
{
    struct rv_upstream *u = wm_arena_alloc(b->r->arena, sizeof(*u));

    if (u == NULL || rconf_track((void ***)&b->r->ups, &b->r->nups, u) < 0) {
        return NULL;
    }
    u->name = wm_arena_strdup(b->r->arena, name);
    u->servers = wm_arena_alloc(b->r->arena, (n ? n : 1) * sizeof(*u->servers));
    u->keepalive = RV_KEEPALIVE;
    u->keepalive_ms = RV_KEEPALIVE_MS;
    return u->servers != NULL ? u : NULL;
}

static struct rv_upstream *upstream_compile(struct build *b, const struct wm_conf_upstream *cu,
                                            const char *key)
{
    struct rv_upstream *u = upstream_new(b, cu->name, cu->nservers);

    if (u == NULL) {
        rconf_fail(b, key, "out of memory%s%s", "", "");
        return NULL;
    }
    u->balance = balance_of(cu->balance);
    if (cu->keepalive >= 0) {
        u->keepalive = (int)cu->keepalive;
    }
    if (cu->keepalive_timeout_ms > 0) {
        u->keepalive_ms = cu->keepalive_timeout_ms;
    }
    for (size_t i = 0; i < cu->nservers; i++) {
        char k[WM_ERR_KEY_MAX];
        wm_fmt(k, sizeof(k), "%s.server[%zu].addr", key, i);
        if (server_of(b, u, &u->servers[u->nservers], &cu->servers[i], k) < 0) {
            return NULL;
        }
        struct rv_check c = {0};
        if (cu->health != NULL &&
            check_of(b, cu->health, &cu->servers[i], &u->servers[u->nservers], &c, key) < 0) {
            rv_health_put(u->servers[u->nservers].h);
            return NULL;
        }
        rv_health_set_check(&u->servers[u->nservers], &c);
        u->nservers++;
    }
    if (u->nservers == 0) {
        rconf_fail(b, key, "upstream \"%s\" has no server%s", cu->name, "");
        return NULL;
    }
    if (rv_rr_sequence(u, b->r->arena) < 0) {
        rconf_fail(b, key, "out of memory%s%s", "", "");
        return NULL;
    }
    return u;
}

/* One server reached directly by a URL (no upstream of that name). */
struct rv_upstream *rconf_upstream_direct(struct build *b, const char *host, uint16_t port,
                                          const char *key)
{
    char addr[WM_HOST_MAX + 8];
    struct wm_conf_upserver cs = {.addr = addr};
    struct rv_upstream *u;

    wm_addr_join(host, port, addr, sizeof(addr));
    u = upstream_new(b, addr, 1);
    if (u == NULL || server_of(b, u, &u->servers[0], &cs, key) < 0) {
        return NULL;
    }
    u->nservers = 1;
    if (rv_rr_sequence(u, b->r->arena) < 0) {
        return NULL;
    }
    return u;
}

/* Upstream `name` as seen from a location: its own, its server's, then
 * [http]'s (wmproxy's order). Each entry is compiled once. NULL when no
 * level defines it (b->err untouched) or on failure (b->err set). */
struct rv_upstream *rconf_upstream_find(struct build *b, const char *name,
                                        const struct wm_conf_hcommon *const *levels,
                                        const char *const *lkeys, size_t nlevels)
{
    for (size_t l = 0; l < nlevels; l++) {
        const struct wm_conf_hcommon *c = levels[l];
        for (size_t i = 0; i < c->nupstreams; i++) {
            const struct wm_conf_upstream *cu = &c->upstreams[i];
            char k[WM_ERR_KEY_MAX];
            struct rv_upstream *u;
            if (strcmp(cu->name, name) != 0) {
                continue;
            }
            for (size_t j = 0; j < b->nseen; j++) {
                if (b->seen[j] == cu) {
                    return b->made[j];
                }
            }
            wm_fmt(k, sizeof(k), "%s.upstream[%zu]", lkeys[l], i);
            u = upstream_compile(b, cu, k);
            size_t ns = b->nseen;
            size_t nm = b->nseen;
            if (u == NULL || rconf_track((void ***)&b->seen, &ns, (void *)cu) < 0 ||
                rconf_track((void ***)&b->made, &nm, u) < 0) {
                if (u != NULL) {
                    rconf_fail(b, k, "out of memory%s%s", "", "");
                }
                return NULL;
            }
            b->nseen = ns;
            return u;
        }
    }
    return NULL;
}

