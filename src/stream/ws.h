/*
 * stream/ws.h - the WebSocket protocol (RFC 6455): frame headers, the
 * rules a receiver checks (masking by role, fragmentation, control frames,
 * close codes, message size), masking and the handshake's accept key.
 *
 * Pure functions over byte buffers; nothing is allocated. The bridges
 * (stream/wsbridge.c) use them in both roles.
 */
#ifndef WM_STREAM_WS_H
#define WM_STREAM_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 5.2). */
enum wm_ws_op {
    WM_WS_OP_CONT = 0x0,
    WM_WS_OP_TEXT = 0x1,
    WM_WS_OP_BINARY = 0x2,
    WM_WS_OP_CLOSE = 0x8,
    WM_WS_OP_PING = 0x9,
    WM_WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 7.4.1). */
enum wm_ws_code {
    WM_WS_CLOSE_NORMAL = 1000,
    WM_WS_CLOSE_GOING_AWAY = 1001,
    WM_WS_CLOSE_PROTOCOL = 1002,
    WM_WS_CLOSE_UNSUPPORTED = 1003, /* a text message: the bridges carry bytes */
    WM_WS_CLOSE_NO_STATUS = 1005,   /* never on the wire */
    WM_WS_CLOSE_BAD_DATA = 1007,    /* close reason not UTF-8 */
    WM_WS_CLOSE_TOO_BIG = 1009,
    WM_WS_CLOSE_INTERNAL = 1011,
};

#define WM_WS_HDR_MAX 14           /* 2 + 8 (length) + 4 (mask) */
#define WM_WS_CONTROL_MAX 125      /* 5.5: control payloads */
#define WM_WS_MAX_MESSAGE (16u << 20) /* default message size limit */
#define WM_WS_KEY_LEN 24           /* base64 of 16 bytes */
#define WM_WS_ACCEPT_LEN 28        /* base64 of a SHA-1 */

/* One frame header as read. */
struct wm_ws_frame {
    bool fin;
    uint8_t op;
    bool masked;
    uint8_t mask[4];
    uint64_t len;      /* payload length */
    size_t hdr_len;    /* bytes of the header */
};

/* What a receiver knows between frames. */
struct wm_ws_dec {
    bool server;       /* we are the server: frames must be masked (5.1) */
    uint64_t max;      /* message size limit (0: WM_WS_MAX_MESSAGE) */
    bool in_msg;       /* a fragmented message is open */
    uint8_t msg_op;    /* its opcode */
    uint64_t msg_len;  /* its bytes so far */
};

/* Read the frame header at p[0..n) and check it against d's rules (RSV
 * bits, opcodes, masking by role, control frames <= 125 bytes and not
 * fragmented, continuation only inside a message, a data frame never
 * inside one, the 63-bit length rule, the message limit). Returns the
 * header length (> 0) with *f filled and d advanced; 0 when more bytes
 * are needed; -1 with *code (1002 or 1009) when the peer broke a rule. */
int wm_ws_dec_header(struct wm_ws_dec *d, const uint8_t *p, size_t n, struct wm_ws_frame *f,
                     uint16_t *code);

/* A close frame's payload (unmasked): 0 bytes, or a valid code then a
 * UTF-8 reason. Returns 0 with *code (1005 when empty), or -1 with *code
 * the close code to answer (1002, 1007). */
int wm_ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);

/* May code appear on the wire in a close frame (7.4)? */
bool wm_ws_close_code_ok(unsigned code);

/* Write a frame header into out (WM_WS_HDR_MAX bytes): mask NULL for an
 * unmasked (server) frame. Returns its length. */
size_t wm_ws_header(uint8_t *out, bool fin, uint8_t op, uint64_t len, const uint8_t mask[4]);

/* XOR p[0..n) with mask, starting at byte `off` of the payload. */
void wm_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

/* Sec-WebSocket-Accept for key (4.2.2): out gets WM_WS_ACCEPT_LEN + 1
 * bytes (NUL-terminated). */
void wm_ws_accept(const char *key, size_t n, char out[WM_WS_ACCEPT_LEN + 1]);

/* Is key a valid Sec-WebSocket-Key (base64 of 16 bytes)? */
bool wm_ws_key_ok(const char *key, size_t n);

#endif
