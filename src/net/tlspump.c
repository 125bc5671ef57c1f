/*
 * net/tlspump.c - see tlspump.h.
 *
 * OpenSSL sits on a BIO over two evbuffers: cin holds ciphertext read
 * from the socket (up to PUMP_READ_MAX per readv), cout the ciphertext
 * to write (many records per writev). Plaintext goes straight between
 * OpenSSL and the user's buffers: SSL_read_ex into space reserved in b's
 * output, SSL_write_ex from the chains of b's input.
 *
 * Lifetime: every entry from the event loop holds the pump's guard
 * (core/guard.h); pump_close() marks it dead and the outermost leave
 * frees it. Code below a call that may close returns when it did
 * (`false` returns, or pump_dead()).
 */
#include "net/tlspump.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/guard.h"
#include "core/log.h"
#include "core/metrics.h"

#define PUMP_READ_MAX (256 * 1024)  /* ciphertext read per syscall, at most */
#define PUMP_OUT_HIGH (256 * 1024)  /* stop encrypting above this much unsent */
#define PUMP_IN_HIGH (512 * 1024)   /* stop reading while the user lags this much */
#define PUMP_CHUNK 16384            /* a TLS record's plaintext, at most */
#define PUMP_RECORD_OVERHEAD 64     /* a record's header, tag and padding, at most */
#define PUMP_RESERVE_MIN 2048       /* decrypted output reserved per pass: at least */
#define PUMP_RESERVE_MAX (65536 - 512) /* at most: one 64 KiB block with libevent's header */
#define PUMP_WRITE_MAX (64 * 1024)  /* plaintext per SSL_write_ex: up to 4 records */
#define PUMP_SMALL 2048             /* a first chain this small is joined with the next */
#define PUMP_HANDSHAKE_MS 15000
#define PUMP_CLOSE_MS 5000

/* Where the connection is. The user's end is `a`, ours `b` (a pair). */
enum pump_state {
    PUMP_HANDSHAKE,     /* TLS handshake under way; the user's bytes wait in b's input */
    PUMP_HANDSHAKE_EOF, /* the same, and the user already sent EOF: its bytes, then our
                         * close_notify, go out once the handshake is over */
    PUMP_OPEN,          /* data both ways */
    PUMP_HLOC,          /* half-closed here: the user sent EOF; its last bytes, then our
                         * close_notify, go out; the peer's data still comes in */
    PUMP_HREM,          /* half-closed there: the peer closed (close_notify or TCP EOF),
                         * the user got EOF; its data still goes out */
    PUMP_CLOSED,        /* both ways closed: the last ciphertext drains; once the user
                         * freed its end too, the pump ends */
    PUMP_DEAD,          /* failed or done; freed by the last guard leave */
    PUMP_STATE_COUNT
};

static const char *const state_names[PUMP_STATE_COUNT] = {
    [PUMP_HANDSHAKE] = "handshake", [PUMP_HANDSHAKE_EOF] = "handshake-eof",
    [PUMP_OPEN] = "open",           [PUMP_HLOC] = "half-closed-local",
    [PUMP_HREM] = "half-closed-remote", [PUMP_CLOSED] = "closed",
    [PUMP_DEAD] = "dead",
};

struct pump {
    struct pump *prev; /* this thread's live pumps */
    struct pump *next;
    struct wm_guard guard;
    enum pump_state state; /* changed by set_state() only */
    uint64_t id;           /* for log lines */
    int fd;
    SSL *ssl;
    struct evbuffer *cin;  /* ciphertext from the socket, read by the BIO */
    struct evbuffer *cout; /* ciphertext for the socket, written by the BIO */
    struct bufferevent *a; /* the user's end */
    struct bufferevent *b; /* ours */
    struct evbuffer_cb_entry *out_cb;
    struct event *rd;
    struct event *wr;
    struct event *timer;   /* handshake, then close timeout */
    struct event *eof_ev;  /* delivers a pending EOF from the loop */
    bool sock_eof;         /* read(2) returned 0: the BIO says EOF once cin is empty */
    bool eof_pending;      /* the peer closed; EOF once the user took all data */
    bool reading_paused;   /* the user lags PUMP_IN_HIGH behind */
    bool lingering;        /* all sent, our FIN out: the peer's bytes are dropped (finish()) */
    bool got_plain;        /* a byte of application data came from the peer */
    bool notify_ready;     /* the user asked for CONNECTED when the handshake ends */
    char peer[64];
};

