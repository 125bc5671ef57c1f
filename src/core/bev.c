#include "core/bev.h"

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
