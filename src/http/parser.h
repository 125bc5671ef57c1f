/*
 * http/parser.h - HTTP/1 message framing on top of llhttp.
 *
 * Two phases per message:
 *  1. head: feed bytes until the head is complete; the head is collected in a
 *     wm_http_head; the call stops exactly at the end of the head;
 *  2. body: feed raw bytes; the call reports how many belong to this message
 *     (so a proxy can forward them untouched, chunk framing included) and
 *     stops exactly at the end of the message, leaving pipelined bytes.
 * Then wm_http_parser_next() readies it for the following message.
 *
 * Refused in heads as malformed (WM_HTTP_ERR_SYNTAX), beyond what llhttp's
 * strict mode refuses: obs-fold (RFC 9112 5.2; requests and responses),
 * and for requests the checks of check_request() in parser.c.
 */
#ifndef WM_HTTP_PARSER_H
#define WM_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wm_http_head;
struct wm_http_parser;

enum wm_http_kind { WM_HTTP_REQUEST = 1, WM_HTTP_RESPONSE = 2 };

enum wm_http_res {
    WM_HTTP_MORE = 0,      /* everything consumed, message not finished */
    WM_HTTP_HEAD_DONE,     /* head complete; *used = bytes up to its end */
    WM_HTTP_MSG_DONE,      /* message complete; *used = bytes up to its end */
    WM_HTTP_ERR_SYNTAX,    /* malformed: 400 / 502 */
    WM_HTTP_ERR_TOO_LARGE, /* head over the limit: 431 / 502 */
    WM_HTTP_ERR_FRAMING,   /* conflicting Content-Length / Transfer-Encoding */
};

/* Called with decoded body bytes (chunk framing removed) when set. */
typedef void (*wm_http_body_cb)(void *arg, const char *p, size_t n);

struct wm_http_parser *wm_http_parser_new(enum wm_http_kind kind, size_t head_limit,
                                          size_t max_fields);
void wm_http_parser_free(struct wm_http_parser *p);

/* The head being/just built (owned by the parser). */
struct wm_http_head *wm_http_parser_head(struct wm_http_parser *p);

/* Head phase. */
enum wm_http_res wm_http_parser_feed_head(struct wm_http_parser *p, const char *data, size_t n,
                                          size_t *used);
/* Body phase (also valid right after HEAD_DONE for bodyless messages: call
 * with n == 0 to learn that the message is already complete). */
enum wm_http_res wm_http_parser_feed_body(struct wm_http_parser *p, const char *data, size_t n,
                                          size_t *used);
/* The peer closed: completes a read-until-close body. MSG_DONE or ERR_SYNTAX
 * (message cut short). */
enum wm_http_res wm_http_parser_feed_eof(struct wm_http_parser *p);

/* Start over, as for a new connection. */
void wm_http_parser_reset(struct wm_http_parser *p);

/* Ready for the next message on the same connection. */
void wm_http_parser_next(struct wm_http_parser *p);

/* A request head that was parsed elsewhere (an HTTP/2 stream's header list,
 * validated there: version 1.1 set, no connection-specific fields, one
 * Host) for a request without body, in place of bytes: p takes *h and gives
 * back its own empty head in *h (same limits), as if HEAD_DONE then
 * MSG_DONE had been reported (keep-alive, no upgrade, no body). Only
 * between requests (nothing fed since the last next/reset). Returns 0, or
 * -1 (nothing changed) when p is busy or the method is CONNECT or unknown
 * to llhttp: the caller sends bytes instead. */
int wm_http_parser_give_head(struct wm_http_parser *p, struct wm_http_head **h);

/* Facts about the current message (valid after HEAD_DONE). */
bool wm_http_parser_keep_alive(struct wm_http_parser *p);
bool wm_http_parser_upgrade(struct wm_http_parser *p);   /* Upgrade / CONNECT */
bool wm_http_parser_chunked(struct wm_http_parser *p);
bool wm_http_parser_needs_eof(struct wm_http_parser *p); /* body ends at close */
bool wm_http_parser_has_body(struct wm_http_parser *p);  /* request: body bytes still to read */
int wm_http_parser_method(struct wm_http_parser *p);     /* llhttp_method */
/* Body bytes of the current message so far, chunk framing removed. */
uint64_t wm_http_parser_body_bytes(const struct wm_http_parser *p);
/* Response to a HEAD request (or similar): the next head has no body. */
void wm_http_parser_expect_no_body(struct wm_http_parser *p, bool on);
void wm_http_parser_set_body_cb(struct wm_http_parser *p, wm_http_body_cb cb, void *arg);
/* Human-readable reason of the last error. */
const char *wm_http_parser_error(struct wm_http_parser *p);
/* The HTTP status that answers the last error of a request: 400, 431 (head
 * too large), 501 (a transfer coding other than chunked), 505 (not HTTP/1). */
int wm_http_parser_error_status(struct wm_http_parser *p);

#endif
