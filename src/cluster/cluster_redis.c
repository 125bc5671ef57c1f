/*
 * cluster/cluster_redis.c - the node's Redis connection (worker 0's event
 * base, cluster_ev.c): reconnect with backoff, heartbeat,
 * atomic claims (Lua), the route cache, and pub/sub invalidation.
 *
 * Keys (docs/cluster.md): wm:nodes (set of node ids), wm:node:ID
 * ("advertise\ttls", TTL), wm:routes:ID (hash "ns key" -> "group\tclient\t
 * mapping", TTL), wm:claim:NS:KEY ("node\tgroup\tclient\tmapping", TTL);
 * channel wm:events (a node id: its routes changed); channel wm:authhold
 * (cluster_authfail.c).
 */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"

#define CHANNEL "wm:events"

/* Claim ns/key for this node, or keep it (same node; or same group on
 * another node). Returns "" or the holder's value. KEYS: claim, routes.
 * ARGV: node, group, ttl, field, routes value, announce, claim value. */
static const char claim_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local n, g = string.match(v, '^([^\t]*)\t([^\t]*)')\n"
    "  if n ~= ARGV[1] and (ARGV[2] == '' or g ~= ARGV[2]) then return v end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], ARGV[7], 'PX', ARGV[3])\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
    "if ARGV[6] == '1' then redis.call('PUBLISH', '" CHANNEL "', ARGV[1]) end\n"
    "return ''\n";

/* Drop our claim (only if we hold it) and our route. KEYS: claim, routes.
 * ARGV: node, field. */
static const char release_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and string.match(v, '^([^\t]*)') == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "redis.call('PUBLISH', '" CHANNEL "', ARGV[1])\n"
    "return ''\n";

/* Every live node with its routes, in one round trip; forgets dead ones. */
static const char dump_lua[] =
    "local out = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', 'wm:nodes')) do\n"
    "  local adv = redis.call('GET', 'wm:node:' .. id)\n"
    "  if adv then\n"
    "    table.insert(out, id)\n"
    "    table.insert(out, adv)\n"
    "    table.insert(out, redis.call('HGETALL', 'wm:routes:' .. id))\n"
    "  else\n"
    "    redis.call('SREM', 'wm:nodes', id)\n"
    "  end\n"
    "end\n"
    "return out\n";

static void go_down(struct cluster *cl, const char *why);
static void refresh(struct cluster *cl);

/* Errors that say this connection cannot serve us any more (a master
 * demoted to a read-only replica by a failover, a restart with a password,
 * a Redis still loading): another connection may (a VIP or proxy that
 * moved to the new master), and until one does the node is down. */
