/*
 * cluster/cluster_tls.c - Redis over TLS (rediss://) with Debian's hiredis
 * 0.14, which has no TLS of its own.
 *
 * hiredis speaks plain RESP on one end of a private AF_UNIX connection; the
 * other end is relayed (core/relay.h) to a TLS connection to Redis that our
 * dialer (net/dial.h: async resolution, every address tried) and OpenSSL
 * (net/tlspump.h: SNI, chain and name checked) make. The cryptography is
 * OpenSSL's TLS; nothing of it is ours.
 *
 * The AF_UNIX connection is made through a listening socket that exists
 * only during one function call, in a fresh mode-0700 directory: listen,
 * hiredis connects (a local connect completes at once), accept, then the
 * socket file and its directory are removed. The accepted peer must be
 * this very process (SO_PEERCRED), so no other local user or process can
 * borrow the TLS connection and its client certificate.
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "core/log.h"
#include "core/relay.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/dial.h"
#include "net/tls.h"

/* The last alert Redis sent (worker 0, where every Redis connection is). */
static _Thread_local char last_alert[96];

static void alert_cb(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    if ((where & SSL_CB_READ_ALERT) == 0) {
        return;
    }
    const char *desc = SSL_alert_desc_string_long(ret);
    if (strcmp(desc, "unknown") == 0) { /* TLS 1.3 ones OpenSSL does not name */
        desc = (ret & 0xff) == 116 ? "certificate required"
               : (ret & 0xff) == 109 ? "missing extension"
               : (ret & 0xff) == 120 ? "no application protocol"
                                     : "unknown";
    }
    snprintf(last_alert, sizeof(last_alert), "Redis sent TLS alert %d (%s, %s)", ret & 0xff,
             desc, SSL_alert_type_string_long(ret));
    wm_log((ret >> 8) == SSL3_AL_FATAL ? WM_LOG_WARN : WM_LOG_DEBUG, 0, "cluster: %s", last_alert);
}

void ctls_watch_alerts(SSL_CTX *ctx)
{
    SSL_CTX_set_info_callback(ctx, alert_cb);
}

struct ctls {
    struct cluster *cl;
    int ufd;                 /* our end of the AF_UNIX connection until the relay has it */
    struct wm_dial *dial;
    struct wm_relay *relay;
};

void ctls_free(struct ctls *t)
{
    if (t == NULL) {
        return;
    }
    if (t->dial != NULL) {
        wm_dial_cancel(t->dial);
    }
    if (t->relay != NULL) {
        struct wm_relay *r = t->relay;
        t->relay = NULL;
        t->cl = NULL; /* the done callback must not act */
        wm_relay_abort(r);
    }
    if (t->ufd >= 0) {
        close(t->ufd);
    }
    free(t);
}

