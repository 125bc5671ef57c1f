/*
 * http/fwd.h - the one HTTP/1 forwarding engine: reads requests from a
 * client connection, sends each to an upstream chosen by `ops`, streams
 * bodies both ways (raw, chunk framing untouched), keeps both sides alive,
 * serves pipelined requests in order, passes Upgrade/101 through, and
 * answers errors as HTTP. Used by the forward proxy (absolute URIs, dial)
 * and by the tunnel's public HTTP side (Host routing, tunnel streams).
 *
 * Ownership: the engine lives in c->proto_data and goes with the
 * connection (net/conn.h), or earlier with wm_hfwd_detach(). Its callbacks
 * run inside wm_conn_enter()/wm_conn_leave(), so the ops may finish the
 * connection from any of them.
 *
 * Idle keep-alive clients: after WM_HTTP_QUIET_MS (WM_HTTP_PARK_MS on a
 * plain socket) without a byte between
 * requests, an idle upstream goes back to ops->park and, on a plain socket
 * with nothing held, the client is parked (net/conn.h: no bufferevent, no
 * engine timer or parser; fwd_park.c) until its next bytes or the end of
 * client keep-alive; with ops without park (forward proxy, tunnel HTTP
 * mappings) the idle upstream connection stays attached meanwhile. TLS,
 * HTTP/2 streams and tunnel streams are not parked.
 */
#ifndef WM_HTTP_FWD_H
#define WM_HTTP_FWD_H

#include <stdbool.h>
#include <stddef.h>

#include "net/addr.h"

struct bufferevent;
struct evbuffer;
struct wm_http_head;
struct wm_conn;
struct wm_hfwd;

/* A header rule (wmproxy syntax, see conf/schema.h). Values may use
 * {client_ip}, {url}, {host}, {path}, {method} (or $client_ip etc.). */
struct wm_hfwd_rule {
    bool request;      /* applies to the request sent upstream, else the response */
    char op;           /* '+' add, '-' remove, '=' set */
    const char *name;
    const char *value;
};

/* Where one request goes (filled by ops->route). */
struct wm_hfwd_target {
    char key[2 * WM_HOST_MAX + 48]; /* equal keys may share an upstream connection */
    char log[WM_HOST_MAX + 80];     /* target as the access log shows it */
    char host_hdr[WM_HOST_MAX + 8]; /* Host to send; "" keeps the client's */
    const char *path;               /* request-target to send; NULL keeps the client's */
    size_t pathlen;
    const struct wm_hfwd_rule *rules;
    size_t nrules;
    const char *scheme;             /* {scheme} in rules ("http" when NULL) */
    int idle_ms;                    /* target silence allowed while forwarding
                                     * (0: the connection's idle limit) */
    /* Optional separate limits (0: idle_ms covers them, as before): */
    int client_read_ms;             /* client silence while its body is due: 408 */
    int client_write_ms;            /* the client leaves our output unread: cut */
    int up_write_ms;                /* the target leaves the request unread: 504 */
    /* Request body limit in bytes, chunk framing excluded (0: none). Once
     * crossed, the upstream connection is closed (never pooled: it holds a
     * cut request) and the client answered 413 when no final response
     * head went out yet, else cut. */
    unsigned long long max_body;
    /* WM_HFWD_LOCAL: the answer (body owned by the op, e.g. in data) */
    int local_status;
    const char *local_ctype;
    const char *local_extra;        /* header lines, each ending in CRLF, or NULL */
    const void *local_body;
    size_t local_len;
    /* WM_HFWD_STREAM: the body comes from this producer (owned by the op) */
    const struct wm_hfwd_stream *stream;
    /* With ops->up_result: request body bytes the engine keeps so that the
     * request can be sent again (0: a request with a body never can;
     * beyond it the copy is dropped and the request is not replayable). */
    size_t replay_max;
    void *data;                     /* for ops */
};