static bool error_is_unusable(const char *e)
{
    static const char *const codes[] = {"READONLY ", "NOAUTH ", "LOADING ", "MASTERDOWN "};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (strncmp(e, codes[i], strlen(codes[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* Called from every command's callback: false for no reply or an error
 * (an unusable connection is dropped: go_down). */
static bool reply_ok(struct cluster *cl, redisReply *r, const char *what)
{
    if (r == NULL || cl == NULL || cl->closing) {
        return false;
    }
    cl->last_reply_ms = wm_now_ms();
    if (r->type == REDIS_REPLY_ERROR) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "%s: %s", what, r->str);
        if (cl->up && error_is_unusable(r->str)) {
            go_down(cl, cl->last_error); /* logs it */
        } else if (cl->up && (cl->err_log_ms == 0 || wm_now_ms() - cl->err_log_ms >= 60000)) {
            /* a Redis without EVAL (or in cluster mode) fails every
             * heartbeat: one line a minute, with a count */
            wm_log(WM_LOG_WARN, 0, "cluster: redis %s failed: %s (%llu more failed commands "
                   "since the last such line; one line a minute at most)", what, r->str,
                   (unsigned long long)cl->err_quiet);
            cl->err_log_ms = wm_now_ms();
            cl->err_quiet = 0;
        } else {
            /* while connecting, go_down() logs it once per outage */
            cl->err_quiet += cl->up;
            wm_log(WM_LOG_DEBUG, 0, "cluster: redis %s failed: %s", what, r->str);
        }
        return false;
    }
    return true;
}

/* ---- claims ---- */

struct claim_ref {
    char ns[8];
    char key[CL_KEY_MAX];
};

static void claim_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster *cl = ac->data;
    struct claim_ref *ref = priv;
    redisReply *r = reply;

    if (reply_ok(cl, r, "claim") && r->type == REDIS_REPLY_STRING) {
        for (struct cclaim *c = cl->claims; c != NULL; c = c->next) {
            if (strcmp(c->ns, ref->ns) != 0 || strcmp(c->key, ref->key) != 0) {
                continue;
            }
            if (r->len == 0) {
                c->stored = true;
                c->contested_until = 0;
            } else if (c->contested_until > wm_now_ms()) {
                c->stored = false; /* the dead holder's key has not expired yet */
            } else {
                char holder[CL_ID_MAX];
                snprintf(holder, sizeof(holder), "%.*s", (int)strcspn(r->str, "\t"), r->str);
                cluster_claim_lost(cl, c, holder);
            }
            break;
        }
    }
    free(ref);
}

void credis_claim(struct cluster *cl, struct cclaim *c, bool announce)
{
    char ck[CL_KEY_MAX + 32];
    char rk[CL_ID_MAX + 16];
    char field[CL_KEY_MAX + 16];
    char value[3 * CL_ID_MAX + 4];
    char cv[4 * CL_ID_MAX + 4];
    char ttl[24];
    struct claim_ref *ref;

    if (!cl->up || (ref = calloc(1, sizeof(*ref))) == NULL) {
        return; /* stored on the next heartbeat after the reconnect */
    }
    snprintf(ref->ns, sizeof(ref->ns), "%s", c->ns);
    snprintf(ref->key, sizeof(ref->key), "%s", c->key);
    snprintf(ck, sizeof(ck), "wm:claim:%s:%s", c->ns, c->key);
    snprintf(rk, sizeof(rk), "wm:routes:%s", cl->s->node_id);
    snprintf(field, sizeof(field), "%s %s", c->ns, c->key);
    snprintf(value, sizeof(value), "%s\t%s\t%s", c->group, c->client, c->mapping);
    snprintf(cv, sizeof(cv), "%s\t%s\t%s\t%s", cl->s->node_id, c->group, c->client, c->mapping);
    snprintf(ttl, sizeof(ttl), "%d", cl->s->ttl_ms);
    if (redisAsyncCommand(cl->cmd, claim_cb, ref, "EVAL %s 2 %s %s %s %s %s %s %s %s %s",
                          claim_lua, ck, rk, cl->s->node_id, c->group, ttl, field, value,
                          announce ? "1" : "0", cv) != REDIS_OK) {
        free(ref);
    }
}

static void ignore_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    reply_ok(ac->data, reply, priv);
}

void credis_release(struct cluster *cl, const struct cclaim *c)
{
    char ck[CL_KEY_MAX + 32];
    char rk[CL_ID_MAX + 16];
    char field[CL_KEY_MAX + 16];

    if (!cl->up) {
        return; /* its keys expire by themselves */
    }
    snprintf(ck, sizeof(ck), "wm:claim:%s:%s", c->ns, c->key);
    snprintf(rk, sizeof(rk), "wm:routes:%s", cl->s->node_id);
    snprintf(field, sizeof(field), "%s %s", c->ns, c->key);
    redisAsyncCommand(cl->cmd, ignore_cb, "release", "EVAL %s 2 %s %s %s %s", release_lua, ck,
                      rk, cl->s->node_id, field);
}

/* ---- the route cache ---- */

static void copy_field(char *dst, size_t cap, const char **p)
{
    size_t n = strcspn(*p, "\t");

    snprintf(dst, cap, "%.*s", (int)n, *p);
    *p += n + ((*p)[n] == '\t');
}

/* Just after a reconnect (a Redis restarted empty is refilled by each
 * node's next heartbeat), the nodes our cache knew but Redis does not list
 * yet keep their routes, for a ttl: known routes go on serving. */
static void carry_over(struct cluster *cl, struct cnode **nodes, size_t *nn,
                       struct croute **routes, size_t *nr)
{
    size_t addn = 0;
    size_t addr = 0;

    if (cl->cache_ms == 0 || wm_now_ms() - cl->up_since_ms > (uint64_t)cl->s->ttl_ms) {
        return;
    }
    for (size_t i = 0; i < cl->nnodes; i++) {
        bool listed = false;
        for (size_t j = 0; j < *nn && !listed; j++) {
            listed = strcmp((*nodes)[j].id, cl->nodes[i].id) == 0;
        }
        if (!listed) {
            addn++;
            for (size_t r = 0; r < cl->nroutes; r++) {
                addr += cl->routes[r].node == i;
            }
        }
    }
    if (addn == 0) {
        return;
    }
    struct cnode *n2 = realloc(*nodes, (*nn + addn) * sizeof(*n2));
    if (n2 == NULL) {
        return;
    }
    *nodes = n2;
    struct croute *r2 = realloc(*routes, (*nr + addr + 1) * sizeof(*r2));
    if (r2 == NULL) {
        return;
    }
    *routes = r2;
    for (size_t i = 0; i < cl->nnodes; i++) {
        bool listed = false;
        for (size_t j = 0; j < *nn && !listed; j++) {
            listed = strcmp(n2[j].id, cl->nodes[i].id) == 0;
        }
        if (listed) {
            continue;
        }
        n2[*nn] = cl->nodes[i];
        for (size_t r = 0; r < cl->nroutes; r++) {
            if (cl->routes[r].node == i) {
                r2[*nr] = cl->routes[r];
                r2[(*nr)++].node = *nn;
            }
        }
        (*nn)++;
    }
}

static void dump_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster *cl = ac->data;
    redisReply *r = reply;
    size_t nn = 0;
    size_t nr = 0;

    (void)priv;
    if (!reply_ok(cl, r, "route refresh") || r->type != REDIS_REPLY_ARRAY) {
        return;
    }
    for (size_t i = 0; i + 2 < r->elements; i += 3) {
        nn++;
        if (r->element[i + 2]->type == REDIS_REPLY_ARRAY) {
            nr += r->element[i + 2]->elements / 2;
        }
    }
    struct cnode *nodes = calloc(nn ? nn : 1, sizeof(*nodes));
    struct croute *routes = calloc(nr ? nr : 1, sizeof(*routes));
    if (nodes == NULL || routes == NULL) {
        free(nodes);
        free(routes);
        return;
    }
    size_t k = 0;
    for (size_t i = 0, n = 0; i + 2 < r->elements; i += 3, n++) {
        redisReply *id = r->element[i];
        redisReply *adv = r->element[i + 1];
        redisReply *rs = r->element[i + 2];
        if (id->type != REDIS_REPLY_STRING || adv->type != REDIS_REPLY_STRING) {
            continue;
        }
        snprintf(nodes[n].id, sizeof(nodes[n].id), "%s", id->str);
        const char *p = adv->str;
        copy_field(nodes[n].advertise, sizeof(nodes[n].advertise), &p);
        nodes[n].tls = *p == '1';
        for (size_t j = 0; rs->type == REDIS_REPLY_ARRAY && j + 1 < rs->elements; j += 2) {
            struct croute *ro = &routes[k];
            const char *f = rs->element[j]->str;
            const char *v = rs->element[j + 1]->str;
            size_t sp = f != NULL ? strcspn(f, " ") : 0;
            if (f == NULL || v == NULL || f[sp] != ' ' || sp >= sizeof(ro->ns)) {
                continue;
            }
            snprintf(ro->ns, sizeof(ro->ns), "%.*s", (int)sp, f);
            snprintf(ro->key, sizeof(ro->key), "%s", f + sp + 1);
            copy_field(ro->group, sizeof(ro->group), &v);
            copy_field(ro->client, sizeof(ro->client), &v);
            copy_field(ro->mapping, sizeof(ro->mapping), &v);
            ro->node = n;
            k++;
        }
    }
    carry_over(cl, &nodes, &nn, &routes, &k);
    free(cl->nodes);
    free(cl->routes);
    cl->nodes = nodes;
    cl->nnodes = nn;
    cl->routes = routes;
    cl->nroutes = k;
    cl->cache_ms = wm_now_ms();
    cl->refreshes++;
    cpeer_sync(cl);
}

