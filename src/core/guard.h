/*
 * core/guard.h - the one lifetime idiom for objects that callbacks can close
 * (HTTP engine, tunnel carrier, TLS pump): enter/leave around every entry
 * from the event loop, and a free that waits for the last leave.
 *
 *     static void on_read(struct bufferevent *bev, void *arg)
 *     {
 *         struct obj *o = arg;
 *         wm_guard_enter(&o->guard);
 *         step(o);                       // may call obj_close(o)
 *         if (wm_guard_leave(&o->guard)) // last leave of a closed object
 *             obj_free(o);
 *     }
 *
 *     void obj_close(struct obj *o)      // from anywhere, any depth
 *     {
 *         if (wm_guard_close(&o->guard)) // nobody inside: free now
 *             obj_free(o);
 *     }
 *
 * Code that runs inside an entry and calls something that may close the
 * object tests wm_guard_closed() afterwards and returns at once when true:
 * the object is still valid memory (freed only by the outermost leave) but
 * must not start new work. obj_free() runs exactly once.
 */
#ifndef WM_CORE_GUARD_H
#define WM_CORE_GUARD_H

#include <stdbool.h>

struct wm_guard {
    unsigned depth; /* callbacks of this object on the stack */
    bool closed;    /* close requested; the free waits for depth 0 */
};

static inline void wm_guard_enter(struct wm_guard *g)
{
    g->depth++;
}

/* True when the caller must free the object now (closed, last leave). */
static inline bool wm_guard_leave(struct wm_guard *g)
{
    return --g->depth == 0 && g->closed;
}

/* Request the free. True when the caller must free now (nobody inside);
 * false when it was already closed or a leave will do it. */
static inline bool wm_guard_close(struct wm_guard *g)
{
    if (g->closed) {
        return false;
    }
    g->closed = true;
    return g->depth == 0;
}

static inline bool wm_guard_closed(const struct wm_guard *g)
{
    return g->closed;
}

#endif
