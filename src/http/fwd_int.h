/*
 * http/fwd_int.h - state of one HTTP/1 forwarding engine, shared by fwd.c
 * (the I/O state machine) and fwd_head.c (head building). Nothing outside
 * src/http/fwd*.c includes it.
 */
#ifndef WM_HTTP_FWD_INT_H
#define WM_HTTP_FWD_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/guard.h"
#include "core/limits.h"
#include "http/fwd.h"
#include "net/conn.h"

struct bufferevent;
struct evbuffer;
struct wm_http_head;
struct wm_http_parser;

/* The connection's phase; changed only through hf_set_state(). */
enum hf_state {
    HF_READ_HEAD = 0, /* have: nothing of this request, or part of its head; await the rest */
    HF_CONNECTING,    /* have: a routed head; await ops->connect's wm_hfwd_connected() */
    HF_FORWARD,       /* have: head sent upstream; request body and response flowing
                       * (hf_req / hf_resp below say how far each has come) */
    HF_TAKEN,         /* the route op owns the connection (CONNECT); await detach or fail */
    HF_STREAM,        /* have: a local head sent; the body comes from t.stream as the
                       * client drains (fwd_stream.c) */
    /* Over: no request is served any more (hf_over()). */
    HF_CLOSING,       /* have: an error answer or the last response; flushing, then close */
    HF_DETACHED,      /* gone from the connection; freed at the last leave */
    HF_DONE,          /* the connection finished; freed with it at the last leave */
    HF_STATE_COUNT
};

/* How far the request body has come while HF_FORWARD. */
enum hf_req {
    HF_REQ_BODY = 0, /* body bytes (if any) still to move to the upstream */
    HF_REQ_DONE,     /* the whole request is upstream; pipelined bytes wait in input */
};

/* How far the response has come while HF_FORWARD. */
enum hf_resp {
    HF_RESP_HEAD = 0, /* awaiting the final head (interim 1xx heads pass through) */
    HF_RESP_BODY,     /* final head sent to the client; body flowing */
    HF_RESP_DONE,     /* complete */
};

/* What the current request asks for (set from its head). */
struct hf_reqinfo {
    bool is_head;       /* HEAD: the response has no body */
    bool wants_upgrade; /* Upgrade (not CONNECT): a 101 turns the connection into a relay */
    bool close_after;   /* the connection ends after this response */
    bool reused;        /* sent on a kept upstream connection */
    bool retried;       /* already sent once more after a kept connection closed */
    bool expect;        /* Expect: 100-continue: answered by us (fwd_body.c), not sent
                         * upstream; the upstream's own 100 is dropped */
    bool has_body;      /* the head announced a body (the parser forgets as it reads) */
    bool replay_lost;   /* the body outgrew t.replay_max: it cannot be sent again */
    uint8_t interim;    /* 1xx heads read from the upstream (WM_HTTP_MAX_INTERIM) */
    bool dechunk;       /* a chunked answer to an HTTP/1.0 client: its body decoded,
                         * without Transfer-Encoding, read to the close */
};

/* Back-pressure and reading, each side. */
struct hf_flow {
    bool creading;      /* client reading wanted */
    bool client_eof;    /* FIN read: serve what is buffered, then close */
    bool client_paused; /* upstream output full: client reads wait for its drain */
    bool up_paused;     /* client output full: upstream reads wait for its drain */
    bool out_paused;    /* client output full of answers it has not read (pipelined
                         * requests answered here): its reads wait for the drain */
    bool up_idle;       /* `up` has nothing in flight: it may go back to a pool */
};

/* What a request in progress needs: taken with a request's first byte
 * (hf_work_get), given back as soon as the response is complete
 * (hf_work_put), so a keep-alive client between requests costs struct
 * wm_hfwd alone, even while it still holds its upstream. Given-back states
 * wait in a small per-worker cache (WM_HTTP_WORK_CACHE) for the next
 * request: a busy keep-alive connection allocates nothing per request.
 * Invariant: f->w is set whenever a request is in progress (state past
 * HF_READ_HEAD, or a head partly read) or an upstream is being connected. */
