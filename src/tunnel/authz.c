/*
 * tunnel/authz.c - see authz.h.
 */
#include "tunnel/authz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *dup_or_null(const char *s, bool *oom)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    if ((d = strdup(s)) == NULL) {
        *oom = true;
    }
    return d;
}

static const char *const *list_copy(const char *const *src, size_t n, bool *oom)
{
    char **l;

    if (n == 0) {
        return NULL;
    }
    if ((l = calloc(n, sizeof(*l))) == NULL) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        l[i] = dup_or_null(src[i], oom);
    }
    return (const char *const *)l;
}

static void list_free(const char *const *l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++) {
        free((char *)l[i]);
    }
    free((void *)l);
}

void wm_tunnel_clients_free(struct wm_tunnel_client *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        if (c[i].password != NULL) {
            explicit_bzero((char *)c[i].password, strlen(c[i].password));
        }
        free((char *)c[i].name);
        free((char *)c[i].password);
        free((char *)c[i].subject);
        list_free(c[i].domains, c[i].ndomains);
        list_free(c[i].groups, c[i].ngroups);
        free((uint8_t *)c[i].ports);
    }
    free(c);
}

struct wm_tunnel_client *wm_tunnel_clients_copy(const struct wm_tunnel_client *src, size_t n)
{
    struct wm_tunnel_client *c = n > 0 ? calloc(n, sizeof(*c)) : NULL;
    bool oom = false;

    if (c == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        c[i].name = dup_or_null(src[i].name, &oom);
        c[i].password = dup_or_null(src[i].password, &oom);
        c[i].subject = dup_or_null(src[i].subject, &oom);
        c[i].domains = list_copy(src[i].domains, src[i].ndomains, &oom);
        c[i].ndomains = c[i].domains != NULL ? src[i].ndomains : 0;
        c[i].groups = list_copy(src[i].groups, src[i].ngroups, &oom);
        c[i].ngroups = c[i].groups != NULL ? src[i].ngroups : 0;
        if (src[i].ports != NULL) {
            uint8_t *p = malloc(WM_TUNNEL_PORT_BYTES);
            if (p != NULL) {
                memcpy(p, src[i].ports, WM_TUNNEL_PORT_BYTES);
            }
            oom |= p == NULL;
            c[i].ports = p;
        }
    }
    if (oom) {
        wm_tunnel_clients_free(c, n);
        return NULL;
    }
    return c;
}

const struct wm_tunnel_client *wm_tunnel_client_find(const struct wm_tunnel_client *tab, size_t n,
                                                     const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (tab[i].name != NULL && strlen(tab[i].name) == len && memcmp(tab[i].name, name, len) == 0) {
            return &tab[i];
        }
    }
    return NULL;
}

const struct wm_tunnel_client *wm_tunnel_client_by_subject(const struct wm_tunnel_client *tab,
                                                           size_t n, const char *cn)
{
    for (size_t i = 0; i < n; i++) {
        if (tab[i].subject != NULL && strcmp(tab[i].subject, cn) == 0) {
            return &tab[i];
        }
    }
    return NULL;
}

bool wm_tunnel_domain_match(const char *pattern, const char *domain)
{
    size_t pl = strlen(pattern);
    size_t dl = strlen(domain);

    if (strcmp(pattern, "*") == 0) {
        return true;
    }
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* ".x.com" must end the domain, with at least one label before */
        const char *suffix = pattern + 1;
        size_t sl = pl - 1;
        return dl > sl && strcasecmp(domain + dl - sl, suffix) == 0 && domain[0] != '.';
    }
    return strcasecmp(pattern, domain) == 0;
}

bool wm_tunnel_client_may_domain(const struct wm_tunnel_client *c, const char *domain)
{
    for (size_t i = 0; i < c->ndomains; i++) {
        if (wm_tunnel_domain_match(c->domains[i], domain)) {
            return true;
        }
    }
    return false;
}

bool wm_tunnel_client_may_port(const struct wm_tunnel_client *c, unsigned port)
{
    return c->ports != NULL && port > 0 && port <= 65535 &&
           (c->ports[port / 8] & (1u << (port % 8))) != 0;
}

bool wm_tunnel_client_may_group(const struct wm_tunnel_client *c, const char *group)
{
    for (size_t i = 0; i < c->ngroups; i++) {
        if (strcmp(c->groups[i], group) == 0) {
            return true;
        }
    }
    return false;
}
