/*
 * stream/tcp.c - a TCP client of a [stream] server: optional PROXY header
 * in, the WebSocket handshake of ws2tcp, the dial to the upstream (the
 * next server on failure), then the relay: spliced when both ends are
 * plain sockets, through the WebSocket pump (wsbridge.c) for the bridges.
 *
 * States (one read callback each, a timer armed for every wait):
 *   PP    - accept_proxy_protocol: awaiting the PROXY header
 *   HS    - ws2tcp: awaiting the client's upgrade request
 *   DIAL  - connecting to an upstream server
 *   UPHS  - tcp2ws(s): our upgrade request sent, awaiting 101
 *   RELAY - bytes flow (relay, splice or WebSocket pump)
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/head.h"
#include "http/parser.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/proxyproto.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "reverse/upstream.h"
#include "stream/stream.h"
#include "stream/stream_int.h"
#include "stream/wsbridge.h"
#include "stream/ws.h"

enum st_state { ST_S_PP, ST_S_TLS, ST_S_HS, ST_S_DIAL, ST_S_UPHS, ST_S_RELAY, ST_S_COUNT };

struct st_conn {
    struct wm_conn conn; /* first: net/conn.h */
    const struct st_server *srv;
    enum st_state state;
    struct wm_upstream *up;
    uint64_t tried;
    int idx;             /* the upstream server, -1 none */
    bool counted;        /* its active count holds this connection */
    char key[WM_WS_ACCEPT_LEN + 1]; /* ws2tcp: our accept; tcp2ws: the one expected */
    struct wm_http_parser *hp;
    struct bufferevent *up_bev; /* tcp2ws(s) during UPHS */
    bool tls;            /* bind_ssl with accept_pp: a plain socket until the header ends */
    bool client_eof;     /* the client's EOF came while we dialed */
};

static void dial_next(struct st_conn *c);
static void start(struct st_conn *c);
static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);

static void conn_free(struct wm_conn *wc)
{
    struct st_conn *c = (struct st_conn *)wc;

    if (c->counted) {
        wm_upstream_active(c->up, c->idx, -1);
    }
    wm_http_parser_free(c->hp);
    wm_bev_free(c->up_bev);
    st_ws_free(wc->proto_data);
}

static void set_state(struct st_conn *c, enum st_state s)
{
    static const char *const names[ST_S_COUNT] = {"pp",   "tls-handshake", "handshake",
                                                  "dial", "upstream-handshake", "relay"};
    wm_log(WM_LOG_DEBUG, c->conn.id, "stream state %s -> %s", names[c->state], names[s]);
    c->state = s;
}

static void head_timeout_cb(int fd, short what, void *arg)
{
    struct st_conn *c = arg;

    (void)fd;
    (void)what;
    wm_conn_enter(&c->conn);
    wm_conn_finish(&c->conn, c->state == ST_S_PP ? "proxy-header-timeout" : "handshake-timeout");
    wm_conn_leave(&c->conn);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct st_conn *c = arg;

    wm_conn_enter(&c->conn);
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == ST_S_TLS) {
            start(c); /* the client's TLS handshake is over (tls_start) */
        }
    } else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        (c->state == ST_S_DIAL || c->state == ST_S_UPHS)) {
        /* half-close before the upstream answered: a socket reports the
         * EOF again once the relay reads, a TLS pump does not (relay_eof) */
        c->client_eof = true;
        bufferevent_disable(bev, EV_READ);
    } else {
        /* an error: a reset, or (bind_ssl) a failed or timed-out TLS
         * handshake (the TLS line before says which) */
        wm_conn_finish(&c->conn, !(what & BEV_EVENT_ERROR) ? "client-closed"
                                 : c->state == ST_S_TLS    ? "tls-handshake-failed"
                                                           : "error-client");
    }
    wm_conn_leave(&c->conn);
}

/* An HTTP answer to a bad upgrade request, then close. */
static void answer(struct st_conn *c, const char *status, const char *extra, const char *why)
{
    wm_log(WM_LOG_INFO, c->conn.id, "ws2tcp client=%s refused: %s", c->conn.peer_str, why);
    c->conn.code = atoi(status);
    evbuffer_add_printf(bufferevent_get_output(c->conn.bev),
                        "HTTP/1.1 %s\r\n%sConnection: close\r\nContent-Length: 0\r\n\r\n", status,
                        extra);
    wm_conn_close_after_flush(&c->conn, "bad-handshake"); /* end= is a token; why is above */
}

