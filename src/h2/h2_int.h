/*
 * h2/h2_int.h - state of one HTTP/2 connection and its streams, shared by
 * h2.c (the connection: session, I/O, limits, GOAWAY) and h2_stream.c (a
 * stream: its pair to the HTTP/1 engine, request and answer translation).
 * Nothing outside src/h2/ includes it.
 */
#ifndef WM_H2_H2_INT_H
#define WM_H2_H2_INT_H

/* Request body bytes read and dropped after the answer went out early,
 * before the stream is reset with NO_ERROR (RFC 9113 8.1). */
#define H2_DISCARD_MAX (1u << 20)
/* h2_flush() gathers nghttp2's frames up to a TLS record's plaintext. */
#define H2_FLUSH_BUF 16384
/* Finished stream records (and waiting-engine entries) kept for reuse. */
#define WM_H2_SPARE_RECORDS WM_H2_MAX_STREAMS /* a full burst of streams allocates nothing */

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

#include "h2/h2.h"

struct bufferevent;
struct event;
struct evbuffer;
struct wm_conn;
struct wm_http_parser;

/* Where a stream's answer is. */
enum h2s_resp {
    H2S_HEAD = 0, /* awaiting the engine's response head */
    H2S_BODY,     /* head sent as HEADERS; body bytes become DATA */
    H2S_RELAY,    /* WebSocket after 101: raw bytes both ways */
    H2S_DONE,     /* the whole answer is queued (END_STREAM when sent) */
};

struct h2_stream {
    struct wm_h2 *h;
    struct h2_stream *prev, *next; /* the connection's streams */
    int32_t id;
    enum h2s_resp resp_phase;
    struct wm_h2_req *req;         /* header list while it arrives */
    struct bufferevent *end;       /* our end of the pair; NULL once released */
    struct wm_http_parser *resp;   /* the engine's answer */
    struct evbuffer *body;         /* answer bytes waiting for DATA frames */
    size_t unconsumed;             /* request DATA bytes not yet taken by the engine */
    bool chunked;                  /* request body goes chunked */
    bool ws;                       /* RFC 8441 WebSocket */
    bool is_head;
    bool req_done;                 /* END_STREAM from the client */
    bool answered_early;           /* our END_STREAM went before the client's */
    size_t discarded;              /* request body bytes dropped since (answered_early) */
    const char *bad;               /* why nghttp2 found the request malformed (static) */
    bool deferred;                 /* the data source waits for bytes */
    bool paused;                   /* end reading stopped (body over its mark) */
    bool keep;                     /* the engine keeps the pair for another request */
    bool sink_wait;                /* the engine stopped its upstream for us (body full) */
    bool sink_resume;              /* wake it from end_write_cb (deferred) */
    bool reset_ours;               /* we reset it (a bad or cut answer): no client reset */
    const char *cut;               /* why its engine is stopped, if it is (its access line) */
};

/* A pair whose engine answered and waits, keep-alive, for the next request:
 * the next stream takes it instead of starting an engine (the engine keeps
 * its upstream connection, as for an HTTP/1 keep-alive client). They go
 * when the connection has had no stream for WM_H2_ENGINE_LINGER_MS. */
struct h2_vconn {
    struct wm_h2 *h;
    struct h2_vconn *next;
    struct bufferevent *end;
    struct wm_http_parser *resp;   /* ready for the next answer */
    uint64_t since_ms;
};

