/*
 * proxy/http_proxy.c - HTTP forward proxy (absolute-URI requests) and
 * HTTPS CONNECT.
 *
 * One request at a time per client connection: the head is parsed and
 * rewritten (origin-form, hop-by-hop headers dropped), the body and the
 * response body are forwarded as raw bytes (chunk framing untouched), and
 * only when the response is complete is the next (pipelined) request read.
 * The upstream connection is kept for the next request to the same
 * host:port when both sides allow keep-alive.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/dial.h"
#include "proxy/pconn.h"

enum hp_state {
    HP_READ_HEAD = 0, /* awaiting (the rest of) a request head from the client */
    HP_DIALING,       /* head parsed; connecting to the target */
    HP_FORWARD,       /* head sent upstream; request body and response flowing */
    HP_CLOSING,       /* answered with an error; flushing, then close */
};

struct hp {
    struct wm_pconn *c;
    enum hp_state state;
    struct wm_http_parser *req;
    struct wm_http_parser *resp;
    struct bufferevent *up;
    char up_host[WM_HOST_MAX];
    uint16_t up_port;
    bool up_reused;   /* the current request went out on a kept connection */
    char host[WM_HOST_MAX];
    uint16_t port;
    char host_hdr[WM_HOST_MAX + 8]; /* Host header value for the target */
    size_t host_hdr_len;
    struct evbuffer *head_out; /* upstream request head, kept for one retry */
    struct evbuffer *scratch;  /* response bytes gathered for one write */
    bool req_done;
    bool resp_head_sent;
    bool resp_done;
    bool client_close;
    bool is_head;
    bool wants_upgrade;
    bool retried;
    bool client_paused; /* client reads paused for back-pressure */
    bool up_paused;
    int status;
    uint64_t req_start_ms;
    uint64_t req_in;
    uint64_t req_out;
    uint64_t last_ms;
    char reqline[256]; /* for the access log */
    struct event *timer;
};

static void client_read_cb(struct bufferevent *bev, void *arg);
static void up_read_cb(struct bufferevent *bev, void *arg);
static void process_client(struct hp *h);
static void process_upstream(struct hp *h);

/* ---- small helpers ---- */

static void hp_free(struct wm_pconn *c)
{
    struct hp *h = c->proto_data;

    if (h == NULL) {
        return;
    }
    if (h->up != NULL) {
        bufferevent_free(h->up);
    }
    if (h->timer != NULL) {
        event_free(h->timer);
    }
    if (h->head_out != NULL) {
        evbuffer_free(h->head_out);
    }
    if (h->scratch != NULL) {
        evbuffer_free(h->scratch);
    }
    wm_http_parser_free(h->req);
    wm_http_parser_free(h->resp);
    free(h);
    c->proto_data = NULL;
}

static void arm_timer(struct hp *h, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (ms > 0) {
        evtimer_add(h->timer, &tv);
    } else {
        evtimer_del(h->timer);
    }
}

static void drop_upstream(struct hp *h)
{
    if (h->up != NULL) {
        bufferevent_free(h->up);
        h->up = NULL;
    }
    h->up_host[0] = '\0';
    h->up_paused = false;
}

static void log_request(struct hp *h)
{
    struct wm_pconn *c = h->c;

    wm_log(WM_LOG_INFO, c->id,
           "access proto=http client=%s user=%s target=%s req=\"%s\" code=%d in=%llu "
           "out=%llu ms=%llu",
           c->peer_str, c->user[0] ? c->user : "-", c->target[0] ? c->target : "-",
           h->reqline, h->status, (unsigned long long)h->req_in,
           (unsigned long long)h->req_out,
           (unsigned long long)(wm_now_ms() - h->req_start_ms));
    c->access_logged = true;
}

/* Answer with an error and close the client connection. */
static void send_error(struct hp *h, int status, const char *extra, const char *detail)
{
    struct wm_pconn *c = h->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);

    h->status = status;
    c->code = status;
    wm_http_write_error(out, status, true, extra, detail);
    h->req_out += evbuffer_get_length(out) - before;
    c->bytes_out += evbuffer_get_length(out) - before;
    if (h->reqline[0] != '\0' || status != 408) {
        log_request(h);
    }
    drop_upstream(h);
    h->state = HP_CLOSING;
    evtimer_del(h->timer);
    wm_pconn_close_after_flush(c, "http-error");
}

