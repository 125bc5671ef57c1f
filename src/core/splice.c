#include "core/splice.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/util.h"

#define SPLICE_PIPE_SIZE (256 * 1024)
#define SPLICE_CHUNK (256 * 1024)

/* One direction: from -> to. */
struct dir {
    int from;
    int to;
    int pipe[2];        /* -1 until the first byte */
    size_t inpipe;      /* bytes waiting in the pipe */
    size_t pipe_cap;
    struct evbuffer *pre; /* bytes to write before the pipe's */
    bool eof;           /* `from` reached EOF */
    bool shut;          /* `to` got SHUT_WR */
    bool bulk;          /* reads fill buffers: splice through the pipe */
    bool failed;        /* `from` failed: write what was read, then end */
    int outq;           /* bytes in `to`'s send queue at the last idle look */
    uint64_t bytes;
    struct event *rd;   /* readable `from` */
    struct event *wr;   /* writable `to` */
};

struct wm_splice {
    struct dir d[2];
    int fd[2];
    struct event *idle_ev;
    int idle_ms;
    uint64_t last_ms;
    enum wm_relay_end end;
    int err;
    wm_relay_done_cb cb;
    void *arg;
};

static void finish(struct wm_splice *s)
{
    struct wm_relay_result res = {s->d[0].bytes, s->d[1].bytes, s->end, s->err};
    wm_relay_done_cb cb = s->cb;
    void *arg = s->arg;

    for (int i = 0; i < 2; i++) {
        struct dir *d = &s->d[i];
        event_free(d->rd);
        event_free(d->wr);
        if (d->pipe[0] >= 0) {
            close(d->pipe[0]);
            close(d->pipe[1]);
        }
        evbuffer_free(d->pre);
        close(s->fd[i]);
    }
    if (s->idle_ev != NULL) {
        event_free(s->idle_ev);
    }
    free(s);
    cb(arg, &res);
}

static void note_err(struct wm_splice *s, int side, int err)
{
    if (s->end == WM_RELAY_END_CLOSED) {
        s->end = side == 0 ? WM_RELAY_END_ERR_A : WM_RELAY_END_ERR_B;
        s->err = err;
    }
}

static void fail(struct wm_splice *s, int side, int err)
{
    note_err(s, side, err);
    finish(s);
}

static bool flush(struct wm_splice *s, int i);

/* Reading side i failed: what it read before still goes out (as the
 * relay contract says), then the relay ends with the error. */
static void read_failed(struct wm_splice *s, int i, int err)
{
    struct dir *d = &s->d[i];

    if (d->inpipe == 0 && evbuffer_get_length(d->pre) == 0) {
        fail(s, i, err);
        return;
    }
    note_err(s, i, err);
    d->failed = true;
    d->eof = true;
    event_del(d->rd);
    flush(s, i);
}

static bool done(const struct wm_splice *s)
{
    return s->d[0].shut && s->d[1].shut;
}

static int ensure_pipe(struct dir *d)
{
    if (d->pipe[0] >= 0) {
        return 0;
    }
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        return -1;
    }
    int r = fcntl(d->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_SIZE);
    d->pipe_cap = r > 0 ? (size_t)r : 65536;
    return 0;
}

/* Move what is pending towards `to`. Returns false if the relay ended. */
static bool flush(struct wm_splice *s, int i)
{
    struct dir *d = &s->d[i];
    int to_side = 1 - i;

    while (evbuffer_get_length(d->pre) > 0) {
        int w = evbuffer_write(d->pre, d->to);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                goto wait_writable;
            }
            fail(s, to_side, errno);
            return false;
        }
    }
    while (d->inpipe > 0) {
        ssize_t m = splice(d->pipe[0], NULL, d->to, NULL, d->inpipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                goto wait_writable;
            }
            fail(s, to_side, errno);
            return false;
        }
        d->inpipe -= (size_t)m;
    }
    event_del(d->wr);
    if (d->failed) {
        finish(s);
        return false;
    }
    if (d->eof) {
        /* When the other way is over too, the close in finish() sends the
         * FIN: `to` was read to its EOF, so nothing unread turns it into a
         * reset, and the shutdown would be one more syscall per connection. */
        if (!d->shut && !s->d[to_side].shut) {
            shutdown(d->to, SHUT_WR);
        }
        d->shut = true;
        if (done(s)) {
            finish(s);
            return false;
        }
        return true;
    }
    event_add(d->rd, NULL);
    return true;
