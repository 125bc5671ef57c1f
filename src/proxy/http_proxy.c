/*
 * proxy/http_proxy.c - the forward proxy's HTTP side: absolute-URI
 * requests (forwarded by http/fwd.c to a dialed origin) and HTTPS
 * CONNECT tunnels; Basic proxy authentication.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/authfail.h"
#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "http/head.h"
#include "http/util.h"
#include "net/dial.h"
#include "http/fwd.h"
#include "proxy/pconn.h"

/* Proxy-Authorization: Basic base64(user:pass). */
static bool check_auth(struct wm_pconn *c, struct wm_http_head *hd)
{
    size_t vlen;
    const char *v;
    unsigned char dec[2 * WM_PROXY_CRED_MAX + 2];
    long n;

    if (!c->opts->auth) {
        return true;
    }
    v = wm_http_head_get(hd, "proxy-authorization", &vlen);
    if (v == NULL || vlen < 6 || strncasecmp(v, "basic ", 6) != 0) {
        return false;
    }
    v += 6;
    vlen -= 6;
    wm_trim(&v, &vlen);
    n = wm_base64_decode(v, vlen, dec, sizeof(dec));
    if (n < 0) {
        return false;
    }
    unsigned char *colon = memchr(dec, ':', (size_t)n);
    if (colon == NULL) {
        explicit_bzero(dec, sizeof(dec));
        return false;
    }
    size_t ulen = (size_t)(colon - dec);
    wm_conn_set_user(&c->conn, (char *)dec, ulen);
    bool ok = wm_pconn_auth_ok(c, (char *)dec, ulen, (char *)colon + 1, (size_t)n - ulen - 1);
    explicit_bzero(dec, sizeof(dec));
    return ok;
}

static const char auth_extra[] = "Proxy-Authenticate: Basic realm=\"wmproxy\"\r\n";

static void auth_failed_cb(int fd, short what, void *arg)
{
    struct wm_conn *c = arg;

    (void)fd;
    (void)what;
    wm_hfwd_fail(c->proto_data, 407, auth_extra, "credentials required");
}

/* 0 when the request may go on; else its answer (407, 429) or
 * WM_HFWD_TAKEN when a wrong guess is answered later (core/authfail.h). */
static int authenticate(struct wm_hfwd *f, struct wm_pconn *c, struct wm_http_head *hd,
                        const char **detail, const char **extra)
{
    size_t n;
    bool sent = c->opts->auth && wm_http_head_get(hd, "proxy-authorization", &n) != NULL;
    const struct sockaddr *peer = c->conn.peerlen > 0 ? (struct sockaddr *)&c->conn.peer : NULL;
    int delay;

    (void)f;
    if (sent && wm_authfail_check(peer) < 0) {
        *extra = "Retry-After: 60\r\n";
        *detail = "too many failed authentications from this address; try again later";
        return 429;
    }
    if (check_auth(c, hd)) {
        if (sent) {
            wm_authfail_record(peer, true);
        }
        return 0;
    }
    wm_log(WM_LOG_WARN, c->conn.id, "http client=%s user=%s: %s", c->conn.peer_str,
           c->conn.user != NULL ? c->conn.user : "-", sent ? "wrong credentials" : "credentials missing");
    *extra = auth_extra;
    *detail = "credentials required";
    delay = sent ? wm_authfail_record(peer, false) : 0;
    if (delay > 0) {
        wm_conn_set_timer(&c->conn, delay, auth_failed_cb); /* a guesser waits */
        return WM_HFWD_TAKEN;
    }
    return 407;
}

/* ---- CONNECT ---- */

static void connect_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                            socklen_t peerlen, void *arg)
{
    struct wm_hfwd *f = arg;
    struct wm_pconn *c = wm_pconn_of(wm_hfwd_conn(f));
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

    (void)peer;
    (void)peerlen;
    c->conn.dial = NULL;
    if (st != WM_DIAL_OK) {
        wm_hfwd_fail(f, wm_pconn_http_status(st), NULL, wm_dial_status_str(st));
        return;
    }
    c->conn.code = 200;
    wm_pconn_set_proto(c, WM_PCONN_CONNECT);
    c->conn.access_logged = false; /* the relay's end writes this connection's line */
    wm_bev_send_bytes(c->conn.bev, ok, sizeof(ok) - 1);
    c->conn.bytes_out += sizeof(ok) - 1;
    /* Bytes after the CONNECT head stay in the client's input buffer and
     * are the first the relay forwards. */
    wm_hfwd_detach(f);
    wm_conn_relay_fd(&c->conn, fd);
}

