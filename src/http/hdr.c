/*
 * http/hdr.c - see hdr.h. Names are found by length, then by their first
 * letter, then compared whole: one comparison for most fields.
 */
#include "http/hdr.h"

#include "core/util.h"

struct name {
    const char *s;
    uint8_t len;
};

#define N(s) {s, sizeof(s) - 1}

static const struct name names[WM_HDR_COUNT] = {
    [WM_HDR_OTHER] = {NULL, 0},
    [WM_HDR_CONNECTION] = N("connection"),
    [WM_HDR_PROXY_CONNECTION] = N("proxy-connection"),
    [WM_HDR_KEEP_ALIVE] = N("keep-alive"),
    [WM_HDR_PROXY_AUTHORIZATION] = N("proxy-authorization"),
    [WM_HDR_PROXY_AUTHENTICATE] = N("proxy-authenticate"),
    [WM_HDR_TE] = N("te"),
    [WM_HDR_TRAILER] = N("trailer"),
    [WM_HDR_UPGRADE] = N("upgrade"),
    [WM_HDR_HOST] = N("host"),
    [WM_HDR_CONTENT_LENGTH] = N("content-length"),
    [WM_HDR_TRANSFER_ENCODING] = N("transfer-encoding"),
    [WM_HDR_EXPECT] = N("expect"),
    [WM_HDR_COOKIE] = N("cookie"),
    [WM_HDR_X_FORWARDED_FOR] = N("x-forwarded-for"),
    [WM_HDR_SEC_WEBSOCKET_ACCEPT] = N("sec-websocket-accept"),
    [WM_HDR_ACCEPT] = N("accept"),
    [WM_HDR_ACCEPT_ENCODING] = N("accept-encoding"),
    [WM_HDR_ACCEPT_RANGES] = N("accept-ranges"),
    [WM_HDR_CACHE_CONTROL] = N("cache-control"),
    [WM_HDR_CONTENT_ENCODING] = N("content-encoding"),
    [WM_HDR_CONTENT_TYPE] = N("content-type"),
    [WM_HDR_DATE] = N("date"),
    [WM_HDR_ETAG] = N("etag"),
    [WM_HDR_LAST_MODIFIED] = N("last-modified"),
    [WM_HDR_LOCATION] = N("location"),
    [WM_HDR_SERVER] = N("server"),
    [WM_HDR_SET_COOKIE] = N("set-cookie"),
    [WM_HDR_USER_AGENT] = N("user-agent"),
    [WM_HDR_VARY] = N("vary"),
};

/* Ids of names of each length (0-terminated lists; the longest is 20). */
static const uint8_t by_len[21][5] = {
    [2] = {WM_HDR_TE},
    [4] = {WM_HDR_HOST, WM_HDR_DATE, WM_HDR_ETAG, WM_HDR_VARY},
    [6] = {WM_HDR_EXPECT, WM_HDR_COOKIE, WM_HDR_ACCEPT, WM_HDR_SERVER},
    [7] = {WM_HDR_TRAILER, WM_HDR_UPGRADE},
    [8] = {WM_HDR_LOCATION},
    [10] = {WM_HDR_CONNECTION, WM_HDR_KEEP_ALIVE, WM_HDR_SET_COOKIE, WM_HDR_USER_AGENT},
    [12] = {WM_HDR_CONTENT_TYPE},
    [13] = {WM_HDR_ACCEPT_RANGES, WM_HDR_CACHE_CONTROL, WM_HDR_LAST_MODIFIED},
    [14] = {WM_HDR_CONTENT_LENGTH},
    [15] = {WM_HDR_X_FORWARDED_FOR, WM_HDR_ACCEPT_ENCODING},
    [16] = {WM_HDR_PROXY_CONNECTION, WM_HDR_CONTENT_ENCODING},
    [17] = {WM_HDR_TRANSFER_ENCODING},
    [18] = {WM_HDR_PROXY_AUTHENTICATE},
    [19] = {WM_HDR_PROXY_AUTHORIZATION},
    [20] = {WM_HDR_SEC_WEBSOCKET_ACCEPT},
};

enum wm_hdr wm_hdr_id(const char *name, size_t n)
{
    if (n >= sizeof(by_len) / sizeof(by_len[0])) {
        return WM_HDR_OTHER;
    }
    unsigned first = (unsigned char)name[0] | 0x20; /* letters to lower case */
    for (const uint8_t *id = by_len[n]; *id != 0; id++) {
        const struct name *c = &names[*id];
        if ((unsigned char)c->s[0] == first && wm_memieq_lower(name, c->s, n)) {
            return (enum wm_hdr)*id;
        }
    }
    return WM_HDR_OTHER;
}

const char *wm_hdr_lower(enum wm_hdr id, size_t *len)
{
    if ((unsigned)id >= WM_HDR_COUNT || id == WM_HDR_OTHER) {
        *len = 0;
        return NULL;
    }
    *len = names[id].len;
    return names[id].s;
}