wait_writable:
    /* Back-pressure: stop reading until the target drains. */
    event_del(d->rd);
    event_add(d->wr, NULL);
    return true;
}

/* Small exchanges (handshakes, requests) go through a stack buffer: a
 * pipe costs two descriptors and three syscalls to set up. A direction
 * switches to splice(2) the first time a read fills the buffer. */
#define COPY_CHUNK (32 * 1024)

/* peer_closed: epoll said the peer sent its FIN (EV_CLOSED, EPOLLRDHUP).
 * A read that then leaves bytes in the socket's queue cannot happen (it
 * would have filled buf), so a short read is the last one: the EOF is
 * known without the recv() that returns 0, and the bytes go out with
 * MSG_MORE so that the FIN of the shutdown (or close) that flush() does
 * next rides in the same segment. */
static void read_copy(struct wm_splice *s, int i, bool peer_closed)
{
    struct dir *d = &s->d[i];
    char buf[COPY_CHUNK];
    ssize_t n = recv(d->from, buf, sizeof(buf), 0);
    bool last;

    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            read_failed(s, i, errno);
        }
        return;
    }
    if (n == 0) {
        d->eof = true;
        event_del(d->rd);
        flush(s, i);
        return;
    }
    d->bytes += (uint64_t)n;
    s->last_ms = wm_now_coarse_ms();
    if ((size_t)n == sizeof(buf)) {
        d->bulk = true;
    }
    last = peer_closed && (size_t)n < sizeof(buf);
    if (last) {
        d->eof = true;
        event_del(d->rd);
    }
    size_t off = 0;
    if (evbuffer_get_length(d->pre) == 0 && d->inpipe == 0) {
        ssize_t w = send(d->to, buf, (size_t)n, MSG_NOSIGNAL | (last ? MSG_MORE : 0));
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            fail(s, 1 - i, errno);
            return;
        }
        off = w > 0 ? (size_t)w : 0;
    }
    if (off < (size_t)n) {
        evbuffer_add(d->pre, buf + off, (size_t)n - off);
    }
    flush(s, i);
}

static void read_side(struct wm_splice *s, int i, bool peer_closed)
{
    struct dir *d = &s->d[i];

    if (!d->bulk) {
        read_copy(s, i, peer_closed);
        return;
    }
    if (ensure_pipe(d) < 0) {
        /* No descriptor (or memory) for the pipe: go on copying; the next
         * read that fills the buffer tries the pipe again. */
        d->bulk = false;
        read_copy(s, i, peer_closed);
        return;
    }
    for (int rounds = 0; rounds < 4 && d->inpipe < d->pipe_cap; rounds++) {
        ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, d->pipe_cap - d->inpipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->inpipe += (size_t)n;
            d->bytes += (uint64_t)n;
            s->last_ms = wm_now_coarse_ms();
            continue;
        }
        if (n == 0) {
            d->eof = true;
            event_del(d->rd);
            break;
        }
        if (errno == EAGAIN || errno == EINTR) {
            break;
        }
        read_failed(s, i, errno);
        return;
    }
    flush(s, i);
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_splice *s = arg;

    read_side(s, fd == s->fd[0] ? 0 : 1, (what & EV_CLOSED) != 0);
}

static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_splice *s = arg;

    (void)what;
    /* fd is the target of the direction that writes to it. */
    flush(s, fd == s->fd[1] ? 0 : 1);
}

/* The idle timer looks every quarter of the timeout. */
static void arm_idle(struct wm_splice *s)
{
    uint64_t ms = s->idle_ms >= 4 ? (uint64_t)s->idle_ms / 4 : 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(s->idle_ev, &tv);
}

