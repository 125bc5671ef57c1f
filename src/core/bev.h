/*
 * core/bev.h - helpers that treat every bufferevent kind alike.
 */
#ifndef WM_CORE_BEV_H
#define WM_CORE_BEV_H

#include <stdbool.h>

struct bufferevent;

/* Send end-of-stream on bev while keeping its read side open:
 * socket -> shutdown(SHUT_WR); TLS -> close_notify; pair -> EOF to partner.
 * Call once its output buffer is empty. */
void wm_bev_shutdown_write(struct bufferevent *bev);

/* Is bev a plain socket bufferevent (no TLS, no filter, not a pair)? */
bool wm_bev_is_plain_socket(struct bufferevent *bev);

#endif