/* What became of a request sent upstream (ops->up_result). */
enum wm_hfwd_up {
    WM_HFWD_UP_STATUS,  /* a final response head came (its status is given) */
    WM_HFWD_UP_ERROR,   /* the connection failed or closed before a response head */
    WM_HFWD_UP_TIMEOUT, /* no response head within t.idle_ms, or the upstream did not
                         * take the request within t.up_write_ms */
    WM_HFWD_UP_INVALID, /* a malformed response head */
};

/* What one request did, for access logs (ops->logged). */
struct wm_hfwd_log {
    int status;             /* sent to the client (0: nothing was) */
    int up_status;          /* the upstream's final status, 0 when none answered */
    unsigned long long bytes_in;   /* from the client, heads included */
    unsigned long long bytes_out;  /* to the client, heads included */
    unsigned long long body_out;   /* of which body bytes */
    unsigned long long request_ms; /* first byte of the request to now */
    long long up_response_ms;      /* request sent to response head; -1: none */
    const struct wm_hfwd_target *t;
};

#define WM_HFWD_TAKEN (-1) /* route(): the op took the connection over */
#define WM_HFWD_LOCAL (-2) /* route(): answer with t->local_* (no upstream) */
#define WM_HFWD_STREAM (-3) /* route(): head from t->local_* (not local_body/len), body
                             * from t->stream */

/* A local answer whose body is produced piece by piece (static files):
 * pump() is called while the client's output holds less than
 * WM_HTTP_STREAM_LOW bytes, from route() on and then from the client's
 * write callback. */
enum wm_hfwd_pump {
    WM_HFWD_PUMP_MORE, /* progressed (added bytes, or consumed input): call again */
    WM_HFWD_PUMP_WAIT, /* nothing now: the producer calls wm_hfwd_stream_resume() */
    WM_HFWD_PUMP_DONE, /* the body is complete */
    WM_HFWD_PUMP_FAIL, /* cannot go on (file changed, read error): close the connection */
};

#define WM_HFWD_LEN_UNKNOWN (~0ULL) /* chunked to HTTP/1.1, close-delimited to 1.0 */

struct wm_hfwd_stream {
    /* Append the next body bytes to out. */
    enum wm_hfwd_pump (*pump)(void *arg, struct evbuffer *out);
    void *arg;
    unsigned long long length; /* Content-Length, or WM_HFWD_LEN_UNKNOWN */
};

