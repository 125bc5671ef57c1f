#include "core/service.h"

#include <stdio.h>
#include <stdlib.h>

void wm_service_init(struct wm_service *svc, const char *kind, wm_service_accept_fn accept,
                     void (*destroy)(struct wm_service *))
{
    svc->refs = 1;
    svc->kind = kind;
    svc->accept = accept;
    svc->destroy = destroy;
}

struct wm_service *wm_service_ref(struct wm_service *svc)
{
    __atomic_add_fetch(&svc->refs, 1, __ATOMIC_RELAXED);
    return svc;
}

void wm_service_unref(struct wm_service *svc)
{
    if (svc != NULL && __atomic_sub_fetch(&svc->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        svc->destroy(svc);
    }
}

struct wm_listen_stats *wm_listen_stats_new(const char *addr)
{
    struct wm_listen_stats *s = calloc(1, sizeof(*s));

    if (s != NULL) {
        s->refs = 1;
        snprintf(s->addr, sizeof(s->addr), "%s", addr);
    }
    return s;
}

struct wm_listen_stats *wm_listen_stats_ref(struct wm_listen_stats *s)
{
    if (s != NULL) {
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    }
    return s;
}

void wm_listen_stats_unref(struct wm_listen_stats *s)
{
    if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(s);
    }
}

static size_t open_total;

size_t wm_listen_open_total(void)
{
    return __atomic_load_n(&open_total, __ATOMIC_RELAXED);
}

void wm_listen_stats_conn_open(struct wm_listen_stats *s)
{
    if (s != NULL) {
        __atomic_add_fetch(&open_total, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->open, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->accepted, 1, __ATOMIC_RELAXED);
    }
}

void wm_listen_stats_conn_close(struct wm_listen_stats *s, unsigned long long in,
                                unsigned long long out)
{
    if (s != NULL) {
        __atomic_sub_fetch(&open_total, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&s->open, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->bytes_in, in, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->bytes_out, out, __ATOMIC_RELAXED);
    }
}
