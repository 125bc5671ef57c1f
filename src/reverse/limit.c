/*
 * reverse/limit.c - limit_req zones: a request rate per key (the client's
 * address unless the zone names another key), nginx's leaky bucket: each
 * key holds an excess that drains at the zone's rate; a request adds one;
 * above `burst` it is refused.
 *
 * A zone is shared by every worker and every generation of the settings
 * (a registry keyed by name, like the health records), so a reload keeps
 * the counts; its rate, size and cluster flags come with each request from
 * the generation that asks (a refused reload changes none of them). Its
 * memory is bounded by `limit=SIZE`: when the table is
 * full the key that was seen least recently is forgotten (logged once per
 * minute). One mutex per zone; the critical section is a hash lookup.
 * Keys come from clients (an IPv6 client picks its address within its
 * /64; {host} or {url} keys are any text): the hash is seeded per zone with
 * a secret and mixed, so nobody can choose keys that share one chain and
 * make every lookup walk the whole zone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "reverse/rev.h"
#include "reverse/rev_int.h"

#define KEY_MAX 64 /* stored; a longer key is told apart by its length and whole-key hash */
#define ONE 1000000u /* a request, in excess units */
#define ENTRY_BYTES 128 /* what one key costs, for limit=SIZE */

struct lentry {
    struct lentry *hnext;          /* hash chain */
    struct lentry *lru_prev;       /* least recently seen first */
    struct lentry *lru_next;
    uint64_t hash;
    uint64_t last_ms;
    uint64_t excess;               /* in 1/ONE requests */
    size_t klen;                   /* the whole key's (key[] holds at most KEY_MAX bytes) */
    char key[KEY_MAX];
};

struct rv_zone {
    int refs;                      /* registry lock */
    char name[64];
    struct rv_zone *next;
    pthread_mutex_t lock;
    size_t n;
    uint64_t seed;                 /* secret: the chains a key lands in are not known */
    struct lentry **buckets;
    size_t nbuckets;
    struct lentry *lru_head;
    struct lentry *lru_tail;
    uint64_t evicted;
    uint64_t last_evict_log_ms;
    wm_metric refused;             /* /metrics: requests refused by this zone */
};

static const struct wm_rev_shared_limit *shared_hook;

void wm_rev_set_shared_limit(const struct wm_rev_shared_limit *h)
{
    __atomic_store_n(&shared_hook, h, __ATOMIC_RELEASE);
}

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rv_zone *reg_head;

static void zone_free(struct rv_zone *z)
{
    for (struct lentry *e = z->lru_head; e != NULL;) {
        struct lentry *next = e->lru_next;
        free(e);
        e = next;
    }
    free(z->buckets);
    pthread_mutex_destroy(&z->lock);
    free(z);
}

/* Chains for max keys: about one key per chain. */
static size_t buckets_for(size_t max)
{
    size_t nb = 1024;

    while (nb < max && nb < (1u << 20)) {
        nb *= 2;
    }
    return nb;
}

size_t rv_zone_entries(uint64_t bytes)
{
    uint64_t max = bytes / ENTRY_BYTES;

    return max < 16 ? 16 : (max > SIZE_MAX ? SIZE_MAX : (size_t)max);
}

/* A reload raised limit=: more chains, or each lookup would walk
 * max / nbuckets keys. Under z->lock. On OOM the old chains stay. */
static void zone_grow(struct rv_zone *z, size_t max)
{
    size_t nb = buckets_for(max);
    struct lentry **b;

    if (nb <= z->nbuckets || (b = calloc(nb, sizeof(*b))) == NULL) {
        return;
    }
    for (struct lentry *e = z->lru_head; e != NULL; e = e->lru_next) {
        e->hnext = b[e->hash & (nb - 1)];
        b[e->hash & (nb - 1)] = e;
    }
    free(z->buckets);
    z->buckets = b;
    z->nbuckets = nb;
}

struct rv_zone *rv_zone_get(const char *name, uint64_t bytes)
{
    struct rv_zone *z;
    size_t max = rv_zone_entries(bytes);

