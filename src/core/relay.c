#include "core/relay.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/util.h"

struct wm_relay {
    struct bufferevent *bev[2];
    bool eof[2];     /* nothing more will be read from side i */
    bool dead[2];    /* side i failed: never write to it again */
    bool shut[2];    /* write side of i shut down (EOF sent) */
    bool paused[2];  /* reading of i paused for back-pressure */
    uint64_t moved[2]; /* bytes read from i */
    size_t high_water;
    int idle_ms;
    uint64_t last_ms;
    struct event *idle_ev;
    size_t outq[2];      /* what side i still had to deliver at the last idle look */
    /* rate limit (rate 0: none): a token bucket per direction */
    uint64_t rate;
    uint32_t rate_ms;
    uint64_t burst;
    uint64_t step;       /* a tenth of a second's worth (at least 1): a held side resumes with it */
    double tokens[2];
    uint64_t tok_ms[2];  /* when tokens[i] was last topped up */
    bool held[2];        /* reading of i stopped until the bucket refills */
    struct event *rate_ev[2];
    enum wm_relay_end end;
    int err;
    wm_relay_done_cb cb;
    void *arg;
};

const char *wm_relay_end_str(enum wm_relay_end end)
{
    static const char *const names[WM_RELAY_END_COUNT] = {
        "closed", "idle-timeout", "error-client", "error-target", "aborted",
    };
    return (end >= 0 && end < WM_RELAY_END_COUNT) ? names[end] : "?";
}

static void relay_finish(struct wm_relay *r)
{
    struct wm_relay_result res = {r->moved[0], r->moved[1], r->end, r->err};
    wm_relay_done_cb cb = r->cb;
    void *arg = r->arg;

    wm_bev_free(r->bev[0]);
    wm_bev_free(r->bev[1]);
    if (r->idle_ev != NULL) {
        event_free(r->idle_ev);
    }
    for (int i = 0; i < 2; i++) {
        if (r->rate_ev[i] != NULL) {
            event_free(r->rate_ev[i]);
        }
    }
    free(r);
    cb(arg, &res);
}

static size_t out_len(struct wm_relay *r, int i)
{
    return evbuffer_get_length(bufferevent_get_output(r->bev[i]));
}

/* Finished when no direction can carry anything more. Returns true if the
 * relay was freed. */
static bool check_done(struct wm_relay *r)
{
    for (int i = 0; i < 2; i++) {
        int o = 1 - i;
        /* Direction i -> o is finished when i gave EOF and o's output is
         * drained (and shut), or when o is dead. */
        bool dir_done = r->dead[o] || (r->eof[i] && r->shut[o]);
        if (!dir_done) {
            return false;
        }
    }
    relay_finish(r);
    return true;
}

/* Side i will produce nothing more: shut o's write side once drained. */
static void propagate_eof(struct wm_relay *r, int i)
{
    int o = 1 - i;

    if (r->dead[o] || r->shut[o]) {
        return;
    }
    if (out_len(r, o) == 0) {
        r->shut[o] = true;
        wm_bev_shutdown_write(r->bev[o]);
    } else {
        /* Ask for a write callback when o's output is empty. */
        bufferevent_setwatermark(r->bev[o], EV_WRITE, 0, 0);
    }
}

/* ---- rate limit ---- */

static void refill(struct wm_relay *r, int i, uint64_t now)
{
    double add = (double)r->rate * (double)(now - r->tok_ms[i]) / (double)r->rate_ms;

    r->tok_ms[i] = now;
    r->tokens[i] = r->tokens[i] + add < (double)r->burst ? r->tokens[i] + add : (double)r->burst;
}

/* Of the n bytes waiting from i, those the bucket allows now; when it is
 * short, reading i stops and a timer resumes it when enough is back. */
static size_t rate_allow(struct wm_relay *r, int i, size_t n)
{
    uint64_t now = wm_now_ms();
    uint64_t need;
    uint64_t ms;
    struct timeval tv;

    refill(r, i, now);
    if (r->tokens[i] >= (double)n) {
        r->tokens[i] -= (double)n;
        return n;
    }
    n = (size_t)r->tokens[i];
    r->tokens[i] -= (double)n;
    if (!r->held[i]) {
        r->held[i] = true;
        bufferevent_disable(r->bev[i], EV_READ);
    }
    /* resume when a tenth of a second's worth (or what is left, if less)
     * is back: a rate below the burst floor flows at about the rate, not
     * in bursts after long silences */
    need = evbuffer_get_length(bufferevent_get_input(r->bev[i])) - n;
    need = need < r->step ? need : r->step;
    ms = (uint64_t)(((double)need - r->tokens[i]) * r->rate_ms / (double)r->rate) + 1;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    evtimer_add(r->rate_ev[i], &tv);
    return n;
}

