#include "core/bev.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

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
