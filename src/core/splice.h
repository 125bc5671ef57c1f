/*
 * core/splice.h - the zero-copy relay for two plain TCP sockets, with
 * splice(2) through a pipe per direction (created on first data).
 *
 * Same contract as core/relay.h (back-pressure, half-close, idle timeout,
 * result callback); used instead of it when both ends are plain sockets.
 * Bytes already read from a socket (early data behind a handshake) or
 * queued for it (a SOCKS reply) are passed in and go first.
 */
#ifndef WM_CORE_SPLICE_H
#define WM_CORE_SPLICE_H

#include "core/relay.h"

struct evbuffer;
struct wm_splice;

/* Relay fds a and b (connected, non-blocking; both closed at the end).
 * a_pre: bytes for b that were read from a already; b_pre: bytes for a.
 * Their contents are taken (the evbuffers stay the caller's; may be NULL).
 * Returns NULL on allocation failure (fds untouched). */
struct wm_splice *wm_splice_start(struct event_base *base, int a, int b, struct evbuffer *a_pre,
                                  struct evbuffer *b_pre, const struct wm_relay_conf *conf,
                                  wm_relay_done_cb cb, void *arg);

/* End now; the callback runs before this returns. */
void wm_splice_abort(struct wm_splice *s);

void wm_splice_counts(const struct wm_splice *s, uint64_t *a_to_b, uint64_t *b_to_a);

#endif
