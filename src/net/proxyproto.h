/*
 * net/proxyproto.h - the PROXY protocol (HAProxy, "The PROXY protocol",
 * versions 1 and 2): the header a proxy sends first on a connection it
 * opened to tell the service where the client really is.
 *
 * Builders and the parser are pure functions over byte buffers; only
 * wm_pp_send() touches a socket. Nothing is allocated.
 */
#ifndef WM_NET_PROXYPROTO_H
#define WM_NET_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum wm_pp_version {
    WM_PP_OFF = 0,
    WM_PP_V1 = 1, /* text: "PROXY TCP4 src dst sport dport\r\n" (spec 2.1) */
    WM_PP_V2 = 2, /* binary: 12-byte signature, then version/command (spec 2.2) */
};

#define WM_PP_V1_MAX 107      /* spec 2.1: a v1 line is at most 107 bytes with CRLF */
#define WM_PP_MIN 15          /* the shortest header, "PROXY UNKNOWN\r\n" (v2: 16) */
#define WM_PP_V2_HDR 16       /* signature (12), ver/cmd, family/proto, length (2) */
#define WM_PP_V2_BODY_MAX 4096 /* longest v2 address block + TLVs we accept */
#define WM_PP_BUILD_MAX 108   /* a buffer this size holds any header we build */

/* v2 byte 13, low nibble (spec 2.2). */
enum {
    WM_PP_CMD_LOCAL = 0x0, /* health check by the proxy itself: no addresses */
    WM_PP_CMD_PROXY = 0x1, /* relayed connection: addresses follow */
};

/* v2 byte 14: address family (high nibble) and transport (low nibble). */
enum {
    WM_PP_FAM_UNSPEC = 0x00,
    WM_PP_FAM_TCP4 = 0x11, /* 4 + 4 + 2 + 2 address bytes */
    WM_PP_FAM_UDP4 = 0x12,
    WM_PP_FAM_TCP6 = 0x21, /* 16 + 16 + 2 + 2 */
    WM_PP_FAM_UDP6 = 0x22,
    WM_PP_FAM_UNIX = 0x31, /* 108 + 108 */
    WM_PP_FAM_UNIX_DGRAM = 0x32,
};

/* What a received header says. */
struct wm_pp_info {
    uint8_t version;          /* 1 or 2 */
    bool known;               /* src/dst hold the TCP endpoints; false for v1
                               * UNKNOWN, v2 LOCAL, UNSPEC, UDP and unix: use
                               * the connection's own addresses then */
    struct sockaddr_storage src;
    socklen_t srclen;
    struct sockaddr_storage dst;
    socklen_t dstlen;
};

/* Write the header of version (WM_PP_V1 or WM_PP_V2) for a TCP connection
 * from src to dst into out. Both IPv4 (or IPv4-mapped IPv6) give TCP4,
 * otherwise TCP6 (an IPv4 side is written IPv4-mapped). dst NULL: the
 * unspecified address of src's family, port 0. src NULL or not IP: v1
 * "PROXY UNKNOWN", v2 PROXY command with family UNSPEC.
 * Returns the length (at most WM_PP_BUILD_MAX), or 0 when cap is too small
 * or version is not 1 or 2. */
size_t wm_pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   uint8_t *out, size_t cap);

/* Parse a header at the start of p[0..n). Returns the header's length
 * (> 0, the bytes to skip) with *info filled; 0 when the bytes so far are
 * a valid beginning but more are needed; -1 when they are not a PROXY
 * header or are malformed (*why, if not NULL, says why; a static string).
 * Never reads past n. */
int wm_pp_parse(const uint8_t *p, size_t n, struct wm_pp_info *info, const char **why);

/* Build the header and write it to fd, a socket that has just connected
 * (its send buffer is empty, so it goes whole). Returns 0, or -1 with
 * errno set (EMSGSIZE if the kernel took only part of it). */
int wm_pp_send(int fd, int version, const struct sockaddr *src, const struct sockaddr *dst);

/* "v1", "v2" or "off". */
const char *wm_pp_version_str(int version);

#endif
