/*
 * control/control.h - the HTTP control API (default 127.0.0.1:8837), served
 * by libevent's evhttp on the main thread's event loop.
 *
 * Endpoints: GET /status, GET /now, GET /metrics (Prometheus text, from
 * core/metrics.h), POST /reload, POST /stop, and the dashboard page at GET /
 * and /dashboard (control/dashboard.h). State-changing endpoints refuse GET
 * (405) and any request with an Origin, so that a web page cannot trigger
 * them; reads with an Origin other than this address are refused. With a
 * token configured every endpoint but the page needs "Authorization: Bearer
 * <token>" (the page holds no data; it asks for the token). Answers are JSON
 * objects except /metrics and the page.
 */
#ifndef WM_CONTROL_CONTROL_H
#define WM_CONTROL_CONTROL_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct wm_err;

struct wm_control_hooks {
    /* Reload the configuration. 0 with err->msg holding a summary for the
     * answer ("" for none), or -1 with err filled (every config error, one
     * line each). err is the caller's, cleared before the call. */
    int (*reload)(void *arg, struct wm_err *err);
    /* Begin a graceful stop (returns at once). */
    void (*stop)(void *arg);
    /* Append the running configuration as a JSON value to out. */
    void (*now)(void *arg, struct evbuffer *out);
    /* Append extra "key":value members (with a leading comma) to /status. */
    void (*status)(void *arg, struct evbuffer *out);
    void *arg;
};

/* Listen on addr ("127.0.0.1:8837"). token may be NULL/"" for none; it is
 * copied. Returns 0, or -1 with err filled. */
int wm_control_start(struct event_base *base, const char *addr, const char *token,
                     const struct wm_control_hooks *hooks, struct wm_err *err);

/* Replace the token (reload). */
void wm_control_set_token(const char *token);

/* Stop serving and free everything. Safe to call when not started. */
void wm_control_stop(void);

#endif