static pthread_once_t evb_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *evb_method; /* written once under evb_once */
static __thread struct pump *live;

/* ---- state ---- */

static void set_state(struct pump *p, enum pump_state s)
{
    if (p->state == s) {
        return;
    }
    wm_log(WM_LOG_DEBUG, p->id, "tls %s: %s -> %s", p->peer, state_names[p->state],
           state_names[s]);
    p->state = s;
}

static bool in_handshake(const struct pump *p)
{
    return p->state == PUMP_HANDSHAKE || p->state == PUMP_HANDSHAKE_EOF;
}

/* The user sent EOF (or freed its end). */
static bool user_eof(const struct pump *p)
{
    return p->state == PUMP_HANDSHAKE_EOF || p->state == PUMP_HLOC || p->state == PUMP_CLOSED;
}

static bool user_gone(const struct pump *p)
{
    return bufferevent_pair_get_partner(p->b) == NULL;
}

/* The peer's side is over: EOF on the socket, or close_notify taken. */
static bool peer_over(const struct pump *p)
{
    return p->sock_eof || p->state == PUMP_HREM || p->state == PUMP_CLOSED;
}

static bool notify_sent(const struct pump *p)
{
    return (SSL_get_shutdown(p->ssl) & SSL_SENT_SHUTDOWN) != 0;
}

static bool pump_dead(const struct pump *p)
{
    return wm_guard_closed(&p->guard);
}

/* ---- a BIO over two evbuffers ---- */

static int evb_write(BIO *bio, const char *data, int len)
{
    struct pump *p = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    if (evbuffer_add(p->cout, data, (size_t)len) < 0) {
        return -1;
    }
    return len;
}

static int evb_read(BIO *bio, char *out, int len)
{
    struct pump *p = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    if (evbuffer_get_length(p->cin) == 0) {
        if (p->sock_eof) {
            return 0;
        }
        BIO_set_retry_read(bio);
        return -1;
    }
    return evbuffer_remove(p->cin, out, (size_t)len);
}

static long evb_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct pump *p = BIO_get_data(bio);

    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return p != NULL ? (long)evbuffer_get_length(p->cin) : 0;
    case BIO_CTRL_WPENDING:
        return p != NULL ? (long)evbuffer_get_length(p->cout) : 0;
    default:
        return 0;
    }
}

static int evb_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static void evb_meth_build(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wm-evbuffer");
    if (m == NULL) {
        return;
    }
    BIO_meth_set_write(m, evb_write);
    BIO_meth_set_read(m, evb_read);
    BIO_meth_set_ctrl(m, evb_ctrl);
    BIO_meth_set_create(m, evb_create);
    evb_method = m;
}

static BIO_METHOD *evb_meth(void)
{
    /* Built once for the process, by whichever worker makes the first pump
     * (a stream's wss:// upstream dials from any worker); kept until exit. */
    pthread_once(&evb_once, evb_meth_build);
    return evb_method;
}

/* ---- life cycle ---- */

