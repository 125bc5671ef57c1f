/*
 * tunnel/refuse.c - the answer of a proxy port the tunnel cannot serve (the
 * client's entry while its carrier is down, a public proxy mapping port no
 * client serves, a stream the far end refused): read just enough of the
 * client's handshake to answer in its own protocol, then close.
 *  - HTTP proxy requests and CONNECT: 502 with the reason in the body;
 *  - SOCKS5: method selection, then reply 1 (general failure) to the
 *    request; SOCKS4: reply 91 (rejected or failed).
 * A client that sends nothing, or garbage, is closed when the handshake
 * timer fires. After the answer, what the client still sends is read and
 * dropped until it closes (a close with unread bytes would be a reset that
 * can destroy the answer in flight), within a short bound.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "http/util.h"
#include "proxy/socks_proto.h"
#include "tunnel/node_int.h"

#define REFUSE_HANDSHAKE_MS 5000 /* the client's handshake must come in this time */
#define REFUSE_LINGER_MS 2000    /* reading what follows the answer, at most */
#define REFUSE_HEAD_MAX 16384    /* an HTTP head longer than this is answered at once */

enum rf_state {
    RF_SNIFF = 0,     /* nothing read yet: the first byte names the protocol */
    RF_S5_GREETING,   /* SOCKS5: awaiting VER NMETHODS METHODS */
    RF_S5_AUTH,       /* SOCKS5: user/password offered and chosen, awaiting it */
    RF_S5_REQUEST,    /* SOCKS5: method chosen, awaiting the request */
    RF_S4_REQUEST,    /* SOCKS4: awaiting the request */
    RF_HTTP_HEAD,     /* HTTP: awaiting the end of the request head */
    RF_FLUSH,         /* the answer is queued: awaiting its departure */
    RF_LINGER,        /* answered, write side shut: dropping input until EOF */
    RF_COUNT
};

static const char *const rf_names[RF_COUNT] = {"sniff",   "s5-greeting", "s5-auth", "s5-request",
                                               "s4-request", "http-head", "flush",  "linger"};

struct refusal {
    struct wm_conn_link link; /* first: the worker's registry */
    uint64_t id;
    struct wm_worker *w;
    struct bufferevent *bev;
    struct wm_listen_stats *stats;
    enum rf_state st;
    const char *proto; /* static string */
    bool log;          /* write the access line at the end */
    int code;          /* what we answered: HTTP status or SOCKS reply, -1: nothing */
    uint64_t start_ms;
    uint64_t in;
    uint64_t out;
    char peer[WM_ADDR_STR_MAX];
    char target[WM_HOST_MAX + 8];
    char why[160];
};

static void rf_set_state(struct refusal *r, enum rf_state st)
{
    wm_log(WM_LOG_DEBUG, r->id, "refuse: %s -> %s", rf_names[r->st], rf_names[st]);
    r->st = st;
}

static void rf_finish(struct refusal *r, const char *end)
{
    if (r->log) {
        wm_log(WM_LOG_INFO, r->id,
               "access proto=%s client=%s target=%s code=%d in=%llu out=%llu ms=%llu end=%s "
               "why=\"%s\"",
               r->proto, r->peer, r->target[0] ? r->target : "-", r->code,
               (unsigned long long)r->in, (unsigned long long)r->out,
               (unsigned long long)(wm_now_ms() - r->start_ms), end, r->why);
    } else {
        wm_log(WM_LOG_DEBUG, r->id, "refuse client=%s code=%d end=%s", r->peer, r->code, end);
    }
    wm_listen_stats_conn_close(r->stats, r->in, r->out);
    wm_listen_stats_unref(r->stats);
    wm_worker_conn_del(r->w, &r->link);
    bufferevent_free(r->bev);
    free(r);
}

static void rf_abort(struct wm_conn_link *link)
{
    rf_finish((struct refusal *)link, "shutdown");
}

/* Queue bytes of the handshake (a method choice) or the final answer. */
static void rf_send(struct refusal *r, const void *p, size_t n)
{
    evbuffer_add(bufferevent_get_output(r->bev), p, n);
    r->out += n;
}