struct wm_hfwd_ops {
    const char *proto; /* access log: "http", "tunnel-http" */
    /* Bytes queued for one side before the other is read no more: a
     * request body towards the upstream, a response towards the client,
     * and after an upgrade (WebSocket) either way; 0: WM_HTTP_BODY_HIGH_WATER
     * and WM_RELAY_HIGH_WATER. HTTP/2 streams take a small one: the
     * stream's flow-control window (and its answer buffer) is their buffer
     * already. */
    size_t queue_max;
    /* The request head is complete. Fill t and return 0 to forward; return
     * an HTTP status >= 400 to answer with it (*detail: body text, *extra:
     * header lines ending in CRLF, both may stay NULL); or WM_HFWD_TAKEN. */
    int (*route)(struct wm_hfwd *f, struct wm_conn *c, struct wm_http_head *req,
                 struct wm_hfwd_target *t, const char **detail, const char **extra);
    /* Connect to t and later (never from inside this call) call
     * wm_hfwd_connected() once, unless cancel() came first. Returns a handle
     * for cancel(), or NULL when connecting is impossible right now (then
     * wm_hfwd_connected() must not be called; the client gets a 502). */
    void *(*connect)(struct wm_hfwd *f, struct wm_conn *c, const struct wm_hfwd_target *t);
    void (*cancel)(void *handle);
    /* Optional: release t->data (the target is replaced or the connection ends). */
    void (*release)(struct wm_hfwd_target *t);
    /* Optional keep-alive pool across client connections. take_idle: an
     * idle upstream connection for t (taken by the engine), or NULL; a
     * request sent on it is retried once on a new connection when it turns
     * out closed. park: an upstream connection with nothing in flight,
     * reusable for `key`, that this client no longer needs (taken: the op
     * keeps it or frees it). */
    struct bufferevent *(*take_idle)(struct wm_hfwd *f, const struct wm_hfwd_target *t);
    void (*park)(struct wm_hfwd *f, const char *key, struct bufferevent *up);
    /* Optional: a request is over (answered, failed or cut); called once
     * per request, after the main log's access line, with what it did. */
    void (*logged)(struct wm_hfwd *f, const struct wm_hfwd_log *l);
    /* Optional: what became of the request sent on t (every final response
     * head: r WM_HFWD_UP_STATUS with its status, or 101 to an Upgrade; or a
     * failure before one; failed connects are connect()'s own business).
     * replayable: nothing went to the client yet (not even a 1xx head) and
     * the request can be sent again (no body, or all of its body so far
     * within t->replay_max). Return true only when replayable, after moving
     * t to another server (key, log, host_hdr as route() fills them, data
     * as connect() needs it): the engine closes this upstream connection,
     * rebuilds the head and sends the request again (on take_idle's
     * connection for the new key, or connect()'s), body replayed. Return
     * false to go on as without this op: the error answer (502, 504), or
     * the response passed on. */
    bool (*up_result)(struct wm_hfwd *f, struct wm_hfwd_target *t, enum wm_hfwd_up r,
                      int status, bool replayable);
};

/* For take_idle: the idle upstream for key that another HTTP/1 client
 * (plain socket) of this worker holds between its requests (the longest
 * idle first), taken from
 * it, or NULL. That client takes or dials one when it asks again, so a
 * burst of keep-alive clients needs about as many upstream connections
 * as requests in flight, as with nginx's keepalive cache. */
struct bufferevent *wm_hfwd_take_held(struct wm_hfwd *f, const char *key);

/* Serve c (its bufferevent is the client) with ops. */
void wm_hfwd_start(struct wm_conn *c, const struct wm_hfwd_ops *ops);

/* The upstream for the current request: up (taken) or NULL with an HTTP
 * status (502, 504, ...) and a detail for the error answer. */
void wm_hfwd_connected(struct wm_hfwd *f, struct bufferevent *up, int status,
                       const char *detail);

/* Where the answer to a head given with wm_hfwd_give_head() may go parsed
 * instead of as HTTP/1 bytes on the client bufferevent: an HTTP/2 stream
 * (h2/h2_stream.c) turns it into HEADERS and DATA. The engine uses the
 * sink for a request's answer from the upstream when the target has no
 * response header rules (else it writes bytes, as for any client); local
 * answers (errors, static responses) always go as bytes. Bytes and log
 * fields are counted as for the bytes path. The callbacks run inside the
 * engine's own callbacks and must not call into the engine. */
struct wm_hfwd_sink {
    /* A response head (interim when status < 200, else final; last: no
     * body follows), hop-by-hop fields still in (the sink drops them). */
    void (*head)(void *arg, struct wm_http_head *hd, bool last);
    /* Body bytes, chunk framing removed: all of b, which the sink takes
     * (evbuffer_add_buffer: chains move, no copy). Returns false when the
     * sink holds enough: the engine stops reading the upstream until
     * wm_hfwd_sink_resume(). */
    bool (*body)(void *arg, struct evbuffer *b);
    /* The answer is complete. keep: the engine waits for the next request
     * on this client; else it closes the client after this. */
    void (*done)(void *arg, bool keep);
};