static void pump_free(struct pump *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else if (live == p) {
        live = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    }
    struct event *evs[] = {p->rd, p->wr, p->timer, p->eof_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (p->b != NULL) {
        if (p->out_cb != NULL) {
            evbuffer_remove_cb_entry(bufferevent_get_output(p->b), p->out_cb);
        }
        bufferevent_free(p->b);
    }
    SSL_free(p->ssl); /* frees the BIO too */
    if (p->cin != NULL) {
        evbuffer_free(p->cin);
    }
    if (p->cout != NULL) {
        evbuffer_free(p->cout);
    }
    if (p->fd >= 0) {
        close(p->fd);
    }
    free(p);
}

/* End the pump: now, or at the last leave when a callback is inside. */
static void pump_close(struct pump *p)
{
    set_state(p, PUMP_DEAD);
    if (wm_guard_close(&p->guard)) {
        pump_free(p);
    }
}

static void pump_leave(struct pump *p)
{
    if (wm_guard_leave(&p->guard)) {
        pump_free(p);
    }
}

/* TLS or the socket failed: the user gets ERROR, the pump ends. */
static void fail(struct pump *p, const char *why)
{
    if (pump_dead(p)) {
        return;
    }
    wm_log(WM_LOG_DEBUG, p->id, "tls %s: %s", p->peer, why);
    if (!user_gone(p)) {
        bufferevent_trigger_event(p->a, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
    }
    pump_close(p);
}

static const char *ssl_reason(struct pump *p, char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    long vr = SSL_get_verify_result(p->ssl);

    /* The verify result is also set when verification was not asked
     * for (SSL_VERIFY_NONE): it is the reason only when OpenSSL says so. */
    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
        snprintf(buf, cap, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    } else if (e != 0) {
        ERR_error_string_n(e, buf, cap);
    } else {
        snprintf(buf, cap, "TLS error");
    }
    ERR_clear_error();
    return buf;
}

/* Both ways are over and the user has every byte (our close_notify is
 * out, the peer's EOF delivered): nothing can pass any more. The pump ends
 * without waiting to see the user's end freed: a pair unlinks only once its
 * deferred callbacks ran, after the EOF that would tell us, and no event
 * says so (the pump and its socket were kept until the process exit). */
static bool all_done(struct pump *p)
{
    return p->state == PUMP_CLOSED && notify_sent(p) && !p->eof_pending &&
           evbuffer_get_length(p->cout) == 0 &&
           evbuffer_get_length(bufferevent_get_output(p->b)) == 0;
}

/* ---- writing ---- */

/* close_notify is out and the user is gone. A peer that may still be
 * sending gets our FIN, and what it sends is read and dropped until it
 * closes or PUMP_CLOSE_MS pass: a close with its bytes unread would reset
 * the connection, and the reset can throw away our last records on their
 * way (nginx's lingering close). */
static void finish(struct pump *p)
{
    struct timeval tv = {PUMP_CLOSE_MS / 1000, 0};

    if (peer_over(p) || p->lingering || shutdown(p->fd, SHUT_WR) != 0) {
        pump_close(p);
        return;
    }
    p->lingering = true;
    if (!evtimer_pending(p->timer, NULL)) {
        evtimer_add(p->timer, &tv);
    }
    event_add(p->rd, NULL);
}

/* Write pending ciphertext to the socket. false: the pump ended (or lingers). */
static bool flush_out(struct pump *p)
{
    while (evbuffer_get_length(p->cout) > 0) {
        if (evbuffer_write(p->cout, p->fd) < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                event_add(p->wr, NULL);
                return true;
            }
            fail(p, strerror(errno));
            return false;
        }
    }
    event_del(p->wr);
    if (notify_sent(p) && (user_gone(p) || all_done(p))) {
        finish(p); /* close_notify is out and nobody reads: done */
        return false;
    }
    return true;
}

/* One SSL_write_ex of up to PUMP_WRITE_MAX from the front of in: the
 * first chain in place (OpenSSL cuts it into records); only a tiny first
 * chain is joined with what follows (no tiny records). 1: written, 0: the
 * handshake wants more (retried after reads), -1: the pump ended. */
static int ssl_write_some(struct pump *p, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    size_t total = evbuffer_get_length(in);
    size_t done = 0;

    evbuffer_peek(in, -1, NULL, &v, 1);
    size_t n = v.iov_len;
    unsigned char *data = v.iov_base;
    if (n < PUMP_SMALL && total > n) {
        n = total < PUMP_CHUNK ? total : PUMP_CHUNK;
        data = evbuffer_pullup(in, (ev_ssize_t)n);
    }
    if (n > PUMP_WRITE_MAX) {
        n = PUMP_WRITE_MAX;
    }
    /* Room for all records of this write in one chain: the BIO then
     * appends them without allocating a chain per record. */
    (void)evbuffer_expand(p->cout, n + (n / PUMP_CHUNK + 1) * PUMP_RECORD_OVERHEAD);
    if (SSL_write_ex(p->ssl, data, n, &done) != 1) {
        int e = SSL_get_error(p->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        char buf[256];
        fail(p, ssl_reason(p, buf, sizeof(buf)));
        return -1;
    }
    evbuffer_drain(in, done);
    return 1;
}

/* Encrypt what the user wrote, up to PUMP_OUT_HIGH of unsent ciphertext
 * at a time. Returns 1 when it stopped for the high mark, 0 when the input
 * ran out, -1 when the pump ended. */
static int encrypt_some(struct pump *p, struct evbuffer *in)
{
    while (evbuffer_get_length(in) > 0) {
        if (evbuffer_get_length(p->cout) >= PUMP_OUT_HIGH) {
            return 1;
        }
        int r = ssl_write_some(p, in);
        if (r <= 0) {
            return r;
        }
    }
    return 0;
}

/* The user's EOF, after its last byte: close_notify (reading goes on:
 * half-close). false: the pump ended. */
static bool send_notify(struct pump *p)
{
    if (SSL_shutdown(p->ssl) < 0) {
        int e = SSL_get_error(p->ssl, -1);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            /* OpenSSL refuses after a fatal error: nothing clean to send */
            char buf[256];
            fail(p, ssl_reason(p, buf, sizeof(buf)));
            return false;
        }
    }
    return true;
}

/* Encrypt and send what the user wrote. false: the pump ended. */
static bool encrypt(struct pump *p)
{
    struct evbuffer *in = bufferevent_get_input(p->b);
    int r;

    if (in_handshake(p)) {
        return true; /* written once handshake() is done */
    }
    /* When the socket takes everything at once, go on with the rest: the
     * user's input stays enabled only while the output is below the mark. */
    do {
        if ((r = encrypt_some(p, in)) < 0) {
            return false;
        }
        if (user_eof(p) && evbuffer_get_length(in) == 0 && !notify_sent(p) && !send_notify(p)) {
            return false;
        }
        if (!flush_out(p)) {
            return false;
        }
    } while (r == 1 && evbuffer_get_length(p->cout) < PUMP_OUT_HIGH);
    /* Back-pressure towards the user while the socket lags; wr_cb comes
     * back here once the socket drains. */
    if (evbuffer_get_length(p->cout) >= PUMP_OUT_HIGH) {
        bufferevent_disable(p->b, EV_READ);
    } else if (!user_eof(p)) {
        bufferevent_enable(p->b, EV_READ);
    }
    return true;
}

/* ---- reading ---- */

static void make_hs_ids(const char *key, wm_metric *ids)
{
    (void)key;
    ids[0] = wm_metrics_counter("wmproxy_tls_handshake_failures_total",
                                "TLS handshakes that failed or timed out, by our side",
                                "side=\"server\"");
    ids[1] = wm_metrics_counter("wmproxy_tls_handshake_failures_total", "", "side=\"client\"");
}

static void count_hs_failure(const struct pump *p)
{
    static struct wm_mcache cache;

    wm_metrics_inc(wm_mcache_get(&cache, "tls", make_hs_ids)[SSL_is_server(p->ssl) ? 0 : 1]);
}

/* false: the pump ended (or the handshake failed). */
static bool handshake(struct pump *p)
{
    int r = SSL_do_handshake(p->ssl);

    if (r == 1) {
        evtimer_del(p->timer);
        set_state(p, p->state == PUMP_HANDSHAKE_EOF ? PUMP_HLOC : PUMP_OPEN);
        wm_log(WM_LOG_DEBUG, p->id, "tls %s: %s %s, kernel TLS off", p->peer,
               SSL_get_version(p->ssl), SSL_get_cipher_name(p->ssl));
        if (p->notify_ready && !user_gone(p)) {
            p->notify_ready = false;
            bufferevent_trigger_event(p->a, BEV_EVENT_CONNECTED, BEV_TRIG_DEFER_CALLBACKS);
        }
        return true;
    }
    int e = SSL_get_error(p->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return flush_out(p);
    }
    char buf[256];
    char line[320];
    snprintf(line, sizeof(line), "handshake failed: %s", ssl_reason(p, buf, sizeof(buf)));
    wm_log(WM_LOG_WARN, p->id, "tls %s: %s", p->peer, line);
    count_hs_failure(p);
    if (flush_out(p)) { /* the alert, if any; a failed write ends p */
        fail(p, line);
    }
    return false;
}

/* Tell the user the peer closed, after every decrypted byte. (A pair's
 * BEV_FINISHED flush moves only up to the partner's read high-water mark
 * and then reports EOF at once, so it waits until our output is empty.) */
static void deliver_eof(struct pump *p)
{
    if (evbuffer_get_length(bufferevent_get_output(p->b)) > 0) {
        p->eof_pending = true; /* b_out_cb brings us back */
        return;
    }
    p->eof_pending = false;
    bufferevent_flush(p->b, EV_WRITE, BEV_FINISHED);
}

/* The peer closed (close_notify, or a TCP close OpenSSL let pass as
 * EOF). false: the pump ended. */
static bool peer_eof(struct pump *p)
{
    event_del(p->rd);
    set_state(p, user_eof(p) ? PUMP_CLOSED : PUMP_HREM);
    if (user_gone(p)) {
        pump_close(p); /* nobody left on either side */
        return false;
    }
    deliver_eof(p);
    if (all_done(p)) {
        pump_close(p);
        return false;
    }
    return true;
}

/* Decrypted output goes into one reservation sized by what can come out
 * now (ciphertext waiting + plaintext held back), at most one 64 KiB
 * block, filled up: few, dense chains for the user to parse and move,
 * also when records trickle in one by one. */
static bool reserve_out(struct pump *p, struct evbuffer *out, size_t want,
                        struct evbuffer_iovec *v)
{
    want = want < PUMP_RESERVE_MIN ? PUMP_RESERVE_MIN
         : want > PUMP_RESERVE_MAX ? PUMP_RESERVE_MAX : want;
    if (evbuffer_reserve_space(out, (ev_ssize_t)want, v, 1) != 1) {
        fail(p, "out of memory");
        return false;
    }
    if (v->iov_len > PUMP_RESERVE_MAX) {
        v->iov_len = PUMP_RESERVE_MAX;
    }
    return true;
}

/* Decrypt every whole record in cin into the user's buffer.
 * false: the pump ended. */
static bool read_tls(struct pump *p, struct evbuffer *out)
{
    for (;;) {
        struct evbuffer_iovec v;
        size_t got = 0;
        size_t n = 0;
        int ok = 1;
        if (!reserve_out(p, out, evbuffer_get_length(p->cin) + (size_t)SSL_pending(p->ssl), &v)) {
            return false;
        }
        while (got < v.iov_len &&
               (ok = SSL_read_ex(p->ssl, (char *)v.iov_base + got, v.iov_len - got, &n)) == 1) {
            got += n;
        }
        v.iov_len = got;
        p->got_plain |= got > 0;
        evbuffer_commit_space(out, &v, 1);
        if (ok == 1) {
            continue; /* full: go on with a new reservation */
        }
        int e = SSL_get_error(p->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return true;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && p->sock_eof)) {
            return peer_eof(p);
        }
        char buf[256];
        unsigned long err = ERR_peek_last_error();
        bool alert = ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) >= SSL_AD_REASON_OFFSET;
        const char *why = ssl_reason(p, buf, sizeof(buf));
        if (alert && !p->got_plain && !SSL_is_server(p->ssl)) {
            /* TLS 1.3: a server refusing our certificate says so with an
             * alert after our side of the handshake is over */
            wm_log(WM_LOG_WARN, p->id, "tls %s: refused by the server: %s", p->peer, why);
        }
        fail(p, why);
        return false;
    }
}