/* ---- timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hp *h = arg;
    struct wm_pconn *c = h->c;
    uint64_t idle = (uint64_t)c->opts->idle_timeout_ms;

    (void)fd;
    (void)what;
    switch (h->state) {
    case HP_READ_HEAD:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
            wm_http_head_size(wm_http_parser_head(h->req)) == 0) {
            wm_pconn_finish(c, "keepalive-timeout");
        } else {
            send_error(h, 408, NULL, "request head not received in time");
        }
        return;
    case HP_FORWARD: {
        uint64_t since = wm_now_ms() - h->last_ms;
        if (since < idle) {
            arm_timer(h, (int)(idle - since));
            return;
        }
        if (!h->resp_head_sent) {
            send_error(h, 504, NULL, "no response from the target in time");
            return;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: transfer idle, closing");
        wm_pconn_finish(c, "idle-timeout");
        return;
    }
    default:
        return;
    }
}

/* ---- request head handling ---- */

/* Proxy-Authorization: Basic base64(user:pass). */
static bool check_auth(struct hp *h, struct wm_http_head *hd)
{
    struct wm_pconn *c = h->c;
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
    wm_pconn_set_user(c, (char *)dec, ulen);
    bool ok = wm_pconn_auth_ok(c, (char *)dec, ulen, (char *)colon + 1, (size_t)n - ulen - 1);
    explicit_bzero(dec, sizeof(dec));
    return ok;
}

/* Is this header to be dropped on the way to the origin? */
static bool drop_request_field(struct hp *h, struct wm_http_head *hd, const struct wm_http_field *f)
{
    if (wm_strieq(f->name, f->nlen, "host")) {
        return true; /* rewritten from the absolute URI */
    }
    if (h->wants_upgrade && wm_strieq(f->name, f->nlen, "upgrade")) {
        return false;
    }
    return wm_http_head_is_hop(hd, f->name, f->nlen);
}

static void build_upstream_head(struct hp *h, struct wm_http_head *hd, const char *path,
                                size_t pathlen)
{
    struct evbuffer *b = h->head_out;
    size_t mlen;
    const char *m = wm_http_head_method(hd, &mlen);
    struct wm_http_field f;
    bool v10 = wm_http_head_major(hd) == 1 && wm_http_head_minor(hd) == 0;

    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add(b, m, mlen);
    evbuffer_add(b, " ", 1);
    if (pathlen == 0 || path[0] != '/') {
        evbuffer_add(b, "/", 1);
    }
    evbuffer_add(b, path, pathlen);
    evbuffer_add(b, v10 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ", 17);
    evbuffer_add(b, h->host_hdr, h->host_hdr_len);
    evbuffer_add(b, "\r\n", 2);
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        wm_http_head_field(hd, i, &f);
        if (drop_request_field(h, hd, &f)) {
            continue;
        }
        evbuffer_add(b, f.name, f.nlen);
        evbuffer_add(b, ": ", 2);
        evbuffer_add(b, f.value, f.vlen);
        evbuffer_add(b, "\r\n", 2);
    }
    if (h->wants_upgrade) {
        evbuffer_add(b, "Connection: Upgrade\r\n", 21);
    } else if (v10) {
        evbuffer_add(b, "Connection: close\r\n", 19);
    }
    evbuffer_add(b, "\r\n", 2);
}

static void set_reqline(struct hp *h, struct wm_http_head *hd)
{
    size_t mlen;
    size_t ulen;
    const char *m = wm_http_head_method(hd, &mlen);
    const char *u = wm_http_head_url(hd, &ulen);

    snprintf(h->reqline, sizeof(h->reqline), "%.*s %.*s", (int)(mlen < 20 ? mlen : 20), m,
             (int)(ulen < 200 ? ulen : 200), u);
    /* The log line must stay one line with balanced quotes. */
    for (char *p = h->reqline; *p != '\0'; p++) {
        if (*p == '"' || (unsigned char)*p < ' ') {
            *p = '?';
        }
    }
}