static void refresh(struct cluster *cl)
{
    if (cl->up) {
        redisAsyncCommand(cl->cmd, dump_cb, NULL, "EVAL %s 0", dump_lua);
    }
}

/* ---- heartbeat ---- */

/* Store this node's key (wm:node:ID, "advertise\ttls", PX ttl). */
static void node_key(struct cluster *cl, redisCallbackFn *fn)
{
    char nk[CL_ID_MAX + 16];
    char val[WM_HOST_MAX + 16];

    snprintf(nk, sizeof(nk), "wm:node:%s", cl->s->node_id);
    snprintf(val, sizeof(val), "%s\t%d", cl->s->advertise, cl->s->center_tls ? 1 : 0);
    redisAsyncCommand(cl->cmd, fn, "node key", "SET %s %s PX %d", nk, val, cl->s->ttl_ms);
}

static void beat(struct cluster *cl, bool announce)
{
    if (!cl->up) {
        /* connected (or connecting) but our node key not taken yet */
        if (cl->cmd != NULL && wm_now_ms() - cl->dial_ms > (uint64_t)cl->s->ttl_ms) {
            go_down(cl, "Redis does not answer");
        }
        return;
    }
    if (wm_now_ms() - cl->last_reply_ms > (uint64_t)cl->s->ttl_ms) {
        go_down(cl, "Redis does not answer");
        return;
    }
    node_key(cl, ignore_cb);
    redisAsyncCommand(cl->cmd, ignore_cb, "node set", "SADD wm:nodes %s", cl->s->node_id);
    for (struct cclaim *c = cl->claims; c != NULL; c = c->next) {
        credis_claim(cl, c, false);
    }
    if (announce) {
        redisAsyncCommand(cl->cmd, ignore_cb, "publish", "PUBLISH " CHANNEL " %s",
                          cl->s->node_id);
    }
    refresh(cl);
}

