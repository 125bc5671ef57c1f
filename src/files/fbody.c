/*
 * files/fbody.c - streamed file bodies: the whole file, one range or
 * several (multipart/byteranges), or the file gzipped on the fly
 * (chunked). Plain connections get file segments that libevent sends
 * with sendfile(2); TLS ones get max_read_buf bytes read with pread() per
 * step. A file that turned shorter than planned stops the body and the
 * connection closes (sendfile's 0 does the same on plain ones), so no
 * answer is ever shorter or longer than its Content-Length.
 *
 * rate_limit: a token bucket per answer (a burst of a tenth of a second,
 * at least 16 KiB); when it is empty a one-shot timer resumes the body at
 * the time enough tokens are back: no periodic timer.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/util.h"
#include "core/worker.h"
#include "files/files_int.h"
#include "net/conn.h"

#define RATE_MIN_BURST (16 * 1024)
#define GZIP_LEVEL 5

static uint64_t range_len(const struct wm_files_range *r)
{
    return r->last - r->first + 1;
}

/* The head of part i of a multipart body, added to out (NULL: only
 * measured); its length. No fixed buffer: the Content-Type may be a long
 * ext_mimetype or default_mimetype. */
#define PART_HEAD_FMT \
    "%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n"
static size_t part_head(const struct wm_files_req *q, int i, struct evbuffer *out)
{
    const char *sep = i == 0 ? "" : "\r\n";
    unsigned long long first = q->ranges[i].first;
    unsigned long long last = q->ranges[i].last;
    unsigned long long size = (unsigned long long)q->ent->st.st_size;
    int n = out != NULL ? evbuffer_add_printf(out, PART_HEAD_FMT, sep, q->boundary, q->ctype,
                                              first, last, size)
                        : snprintf(NULL, 0, PART_HEAD_FMT, sep, q->boundary, q->ctype, first,
                                   last, size);

    return n > 0 ? (size_t)n : 0;
}

static size_t trailer(const struct wm_files_req *q, struct evbuffer *out)
{
    int n = out != NULL ? evbuffer_add_printf(out, "\r\n--%s--\r\n", q->boundary)
                        : snprintf(NULL, 0, "\r\n--%s--\r\n", q->boundary);

    return n > 0 ? (size_t)n : 0;
}

void files_multipart_mem(struct wm_files_req *q)
{
    for (int i = 0; i < q->nranges; i++) {
        part_head(q, i, q->body);
        evbuffer_add(q->body, q->ent->data + q->ranges[i].first, range_len(&q->ranges[i]));
    }
    trailer(q, q->body);
}

/* ---- rate limit ---- */

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wm_files_req *q = arg;

    (void)fd;
    (void)what;
    wm_hfwd_stream_resume(q->f);
}

/* Bytes allowed now; 0 after arming the timer. */
static size_t rate_allow(struct wm_files_req *q, size_t want)
{
    const struct wm_rate *r = &q->fs->rate;
    uint64_t burst = r->amount / 10 > RATE_MIN_BURST ? r->amount / 10 : RATE_MIN_BURST;
    uint64_t el = wm_now_ms() - q->start_ms;
    uint64_t earned = burst + (uint64_t)((double)r->amount * (double)el / (double)r->per_ms);
    uint64_t need;
    struct timeval tv;

    if (r->amount == 0) {
        return want;
    }
    if (earned > q->sent) {
        uint64_t a = earned - q->sent;
        return a < want ? (size_t)a : want;
    }
    need = q->sent - earned + (want < burst ? want : burst);
    el = (uint64_t)((double)need * (double)r->per_ms / (double)r->amount) + 1;
    if (q->timer == NULL) {
        q->timer = evtimer_new(wm_worker_base(wm_hfwd_conn(q->f)->w), rate_cb, q);
        if (q->timer == NULL) {
            return want; /* out of memory: unlimited rather than stuck */
        }
    }
    tv.tv_sec = (time_t)(el / 1000);
    tv.tv_usec = (suseconds_t)(el % 1000) * 1000;
    evtimer_add(q->timer, &tv);
    return 0;
}

/* ---- reading ---- */

/* The segment keeps the entry (its descriptor) while any of it waits in
 * an output buffer, even after the request is gone. */
static void seg_done(struct evbuffer_file_segment const *seg, int flags, void *arg)
{
    (void)seg;
    (void)flags;
    files_entry_put(arg);
}

/* n bytes of the file at off into out. false when the file is shorter. */
static bool add_bytes(struct wm_files_req *q, struct evbuffer *out, uint64_t off, size_t n)
{
    struct evbuffer_iovec v;

    if (q->ent->data != NULL) {
        return evbuffer_add(out, q->ent->data + off, n) == 0;
    }
    if (q->plain) {
        if (q->seg == NULL) {
            q->seg = evbuffer_file_segment_new(q->ent->fd, 0, q->ent->st.st_size, 0);
            if (q->seg == NULL) {
                return false;
            }
            q->ent->refs++;
            evbuffer_file_segment_add_cleanup_cb(q->seg, seg_done, q->ent);
        }
        return evbuffer_add_file_segment(out, q->seg, (ev_off_t)off, (ev_off_t)n) == 0;
    }
    if (evbuffer_reserve_space(out, n, &v, 1) < 1) {
        return false;
    }
    ssize_t r = pread(q->ent->fd, v.iov_base, n, (off_t)off);
    if (r != (ssize_t)n) {
        return false;
    }
    v.iov_len = n;
    return evbuffer_commit_space(out, &v, 1) == 0;
}