static void format_target(struct hp *h)
{
    bool v6 = strchr(h->host, ':') != NULL;
    int n;

    snprintf(h->c->target, sizeof(h->c->target), v6 ? "[%s]:%u" : "%s:%u", h->host, h->port);
    if (h->port == 80) {
        n = snprintf(h->host_hdr, sizeof(h->host_hdr), v6 ? "[%s]" : "%s", h->host);
    } else {
        n = snprintf(h->host_hdr, sizeof(h->host_hdr), "%s", h->c->target);
    }
    h->host_hdr_len = n < 0 ? 0 : (size_t)n;
}

/* ---- CONNECT ---- */

static void connect_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                            socklen_t peerlen, void *arg)
{
    struct hp *h = arg;
    struct wm_pconn *c = h->c;
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

    (void)peer;
    (void)peerlen;
    c->dial = NULL;
    if (st != WM_DIAL_OK) {
        send_error(h, wm_pconn_http_status(st), NULL, wm_dial_status_str(st));
        return;
    }
    c->code = 200;
    c->proto = WM_PCONN_CONNECT;
    c->access_logged = false; /* the relay's end writes this connection's line */
    bufferevent_write(c->bev, ok, sizeof(ok) - 1);
    c->bytes_out += sizeof(ok) - 1;
    /* The HTTP state is done with; bytes after the CONNECT head stay in the
     * client's input buffer and are the first the relay forwards. */
    hp_free(c);
    c->proto_free = NULL;
    wm_pconn_relay_fd(c, fd);
}

static void start_connect(struct hp *h, struct wm_http_head *hd)
{
    struct wm_pconn *c = h->c;
    size_t ulen;
    const char *u = wm_http_head_url(hd, &ulen);

    if (!(c->opts->flags & WM_PROXY_FLAG_HTTPS)) {
        send_error(h, 405, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n",
                   "CONNECT is disabled on this port");
        return;
    }
    if (wm_http_parse_authority(u, ulen, h->host, sizeof(h->host), &h->port, 0) < 0) {
        send_error(h, 400, NULL, "CONNECT needs host:port");
        return;
    }
    format_target(h);
    drop_upstream(h);
    h->state = HP_DIALING;
    bufferevent_disable(c->bev, EV_READ);
    evtimer_del(h->timer);
    c->dial = wm_dial_start(c->w, h->host, h->port, c->opts->connect_timeout_ms,
                            connect_dial_cb, h);
    if (c->dial == NULL) {
        connect_dial_cb(-1, WM_DIAL_ERROR, NULL, 0, h);
    }
}

/* ---- forwarding a request ---- */

static void send_request(struct hp *h);

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct hp *h = arg;

    (void)bev;
    if (h->client_paused && !h->req_done && h->state == HP_FORWARD) {
        h->client_paused = false;
        bufferevent_setwatermark(h->up, EV_WRITE, 0, 0);
        bufferevent_enable(h->c->bev, EV_READ);
        process_client(h);
    }
}