/* Decrypt what came from the socket. false: the pump ended. */
static bool decrypt(struct pump *p)
{
    struct evbuffer *out = bufferevent_get_output(p->b);

    if (in_handshake(p) && !handshake(p)) {
        return false;
    }
    if (in_handshake(p)) {
        return true;
    }
    if (!read_tls(p, out)) {
        return false;
    }
    if (evbuffer_get_length(out) >= PUMP_IN_HIGH && !p->reading_paused) {
        p->reading_paused = true;
        event_del(p->rd);
    }
    /* Decrypting may have produced output (tickets, alerts, key updates)
     * and unblocked writes waiting for the handshake. */
    return encrypt(p);
}

/* One readv of up to PUMP_READ_MAX into cin. true: decrypt now. */
static bool sock_read(struct pump *p)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    int nv = evbuffer_reserve_space(p->cin, PUMP_READ_MAX, v, 2);

    if (nv <= 0) {
        fail(p, "out of memory");
        return false;
    }
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t r = readv(p->fd, iov, nv);
    if (r <= 0) {
        evbuffer_commit_space(p->cin, v, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return false;
        }
        if (r < 0) {
            fail(p, strerror(errno));
            return false;
        }
        p->sock_eof = true;
        event_del(p->rd);
        if (in_handshake(p)) {
            fail(p, "closed during the handshake");
            return false;
        }
        return true;
    }
    size_t left = (size_t)r;
    for (int i = 0; i < nv; i++) {
        v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(p->cin, v, nv);
    return true;
}