/* After the PROXY header (or without one): handshake or dial. */
static void start(struct st_conn *c)
{
    if (c->srv->mode == ST_WS2TCP) {
        set_state(c, ST_S_HS);
        c->hp = wm_http_parser_new(WM_HTTP_REQUEST, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
        if (c->hp == NULL) {
            wm_conn_finish(&c->conn, "out-of-memory");
            return;
        }
        wm_conn_set_timer(&c->conn, WM_STREAM_HEAD_MS, head_timeout_cb);
        bufferevent_trigger(c->conn.bev, EV_READ, 0);
        return;
    }
    wm_conn_clear_timer(&c->conn);
    dial_next(c);
}

/* bind_ssl: nothing is done for the client (no upstream dialed) before
 * its TLS handshake is over; the pump's handshake timeout bounds the wait,
 * and a failed handshake ends the connection (client_event_cb). */
static void tls_start(struct st_conn *c)
{
    set_state(c, ST_S_TLS);
    if (wm_tls_pump_notify_ready(c->conn.bev) < 0) {
        start(c);
    }
}

/* A PROXY header towards the upstream naming the connection's own ends:
 * the client's address and ours. */
static int own_origin(struct st_conn *c, int fd)
{
    struct sockaddr_storage local;
    socklen_t ll = sizeof(local);
    bool have = getsockname(fd, (struct sockaddr *)&local, &ll) == 0;

    return wm_conn_set_origin(&c->conn, &c->conn.peer.sa, have ? (struct sockaddr *)&local : NULL,
                              c->srv->pp_version);
}

/* bind_ssl: the PROXY header comes before the TLS handshake (as HAProxy's
 * send-proxy and nginx's proxy_protocol send it), so the client is read as
 * a plain socket until it ends. The most bytes the header can still take,
 * as far as p[0..n) tells, so that no read reaches into the ClientHello. */
static size_t pp_bound(const uint8_t *p, size_t n, int fd)
{
    uint8_t peek[WM_PP_V1_MAX];
    ssize_t got;

    if (n == 0) {
        return WM_PP_MIN; /* the shortest header of either version */
    }
    if (p[0] != 'P') {
        return n < WM_PP_V2_HDR ? WM_PP_V2_HDR
                                : WM_PP_V2_HDR + (((size_t)p[14] << 8) | p[15]);
    }
    /* v1: up to the LF, which is in the socket or not yet arrived */
    got = n < WM_PP_V1_MAX ? recv(fd, peek, WM_PP_V1_MAX - n, MSG_PEEK | MSG_DONTWAIT) : 0;
    for (ssize_t i = 0; i < got; i++) {
        if (peek[i] == '\n') {
            return n + (size_t)i + 1;
        }
    }
    return n + (got > 0 ? (size_t)got : 1);
}

/* bind_ssl: the header is read; TLS starts on the same socket. */
static void pp_start_tls(struct st_conn *c)
{
    int fd = bufferevent_getfd(c->conn.bev);

    bufferevent_setfd(c->conn.bev, -1); /* the fd goes to the TLS pump */
    wm_bev_free(c->conn.bev);
    c->conn.bev = wm_tls_wrap(wm_worker_base(c->conn.w), c->srv->tls_in, fd, true, NULL,
                              c->conn.peer_str);
    if (c->conn.bev == NULL) {
        wm_conn_finish(&c->conn, "out-of-memory");
        return;
    }
    wm_tls_pump_set_id(c->conn.bev, c->conn.id);
    bufferevent_setwatermark(c->conn.bev, EV_READ, 0, WM_RELAY_HIGH_WATER);
    bufferevent_setcb(c->conn.bev, client_read_cb, NULL, client_event_cb, c);
    bufferevent_enable(c->conn.bev, EV_READ | EV_WRITE);
}

static void pp_read(struct st_conn *c, struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    size_t take = n < WM_PP_V2_HDR + WM_PP_V2_BODY_MAX ? n : WM_PP_V2_HDR + WM_PP_V2_BODY_MAX;
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)take);
    struct wm_pp_info info;
    const char *why = NULL;
    int r = wm_pp_parse(p, take, &info, &why);

    if (r == 0 && take < WM_PP_V2_HDR + WM_PP_V2_BODY_MAX) {
        if (c->tls) {
            bufferevent_setwatermark(c->conn.bev, EV_READ, 0,
                                     pp_bound(p, n, bufferevent_getfd(c->conn.bev)));
        }
        return;
    }
    if (r <= 0) {
        wm_log(WM_LOG_WARN, c->conn.id, "client=%s: bad PROXY protocol header: %s",
               c->conn.peer_str, why != NULL ? why : "too long");
        wm_conn_finish(&c->conn, "bad-proxy-header");
        return;
    }
    evbuffer_drain(in, (size_t)r);
    /* without addresses (v1 UNKNOWN, v2 LOCAL, UNSPEC, ...) the connection's
     * own ends count (spec 2.1, 2.2): the upstream still gets its header */
    if (info.known ? wm_conn_set_origin(&c->conn, (struct sockaddr *)&info.src,
                                        (struct sockaddr *)&info.dst, c->srv->pp_version) < 0
                   : c->srv->pp_version != 0 && own_origin(c, bufferevent_getfd(c->conn.bev)) < 0) {
        wm_conn_finish(&c->conn, "out-of-memory");
        return;
    }
    if (c->tls) {
        pp_start_tls(c);
        if (!wm_conn_closed(&c->conn)) {
            tls_start(c);
        }
        return;
    }
    start(c);
}

