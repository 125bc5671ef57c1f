/*
 * reverse/pool.c - idle keep-alive connections to upstream servers, one
 * pool per worker thread (no lock: a connection is only ever used on the
 * worker that made it), reused across client connections.
 *
 * An idle connection is watched: bytes or a close from the server, or its
 * idle time running out, free it at once. The pool is bounded per key
 * (the upstream's `keepalive`) and in total (WM_REV_POOL_MAX); the newest
 * connection of a key is taken first (the one most likely still warm).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "core/bev.h"
#include "reverse/rev_int.h"

#define WM_REV_POOL_MAX 4096
#define POOL_BUCKETS 64
#define POOL_KEY_MAX (WM_HOST_MAX + 80)
#define POOL_GROUPS_SWEEP 256 /* more groups than that: the empty ones go */

struct idle;

/* The idle connections of one key, newest first: a take is O(1), and so
 * is a put's check against the key's keepalive bound (a count, not a walk
 * over a bucket of up to `keepalive` entries comparing keys). An empty
 * group stays for the next put of its key, until a sweep. */
struct group {
    struct group *next;   /* in its bucket */
    struct idle *head;
    size_t count;
    char key[];
};

struct idle {
    struct idle *next;
    struct idle **pprev;
    struct group *g;
    struct bufferevent *bev;
};

struct pool {
    struct group *bucket[POOL_BUCKETS];
    size_t ngroups;
    size_t sweep_at; /* sweep when ngroups reaches it: twice what the last left */
    size_t total;
};

static __thread struct pool *pool_self;

static size_t bucket_of(const char *key)
{
    uint32_t h = 2166136261u;

    for (const char *p = key; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h % POOL_BUCKETS;
}

static struct group *find_group(const char *key)
{
    for (struct group *g = pool_self->bucket[bucket_of(key)]; g != NULL; g = g->next) {
        if (strcmp(g->key, key) == 0) {
            return g;
        }
    }
    return NULL;
}

/* Free the groups that hold no connection. */
static void sweep_groups(void)
{
    for (size_t i = 0; i < POOL_BUCKETS; i++) {
        struct group **pg = &pool_self->bucket[i];
        while (*pg != NULL) {
            struct group *g = *pg;
            if (g->count > 0) {
                pg = &g->next;
                continue;
            }
            *pg = g->next;
            free(g);
            pool_self->ngroups--;
        }
    }
}

static struct group *new_group(const char *key, size_t klen)
{
    struct group *g;
    size_t b = bucket_of(key);

    if (pool_self->ngroups >= pool_self->sweep_at) {
        sweep_groups(); /* not again before the live groups have doubled */
        pool_self->sweep_at = 2 * pool_self->ngroups > POOL_GROUPS_SWEEP
                                  ? 2 * pool_self->ngroups
                                  : POOL_GROUPS_SWEEP;
    }
    if ((g = calloc(1, sizeof(*g) + klen + 1)) == NULL) {
        return NULL;
    }
    memcpy(g->key, key, klen + 1);
    g->next = pool_self->bucket[b];
    pool_self->bucket[b] = g;
    pool_self->ngroups++;
    return g;
}

static void unlink_idle(struct idle *e)
{
    *e->pprev = e->next;
    if (e->next != NULL) {
        e->next->pprev = e->pprev;
    }
    e->g->count--;
    pool_self->total--;
}

static void drop(struct idle *e)
{
    unlink_idle(e);
    wm_bev_free(e->bev);
    free(e);
}

/* Anything on an idle connection (data, EOF, error, idle timeout) ends it. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    drop(arg);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    drop(arg);
}

struct bufferevent *rv_pool_take(const char *key)
{
    struct bufferevent *bev;
    struct group *g;
    struct idle *e;

    if (pool_self == NULL || (g = find_group(key)) == NULL || (e = g->head) == NULL) {
        return NULL;
    }
    unlink_idle(e);
    bev = e->bev;
    free(e);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    return bev;
}

void rv_pool_put(const char *key, struct bufferevent *bev, int max_per_key, uint64_t idle_ms)
{
    struct timeval tv = {(time_t)(idle_ms / 1000), (suseconds_t)(idle_ms % 1000) * 1000};
    size_t klen = strlen(key);
    struct group *g = NULL;
    struct idle *e = NULL;

    if (pool_self == NULL && (pool_self = calloc(1, sizeof(*pool_self))) != NULL) {
        pool_self->sweep_at = POOL_GROUPS_SWEEP;
    }
    if (pool_self == NULL || max_per_key <= 0 || pool_self->total >= WM_REV_POOL_MAX ||
        klen >= POOL_KEY_MAX || evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
        ((g = find_group(key)) == NULL && (g = new_group(key, klen)) == NULL) ||
        g->count >= (size_t)max_per_key || (e = calloc(1, sizeof(*e))) == NULL) {
        wm_bev_free(bev);
        return;
    }
    e->bev = bev;
    e->g = g;
    e->next = g->head;
    e->pprev = &g->head;
    if (g->head != NULL) {
        g->head->pprev = &e->next;
    }
    g->head = e;
    g->count++;
    pool_self->total++;
    bufferevent_setcb(bev, idle_read_cb, NULL, idle_event_cb, e);
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

void rv_pool_free_all(void)
{
    if (pool_self == NULL) {
        return;
    }
    for (size_t i = 0; i < POOL_BUCKETS; i++) {
        for (struct group *g = pool_self->bucket[i]; g != NULL; g = g->next) {
            while (g->head != NULL) {
                drop(g->head);
            }
        }
    }
    sweep_groups();
    free(pool_self);
    pool_self = NULL;
}