static void rf_answered(struct refusal *r, int code)
{
    r->code = code;
    rf_set_state(r, RF_FLUSH);
}

static void rf_drain(struct refusal *r, size_t n)
{
    evbuffer_drain(bufferevent_get_input(r->bev), n);
    r->in += n;
}

static void rf_target(struct refusal *r, const struct wm_socks_addr *a)
{
    wm_addr_join(a->host, a->port, r->target, sizeof(r->target));
}

/* ---- one step per state: -1 malformed, 0 wait (more bytes, or the answer
 * is queued), 1 a message was taken and the next may follow ---- */

static int s5_greeting(struct refusal *r, const uint8_t *p, size_t n)
{
    bool none = false;
    bool up = false;
    int k = wm_socks5_parse_greeting(p, n, &none, &up);

    if (k <= 0) {
        return k < 0 ? -1 : 0;
    }
    uint8_t m = none ? WM_SOCKS5_METHOD_NONE : up ? WM_SOCKS5_METHOD_USERPASS
                                                  : WM_SOCKS5_METHOD_REFUSED;
    uint8_t choice[2] = {5, m};
    rf_drain(r, (size_t)k);
    rf_send(r, choice, sizeof(choice));
    if (m == WM_SOCKS5_METHOD_REFUSED) {
        rf_answered(r, -1);
        return 0;
    }
    rf_set_state(r, none ? RF_S5_REQUEST : RF_S5_AUTH);
    return 1;
}

static int s5_auth(struct refusal *r, const uint8_t *p, size_t n)
{
    static const uint8_t ok[2] = {1, 0};
    char user[256];
    char pass[256];
    size_t ulen;
    size_t plen;
    int k = wm_socks5_parse_userpass(p, n, user, &ulen, pass, &plen);

    explicit_bzero(pass, sizeof(pass));
    if (k <= 0) {
        return k < 0 ? -1 : 0;
    }
    /* Not checked: nothing is granted, the request gets a failure. */
    rf_drain(r, (size_t)k);
    rf_send(r, ok, sizeof(ok));
    rf_set_state(r, RF_S5_REQUEST);
    return 1;
}

static int s5_request(struct refusal *r, const uint8_t *p, size_t n)
{
    uint8_t rep[32];
    uint8_t cmd;
    struct wm_socks_addr a;
    int k = wm_socks5_parse_request(p, n, &cmd, &a);

    if (k == 0 || (k < 0 && k != WM_SOCKS_EATYP)) {
        return k < 0 ? -1 : 0;
    }
    if (k > 0) {
        rf_target(r, &a);
        rf_drain(r, (size_t)k);
    }
    rf_send(r, rep, wm_socks5_build_reply(rep, WM_SOCKS5_REP_FAILURE, NULL));
    rf_answered(r, WM_SOCKS5_REP_FAILURE);
    return 0;
}

static int s4_request(struct refusal *r, const uint8_t *p, size_t n)
{
    uint8_t rep[8];
    uint8_t cmd;
    struct wm_socks_addr a;
    char user[256];
    int k = wm_socks4_parse_request(p, n, &cmd, &a, user);

    if (k < 0) {
        return -1;
    }
    if (k > 0) {
        rf_target(r, &a);
        rf_drain(r, (size_t)k);
        rf_send(r, rep, wm_socks4_build_reply(rep, WM_SOCKS4_REP_REJECTED));
        rf_answered(r, WM_SOCKS4_REP_REJECTED);
    }
    return 0;
}

/* The request line's target, for the log: printable, up to a space. */
static void http_target(struct refusal *r, const uint8_t *p, size_t n)
{
    const uint8_t *sp = memchr(p, ' ', n);
    size_t k = 0;

    if (sp == NULL) {
        return;
    }
    for (const uint8_t *q = sp + 1; q < p + n && *q > ' ' && *q < 0x7f; q++) {
        if (k + 1 < sizeof(r->target)) {
            r->target[k++] = (char)*q;
        }
    }
    r->target[k] = '\0';
}