/* Is header name present with a list holding token? */
static bool has_token(const struct wm_http_head *h, const char *name, const char *token)
{
    size_t n = 0;
    const char *v = wm_http_head_get(h, name, &n);

    return v != NULL && wm_list_has_token(v, n, token);
}

/* RFC 6455 4.2.1: what the client's upgrade request must hold. NULL when
 * it is valid (c->key gets the accept value), else why; *status the answer. */
static const char *hs_check(struct st_conn *c, const char **status)
{
    const struct wm_http_head *h = wm_http_parser_head(c->hp);
    size_t n = 0;
    const char *v;

    *status = "400 Bad Request";
    if (wm_http_parser_method(c->hp) != 1 /* llhttp HTTP_GET */) {
        *status = "405 Method Not Allowed";
        return "not a GET";
    }
    if (wm_http_head_major(h) != 1 || wm_http_head_minor(h) < 1) {
        return "HTTP/1.1 or later needed";
    }
    if (wm_http_head_get(h, "Host", &n) == NULL) {
        return "no Host";
    }
    if (!has_token(h, "Upgrade", "websocket") || !has_token(h, "Connection", "upgrade")) {
        *status = "426 Upgrade Required";
        return "not a WebSocket upgrade";
    }
    v = wm_http_head_get(h, "Sec-WebSocket-Version", &n);
    if (v == NULL || n != 2 || memcmp(v, "13", 2) != 0) {
        *status = "426 Upgrade Required";
        return "Sec-WebSocket-Version is not 13";
    }
    v = wm_http_head_get(h, "Sec-WebSocket-Key", &n);
    if (v == NULL || !wm_ws_key_ok(v, n)) {
        return "bad Sec-WebSocket-Key";
    }
    wm_ws_accept(v, n, c->key);
    return NULL;
}

static void hs_read(struct st_conn *c, struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    size_t used = 0;
    const char *status;
    const char *why;
    enum wm_http_res r = wm_http_parser_feed_head(c->hp, (const char *)evbuffer_pullup(in, -1), n,
                                                  &used);

    evbuffer_drain(in, used);
    if (r == WM_HTTP_MORE) {
        return;
    }
    if (r != WM_HTTP_HEAD_DONE) {
        answer(c, r == WM_HTTP_ERR_TOO_LARGE ? "431 Request Header Fields Too Large"
                                             : "400 Bad Request",
               "", "bad-handshake");
        return;
    }
    why = hs_check(c, &status);
    if (why != NULL) {
        answer(c, status,
               strncmp(status, "426", 3) == 0 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
                                               : "",
               why);
        return;
    }
    wm_conn_clear_timer(&c->conn);
    bufferevent_disable(c->conn.bev, EV_READ); /* frames wait for the pump */
    dial_next(c);
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct st_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    wm_conn_enter(&c->conn);
    if (c->state == ST_S_PP) {
        pp_read(c, in);
    } else if (c->state == ST_S_HS) {
        hs_read(c, in);
    } else if (evbuffer_get_length(in) >= WM_RELAY_HIGH_WATER) {
        bufferevent_disable(bev, EV_READ); /* early data while we dial: bounded */
    }
    wm_conn_leave(&c->conn);
}

