/*
 * tunnel/ports.c - the public ports a tunnel server opens for tcp and udp
 * mappings with their own address (remote_port / bind), shared by the mappings of a
 * group and closed with the last of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "net/addr.h"
#include "net/listener.h"
#include "tunnel/server_int.h"

static struct tserver *current; /* where the per-port services route (worker 0) */

static struct pport *port_find(struct tserver *sv, const char *addr)
{
    for (struct pport *p = sv->ports; p != NULL; p = p->next) {
        if (strcmp(p->addr, addr) == 0) {
            return p;
        }
    }
    return NULL;
}

static void port_svc_destroy(struct wm_service *svc)
{
    free(svc);
}

static void port_svc_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                            const struct sockaddr *peer, socklen_t plen,
                            struct wm_listen_stats *stats)
{
    struct port_svc *ps = (struct port_svc *)svc;

    (void)w;
    if (current == NULL) {
        close(fd);
        return;
    }
    tserver_route_tcp(current, ps->key, fd, peer, plen, stats);
}

/* Open (or share) the public listener of a tcp mapping with its own port. */
int tserver_port_acquire(struct tserver *sv, const char *addr, char *err, size_t cap)
{
    struct pport *p = port_find(sv, addr);
    struct sockaddr_storage ss;
    socklen_t len;
    struct wm_err e;

    if (p != NULL) {
        p->refs++;
        return 0;
    }
    bool udp = strncmp(addr, "udp:", 4) == 0;
    if (wm_addr_parse_listen(addr + (udp ? 4 : 0), &ss, &len) < 0) {
        snprintf(err, cap, "bad public address %s", addr);
        return -1;
    }
    p = calloc(1, sizeof(*p));
    struct port_svc *ps = calloc(1, sizeof(*ps));
    if (p == NULL || ps == NULL) {
        free(p);
        free(ps);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    /* A client names its public port: never one already held, by us or
     * another process of ours (listeners use SO_REUSEPORT, and would share
     * it: connections or datagrams split between the two). */
    int type = udp ? SOCK_DGRAM : SOCK_STREAM;
    int fd = wm_listen_probe((struct sockaddr *)&ss, len, type, &e) < 0
                 ? -1
                 : wm_listen_socket((struct sockaddr *)&ss, len, type, &e);
    if (fd < 0) {
        free(p);
        free(ps);
        wm_fmt(err, cap, "%s", e.msg);
        return -1;
    }
    wm_service_init(&ps->base, "tunnel-port", port_svc_accept, port_svc_destroy);
    snprintf(ps->key, sizeof(ps->key), "%s", addr);
    struct wm_service *svc = &ps->base;
    if (udp) {
        free(ps); /* a UDP port's datagrams go to udp_map.c */
        svc = tudp_port_service_new(addr);
    }
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->stats = wm_listen_stats_new(addr);
    p->l = svc != NULL ? wm_listener_new(sv->n->w, fd, addr, svc, p->stats) : NULL;
    if (svc == NULL) {
        close(fd);
    }
    wm_service_unref(svc); /* the listener holds it */
    if (p->l == NULL) {
        wm_listen_stats_unref(p->stats);
        free(p);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    p->refs = 1;
    p->next = sv->ports;
    sv->ports = p;
    wm_log(WM_LOG_INFO, 0, "tunnel: public port %s opened", addr);
    return 0;
}

void tserver_port_release(struct tserver *sv, const char *addr)
{
    for (struct pport **pp = &sv->ports; *pp != NULL; pp = &(*pp)->next) {
        struct pport *p = *pp;
        if (strcmp(p->addr, addr) == 0) {
            if (--p->refs > 0) {
                return;
            }
            *pp = p->next;
            wm_listener_free(p->l);
            wm_listen_stats_unref(p->stats);
            wm_log(WM_LOG_INFO, 0, "tunnel: public port %s closed", addr);
            free(p);
            return;
        }
    }
}

/* A datagram on a udp mapping's port: the carrier and mapping it goes to. */
int tserver_route_udp(const char *key, struct wm_tun **t, char *name, size_t cap)
{
    struct rmap *r = current != NULL ? tserver_pick(current, WM_TUN_MODE_UDP, key) : NULL;

    if (r == NULL || r->owner->t == NULL) {
        return -1;
    }
    *t = r->owner->t;
    snprintf(name, cap, "%s", r->name);
    return 0;
}

void tserver_ports_owner(struct tserver *sv)
{
    current = sv;
}

void tserver_ports_free(struct tserver *sv)
{
    while (sv->ports != NULL) {
        struct pport *p = sv->ports;
        sv->ports = p->next;
        wm_listener_free(p->l);
        wm_listen_stats_unref(p->stats);
        free(p);
    }
    if (current == sv) {
        current = NULL;
    }
}