static void response_done(struct hp *h);

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hp *h = arg;
    struct wm_pconn *c = h->c;

    (void)bev;
    if (h->state != HP_FORWARD) {
        /* A kept connection closed between requests: just forget it. */
        drop_upstream(h);
        return;
    }
    if ((what & BEV_EVENT_EOF) && h->resp_head_sent) {
        process_upstream(h); /* drain what is buffered */
        if (h->state != HP_FORWARD || h->resp_done) {
            return;
        }
        if (wm_http_parser_feed_eof(h->resp) == WM_HTTP_MSG_DONE) {
            h->client_close = true;
            response_done(h);
            return;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: target closed mid-response");
        log_request(h);
        wm_pconn_close_after_flush(c, "target-closed");
        return;
    }
    if (!h->resp_head_sent && h->up_reused && !h->retried &&
        wm_http_head_size(wm_http_parser_head(h->resp)) == 0 &&
        !wm_http_parser_has_body(h->req)) {
        /* The kept connection was closed by the target as we reused it: the
         * request is safe to send again on a fresh connection, once. */
        h->retried = true;
        drop_upstream(h);
        send_request(h);
        return;
    }
    if (!h->resp_head_sent) {
        send_error(h, 502, NULL, "the target closed the connection without answering");
        return;
    }
    log_request(h);
    wm_pconn_finish(c, "target-error");
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct hp *h = arg;

    (void)bev;
    if (h->up_paused && h->up != NULL) {
        h->up_paused = false;
        bufferevent_setwatermark(h->c->bev, EV_WRITE, 0, 0);
        bufferevent_enable(h->up, EV_READ);
        process_upstream(h);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hp *h = arg;
    struct wm_pconn *c = h->c;

    if ((what & BEV_EVENT_EOF) && h->state == HP_FORWARD && h->req_done) {
        /* The client half-closed after its request: answer, then close. */
        bufferevent_disable(bev, EV_READ);
        h->client_close = true;
        return;
    }
    if (h->state == HP_FORWARD && !h->resp_done) {
        log_request(h);
    }
    wm_pconn_finish(c, (what & BEV_EVENT_EOF) ? "client-closed" : "client-error");
}

static void attach_upstream(struct hp *h, struct bufferevent *up)
{
    h->up = up;
    wm_http_parser_reset(h->resp);
    snprintf(h->up_host, sizeof(h->up_host), "%s", h->host);
    h->up_port = h->port;
    bufferevent_setcb(up, up_read_cb, up_write_cb, up_event_cb, h);
    bufferevent_set_max_single_read(up, WM_RELAY_MAX_READ);
    bufferevent_enable(up, EV_READ | EV_WRITE);
}

static void request_dial_cb(int fd, enum wm_dial_status st, const struct sockaddr *peer,
                            socklen_t peerlen, void *arg)
{
    struct hp *h = arg;
    struct wm_pconn *c = h->c;
    struct bufferevent *up;

    (void)peer;
    (void)peerlen;
    c->dial = NULL;
    if (st != WM_DIAL_OK) {
        send_error(h, wm_pconn_http_status(st), NULL, wm_dial_status_str(st));
        return;
    }
    up = bufferevent_socket_new(wm_worker_base(c->w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (up == NULL) {
        evutil_closesocket(fd);
        send_error(h, 502, NULL, "out of memory");
        return;
    }
    attach_upstream(h, up);
    h->up_reused = false;
    send_request(h);
}

/* Send the prepared head on the current upstream (dialing one if needed),
 * then start moving the body and waiting for the response. */
static void send_request(struct hp *h)
{
    struct wm_pconn *c = h->c;

    if (h->up == NULL) {
        h->state = HP_DIALING;
        bufferevent_disable(c->bev, EV_READ);
        evtimer_del(h->timer);
        c->dial = wm_dial_start(c->w, h->host, h->port, c->opts->connect_timeout_ms,
                                request_dial_cb, h);
        if (c->dial == NULL) {
            request_dial_cb(-1, WM_DIAL_ERROR, NULL, 0, h);
        }
        return;
    }
    h->state = HP_FORWARD;
    h->last_ms = wm_now_ms();
    arm_timer(h, c->opts->idle_timeout_ms);
    /* Copy, not move: kept for one retry on a kept connection. */
    if (h->up_reused && !h->retried) {
        struct evbuffer *copy = evbuffer_new();
        size_t hl = evbuffer_get_length(h->head_out);
        if (copy != NULL) {
            evbuffer_add(copy, evbuffer_pullup(h->head_out, -1), hl);
            wm_bev_send(h->up, copy, hl);
            evbuffer_free(copy);
        }
    } else {
        wm_bev_send(h->up, h->head_out, evbuffer_get_length(h->head_out));
    }
    wm_http_parser_expect_no_body(h->resp, h->is_head);
    bufferevent_enable(c->bev, EV_READ);
    process_client(h);
}

static void handle_head(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct wm_http_head *hd = wm_http_parser_head(h->req);
    size_t ulen;
    const char *u = wm_http_head_url(hd, &ulen);
    const char *path;
    size_t pathlen;
    bool https;

    h->status = 0;
    h->retried = false;
    h->req_done = h->resp_head_sent = h->resp_done = false;
    set_reqline(h, hd);
    h->is_head = wm_http_parser_method(h->req) == HTTP_HEAD;
    h->client_close = !wm_http_parser_keep_alive(h->req);

    if (!check_auth(h, hd)) {
        wm_log(WM_LOG_WARN, c->id, "http client=%s user=%s: %s", c->peer_str,
               c->user[0] ? c->user : "-",
               wm_http_head_get(hd, "proxy-authorization", &ulen) ? "wrong credentials"
                                                                   : "credentials missing");
        send_error(h, 407, "Proxy-Authenticate: Basic realm=\"wmproxy\"\r\n",
                   "credentials required");
        return;
    }
    if (wm_http_parser_method(h->req) == HTTP_CONNECT) {
        start_connect(h, hd);
        return;
    }
    c->proto = WM_PCONN_HTTP;
    if (!(c->opts->flags & WM_PROXY_FLAG_HTTP)) {
        send_error(h, 403, NULL, "the HTTP proxy is disabled on this port");
        return;
    }
    if (wm_http_parse_absolute(u, ulen, h->host, sizeof(h->host), &h->port, &https, &path,
                               &pathlen) < 0) {
        send_error(h, 400, NULL, "a proxy request needs an absolute http:// URI");
        return;
    }
    if (https) {
        send_error(h, 400, NULL, "use CONNECT for https:// targets");
        return;
    }
    format_target(h);
    h->wants_upgrade = wm_http_parser_upgrade(h->req);
    if (h->wants_upgrade) {
        h->client_close = true; /* after an upgrade the connection is not HTTP any more */
    }
    build_upstream_head(h, hd, path, pathlen);
    if (h->up != NULL &&
        (strcasecmp(h->up_host, h->host) != 0 || h->up_port != h->port)) {
        drop_upstream(h);
    }
    h->up_reused = h->up != NULL;
    if (h->resp == NULL) {
        h->resp = wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
        if (h->resp == NULL) {
            send_error(h, 500, NULL, "out of memory");
            return;
        }
    }
    send_request(h);
}

/* ---- client input ---- */

static void read_head(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (h->state == HP_READ_HEAD) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            return;
        }
        if (wm_http_head_size(wm_http_parser_head(h->req)) == 0) {
            /* First bytes of a request: the head must now come in time. */
            arm_timer(h, c->opts->handshake_timeout_ms);
            h->req_start_ms = wm_now_ms();
            h->req_in = h->req_out = 0;
        }
        r = wm_http_parser_feed_head(h->req, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        h->req_in += used;
        c->bytes_in += used;
        switch (r) {
        case WM_HTTP_MORE:
            continue;
        case WM_HTTP_HEAD_DONE:
            handle_head(h);
            return;
        case WM_HTTP_ERR_TOO_LARGE:
            send_error(h, 431, NULL, "request head larger than the limit");
            return;
        case WM_HTTP_ERR_FRAMING:
            send_error(h, 400, NULL, wm_http_parser_error(h->req));
            return;
        default:
            wm_log(WM_LOG_DEBUG, c->id, "http client=%s: malformed request: %s", c->peer_str,
                   wm_http_parser_error(h->req));
            send_error(h, 400, NULL, "malformed request");
            return;
        }
    }
}

/* Move request body bytes (raw) from the client to the target. */
static void forward_body(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(h->up);

    while (!h->req_done) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;
        int have = evbuffer_peek(in, -1, NULL, &v, 1);

        if (have < 1) {
            v.iov_base = NULL;
            v.iov_len = 0;
        }
        r = wm_http_parser_feed_body(h->req, v.iov_base, v.iov_len, &used);
        if (r == WM_HTTP_MSG_DONE || r == WM_HTTP_MORE) {
            if (used > 0) {
                wm_bev_send(h->up, in, used);
                h->req_in += used;
                c->bytes_in += used;
                h->last_ms = wm_now_ms();
            }
            if (r == WM_HTTP_MSG_DONE) {
                /* Pipelined requests wait in the input buffer, bounded by its
                 * read watermark, until this response is complete. */
                h->req_done = true;
                break;
            }
            if (have < 1 || used == 0) {
                break;
            }
            continue;
        }
        wm_log(WM_LOG_DEBUG, c->id, "http: bad request body: %s", wm_http_parser_error(h->req));
        if (!h->resp_head_sent) {
            send_error(h, 400, NULL, "malformed request body");
        } else {
            log_request(h);
            wm_pconn_finish(c, "bad-request-body");
        }
        return;
    }
    if (!h->req_done && evbuffer_get_length(out) >= WM_HTTP_BODY_HIGH_WATER) {
        h->client_paused = true;
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_setwatermark(h->up, EV_WRITE, WM_HTTP_BODY_HIGH_WATER / 2, 0);
    }
}

static void process_client(struct hp *h)
{
    switch (h->state) {
    case HP_READ_HEAD:
        read_head(h);
        break;
    case HP_FORWARD:
        if (!h->req_done) {
            forward_body(h);
        }
        break;
    default:
        break;
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_client(arg);
}

/* ---- response ---- */

/* Send what process_upstream() gathered for the client, in one write. */
static void flush_scratch(struct hp *h)
{
    size_t n = evbuffer_get_length(h->scratch);

    if (n > 0) {
        wm_bev_send(h->c->bev, h->scratch, n);
    }
}

static void write_response_head(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct wm_http_head *hd = wm_http_parser_head(h->resp);
    struct evbuffer *out = h->scratch;
    size_t before = evbuffer_get_length(out);
    size_t rlen;
    const char *reason = wm_http_head_reason(hd, &rlen);
    struct wm_http_field f;
    int status = wm_http_head_status(hd);
    bool upgrade = status == 101 && h->wants_upgrade;

    char sl[16] = "HTTP/1.1 000 ";
    sl[9] = (char)('0' + status / 100 % 10);
    sl[10] = (char)('0' + status / 10 % 10);
    sl[11] = (char)('0' + status % 10);
    evbuffer_add(out, sl, 13);
    evbuffer_add(out, reason, rlen);
    evbuffer_add(out, "\r\n", 2);
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        wm_http_head_field(hd, i, &f);
        if (upgrade && wm_strieq(f.name, f.nlen, "upgrade")) {
            /* kept */
        } else if (wm_strieq(f.name, f.nlen, "trailer")) {
            /* kept: chunked bodies pass through with their trailers */
        } else if (wm_http_head_is_hop(hd, f.name, f.nlen)) {
            continue;
        }
        evbuffer_add(out, f.name, f.nlen);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, f.value, f.vlen);
        evbuffer_add(out, "\r\n", 2);
    }
    if (upgrade) {
        evbuffer_add(out, "Connection: Upgrade\r\n", 21);
    } else if (status >= 200) {
        if (h->client_close) {
            evbuffer_add(out, "Connection: close\r\n", 19);
        } else if (wm_http_head_minor(wm_http_parser_head(h->req)) == 0) {
            evbuffer_add(out, "Connection: keep-alive\r\n", 24);
        }
    }
    evbuffer_add(out, "\r\n", 2);
    h->req_out += evbuffer_get_length(out) - before;
    c->bytes_out += evbuffer_get_length(out) - before;
}