struct hf_work {
    struct hf_work *next;          /* in the worker's cache */
    struct wm_hfwd_target t;
    char reqline[256];
    struct evbuffer *head_out;     /* upstream request head, kept for one retry */
    struct evbuffer *scratch;      /* response bytes gathered for one write */
    struct evbuffer *body;         /* request body bytes on their way to one write */
    struct evbuffer *replay;       /* a copy of the body sent (t.replay_max), or NULL */
};

struct wm_hfwd {
    struct wm_conn *c;
    const struct wm_hfwd_ops *ops;
    struct wm_guard guard;         /* engine callbacks on the stack (core/guard.h) */
    enum hf_state state;
    enum hf_req req_phase;
    enum hf_resp resp_phase;
    struct hf_reqinfo ri;
    struct hf_flow flow;
    /* (ints and flags together: no padding between the pointers) */
    int status;
    int up_status;         /* the upstream's final status for this request */
    int cw_ms;             /* client write timeout now set on c->bev (0: none) */
    bool timer_armed;
    bool stream_chunked;   /* HF_STREAM: chunk framing around each piece */
    bool stream_close;     /* HF_STREAM: close after the body */
    bool sink_on;          /* this answer goes to the sink (its heads went there) */
    bool sink_full;        /* the sink wants no more body for now (sink_since) */
    struct wm_http_parser *req;
    struct wm_http_parser *resp;
    struct bufferevent *up;
    char *up_key;                  /* target key of up (owned); NULL: none, or not
                                    * known (out of memory: up is not pooled then) */
    struct wm_hfwd *held_prev;     /* the worker's clients holding an idle pooled */
    struct wm_hfwd *held_next;     /* upstream, oldest first (fwd_up.c) */
    struct wm_fastread *cfr;       /* fast reads of the client socket (plain sockets) */
    struct wm_fastread *ufr;       /* and of the upstream socket */
    void *connecting;              /* ops handle while HF_CONNECTING */
    struct hf_work *w;             /* the request's state, NULL between requests */
    const char *why;       /* our error answer's detail, for its access line
                            * (set by wm_hfwd_fail for the call; NULL else) */
    const char *cut_why;   /* wm_hfwd_cut_reason(): why the client end is going */
    uint64_t up_sent_ms;   /* request head sent upstream (0: not yet) */
    uint64_t up_head_ms;   /* final response head read (0: not yet) */
    uint64_t resp_head_bytes; /* response head bytes sent to the client */
    uint64_t req_start_ms;
    uint64_t req_in;
    uint64_t req_out;
    uint64_t last_ms;      /* coarse clock: last byte either way */
    uint64_t last_cin_ms;  /* coarse clock: last request body byte (or resume) */
    uint64_t deadline;     /* coarse clock; 0: none */
    uint64_t ka_until;     /* coarse clock: end of the keep-alive wait (READ_HEAD) */
    uint64_t timer_fires;  /* when the armed libevent timer fires */
    size_t head_sent;      /* HF_STREAM: head bytes sent at once (MSG_MORE) */
    struct event *timer;
    /* The answer's sink (fwd_h2.c): from wm_hfwd_give_head() to the end of
     * that answer or wm_hfwd_sink_drop(). */
    const struct wm_hfwd_sink *sink;
    void *sink_arg;
    uint64_t sink_since;   /* coarse clock: since then (t.client_write_ms runs) */
};

/* Target silence allowed while forwarding. */
static inline int hf_fwd_idle_ms(const struct wm_hfwd *f)
{
    return f->w->t.idle_ms > 0 ? f->w->t.idle_ms : f->c->limits.idle_ms;
}

static inline bool hf_over(const struct wm_hfwd *f)
{
    return f->state >= HF_CLOSING;
}

