/*
 * proxy/http_fwd_int.h - state of one HTTP/1 forwarding engine, shared by
 * http_fwd.c (the I/O state machine) and http_fwd_head.c (head building).
 * Nothing outside proxy/http_fwd*.c includes it.
 */
#ifndef WM_PROXY_HTTP_FWD_INT_H
#define WM_PROXY_HTTP_FWD_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/limits.h"
#include "proxy/http_fwd.h"

struct wm_http_head;

enum hf_state {
    HF_READ_HEAD = 0, /* awaiting (the rest of) a request head from the client */
    HF_CONNECTING,    /* head parsed; ops connecting to the target */
    HF_FORWARD,       /* head sent upstream; request body and response flowing */
    HF_CLOSING,       /* answered with an error; flushing, then close */
    HF_TAKEN,         /* the route op owns the connection (CONNECT) */
};

struct wm_hfwd {
    struct wm_pconn *c;
    const struct wm_hfwd_ops *ops;
    enum hf_state state;
    struct wm_http_parser *req;
    struct wm_http_parser *resp;
    struct bufferevent *up;
    struct wm_fastread *cfr;       /* fast reads of the client socket (plain sockets) */
    struct wm_fastread *ufr;       /* and of the upstream socket */
    bool creading;                 /* client reading wanted */
    char up_key[WM_HOST_MAX + 80]; /* target key of `up` */
    bool up_reused;
    void *connecting;              /* ops handle while HF_CONNECTING */
    struct wm_hfwd_target t;
    struct evbuffer *head_out;     /* upstream request head, kept for one retry */
    struct evbuffer *scratch;      /* response bytes gathered for one write */
    bool req_done;
    bool resp_head_sent;
    bool resp_done;
    bool client_close;
    bool client_eof;               /* FIN read: serve what is buffered, then close */
    bool is_head;
    bool wants_upgrade;
    bool retried;
    bool client_paused;
    bool up_paused;
    int status;
    uint64_t req_start_ms;
    uint64_t req_in;
    uint64_t req_out;
    uint64_t last_ms;      /* coarse clock: last byte either way */
    uint64_t deadline;     /* coarse clock; 0: none */
    uint64_t timer_fires;  /* when the armed libevent timer fires */
    bool timer_armed;
    char reqline[256];
    struct event *timer;
};

/* http_fwd_head.c */
/* Rewrite the request head hd into f->head_out (kept for one retry). */
void hfwd_build_upstream_head(struct wm_hfwd *f, struct wm_http_head *hd);
/* The response head for the client, appended to f->scratch; counts bytes. */
void hfwd_write_response_head(struct wm_hfwd *f);
/* f->reqline: "METHOD URL", cut and made safe for one log line. */
void hfwd_set_reqline(struct wm_hfwd *f, struct wm_http_head *hd);

#endif