/* ---- callbacks: each that can end the pump holds its guard ---- */

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    wm_guard_enter(&p->guard);
    if (p->lingering) {
        if (sock_read(p)) { /* bytes or EOF (a failure ended the pump) */
            evbuffer_drain(p->cin, evbuffer_get_length(p->cin));
            if (p->sock_eof) {
                pump_close(p);
            }
        }
    } else if (sock_read(p)) {
        decrypt(p);
    }
    pump_leave(p);
}

static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    wm_guard_enter(&p->guard);
    if (flush_out(p)) {
        encrypt(p);
    }
    pump_leave(p);
}

/* The user wrote: encrypt. */
static void b_read_cb(struct bufferevent *bev, void *arg)
{
    struct pump *p = arg;

    wm_guard_enter(&p->guard);
    encrypt(p);
    pump_leave(p);
}

/* The user drained what we decrypted: read again. (Also runs inside our
 * own calls, as b's output moves to the user; it never ends the pump.) */
static void b_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct pump *p = arg;

    if (info->n_deleted > 0 && p->reading_paused && !peer_over(p) &&
        evbuffer_get_length(buf) < PUMP_IN_HIGH / 2) {
        p->reading_paused = false;
        event_add(p->rd, NULL);
    }
    if (p->eof_pending && evbuffer_get_length(buf) == 0) {
        event_active(p->eof_ev, EV_TIMEOUT, 0); /* not from inside a transfer */
    }
}

