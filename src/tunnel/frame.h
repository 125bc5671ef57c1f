/*
 * tunnel/frame.h - wmtun/1 wire format (docs/tunnel.md): frame header and
 * the payloads of control frames, as pure functions over byte buffers.
 *
 * Decoders never read past n and return -1 on anything malformed; encoders
 * return the number of bytes written, or 0 when cap is too small.
 */
#ifndef WM_TUNNEL_FRAME_H
#define WM_TUNNEL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WM_TUN_PREFACE "WMTUN/1\n"
#define WM_TUN_PREFACE_LEN 8
#define WM_TUN_HDR 9
#define WM_TUN_MAX_FRAME 16384
#define WM_TUN_MAX_PAYLOAD (WM_TUN_MAX_FRAME - WM_TUN_HDR)
/* Handshake version, in HELLO (docs/tunnel.md "Versions"). 2: the MACs
 * are bound to the TLS channel (exporter) and CHALLENGE carries flags. */
#define WM_TUN_VERSION 2
#define WM_TUN_NONCE 32
#define WM_TUN_BINDING 32 /* TLS exporter bytes in the MACs */
#define WM_TUN_MAC 32
#define WM_TUN_STR_MAX 1024 /* longest string field we accept */
#define WM_TUN_MAX_MAPPINGS 256
#define WM_TUN_MAX_RULES 64

enum wm_tun_type {
    WM_TUN_DATA = 0x00,
    WM_TUN_OPEN = 0x01,
    WM_TUN_OPEN_RESULT = 0x02,
    WM_TUN_RST = 0x03,
    WM_TUN_WINDOW_UPDATE = 0x04,
    WM_TUN_PING = 0x05,
    WM_TUN_GOAWAY = 0x06,
    WM_TUN_HELLO = 0x10,
    WM_TUN_CHALLENGE = 0x11,
    WM_TUN_AUTH = 0x12,
    WM_TUN_AUTH_RESULT = 0x13,
    WM_TUN_REGISTER = 0x14,
    WM_TUN_REGISTER_RESULT = 0x15,
};

enum {
    WM_TUN_FLAG_FIN = 0x01, /* DATA: last bytes of this direction */
    WM_TUN_FLAG_ACK = 0x01, /* PING: the answer */
};

/* OPEN kinds. */
enum wm_tun_open_kind {
    WM_TUN_OPEN_PROXY = 1,   /* serve the proxy protocol on the stream */
    WM_TUN_OPEN_MAPPING = 2, /* connect the named mapping's local service */
};

/* OPEN_RESULT codes. */
enum wm_tun_open_code {
    WM_TUN_OPEN_OK = 0,
    WM_TUN_OPEN_REFUSED = 1,
    WM_TUN_OPEN_UNREACHABLE = 2,
    WM_TUN_OPEN_TIMEOUT = 3,
    WM_TUN_OPEN_NO_MAPPING = 4,
    WM_TUN_OPEN_NOT_ALLOWED = 5,
    WM_TUN_OPEN_LIMIT = 6,
    WM_TUN_OPEN_CODE_COUNT
};

/* RST / GOAWAY codes. */
enum wm_tun_err {
    WM_TUN_ERR_NONE = 0,
    WM_TUN_ERR_CANCEL = 1,
    WM_TUN_ERR_READER_GONE = 2,
    WM_TUN_ERR_PROTOCOL = 3,
    WM_TUN_ERR_TIMEOUT = 4,
    WM_TUN_ERR_AUTH = 5,
    WM_TUN_ERR_VERSION = 6,
    WM_TUN_ERR_SHUTDOWN = 7,
};

enum wm_tun_mode {
    WM_TUN_MODE_HTTP = 1,
    WM_TUN_MODE_HTTPS,
    WM_TUN_MODE_TCP,
    WM_TUN_MODE_PROXY,
    WM_TUN_MODE_UDP, /* datagrams as length-prefixed records on a stream per peer */
};

struct wm_tun_hdr {
    uint32_t len;
    uint8_t type;
    uint8_t flags;
    uint32_t sid;
};

/* A string field: pointer into the decoded buffer (not NUL-terminated). */
struct wm_tun_str {
    const char *p;
    size_t n;
};

struct wm_tun_hello {
    uint8_t version;
    uint32_t window;
    struct wm_tun_str name;
};

/* CHALLENGE flags. */
enum {
    WM_TUN_CH_AUTH = 0x01, /* the server checks credentials */
    WM_TUN_CH_TLS = 0x02,  /* the server's end of the carrier is TLS (MACs bound to it) */
};

struct wm_tun_challenge {
    uint8_t nonce[WM_TUN_NONCE];
    uint8_t flags; /* WM_TUN_CH_* */
    uint32_t window;
};

struct wm_tun_auth {
    uint8_t nonce[WM_TUN_NONCE];
    struct wm_tun_str user;
    uint8_t mac[WM_TUN_MAC]; /* all zero when no credentials */
};

struct wm_tun_auth_result {
    uint8_t ok;
    uint8_t mac[WM_TUN_MAC];
    struct wm_tun_str reason;
};