static void answer_http(struct refusal *r)
{
    struct evbuffer *in = bufferevent_get_input(r->bev);
    struct evbuffer *out = bufferevent_get_output(r->bev);
    size_t n = evbuffer_get_length(in);
    size_t before = evbuffer_get_length(out);

    http_target(r, evbuffer_pullup(in, (ssize_t)(n < 1024 ? n : 1024)), n < 1024 ? n : 1024);
    rf_drain(r, n);
    wm_http_write_error(out, 502, true, NULL, r->why);
    r->out += evbuffer_get_length(out) - before;
    rf_answered(r, 502);
}

static int http_head(struct refusal *r)
{
    struct evbuffer *in = bufferevent_get_input(r->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);

    if (end.pos < 0) {
        end = evbuffer_search(in, "\n\n", 2, NULL);
    }
    if (end.pos >= 0 || evbuffer_get_length(in) > REFUSE_HEAD_MAX) {
        answer_http(r);
    }
    return 0;
}

static void rf_read_cb(struct bufferevent *bev, void *arg)
{
    struct refusal *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    int go = 1;

    while (go > 0 && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_length(in);
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)(n < 1024 ? n : 1024));
        n = n < 1024 ? n : 1024;
        switch (r->st) {
        case RF_SNIFF:
            rf_set_state(r, p[0] == 5 ? RF_S5_GREETING : p[0] == 4 ? RF_S4_REQUEST : RF_HTTP_HEAD);
            break;
        case RF_S5_GREETING:
            go = s5_greeting(r, p, n);
            break;
        case RF_S5_AUTH:
            go = s5_auth(r, p, n);
            break;
        case RF_S5_REQUEST:
            go = s5_request(r, p, n);
            break;
        case RF_S4_REQUEST:
            go = s4_request(r, p, n);
            break;
        case RF_HTTP_HEAD:
            go = http_head(r);
            break;
        case RF_FLUSH:
        case RF_LINGER:
        case RF_COUNT:
            rf_drain(r, evbuffer_get_length(in));
            go = 0;
            break;
        }
    }
    if (go < 0) {
        rf_finish(r, "malformed");
    }
}

static void rf_write_cb(struct bufferevent *bev, void *arg)
{
    struct refusal *r = arg;
    struct timeval tv = {REFUSE_LINGER_MS / 1000, (REFUSE_LINGER_MS % 1000) * 1000};

    if (r->st != RF_FLUSH || evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    rf_set_state(r, RF_LINGER);
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    bufferevent_set_timeouts(bev, &tv, NULL);
}

static void rf_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct refusal *r = arg;

    (void)bev;
    if (r->st == RF_HTTP_HEAD && (what & BEV_EVENT_TIMEOUT) &&
        evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
        answer_http(r); /* a head that never ends still learns why */
        bufferevent_enable(bev, EV_READ);
        return;
    }
    rf_finish(r, r->st == RF_LINGER                ? "closed"
                 : (what & BEV_EVENT_TIMEOUT) != 0 ? "handshake-timeout"
                                                   : "client-closed");
}

void tnode_refuse_proxy(int fd, const char *peer, const char *proto, const char *why,
                        struct wm_listen_stats *stats, bool log)
{
    struct wm_worker *w = wm_worker_self();
    struct refusal *r = calloc(1, sizeof(*r));
    struct timeval tv = {REFUSE_HANDSHAKE_MS / 1000, (REFUSE_HANDSHAKE_MS % 1000) * 1000};

    if (r == NULL) {
        close(fd);
        return;
    }
    r->bev = bufferevent_socket_new(wm_worker_base(w), fd, BEV_OPT_CLOSE_ON_FREE);
    if (r->bev == NULL) {
        close(fd);
        free(r);
        return;
    }
    r->id = wm_log_next_id();
    r->w = w;
    r->proto = proto;
    r->log = log;
    r->code = -1;
    r->start_ms = wm_now_ms();
    r->link.abort = rf_abort;
    r->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    snprintf(r->peer, sizeof(r->peer), "%s", peer != NULL ? peer : "-");
    snprintf(r->why, sizeof(r->why), "%s", why);
    wm_worker_conn_add(w, &r->link);
    bufferevent_setcb(r->bev, rf_read_cb, rf_write_cb, rf_event_cb, r);
    bufferevent_set_timeouts(r->bev, &tv, &tv);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
}