static void become_tunnel(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct bufferevent *up = h->up;

    log_request(h);
    h->up = NULL;
    hp_free(c);
    c->proto_free = NULL;
    /* Bytes already buffered on either side are the first the relay moves. */
    wm_pconn_relay_bev(c, up);
}

static void response_done(struct hp *h)
{
    struct wm_pconn *c = h->c;
    bool keep_up;

    h->resp_done = true;
    log_request(h);
    keep_up = h->up != NULL && wm_http_parser_keep_alive(h->resp) &&
              !wm_http_parser_needs_eof(h->resp) &&
              evbuffer_get_length(bufferevent_get_input(h->up)) == 0;
    if (!keep_up) {
        drop_upstream(h);
    } else {
        wm_http_parser_next(h->resp);
    }
    if (h->client_close || !h->req_done) {
        /* A response that ended before its request body cannot be followed
         * by another request on this connection. */
        h->state = HP_CLOSING;
        evtimer_del(h->timer);
        wm_pconn_close_after_flush(c, "done");
        return;
    }
    wm_http_parser_next(h->req);
    h->state = HP_READ_HEAD;
    h->reqline[0] = '\0';
    evbuffer_drain(h->head_out, evbuffer_get_length(h->head_out));
    arm_timer(h, c->opts->idle_timeout_ms);
    bufferevent_enable(c->bev, EV_READ);
    process_client(h);
}

