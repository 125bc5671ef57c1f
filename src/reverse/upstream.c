/*
 * reverse/upstream.c - choosing an upstream server and remembering which
 * ones fail.
 *
 * Health records are shared by all workers and all generations of the
 * settings: a registry (one mutex, touched only when settings are built
 * or freed) maps "upstream|host:port" to a record of atomics, so a reload
 * keeps what was learnt. Passive checks: fall_times failures in a row
 * mark a server down for fail_timeout; after that it gets requests again
 * and one more failure takes it down again.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "core/log.h"
#include "core/util.h"
#include "reverse/rev_int.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rv_health *reg_head;

void rv_registry_lock(void)
{
    pthread_mutex_lock(&reg_lock);
}

void rv_registry_unlock(void)
{
    pthread_mutex_unlock(&reg_lock);
}

struct rv_health *rv_registry_head(void)
{
    return reg_head;
}

void rv_health_set_check(struct rv_server *s, const struct rv_check *c)
{
    struct rv_health *h = s->h;

    pthread_mutex_lock(&reg_lock);
    if (c->on && !s->checked) {
        s->check = *c;
        s->check_next = h->checkers;
        h->checkers = s;
        h->check = *c; /* the newest settings win */
        s->checked = true;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Settings without a check left it on for good once older settings had
 * one (a reload never switched it off, and a server it held down stayed
 * out), and a refused reload's check replaced the running one's: the
 * check is now the newest of the settings still alive that ask for one. */
void rv_health_check_put(struct rv_server *s)
{
    struct rv_health *h = s->h;

    if (!s->checked) {
        return;
    }
    pthread_mutex_lock(&reg_lock);
    for (struct rv_server **pp = &h->checkers; *pp != NULL; pp = &(*pp)->check_next) {
        if (*pp == s) {
            *pp = s->check_next;
            break;
        }
    }
    s->checked = false;
    if (h->checkers != NULL) {
        h->check = h->checkers->check;
    } else {
        h->check.on = false;
        atomic_store(&h->check_down, false);
    }
    pthread_mutex_unlock(&reg_lock);
}

struct rv_health *rv_health_get(const char *upname, const char *addr, const char *host,
                                uint16_t port)
{
    char key[sizeof(reg_head->key)];
    struct rv_health *h;

    snprintf(key, sizeof(key), "%s|%s", upname, addr);
    pthread_mutex_lock(&reg_lock);
    for (h = reg_head; h != NULL; h = h->next) {
        if (strcmp(h->key, key) == 0) {
            h->refs++;
            break;
        }
    }
    if (h == NULL && (h = calloc(1, sizeof(*h))) != NULL) {
        snprintf(h->key, sizeof(h->key), "%s", key);
        snprintf(h->host, sizeof(h->host), "%s", host);
        h->port = port;
        h->refs = 1;
        h->next = reg_head;
        reg_head = h;
    }
    pthread_mutex_unlock(&reg_lock);
    return h;
}

void rv_health_put(struct rv_health *h)
{
    if (h == NULL) {
        return;
    }
    pthread_mutex_lock(&reg_lock);
    if (--h->refs == 0) {
        for (struct rv_health **pp = &reg_head; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == h) {
                *pp = h->next;
                break;
            }
        }
        free(h);
    }
    pthread_mutex_unlock(&reg_lock);
}

static bool server_up(const struct rv_server *s, uint64_t now)
{
    return atomic_load_explicit(&s->h->down_until_ms, memory_order_relaxed) <= now &&
           !atomic_load_explicit(&s->h->check_down, memory_order_relaxed);
}

/* May index i serve this pick? The only server of an upstream is never out
 * for passive failures (as nginx: nothing to fail over to, and a 30 s 502
 * from two bad answers helps nobody); an active check still takes it out. */
static bool usable(const struct rv_upstream *u, size_t i, uint64_t tried, uint64_t now,
                   bool backups)
{
    const struct rv_server *s = &u->servers[i];

    return !(tried & (1ULL << (i % 64))) && s->backup == backups &&
           (u->nservers == 1 ? !atomic_load_explicit(&s->h->check_down, memory_order_relaxed)
                             : server_up(s, now));
}

static struct rv_server *pick_weighted(struct rv_upstream *u, uint64_t tried, uint64_t now,
                                       bool backups, bool equal)
{
    uint64_t total = 0;
    uint64_t r;

    for (size_t i = 0; i < u->nservers; i++) {
        if (usable(u, i, tried, now, backups)) {
            total += equal ? 1 : (uint64_t)u->servers[i].weight;
        }
    }
    if (total == 0) {
        return NULL;
    }
    r = wm_random_u64() % total;
    for (size_t i = 0; i < u->nservers; i++) {
        if (!usable(u, i, tried, now, backups)) {
            continue;
        }
        uint64_t w = equal ? 1 : (uint64_t)u->servers[i].weight;
        if (r < w) {
            return &u->servers[i];
        }
        r -= w;
    }
    return NULL;
}

