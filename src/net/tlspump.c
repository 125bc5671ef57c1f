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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"

#define PUMP_READ_MAX (256 * 1024)  /* ciphertext read per syscall, at most */
#define PUMP_OUT_HIGH (256 * 1024)  /* stop encrypting above this much unsent */
#define PUMP_IN_HIGH (512 * 1024)   /* stop reading while the user lags this much */
#define PUMP_CHUNK 16384            /* a TLS record's plaintext, at most */
#define PUMP_RESERVE_MIN 2048       /* decrypted output reserved per pass: at least */
#define PUMP_RESERVE_MAX (65536 - 512) /* at most: one 64 KiB block with libevent's header */
#define PUMP_WRITE_MAX (64 * 1024)  /* plaintext per SSL_write: up to 4 records */
#define PUMP_SMALL 2048             /* a first chain this small is joined with the next */
#define PUMP_HANDSHAKE_MS 15000
#define PUMP_CLOSE_MS 5000

struct pump {
    struct pump *prev; /* this thread's live pumps */
    struct pump *next;
    int fd;
    SSL *ssl;
    struct evbuffer *cin;  /* ciphertext from the socket, read by the BIO */
    struct evbuffer *cout; /* ciphertext for the socket, written by the BIO */
    struct bufferevent *a; /* the user's end */
    struct bufferevent *b; /* ours */
    struct event *rd;
    struct event *wr;
    struct event *timer;
    struct event *eof_ev;  /* delivers a pending EOF from the loop */
    bool eof_pending;      /* peer closed; EOF once the user took all data */
    bool handshake_done;
    bool peer_closed;      /* socket EOF or close_notify */
    bool local_eof;        /* the user sent EOF */
    bool shut;             /* close_notify sent */
    bool dead;
    bool reading_paused;
    char peer[64];
};

/* ---- a BIO over two evbuffers ---- */

static BIO_METHOD *evb_method;
static __thread struct pump *live;

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
    int n;

    BIO_clear_retry_flags(bio);
    if (evbuffer_get_length(p->cin) == 0) {
        if (p->peer_closed) {
            return 0;
        }
        BIO_set_retry_read(bio);
        return -1;
    }
    n = evbuffer_remove(p->cin, out, (size_t)len);
    return n;
}

static long evb_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct pump *p = BIO_get_data(bio);

    (void)num;
    (void)ptr;
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

