#include "core/bev.h"

#include <errno.h>
#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

void wm_bev_shutdown_write(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl != NULL) {
        /* Sends close_notify; reading stays possible until the peer's. */
        SSL_shutdown(ssl);
        bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
        return;
    }
    if (bufferevent_pair_get_partner(bev) != NULL) {
        bufferevent_flush(bev, EV_WRITE, BEV_FINISHED);
        return;
    }
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        shutdown(fd, SHUT_WR);
    }
}

bool wm_bev_is_plain_socket(struct bufferevent *bev)
{
    return bufferevent_openssl_get_ssl(bev) == NULL &&
           bufferevent_pair_get_partner(bev) == NULL && bufferevent_get_underlying(bev) == NULL &&
           bufferevent_getfd(bev) >= 0;
}

int wm_bev_send(struct bufferevent *bev, struct evbuffer *src, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    if (n == 0) {
        return 0;
    }
    if (evbuffer_get_length(out) == 0 && wm_bev_is_plain_socket(bev)) {
        int w = evbuffer_write_atmost(src, bufferevent_getfd(bev), (ev_ssize_t)n);
        if (w > 0) {
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            /* Leave the data queued: the write event will report the error. */
        }
        if (n == 0) {
            return 0;
        }
    }
    if (evbuffer_remove_buffer(src, out, n) < 0) {
        return -1;
    }
    bufferevent_enable(bev, EV_WRITE);
    return 0;
}

void wm_bev_free(struct bufferevent *bev)
{
    if (bev == NULL) {
        return;
    }
    if (bufferevent_pair_get_partner(bev) != NULL) {
        bufferevent_flush(bev, EV_WRITE, BEV_FINISHED);
    }
    bufferevent_free(bev);
}

size_t wm_bev_read_more(struct bufferevent *bev, size_t max)
{
    struct evbuffer *in;
    evutil_socket_t fd;
    size_t total = 0;

    if (!wm_bev_is_plain_socket(bev) || !(bufferevent_get_enabled(bev) & EV_READ)) {
        return 0;
    }
    fd = bufferevent_getfd(bev);
    in = bufferevent_get_input(bev);
    /* A socket bufferevent freezes its input's end against users. */
    evbuffer_unfreeze(in, 0);
    while (total < max) {
        struct evbuffer_iovec v[2];
        size_t want = max - total < 65536 ? max - total : 65536;
        int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
        if (nv <= 0) {
            break;
        }
        struct iovec iov[2];
        size_t room = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            room += v[i].iov_len;
        }
        ssize_t r = readv(fd, iov, nv);
        if (r <= 0) {
            for (int i = 0; i < nv; i++) {
                v[i].iov_len = 0;
            }
            evbuffer_commit_space(in, v, 0);
            break;
        }
        size_t left = (size_t)r;
        for (int i = 0; i < nv; i++) {
            size_t take = left < v[i].iov_len ? left : v[i].iov_len;
            v[i].iov_len = take;
            left -= take;
        }
        evbuffer_commit_space(in, v, nv);
        total += (size_t)r;
        if ((size_t)r < room) {
            break; /* drained the socket for now */
        }
    }
    evbuffer_freeze(in, 0);
    return total;
}

