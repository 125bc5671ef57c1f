/*
 * h2/h2.h - HTTP/2 downstream (RFC 9113, with libnghttp2) on the public
 * HTTP ports: TLS with ALPN "h2", plain ports with the prior-knowledge
 * preface or the "Upgrade: h2c" handshake (h2c).
 *
 * Design: one request pipeline, two framings. Each HTTP/2 stream becomes a
 * virtual downstream connection for the one HTTP/1 engine (http/fwd.h):
 * the stream gets a bufferevent pair; a request without body hands its
 * head to the engine already parsed (wm_hfwd_give_head), and the engine
 * hands the upstream's answer back parsed (wm_hfwd_sink: head, unframed
 * body, end) when the target has no response header rules. Others write
 * an HTTP/1.1 translation of the request on our end (head from the
 * HEADERS, body from DATA, chunked when no Content-Length) and we parse
 * the HTTP/1.1 answer the engine writes back (llhttp, http/parser.h) into
 * HEADERS + DATA; local answers (errors, static responses) come as bytes
 * too. The engine's end is a struct wm_conn of the service's own type,
 * served by the service's own ops, so routing, header rules, limits, the
 * upstream keep-alive pool and the access logs are exactly those of
 * HTTP/1 (the engine's HTTP/2 hooks are wm_hfwd_give_head and its sink).
 * Flow control follows the pair: a stream's window opens only as the
 * engine takes its request bytes (a slow upstream stops that stream, not
 * the connection), and a stream whose DATA frames wait for the client
 * stops reading its pair end or tells the sink it is full (a slow client
 * stops its upstream read through the engine's own back-pressure).
 * Extended CONNECT (RFC 8441) becomes a WebSocket Upgrade on the pair; the
 * 101 answers 200 and the stream then relays bytes both ways. Server push
 * is off.
 *
 * Limits (defaults like nginx): 128 concurrent streams, header list as the
 * HTTP/1 head limit, and floods of SETTINGS, PING, RST_STREAM (rapid reset,
 * CVE-2023-44487), empty frames and CONTINUATION (CVE-2024-27316) end the
 * connection with GOAWAY ENHANCE_YOUR_CALM and one log line.
 *
 * Ownership: the HTTP/2 state lives in c->proto_data and goes with the
 * connection. Each stream's engine connection is owned by its engine; our
 * pair end is owned by the stream, freed when the answer is complete (the
 * engine then sees EOF and parks its upstream) or the stream is reset (the
 * engine sees an error and stops).
 */
#ifndef WM_H2_H2_H
#define WM_H2_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wm_conn;
struct wm_hfwd;
struct wm_hfwd_ops;
struct wm_http_head;
struct wm_http_field;
struct wm_worker;

/* Defaults (nginx: http2_max_concurrent_streams 128). */
#define WM_H2_MAX_STREAMS    128
/* Request bodies a connection makes us hold: what its streams sent and the
 * engines have not taken (at most WM_H2_CONN_WINDOW, a stream at most
 * WM_H2_STREAM_WINDOW), plus, per stream, what its engine queues upstream
 * (WM_H2_QUEUE_MAX and one read of up to WM_HTTP_CLIENT_READ_MAX). */
#define WM_H2_STREAM_WINDOW  (256 * 1024)       /* per stream, request bodies */
#define WM_H2_CONN_WINDOW    (4 * 1024 * 1024)  /* whole connection */
#define WM_H2_QUEUE_MAX      (16 * 1024)        /* queued towards a stream's upstream (ops.queue_max) */
#define WM_H2_BODY_HIGH      (128 * 1024)       /* response bytes waiting per stream */
#define WM_H2_OUT_HIGH       (256 * 1024)       /* connection output before we wait */
#define WM_H2_SEND_MS        60000              /* wm_h2_front.send_ms by default */
/* Flood budgets, per connection and per 10 s window. */
#define WM_H2_FLOOD_WINDOW_MS 10000
#define WM_H2_MAX_SETTINGS   100
#define WM_H2_MAX_PING       100
#define WM_H2_MAX_RST        400   /* client resets, and streams cancelled early */
#define WM_H2_MAX_EMPTY      200   /* DATA without payload nor END_STREAM, etc. */
#define WM_H2_MAX_CONT       16    /* CONTINUATION frames in one header block */
#define WM_H2_IDLE_ENGINES   WM_H2_MAX_STREAMS /* waiting engine pairs per connection */
#define WM_H2_IDLE_ENGINE_MS 10000 /* an engine pair waits that long at most */
#define WM_H2_ENGINE_LINGER_MS 500 /* waiting engines stay while the connection has no
                                    * stream, that long or its idle limit if shorter
                                    * (then they go, see h2_idle_check) */

/* How a service serves HTTP/2: the ops and connection record size of its
 * HTTP/1 engine, used for every stream. Owned by the service, which
 * outlives its connections. */
