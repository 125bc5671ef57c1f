/*
 * tunnel/mux_sock.c - streams attached directly to a plain socket.
 *
 * The socket is registered once, edge-triggered for both directions, so
 * the data path never changes epoll interest.
 *
 * Socket -> stream: an edge marks the socket readable and queues its stream
 * in the fair writer (mux.c pump), which reads it straight into DATA frames
 * reserved in the carrier's output: one copy, kernel to frame. A short read
 * means the socket is drained (the next byte brings a new edge), unless the
 * peer's FIN was seen (EV_CLOSED): then reading goes on to the EOF.
 *
 * Stream -> socket: payloads are queued in `pend` and written once per
 * carrier read (one writev for all frames of a batch); after a short write
 * the rest waits for the next writable edge. Credit returns as bytes reach
 * the kernel, so `pend` never exceeds the receive window.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/util.h"
#include "core/worker.h"
#include "tunnel/mux_int.h"

#define TURN_FRAMES 4       /* frames read per turn when others wait: 64 KiB */
#define TURN_FRAMES_ALONE 16 /* when no other stream waits: 256 KiB */

static void sock_event_cb(evutil_socket_t fd, short what, void *arg);

static void sock_fail(struct wm_tun_stream *s, const char *why)
{
    tun_send_code(s->t, WM_TUN_RST, s->id, true, WM_TUN_ERR_READER_GONE, "endpoint error");
    s->why = why;
    tun_stream_close(s, false);
}

void tun_sock_kick(struct wm_tun_stream *s)
{
    if (s->readable && s->state == ST_OPEN && !s->fin_sent && !s->queued && s->send_window > 0) {
        tun_ready_push(s->t, s);
        tun_pump_schedule(s->t);
    }
}

int tun_sock_attach(struct wm_tun_stream *s, int fd, int idle_ms, wm_tun_sock_end_cb end,
                    void *arg)
{
    int one = 1;

    s->ev = event_new(wm_worker_base(s->t->w), fd,
                      EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET, sock_event_cb, s);
    if (s->ev == NULL || event_add(s->ev, NULL) < 0) {
        if (s->ev != NULL) {
            event_free(s->ev);
            s->ev = NULL;
        }
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->fd = fd;
    s->idle_ms = idle_ms;
    s->end = end;
    s->arg = arg;
    tun_stream_set_state(s, ST_OPEN);
    s->last_ms = wm_now_coarse_ms();
    return 0; /* the first edge reports what is already there */
}

/* Write what is pending, until it is all out or the socket is full (one
 * writev takes at most 128 chains, so a short write alone does not mean
 * full). May close s. */
static void sock_flush(struct wm_tun_stream *s)
{
    while (evbuffer_get_length(s->pend) > 0) {
        int n = evbuffer_write(s->pend, s->fd);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                sock_fail(s, "socket-error");
                return;
            }
            s->wr_blocked = true; /* until the next writable edge */
            break;
        }
        if (n == 0) {
            s->wr_blocked = true;
            break;
        }
        s->nout += (uint64_t)n;
        s->last_ms = wm_now_coarse_ms();
        tun_stream_consumed(s, (size_t)n);
    }
    if (evbuffer_get_length(s->pend) == 0) {
        evbuffer_free(s->pend);
        s->pend = NULL;
        if (s->remote_fin && !s->wr_shut) {
            shutdown(s->fd, SHUT_WR);
            s->wr_shut = true;
            tun_stream_maybe_done(s);
        }
    }
}

/* Copy len payload bytes from the front of in into s->pend. Always a
 * copy: moving the carrier's chains would make pend's memory depend on
 * how full they happen to be (a plain carrier reads into blocks of up to
 * 256 KiB, a trickle of small frames fills each one a little), while pend's
 * own chains stay dense: memory is about the bytes held, at most the
 * stream window. On the bulk path most payloads straddle the carrier's
 * chains and were copied anyway. */
static int pend_take(struct wm_tun_stream *s, struct evbuffer *in, size_t len)
{
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(s->pend, (ev_ssize_t)len, v, 2);
    int used = 0;

    if (n < 1) {
        return -1;
    }
    /* the room left in the last chain first, then a new one */
    for (size_t left = len; used < n && left > 0; used++) {
        size_t k = v[used].iov_len < left ? v[used].iov_len : left;
        v[used].iov_len = (size_t)evbuffer_remove(in, v[used].iov_base, k);
        left -= k;
    }
    evbuffer_commit_space(s->pend, v, used);
    return 0;
}

void tun_sock_flush_all(struct wm_tun *t)
{
    while (t->flushq != NULL) {
        struct wm_tun_stream *s = t->flushq;
        t->flushq = s->fnext;
        s->fnext = NULL;
        s->flush_queued = false;
        sock_flush(s);
    }
}

void tun_sock_data(struct wm_tun_stream *s, struct evbuffer *in, size_t len, bool fin)
{
    struct wm_tun *t = s->t;

    if (len > 0) {
        if ((s->pend == NULL && (s->pend = evbuffer_new()) == NULL) ||
            pend_take(s, in, len) < 0) {
            evbuffer_drain(in, len); /* nothing was taken */
            sock_fail(s, "out-of-memory");
            return;
        }
        if (!s->flush_queued && !s->wr_blocked) {
            /* written at the end of this carrier read, with the rest */
            s->flush_queued = true;
            s->fnext = t->flushq;
            t->flushq = s;
        }
    }
    if (fin) {
        s->remote_fin = true;
        if (s->pend == NULL) {
            shutdown(s->fd, SHUT_WR);
            s->wr_shut = true;
        }
    }
    if (fin) {
        tun_stream_maybe_done(s);
    }
}