/* ---- dialing ---- */

/* The server failed us (server_fault: else our own lack of descriptors,
 * which does not count against it): try the next. */
static void up_fail(struct st_conn *c, const char *why, bool server_fault)
{
    if (server_fault) {
        wm_upstream_failed(c->up, c->idx, why);
    }
    if (c->counted) {
        wm_upstream_active(c->up, c->idx, -1);
        c->counted = false;
    }
    if (c->idx < 64) {
        c->tried |= 1ULL << c->idx;
    }
    c->idx = -1;
}

/* The PROXY header, when one goes to the upstream (before any TLS). */
static int send_pp(struct st_conn *c, int fd)
{
    const struct wm_conn_origin *o = c->conn.origin;

    if (o == NULL || o->pp_version == 0) {
        return 0;
    }
    if (wm_pp_send(fd, o->pp_version, o->srclen ? (const struct sockaddr *)&o->src : NULL,
                   o->dstlen ? (const struct sockaddr *)&o->dst : NULL) < 0) {
        wm_log(WM_LOG_WARN, c->conn.id, "target %s: cannot send the PROXY header: %s",
               wm_conn_target(&c->conn), strerror(errno));
        close(fd);
        wm_conn_finish(&c->conn, "proxy-protocol-failed");
        return -1;
    }
    return 0;
}

/* An upstream bufferevent for fd (TLS when asked). NULL: c finished. */
static struct bufferevent *up_bev(struct st_conn *c, int fd, bool tls, const char *host)
{
    struct event_base *base = wm_worker_base(c->conn.w);
    struct bufferevent *b;

    if (tls) {
        b = wm_tls_wrap(base, c->srv->tls_out, fd, false, c->srv->domain[0] ? c->srv->domain : host,
                        wm_conn_target(&c->conn));
    } else {
        b = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (b == NULL) {
            close(fd);
        }
    }
    if (b == NULL) {
        wm_conn_finish(&c->conn, "out-of-memory");
    }
    return b;
}

/* ---- tcp2ws(s): our upgrade request and its answer ---- */

static void uphs_fail(struct st_conn *c, const char *why)
{
    wm_log(WM_LOG_WARN, c->conn.id, "tcp2ws target=%s: handshake failed: %s", wm_conn_target(&c->conn),
           why);
    up_fail(c, why, true);
    wm_conn_finish(&c->conn, "upstream-handshake-failed");
}

static void uphs_read_cb(struct bufferevent *bev, void *arg)
{
    struct st_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t used = 0;
    size_t n = 0;
    enum wm_http_res r;

    wm_conn_enter(&c->conn);
    r = wm_http_parser_feed_head(c->hp, (const char *)evbuffer_pullup(in, -1),
                                 evbuffer_get_length(in), &used);
    evbuffer_drain(in, used);
    if (r == WM_HTTP_HEAD_DONE) {
        const struct wm_http_head *h = wm_http_parser_head(c->hp);
        const char *acc = wm_http_head_get(h, "Sec-WebSocket-Accept", &n);
        if (wm_http_head_status(h) != 101) {
            uphs_fail(c, "no 101 answer");
        } else if (!has_token(h, "Upgrade", "websocket") ||
                   !has_token(h, "Connection", "upgrade")) {
            uphs_fail(c, "no Upgrade: websocket / Connection: upgrade");
        } else if (acc == NULL || !wm_ct_equal(acc, n, c->key, strlen(c->key))) {
            uphs_fail(c, "wrong Sec-WebSocket-Accept");
        } else {
            struct bufferevent *ub = c->up_bev;
            wm_conn_clear_timer(&c->conn);
            wm_upstream_ok(c->up, c->idx);
            c->up_bev = NULL;
            set_state(c, ST_S_RELAY);
            st_ws_start(&c->conn, ub, false, c->srv->max_message, c->srv->idle_ms);
        }
    } else if (r != WM_HTTP_MORE) {
        uphs_fail(c, "bad HTTP answer");
    }
    wm_conn_leave(&c->conn);
}

static void uphs_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct st_conn *c = arg;

    (void)bev;
    (void)what;
    wm_conn_enter(&c->conn);
    uphs_fail(c, "closed before answering");
    wm_conn_leave(&c->conn);
}