static void process_upstream(struct hp *h)
{
    struct wm_pconn *c = h->c;
    struct evbuffer *in;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (h->up == NULL || h->state != HP_FORWARD) {
        return;
    }
    in = bufferevent_get_input(h->up);
    while (h->state == HP_FORWARD && !h->resp_done) {
        struct evbuffer_iovec v;
        size_t used;
        enum wm_http_res r;
        int have = evbuffer_peek(in, -1, NULL, &v, 1);

        if (have < 1) {
            v.iov_base = NULL;
            v.iov_len = 0;
        }
        if (!h->resp_head_sent) {
            if (v.iov_len == 0) {
                flush_scratch(h); /* interim responses */
                return;
            }
            h->last_ms = wm_now_ms();
            r = wm_http_parser_feed_head(h->resp, v.iov_base, v.iov_len, &used);
            evbuffer_drain(in, used);
            if (r == WM_HTTP_MORE) {
                continue;
            }
            if (r != WM_HTTP_HEAD_DONE) {
                wm_log(WM_LOG_DEBUG, c->id, "http: bad response from %s: %s", c->target,
                       wm_http_parser_error(h->resp));
                send_error(h, 502, NULL, "malformed response from the target");
                return;
            }
            int status = wm_http_head_status(wm_http_parser_head(h->resp));
            h->status = status;
            c->code = status;
            if (status == 101 && h->wants_upgrade) {
                write_response_head(h);
                flush_scratch(h);
                become_tunnel(h);
                return;
            }
            if (status >= 100 && status < 200) {
                /* Interim response: pass it on, the final one follows. */
                write_response_head(h);
                wm_http_parser_next(h->resp);
                wm_http_parser_expect_no_body(h->resp, h->is_head);
                continue;
            }
            if (wm_http_parser_needs_eof(h->resp)) {
                h->client_close = true;
            }
            write_response_head(h);
            h->resp_head_sent = true;
            continue;
        }
        r = wm_http_parser_feed_body(h->resp, v.iov_base, v.iov_len, &used);
        if (r != WM_HTTP_MORE && r != WM_HTTP_MSG_DONE) {
            wm_log(WM_LOG_DEBUG, c->id, "http: bad response body from %s: %s", c->target,
                   wm_http_parser_error(h->resp));
            flush_scratch(h);
            log_request(h);
            wm_pconn_close_after_flush(c, "bad-response");
            return;
        }
        if (used > 0) {
            evbuffer_remove_buffer(in, h->scratch, used);
            h->req_out += used;
            c->bytes_out += used;
            h->last_ms = wm_now_ms();
        }
        if (r == WM_HTTP_MSG_DONE) {
            flush_scratch(h);
            response_done(h);
            return;
        }
        if (have < 1 || used == 0) {
            break;
        }
    }
    flush_scratch(h);
    if (h->up != NULL && evbuffer_get_length(out) >= WM_HTTP_BODY_HIGH_WATER) {
        h->up_paused = true;
        bufferevent_disable(h->up, EV_READ);
        bufferevent_setwatermark(c->bev, EV_WRITE, WM_HTTP_BODY_HIGH_WATER / 2, 0);
    }
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct hp *h = arg;

    (void)bev;
    if (h->state != HP_FORWARD) {
        /* Bytes on an idle kept connection: it is unusable now. */
        drop_upstream(h);
        return;
    }
    process_upstream(h);
}

void wm_http_proxy_start(struct wm_pconn *c)
{
    struct hp *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    h->c = c;
    h->req = wm_http_parser_new(WM_HTTP_REQUEST, WM_HTTP_MAX_HEAD, WM_HTTP_MAX_HEADERS);
    h->head_out = evbuffer_new();
    h->scratch = evbuffer_new();
    h->timer = evtimer_new(wm_worker_base(c->w), timer_cb, h);
    c->proto_data = h;
    c->proto_free = hp_free;
    if (h->req == NULL || h->head_out == NULL || h->scratch == NULL || h->timer == NULL) {
        wm_pconn_finish(c, "out-of-memory");
        return;
    }
    wm_pconn_clear_timer(c); /* our own timer takes over */
    h->state = HP_READ_HEAD;
    bufferevent_setwatermark(c->bev, EV_READ, 0, WM_HTTP_CLIENT_READ_MAX);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, h);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    arm_timer(h, c->opts->handshake_timeout_ms);
    process_client(h);
}
