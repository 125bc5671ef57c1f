/*
 * h2/h2_stream.c - one HTTP/2 stream as a virtual HTTP/1.1 client of the
 * engine (http/fwd.h): the request goes into our end of a bufferevent
 * pair (or to the engine parsed), the engine's answer comes back on it, or
 * parsed through the stream's sink, and becomes HEADERS + DATA.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bev.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2_int.h"
#include "http/fwd.h"
#include "http/head.h"
#include "http/parser.h"
#include "http/util.h"
#include "net/conn.h"

static void end_read_cb(struct bufferevent *bev, void *arg);
static void end_write_cb(struct bufferevent *bev, void *arg);
static void answer_done(struct h2_stream *st, bool keep);
static void end_event_cb(struct bufferevent *bev, short what, void *arg);

struct h2_stream *h2s_new(struct wm_h2 *h, int32_t id)
{
    struct h2_stream *st = h->spare_st;
    struct evbuffer *body = NULL;

    if (st != NULL) {
        h->spare_st = st->next;
        h->nspare_st--;
        body = st->body; /* empty */
        memset(st, 0, sizeof(*st));
    } else if ((st = calloc(1, sizeof(*st))) == NULL) {
        return NULL;
    }
    st->h = h;
    st->id = id;
    st->req = h->spare_req != NULL ? h->spare_req : wm_h2_req_new();
    h->spare_req = NULL;
    st->body = body != NULL ? body : evbuffer_new();
    if (st->req == NULL || st->body == NULL) {
        wm_h2_req_free(st->req);
        if (st->body != NULL) {
            evbuffer_free(st->body);
        }
        free(st);
        return NULL;
    }
    st->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = st;
    }
    h->streams = st;
    h->nstreams++;
    return st;
}

/* Let go of our end: done (the engine reads EOF, parks its upstream) or
 * aborted (the engine gets an error and stops at once). */
static void release_end(struct h2_stream *st, bool abort)
{
    struct bufferevent *end = st->end;
    struct bufferevent *partner;

    if (end == NULL) {
        return;
    }
    st->end = NULL;
    if (st->unconsumed > 0) {
        /* request bytes the engine will never take: their window opens
         * (what comes from now on is consumed as it comes, h2s_data) */
        nghttp2_session_consume(st->h->s, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
    bufferevent_setcb(end, NULL, NULL, NULL, NULL);
    partner = bufferevent_pair_get_partner(end);
    wm_hfwd_sink_drop(partner); /* the engine hands this stream nothing more */
    if (abort && partner != NULL) {
        wm_hfwd_cut_reason(partner, st->cut != NULL ? st->cut : "HTTP/2 stream ended early");
        bufferevent_trigger_event(partner, BEV_EVENT_ERROR, 0);
        bufferevent_free(end);
        return;
    }
    wm_bev_free(end);
}

void h2s_free(struct h2_stream *st)
{
    struct wm_h2 *h = st->h;

    if (st->unconsumed > 0 && h->s != NULL) {
        nghttp2_session_consume_connection(h->s, st->unconsumed); /* the stream is closed */
    }
    st->unconsumed = 0;
    release_end(st, st->resp_phase != H2S_DONE || !st->req_done);
    wm_h2_req_free(st->req);
    if (st->resp != NULL && h->nspare < sizeof(h->spare) / sizeof(h->spare[0])) {
        wm_http_parser_reset(st->resp);
        h->spare[h->nspare++] = st->resp;
    } else {
        wm_http_parser_free(st->resp);
    }
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        h->streams = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    h->nstreams--;
    h->nearly -= st->answered_early;
    if (h->nspare_st < WM_H2_SPARE_RECORDS && !h->dying) {
        evbuffer_drain(st->body, evbuffer_get_length(st->body));
        st->next = h->spare_st;
        h->spare_st = st;
        h->nspare_st++;
        return;
    }
    evbuffer_free(st->body);
    free(st);
}

void h2s_spares_free(struct wm_h2 *h)
{
    while (h->spare_st != NULL) {
        struct h2_stream *st = h->spare_st;
        h->spare_st = st->next;
        evbuffer_free(st->body);
        free(st);
    }
    h->nspare_st = 0;
    while (h->spare_v != NULL) {
        struct h2_vconn *v = h->spare_v;
        h->spare_v = v->next;
        free(v);
    }
    h->nspare_v = 0;
    while (h->nspare > 0) {
        wm_http_parser_free(h->spare[--h->nspare]); /* each keeps its head's storage */
    }
    if (h->spare_req != NULL) {
        wm_h2_req_trim(h->spare_req);
    }
}

/* A waiting-engine entry is done with: kept for the next one, or freed. */
static void vconn_put_spare(struct wm_h2 *h, struct h2_vconn *v)
{
    if (h->nspare_v < WM_H2_SPARE_RECORDS) {
        v->next = h->spare_v;
        h->spare_v = v;
        h->nspare_v++;
        return;
    }
    free(v);
}

/* ---- answers ---- */

static void resume(struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->s, st->id);
    }
}

