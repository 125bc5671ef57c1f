/*
 * stream/stream.h - L4 forwarding ([stream]): TCP servers (splice, TLS
 * either side, PROXY protocol both ways, upstream failover), UDP servers
 * (a session per client address), and the WebSocket bridges ws2tcp,
 * tcp2ws and tcp2wss.
 *
 * Life cycle across reloads: wm_stream_prepare() compiles a loaded
 * [stream] section on the main thread into immutable settings (refcounted);
 * one service per listening address holds a reference, and so does every
 * connection or UDP session it started, so they finish under the settings
 * they began with while the listener (kept by net/lset.h) serves the new
 * ones. UDP sessions belong to the worker's socket and outlive the swap.
 */
#ifndef WM_STREAM_STREAM_H
#define WM_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>

struct wm_conf_stream;
struct wm_err;
struct wm_service;
struct wm_stream;

/* Defaults (nginx `stream` where wmproxy has none). */
#define WM_STREAM_CONNECT_MS 10000      /* connect_timeout */
#define WM_STREAM_IDLE_MS 600000        /* timeout: no byte either way (nginx 10 min) */
#define WM_STREAM_UDP_IDLE_MS 60000     /* client_timeout (wmproxy) */
#define WM_STREAM_UDP_SESSIONS 4096     /* max_sessions, per worker and UDP listener */
#define WM_STREAM_HEAD_MS 10000         /* PROXY header / WebSocket handshake */
#define WM_STREAM_UDP_MAX 65507         /* largest UDP payload over IPv4 */

/* Compile s. 0 with *out (refcount 1), or -1 with err (err->key names the
 * key, e.g. "stream.server[1].proxy_url"). */
int wm_stream_prepare(const struct wm_conf_stream *s, struct wm_stream **out, struct wm_err *err);

struct wm_stream *wm_stream_ref(struct wm_stream *st);
void wm_stream_unref(struct wm_stream *st); /* NULL is a no-op */

/* Listening addresses, each once. *dgram: a UDP socket. */
size_t wm_stream_nlisten(const struct wm_stream *st);
const char *wm_stream_listen_addr(const struct wm_stream *st, size_t i, bool *dgram);

/* The service of listening address i (refcount 1; holds a reference on st). */
struct wm_service *wm_stream_service_new(struct wm_stream *st, size_t i);

#endif