static void beat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cluster *cl = arg;
    struct timeval tv = {0, 0};
    int ms = cl->s->ttl_ms / 3;

    (void)fd;
    (void)what;
    beat(cl, false);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(cl->beat_ev, &tv);
}

/* ---- connection ---- */

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster *cl = ac->data;
    redisReply *r = reply;

    (void)priv;
    if (r == NULL || cl == NULL || cl->closing || r->type != REDIS_REPLY_ARRAY ||
        r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }
    if (strcmp(r->element[0]->str, "message") != 0 ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING) {
        return;
    }
    if (strcmp(r->element[1]->str, CL_AUTH_CHANNEL) == 0) {
        cauth_announced(r->element[2]->str, r->element[2]->len); /* an address on hold */
    } else if (strcmp(r->element[2]->str, cl->s->node_id) != 0) {
        refresh(cl); /* another node's routes changed */
    }
}

static void auth_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster *cl = ac->data;

    if (reply != NULL && cl != NULL && !cl->closing && !reply_ok(cl, reply, priv)) {
        go_down(cl, cl->last_error);
    }
}

/* The first answer on the command connection (our node key, queued after
 * AUTH and SELECT): Redis is really there, past TLS and authentication,
 * and takes writes (a read-only replica refuses it). */
static void hello_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster *cl = ac->data;

    if (reply == NULL || cl == NULL || cl->closing || ac != cl->cmd) {
        return;
    }
    if (!reply_ok(cl, reply, priv)) {
        go_down(cl, cl->last_error);
        return;
    }
    bool first = cl->connects == 0;
    cl->up = true;
    cl->up_since_ms = wm_now_ms();
    climit_set_up(true);
    cl->connects++;
    cl->down_logged = false;
    wm_log(first ? WM_LOG_INFO : WM_LOG_WARN, 0, "cluster: redis %s:%u %s%s", cl->s->redis_host,
           cl->s->redis_port, first ? "connected" : "reconnected",
           cl->s->redis_ctx != NULL ? " (TLS)" : "");
    beat(cl, true);
}

/* Forget ac (being freed by hiredis) and the TLS link under it. */
static void forget_ctx(struct cluster *cl, const redisAsyncContext *ac)
{
    if (cl->cmd == ac) {
        cl->cmd = NULL;
        ctls_free(cl->cmd_tls);
        cl->cmd_tls = NULL;
    } else if (cl->sub == ac) {
        cl->sub = NULL;
        ctls_free(cl->sub_tls);
        cl->sub_tls = NULL;
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct cluster *cl = ac->data;

    if (cl == NULL || cl->closing) {
        return;
    }
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns */
        char why[sizeof(ac->c.errstr)]; /* ac->errstr is only a pointer to it */
        wm_fmt(why, sizeof(why), "%s", ac->errstr);
        forget_ctx(cl, ac);
        go_down(cl, why);
        return;
    }
    if (ac == cl->cmd) {
        node_key(cl, hello_cb);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct cluster *cl = ac->data;
    char why[sizeof(ac->c.errstr)];

    (void)status;
    if (cl == NULL || cl->closing || (cl->cmd != ac && cl->sub != ac)) {
        return; /* one we dropped ourselves */
    }
    wm_fmt(why, sizeof(why), "%s", cl->reply_refused     ? cl->last_error
                                   : ac->errstr[0] != '\0' ? ac->errstr
                                                           : "connection closed");
    cl->reply_refused = false;
    forget_ctx(cl, ac);
    go_down(cl, why);
}

/* A new context (sub: the subscriber); with TLS, *link carries it. */
static redisAsyncContext *open_ctx(struct cluster *cl, bool sub, struct ctls **link)
{
    redisAsyncContext *ac = cl->s->redis_ctx != NULL
                                ? ctls_connect(cl, link)
                                : redisAsyncConnect(cl->s->redis_host, cl->s->redis_port);

    if (ac == NULL) {
        return NULL;
    }
    if (ac->err) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = cl;
    if (cev_attach(ac, wm_worker_base(cl->w)) < 0) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "out of memory");
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    if (cl->s->redis_pass != NULL && cl->s->redis_user != NULL) {
        redisAsyncCommand(ac, auth_cb, "AUTH", "AUTH %s %s", cl->s->redis_user,
                          cl->s->redis_pass);
    } else if (cl->s->redis_pass != NULL) {
        redisAsyncCommand(ac, auth_cb, "AUTH", "AUTH %s", cl->s->redis_pass);
    }
    if (sub) {
        redisAsyncCommand(ac, sub_cb, NULL, "SUBSCRIBE " CHANNEL " " CL_AUTH_CHANNEL);
    } else if (cl->s->redis_db != 0) {
        redisAsyncCommand(ac, auth_cb, "SELECT", "SELECT %d", cl->s->redis_db);
    }
    return ac;
}