static void eof_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    wm_guard_enter(&p->guard);
    if (p->eof_pending) {
        deliver_eof(p);
        if (all_done(p)) {
            pump_close(p);
        }
    }
    pump_leave(p);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    wm_guard_enter(&p->guard);
    if (in_handshake(p)) {
        count_hs_failure(p);
    }
    fail(p, in_handshake(p) ? "handshake timed out" : "close timed out");
    pump_leave(p);
}

/* EOF from the user (it shut its writing down, or freed its end): finish
 * writing, send close_notify. */
static void user_eof_event(struct pump *p)
{
    static const enum pump_state next[PUMP_STATE_COUNT] = {
        [PUMP_HANDSHAKE] = PUMP_HANDSHAKE_EOF, [PUMP_HANDSHAKE_EOF] = PUMP_HANDSHAKE_EOF,
        [PUMP_OPEN] = PUMP_HLOC,               [PUMP_HLOC] = PUMP_HLOC,
        [PUMP_HREM] = PUMP_CLOSED,             [PUMP_CLOSED] = PUMP_CLOSED,
        [PUMP_DEAD] = PUMP_DEAD,
    };

    bufferevent_disable(p->b, EV_READ);
    if (user_gone(p)) {
        if (in_handshake(p)) {
            pump_close(p); /* nothing sent yet, nobody to tell */
            return;
        }
        /* flush, close_notify, close; bounded in time */
        struct timeval tv = {PUMP_CLOSE_MS / 1000, 0};
        evtimer_add(p->timer, &tv);
        event_del(p->rd);
    }
    set_state(p, next[p->state]);
    encrypt(p);
}

