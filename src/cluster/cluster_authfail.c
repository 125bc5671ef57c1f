/*
 * cluster/cluster_authfail.c - the failed-authentication slowdown
 * (core/authfail.h) counted across the cluster.
 *
 * Every node keeps deciding on its own table at once (no login waits for
 * Redis). A failure is then recorded in Redis by worker 0, one Lua script
 * per failure (one round trip): it counts the address's failures within
 * the window (wm:authfail:IP) and, at the limit, puts the address on hold
 * cluster-wide (wm:authhold:IP, PX the hold) and announces it on the
 * channel wm:authhold, so every node refuses the address from then on. The
 * reply also raises the node's own count to the cluster's (the delays grow
 * as on one node) and reports a hold this node missed. A success on an
 * address with failures forgets its count. While Redis is unreachable,
 * failures count on their node only: logged once every 10 s and counted.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "core/authfail.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"

/* KEYS: count, hold. ARGV: window ms, failures for a hold, hold ms, ip,
 * "1" when the node just held it itself. Returns {count, hold ms left}. */
static const char fail_lua[] =
    "local left = redis.call('PTTL', KEYS[2])\n"
    "if left > 0 then return {0, left} end\n"
    "local n = redis.call('INCR', KEYS[1])\n"
    "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
    "if n >= tonumber(ARGV[2]) or ARGV[5] == '1' then\n"
    "  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('PUBLISH', '" CL_AUTH_CHANNEL "', ARGV[4] .. '\\t' .. ARGV[3])\n"
    "  return {n, tonumber(ARGV[3])}\n"
    "end\n"
    "return {n, 0}\n";

struct fail_req {
    unsigned char ip[16];
    bool held;
    bool forgive;
};

static struct {
    uint64_t recorded;   /* failures stored in Redis */
    uint64_t unshared;   /* failures Redis did not take (unreachable) */
    uint64_t holds;      /* holds the cluster announced */
    uint64_t log_ms;
} af; /* worker 0 only */

static void fail_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    struct fail_req *q = priv;

    (void)ac;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
        af.recorded++;
        long long n = r->element[0]->integer;
        long long left = r->element[1]->integer;
        wm_authfail_learn(q->ip, n > 0 ? (unsigned)n : 0,
                          left > 0 ? (int)(left > INT32_MAX ? INT32_MAX : left) : 0);
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        wm_log(WM_LOG_WARN, 0, "cluster: redis failed-auth count failed: %s", r->str);
    }
    free(q);
}

static void unshared(const char *why)
{
    uint64_t now = wm_now_ms();

    af.unshared++;
    if (now - af.log_ms >= 10000) {
        af.log_ms = now;
        wm_log(WM_LOG_WARN, 0, "auth: failed authentications count on this node only: %s "
               "(%llu so far)", why, (unsigned long long)af.unshared);
    }
}

/* Worker 0: record the failure (or forget the address) in Redis. */
static void send_on_worker(struct wm_worker *w, void *arg)
{
    struct fail_req *q = arg;
    struct cluster *cl = wm_cluster_current;
    char ip[INET6_ADDRSTRLEN];
    char ck[INET6_ADDRSTRLEN + 16];
    char hk[INET6_ADDRSTRLEN + 16];
    char win[16];
    char after[16];
    char hold[16];

    (void)w;
    if (cl == NULL || !cl->up || cl->cmd == NULL) {
        if (!q->forgive) {
            unshared("the cluster store (Redis) is unreachable");
        }
        free(q);
        return;
    }
    inet_ntop(AF_INET6, q->ip, ip, sizeof(ip));
    snprintf(ck, sizeof(ck), "wm:authfail:%s", ip);
    if (q->forgive) {
        redisAsyncCommand(cl->cmd, NULL, NULL, "DEL %s", ck);
        free(q);
        return;
    }
    snprintf(hk, sizeof(hk), "wm:authhold:%s", ip);
    snprintf(win, sizeof(win), "%d", WM_AUTHFAIL_WINDOW_MS);
    snprintf(after, sizeof(after), "%d", WM_AUTHFAIL_BAN_AFTER);
    snprintf(hold, sizeof(hold), "%d", WM_AUTHFAIL_BAN_MS);
    if (redisAsyncCommand(cl->cmd, fail_cb, q, "EVAL %s 2 %s %s %s %s %s %s %s", fail_lua, ck,
                          hk, win, after, hold, ip, q->held ? "1" : "0") != REDIS_OK) {
        unshared("the command could not be sent");
        free(q);
    }
}

static void post(const unsigned char ip[16], bool held, bool forgive)
{
    struct fail_req *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return;
    }
    memcpy(q->ip, ip, 16);
    q->held = held;
    q->forgive = forgive;
    if (wm_worker_post(wm_worker_get(0), send_on_worker, q) < 0) {
        free(q);
    }
}

static void hook_failed(const unsigned char ip[16], bool held)
{
    post(ip, held, false);
}

static void hook_forgive(const unsigned char ip[16])
{
    post(ip, false, true);
}

static const struct wm_authfail_shared hooks = {.failed = hook_failed, .forgive = hook_forgive};

void cauth_install(bool on)
{
    wm_authfail_set_shared(on ? &hooks : NULL);
}

void cauth_announced(const char *msg, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 24];
    unsigned char ip[16];

    if (len >= sizeof(buf)) {
        return;
    }
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char *tab = strchr(buf, '\t');
    if (tab == NULL) {
        return;
    }
    *tab = '\0';
    long ms = strtol(tab + 1, NULL, 10);
    if (ms <= 0 || inet_pton(AF_INET6, buf, ip) != 1) {
        return;
    }
    af.holds++;
    wm_authfail_learn(ip, 0, (int)(ms > INT32_MAX ? INT32_MAX : ms));
}

void cauth_status_json(struct evbuffer *out)
{
    evbuffer_add_printf(out, "\"shared_authfail\":{\"recorded\":%llu,\"unshared\":%llu,"
                             "\"holds_announced\":%llu}",
                        (unsigned long long)af.recorded, (unsigned long long)af.unshared,
                        (unsigned long long)af.holds);
}
