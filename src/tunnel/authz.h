/*
 * tunnel/authz.h - the server's table of known clients ([[proxy.clients]]):
 * who a carrier is, and what it may register (domains, public ports,
 * groups). Pure functions over the table; no I/O.
 */
#ifndef WM_TUNNEL_AUTHZ_H
#define WM_TUNNEL_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

#include "tunnel/tunnel.h"

/* A deep copy of n entries (strings, lists, port bitmaps): the caller frees
 * it with wm_tunnel_clients_free(). NULL on OOM (or when n is 0). */
struct wm_tunnel_client *wm_tunnel_clients_copy(const struct wm_tunnel_client *src, size_t n);
void wm_tunnel_clients_free(struct wm_tunnel_client *c, size_t n);

/* The entry named exactly name (len bytes), or NULL. */
const struct wm_tunnel_client *wm_tunnel_client_find(const struct wm_tunnel_client *tab, size_t n,
                                                     const char *name, size_t len);
/* The first entry whose subject is cn (exact), or NULL. */
const struct wm_tunnel_client *wm_tunnel_client_by_subject(const struct wm_tunnel_client *tab,
                                                           size_t n, const char *cn);

/* Does pattern cover domain (both ASCII, case-insensitive)? "*" covers
 * everything; "*.x.com" covers every name under x.com (one label or more,
 * wildcard mapping domains like "*.a.x.com" included) but not x.com; any
 * other pattern covers exactly itself. */
bool wm_tunnel_domain_match(const char *pattern, const char *domain);

/* What client c may register. */
bool wm_tunnel_client_may_domain(const struct wm_tunnel_client *c, const char *domain);
bool wm_tunnel_client_may_port(const struct wm_tunnel_client *c, unsigned port);
bool wm_tunnel_client_may_group(const struct wm_tunnel_client *c, const char *group);

#endif