static BIO_METHOD *evb_meth(void)
{
    /* Built once; the first pump is made before any thread exists or on
     * worker 0 only, and the value never changes after. */
    if (evb_method == NULL) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wm-evbuffer");
        if (m == NULL) {
            return NULL;
        }
        BIO_meth_set_write(m, evb_write);
        BIO_meth_set_read(m, evb_read);
        BIO_meth_set_ctrl(m, evb_ctrl);
        BIO_meth_set_create(m, evb_create);
        evb_method = m;
    }
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
    if (p->rd != NULL) {
        event_free(p->rd);
    }
    if (p->wr != NULL) {
        event_free(p->wr);
    }
    if (p->timer != NULL) {
        event_free(p->timer);
    }
    if (p->eof_ev != NULL) {
        event_free(p->eof_ev);
    }
    if (p->b != NULL) {
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

static void fail(struct pump *p, const char *why)
{
    struct bufferevent *a = p->b != NULL ? bufferevent_pair_get_partner(p->b) : NULL;

    if (p->dead) {
        return;
    }
    p->dead = true;
    wm_log(WM_LOG_DEBUG, 0, "tls %s: %s", p->peer, why);
    if (a != NULL) {
        bufferevent_trigger_event(a, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
    }
    pump_free(p);
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

/* Write pending ciphertext to the socket. false: the pump is gone. */
static bool flush_out(struct pump *p)
{
    while (evbuffer_get_length(p->cout) > 0) {
        int w = evbuffer_write(p->cout, p->fd);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                event_add(p->wr, NULL);
                return true;
            }
            fail(p, strerror(errno));
            return false;
        }
    }
    event_del(p->wr);
    if (p->shut && bufferevent_pair_get_partner(p->b) == NULL) {
        /* close_notify is out and nobody reads: done. */
        p->dead = true;
        pump_free(p);
        return false;
    }
    return true;
}

/* One SSL_write of up to PUMP_WRITE_MAX from the front of in: the first
 * chain in place (OpenSSL cuts it into records); only a tiny first chain
 * is joined with what follows. 1: written, 0: the handshake wants more
 * (retried after reads), -1: the pump is gone. */
static int ssl_write_some(struct pump *p, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    size_t total = evbuffer_get_length(in);

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
    (void)evbuffer_expand(p->cout, n + (n / PUMP_CHUNK + 1) * 64);
    int r = SSL_write(p->ssl, data, (int)n);
    if (r <= 0) {
        int e = SSL_get_error(p->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        char buf[256];
        fail(p, ssl_reason(p, buf, sizeof(buf)));
        return -1;
    }
    evbuffer_drain(in, (size_t)r);
    return 1;
}

/* Encrypt what the user wrote, up to PUMP_OUT_HIGH of unsent ciphertext
 * at a time. Returns 1 when it stopped for the high mark, 0 when the input
 * ran out (or the handshake is not done), -1 when the pump is gone. */
static int encrypt_some(struct pump *p, struct evbuffer *in)
{
    if (!p->handshake_done) {
        return 0; /* written once handshake() is done */
    }
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

/* Encrypt and send what the user wrote. false: the pump is gone. */
static bool encrypt(struct pump *p)
{
    struct evbuffer *in = bufferevent_get_input(p->b);
    int r;

    /* When the socket takes everything at once, go on with the rest: the
     * user's input stays enabled only while the output is below the mark. */
    do {
        if ((r = encrypt_some(p, in)) < 0) {
            return false;
        }
        if (p->local_eof && evbuffer_get_length(in) == 0 && !p->shut && p->handshake_done) {
            /* close_notify; reading goes on (half-close) */
            SSL_shutdown(p->ssl);
            p->shut = true;
        }
        if (!flush_out(p)) {
            return false;
        }
    } while (r == 1 && evbuffer_get_length(p->cout) < PUMP_OUT_HIGH);
    /* Back-pressure towards the user while the socket lags; wr_cb comes
     * back here once the socket drains. */
    if (evbuffer_get_length(p->cout) >= PUMP_OUT_HIGH) {
        bufferevent_disable(p->b, EV_READ);
    } else if (!p->local_eof) {
        bufferevent_enable(p->b, EV_READ);
    }
    return true;
}

static bool handshake(struct pump *p)
{
    int r = SSL_do_handshake(p->ssl);

    if (r == 1) {
        p->handshake_done = true;
        if (!p->local_eof) {
            evtimer_del(p->timer); /* else it is the close timer now */
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
    wm_log(WM_LOG_WARN, 0, "tls %s: %s", p->peer, line);
    if (flush_out(p)) { /* the alert, if any; a failed write frees p */
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

static void eof_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    (void)fd;
    (void)what;
    if (p->eof_pending) {
        deliver_eof(p);
    }
}

/* The peer closed (close_notify, or a TCP close without it: EOF
 * either way; docs/tunnel.md says why that is safe). false: the pump is gone. */
static bool peer_eof(struct pump *p)
{
    p->peer_closed = true;
    event_del(p->rd);
    if (bufferevent_pair_get_partner(p->b) == NULL) {
        p->dead = true; /* nobody left on either side */
        pump_free(p);
        return false;
    }
    deliver_eof(p);
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

/* OpenSSL's records. false: the pump is gone. */
static bool read_tls(struct pump *p, struct evbuffer *out)
{
    for (;;) {
        struct evbuffer_iovec v;
        size_t got = 0;
        int r = 0;
        if (!reserve_out(p, out, evbuffer_get_length(p->cin) + (size_t)SSL_pending(p->ssl), &v)) {
            return false;
        }
        while (got < v.iov_len &&
               (r = SSL_read(p->ssl, (char *)v.iov_base + got, (int)(v.iov_len - got))) > 0) {
            got += (size_t)r;
        }
        if (got == v.iov_len) {
            r = 1; /* full: go on with a new reservation */
        }
        v.iov_len = got;
        evbuffer_commit_space(out, &v, 1);
        if (r > 0) {
            continue;
        }
        int e = SSL_get_error(p->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return true;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && p->peer_closed)) {
            return peer_eof(p);
        }
        char buf[256];
        fail(p, ssl_reason(p, buf, sizeof(buf)));
        return false;
    }
}

/* Decrypt what came from the socket. false: the pump is gone. */
static bool decrypt(struct pump *p)
{
    struct evbuffer *out = bufferevent_get_output(p->b);

    if (!p->handshake_done && !handshake(p)) {
        return false;
    }
    if (!p->handshake_done) {
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

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    int nv;
    ssize_t r;

    (void)what;
    nv = evbuffer_reserve_space(p->cin, PUMP_READ_MAX, v, 2);
    if (nv <= 0) {
        fail(p, "out of memory");
        return;
    }
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    r = readv(fd, iov, nv);
    if (r < 0) {
        evbuffer_commit_space(p->cin, v, 0);
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        fail(p, strerror(errno));
        return;
    }
    if (r == 0) {
        evbuffer_commit_space(p->cin, v, 0);
        p->peer_closed = true;
        event_del(p->rd);
        if (!p->handshake_done) {
            fail(p, "closed during the handshake");
            return;
        }
    } else {
        size_t left = (size_t)r;
        for (int i = 0; i < nv; i++) {
            v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(p->cin, v, nv);
    }
    decrypt(p);
}

static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    (void)fd;
    (void)what;
    if (flush_out(p)) {
        encrypt(p);
    }
}

/* The user wrote: encrypt. */
static void b_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    encrypt(arg);
}

/* The user drained what we decrypted: read again. */
static void b_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct pump *p = arg;

    if (info->n_deleted > 0 && p->reading_paused && !p->peer_closed &&
        evbuffer_get_length(buf) < PUMP_IN_HIGH / 2) {
        p->reading_paused = false;
        event_add(p->rd, NULL);
    }
    if (p->eof_pending && evbuffer_get_length(buf) == 0) {
        event_active(p->eof_ev, EV_TIMEOUT, 0); /* not from inside a transfer */
    }
}

static void close_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pump *p = arg;

    (void)fd;
    (void)what;
    fail(p, p->handshake_done ? "close timed out" : "handshake timed out");
}

/* EOF from the user: finish writing, send close_notify. */
static void b_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct pump *p = arg;

    (void)bev;
    if (!(what & BEV_EVENT_EOF)) {
        return;
    }
    p->local_eof = true;
    bufferevent_disable(p->b, EV_READ);
    if (bufferevent_pair_get_partner(p->b) == NULL) {
        /* The user is gone: flush, close_notify, close; bounded in time. */
        struct timeval tv = {PUMP_CLOSE_MS / 1000, 0};
        evtimer_add(p->timer, &tv);
        event_del(p->rd);
    }
    encrypt(p);
}

struct bufferevent *wm_tls_pump_new(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                    const char *host, const char *peer)
{
    struct pump *p = calloc(1, sizeof(*p));
    struct bufferevent *pair[2] = {NULL, NULL};
    BIO *bio = NULL;

    if (p == NULL) {
        close(fd);
        return NULL;
    }
    p->fd = fd;
    p->next = live;
    if (live != NULL) {
        live->prev = p;
    }
    live = p;
    snprintf(p->peer, sizeof(p->peer), "%s", peer != NULL ? peer : "-");
    p->ssl = SSL_new(ctx);
    p->cin = evbuffer_new();
    p->cout = evbuffer_new();
    p->rd = event_new(base, fd, EV_READ | EV_PERSIST, rd_cb, p);
    p->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, wr_cb, p);
    p->timer = evtimer_new(base, close_timeout_cb, p);
    p->eof_ev = event_new(base, -1, 0, eof_cb, p);
    if (evb_meth() != NULL) {
        bio = BIO_new(evb_meth());
    }
    if (p->ssl == NULL || p->cin == NULL || p->cout == NULL || p->rd == NULL || p->wr == NULL ||
        p->timer == NULL || p->eof_ev == NULL || bio == NULL ||
        bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) < 0) {
        BIO_free(bio);
        pump_free(p);
        return NULL;
    }
    BIO_set_data(bio, p);
    SSL_set_bio(p->ssl, bio, bio); /* the same BIO both ways: one reference */
    if (server) {
        SSL_set_accept_state(p->ssl);
    } else {
        SSL_set_connect_state(p->ssl);
        if (host != NULL && host[0] != '\0') {
            unsigned char ip[16];
            if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), host);
            } else {
                SSL_set_tlsext_host_name(p->ssl, host);
                SSL_set1_host(p->ssl, host);
            }
        }
    }
    p->b = pair[0];
    p->a = pair[1];
    bufferevent_setcb(p->b, b_read_cb, NULL, b_event_cb, p);
    bufferevent_setwatermark(p->b, EV_READ, 0, PUMP_OUT_HIGH);
    evbuffer_add_cb(bufferevent_get_output(p->b), b_out_cb, p);
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
    struct bufferevent *b = a != NULL ? bufferevent_pair_get_partner((struct bufferevent *)a) : NULL;
    bufferevent_data_cb rd = NULL;
    void *arg = NULL;

    if (b == NULL) {
        return NULL; /* not a pair at all (NULL for other types) */
    }
    bufferevent_getcb(b, &rd, NULL, NULL, &arg);
    if (rd != b_read_cb) {
        return NULL; /* a pair, but not a pump's */
    }
    return "TLS";
}

void wm_tls_pump_free_all(void)
{
    while (live != NULL) {
        struct pump *p = live;
        if (p->b != NULL && bufferevent_pair_get_partner(p->b) != NULL) {
            /* the user's end outlives the loop too: cut it loose */
            bufferevent_free(p->b);
            p->b = NULL;
        }
        pump_free(p);
    }
}