static void relay_done(void *arg, const struct wm_relay_result *res)
{
    struct ctls *t = arg;
    struct cluster *cl = t->cl;

    t->relay = NULL;
    if (cl == NULL || cl->closing) {
        return;
    }
    if (res->end == WM_RELAY_END_ERR_B) {
        /* TLS failed: say why rather than hiredis' EOF */
        if (last_alert[0] != '\0') {
            wm_fmt(cl->last_error, sizeof(cl->last_error), "TLS to %s:%u: %s",
                   cl->s->redis_host, cl->s->redis_port, last_alert);
        } else {
            wm_fmt(cl->last_error, sizeof(cl->last_error), "TLS to %s:%u failed (handshake, "
                   "certificate or connection; see the log)", cl->s->redis_host,
                   cl->s->redis_port);
        }
        credis_lost(cl, cl->last_error); /* may free t */
    }
    /* otherwise hiredis reads the EOF on its end and reports the loss */
}

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                    socklen_t peerlen, void *arg)
{
    struct ctls *t = arg;
    struct cluster *cl = t->cl;
    struct event_base *base = wm_worker_base(cl->w);
    char where[WM_HOST_MAX + 8];

    (void)peer;
    (void)peerlen;
    t->dial = NULL;
    if (st != WM_DIAL_OK) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "connect to %s:%u: %s",
               cl->s->redis_host, cl->s->redis_port, wm_dial_status_str(st));
        credis_lost(cl, cl->last_error); /* frees t */
        return;
    }
    snprintf(where, sizeof(where), "redis %s:%u", cl->s->redis_host, cl->s->redis_port);
    struct bufferevent *tls = wm_tls_wrap(base, cl->s->redis_ctx, fd, false, cl->s->redis_host,
                                          where);
    struct bufferevent *u = bufferevent_socket_new(base, t->ufd, BEV_OPT_CLOSE_ON_FREE);
    if (u != NULL) {
        t->ufd = -1;
    }
    struct wm_relay_conf rc = {.idle_ms = 0, .high_water = 0};
    if (tls != NULL && u != NULL && (t->relay = wm_relay_start(base, u, tls, &rc, relay_done, t))) {
        return;
    }
    if (tls != NULL) {
        bufferevent_free(tls);
    }
    if (u != NULL) {
        bufferevent_free(u);
    }
    wm_fmt(cl->last_error, sizeof(cl->last_error), "TLS to %s:%u: cannot start (out of "
           "memory, or the host name is not usable for SNI)", cl->s->redis_host,
           cl->s->redis_port);
    credis_lost(cl, cl->last_error); /* frees t */
}

/* Is fd's peer this process? */
static bool peer_is_us(int fd)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);

    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 && uc.pid == getpid();
}

/* A hiredis context connected to our end *ufd of a private AF_UNIX
 * connection. NULL with why set. */
static redisAsyncContext *unix_pair(int *ufd, char *why, size_t cap)
{
    char dir[] = "/tmp/wmproxy-redis.XXXXXX";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    redisAsyncContext *ac = NULL;
    int lfd = -1;

    *ufd = -1;
    if (mkdtemp(dir) == NULL) {
        wm_fmt(why, cap, "private socket directory: %s", strerror(errno));
        return NULL;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); /* never waits */
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
        wm_fmt(why, cap, "private socket: %s", strerror(errno));
    } else if ((ac = redisAsyncConnectUnix(sa.sun_path)) == NULL || ac->err) {
        wm_fmt(why, cap, "%s", ac != NULL ? ac->errstr : "out of memory");
    } else if ((*ufd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0 ||
               !peer_is_us(*ufd)) {
        wm_fmt(why, cap, "private socket: %s", *ufd < 0 ? strerror(errno) : "foreign peer");
    } else {
        why = NULL;
    }
    if (lfd >= 0) {
        close(lfd);
    }
    unlink(sa.sun_path);
    rmdir(dir);
    if (why != NULL) {
        if (*ufd >= 0) {
            close(*ufd);
            *ufd = -1;
        }
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        return NULL;
    }
    return ac;
}

redisAsyncContext *ctls_connect(struct cluster *cl, struct ctls **link)
{
    struct ctls *t = calloc(1, sizeof(*t));
    redisAsyncContext *ac;

    *link = NULL;
    if (t == NULL) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "out of memory");
        return NULL;
    }
    t->cl = cl;
    t->ufd = -1;
    last_alert[0] = '\0';
    ac = unix_pair(&t->ufd, cl->last_error, sizeof(cl->last_error));
    if (ac == NULL) {
        ctls_free(t);
        return NULL;
    }
    t->dial = wm_dial_start(cl->w, cl->s->redis_host, cl->s->redis_port, cl->s->ttl_ms, dial_cb,
                            t);
    if (t->dial == NULL) {
        wm_fmt(cl->last_error, sizeof(cl->last_error), "out of memory");
        redisAsyncFree(ac);
        ctls_free(t);
        return NULL;
    }
    *link = t;
    return ac;
}