struct wm_tun_rule {
    uint8_t request; /* 1: applies to the request sent to the service */
    uint8_t op;      /* '+', '-', '=' */
    struct wm_tun_str name;
    struct wm_tun_str value;
};

struct wm_tun_mapping {
    struct wm_tun_str name;
    uint8_t mode; /* enum wm_tun_mode */
    struct wm_tun_str domain;
    uint16_t remote_port;
    struct wm_tun_str bind;
    struct wm_tun_str group;
    uint16_t nrules;
    struct wm_tun_rule rules[WM_TUN_MAX_RULES];
};

struct wm_tun_open {
    uint8_t kind;
    struct wm_tun_str name; /* MAPPING */
    struct wm_tun_str peer; /* client address, for logs and headers (below) */
};

/* The OPEN peer field: the visitor's "ip:port" or "[v6]:port", optionally
 * followed by '>' and the local address it connected to (a public listener
 * of the server, an entry of the client): "203.0.113.7:50312>[::1]:8080".
 * Earlier nodes send the visitor alone and only log the field. */
#define WM_TUN_PEER_MAX 128

struct wm_tun_peer {
    struct sockaddr_storage src; /* the visitor */
    socklen_t srclen;            /* 0: not an IP address */
    struct sockaddr_storage dst; /* where it connected */
    socklen_t dstlen;            /* 0: not given (or not an IP address) */
};

/* Header: 0 and *h filled, or -1 (reserved bit set or length over limit). n >= 9. */
int wm_tun_hdr_decode(const uint8_t *p, struct wm_tun_hdr *h);
void wm_tun_hdr_encode(uint8_t out[WM_TUN_HDR], uint32_t len, uint8_t type, uint8_t flags,
                       uint32_t sid);

/* Is the header acceptable for its type (stream id, exact/minimum length,
 * known type)? Returns NULL if so, else a reason. */
const char *wm_tun_hdr_check(const struct wm_tun_hdr *h);

int wm_tun_hello_decode(const uint8_t *p, size_t n, struct wm_tun_hello *o);
size_t wm_tun_hello_encode(uint8_t *out, size_t cap, const struct wm_tun_hello *v);
int wm_tun_challenge_decode(const uint8_t *p, size_t n, struct wm_tun_challenge *o);
size_t wm_tun_challenge_encode(uint8_t *out, size_t cap, const struct wm_tun_challenge *v);
int wm_tun_auth_decode(const uint8_t *p, size_t n, struct wm_tun_auth *o);
size_t wm_tun_auth_encode(uint8_t *out, size_t cap, const struct wm_tun_auth *v);
int wm_tun_auth_result_decode(const uint8_t *p, size_t n, struct wm_tun_auth_result *o);
size_t wm_tun_auth_result_encode(uint8_t *out, size_t cap, const struct wm_tun_auth_result *v);

/* REGISTER: a list of mappings. decode fills at most max entries into out
 * and returns their count, or -1. */
int wm_tun_register_decode(const uint8_t *p, size_t n, struct wm_tun_mapping *out, size_t max);
size_t wm_tun_register_encode(uint8_t *out, size_t cap, const struct wm_tun_mapping *v,
                              size_t count);
/* REGISTER_RESULT: count entries of (ok, reason). */
int wm_tun_register_result_decode(const uint8_t *p, size_t n, uint8_t *ok,
                                  struct wm_tun_str *reason, size_t max);
size_t wm_tun_register_result_encode(uint8_t *out, size_t cap, const uint8_t *ok,
                                     const char *const *reason, size_t count);

/* Write the peer field for src (and dst, may be NULL) into out (cap >=
 * WM_TUN_PEER_MAX); src NULL gives "-". Returns out. */
const char *wm_tun_peer_format(char *out, size_t cap, const struct sockaddr *src,
                               const struct sockaddr *dst);
/* Parse a peer field (never fails: what is not an address stays unknown). */
void wm_tun_peer_parse(struct wm_tun_str s, struct wm_tun_peer *out);

int wm_tun_open_decode(const uint8_t *p, size_t n, struct wm_tun_open *o);
size_t wm_tun_open_encode(uint8_t *out, size_t cap, const struct wm_tun_open *v);
/* OPEN_RESULT, RST and GOAWAY: a code and a reason. */
int wm_tun_code_decode(const uint8_t *p, size_t n, bool wide, uint32_t *code,
                       struct wm_tun_str *reason);
size_t wm_tun_code_encode(uint8_t *out, size_t cap, bool wide, uint32_t code, const char *reason);

const char *wm_tun_type_name(uint8_t type);
const char *wm_tun_open_code_str(uint8_t code);
/* The same as one token ("no-such-mapping"), for an access line's end=. */
const char *wm_tun_open_code_end(uint8_t code);

/* Copy a string field into a NUL-terminated buffer (truncating). */
void wm_tun_str_copy(char *dst, size_t cap, struct wm_tun_str s);
bool wm_tun_str_eq(struct wm_tun_str s, const char *lit);

#endif