/* fwd.c: life cycle, timer, client side */
void hf_set_state(struct wm_hfwd *f, enum hf_state st); /* logs at trace level */
void hf_enter(struct wm_hfwd *f);                       /* around every entry */
void hf_leave(struct wm_hfwd *f);                       /* may free f (and the conn) */
void hf_finish(struct wm_hfwd *f, const char *reason);  /* the connection ends now */
void hf_end_after_flush(struct wm_hfwd *f, const char *reason);
void hf_arm_timer(struct wm_hfwd *f, int ms);           /* ms <= 0: no deadline */
int hf_timer_new(struct wm_hfwd *f);                    /* f->timer, unarmed; 0 or -1 */
void hf_client_reading(struct wm_hfwd *f, bool on);
/* Hook the engine on c->bev (at the start, and on a new one after a park):
 * callbacks, read limit, reading on, fast reads; read_now: read what the
 * socket holds at once. */
void hf_client_hook(struct wm_hfwd *f, bool read_now);
void hf_client_fastread(struct wm_hfwd *f); /* f->cfr for c->bev (NULL: none) */
void hf_log_request(struct wm_hfwd *f);
/* hf_log_request() with why="..." (static text): an error answer's detail, or why
 * an answer was cut short. */
void hf_log_why(struct wm_hfwd *f, const char *why);
/* Count one request for /metrics (fwd_stats.c). up_ms -1: no upstream answer. */
void hf_count_request(const char *proto, int status, uint64_t ms, long long up_ms);
void hf_process_client(struct wm_hfwd *f);
/* The request is over and the connection stays: release its target
 * (ops->release), ready the parser, wait for the next head (the caller
 * then processes buffered input). */
void hf_await_next(struct wm_hfwd *f);
/* f->w for a new request (0), or -1 out of memory. */
int hf_work_get(struct wm_hfwd *f);
/* Give f->w back unless an upstream is being connected. */
void hf_work_put(struct wm_hfwd *f);
/* The local answer; in_loop: called from the head-reading loop, which goes
 * on with pipelined requests by itself. */
void hf_respond(struct wm_hfwd *f, int status, const char *extra, const char *ctype,
                const void *body, size_t len, bool in_loop);
/* After a local answer is all in the output: log it, then the next
 * request (or close when `close`). */
void hf_local_done(struct wm_hfwd *f, bool close, bool in_loop);
/* The head of a local answer into out; len WM_HFWD_LEN_UNKNOWN: chunked
 * (the caller decided it may). */
void hf_respond_head(struct wm_hfwd *f, struct evbuffer *out, int status, const char *extra,
                     const char *ctype, unsigned long long len, bool close);
/* fwd_park.c: the keep-alive wait without a bufferevent (net/conn.h
 * parking). hf_park: when nothing of a request is held (no request state,
 * nothing buffered, any upstream idle, a plain socket), park the client for
 * the left_ms still left of its keep-alive wait, with the engine's timer
 * and request parser released too. Returns 0 (parked: the wake makes them
 * again and serves the bytes that came, or ends the wait), or -1 (nothing
 * changed). */
int hf_park(struct wm_hfwd *f, uint64_t left_ms);

/* fwd_stream.c: a streamed local answer (route() returned WM_HFWD_STREAM) */
void hf_stream_start(struct wm_hfwd *f);
void hf_stream_pump(struct wm_hfwd *f, bool in_loop);

/* Body bytes from in through parser p to out (evbuffer moves, no copy of
 * whole chains); *moved gets the count. Returns the last parser result:
 * WM_HTTP_MORE (in is empty or the parser wants more) or WM_HTTP_MSG_DONE,
 * anything else is a framing error. */
int hf_move_body(struct wm_http_parser *p, struct evbuffer *in, struct evbuffer *out,
                 size_t *moved);

/* fwd_body.c: the request body */
/* Move request body bytes (raw) from the client to the target, within
 * t.max_body. */