    pthread_mutex_lock(&reg_lock);
    for (z = reg_head; z != NULL; z = z->next) {
        if (strcmp(z->name, name) == 0) {
            break;
        }
    }
    if (z != NULL) {
        z->refs++;
        pthread_mutex_lock(&z->lock);
        zone_grow(z, max); /* the counts stay; more chains harm no one */
        pthread_mutex_unlock(&z->lock);
    } else if ((z = calloc(1, sizeof(*z))) != NULL) {
        z->nbuckets = buckets_for(max);
        z->buckets = calloc(z->nbuckets, sizeof(*z->buckets));
        if (z->buckets == NULL) {
            free(z);
            z = NULL;
        } else {
            char lbl[160], v[128];
            snprintf(z->name, sizeof(z->name), "%s", name);
            snprintf(lbl, sizeof(lbl), "zone=\"%s\"", wm_metrics_label(v, sizeof(v), name, strlen(name)));
            z->refused = wm_metrics_counter("wmproxy_limit_req_refused_total",
                                            "Requests refused by a limit_req zone", lbl);
            z->refs = 1;
            z->seed = wm_random_u64();
            pthread_mutex_init(&z->lock, NULL);
            z->next = reg_head;
            reg_head = z;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return z;
}

void rv_zone_put(struct rv_zone *z)
{
    if (z == NULL) {
        return;
    }
    pthread_mutex_lock(&reg_lock);
    if (--z->refs == 0) {
        for (struct rv_zone **pp = &reg_head; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == z) {
                *pp = z->next;
                break;
            }
        }
        zone_free(z);
    }
    pthread_mutex_unlock(&reg_lock);
}

static uint64_t hash_key(const struct rv_zone *z, const char *k, size_t n)
{
    return wm_hash_seeded(z->seed, k, n);
}

static void lru_unlink(struct rv_zone *z, struct lentry *e)
{
    if (e->lru_prev != NULL) {
        e->lru_prev->lru_next = e->lru_next;
    } else {
        z->lru_head = e->lru_next;
    }
    if (e->lru_next != NULL) {
        e->lru_next->lru_prev = e->lru_prev;
    } else {
        z->lru_tail = e->lru_prev;
    }
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct rv_zone *z, struct lentry *e)
{
    e->lru_prev = z->lru_tail;
    e->lru_next = NULL;
    if (z->lru_tail != NULL) {
        z->lru_tail->lru_next = e;
    } else {
        z->lru_head = e;
    }
    z->lru_tail = e;
}

static void evict_oldest(struct rv_zone *z, size_t max, uint64_t now)
{
    struct lentry *e = z->lru_head;

    if (e == NULL) {
        return;
    }
    lru_unlink(z, e);
    for (struct lentry **pp = &z->buckets[e->hash & (z->nbuckets - 1)]; *pp != NULL;
         pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    }
    free(e);
    z->n--;
    z->evicted++;
    if (now - z->last_evict_log_ms >= 60000) {
        z->last_evict_log_ms = now;
        wm_log(WM_LOG_WARN, 0,
               "limit_req zone %s is full (%zu keys): forgetting the least recent ones "
               "(%llu so far); a larger limit= keeps more",
               z->name, max, (unsigned long long)z->evicted);
    }
}

static struct lentry *find_or_add(struct rv_zone *z, size_t max, const char *key, size_t n,
                                  uint64_t now)
{
    uint64_t h = hash_key(z, key, n);
    struct lentry **head = &z->buckets[h & (z->nbuckets - 1)];
    struct lentry *e;

    for (e = *head; e != NULL; e = e->hnext) {
        if (e->hash == h && e->klen == n && memcmp(e->key, key, n < KEY_MAX ? n : KEY_MAX) == 0) {
            lru_unlink(z, e);
            lru_push(z, e);
            return e;
        }
    }
    while (z->n >= max) {
        evict_oldest(z, max, now);
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->hash = h;
    e->last_ms = now;
    memcpy(e->key, key, n < KEY_MAX ? n : KEY_MAX);
    e->klen = n;
    head = &z->buckets[h & (z->nbuckets - 1)]; /* eviction may have changed the chain */
    e->hnext = *head;
    *head = e;
    lru_push(z, e);
    z->n++;
    return e;
}

bool rv_zone_allow(struct rv_zone *z, const struct rv_zone_conf *c, const char *key, size_t n,
                   uint64_t burst)
{
    uint64_t now;
    bool ok = true;
    struct lentry *e;

    const struct wm_rev_shared_limit *h = __atomic_load_n(&shared_hook, __ATOMIC_ACQUIRE);
    if (h != NULL && c->shared) { /* cluster */
        uint64_t milli = c->rate_micro / 1000;
        return h->allow(z->name, key, n, milli > 0 ? milli : 1, burst, c->on_error_allow);
    }
    pthread_mutex_lock(&z->lock);
    /* read under the lock: a time read before it may be older than the
     * key's last one (another worker took the lock first), and the
     * unsigned difference would drain the whole bucket */
    now = wm_now_ms();
    e = find_or_add(z, c->max_entries, key, n, now);
    if (e != NULL) {
        uint64_t el = now > e->last_ms ? now - e->last_ms : 0;
        unsigned __int128 drained = (unsigned __int128)el * c->rate_micro / 1000;
        e->excess = e->excess > drained ? e->excess - (uint64_t)drained : 0;
        e->last_ms = now;
        if (e->excess > (unsigned __int128)burst * ONE) {
            ok = false; /* a refused request adds nothing */
        } else {
            e->excess += ONE;
        }
    }
    pthread_mutex_unlock(&z->lock);
    if (!ok) {
        wm_metrics_inc(z->refused);
    }
    return ok;
}
