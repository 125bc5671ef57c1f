/*
 * proxy/socks.c - SOCKS5 (RFC 1928 + RFC 1929) and SOCKS4/4a handshakes.
 * After a successful CONNECT the connection becomes a plain relay; bytes the
 * client sent early (request and data in one packet) stay in the input
 * buffer and are forwarded first by the relay.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/bev.h"
#include "core/authfail.h"
#include "core/log.h"
#include "net/dial.h"
#include "proxy/pconn.h"
#include "proxy/socks_proto.h"

/* A step handed the connection on (dial, UDP, reply-and-close). */
#define STEP_HANDED (-100)

enum socks5_state {
    S5_GREETING = 0, /* have nothing; await VER NMETHODS METHODS */
    S5_AUTH,         /* chose USERPASS; await RFC 1929 request */
    S5_REQUEST,      /* authenticated; await VER CMD RSV ATYP ADDR PORT */
    S5_DIALING,      /* request taken; dialing the target, client read paused */
};

/* Send a handshake reply. hold: the client already sent its next message
 * (it pipelines), so this reply can wait and leave with the next one: one
 * segment and one wake-up of the client instead of two. */
static void socks_send(struct wm_pconn *c, const uint8_t *msg, size_t n, bool hold)
{
    uint8_t buf[sizeof(c->held) + 32];

    if (hold && c->nheld + n <= sizeof(c->held)) {
        memcpy(c->held + c->nheld, msg, n);
        c->nheld = (uint8_t)(c->nheld + n);
        return;
    }
    if (c->nheld + n <= sizeof(buf)) {
        memcpy(buf, c->held, c->nheld);
        if (n > 0) {
            memcpy(buf + c->nheld, msg, n);
        }
        wm_bev_send_bytes(c->conn.bev, buf, c->nheld + n);
    } else {
        wm_bev_send_bytes(c->conn.bev, c->held, c->nheld);
        wm_bev_send_bytes(c->conn.bev, msg, n);
    }
    c->nheld = 0;
}

static void reply_and_close(struct wm_pconn *c, const uint8_t *msg, size_t n,
                            const char *reason)
{
    socks_send(c, msg, n, false);
    wm_conn_close_after_flush(&c->conn, reason);
}

static void socks5_fail(struct wm_pconn *c, uint8_t rep, const char *reason)
{
    uint8_t out[32];
    size_t n = wm_socks5_build_reply(out, rep, NULL);

    c->conn.code = rep;
    reply_and_close(c, out, n, reason);
}

static void socks5_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                           socklen_t peerlen, void *arg)
{
    struct wm_pconn *c = arg;
    uint8_t out[32];
    size_t n;

    (void)peer;
    (void)peerlen;
    c->conn.dial = NULL;
    if (st != WM_DIAL_OK) {
        uint8_t rep = (uint8_t)wm_pconn_socks5_rep(st);
        wm_log(WM_LOG_DEBUG, c->conn.id, "socks5 target=%s: %s", wm_conn_target(&c->conn), wm_dial_status_str(st));
        socks5_fail(c, rep, wm_dial_status_end(st));
        return;
    }
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0) {
        memset(&local, 0, sizeof(local));
    }
    n = wm_socks5_build_reply(out, WM_SOCKS5_REP_OK, (struct sockaddr *)&local);
    c->conn.code = WM_SOCKS5_REP_OK;
    socks_send(c, out, n, false);
    wm_conn_relay_fd(&c->conn, fd);
}

static void start_dial(struct wm_pconn *c, const struct wm_socks_addr *a,
                       void (*cb)(int, enum wm_dial_status, const struct sockaddr *, socklen_t,
                                  void *))
{
    /* Reading goes on (no epoll change): a client that leaves learns it
     * now, and early bytes wait in the input, bounded by the watermark;
     * the read loop leaves them alone while dialing. */
    bufferevent_setwatermark(c->conn.bev, EV_READ, 0, WM_SOCKS_EARLY_MAX);
    wm_conn_clear_timer(&c->conn); /* the dial has its own timeout */
    c->conn.dial = wm_pconn_dial(c, a->host, a->port, cb, c);
    if (c->conn.dial == NULL) {
        cb(-1, WM_DIAL_ERROR, NULL, 0, c);
    }
}

static void format_target(struct wm_pconn *c, const struct wm_socks_addr *a)
{
    char target[WM_HOST_MAX + 8];

    if (a->atyp == WM_SOCKS5_ATYP_IPV6) {
        snprintf(target, sizeof(target), "[%s]:%u", a->host, a->port);
    } else {
        snprintf(target, sizeof(target), "%s:%u", a->host, a->port);
    }
    wm_conn_set_target(&c->conn, target);
}

/* Each step takes one message in its state: returns bytes consumed, 0 for
 * more, STEP_HANDED if the connection was handed on or closed. */