/* Did a peer take bytes from its socket's send queue since the last look?
 * A slow reader drains what the kernel holds for it for a long time
 * without our reading or writing anything: that is no idle. */
static bool peers_took(struct wm_splice *s)
{
    bool took = false;

    for (int i = 0; i < 2; i++) {
        struct dir *d = &s->d[i];
        int q = wm_sock_sendq(d->to);
        q = q > 0 ? q : 0;
        took = took || q < d->outq;
        d->outq = q;
    }
    return took;
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_splice *s = arg;
    uint64_t now = wm_now_coarse_ms();

    (void)fd;
    (void)what;
    if (peers_took(s)) {
        s->last_ms = now;
    }
    if (now - s->last_ms + 5 < (uint64_t)s->idle_ms) {
        arm_idle(s);
        return;
    }
    s->end = WM_RELAY_END_IDLE;
    finish(s);
}

struct wm_splice *wm_splice_start(struct event_base *base, int a, int b, struct evbuffer *a_pre,
                                  struct evbuffer *b_pre, const struct wm_relay_conf *conf,
                                  wm_relay_done_cb cb, void *arg)
{
    struct wm_splice *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->fd[0] = a;
    s->fd[1] = b;
    s->cb = cb;
    s->arg = arg;
    s->idle_ms = conf != NULL ? conf->idle_ms : WM_IDLE_TIMEOUT_MS;
    s->last_ms = wm_now_coarse_ms();
    /* EV_CLOSED (EPOLLRDHUP) where the backend has it: read_copy() */
    short closed = (event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE) ? EV_CLOSED : 0;
    for (int i = 0; i < 2; i++) {
        struct dir *d = &s->d[i];
        d->from = s->fd[i];
        d->to = s->fd[1 - i];
        d->pipe[0] = d->pipe[1] = -1;
        d->pre = evbuffer_new();
        d->rd = event_new(base, d->from, EV_READ | EV_PERSIST | closed, rd_cb, s);
        d->wr = event_new(base, d->to, EV_WRITE | EV_PERSIST, wr_cb, s);
    }
    if (s->idle_ms > 0) {
        s->idle_ev = evtimer_new(base, idle_cb, s);
    }
    for (int i = 0; i < 2; i++) {
        if (s->d[i].pre == NULL || s->d[i].rd == NULL || s->d[i].wr == NULL ||
            (s->idle_ms > 0 && s->idle_ev == NULL)) {
            for (int k = 0; k < 2; k++) {
                evbuffer_free(s->d[k].pre);
                if (s->d[k].rd != NULL) {
                    event_free(s->d[k].rd);
                }
                if (s->d[k].wr != NULL) {
                    event_free(s->d[k].wr);
                }
            }
            if (s->idle_ev != NULL) {
                event_free(s->idle_ev);
            }
            free(s);
            return NULL;
        }
    }
    if (a_pre != NULL) {
        s->d[0].bytes += evbuffer_get_length(a_pre);
        evbuffer_add_buffer(s->d[0].pre, a_pre);
    }
    if (b_pre != NULL) {
        evbuffer_add_buffer(s->d[1].pre, b_pre);
    }
    if (s->idle_ev != NULL) {
        arm_idle(s);
    }
    /* Send what is queued now when the kernel takes it, and arm reads: at
     * the hand-over from a dial this changes nothing in epoll but the
     * dialed socket's interest. What does not go (or fails) waits for the
     * write event, so this never calls back. */
    for (int i = 0; i < 2; i++) {
        struct dir *d = &s->d[i];
        while (evbuffer_get_length(d->pre) > 0 && evbuffer_write(d->pre, d->to) > 0) {
        }
        event_add(evbuffer_get_length(d->pre) > 0 ? d->wr : d->rd, NULL);
    }
    return s;
}

void wm_splice_abort(struct wm_splice *s)
{
    s->end = WM_RELAY_END_ABORTED;
    finish(s);
}

void wm_splice_counts(const struct wm_splice *s, uint64_t *a_to_b, uint64_t *b_to_a)
{
    *a_to_b = s->d[0].bytes;
    *b_to_a = s->d[1].bytes;
}