/* A virtual client (an HTTP/2 stream on its end of a bufferevent pair)
 * hands the engine serving `client` (the engine's end) its next request
 * head, already parsed and validated, for a request without body: the
 * engine takes *head and gives back an empty head in *head (see
 * wm_http_parser_give_head), then serves the request at once, exactly as
 * if it had read its bytes (routing, rules, limits, logs). sink (may be
 * NULL) and arg: where the answer may go parsed, until the answer is done
 * or wm_hfwd_sink_drop(). Returns 0, or -1 (*head untouched) when no
 * engine is waiting for a request on client: the caller then writes the
 * head as bytes. Ownership of *head stays the caller's either way. */
int wm_hfwd_give_head(struct bufferevent *client, struct wm_http_head **head,
                      const struct wm_hfwd_sink *sink, void *arg);
/* The sink of the engine serving client is gone (the stream lets go of
 * its end): nothing more is handed to it; an answer in progress is read
 * and dropped until the engine learns the client's end. */
void wm_hfwd_sink_drop(struct bufferevent *client);
/* The sink takes body bytes again (after body() returned false); call it
 * from outside any engine callback. */
void wm_hfwd_sink_resume(struct bufferevent *client);
/* Before it makes an error event on client (an HTTP/2 stream's pair end):
 * why the answer in progress is being cut, for the request's access line
 * (why="..."). why is a static string. */
void wm_hfwd_cut_reason(struct bufferevent *client, const char *why);

/* Answer the current request with an error and close (after WM_HFWD_TAKEN
 * or while connecting). */
void wm_hfwd_fail(struct wm_hfwd *f, int status, const char *extra, const char *detail);

/* Append v with the variables of header rules expanded for the current
 * request ({client_ip}, {host}, {url}, ...). */
struct evbuffer;
void wm_hfwd_expand(struct wm_hfwd *f, const char *v, struct evbuffer *out);
/* The first variable in v that wm_hfwd_expand() does not know ({name}
 * or $name; *len: its length as written), which it would leave as
 * written; NULL when there is none. */
const char *wm_hfwd_unknown_var(const char *v, size_t *len);

/* The upstream connection in the making now goes to another server
 * (after a failed connect, before wm_hfwd_connected()): the key it will
 * be kept under, the access log's target and the Host to send are taken
 * from nt (key, log, host_hdr), and the request head is made again. */
void wm_hfwd_rekey(struct wm_hfwd *f, const struct wm_hfwd_target *nt);

/* Answer the current request locally (after route() returned
 * WM_HFWD_TAKEN): status, extra header lines (each ending in CRLF, may be
 * NULL), a Content-Type (NULL: none) and body (copied; not sent for HEAD).
 * The connection stays open for the next request unless the request asked
 * to close or had a body (which is not read). */
void wm_hfwd_respond(struct wm_hfwd *f, int status, const char *extra, const char *ctype,
                     const void *body, size_t len);

/* After WM_HFWD_PUMP_WAIT: call pump() again now (from a timer of the
 * producer; never from inside pump()). */
void wm_hfwd_stream_resume(struct wm_hfwd *f);

/* Is the client connection a plain socket (bodies may use sendfile)? */
bool wm_hfwd_plain(const struct wm_hfwd *f);

/* Drop the HTTP state, leaving c to the caller (CONNECT after WM_HFWD_TAKEN:
 * bytes after the request head stay in c's input buffer). f is freed now,
 * or when the engine's own callback that is running returns. */
void wm_hfwd_detach(struct wm_hfwd *f);

struct wm_conn *wm_hfwd_conn(const struct wm_hfwd *f);

/* Free the worker's cache of spare request states (on its thread, at its
 * exit). */
void wm_hfwd_worker_exit(void);

/* A request answered without the engine (an HTTP/2 stream the translation
 * refused): counted in wmproxy_http_requests_total as the engine counts its
 * own, under proto (the engine's ops->proto). */
void wm_hfwd_count_request(const char *proto, int status);

/* The current request's head (valid during route() and logged()). */
struct wm_http_head *wm_hfwd_request(struct wm_hfwd *f);

#endif