static int s5_greeting(struct wm_pconn *c, const uint8_t *p, size_t n)
{
    bool none;
    bool up;
    uint8_t out[2] = {5, WM_SOCKS5_METHOD_REFUSED};
    int r = wm_socks5_parse_greeting(p, n, &none, &up);

    if (r <= 0) {
        return r;
    }
    if (!(c->opts->flags & WM_PROXY_FLAG_SOCKS5)) {
        reply_and_close(c, out, 2, "socks5-disabled");
        return STEP_HANDED;
    }
    if (c->opts->auth ? !up : !none) {
        /* With credentials configured, only USERPASS is acceptable. */
        c->conn.code = WM_SOCKS5_METHOD_REFUSED;
        reply_and_close(c, out, 2, "no-acceptable-method");
        return STEP_HANDED;
    }
    out[1] = c->opts->auth ? WM_SOCKS5_METHOD_USERPASS : WM_SOCKS5_METHOD_NONE;
    socks_send(c, out, 2, (size_t)r < n);
    c->state = c->opts->auth ? S5_AUTH : S5_REQUEST;
    return r;
}

static void auth_failed_cb(int fd, short what, void *arg)
{
    static const uint8_t out[2] = {1, 1};
    struct wm_pconn *c = arg;

    (void)fd;
    (void)what;
    reply_and_close(c, out, 2, "auth-failed");
}

static int s5_auth(struct wm_pconn *c, const uint8_t *p, size_t n)
{
    char user[256];
    char pass[256];
    size_t ulen;
    size_t plen;
    uint8_t out[2] = {1, 0};
    int r = wm_socks5_parse_userpass(p, n, user, &ulen, pass, &plen);
    const struct sockaddr *peer = (const struct sockaddr *)&c->conn.peer;
    bool ok;
    int delay;

    if (r <= 0) {
        return r;
    }
    wm_conn_set_user(&c->conn, user, ulen);
    if (c->conn.peerlen == 0) {
        peer = NULL; /* a tunnel stream: the far end throttles */
    }
    if (wm_authfail_check(peer) < 0) {
        explicit_bzero(pass, sizeof(pass));
        out[1] = 1;
        c->conn.code = 1;
        reply_and_close(c, out, 2, "auth-on-hold");
        return STEP_HANDED;
    }
    ok = wm_pconn_auth_ok(c, user, ulen, pass, plen);
    explicit_bzero(pass, sizeof(pass));
    delay = wm_authfail_record(peer, ok);
    if (!ok) {
        c->conn.code = 1;
        wm_log(WM_LOG_WARN, c->conn.id, "socks5 client=%s user=%s: wrong credentials",
               c->conn.peer_str, wm_conn_user(&c->conn));
        if (delay > 0) {
            /* answered later: a guesser waits, nothing more is read */
            bufferevent_disable(c->conn.bev, EV_READ);
            wm_conn_set_timer(&c->conn, delay, auth_failed_cb);
        } else {
            auth_failed_cb(-1, 0, c);
        }
        return STEP_HANDED;
    }
    socks_send(c, out, 2, (size_t)r < n);
    c->state = S5_REQUEST;
    return r;
}

static int s5_request(struct wm_pconn *c, const uint8_t *p, size_t n)
{
    uint8_t cmd;
    struct wm_socks_addr a;
    int r = wm_socks5_parse_request(p, n, &cmd, &a);

    if (r == WM_SOCKS_EATYP) {
        socks5_fail(c, WM_SOCKS5_REP_ATYP_UNSUPPORTED, "bad-address-type");
        return STEP_HANDED;
    }
    if (r <= 0) {
        return r;
    }
    format_target(c, &a);
    evbuffer_drain(bufferevent_get_input(c->conn.bev), (size_t)r);
    if (cmd == WM_SOCKS5_CMD_CONNECT) {
        c->state = S5_DIALING;
        start_dial(c, &a, socks5_dial_cb);
    } else if (cmd == WM_SOCKS5_CMD_UDP) {
        socks_send(c, NULL, 0, false); /* what is held goes before its reply */
        wm_pconn_set_proto(c, WM_PCONN_UDP);
        wm_socks5_udp_start(c, &a);
    } else {
        socks5_fail(c, WM_SOCKS5_REP_CMD_UNSUPPORTED, "command-not-supported");
    }
    return STEP_HANDED;
}

static int socks5_step(struct wm_pconn *c, const uint8_t *p, size_t n)
{
    switch ((enum socks5_state)c->state) {
    case S5_GREETING:
        return s5_greeting(c, p, n);
    case S5_AUTH:
        return s5_auth(c, p, n);
    case S5_REQUEST:
        return s5_request(c, p, n);
    case S5_DIALING:
        return 0;
    }
    return 0;
}