static void move_data(struct wm_relay *r, int i);
static void propagate_eof(struct wm_relay *r, int i);
static bool check_done(struct wm_relay *r);

static void rate_resume(struct wm_relay *r, int i)
{
    r->held[i] = false;
    move_data(r, i); /* may hold it again */
    if (r->held[i]) {
        return;
    }
    if (r->eof[i]) {
        /* the EOF waited behind the held bytes */
        propagate_eof(r, i);
        check_done(r);
        return;
    }
    if (!r->paused[i]) {
        bufferevent_enable(r->bev[i], EV_READ);
    }
}

static void rate_cb0(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rate_resume(arg, 0);
}

static void rate_cb1(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rate_resume(arg, 1);
}

/* ---- moving ---- */

/* All of i's input to o, or what the rate limit allows (all regardless
 * when force: the bytes of a side that failed). */
static void move_n(struct wm_relay *r, int i, bool force)
{
    int o = 1 - i;
    struct evbuffer *in = bufferevent_get_input(r->bev[i]);
    size_t n = evbuffer_get_length(in);

    if (n == 0) {
        return;
    }
    if (r->rate > 0 && !force && !r->dead[o]) {
        n = rate_allow(r, i, n);
        if (n == 0) {
            return;
        }
    }
    r->last_ms = wm_now_coarse_ms();
    r->moved[i] += n;
    if (r->dead[o]) {
        evbuffer_drain(in, n); /* nobody to deliver to */
        return;
    }
    wm_bev_send(r->bev[o], in, n);
    if (out_len(r, o) >= r->high_water) {
        r->paused[i] = true;
        bufferevent_disable(r->bev[i], EV_READ);
        bufferevent_setwatermark(r->bev[o], EV_WRITE, r->high_water / 2, 0);
    }
}

static void move_data(struct wm_relay *r, int i)
{
    move_n(r, i, false);
}

/* Bytes of i still waiting for the rate limit. */
static bool waiting(struct wm_relay *r, int i)
{
    return r->held[i] && evbuffer_get_length(bufferevent_get_input(r->bev[i])) > 0;
}

static int side_of(struct wm_relay *r, struct bufferevent *bev)
{
    return bev == r->bev[0] ? 0 : 1;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct wm_relay *r = arg;
    int i = side_of(r, bev);
    size_t out = out_len(r, 1 - i);

    /* Fill up to the high-water mark in big reads, not 4 KiB ones. */
    if (out < r->high_water) {
        wm_bev_read_more(bev, r->high_water - out);
    }
    move_data(r, i);
}

/* Output of side o dropped to its low watermark. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    struct wm_relay *r = arg;
    int o = side_of(r, bev);
    int i = 1 - o;

    if (r->paused[i] && !r->eof[i]) {
        r->paused[i] = false;
        bufferevent_setwatermark(r->bev[o], EV_WRITE, 0, 0);
        if (!r->held[i]) {
            bufferevent_enable(r->bev[i], EV_READ);
        }
    }
    if (r->eof[i] && !r->shut[o] && out_len(r, o) == 0 && !waiting(r, i)) {
        r->shut[o] = true;
        wm_bev_shutdown_write(r->bev[o]);
        check_done(r);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wm_relay *r = arg;
    int i = side_of(r, bev);
    int o = 1 - i;

    /* An EOF with an error is the error: a tunnel stream's FIN and reset
     * can reach its bufferevent pair as one deferred event, and nobody
     * reads what the other side still sends. */
    if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
        move_data(r, i);
        r->eof[i] = true;
        bufferevent_disable(bev, EV_READ);
        if (waiting(r, i)) {
            return; /* rate_resume() passes the EOF on after the bytes */
        }
        propagate_eof(r, i);
        check_done(r);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (r->end == WM_RELAY_END_CLOSED) {
            r->end = i == 0 ? WM_RELAY_END_ERR_A : WM_RELAY_END_ERR_B;
            r->err = errno;
        }
        move_n(r, i, true);
        r->eof[i] = true;
        r->dead[i] = true;
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        evbuffer_drain(bufferevent_get_output(bev), out_len(r, i));
        /* Whatever o still sends is discarded; flush what we owe o. */
        propagate_eof(r, i);
        check_done(r);
        (void)o;
    }
}

static void arm_idle(struct wm_relay *r, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(r->idle_ev, &tv);
}

/* What side i still has to deliver: our output and, on a socket, the
 * kernel's send queue (bytes its peer has not acknowledged). */
static size_t pending_out(struct wm_relay *r, int i)
{
    int q = wm_sock_sendq(bufferevent_getfd(r->bev[i]));

    return out_len(r, i) + (size_t)(q > 0 ? q : 0);
}

