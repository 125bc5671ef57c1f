/*
 * proxy/pconn.c - the forward proxy's additions to a client connection.
 */
#include "proxy/pconn.h"

#include <string.h>

#include "core/util.h"
#include "net/dial.h"

static const char *const proto_names[WM_PCONN_PROTO_COUNT] = {
    "none", "http", "connect", "socks5", "socks4", "udp",
};

void wm_pconn_set_proto(struct wm_pconn *c, enum wm_pconn_proto proto)
{
    c->proto = proto;
    c->conn.proto = proto == WM_PCONN_SNIFF ? NULL : proto_names[proto];
}

bool wm_pconn_auth_ok(const struct wm_pconn *c, const char *user, size_t ulen, const char *pass,
                      size_t plen)
{
    const struct wm_proxy_opts *o = c->opts;
    bool u;
    bool p;

    if (!o->auth) {
        return true;
    }
    /* Evaluate both, always, so timing does not tell which one was wrong. */
    u = wm_ct_equal(user, ulen, o->user, strlen(o->user));
    p = wm_ct_equal(pass, plen, o->pass, strlen(o->pass));
    return u & p;
}

struct wm_dial *wm_pconn_dial(struct wm_pconn *c, const char *host, uint16_t port,
                              void (*cb)(int, enum wm_dial_status, const struct sockaddr *,
                                         socklen_t, void *),
                              void *arg)
{
    struct wm_dial_req req = {.host = host,
                              .port = port,
                              .timeout_ms = c->opts->connect_timeout_ms,
                              .acl = c->opts->acl,
                              .conn_id = c->conn.id,
                              .client = c->conn.peer_str};

    return wm_dial_start_req(c->conn.w, &req, cb, arg);
}

int wm_pconn_socks5_rep(int st)
{
    switch ((enum wm_dial_status)st) {
    case WM_DIAL_OK:
        return WM_SOCKS5_REP_OK;
    case WM_DIAL_REFUSED:
        return WM_SOCKS5_REP_REFUSED;
    case WM_DIAL_HOST_UNREACH:
    case WM_DIAL_RESOLVE:
        return WM_SOCKS5_REP_HOST_UNREACH;
    case WM_DIAL_NET_UNREACH:
        return WM_SOCKS5_REP_NET_UNREACH;
    case WM_DIAL_TIMEOUT:
        return WM_SOCKS5_REP_TTL_EXPIRED;
    case WM_DIAL_DENIED:
    case WM_DIAL_FORBIDDEN:
        return WM_SOCKS5_REP_NOT_ALLOWED;
    default:
        return WM_SOCKS5_REP_FAILURE;
    }
}

int wm_pconn_http_status(int st)
{
    if (st == WM_DIAL_DENIED || st == WM_DIAL_FORBIDDEN) {
        return 403;
    }
    return st == WM_DIAL_TIMEOUT ? 504 : 502;
}
