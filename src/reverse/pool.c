/*
 * reverse/pool.c - idle keep-alive connections to upstream servers, one
 * pool per worker thread (no lock: a connection is only ever used on the
 * worker that made it), reused across client connections.
 *
 * An idle connection is watched: bytes or a close from the server, or its
 * idle time running out, free it at once. The pool is bounded per key
 * (the upstream's `keepalive`) and in total (WM_REV_POOL_MAX).
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

struct idle {
    struct idle *next;
    struct idle **pprev;
    struct bufferevent *bev;
    size_t bucket;
    char key[WM_HOST_MAX + 80];
};

struct pool {
    struct idle *bucket[POOL_BUCKETS];
    size_t nbucket[POOL_BUCKETS]; /* entries per bucket: most puts need no key count */
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

static void unlink_idle(struct idle *e)
{
    *e->pprev = e->next;
    if (e->next != NULL) {
        e->next->pprev = e->pprev;
    }
    pool_self->nbucket[e->bucket]--;
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

    if (pool_self == NULL) {
        return NULL;
    }
    for (struct idle *e = pool_self->bucket[bucket_of(key)]; e != NULL; e = e->next) {
        if (strcmp(e->key, key) != 0) {
            continue;
        }
        unlink_idle(e);
        bev = e->bev;
        free(e);
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(bev, NULL, NULL);
        return bev;
    }
    return NULL;
}

/* Entries for key in the bucket, counted up to max only. */
static size_t count_key(struct idle *head, const char *key, size_t max)
{
    size_t n = 0;

    for (struct idle *e = head; e != NULL && n < max; e = e->next) {
        n += strcmp(e->key, key) == 0;
    }
    return n;
}

void rv_pool_put(const char *key, struct bufferevent *bev, int max_per_key, uint64_t idle_ms)
{
    struct idle **head;
    struct idle *e;
    struct timeval tv = {(time_t)(idle_ms / 1000), (suseconds_t)(idle_ms % 1000) * 1000};

    if (pool_self == NULL) {
        pool_self = calloc(1, sizeof(*pool_self));
    }
    if (pool_self == NULL || max_per_key <= 0 || pool_self->total >= WM_REV_POOL_MAX ||
        strlen(key) >= sizeof(e->key) ||
        evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
        wm_bev_free(bev);
        return;
    }
    size_t b = bucket_of(key);
    head = &pool_self->bucket[b];
    if ((pool_self->nbucket[b] >= (size_t)max_per_key &&
         count_key(*head, key, (size_t)max_per_key) >= (size_t)max_per_key) ||
        (e = calloc(1, sizeof(*e))) == NULL) {
        wm_bev_free(bev);
        return;
    }
    strcpy(e->key, key);
    e->bev = bev;
    e->bucket = b;
    pool_self->nbucket[b]++;
    e->next = *head;
    e->pprev = head;
    if (*head != NULL) {
        (*head)->pprev = &e->next;
    }
    *head = e;
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
        while (pool_self->bucket[i] != NULL) {
            drop(pool_self->bucket[i]);
        }
    }
    free(pool_self);
    pool_self = NULL;
}