static int start_connect(struct wm_hfwd *f, struct wm_pconn *c, struct wm_http_head *hd,
                         struct wm_hfwd_target *t, const char **detail, const char **extra)
{
    char host[WM_HOST_MAX];
    uint16_t port;
    size_t ulen;
    const char *u = wm_http_head_url(hd, &ulen);

    if (!(c->opts->flags & WM_PROXY_FLAG_HTTPS)) {
        *extra = "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n";
        *detail = "CONNECT is disabled on this port";
        return 405;
    }
    if (wm_http_parse_authority(u, ulen, host, sizeof(host), &port, 0) < 0) {
        *detail = "CONNECT needs host:port";
        return 400;
    }
    wm_addr_join(host, port, t->log, sizeof(t->log)); /* its line, should it fail */
    wm_conn_set_target(&c->conn, t->log);
    bufferevent_disable(c->conn.bev, EV_READ);
    c->conn.dial = wm_pconn_dial(c, host, port, connect_dial_cb, f);
    if (c->conn.dial == NULL) {
        *detail = "out of memory";
        return 500;
    }
    return WM_HFWD_TAKEN;
}

/* ---- absolute-URI requests ---- */

static int route(struct wm_hfwd *f, struct wm_conn *cc, struct wm_http_head *hd,
                 struct wm_hfwd_target *t, const char **detail, const char **extra)
{
    struct wm_pconn *c = wm_pconn_of(cc);
    char host[WM_HOST_MAX];
    uint16_t port;
    size_t ulen;
    const char *u = wm_http_head_url(hd, &ulen);
    bool https;

    int r = authenticate(f, c, hd, detail, extra);
    if (r != 0) {
        return r;
    }
    size_t mlen;
    const char *m = wm_http_head_method(hd, &mlen);
    if (wm_strieq(m, mlen, "CONNECT")) {
        return start_connect(f, c, hd, t, detail, extra);
    }
    wm_pconn_set_proto(c, WM_PCONN_HTTP);
    if (!(c->opts->flags & WM_PROXY_FLAG_HTTP)) {
        *detail = "the HTTP proxy is disabled on this port";
        return 403;
    }
    if (wm_http_parse_absolute(u, ulen, host, sizeof(host), &port, &https, &t->path,
                               &t->pathlen) < 0) {
        *detail = "a proxy request needs an absolute http:// URI";
        return 400;
    }
    if (https) {
        *detail = "use CONNECT for https:// targets";
        return 400;
    }
    wm_addr_join(host, port, t->key, sizeof(t->key));
    wm_addr_join(host, port, t->log, sizeof(t->log));
    wm_addr_join(host, port == 80 ? 0 : port, t->host_hdr, sizeof(t->host_hdr));
    return 0;
}

static void request_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                            socklen_t peerlen, void *arg)
{
    struct wm_hfwd *f = arg;
    struct wm_pconn *c = wm_pconn_of(wm_hfwd_conn(f));
    struct bufferevent *up;

    (void)peer;
    (void)peerlen;
    if (st != WM_DIAL_OK) {
        wm_hfwd_connected(f, NULL, wm_pconn_http_status(st), wm_dial_status_str(st));
        return;
    }
    up = bufferevent_socket_new(wm_worker_base(c->conn.w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (up == NULL) {
        close(fd);
        wm_hfwd_connected(f, NULL, 502, "out of memory");
        return;
    }
    wm_hfwd_connected(f, up, 0, NULL);
}

static void *connect_op(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t)
{
    struct wm_pconn *pc = wm_pconn_of(c);
    char host[WM_HOST_MAX];
    uint16_t port;

    if (wm_addr_split(t->key, strlen(t->key), host, sizeof(host), &port) < 0) {
        return NULL;
    }
    return wm_pconn_dial(pc, host, port, request_dial_cb, f);
}

static void cancel_op(void *handle)
{
    wm_dial_cancel(handle);
}

static const struct wm_hfwd_ops forward_ops = {
    .proto = "http",
    .route = route,
    .connect = connect_op,
    .cancel = cancel_op,
};

void wm_http_proxy_start(struct wm_pconn *c)
{
    bufferevent_enable(c->conn.bev, EV_WRITE); /* the HTTP engine writes through the output */
    wm_hfwd_start(&c->conn, &forward_ops);
}
