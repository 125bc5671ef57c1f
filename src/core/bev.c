#include "core/bev.h"

#include <errno.h>
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
    if (evbuffer_get_length(out) == 0 && (bufferevent_get_enabled(bev) & EV_WRITE) &&
        wm_bev_is_plain_socket(bev)) {
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
    return evbuffer_remove_buffer(src, out, n) < 0 ? -1 : 0;
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

    if (n > 0 && evbuffer_get_length(out) == 0 && (bufferevent_get_enabled(bev) & EV_WRITE) &&
        wm_bev_is_plain_socket(bev)) {
        ssize_t w = send(bufferevent_getfd(bev), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
    return n > 0 ? evbuffer_add(out, p, n) : 0;
}
