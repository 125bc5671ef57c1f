/*
 * core/relay.h - the one byte relay between two endpoints.
 *
 * Endpoints are bufferevents of any kind: plain socket, TLS
 * (bufferevent_openssl) or a virtual tunnel stream (one end of a
 * bufferevent_pair). Rules:
 *  - back-pressure: while the destination's output holds more than
 *    high_water bytes, the source is not read, so memory per relay is
 *    bounded whatever the peers' speeds;
 *  - half-close: EOF from one side becomes a write shutdown on the other
 *    (after its pending output is flushed); the other direction keeps flowing;
 *  - an error on one side flushes what was already read from it to the
 *    other side, then ends the relay;
 *  - idle: no byte read either way for idle_ms (and none held by the rate
 *    limit, and none taken by a peer from what we or its socket hold for
 *    it: a slow reader is not idle) ends the relay, looked at every quarter
 *    of idle_ms;
 *  - rate (when set): each direction moves at most `rate` bytes per
 *    `rate_ms` (a token bucket holding a tenth of a second's worth, at
 *    least WM_RELAY_RATE_BURST_MIN): bytes beyond it wait in the source's
 *    input, which is not read meanwhile, and an EOF or error behind them
 *    goes on once they have gone (an error's bytes go at once).
 * Bytes already sitting in either input buffer when the relay starts (early
 * data behind a handshake) are forwarded first.
 */
#ifndef WM_CORE_RELAY_H
#define WM_CORE_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
struct wm_relay;

enum wm_relay_end {
    WM_RELAY_END_CLOSED = 0, /* both directions finished */
    WM_RELAY_END_IDLE,       /* idle timeout */
    WM_RELAY_END_ERR_A,      /* error (reset, TLS failure) on side a */
    WM_RELAY_END_ERR_B,      /* error on side b */
    WM_RELAY_END_ABORTED,    /* wm_relay_abort() */
    WM_RELAY_END_COUNT
};

#define WM_RELAY_RATE_BURST_MIN 16384

struct wm_relay_conf {
    int idle_ms;       /* <= 0: no idle timeout */
    size_t high_water; /* 0: WM_RELAY_HIGH_WATER */
    uint64_t rate;     /* bytes per rate_ms, each direction; 0: no limit */
    uint32_t rate_ms;
};

struct wm_relay_result {
    uint64_t a_to_b; /* bytes read from a and queued to b */
    uint64_t b_to_a;
    enum wm_relay_end end;
    int err; /* errno of the failing side when known, else 0 */
};

/* Called once when the relay ends; both bufferevents are already freed and
 * the relay is freed right after the call returns. */
typedef void (*wm_relay_done_cb)(void *arg, const struct wm_relay_result *res);

/* Start relaying between a and b. Takes ownership of both bufferevents
 * (freed when the relay ends; create them with BEV_OPT_CLOSE_ON_FREE) and
 * replaces their callbacks. Returns NULL on allocation failure, in which
 * case the bufferevents are still the caller's. */
struct wm_relay *wm_relay_start(struct event_base *base, struct bufferevent *a,
                                struct bufferevent *b, const struct wm_relay_conf *conf,
                                wm_relay_done_cb cb, void *arg);

/* End the relay now; the done callback runs before this returns. */
void wm_relay_abort(struct wm_relay *r);

/* Bytes moved so far, for status reporting. */
void wm_relay_counts(const struct wm_relay *r, uint64_t *a_to_b, uint64_t *b_to_a);

const char *wm_relay_end_str(enum wm_relay_end end);

#endif