struct wm_h2_front {
    const struct wm_hfwd_ops *ops; /* each stream's request (proto names the log) */
    size_t conn_size;              /* the service's connection record, wm_conn first */
    bool tls;                      /* :scheme https */
    /* The client's socket took no byte for this long while our frames
     * wait: the connection is closed (nginx's send_timeout; 0: 60 s). A
     * stream whose window the client keeps shut waits per location
     * instead (client_write_timeout), without stopping the others. */
    int send_ms;
    /* NULL, or: does the server req is for (its Host) take HTTP/2? false:
     * the stream is reset with HTTP_1_1_REQUIRED (RFC 9113 7), which asks
     * the client to send it again over HTTP/1.1. For a connection whose
     * protocol was chosen before any Host: prior knowledge on an address
     * shared by servers, or TLS with another server's SNI. */
    bool (*serves)(const struct wm_h2_front *fr, const struct wm_http_head *req);
};

/* Serve the accepted connection c: HTTP/2 when TLS chose ALPN h2 or a
 * plain client starts with the HTTP/2 preface (when h2 is not NULL), else
 * the HTTP/1 engine with h1 (wm_hfwd_start). */
void wm_h2_serve(struct wm_conn *c, const struct wm_hfwd_ops *h1, const struct wm_h2_front *h2);

/* From a route op on a plain port: does req ask for "Upgrade: h2c" (with
 * HTTP2-Settings, no body)? Then wm_h2_upgrade() takes the connection:
 * answers 101, and req becomes stream 1. Returns WM_HFWD_TAKEN, or 0 when
 * it cannot (the request goes on as HTTP/1). */
bool wm_h2_wants_upgrade(struct wm_http_head *req);
int wm_h2_upgrade(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                  const struct wm_h2_front *h2);

/* ALPN for a TLS front: h2 (when allowed) before http/1.1. Returns an
 * SSL_TLSEXT_ERR_* value, as the OpenSSL select callback. */
int wm_h2_alpn_select(const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                      unsigned int inlen, bool h2);

/* On worker w's thread: every HTTP/2 connection of w sends GOAWAY (graceful
 * stop or reload); open streams finish, then the connection closes. */
void wm_h2_goaway_worker(struct wm_worker *w, void *arg);

/* ---- translation (h2_head.c) ---- */

/* One request's header list on its way to an HTTP/1.1 head. */
struct wm_h2_req;
struct evbuffer;

struct wm_h2_req *wm_h2_req_new(void);
void wm_h2_req_free(struct wm_h2_req *r);
/* Empty r for another request (its buffers stay allocated). */
void wm_h2_req_reset(struct wm_h2_req *r);
/* An empty r releases its head's storage (an idle connection holds none). */
void wm_h2_req_trim(struct wm_h2_req *r);
/* Add a field as nghttp2 delivered it (pseudo-headers first). 0, or -1
 * when the list is over its limit or a field cannot be expressed in
 * HTTP/1.1 (the stream gets 431 / 400). */
int wm_h2_req_add(struct wm_h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                  size_t vlen);
/* The header list is complete: check it and complete the HTTP/1.1 head
 * it becomes (request line, Host from :authority, joined cookies, framing
 * fields). end_stream: no body follows. Returns 0, or an HTTP status (400,
 * 405, 431) to answer instead. Sets *chunked when the body must be sent
 * with chunk framing, *ws for an RFC 8441 WebSocket, *is_head for HEAD (also
 * when it returns a status: that answer has no body either). */
int wm_h2_req_finish(struct wm_h2_req *r, bool end_stream, bool *chunked, bool *ws,
                     bool *is_head);
/* After wm_h2_req_finish(): the head, for the engine to take as it is
 * (wm_hfwd_give_head: a request without body, not a WebSocket, with a plain
 * request-target), or NULL when it must go as bytes. r owns what the
 * pointer points to (the engine swaps an empty head in). */
struct wm_http_head **wm_h2_req_parsed(struct wm_h2_req *r);
/* After wm_h2_req_finish(): the HTTP/1.1 head (Host from :authority), to
 * read. Borrowed from r. */
const struct wm_http_head *wm_h2_req_head(const struct wm_h2_req *r);
/* After wm_h2_req_finish(): the head as HTTP/1.1 bytes into out. 0, or 500. */
int wm_h2_req_write(struct wm_h2_req *r, struct evbuffer *out);
/* "METHOD path" of r as far as it came, for a log line (quotes and
 * controls as '?', the path cut at 200 bytes) into buf. */
void wm_h2_req_line(const struct wm_h2_req *r, char *buf, size_t cap);
/* An HTTP/1 response field: keep it for HTTP/2? (no hop-by-hop fields) */
bool wm_h2_resp_keep(const struct wm_http_head *h, const struct wm_http_field *f);

#endif
