/*
 * http/hdr.h - well-known header field names as small numbers. A head
 * names each field once, when it is read (wm_hdr_id), so the request path
 * tests numbers instead of comparing names again for every rule: hop-by-hop
 * or not, Host, framing, what HTTP/2 must not carry.
 */
#ifndef WM_HTTP_HDR_H
#define WM_HTTP_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wm_hdr {
    WM_HDR_OTHER = 0, /* any name not below */
    /* the fixed hop-by-hop set (wm_hdr_is_hop) */
    WM_HDR_CONNECTION,
    WM_HDR_PROXY_CONNECTION,
    WM_HDR_KEEP_ALIVE,
    WM_HDR_PROXY_AUTHORIZATION,
    WM_HDR_PROXY_AUTHENTICATE,
    WM_HDR_TE,
    WM_HDR_TRAILER,
    WM_HDR_UPGRADE,
    /* others the proxy acts on */
    WM_HDR_HOST,
    WM_HDR_CONTENT_LENGTH,
    WM_HDR_TRANSFER_ENCODING,
    WM_HDR_EXPECT,
    WM_HDR_COOKIE,
    WM_HDR_X_FORWARDED_FOR,
    WM_HDR_SEC_WEBSOCKET_ACCEPT,
    /* common ones, named only for their lower-case spelling (HTTP/2) */
    WM_HDR_ACCEPT,
    WM_HDR_ACCEPT_ENCODING,
    WM_HDR_ACCEPT_RANGES,
    WM_HDR_CACHE_CONTROL,
    WM_HDR_CONTENT_ENCODING,
    WM_HDR_CONTENT_TYPE,
    WM_HDR_DATE,
    WM_HDR_ETAG,
    WM_HDR_LAST_MODIFIED,
    WM_HDR_LOCATION,
    WM_HDR_SERVER,
    WM_HDR_SET_COOKIE,
    WM_HDR_USER_AGENT,
    WM_HDR_VARY,
    WM_HDR_COUNT
};

/* The id of name[0..n) (any case), WM_HDR_OTHER when not listed. */
enum wm_hdr wm_hdr_id(const char *name, size_t n);

/* The lower-case name of id (NULL for WM_HDR_OTHER) and its length. */
const char *wm_hdr_lower(enum wm_hdr id, size_t *len);

/* One of the fixed hop-by-hop fields (Connection, Proxy-Connection,
 * Keep-Alive, Proxy-Authorization, Proxy-Authenticate, TE, Trailer,
 * Upgrade)? Fields a Connection header names are not known here. */
static inline bool wm_hdr_is_hop(enum wm_hdr id)
{
    return id >= WM_HDR_CONNECTION && id <= WM_HDR_UPGRADE;
}

#endif