/* Did a peer take bytes since the last look? A slow reader drains what we
 * and the kernel hold for it for a long time without our reading anything
 * (the kernel wakes a writer only once a third of a buffer of megabytes is
 * free): that is no idle. */
static bool peers_took(struct wm_relay *r)
{
    bool took = false;

    for (int i = 0; i < 2; i++) {
        size_t q = pending_out(r, i);
        took = took || q < r->outq[i];
        r->outq[i] = q;
    }
    return took;
}

/* The idle timer looks every quarter of the timeout at most. */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_relay *r = arg;
    uint64_t now = wm_now_coarse_ms();
    uint64_t quarter = r->idle_ms >= 4 ? (uint64_t)r->idle_ms / 4 : 1;
    uint64_t since;

    (void)fd;
    (void)what;
    if (peers_took(r)) {
        r->last_ms = now;
    }
    since = now - r->last_ms;
    if (since + 5 < (uint64_t)r->idle_ms) {
        uint64_t left = (uint64_t)r->idle_ms - since;
        arm_idle(r, left < quarter ? left : quarter);
        return;
    }
    if (waiting(r, 0) || waiting(r, 1)) {
        /* bytes the rate limit holds are on their way: not idle */
        arm_idle(r, quarter);
        return;
    }
    r->end = WM_RELAY_END_IDLE;
    relay_finish(r);
}

struct wm_relay *wm_relay_start(struct event_base *base, struct bufferevent *a,
                                struct bufferevent *b, const struct wm_relay_conf *conf,
                                wm_relay_done_cb cb, void *arg)
{
    struct wm_relay *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->bev[0] = a;
    r->bev[1] = b;
    r->cb = cb;
    r->arg = arg;
    r->high_water = conf != NULL && conf->high_water > 0 ? conf->high_water : WM_RELAY_HIGH_WATER;
    r->idle_ms = conf != NULL ? conf->idle_ms : WM_IDLE_TIMEOUT_MS;
    r->last_ms = wm_now_coarse_ms();
    if (r->idle_ms > 0) {
        r->idle_ev = evtimer_new(base, idle_cb, r);
        if (r->idle_ev == NULL) {
            free(r);
            return NULL;
        }
        arm_idle(r, r->idle_ms >= 4 ? (uint64_t)r->idle_ms / 4 : 1);
    }
    if (conf != NULL && conf->rate > 0 && conf->rate_ms > 0) {
        r->rate = conf->rate;
        r->rate_ms = conf->rate_ms;
        /* a tenth of a second (rate * 100 / rate_ms, which can wrap) */
        r->step = r->rate / r->rate_ms * 100 + r->rate % r->rate_ms * 100 / r->rate_ms;
        if (r->step == 0) {
            r->step = 1;
        }
        r->burst = r->step;
        if (r->burst < WM_RELAY_RATE_BURST_MIN) {
            r->burst = WM_RELAY_RATE_BURST_MIN;
        }
        r->rate_ev[0] = evtimer_new(base, rate_cb0, r);
        r->rate_ev[1] = evtimer_new(base, rate_cb1, r);
        if (r->rate_ev[0] == NULL || r->rate_ev[1] == NULL) {
            for (int i = 0; i < 2; i++) {
                if (r->rate_ev[i] != NULL) {
                    event_free(r->rate_ev[i]);
                }
            }
            if (r->idle_ev != NULL) {
                event_free(r->idle_ev);
            }
            free(r);
            return NULL;
        }
        r->tokens[0] = r->tokens[1] = (double)r->burst;
        r->tok_ms[0] = r->tok_ms[1] = wm_now_ms();
    }
    for (int i = 0; i < 2; i++) {
        bufferevent_setcb(r->bev[i], read_cb, write_cb, event_cb, r);
        bufferevent_setwatermark(r->bev[i], EV_READ, 0, 0);
        bufferevent_setwatermark(r->bev[i], EV_WRITE, 0, 0);
        bufferevent_set_timeouts(r->bev[i], NULL, NULL);
        bufferevent_set_max_single_read(r->bev[i], WM_RELAY_MAX_READ);
        bufferevent_enable(r->bev[i], EV_READ | EV_WRITE);
    }
    /* Early data already buffered behind a handshake. */
    move_data(r, 0);
    move_data(r, 1);
    return r;
}

void wm_relay_abort(struct wm_relay *r)
{
    r->end = WM_RELAY_END_ABORTED;
    relay_finish(r);
}

void wm_relay_counts(const struct wm_relay *r, uint64_t *a_to_b, uint64_t *b_to_a)
{
    *a_to_b = r->moved[0];
    *b_to_a = r->moved[1];
}