static void socks_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_pconn *c = arg;

    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->conn.dial != NULL) {
        /* A half-close right after a pipelined request: the early bytes
         * and the EOF belong to the target. Stop reading; the relay reads
         * the socket again once connected, sees the EOF and half-closes. */
        bufferevent_disable(bev, EV_READ);
        return;
    }
    wm_conn_finish(&c->conn, "client-closed");
}

/* Shared read loop: pull up what we have (bounded) and let step() eat
 * complete messages. */
static void socks_read_loop(struct wm_pconn *c, int (*step)(struct wm_pconn *, const uint8_t *,
                                                            size_t))
{
    struct evbuffer *in = bufferevent_get_input(c->conn.bev);

    if (c->conn.dial != NULL) {
        return; /* early data for the target: the relay sends it first */
    }
    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t take = len < WM_SOCKS_MAX_HANDSHAKE ? len : WM_SOCKS_MAX_HANDSHAKE;
        const uint8_t *p;
        int r;

        if (take == 0) {
            return;
        }
        p = evbuffer_pullup(in, (ev_ssize_t)take);
        r = step(c, p, take);
        if (r == STEP_HANDED) {
            return;
        }
        if (r < 0) {
            wm_log(WM_LOG_DEBUG, c->conn.id, "%s client=%s: malformed handshake",
                   c->proto == WM_PCONN_SOCKS4 ? "socks4" : "socks5", c->conn.peer_str);
            c->conn.code = -1;
            socks_send(c, NULL, 0, false); /* replies owed so far */
            wm_conn_finish(&c->conn, "malformed");
            return;
        }
        if (r == 0) {
            /* The next message is not complete: what is owed goes now (a
             * client may wait for it before sending the rest). */
            socks_send(c, NULL, 0, false);
            if (len >= WM_SOCKS_MAX_HANDSHAKE) {
                c->conn.code = -1;
                wm_conn_finish(&c->conn, "handshake-too-large");
            }
            return;
        }
        evbuffer_drain(in, (size_t)r);
    }
}

static void socks5_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    socks_read_loop(arg, socks5_step);
}

void wm_socks5_start(struct wm_pconn *c)
{
    c->state = S5_GREETING;
    bufferevent_setcb(c->conn.bev, socks5_read_cb, NULL, socks_event_cb, c);
    socks5_read_cb(c->conn.bev, c);
}

/* ---- SOCKS4 / 4a ---- */

static void socks4_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                           socklen_t peerlen, void *arg)
{
    struct wm_pconn *c = arg;
    uint8_t out[8];

    (void)peer;
    (void)peerlen;
    c->conn.dial = NULL;
    if (st != WM_DIAL_OK) {
        c->conn.code = WM_SOCKS4_REP_REJECTED;
        reply_and_close(c, out, wm_socks4_build_reply(out, WM_SOCKS4_REP_REJECTED),
                        wm_dial_status_end(st));
        return;
    }
    c->conn.code = WM_SOCKS4_REP_GRANTED;
    socks_send(c, out, wm_socks4_build_reply(out, WM_SOCKS4_REP_GRANTED), false);
    wm_conn_relay_fd(&c->conn, fd);
}

static int socks4_step(struct wm_pconn *c, const uint8_t *p, size_t n)
{
    uint8_t cmd;
    struct wm_socks_addr a;
    char user[256];
    uint8_t out[8];
    int r = wm_socks4_parse_request(p, n, &cmd, &a, user);

    if (r < 0) {
        /* SOCKS4 has one failure reply; a broken request still gets it. */
        c->conn.code = WM_SOCKS4_REP_REJECTED;
        reply_and_close(c, out, wm_socks4_build_reply(out, WM_SOCKS4_REP_REJECTED),
                        "malformed");
        return STEP_HANDED;
    }
    if (r == 0) {
        return 0;
    }
    wm_conn_set_user(&c->conn, user, strlen(user));
    format_target(c, &a);
    evbuffer_drain(bufferevent_get_input(c->conn.bev), (size_t)r);
    /* SOCKS4 carries no password: refuse it when credentials are required. */
    if (!(c->opts->flags & WM_PROXY_FLAG_SOCKS5) || c->opts->auth ||
        cmd != WM_SOCKS5_CMD_CONNECT) {
        c->conn.code = WM_SOCKS4_REP_REJECTED;
        reply_and_close(c, out, wm_socks4_build_reply(out, WM_SOCKS4_REP_REJECTED),
                        c->opts->auth ? "socks4-needs-auth" : "socks4-rejected");
        return STEP_HANDED;
    }
    start_dial(c, &a, socks4_dial_cb);
    return STEP_HANDED;
}

static void socks4_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    socks_read_loop(arg, socks4_step);
}

void wm_socks4_start(struct wm_pconn *c)
{
    bufferevent_setcb(c->conn.bev, socks4_read_cb, NULL, socks_event_cb, c);
    socks4_read_cb(c->conn.bev, c);
}