static enum wm_hfwd_pump pump_ranges(struct wm_files_req *q, struct evbuffer *out)
{
    if (q->cur >= q->nranges) {
        if (q->multipart) {
            trailer(q, out);
        }
        return WM_HFWD_PUMP_DONE;
    }
    if (q->multipart && !q->in_part) {
        part_head(q, q->cur, out);
        q->in_part = true;
        q->pos = q->ranges[q->cur].first;
    }
    uint64_t left = q->ranges[q->cur].last + 1 - q->pos;
    size_t want = left < q->fs->read_buf || (q->plain && q->fs->rate.amount == 0)
                      ? (left > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)left)
                      : q->fs->read_buf;
    size_t n = rate_allow(q, want);
    if (n == 0) {
        return WM_HFWD_PUMP_WAIT;
    }
    if (!add_bytes(q, out, q->pos, n)) {
        return WM_HFWD_PUMP_FAIL;
    }
    q->pos += n;
    q->sent += n;
    if (q->pos > q->ranges[q->cur].last) {
        q->cur++;
        q->in_part = false;
        if (q->cur < q->nranges) {
            q->pos = q->ranges[q->cur].first;
        }
    }
    return WM_HFWD_PUMP_MORE;
}

/* ---- gzip on the fly ---- */

static enum wm_hfwd_pump pump_gzip(struct wm_files_req *q, struct evbuffer *out)
{
    z_stream *z = q->z;
    uint64_t size = (uint64_t)q->ent->st.st_size;
    size_t n = (size_t)(size - q->pos < q->fs->read_buf ? size - q->pos : q->fs->read_buf);
    unsigned char *in = malloc(n > 0 ? n : 1);
    size_t want = rate_allow(q, q->fs->read_buf);
    int flush = q->pos + n >= size ? Z_FINISH : Z_NO_FLUSH;

    if (want == 0) {
        free(in);
        return WM_HFWD_PUMP_WAIT;
    }
    if (in == NULL || (n > 0 && pread(q->ent->fd, in, n, (off_t)q->pos) != (ssize_t)n)) {
        free(in);
        return WM_HFWD_PUMP_FAIL;
    }
    z->next_in = in;
    z->avail_in = (uInt)n;
    do {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(out, 32768, &v, 1) < 1) {
            free(in);
            return WM_HFWD_PUMP_FAIL;
        }
        z->next_out = v.iov_base;
        z->avail_out = (uInt)v.iov_len;
        int r = deflate(z, flush);
        v.iov_len -= z->avail_out;
        evbuffer_commit_space(out, &v, 1);
        q->sent += v.iov_len;
        if (r == Z_STREAM_END) {
            q->z_end = true;
            break;
        }
    } while (z->avail_out == 0 || z->avail_in > 0);
    free(in);
    q->pos += n;
    return q->z_end ? WM_HFWD_PUMP_DONE : WM_HFWD_PUMP_MORE;
}

static enum wm_hfwd_pump pump(void *arg, struct evbuffer *out)
{
    struct wm_files_req *q = arg;

    return q->z != NULL ? pump_gzip(q, out) : pump_ranges(q, out);
}

unsigned long long files_body_plan(struct wm_files_req *q, bool gzip)
{
    unsigned long long len = 0;

    q->plain = wm_hfwd_plain(q->f);
    q->start_ms = wm_now_ms();
    q->stream.pump = pump;
    q->stream.arg = q;
    if (gzip) {
        z_stream *z = calloc(1, sizeof(*z));
        if (z == NULL || deflateInit2(z, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8,
                                      Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return 0;
        }
        q->z = z;
        q->stream.length = WM_HFWD_LEN_UNKNOWN;
        return WM_HFWD_LEN_UNKNOWN;
    }
    for (int i = 0; i < q->nranges; i++) {
        len += range_len(&q->ranges[i]);
        if (q->multipart) {
            len += part_head(q, i, NULL);
        }
    }
    if (q->multipart) {
        len += trailer(q, NULL);
    }
    q->pos = q->nranges > 0 ? q->ranges[0].first : 0;
    q->stream.length = len;
    return len;
}

void files_body_free(struct wm_files_req *q)
{
    if (q->timer != NULL) {
        event_free(q->timer);
    }
    if (q->seg != NULL) {
        evbuffer_file_segment_free(q->seg);
    }
    if (q->z != NULL) {
        deflateEnd(q->z);
        free(q->z);
    }
}