ssize_t h2s_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                      uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct h2_stream *st = src->ptr;
    size_t have = evbuffer_get_length(st->body);
    int n;

    (void)s;
    (void)id;
    (void)user;
    if (have == 0 && st->resp_phase != H2S_DONE) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    n = evbuffer_remove(st->body, buf, len < have ? len : have);
    if (n < 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (st->resp_phase == H2S_DONE && evbuffer_get_length(st->body) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    if (st->paused && st->end != NULL && evbuffer_get_length(st->body) < WM_H2_BODY_HIGH / 2) {
        st->paused = false;
        bufferevent_enable(st->end, EV_READ);
    }
    if (st->sink_wait && st->end != NULL && evbuffer_get_length(st->body) < WM_H2_BODY_HIGH / 2) {
        st->sink_wait = false; /* the engine reads its upstream again, from end_write_cb */
        st->sink_resume = true;
        bufferevent_trigger(st->end, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
    }
    return n;
}

void h2s_answer(struct h2_stream *st, int status, const char *text)
{
    char sbuf[8];
    char lbuf[24];
    char date[40];
    nghttp2_nv nva[4];
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = h2s_read_body};

    release_end(st, true);
    snprintf(sbuf, sizeof(sbuf), "%d", status);
    snprintf(lbuf, sizeof(lbuf), "%zu", strlen(text) + 1);
    wm_http_date_fmt((int64_t)time(NULL), date, sizeof(date)); /* as our HTTP/1 answers */
    nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)sbuf, 7, strlen(sbuf), 0};
    nva[1] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, 0};
    nva[2] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)lbuf, 14, strlen(lbuf), 0};
    nva[3] = (nghttp2_nv){(uint8_t *)"date", (uint8_t *)date, 4, strlen(date), 0};
    evbuffer_drain(st->body, evbuffer_get_length(st->body));
    evbuffer_add_printf(st->body, "%s\n", text);
    st->resp_phase = H2S_DONE;
    nghttp2_submit_response(st->h->s, st->id, nva, 4, st->is_head ? NULL : &dp);
}

/* h2s_answer() for a stream the engine had or was to have: a line says so
 * (the engine's own line, if any, came before). */
static void answer_logged(struct h2_stream *st, int status, const char *text)
{
    h2s_answer(st, status, text);
    wm_log(WM_LOG_INFO, st->h->c->id, "h2: stream %d answered %d (%s)", st->id, status, text);
}

/* The engine's head as HEADERS (interim 1xx ones too). */
static int submit_head(struct h2_stream *st, struct wm_http_head *hd, bool last)
{
    size_t nf = wm_http_head_nfields(hd);
    nghttp2_nv nva[WM_HTTP_MAX_HEADERS + 1]; /* the engine's parser keeps to these limits */
    char names[WM_HTTP_MAX_HEAD];
    char sbuf[8];
    int status = wm_http_head_status(hd);
    size_t n = 1;
    size_t off = 0;
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = h2s_read_body};
    int rv;

    if (nf > WM_HTTP_MAX_HEADERS || wm_http_head_size(hd) > sizeof(names)) {
        return -1;
    }
    if (st->ws && status == 101) {
        status = 200; /* RFC 8441 5: the tunnel is open */
    } else if (st->ws && status >= 200 && status < 300) {
        /* A 2xx would tell the client its WebSocket is open: an answer
         * without the upgrade (a page, a file) goes as 502 with its body. */
        wm_log(WM_LOG_INFO, st->h->c->id,
               "h2: stream %d: WebSocket not accepted (answer %d), 502 to the client", st->id,
               status);
        status = 502;
    }
    if (status < 100 || status > 999) {
        return -1; /* the parser takes three digits only */
    }
    sbuf[0] = (char)('0' + status / 100);
    sbuf[1] = (char)('0' + status / 10 % 10);
    sbuf[2] = (char)('0' + status % 10);
    sbuf[3] = '\0';
    nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)sbuf, 7, 3, 0};
    /* RFC 9110 8.6: a 1xx or 204 has no body to give a length of; a client
     * that checks it (nghttp2, curl) resets the stream (PROTOCOL_ERROR) */
    bool no_length = status < 200 || wm_http_head_status(hd) == 204;
    for (size_t i = 0; i < nf; i++) {
        struct wm_http_field f;
        wm_http_head_field(hd, i, &f);
        if (!wm_h2_resp_keep(hd, &f) || (no_length && f.id == WM_HDR_CONTENT_LENGTH)) {
            continue;
        }
        size_t ln;
        const char *lower = wm_hdr_lower(f.id, &ln); /* a known name: spelt already */
        if (lower == NULL) {
            for (size_t k = 0; k < f.nlen; k++) {
                char ch = f.name[k];
                names[off + k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
            }
            lower = names + off;
            off += f.nlen;
        }
        nva[n++] = (nghttp2_nv){(uint8_t *)lower, (uint8_t *)f.value, f.nlen, f.vlen,
                                NGHTTP2_NV_FLAG_NONE};
    }
    if (status < 200) {
        rv = nghttp2_submit_headers(st->h->s, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL);
    } else {
        rv = nghttp2_submit_response(st->h->s, st->id, nva, n, last ? NULL : &dp);
    }
    return rv == 0 ? 0 : -1;
}