static void b_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct pump *p = arg;

    if (!(what & BEV_EVENT_EOF)) {
        return;
    }
    wm_guard_enter(&p->guard);
    user_eof_event(p);
    pump_leave(p);
}

/* ---- API ---- */

/* The client's names: SNI, and the name or address the server's
 * certificate must carry. OpenSSL refusing either must fail the
 * connection: going on would skip the name check. false: refused
 * (logged). */
static bool pump_names(struct pump *p, const char *host)
{
    unsigned char ip[16];
    const char *what;

    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
        /* no SNI for an address (RFC 6066 3) */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), host) == 1) {
            return true;
        }
        what = "the address to verify";
    } else if (SSL_set_tlsext_host_name(p->ssl, host) != 1) {
        what = "the server name (SNI)";
    } else if (SSL_set1_host(p->ssl, host) != 1) {
        what = "the name to verify";
    } else {
        return true;
    }
    ERR_clear_error();
    wm_log(WM_LOG_WARN, p->id, "tls %s: refused: OpenSSL does not take \"%.64s%s\" as %s",
           p->peer, host, strlen(host) > 64 ? "..." : "", what);
    return false;
}

/* The SSL object, its BIO and the client's names. false: out of memory,
 * or a name OpenSSL refused (logged). */
static bool pump_ssl(struct pump *p, SSL_CTX *ctx, bool server, const char *host)
{
    BIO *bio = evb_meth() != NULL ? BIO_new(evb_meth()) : NULL;

    p->ssl = SSL_new(ctx);
    if (p->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        return false;
    }
    BIO_set_data(bio, p);
    SSL_set_bio(p->ssl, bio, bio); /* the same BIO both ways: one reference */
    if (server) {
        SSL_set_accept_state(p->ssl);
        return true;
    }
    SSL_set_connect_state(p->ssl);
    return host == NULL || host[0] == '\0' || pump_names(p, host);
}

struct bufferevent *wm_tls_pump_new(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                    const char *host, const char *peer)
{
    struct pump *p = calloc(1, sizeof(*p));
    struct bufferevent *pair[2] = {NULL, NULL};