void hf_forward_body(struct wm_hfwd *f);
/* The request's Expect: 0 (none, or 100-continue: f->ri.expect), or 417. */
int hf_expect(struct wm_hfwd *f, struct wm_http_head *hd);
/* A routed request to forward: our own 100 Continue when the client waits
 * for one (f->ri.expect, a body, HTTP/1.1, none of it here yet). */
void hf_send_continue(struct wm_hfwd *f);

/* fwd_up.c: the upstream side */
void hf_attach_upstream(struct wm_hfwd *f, struct bufferevent *up);
void hf_drop_upstream(struct wm_hfwd *f);    /* close it */
void hf_release_upstream(struct wm_hfwd *f); /* to ops->park when idle, else close */
void hf_up_idle(struct wm_hfwd *f, bool idle); /* sets flow.up_idle */
void hf_up_reading(struct wm_hfwd *f, bool on);
void hf_send_request(struct wm_hfwd *f);
/* The request's upstream failed before a response head (r, status 0) or
 * gave one (WM_HFWD_UP_STATUS): ops->up_result hears it, and may have the
 * request sent again. true: it was (the old upstream is gone, f is
 * connecting or forwarding anew: the caller stops); false: go on. */
bool hf_up_result(struct wm_hfwd *f, enum wm_hfwd_up r, int status);
/* Keep a copy of the n body bytes about to go upstream from b (when
 * t.replay_max asks for it). */
void hf_keep_body(struct wm_hfwd *f, struct evbuffer *b, size_t n);
void hf_process_upstream(struct wm_hfwd *f);
void hf_response_done(struct wm_hfwd *f);
/* After hf_move_body() returned r: ends the answer on its end or a bad
 * body (true), else false (more to come). f may be finished. */
bool hf_response_body_end(struct wm_hfwd *f, int r);

/* fwd.c: the engine serving the virtual client `client` (its end of a
 * pair), or NULL when that is not (or no longer) one of our clients. */
struct wm_hfwd *hf_from_client(struct bufferevent *client);

/* fwd_h2.c: chunked response bodies decoded (for a sink, or an HTTP/1.0
 * client). The parser's body callback (arg f) adds decoded bytes to
 * f->w->scratch; hf_decode_chunked() feeds it what in holds, drains the raw
 * bytes it took and counts them in *raw; returns the parser's result. */
void hf_chunk_to_scratch(void *arg, const char *p, size_t n);
int hf_decode_chunked(struct wm_hfwd *f, struct evbuffer *in, size_t *raw);

/* fwd_h2.c: answers handed parsed to a sink (wm_hfwd_give_head) */
/* A response head from the upstream (not a 101 to an Upgrade): true when
 * it went to the sink (then as response_head() would: state and counts). */
bool hf_sink_head(struct wm_hfwd *f);
/* Body bytes from in to the sink (f->sink_on); as read_response_body(). */
bool hf_sink_body(struct wm_hfwd *f, struct evbuffer *in);
/* The answer is over (hf_response_done): tell the sink, forget it. */
void hf_sink_done(struct wm_hfwd *f, bool keep);
/* Time left before a full sink counts as a client that does not take the
 * response (t.client_write_ms, as the client bufferevent's write timeout
 * for bytes): UINT64_MAX when it does not apply, 0 when it passed. */
uint64_t hf_sink_wait_left(const struct wm_hfwd *f, uint64_t now);

/* fwd_head.c */
/* Bytes hfwd_write_response_head() would write for the current response
 * head, for a target without response header rules. */
size_t hfwd_response_head_len(struct wm_hfwd *f);
/* Rewrite the request head hd into f->w->head_out (kept for one retry). */
void hfwd_build_upstream_head(struct wm_hfwd *f, struct wm_http_head *hd);
/* The response head for the client, appended to f->w->scratch; counts bytes. */
void hfwd_write_response_head(struct wm_hfwd *f);
/* f->w->reqline: "METHOD URL", cut and made safe for one log line. */
void hfwd_set_reqline(struct wm_hfwd *f, struct wm_http_head *hd);

#endif
