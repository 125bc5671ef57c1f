/*
 * cluster/cluster_limit.c - shared limit_req zones (`shared=true` in a
 * [http.limit_req_zone] spec): one token bucket per zone and key in Redis,
 * taken from atomically by a Lua script (one round trip), at the zone's
 * rate with burst + 1 tokens of capacity.
 *
 * Requests are decided at once, on their own worker, from tokens this node
 * holds for the key: a request takes one; the first one without a token
 * goes on credit (one request per node and key at most), and the others are
 * refused until tokens come back. Whenever the node holds fewer than its
 * lease, worker 0 asks Redis for more (one request in flight per key). So
 * the cluster as a whole never passes more than the bucket hands out, plus
 * one request per node on credit; a node's unused tokens are at most one
 * lease. While Redis is unreachable every request gets the zone's
 * on_redis_error answer (allow by default), logged and counted.
 *
 * The table of keys is fixed (LIM_SLOTS, static: no allocation on the
 * request path); a full neighbourhood forgets its least recent key.
 */
#include <event2/buffer.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "reverse/rev.h"

#define LIM_SLOTS 4096
#define LIM_PROBE 16
#define LIM_ZONE 64
#define LIM_KEY 64

/* Take up to ARGV[3] tokens. KEYS[1]: the bucket. ARGV: rate (requests/s
 * x 1000), capacity (tokens x 1000), wanted tokens, TTL ms. Returns the
 * tokens granted. */
static const char take_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local h = redis.call('HMGET', KEYS[1], 'm', 'ts')\n"
    "local cap = tonumber(ARGV[2])\n"
    "local m = tonumber(h[1]) or cap\n"
    "local ts = tonumber(h[2]) or now\n"
    "if now > ts then m = math.min(cap, m + (now - ts) * tonumber(ARGV[1]) / 1000) end\n"
    "local got = math.min(tonumber(ARGV[3]), math.floor(m / 1000))\n"
    "m = m - got * 1000\n"
    "redis.call('HSET', KEYS[1], 'm', tostring(m), 'ts', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return got\n";

struct lslot {
    bool used;
    bool inflight;             /* a take is on its way to Redis */
    char zone[LIM_ZONE];
    char key[LIM_KEY];
    size_t klen;
    int64_t stock;             /* tokens held; -1: one request on credit */
    uint64_t last_ms;
};

static struct {
    pthread_mutex_t lock;
    bool up;                   /* Redis connected (worker 0 sets it) */
    uint64_t allowed;
    uint64_t refused;
    uint64_t fallback;         /* answered by on_redis_error */
    uint64_t takes;
    uint64_t fallback_log_ms;
    struct lslot s[LIM_SLOTS];
} lim = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* What worker 0 asks Redis for. */
struct take_req {
    char zone[LIM_ZONE];
    char key[LIM_KEY];
    size_t klen;
    int64_t want;
    uint64_t rate_milli;
    uint64_t burst;
};

/* Seeded (core/util.h wm_hash_seeded): keys come from clients, who must not
 * aim theirs at one probe window to push another key's count out. */
static uint64_t slot_hash(const char *zone, const char *key, size_t n)
{
    static uint64_t seed;

    if (seed == 0) { /* under lim.lock */
        seed = wm_random_u64() | 1;
    }
    return wm_mix64(wm_fnv1a(wm_hash_seeded(seed, zone, strlen(zone)), key, n));
}

static struct lslot *slot_find(const char *zone, const char *key, size_t n, bool add,
                               uint64_t now)
{
    size_t base = (size_t)(slot_hash(zone, key, n) % LIM_SLOTS);
    struct lslot *oldest = NULL;

    for (size_t i = 0; i < LIM_PROBE; i++) {
        struct lslot *s = &lim.s[(base + i) % LIM_SLOTS];
        if (s->used && s->klen == n && memcmp(s->key, key, n) == 0 &&
            strcmp(s->zone, zone) == 0) {
            return s;
        }
        if (!s->used || oldest == NULL || (oldest->used && s->last_ms < oldest->last_ms)) {
            oldest = s;
        }
    }
    if (!add) {
        return NULL;
    }
    memset(oldest, 0, sizeof(*oldest)); /* a full neighbourhood forgets its least recent */
    oldest->used = true;
    snprintf(oldest->zone, sizeof(oldest->zone), "%s", zone);
    memcpy(oldest->key, key, n);
    oldest->klen = n;
    oldest->last_ms = now;
    return oldest;
}