int wm_bev_send_bytes(struct bufferevent *bev, const void *data, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    const char *p = data;

    if (n > 0 && evbuffer_get_length(out) == 0 && wm_bev_is_plain_socket(bev)) {
        ssize_t w = send(bufferevent_getfd(bev), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    if (n == 0) {
        return 0;
    }
    if (evbuffer_add(out, p, n) < 0) {
        return -1;
    }
    bufferevent_enable(bev, EV_WRITE);
    return 0;
}

/* Bytes reserved for one read: grows while reads fill it, shrinks back when
 * they stay small, so small messages (a 1 KiB response on each of many
 * keep-alive connections) do not each take a fresh 64 KiB chunk from the
 * heap (malloc growing and trimming its top, page faults), while bulk
 * transfers still read 64 KiB per call. */
#define FASTREAD_MIN 4000  /* a 4 KiB chunk with libevent's chunk header */
#define FASTREAD_MAX 65000 /* a 64 KiB chunk likewise */

struct wm_fastread {
    struct bufferevent *bev;
    struct event *ev;
    size_t limit;
    size_t want;               /* next reservation, FASTREAD_MIN..FASTREAD_MAX */
    bool on;
    void (*readcb)(struct bufferevent *, void *);
    void (*eventcb)(struct bufferevent *, short, void *);
    void *arg;
};

static void fastread_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_fastread *fr = arg;
    struct evbuffer *in = bufferevent_get_input(fr->bev);
    struct evbuffer_iovec v;
    size_t have = evbuffer_get_length(in);
    ssize_t r;

    (void)what;
    if (have >= fr->limit) {
        event_del(fr->ev); /* wm_fastread_set(on) resumes */
        return;
    }
    evbuffer_unfreeze(in, 0);
    /* One contiguous reservation, so the read is a plain recv(): a socket's
     * readv() takes the longer VFS path (measured: ~0.8 µs more kernel time
     * per small read under HTTP/2 load). */
    if (evbuffer_reserve_space(in, (ev_ssize_t)fr->want, &v, 1) != 1) {
        evbuffer_freeze(in, 0);
        fr->eventcb(fr->bev, BEV_EVENT_ERROR | BEV_EVENT_READING, fr->arg);
        return;
    }
    r = recv(fd, v.iov_base, v.iov_len, 0);
    if (r <= 0) {
        int e = errno;
        evbuffer_commit_space(in, &v, 0);
        evbuffer_freeze(in, 0);
        if (r < 0 && (e == EAGAIN || e == EINTR)) {
            return;
        }
        event_del(fr->ev);
        fr->on = false;
        errno = e;
        fr->eventcb(fr->bev, (short)((r == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING),
                    fr->arg);
        return;
    }
    if ((size_t)r >= fr->want && fr->want < FASTREAD_MAX) {
        fr->want = fr->want * 2 < FASTREAD_MAX ? fr->want * 2 : FASTREAD_MAX;
    } else if ((size_t)r < fr->want / 4 && fr->want > FASTREAD_MIN) {
        fr->want /= 2;
    }
    v.iov_len = (size_t)r;
    evbuffer_commit_space(in, &v, 1);
    evbuffer_freeze(in, 0);
    fr->readcb(fr->bev, fr->arg); /* may free fr: nothing after this */
}

struct wm_fastread *wm_fastread_new(struct bufferevent *bev, size_t limit,
                                    void (*readcb)(struct bufferevent *, void *),
                                    void (*eventcb)(struct bufferevent *, short, void *), void *arg)
{
    struct wm_fastread *fr;

    if (!wm_bev_is_plain_socket(bev)) {
        return NULL;
    }
    fr = calloc(1, sizeof(*fr));
    if (fr == NULL) {
        return NULL;
    }
    fr->ev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev), EV_READ | EV_PERSIST,
                       fastread_cb, fr);
    if (fr->ev == NULL) {
        free(fr);
        return NULL;
    }
    fr->bev = bev;
    fr->limit = limit;
    fr->want = FASTREAD_MIN;
    fr->readcb = readcb;
    fr->eventcb = eventcb;
    fr->arg = arg;
    fr->on = (bufferevent_get_enabled(bev) & EV_READ) != 0;
    bufferevent_disable(bev, EV_READ);
    if (fr->on) {
        event_add(fr->ev, NULL);
    }
    return fr;
}

void wm_fastread_set(struct wm_fastread *fr, bool on)
{
    fr->on = on;
    if (on && evbuffer_get_length(bufferevent_get_input(fr->bev)) < fr->limit) {
        event_add(fr->ev, NULL);
    } else {
        event_del(fr->ev);
    }
}

void wm_fastread_free(struct wm_fastread *fr)
{
    if (fr == NULL) {
        return;
    }
    event_free(fr->ev);
    if (fr->on) {
        bufferevent_enable(fr->bev, EV_READ);
    }
    free(fr);
}