static void uphs_start(struct st_conn *c, int fd, const char *host, uint16_t port)
{
    uint8_t raw[16];
    char key[WM_WS_KEY_LEN + 1];
    char hostport[WM_HOST_MAX + 8];

    c->up_bev = up_bev(c, fd, c->srv->mode == ST_TCP2WSS, host);
    if (c->up_bev == NULL) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        uint64_t r = wm_random_u64();
        memcpy(raw + 8 * i, &r, 8);
    }
    wm_base64_encode(raw, sizeof(raw), key, sizeof(key));
    wm_ws_accept(key, strlen(key), c->key);
    c->hp = wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    if (c->hp == NULL) {
        wm_conn_finish(&c->conn, "out-of-memory");
        return;
    }
    wm_addr_join(host, port, hostport, sizeof(hostport));
    evbuffer_add_printf(bufferevent_get_output(c->up_bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\nUser-Agent: wmproxy\r\n\r\n",
                        c->srv->path, c->srv->domain[0] ? c->srv->domain : hostport, key);
    set_state(c, ST_S_UPHS);
    bufferevent_setcb(c->up_bev, uphs_read_cb, NULL, uphs_event_cb, c);
    bufferevent_enable(c->up_bev, EV_READ | EV_WRITE);
    wm_conn_set_timer(&c->conn, WM_STREAM_HEAD_MS, head_timeout_cb);
}

/* ---- connected ---- */

/* The relay on the client's bufferevent cb started: an EOF the client sent
 * while we dialed is passed on to it (a TLS pump reports it only once). */
static void relay_eof(struct st_conn *c, struct bufferevent *cb)
{
    if (c->client_eof && c->conn.relay != NULL) {
        bufferevent_trigger_event(cb, BEV_EVENT_READING | BEV_EVENT_EOF, 0);
    }
}

static void connected(struct st_conn *c, int fd, const char *host, uint16_t port)
{
    wm_upstream_active(c->up, c->idx, 1);
    c->counted = true;
    switch (c->srv->mode) {
    case ST_TCP2WS:
    case ST_TCP2WSS:
        if (send_pp(c, fd) == 0) {
            uphs_start(c, fd, host, port);
        }
        return;
    case ST_WS2TCP: {
        struct bufferevent *ub;
        if (send_pp(c, fd) < 0 || (ub = up_bev(c, fd, c->srv->proxy_ssl, host)) == NULL) {
            return;
        }
        wm_upstream_ok(c->up, c->idx);
        evbuffer_add_printf(bufferevent_get_output(c->conn.bev),
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                            c->key);
        c->conn.code = 101;
        set_state(c, ST_S_RELAY);
        st_ws_start(&c->conn, ub, true, c->srv->max_message, c->srv->idle_ms);
        return;
    }
    default:
        break;
    }
    wm_upstream_ok(c->up, c->idx);
    set_state(c, ST_S_RELAY);
    struct bufferevent *cb = c->conn.bev; /* the relay takes it */
    if (c->srv->proxy_ssl) {
        struct bufferevent *ub;
        if (send_pp(c, fd) < 0 || (ub = up_bev(c, fd, true, host)) == NULL) {
            return;
        }
        wm_conn_relay_bev(&c->conn, ub, 0);
        relay_eof(c, cb);
        return;
    }
    wm_conn_relay_fd(&c->conn, fd); /* PROXY header (origin), then splice or relay */
    relay_eof(c, cb);
}

/* No upstream connection for this client: a 502 to a WebSocket client, else
 * the connection ends with reason. */
static void give_up(struct st_conn *c, const char *reason)
{
    if (c->srv->mode == ST_WS2TCP) {
        answer(c, "502 Bad Gateway", "", reason);
    } else {
        wm_conn_finish(&c->conn, reason);
    }
}

static void dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer, socklen_t peerlen,
                    void *arg)
{
    struct st_conn *c = arg;
    const char *host;
    uint16_t port;

    (void)peer;
    (void)peerlen;
    wm_conn_enter(&c->conn);
    c->conn.dial = NULL;
    if (st != WM_DIAL_OK) {
        wm_log(WM_LOG_WARN, c->conn.id, "stream client=%s target=%s: %s", c->conn.peer_str,
               wm_conn_target(&c->conn), wm_dial_status_str(st));
        up_fail(c, wm_dial_status_str(st), st != WM_DIAL_LOCAL);
        if (st == WM_DIAL_LOCAL) {
            give_up(c, "no-socket"); /* ours, not the server's: every other would fail alike */
        } else {
            dial_next(c);
        }
    } else {
        wm_upstream_server(c->up, c->idx, &host, &port);
        connected(c, fd, host, port);
    }
    wm_conn_leave(&c->conn);
}

