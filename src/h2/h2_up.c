/*
 * h2/h2_up.c - the HTTP/1.1 "Upgrade: h2c" handshake (RFC 7540 3.2) on
 * plain ports: a route op sees the request, we answer 101 once the engine
 * has let go of the connection, and the request becomes stream 1.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2_int.h"
#include "http/fwd.h"
#include "http/head.h"
#include "net/conn.h"

#define SETTINGS_MAX 1024

struct upgrade {
    struct wm_conn *c;           /* held (wm_conn_enter) until the event runs */
    struct wm_hfwd *f;
    const struct wm_h2_front *fr;
    struct evbuffer *head;       /* the request as HTTP/1.1, for stream 1 */
    bool is_head;
    size_t slen;
    uint8_t settings[SETTINGS_MAX];
};

static bool has_token(struct wm_http_head *req, const char *name, const char *tok)
{
    size_t n;
    const char *v = wm_http_head_get(req, name, &n);
    size_t pos = 0;
    const char *t;
    size_t tn;

    while (v != NULL && wm_list_next(v, n, &pos, &t, &tn)) {
        if (wm_strieq(t, tn, tok)) {
            return true;
        }
    }
    return false;
}

bool wm_h2_wants_upgrade(struct wm_http_head *req)
{
    size_t n;
    const char *cl = wm_http_head_get(req, "content-length", &n);

    return wm_http_head_minor(req) >= 1 && has_token(req, "upgrade", "h2c") &&
           wm_http_head_get(req, "http2-settings", &n) != NULL &&
           wm_http_head_get(req, "transfer-encoding", &n) == NULL &&
           (cl == NULL || (n == 1 && cl[0] == '0'));
}

/* base64url without padding (RFC 7540 3.2.1). -1 when malformed. */
static int b64url(const char *s, size_t n, uint8_t *out, size_t cap, size_t *olen)
{
    uint32_t acc = 0;
    int bits = 0;

    *olen = 0;
    for (size_t i = 0; i < n; i++) {
        int v;
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z') {
            v = ch - 'A';
        } else if (ch >= 'a' && ch <= 'z') {
            v = ch - 'a' + 26;
        } else if (ch >= '0' && ch <= '9') {
            v = ch - '0' + 52;
        } else if (ch == '-' || ch == '+') {
            v = 62;
        } else if (ch == '_' || ch == '/') {
            v = 63;
        } else if (ch == '=') {
            break;
        } else {
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (*olen >= cap) {
                return -1;
            }
            out[(*olen)++] = (uint8_t)(acc >> bits);
        }
    }
    return 0;
}

static void build_head(struct upgrade *u, struct wm_http_head *req)
{
    size_t mlen;
    size_t ulen;
    const char *m = wm_http_head_method(req, &mlen);
    const char *url = wm_http_head_url(req, &ulen);

    evbuffer_add(u->head, m, mlen);
    evbuffer_add(u->head, " ", 1);
    evbuffer_add(u->head, url, ulen);
    evbuffer_add(u->head, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < wm_http_head_nfields(req); i++) {
        struct wm_http_field f;
        wm_http_head_field(req, i, &f);
        if (wm_http_head_is_hop(req, f.name, f.nlen) ||
            wm_strieq(f.name, f.nlen, "http2-settings")) {
            continue;
        }
        evbuffer_add(u->head, f.name, f.nlen);
        evbuffer_add(u->head, ": ", 2);
        evbuffer_add(u->head, f.value, f.vlen);
        evbuffer_add(u->head, "\r\n", 2);
    }
    evbuffer_add(u->head, "\r\n", 2);
    u->is_head = mlen == 4 && memcmp(m, "HEAD", 4) == 0;
}

static void upgrade_free(struct upgrade *u)
{
    evbuffer_free(u->head);
    free(u);
}

static void upgrade_now(struct upgrade *u)
{
    static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             "Upgrade: h2c\r\n\r\n";
    struct wm_conn *c = u->c;
    struct wm_h2 *h;
    struct h2_stream *st;

    wm_hfwd_detach(u->f);
    bufferevent_write(c->bev, sw, sizeof(sw) - 1);
    h = h2_begin(c, u->fr);
    if (h == NULL) {
        return;
    }
    if (nghttp2_session_upgrade2(h->s, u->settings, u->slen, u->is_head, NULL) != 0 ||
        (st = h2s_new(h, 1)) == NULL) {
        wm_conn_finish(c, "h2c-upgrade-failed");
        return;
    }
    wm_log(WM_LOG_DEBUG, c->id, "h2: upgraded from HTTP/1.1 (h2c)");
    wm_h2_req_free(st->req);
    st->req = NULL;
    st->is_head = u->is_head;
    st->req_done = true;
    nghttp2_session_set_stream_user_data(h->s, 1, st);
    h2_idle_check(h);
    h2s_launch(h, st, u->head);
    h2_goaway_if_draining(h); /* stopping: this request is the last (stream 1) */
    h2_feed(h); /* the preface may be here already */
}

static void upgrade_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upgrade *u = arg;
    struct wm_conn *c = u->c;

    (void)fd;
    (void)what;
    if (!wm_conn_closed(c)) {
        upgrade_now(u);
    }
    upgrade_free(u);
    wm_conn_leave(c);
}

int wm_h2_upgrade(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                  const struct wm_h2_front *h2)
{
    struct upgrade *u;
    size_t n;
    const char *sv = wm_http_head_get(req, "http2-settings", &n);
    struct timeval now = {0, 0};

    if (h2 == NULL || sv == NULL || (u = calloc(1, sizeof(*u))) == NULL) {
        return 0;
    }
    u->c = c;
    u->f = f;
    u->fr = h2;
    u->head = evbuffer_new();
    if (u->head == NULL || b64url(sv, n, u->settings, sizeof(u->settings), &u->slen) < 0 ||
        u->slen % 6 != 0) {
        if (u->head != NULL) {
            evbuffer_free(u->head);
        }
        free(u);
        return 0; /* a bad HTTP2-Settings: go on as HTTP/1.1 */
    }
    build_head(u, req);
    if (event_base_once(wm_worker_base(c->w), -1, EV_TIMEOUT, upgrade_cb, u, &now) < 0) {
        upgrade_free(u);
        return 0;
    }
    wm_conn_enter(c);
    return WM_HFWD_TAKEN;
}
