/*
 * app/services.c - turn a configuration (or the command line) into the
 * services and listening addresses of the process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/app_int.h"
#include "conf/config.h"
#include "core/err.h"
#include "core/service.h"
#include "tunnel/tunnel.h"

static int add(struct wm_app_services *s, const char *addr, struct wm_service *svc, bool pinned,
               char *msg, size_t cap)
{
    struct wm_lspec *ns = realloc(s->specs, (s->n + 1) * sizeof(*ns));
    char(*na)[64] = NULL;

    if (ns != NULL) {
        s->specs = ns;
        na = realloc(s->addrs, (s->n + 1) * sizeof(*na));
    }
    if (ns == NULL || na == NULL) {
        wm_service_unref(svc);
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    s->addrs = na;
    snprintf(s->addrs[s->n], sizeof(s->addrs[s->n]), "%s", addr);
    for (size_t i = 0; i < s->n; i++) {
        s->specs[i].addr = s->addrs[i]; /* storage may have moved */
    }
    /* Whole-struct assignment: fields added to wm_lspec later start zeroed
     * (realloc leaves them uninitialised). */
    s->specs[s->n] = (struct wm_lspec){.addr = s->addrs[s->n], .svc = svc, .pinned = pinned};
    s->n++;
    return 0;
}

static int plain_proxy(const struct wm_conf_proxy *p, struct wm_app_services *out, char *msg,
                       size_t cap)
{
    struct wm_proxy_opts po;

    wm_proxy_opts_default(&po);
    po.flags = p->flags;
    po.connect_timeout_ms = (int)p->connect_timeout_ms;
    po.idle_timeout_ms = (int)p->idle_timeout_ms;
    po.handshake_timeout_ms = (int)p->handshake_timeout_ms;
    if (p->username != NULL) {
        po.auth = true;
        snprintf(po.user, sizeof(po.user), "%s", p->username);
        snprintf(po.pass, sizeof(po.pass), "%s", p->password != NULL ? p->password : "");
    }
    struct wm_service *svc = wm_proxy_service_new(&po);
    explicit_bzero(&po, sizeof(po));
    if (svc == NULL) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return add(out, p->bind, svc, false, msg, cap);
}

/* The listeners of one [proxy] section: a plain forward proxy, or the
 * tunnel's (pinned to worker 0) and, for a server node with its own
 * center_addr, the forward proxy on bind_addr too. */
static int from_proxy(const struct wm_conf_proxy *p, struct wm_app_services *out, char *msg,
                      size_t cap)
{
    const char *addr[WM_TUNNEL_LISTEN_COUNT];
    enum wm_tunnel_listen kind[WM_TUNNEL_LISTEN_COUNT];
    size_t n;
    bool bind_used = false;

    if (!wm_tunnel_wanted(p)) {
        return plain_proxy(p, out, msg, cap);
    }
    if (wm_tunnel_prepare(p, &out->tunnel, msg, cap) < 0) {
        return -1;
    }
    n = wm_tunnel_listeners(out->tunnel, addr, kind, WM_TUNNEL_LISTEN_COUNT);
    for (size_t i = 0; i < n; i++) {
        struct wm_service *svc = wm_tunnel_service_new(kind[i]);
        if (svc == NULL) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        if (strcmp(addr[i], p->bind) == 0) {
            bind_used = true;
        }
        if (add(out, addr[i], svc, true, msg, cap) < 0) {
            return -1;
        }
    }
    return bind_used ? 0 : plain_proxy(p, out, msg, cap);
}

/* The services of one [proxy] section into out; err on failure. (The
 * builders below still write msg/cap: the tunnel's prepare does.) */
static int from_section(const struct wm_conf_proxy *p, struct wm_app_services *out,
                        struct wm_err *err)
{
    char msg[WM_ERR_MSG_MAX];

    memset(out, 0, sizeof(*out));
    if (p != NULL && from_proxy(p, out, msg, sizeof(msg)) < 0) {
        wm_app_services_free(out);
        return wm_err_set(err, NULL, 0, 0, NULL, "%s", msg);
    }
    return 0;
}

int wm_app_services_from_conf(const struct wm_conf *c, struct wm_app_services *out,
                              struct wm_err *err)
{
    return from_section(c->proxy, out, err);
}

int wm_app_services_from_flags(const struct wm_app_opts *o, struct wm_app_services *out,
                               struct wm_err *err)
{
    return from_section(&o->proxy, out, err);
}

void wm_app_services_free(struct wm_app_services *s)
{
    for (size_t i = 0; i < s->n; i++) {
        wm_service_unref(s->specs[i].svc);
    }
    free(s->specs);
    free(s->addrs);
    wm_tunnel_settings_free(s->tunnel);
    memset(s, 0, sizeof(*s));
}