static void body_cb(void *arg, const char *p, size_t n)
{
    struct h2_stream *st = arg;

    evbuffer_add(st->body, p, n);
}

/* Response head bytes from in. Returns -1 on a bad answer, 0 to go on
 * (or wait for more). */
static int parse_head(struct h2_stream *st, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    size_t used = 0;
    enum wm_http_res r = WM_HTTP_MORE;

    while (r == WM_HTTP_MORE && evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        r = wm_http_parser_feed_head(st->resp, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
    }
    if (r == WM_HTTP_MORE) {
        return 0;
    }
    if (r != WM_HTTP_HEAD_DONE) {
        return -1;
    }
    struct wm_http_head *hd = wm_http_parser_head(st->resp);
    int status = wm_http_head_status(hd);
    if (status == 101 && st->ws) {
        st->resp_phase = H2S_RELAY;
        return submit_head(st, hd, false);
    }
    if (status < 200) {
        int rv = status == 101 ? -1 : submit_head(st, hd, false);
        wm_http_parser_next(st->resp);
        return rv < 0 ? -1 : parse_head(st, in);
    }
    st->keep = wm_http_parser_keep_alive(st->resp); /* else the engine closes after it */
    r = wm_http_parser_feed_body(st->resp, NULL, 0, &used);
    bool last = r == WM_HTTP_MSG_DONE;
    st->resp_phase = last ? H2S_DONE : H2S_BODY;
    return submit_head(st, hd, last);
}

static int parse_body(struct h2_stream *st, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    size_t used = 0;
    enum wm_http_res r = WM_HTTP_MORE;

    while (r == WM_HTTP_MORE && evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        r = wm_http_parser_feed_body(st->resp, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
    }
    if (r == WM_HTTP_MSG_DONE) {
        st->resp_phase = H2S_DONE;
        return 0;
    }
    return r == WM_HTTP_MORE ? 0 : -1;
}

/* Everything the engine wrote so far. */
static void take_answer(struct h2_stream *st)
{
    struct evbuffer *in = bufferevent_get_input(st->end);
    int rv = 0;

    if (st->resp_phase == H2S_HEAD) {
        rv = parse_head(st, in);
    }
    if (rv == 0 && st->resp_phase == H2S_BODY) {
        rv = parse_body(st, in);
    }
    if (rv == 0 && st->resp_phase == H2S_RELAY) {
        evbuffer_add_buffer(st->body, in);
    }
    if (rv < 0) {
        wm_log(WM_LOG_INFO, st->h->c->id, "h2: stream %d: bad answer from the engine", st->id);
        st->reset_ours = true;
        st->cut = "its answer has no HTTP/2 form";
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        release_end(st, true);
        return;
    }
    if (st->resp_phase == H2S_DONE) {
        answer_done(st, st->keep);
    } else if (evbuffer_get_length(st->body) >= WM_H2_BODY_HIGH && !st->paused) {
        st->paused = true;
        bufferevent_disable(st->end, EV_READ);
    }
    resume(st);
}

static void end_read_cb(struct bufferevent *bev, void *arg)
{
    struct h2_stream *st = arg;
    struct wm_h2 *h = st->h;

    (void)bev;
    wm_conn_enter(h->c);
    take_answer(st);
    h2_flush(h);
    wm_conn_leave(h->c);
}

/* The engine took our request bytes: open the stream's window again. */
static void end_write_cb(struct bufferevent *bev, void *arg)
{
    struct h2_stream *st = arg;
    struct wm_h2 *h = st->h;

    (void)bev;
    if (st->unconsumed == 0 && !st->sink_resume) {
        return;
    }
    wm_conn_enter(h->c);
    if (st->unconsumed > 0) {
        nghttp2_session_consume(h->s, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
    if (st->sink_resume && st->end != NULL) {
        st->sink_resume = false;
        wm_hfwd_sink_resume(bufferevent_pair_get_partner(st->end));
    }
    h2_flush(h);
    wm_conn_leave(h->c);
}

/* ---- answers handed over parsed by the engine (wm_hfwd_sink) ---- */

/* The engine keeps its end for the next stream, or we let it go. */
static void answer_done(struct h2_stream *st, bool keep)
{
    if (keep && st->req_done && !st->ws && st->unconsumed == 0 && st->end != NULL &&
        evbuffer_get_length(bufferevent_get_input(st->end)) == 0) {
        struct bufferevent *end = st->end;
        st->end = NULL;
        wm_hfwd_sink_drop(bufferevent_pair_get_partner(end));
        wm_http_parser_next(st->resp);
        h2v_put(st->h, end, st->resp); /* the engine waits for the next stream */
        st->resp = NULL;
    } else {
        release_end(st, false); /* the engine goes on to EOF: idle upstream parked */
    }
}

static void sink_head(void *arg, struct wm_http_head *hd, bool last)
{
    struct h2_stream *st = arg;
    int status = wm_http_head_status(hd);
    int rv = -1;

    if (status != 101) {
        rv = submit_head(st, hd, last && status >= 200);
    }
    if (rv < 0) {
        wm_log(WM_LOG_INFO, st->h->c->id, "h2: stream %d: bad answer from the engine", st->id);
        st->reset_ours = true;
        st->cut = "its answer has no HTTP/2 form";
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        release_end(st, true);
    } else if (status >= 200) {
        st->resp_phase = last ? H2S_DONE : H2S_BODY;
    }
    h2_flush_soon(st->h);
}

static bool sink_body(void *arg, struct evbuffer *b)
{
    struct h2_stream *st = arg;

    evbuffer_add_buffer(st->body, b);
    resume(st);
    h2_flush_soon(st->h);
    if (evbuffer_get_length(st->body) >= WM_H2_BODY_HIGH) {
        st->sink_wait = true;
        return false;
    }
    return true;
}

static void sink_done(void *arg, bool keep)
{
    struct h2_stream *st = arg;

    st->resp_phase = H2S_DONE;
    answer_done(st, keep);
    resume(st);
    h2_flush_soon(st->h);
}

static const struct wm_hfwd_sink h2_sink = {sink_head, sink_body, sink_done};

static void end_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct h2_stream *st = arg;
    struct wm_h2 *h = st->h;

    (void)bev;
    wm_conn_enter(h->c);
    take_answer(st);
    if (st->end != NULL) {
        if (st->resp_phase == H2S_RELAY ||
            (st->resp_phase == H2S_BODY && !(what & BEV_EVENT_ERROR) &&
             wm_http_parser_feed_eof(st->resp) == WM_HTTP_MSG_DONE)) {
            st->resp_phase = H2S_DONE; /* read-until-close body, or the relay ended */
            release_end(st, false);
            resume(st);
        } else if (st->resp_phase == H2S_HEAD) {
            answer_logged(st, 502, "the request ended without an answer");
        } else {
            st->reset_ours = true;
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
            release_end(st, true);
        }
    }
    h2_flush(h);
    wm_conn_leave(h->c);
}

/* ---- requests ---- */

static struct wm_conn *engine_conn(struct wm_h2 *h, struct bufferevent *bev)
{
    struct wm_conn *pc = h->c;
    struct wm_conn *sc = calloc(1, h->fr->conn_size);

    if (sc == NULL) {
        return NULL;
    }
    wm_conn_init(sc, pc->svc, pc->w, bev, pc->peerlen > 0 ? (struct sockaddr *)&pc->peer : NULL,
                 pc->peerlen, NULL, &pc->limits);
    sc->proto = pc->proto;
    sc->internal = true; /* the client's connection is counted once, as pc */
    return sc;
}

/* ---- waiting engines ---- */

static void h2v_drop(struct h2_vconn *v)
{
    struct wm_h2 *h = v->h;
    struct h2_vconn **pp = &h->idle;

    while (*pp != v) {
        pp = &(*pp)->next;
    }
    *pp = v->next;
    h->nidle--;
    bufferevent_setcb(v->end, NULL, NULL, NULL, NULL);
    wm_bev_free(v->end); /* the engine reads EOF and ends, parking its upstream */
    wm_http_parser_free(v->resp);
    vconn_put_spare(h, v);
}

/* Anything from a waiting engine (its keep-alive timeout, an error) ends it. */
static void h2v_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    h2v_drop(arg);
}

static void h2v_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    h2v_drop(arg);
}

void h2v_put(struct wm_h2 *h, struct bufferevent *end, struct wm_http_parser *resp)
{
    struct h2_vconn *v = NULL;

    if (h->nidle < WM_H2_IDLE_ENGINES) {
        if ((v = h->spare_v) != NULL) {
            h->spare_v = v->next;
            h->nspare_v--;
            memset(v, 0, sizeof(*v));
        } else {
            v = calloc(1, sizeof(*v));
        }
    }
    if (v == NULL) {
        wm_bev_free(end);
        wm_http_parser_free(resp);
        return;
    }
    v->h = h;
    v->end = end;
    v->resp = resp;
    v->since_ms = wm_now_ms();
    v->next = h->idle;
    h->idle = v;
    h->nidle++;
    bufferevent_setcb(end, h2v_read_cb, NULL, h2v_event_cb, v);
}

void h2v_free_all(struct wm_h2 *h)
{
    while (h->idle != NULL) {
        h2v_drop(h->idle);
    }
}

/* A waiting engine for st (the newest that is not too old), or false. */
static bool h2v_take(struct wm_h2 *h, struct h2_stream *st)
{
    uint64_t now = wm_now_ms();

    while (h->idle != NULL) {
        struct h2_vconn *v = h->idle;
        if (now - v->since_ms > WM_H2_IDLE_ENGINE_MS) {
            h2v_free_all(h); /* older still behind it */
            return false;
        }
        if (bufferevent_pair_get_partner(v->end) == NULL) {
            h2v_drop(v); /* its engine is gone, its EOF not read yet */
            continue;
        }
        h->idle = v->next;
        h->nidle--;
        st->end = v->end;
        st->resp = v->resp;
        vconn_put_spare(h, v);
        return true;
    }
    return false;
}

/* The request head to the engine on st->end: given as parsed when st->req
 * allows it and the engine waits for a request, else as bytes (head, or
 * st->req written out). */
static void deliver_head(struct wm_h2 *h, struct h2_stream *st, struct evbuffer *head)
{
    struct wm_http_head **parsed = head == NULL ? wm_h2_req_parsed(st->req) : NULL;
    struct bufferevent *engine = bufferevent_pair_get_partner(st->end);
    struct evbuffer *bytes;

    if (parsed != NULL && engine != NULL &&
        wm_hfwd_give_head(engine, parsed, &h2_sink, st) == 0) {
        return;
    }
    if (head != NULL) {
        bufferevent_write_buffer(st->end, head);
        return;
    }
    if ((bytes = evbuffer_new()) == NULL || wm_h2_req_write(st->req, bytes) != 0) {
        if (bytes != NULL) {
            evbuffer_free(bytes);
        }
        answer_logged(st, 500, "out of memory");
        return;
    }
    bufferevent_write_buffer(st->end, bytes); /* the engine reads it as its next request */
    evbuffer_free(bytes);
}

void h2s_launch(struct wm_h2 *h, struct h2_stream *st, struct evbuffer *head)
{
    struct bufferevent *pair[2] = {NULL, NULL};
    struct wm_conn *sc;

    if (st->req_done) {
        st->chunked = false;
    }
    if (h2v_take(h, st)) {
        wm_http_parser_set_body_cb(st->resp, body_cb, st);
        wm_http_parser_expect_no_body(st->resp, st->is_head);
        bufferevent_setcb(st->end, end_read_cb, end_write_cb, end_event_cb, st);
        deliver_head(h, st, head);
        return;
    }
    st->resp = h->nspare > 0 ? h->spare[--h->nspare]
                             : wm_http_parser_new(WM_HTTP_RESPONSE, WM_HTTP_MAX_HEAD,
                                                  WM_HTTP_MAX_HEADERS);
    if (st->resp == NULL ||
        bufferevent_pair_new(wm_worker_base(h->c->w), BEV_OPT_DEFER_CALLBACKS, pair) < 0 ||
        (sc = engine_conn(h, pair[1])) == NULL) {
        if (pair[0] != NULL) {
            bufferevent_free(pair[0]);
            bufferevent_free(pair[1]);
        }
        answer_logged(st, 500, "out of memory");
        return;
    }
    wm_http_parser_set_body_cb(st->resp, body_cb, st);
    wm_http_parser_expect_no_body(st->resp, st->is_head);
    st->end = pair[0];
    bufferevent_setcb(st->end, end_read_cb, end_write_cb, end_event_cb, st);
    bufferevent_enable(st->end, EV_READ | EV_WRITE);
    wm_hfwd_start(sc, h->fr->ops); /* waits for its first request */
    if (st->end != NULL) {
        deliver_head(h, st, head);
    }
}

/* st->req goes back to the connection's spare (one list is built at a time). */
static void recycle_req(struct wm_h2 *h, struct h2_stream *st)
{
    if (h->spare_req == NULL) {
        wm_h2_req_reset(st->req);
        h->spare_req = st->req;
    } else {
        wm_h2_req_free(st->req);
    }
    st->req = NULL;
}

/* The text of a status wm_h2_req_finish() refused a request with. */
static const char *refusal_text(int status)
{
    switch (status) {
    case 405:
        return "CONNECT is not served here (only WebSocket, RFC 8441)";
    case 431:
        return "request header fields too large";
    case 501:
        return "extended CONNECT protocol not supported";
    case 500:
        return "out of memory";
    default:
        return "malformed request";
    }
}

void h2s_start(struct wm_h2 *h, struct h2_stream *st, bool end_stream)
{
    int status;

    st->req_done = end_stream;
    status = wm_h2_req_finish(st->req, end_stream, &st->chunked, &st->ws, &st->is_head);
    if (status != 0) {
        /* refused before any engine saw it: its access line and count are
         * ours, under the engine's proto as every other stream's */
        char line[256];
        const char *text = refusal_text(status);
        wm_h2_req_line(st->req, line, sizeof(line));
        recycle_req(h, st);
        h2s_answer(st, status, text);
        wm_hfwd_count_request(h->fr->ops->proto, status);
        wm_log(WM_LOG_INFO, h->c->id, "access proto=%s client=%s user=- target=- req=\"%s\" "
               "code=%d in=0 out=%zu ms=0 why=\"%s\"", h->fr->ops->proto, h->c->peer_str, line,
               status, st->is_head ? 0 : strlen(text) + 1, text);
        return;
    }
    if (h->fr->serves != NULL && !h->fr->serves(h->fr, wm_h2_req_head(st->req))) {
        wm_log(WM_LOG_INFO, h->c->id, "h2: stream %d: its server has HTTP/2 off: HTTP_1_1_REQUIRED",
               st->id);
        recycle_req(h, st);
        st->resp_phase = H2S_DONE; /* our refusal: not a client reset (flood count) */
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_HTTP_1_1_REQUIRED);
        return;
    }
    h2s_launch(h, st, NULL);
    recycle_req(h, st);
}

void h2s_data(struct h2_stream *st, const uint8_t *p, size_t n)
{
    struct wm_h2 *h = st->h;

    if (st->end == NULL || n == 0) {
        nghttp2_session_consume(h->s, st->id, n); /* nobody wants it any more */
        return;
    }
    if (st->chunked && st->resp_phase != H2S_RELAY) {
        char line[24];
        int ln = snprintf(line, sizeof(line), "%zx\r\n", n);
        bufferevent_write(st->end, line, (size_t)ln);
        bufferevent_write(st->end, p, n);
        bufferevent_write(st->end, "\r\n", 2);
    } else {
        bufferevent_write(st->end, p, n);
    }
    st->unconsumed += n;
}

void h2s_req_end(struct h2_stream *st)
{
    st->req_done = true;
    if (st->end == NULL) {
        return;
    }
    if (st->chunked) {
        bufferevent_write(st->end, "0\r\n\r\n", 5);
    } else if (st->ws) {
        bufferevent_flush(st->end, EV_WRITE, BEV_FINISHED); /* half-close the relay */
    }
}