    if (p == NULL) {
        close(fd);
        return NULL;
    }
    p->fd = fd;
    p->id = wm_log_next_id();
    p->state = PUMP_HANDSHAKE;
    p->next = live;
    if (live != NULL) {
        live->prev = p;
    }
    live = p;
    snprintf(p->peer, sizeof(p->peer), "%s", peer != NULL ? peer : "-");
    p->cin = evbuffer_new();
    p->cout = evbuffer_new();
    p->rd = event_new(base, fd, EV_READ | EV_PERSIST, rd_cb, p);
    p->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, wr_cb, p);
    p->timer = evtimer_new(base, timeout_cb, p);
    p->eof_ev = event_new(base, -1, 0, eof_cb, p);
    if (!pump_ssl(p, ctx, server, host) || p->cin == NULL || p->cout == NULL || p->rd == NULL ||
        p->wr == NULL || p->timer == NULL || p->eof_ev == NULL ||
        bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) < 0 ||
        (p->out_cb = evbuffer_add_cb(bufferevent_get_output(pair[0]), b_out_cb, p)) == NULL) {
        p->b = pair[0];
        if (pair[1] != NULL) {
            bufferevent_free(pair[1]);
        }
        pump_free(p);
        return NULL;
    }
    p->b = pair[0];
    p->a = pair[1];
    bufferevent_setcb(p->b, b_read_cb, NULL, b_event_cb, p);
    bufferevent_setwatermark(p->b, EV_READ, 0, PUMP_OUT_HIGH);
    bufferevent_enable(p->b, EV_READ | EV_WRITE);
    bufferevent_enable(p->a, EV_READ | EV_WRITE);
    event_add(p->rd, NULL);
    struct timeval tv = {PUMP_HANDSHAKE_MS / 1000, 0};
    evtimer_add(p->timer, &tv);
    if (!server) {
        /* The client speaks first; its hello goes out from the loop. */
        event_add(p->wr, NULL);
        SSL_do_handshake(p->ssl);
    }
    return p->a;
}

const char *wm_tls_pump_transport(const struct bufferevent *a)
{
    struct bufferevent *b;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;

    if (a == NULL || (b = bufferevent_pair_get_partner((struct bufferevent *)a)) == NULL) {
        return NULL; /* not a pair at all (NULL for other types) */
    }
    bufferevent_getcb(b, &rd, NULL, NULL, &arg);
    if (rd != b_read_cb) {
        return NULL; /* a pair, but not a pump's */
    }
    return "TLS";
}

SSL *wm_tls_pump_ssl(const struct bufferevent *a)
{
    struct bufferevent *b;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;

    if (a == NULL || (b = bufferevent_pair_get_partner((struct bufferevent *)a)) == NULL) {
        return NULL;
    }
    bufferevent_getcb(b, &rd, NULL, NULL, &arg);
    return rd == b_read_cb && arg != NULL ? ((struct pump *)arg)->ssl : NULL;
}

int wm_tls_pump_fd(const struct bufferevent *a)
{
    struct bufferevent *b;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;

    if (a == NULL || (b = bufferevent_pair_get_partner((struct bufferevent *)a)) == NULL) {
        return -1;
    }
    bufferevent_getcb(b, &rd, NULL, NULL, &arg);
    return rd == b_read_cb && arg != NULL ? ((struct pump *)arg)->fd : -1;
}

void wm_tls_pump_set_id(struct bufferevent *a, uint64_t id)
{
    struct bufferevent *b;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;

    if (a != NULL && (b = bufferevent_pair_get_partner(a)) != NULL) {
        bufferevent_getcb(b, &rd, NULL, NULL, &arg);
        if (rd == b_read_cb && arg != NULL) {
            ((struct pump *)arg)->id = id;
        }
    }
}

int wm_tls_pump_notify_ready(struct bufferevent *a)
{
    struct bufferevent *b;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;
    struct pump *p;

    if (a == NULL || (b = bufferevent_pair_get_partner(a)) == NULL) {
        return -1;
    }
    bufferevent_getcb(b, &rd, NULL, NULL, &arg);
    if (rd != b_read_cb || arg == NULL) {
        return -1;
    }
    p = arg;
    if (in_handshake(p)) {
        p->notify_ready = true;
    } else {
        bufferevent_trigger_event(a, BEV_EVENT_CONNECTED, BEV_TRIG_DEFER_CALLBACKS);
    }
    return 0;
}

void wm_tls_pump_free_all(void)
{
    while (live != NULL) {
        struct pump *p = live;
        if (p->b != NULL && !user_gone(p)) {
            /* the user's end outlives the loop too: cut it loose */
            bufferevent_free(p->b);
            p->b = NULL;
        }
        pump_free(p);
    }
}
