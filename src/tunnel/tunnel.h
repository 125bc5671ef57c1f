/*
 * tunnel/tunnel.h - the tunnel node of this process: client part (one
 * carrier to a parent `server`, local two-level proxy entry, private
 * mappings) and/or server part (carriers from clients, public mapping
 * listeners, routing). Protocol: docs/tunnel.md.
 *
 * Life cycle across reloads:
 *   1. wm_tunnel_prepare() on the main thread builds immutable settings
 *      (TLS contexts, encoded mappings) and validates them;
 *   2. the caller opens the listeners (net/lset.h, pinned to worker 0) with
 *      the services below;
 *   3. wm_tunnel_install() hands the settings to worker 0, where all tunnel
 *      state lives: a client carrier whose settings did not change is kept,
 *      otherwise it is replaced; the server keeps its carriers.
 */
#ifndef WM_TUNNEL_TUNNEL_H
#define WM_TUNNEL_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct wm_conf_proxy;
struct wm_service;
struct wm_tunnel_settings;
struct wm_worker;

enum wm_tunnel_listen {
    WM_TUNNEL_LISTEN_ENTRY,     /* client: local two-level proxy entry */
    WM_TUNNEL_LISTEN_CENTER,    /* server: carriers from clients */
    WM_TUNNEL_LISTEN_MAP_HTTP,  /* server: public HTTP, routed by Host */
    WM_TUNNEL_LISTEN_MAP_HTTPS, /* server: public HTTPS (terminated here) */
    WM_TUNNEL_LISTEN_MAP_TCP,   /* server: public TCP, the default tcp mapping */
    WM_TUNNEL_LISTEN_MAP_PROXY, /* server: public port to a client's proxy */
    WM_TUNNEL_LISTEN_COUNT
};

/* Does this [proxy] section ask for a tunnel role at all? */
bool wm_tunnel_wanted(const struct wm_conf_proxy *p);

/* Build settings from p. Returns 0 with *out (caller frees, or installs),
 * or -1 with a message (a certificate that does not load, ...). */
int wm_tunnel_prepare(const struct wm_conf_proxy *p, struct wm_tunnel_settings **out, char *msg,
                      size_t cap);
void wm_tunnel_settings_free(struct wm_tunnel_settings *s);

/* The listening addresses the settings need: fills addr[i]/kind[i] for
 * up to max entries, returns the count. */
size_t wm_tunnel_listeners(const struct wm_tunnel_settings *s, const char **addr,
                           enum wm_tunnel_listen *kind, size_t max);

/* A service for one kind of tunnel listener (refcount 1). */
struct wm_service *wm_tunnel_service_new(enum wm_tunnel_listen kind);

/* Install s (taken; NULL removes the tunnel) on worker 0 and wait. Call
 * from the main thread after the listeners were applied. */
void wm_tunnel_install(struct wm_tunnel_settings *s);

/* Append `,"tunnel":{...}` (roles, parent connection, attached clients,
 * open streams, registered mappings) to a JSON object being built. Main
 * thread; asks worker 0 for a snapshot. Appends nothing without a tunnel. */
void wm_tunnel_status_json(struct evbuffer *out);

/* Worker 0, graceful stop: no reconnects, carriers close once idle. */
void wm_tunnel_drain(struct wm_worker *w);

/* Worker exit hook: on worker 0, free all tunnel state while its event
 * base still exists. */
void wm_tunnel_worker_exit(struct wm_worker *w, void *arg);

#endif