struct wm_h2 {
    struct wm_conn *c;
    const struct wm_h2_front *fr;
    nghttp2_session *s;
    struct h2_stream *streams;
    size_t nstreams;
    size_t nearly;                 /* of which answered early (nothing in flight; idle) */
    struct wm_h2 *prev, *next;     /* the worker's HTTP/2 connections */
    uint64_t win_start;            /* flood window (coarse ms) */
    unsigned n_settings, n_ping, n_rst, n_empty;
    unsigned n_cont;               /* CONTINUATION frames of the current block */
    uint32_t iws_before;           /* the client's initial window before its SETTINGS */
    int32_t win_before;            /* our largest stream send window then (settings_check) */
    int32_t max_id;                /* highest stream the client opened */
    int32_t recent[64];            /* streams it opened lately (trailers may follow) */
    unsigned nrecent;
    bool goaway;                   /* GOAWAY queued: no new streams */
    bool dying;                    /* a flood or error: GOAWAY, then close */
    const char *why;               /* the connection's end reason, NULL: "h2-done" */
    struct wm_http_parser *spare[8]; /* answer parsers of finished streams, for reuse */
    unsigned nspare;
    struct wm_h2_req *spare_req;   /* one header list is built at a time: reused */
    struct h2_vconn *idle;         /* waiting engine pairs, newest first */
    size_t nidle;
    /* Records of finished streams and waiting-engine entries, reused by the
     * next ones (at most WM_H2_SPARE_RECORDS each; they go with the waiting
     * engines, h2s_spares_free). */
    struct h2_stream *spare_st;    /* linked by next; body buffer kept, empty */
    unsigned nspare_st;
    struct h2_vconn *spare_v;      /* linked by next */
    unsigned nspare_v;
    struct event *flush_ev;        /* h2_flush_soon() */
    struct event *send_ev;         /* the send timeout (send_cb in h2.c) */
    uint64_t send_taken;           /* bytes the client's socket had taken at the last look */
    uint64_t send_moved_ms;        /* the last look that saw bytes go (coarse ms) */
    int send_queued;               /* the socket's unacknowledged bytes at the last look
                                    * (SIOCOUTQ; -1: unknown) */
    bool send_armed;
    bool flush_soon;               /* flush_ev is active */
};

/* h2.c */
/* Take c over as HTTP/2 (settings queued). NULL on OOM (c finished). */
struct wm_h2 *h2_begin(struct wm_conn *c, const struct wm_h2_front *fr);
void h2_feed(struct wm_h2 *h);  /* the client's bytes into the session */
void h2_flush(struct wm_h2 *h);  /* send what the session has; may finish h->c */
void h2_flood(struct wm_h2 *h, const char *what); /* GOAWAY ENHANCE_YOUR_CALM + log */
void h2_idle_check(struct wm_h2 *h);
/* A connection that became HTTP/2 after its worker began to drain (its
 * GOAWAY went out to the others before): GOAWAY now. */
void h2_goaway_if_draining(struct wm_h2 *h);
/* h2_flush() at the end of this loop turn (from outside the connection's
 * own callbacks: the engines' answers). */
void h2_flush_soon(struct wm_h2 *h);

/* h2_stream.c */
/* A request's header list is complete: translate it, start its engine. */
void h2s_start(struct wm_h2 *h, struct h2_stream *st, bool end_stream);
/* Start the engine on the request: head NULL: st->req, finished (h2s_start);
 * else HTTP/1.1 head bytes (an h2c upgrade's request as stream 1). */
void h2s_launch(struct wm_h2 *h, struct h2_stream *st, struct evbuffer *head);
/* Request body bytes and their end. */
void h2s_data(struct h2_stream *st, const uint8_t *p, size_t n);
void h2s_req_end(struct h2_stream *st);
/* Answer locally (errors before the engine) with status and a short body. */
void h2s_answer(struct h2_stream *st, int status, const char *text);
/* nghttp2 closed the stream: abort its engine if still busy, free it. */
void h2s_free(struct h2_stream *st);
struct h2_stream *h2s_new(struct wm_h2 *h, int32_t id);
/* Waiting engine pairs: give one back (taken), free them all. */
void h2v_put(struct wm_h2 *h, struct bufferevent *end, struct wm_http_parser *resp);
void h2v_free_all(struct wm_h2 *h);
/* The spare stream records, entries and answer parsers go (with the
 * waiting engines: an idle connection keeps none). */
void h2s_spares_free(struct wm_h2 *h);
/* Data source of a stream's DATA frames. */
ssize_t h2s_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                      uint32_t *flags, nghttp2_data_source *src, void *user);

#endif
