/*
 * proxy/socks_proto.h - SOCKS4/4a and SOCKS5 wire formats (RFC 1928, RFC 1929),
 * as pure functions over byte buffers, so they are unit-testable.
 *
 * Parsers return the number of bytes consumed (> 0), WM_SOCKS_MORE when the
 * buffer ends before the message does, or a negative WM_SOCKS_E* code.
 */
#ifndef WM_PROXY_SOCKS_PROTO_H
#define WM_PROXY_SOCKS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/addr.h"

enum {
    WM_SOCKS_MORE = 0,       /* need more bytes */
    WM_SOCKS_EPROTO = -1,    /* malformed / wrong version */
    WM_SOCKS_EATYP = -2,     /* unknown address type (reply 8) */
    WM_SOCKS_EFRAG = -3,     /* UDP fragment (dropped) */
};

/* RFC 1928 section 3: authentication methods. */
enum wm_socks5_method {
    WM_SOCKS5_METHOD_NONE = 0x00,
    WM_SOCKS5_METHOD_GSSAPI = 0x01,
    WM_SOCKS5_METHOD_USERPASS = 0x02,
    WM_SOCKS5_METHOD_REFUSED = 0xff,
};

/* RFC 1928 section 4: commands. */
enum wm_socks5_cmd {
    WM_SOCKS5_CMD_CONNECT = 0x01,
    WM_SOCKS5_CMD_BIND = 0x02,
    WM_SOCKS5_CMD_UDP = 0x03,
};

/* RFC 1928 section 5: address types. */
enum wm_socks5_atyp {
    WM_SOCKS5_ATYP_IPV4 = 0x01,
    WM_SOCKS5_ATYP_DOMAIN = 0x03,
    WM_SOCKS5_ATYP_IPV6 = 0x04,
};

/* RFC 1928 section 6: reply codes. */
enum wm_socks5_rep {
    WM_SOCKS5_REP_OK = 0x00,
    WM_SOCKS5_REP_FAILURE = 0x01,
    WM_SOCKS5_REP_NOT_ALLOWED = 0x02,
    WM_SOCKS5_REP_NET_UNREACH = 0x03,
    WM_SOCKS5_REP_HOST_UNREACH = 0x04,
    WM_SOCKS5_REP_REFUSED = 0x05,
    WM_SOCKS5_REP_TTL_EXPIRED = 0x06,
    WM_SOCKS5_REP_CMD_UNSUPPORTED = 0x07,
    WM_SOCKS5_REP_ATYP_UNSUPPORTED = 0x08,
};

/* SOCKS4 reply codes (CD field of the reply). */
enum wm_socks4_rep {
    WM_SOCKS4_REP_GRANTED = 0x5a,
    WM_SOCKS4_REP_REJECTED = 0x5b,
};

/* A target as carried in a request: host is an IP literal (no brackets) or
 * a domain name, always NUL-terminated. */
struct wm_socks_addr {
    uint8_t atyp;
    char host[WM_HOST_MAX];
    uint16_t port;
};

/* Greeting: VER NMETHODS METHODS. Sets which of NONE/USERPASS were offered. */
int wm_socks5_parse_greeting(const uint8_t *p, size_t n, bool *offers_none,
                             bool *offers_userpass);

/* RFC 1929 request: VER(1) ULEN UNAME PLEN PASSWD. user/pass get NUL-terminated
 * copies (capacity 256 each); lengths in *ulen / *plen. */
int wm_socks5_parse_userpass(const uint8_t *p, size_t n, char user[256], size_t *ulen,
                             char pass[256], size_t *plen);

/* Request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
int wm_socks5_parse_request(const uint8_t *p, size_t n, uint8_t *cmd, struct wm_socks_addr *a);

/* Reply with BND.ADDR/PORT from bound (NULL: 0.0.0.0:0). out >= 22 bytes.
 * Returns the length. */
size_t wm_socks5_build_reply(uint8_t *out, uint8_t rep, const struct sockaddr *bound);

/* UDP request header (RFC 1928 section 7): RSV(2) FRAG ATYP ADDR PORT.
 * Returns the header length, WM_SOCKS_EFRAG for FRAG != 0, or an error. */
int wm_socks5_parse_udp(const uint8_t *p, size_t n, struct wm_socks_addr *a);

/* UDP header for a datagram coming from src. out >= 22 bytes. Returns length. */
size_t wm_socks5_build_udp_header(uint8_t *out, const struct sockaddr *src);

/* SOCKS4/4a request: VN=4 CD DSTPORT DSTIP USERID\0 [HOST\0].
 * user gets the USERID (capacity 256, truncated). */
int wm_socks4_parse_request(const uint8_t *p, size_t n, uint8_t *cmd, struct wm_socks_addr *a,
                            char user[256]);

/* SOCKS4 reply: 00 CD PORT IP (8 bytes). */
size_t wm_socks4_build_reply(uint8_t *out, uint8_t cd);

#endif