static void take_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    struct take_req *q = priv;

    (void)ac;
    pthread_mutex_lock(&lim.lock);
    struct lslot *s = slot_find(q->zone, q->key, q->klen, false, 0);
    if (s != NULL) {
        s->inflight = false;
        if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            s->stock += r->integer;
        }
    }
    lim.takes++;
    pthread_mutex_unlock(&lim.lock);
    free(q);
}

/* Worker 0: send a take, or give up (the slot may ask again). */
static void take_on_worker(struct wm_worker *w, void *arg)
{
    struct take_req *q = arg;
    struct cluster *cl = wm_cluster_current;
    char bk[LIM_ZONE + LIM_KEY + 16];
    char rate[24];
    char cap[24];
    char want[24];
    char ttl[24];

    (void)w;
    if (cl != NULL && cl->up && cl->cmd != NULL) {
        int n = snprintf(bk, sizeof(bk), "wm:limit:%s:", q->zone);
        memcpy(bk + n, q->key, q->klen);
        snprintf(rate, sizeof(rate), "%llu", (unsigned long long)q->rate_milli);
        snprintf(cap, sizeof(cap), "%llu", (unsigned long long)(q->burst + 1) * 1000);
        snprintf(want, sizeof(want), "%lld", (long long)q->want);
        /* the bucket is full again after (burst + 1) / rate: then it may go */
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)((q->burst + 1) * 1000000 / (q->rate_milli ? q->rate_milli : 1) +
                                      1000));
        if (redisAsyncCommand(cl->cmd, take_cb, q, "EVAL %s 1 %b %s %s %s %s", take_lua, bk,
                              (size_t)n + q->klen, rate, cap, want, ttl) == REDIS_OK) {
            return;
        }
    }
    take_cb(NULL, NULL, q);
}

static bool limit_allow(const char *zone, const char *key, size_t n, uint64_t rate_milli,
                        uint64_t burst, bool on_error_allow)
{
    uint64_t now = wm_now_ms();
    struct take_req *q = NULL;
    bool ok;

    if (n >= LIM_KEY) {
        n = LIM_KEY - 1;
    }
    pthread_mutex_lock(&lim.lock);
    if (!lim.up) {
        lim.fallback++;
        bool log = now - lim.fallback_log_ms >= 10000;
        if (log) {
            lim.fallback_log_ms = now;
        }
        uint64_t count = lim.fallback;
        pthread_mutex_unlock(&lim.lock);
        if (log) {
            wm_log(WM_LOG_WARN, 0, "limit_req zone %s: Redis is unreachable: requests are %s "
                   "(on_redis_error; %llu so far)", zone, on_error_allow ? "allowed" : "denied",
                   (unsigned long long)count);
        }
        return on_error_allow;
    }
    struct lslot *s = slot_find(zone, key, n, true, now);
    s->last_ms = now;
    ok = s->stock >= 0; /* stock 0: this one goes on credit */
    if (ok) {
        s->stock--;
        lim.allowed++;
    } else {
        lim.refused++;
    }
    /* lease: a twentieth of a second's worth, 1 to 100 tokens */
    int64_t lease = (int64_t)(rate_milli / 20000);
    lease = lease < 1 ? 1 : lease > 100 ? 100 : lease;
    if (!s->inflight && s->stock < lease && (q = malloc(sizeof(*q))) != NULL) {
        s->inflight = true;
        snprintf(q->zone, sizeof(q->zone), "%s", zone);
        memcpy(q->key, key, n);
        q->klen = n;
        q->want = lease - s->stock;
        q->rate_milli = rate_milli;
        q->burst = burst;
    }
    pthread_mutex_unlock(&lim.lock);
    if (q != NULL && wm_worker_post(wm_worker_get(0), take_on_worker, q) < 0) {
        take_cb(NULL, NULL, q);
    }
    return ok;
}

static const struct wm_rev_shared_limit limit_hook = {.allow = limit_allow};

void climit_install(bool on)
{
    wm_rev_set_shared_limit(on ? &limit_hook : NULL);
}

void climit_set_up(bool up)
{
    pthread_mutex_lock(&lim.lock);
    lim.up = up;
    pthread_mutex_unlock(&lim.lock);
}

void climit_status_json(struct evbuffer *out)
{
    pthread_mutex_lock(&lim.lock);
    evbuffer_add_printf(out, "\"shared_limits\":{\"allowed\":%llu,\"refused\":%llu,"
                             "\"on_redis_error\":%llu,\"takes\":%llu}",
                        (unsigned long long)lim.allowed, (unsigned long long)lim.refused,
                        (unsigned long long)lim.fallback, (unsigned long long)lim.takes);
    pthread_mutex_unlock(&lim.lock);
}