void tun_sock_pump(struct wm_tun *t, struct wm_tun_stream *s)
{
    struct evbuffer *out = bufferevent_get_output(t->bev);
    struct evbuffer_iovec v;
    struct iovec iov[TURN_FRAMES_ALONE];
    size_t turn = (size_t)(t->ready == NULL ? TURN_FRAMES_ALONE : TURN_FRAMES);
    size_t want = s->send_window;
    size_t nfr;
    ssize_t n;

    if (s->fin_sent || s->state != ST_OPEN || !s->readable) {
        return;
    }
    if (want > turn * WM_TUN_MAX_PAYLOAD) {
        want = turn * WM_TUN_MAX_PAYLOAD;
    }
    if (want == 0) {
        return; /* WINDOW_UPDATE kicks it again */
    }
    nfr = (want + WM_TUN_MAX_PAYLOAD - 1) / WM_TUN_MAX_PAYLOAD;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(want + nfr * WM_TUN_HDR), &v, 1) != 1) {
        sock_fail(s, "out-of-memory");
        return;
    }
    for (size_t i = 0; i < nfr; i++) {
        size_t left = want - i * WM_TUN_MAX_PAYLOAD;
        iov[i].iov_base = (char *)v.iov_base + i * WM_TUN_MAX_FRAME + WM_TUN_HDR;
        iov[i].iov_len = left < WM_TUN_MAX_PAYLOAD ? left : WM_TUN_MAX_PAYLOAD;
    }
    n = readv(s->fd, iov, (int)nfr);
    if (n > 0) {
        size_t got = (size_t)n;
        size_t used = 0;
        for (size_t i = 0; used < got; i++) {
            size_t k = got - used < WM_TUN_MAX_PAYLOAD ? got - used : WM_TUN_MAX_PAYLOAD;
            wm_tun_hdr_encode((uint8_t *)v.iov_base + i * WM_TUN_MAX_FRAME, (uint32_t)k,
                              WM_TUN_DATA, 0, s->id);
            used += k;
            v.iov_len = i * WM_TUN_MAX_FRAME + WM_TUN_HDR + k;
        }
        evbuffer_commit_space(out, &v, 1);
        s->send_window -= (uint32_t)got;
        s->nin += got;
        s->last_ms = wm_now_coarse_ms();
        if (got < want) {
            /* Drained: wait for the next edge, unless the peer's FIN is
             * already in (its edge is spent): then read on to the EOF. */
            s->readable = s->rdhup;
            if (s->rdhup) {
                tun_ready_push(t, s);
            }
        } else if (s->send_window > 0) {
            tun_ready_push(t, s); /* probably more: back of the line */
        }
        return;
    }
    if (n == 0) {
        tun_send_frame(t, WM_TUN_DATA, WM_TUN_FLAG_FIN, s->id, NULL, 0);
        s->fin_sent = true;
        tun_stream_maybe_done(s);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->readable = false;
        return;
    }
    if (errno == EINTR) {
        tun_ready_push(t, s);
        return;
    }
    sock_fail(s, "socket-error");
}

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_tun_stream *s = arg;

    (void)fd;
    tun_stream_enter(s);
    if (what & EV_WRITE) {
        s->wr_blocked = false;
        if (s->pend != NULL && !s->flush_queued) {
            sock_flush(s);
        }
    }
    if (!wm_guard_closed(&s->guard)) {
        if (what & EV_CLOSED) {
            s->rdhup = true;
        }
        if (what & (EV_READ | EV_CLOSED)) {
            s->readable = true;
            tun_sock_kick(s);
        }
    }
    tun_stream_leave(s);
}

void tun_sock_release(struct wm_tun_stream *s, bool reset, struct tun_sock_end *e)
{
    struct wm_tun *t = s->t;

    if (s->flush_queued) {
        for (struct wm_tun_stream **pp = &t->flushq; *pp != NULL; pp = &(*pp)->fnext) {
            if (*pp == s) {
                *pp = s->fnext;
                break;
            }
        }
        s->flush_queued = false;
    }
    event_free(s->ev);
    s->ev = NULL;
    if (s->pend != NULL) {
        evbuffer_free(s->pend);
        s->pend = NULL;
    }
    close(s->fd);
    s->fd = -1;
    e->end = s->end;
    e->arg = s->arg;
    e->res.in = s->nin;
    e->res.out = s->nout;
    e->res.why = s->why != NULL ? s->why : reset ? "reset" : "closed";
}

bool tun_sock_idle(const struct wm_tun_stream *s, uint64_t now)
{
    return s->idle_ms > 0 && now - s->last_ms >= (uint64_t)s->idle_ms;
}

int wm_tun_stream_accept_sock(struct wm_tun_stream *s, int fd, int idle_ms,
                              wm_tun_sock_end_cb end, void *arg)
{
    uint8_t ok = WM_TUN_OPEN_OK;

    if (tun_sock_attach(s, fd, idle_ms, end, arg) < 0) {
        close(fd);
        wm_tun_stream_refuse(s, WM_TUN_OPEN_LIMIT, "out of memory");
        return -1;
    }
    /* Frames keep their order: the socket is read later, in the pump. */
    tun_send_frame(s->t, WM_TUN_OPEN_RESULT, 0, s->id, &ok, 1);
    return 0;
}

void wm_tun_sock_abort(struct wm_tun_stream *s)
{
    tun_send_code(s->t, WM_TUN_RST, s->id, true, WM_TUN_ERR_CANCEL, "aborted");
    s->why = "aborted";
    tun_stream_close(s, false);
}