static struct rv_server *pick_rr(struct rv_upstream *u, uint64_t tried, uint64_t now,
                                 bool backups)
{
    unsigned long start = atomic_fetch_add_explicit(u->rr_next, 1, memory_order_relaxed);

    /* the turns of servers that cannot serve are skipped, not given to the
     * next one in the order (that one got them all: weights 5:1:1 with the
     * 5 down went 5:2 instead of 1:1): the next pick starts past them */
    for (size_t k = 0; k < u->rr_len; k++) {
        size_t i = u->rr_seq[(start + k) % u->rr_len];
        if (usable(u, i, tried, now, backups)) {
            if (k > 0) {
                atomic_fetch_add_explicit(u->rr_next, k, memory_order_relaxed);
            }
            return &u->servers[i];
        }
    }
    return NULL;
}

static struct rv_server *pick_least(struct rv_upstream *u, uint64_t tried, uint64_t now,
                                    bool backups)
{
    struct rv_server *best = NULL;
    uint64_t best_score = UINT64_MAX;
    unsigned long start = atomic_fetch_add_explicit(u->rr_next, 1, memory_order_relaxed);

    /* active / weight, compared without division; ties go round-robin */
    for (size_t k = 0; k < u->nservers; k++) {
        size_t i = (start + k) % u->nservers;
        if (!usable(u, i, tried, now, backups)) {
            continue;
        }
        struct rv_server *s = &u->servers[i];
        uint64_t score = (uint64_t)atomic_load(&s->h->active) * 1000000 / (uint64_t)s->weight;
        if (score < best_score) {
            best_score = score;
            best = s;
        }
    }
    return best;
}

static uint64_t client_hash(const struct sockaddr *sa)
{
    const uint8_t *p = NULL;
    size_t n = 0;

    if (sa != NULL && sa->sa_family == AF_INET) {
        p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        n = 3; /* as nginx: the /24 */
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        p = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        n = 16;
    }
    return wm_fnv1a(WM_FNV_INIT, p, n);
}

static struct rv_server *pick_hash(struct rv_upstream *u, const struct sockaddr *client,
                                   uint64_t tried, uint64_t now, bool backups)
{
    uint64_t h = client_hash(client);
    uint64_t h2 = h;

    /* the same client keeps its server while it is up: clients spread as
     * the weights say (nginx). When it cannot serve, the client is hashed
     * again (20 times, as nginx) so the clients of a down server spread
     * over the others by weight (the next one in the order took them all,
     * twice its share); then the next one in the order. */
    for (int k = 0; k < 20; k++) {
        size_t i = u->rr_seq[h2 % u->rr_len];
        if (usable(u, i, tried, now, backups)) {
            return &u->servers[i];
        }
        h2 = wm_mix64(h2 + (uint64_t)k + 1);
    }
    for (size_t k = 0; k < u->rr_len; k++) {
        size_t i = u->rr_seq[(h + k) % u->rr_len];
        if (usable(u, i, tried, now, backups)) {
            return &u->servers[i];
        }
    }
    return NULL;
}

static struct rv_server *pick_among(struct rv_upstream *u, const struct sockaddr *client,
                                    uint64_t tried, uint64_t now, bool backups)
{
    switch (u->balance) {
    case RV_BAL_RR:
        return backups ? pick_weighted(u, tried, now, true, false) : pick_rr(u, tried, now, false);
    case RV_BAL_LEAST_CONN:
        return pick_least(u, tried, now, backups);
    case RV_BAL_IP_HASH:
        return pick_hash(u, client, tried, now, backups);
    case RV_BAL_RANDOM:
        return pick_weighted(u, tried, now, backups, true);
    case RV_BAL_WEIGHT:
        break;
    }
    return pick_weighted(u, tried, now, backups, false);
}

struct rv_server *rv_upstream_pick(struct rv_upstream *u, const struct sockaddr *client,
                                   uint64_t tried)
{
    uint64_t now = wm_now_ms();
    struct rv_server *s = pick_among(u, client, tried, now, false);

    return s != NULL ? s : pick_among(u, client, tried, now, true);
}

void rv_server_failed(struct rv_upstream *u, struct rv_server *s, const char *why)
{
    int n = atomic_fetch_add(&s->h->fails, 1) + 1;

    atomic_fetch_add(&s->h->total_fails, 1);
    if (n >= s->fall_times && u->nservers > 1) { /* see usable() */
        uint64_t until = wm_now_ms() + s->fail_timeout_ms;
        uint64_t was = atomic_exchange(&s->h->down_until_ms, until);
        /* the count stays (a good answer clears it): back from
         * fail_timeout, one more failure takes it out again (nginx) */
        if (was <= wm_now_ms()) {
            wm_log(WM_LOG_WARN, 0,
                   "upstream %s server %s marked down for %llu ms after %d failure(s): %s",
                   u->name, s->addr, (unsigned long long)s->fail_timeout_ms, n, why);
        }
    }
}

void rv_server_ok(struct rv_server *s)
{
    if (atomic_load_explicit(&s->h->fails, memory_order_relaxed) != 0) {
        atomic_store(&s->h->fails, 0);
    }
}