static void dial_next(struct st_conn *c)
{
    const char *host;
    uint16_t port;

    set_state(c, ST_S_DIAL);
    c->idx = wm_upstream_pick(c->up, (struct sockaddr *)&c->conn.peer, c->tried, &host, &port);
    if (c->idx < 0) {
        wm_log(WM_LOG_WARN, c->conn.id, "stream client=%s: no upstream server of %s is up",
               c->conn.peer_str, wm_upstream_name(c->up));
        give_up(c, "upstream-unreachable");
        return;
    }
    char target[WM_HOST_MAX + 8];
    wm_addr_join(host, port, target, sizeof(target));
    wm_conn_set_target(&c->conn, target);
    c->conn.dial = wm_dial_start(c->conn.w, host, port, c->srv->connect_ms, dial_cb, c);
    if (c->conn.dial == NULL) {
        wm_conn_finish(&c->conn, "out-of-memory");
    }
}

static void on_finish(struct wm_conn *wc, const char *reason)
{
    struct st_conn *c = (struct st_conn *)wc;

    st_alog(c->srv, wc->proto, wc->peer_str, wm_conn_target(wc), wc->code, wc->bytes_in, wc->bytes_out,
            wm_now_ms() - wc->start_ms, reason);
}

/* ---- accept ---- */

static const char *const proto_names[ST_MODE_COUNT] = {"tcp", "udp", "ws2tcp", "tcp2ws",
                                                       "tcp2wss"};

void st_tcp_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                   const struct sockaddr *peer, socklen_t peerlen, struct wm_listen_stats *stats)
{
    const struct st_service *ss = (const struct st_service *)svc;
    const struct st_server *srv = ss->srv;
    struct st_conn *c = calloc(1, sizeof(*c));
    struct wm_conn_limits lim = {.head_ms = WM_STREAM_HEAD_MS, .idle_ms = srv->idle_ms,
                                 .rate = srv->rate, .rate_ms = srv->rate_ms};
    struct bufferevent *bev = NULL;

    if (c != NULL && ss->tls && !srv->accept_pp) {
        char ps[WM_ADDR_STR_MAX];
        wm_addr_format(peer, ps, sizeof(ps));
        bev = wm_tls_wrap(wm_worker_base(w), srv->tls_in, fd, true, NULL, ps);
    } else if (c != NULL) {
        bev = bufferevent_socket_new(wm_worker_base(w), fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL) {
        if (c == NULL || !ss->tls || srv->accept_pp) {
            close(fd);
        }
        free(c);
        return;
    }
    wm_conn_init(&c->conn, svc, w, bev, peer, peerlen, stats, &lim);
    c->conn.proto = proto_names[srv->mode];
    c->conn.proto_free = conn_free;
    c->conn.on_finish = on_finish;
    c->srv = srv;
    c->up = srv->up;
    c->idx = -1;
    if (!srv->accept_pp && srv->pp_version != 0) {
        own_origin(c, fd);
    }
    c->tls = ss->tls && srv->accept_pp;
    bufferevent_setwatermark(bev, EV_READ, 0, c->tls ? WM_PP_MIN : WM_RELAY_HIGH_WATER);
    bufferevent_setcb(bev, client_read_cb, NULL, client_event_cb, c);
    if (srv->mode != ST_TCP || ss->tls || srv->accept_pp) {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
    /* else a plain TCP client is not watched while we dial: what it sends
     * waits in its socket for the splice, which reads it with one recv()
     * instead of a bufferevent read and a write of the copy, and the
     * client is added to epoll once, for reading (no EPOLLOUT to take back).
     * A client that leaves meanwhile is seen by the splice's first read,
     * at the latest when the dial ends (connect_timeout bounds it). */
    wm_conn_enter(&c->conn);
    if (srv->accept_pp) {
        c->state = ST_S_PP;
        wm_conn_set_timer(&c->conn, WM_STREAM_HEAD_MS, head_timeout_cb);
    } else if (ss->tls) {
        tls_start(c);
    } else {
        start(c);
    }
    wm_conn_leave(&c->conn);
}
