/*
 * reverse/upstream.h - upstream groups for other services ([stream]): the
 * reverse proxy's balancing (weight, round_robin, least_conn, ip_hash,
 * random, backup servers), passive health (fall_times failures in a row
 * take a server out for fail_timeout) and active checks by the health
 * checker of worker 0, here TCP connects. Health records are shared by
 * workers and kept across reloads by "scope:name|host:port".
 *
 * Ownership: a group is immutable once built and may be used by every
 * worker at once; its owner frees it after the last user is gone.
 */
#ifndef WM_REVERSE_UPSTREAM_H
#define WM_REVERSE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct wm_conf_upstream;
struct wm_upstream;

/* Build the group of cu; scope prefixes its health keys ("stream").
 * NULL with msg filled (bad address, no server, OOM). */
struct wm_upstream *wm_upstream_new(const char *scope, const struct wm_conf_upstream *cu,
                                    char *msg, size_t cap);

/* A group of the one server host:port (a URL target). NULL on OOM. */
struct wm_upstream *wm_upstream_single(const char *scope, const char *host, uint16_t port);

void wm_upstream_free(struct wm_upstream *u); /* NULL is a no-op */

const char *wm_upstream_name(const struct wm_upstream *u);
size_t wm_upstream_count(const struct wm_upstream *u);

/* Choose a server for client (may be NULL), skipping the indexes set in
 * tried (bit i, first 64). Returns its index with *host / *port (borrowed
 * from u), or -1 when none is up. */
int wm_upstream_pick(struct wm_upstream *u, const struct sockaddr *client, uint64_t tried,
                     const char **host, uint16_t *port);

/* Server i's host and port (borrowed from u). */
void wm_upstream_server(const struct wm_upstream *u, int i, const char **host, uint16_t *port);

/* Outcome of a connection to server i: a failure counts towards taking it
 * out (logged); success clears the count. */
void wm_upstream_failed(struct wm_upstream *u, int i, const char *why);
void wm_upstream_ok(struct wm_upstream *u, int i);

/* Connections now on server i (least_conn): +1 on begin, -1 on end. */
void wm_upstream_active(struct wm_upstream *u, int i, int delta);

#endif