static void drop_ctx(struct cluster *cl)
{
    redisAsyncContext *a = cl->cmd;
    redisAsyncContext *b = cl->sub;

    cl->cmd = NULL;
    cl->sub = NULL;
    if (a != NULL) {
        redisAsyncFree(a);
    }
    if (b != NULL) {
        redisAsyncFree(b);
    }
    ctls_free(cl->cmd_tls);
    ctls_free(cl->sub_tls);
    cl->cmd_tls = NULL;
    cl->sub_tls = NULL;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cluster *cl = arg;

    (void)fd;
    (void)what;
    cl->dial_ms = wm_now_ms();
    cl->cmd = open_ctx(cl, false, &cl->cmd_tls);
    cl->sub = cl->cmd != NULL ? open_ctx(cl, true, &cl->sub_tls) : NULL;
    if (cl->cmd == NULL || cl->sub == NULL) {
        go_down(cl, cl->last_error[0] ? cl->last_error : "cannot create a connection");
    }
}

void credis_lost(struct cluster *cl, const char *why)
{
    go_down(cl, why);
}

static void go_down(struct cluster *cl, const char *why)
{
    if (cl->closing) {
        return;
    }
    if (why != cl->last_error) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "%s", why);
    }
    if (cl->up) {
        cl->disconnects++;
        if (wm_now_ms() - cl->up_since_ms >= CL_STABLE_MS) {
            /* a Redis that accepts and drops us at once (flapping) is
             * retried ever later, and logged as rarely */
            cl->backoff_ms = CL_BACKOFF_MIN_MS;
        }
        wm_log(WM_LOG_WARN, 0, "cluster: redis %s:%u lost (%s): serving known routes from the "
               "cache, new routes refused until it is back", cl->s->redis_host,
               cl->s->redis_port, cl->last_error);
    } else if (!cl->down_logged) {
        wm_log(WM_LOG_WARN, 0, "cluster: redis %s:%u unreachable (%s): new routes refused "
               "until it answers; retrying", cl->s->redis_host, cl->s->redis_port,
               cl->last_error);
    } else if (!evtimer_pending(cl->retry_ev, NULL)) {
        wm_log(WM_LOG_DEBUG, 0, "cluster: redis %s:%u: %s", cl->s->redis_host,
               cl->s->redis_port, cl->last_error);
    }
    cl->down_logged = true;
    cl->up = false;
    climit_set_up(false);
    cl->closing = true; /* the callbacks of the contexts we drop do nothing */
    drop_ctx(cl);
    cl->closing = false;
    cl->reply_refused = false;
    if (evtimer_pending(cl->retry_ev, NULL)) {
        return;
    }
    cl_retry_later(cl->retry_ev, &cl->backoff_ms);
}

void credis_start(struct cluster *cl)
{
    struct event_base *base = wm_worker_base(cl->w);

    cl->retry_ev = evtimer_new(base, retry_cb, cl);
    cl->beat_ev = evtimer_new(base, beat_cb, cl);
    if (cl->retry_ev == NULL || cl->beat_ev == NULL) {
        return;
    }
    beat_cb(-1, 0, cl); /* arms the heartbeat (nothing to send yet) */
    retry_cb(-1, 0, cl);
}

void credis_stop(struct cluster *cl)
{
    cl->closing = true;
    drop_ctx(cl);
    if (cl->retry_ev != NULL) {
        event_free(cl->retry_ev);
    }
    if (cl->beat_ev != NULL) {
        event_free(cl->beat_ev);
    }
    cl->retry_ev = NULL;
    cl->beat_ev = NULL;
}
