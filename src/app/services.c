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
#include "core/service.h"

static int add(struct wm_app_services *s, const char *addr, struct wm_service *svc, char *msg,
               size_t cap)
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
    s->specs[s->n].addr = s->addrs[s->n];
    s->specs[s->n].svc = svc;
    s->n++;
    return 0;
}

int wm_app_services_from_conf(const struct wm_conf *c, struct wm_app_services *out, char *msg,
                              size_t cap)
{
    memset(out, 0, sizeof(*out));
    if (c->proxy != NULL) {
        const struct wm_conf_proxy *p = c->proxy;
        struct wm_proxy_opts po;
        wm_proxy_opts_default(&po);
        po.flags = p->flags;
        po.connect_timeout_ms = (int)p->connect_timeout_ms;
        po.idle_timeout_ms = (int)p->idle_timeout_ms;
        po.handshake_timeout_ms = (int)p->handshake_timeout_ms;
        if (p->username != NULL) {
            po.auth = true;
            snprintf(po.user, sizeof(po.user), "%s", p->username);
            snprintf(po.pass, sizeof(po.pass), "%s", p->password);
        }
        struct wm_service *svc = wm_proxy_service_new(&po);
        explicit_bzero(&po, sizeof(po));
        if (svc == NULL) {
            snprintf(msg, cap, "out of memory");
            wm_app_services_free(out);
            return -1;
        }
        if (add(out, p->bind, svc, msg, cap) < 0) {
            wm_app_services_free(out);
            return -1;
        }
    }
    return 0;
}

int wm_app_services_from_flags(const struct wm_app_opts *o, struct wm_app_services *out,
                               char *msg, size_t cap)
{
    struct wm_service *svc = wm_proxy_service_new(&o->proxy);

    memset(out, 0, sizeof(*out));
    if (svc == NULL) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return add(out, o->bind, svc, msg, cap);
}

void wm_app_services_free(struct wm_app_services *s)
{
    for (size_t i = 0; i < s->n; i++) {
        wm_service_unref(s->specs[i].svc);
    }
    free(s->specs);
    free(s->addrs);
    memset(s, 0, sizeof(*s));
}
