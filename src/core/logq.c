#include "core/logq.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CLOSE_MARK UINT32_MAX /* a record that closes its fd */
/* The tail of each queue only close records may use: a queue full of
 * lines (a stalled writer) still takes the closes of a reload. */
#define CLOSE_RESERVE 4096u
/* How long wm_logq_stop() waits for the writer to write what is queued. */
#define STOP_WAIT_MS 5000

/* A record: struct rec, then len bytes (none for a close). */
struct rec {
    int fd;
    uint32_t len;
};

/* Double buffer: producers append to fill; the writer swaps it with its
 * drained spare under the lock and writes outside it. */
struct queue {
    pthread_mutex_t lock;
    char *fill;
    size_t used;
    char *spare;
};

static struct queue *queues;
static int nqueues;
static __thread struct queue *my_queue;
static pthread_t writer;
static bool running;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool pending;
static bool stopping;
static pthread_cond_t done_cv;   /* the writer returned (writer_done) */
static bool writer_done;
static bool abandoned;           /* stop gave up on a stuck writer */
static int writing_fd = -1;      /* the fd the writer is writing to, or -1 */
static uint64_t dropped;

static bool failing; /* the last write failed (the writer's, or before start) */

/* A failed write (a full disk, a removed device, a closed pipe) loses its
 * lines and must not stop anything: say so once on stderr, again only
 * after a write has succeeded since. */
static void write_failed(int fd, int err)
{
    if (failing) {
        return;
    }
    failing = true;
    if (fd != 2) {
        dprintf(2, "wmproxy: cannot write log lines (fd %d): %s; lines are lost until it "
                   "works again\n", fd, strerror(err));
    }
}

static void write_all(int fd, const char *p, size_t n)
{
    __atomic_store_n(&writing_fd, fd, __ATOMIC_RELAXED);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            write_failed(fd, w < 0 ? errno : ENOSPC);
            return;
        }
        failing = false;
        p += w;
        n -= (size_t)w;
    }
}

/* Write one drained buffer: a run of records for the same fd goes out in
 * one writev (the common case: every line to the same log). */
static void flush_buffer(const char *buf, size_t used)
{
    struct iovec iov[64];
    size_t off = 0;

    while (off < used) {
        struct rec r;
        int n = 0, fd;
        size_t total = 0;

        memcpy(&r, buf + off, sizeof(r));
        if (r.len == CLOSE_MARK) {
            close(r.fd);
            off += sizeof(r);
            continue;
        }
        fd = r.fd;
        while (off < used && n < 64) {
            memcpy(&r, buf + off, sizeof(r));
            if (r.fd != fd || r.len == CLOSE_MARK) {
                break;
            }
            iov[n].iov_base = (void *)(buf + off + sizeof(r));
            iov[n++].iov_len = r.len;
            total += r.len;
            off += sizeof(r) + r.len;
        }
        ssize_t w;
        __atomic_store_n(&writing_fd, fd, __ATOMIC_RELAXED);
        do {
            w = writev(fd, iov, n);
        } while (w < 0 && errno == EINTR);
        if (w < 0) {
            write_failed(fd, errno);
            __atomic_fetch_add(&dropped, (uint64_t)n, __ATOMIC_RELAXED);
            continue;
        }
        failing = failing && w == 0;
        /* short write (a pipe, a nearly full disk): the rest line by line */
        for (int i = 0; w >= 0 && (size_t)w < total && i < n; i++) {
            size_t len = iov[i].iov_len;
            if ((size_t)w >= len) {
                w -= (ssize_t)len;
                total -= len;
                continue;
            }
            write_all(fd, (const char *)iov[i].iov_base + w, len - (size_t)w);
            w = 0;
            total -= len;
        }
    }
}

static void drain_all(void)
{
    for (int i = 0; i < nqueues; i++) {
        struct queue *q = &queues[i];
        pthread_mutex_lock(&q->lock);
        char *b = q->fill;
        size_t used = q->used;
        q->fill = q->spare;
        q->spare = b;
        q->used = 0;
        pthread_mutex_unlock(&q->lock);
        if (used > 0) {
            flush_buffer(b, used);
        }
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&wake_lock);
        while (!pending && !stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000 * 1000; /* a backstop; producers wake us */
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&wake, &wake_lock, &ts);
            if (!pending && !stopping) {
                break; /* timed out: look anyway */
            }
        }
        bool stop = stopping;
        pending = false;
        pthread_mutex_unlock(&wake_lock);
        drain_all();
        if (stop) {
            drain_all();
            pthread_mutex_lock(&wake_lock);
            writer_done = true;
            pthread_cond_signal(&done_cv);
            pthread_mutex_unlock(&wake_lock);
            return NULL;
        }
    }
}

int wm_logq_start(int nthreads)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&done_cv, &ca);
    pthread_condattr_destroy(&ca);
    queues = calloc((size_t)nthreads + 1, sizeof(*queues));
    if (queues == NULL) {
        return -1;
    }
    nqueues = nthreads + 1;
    for (int i = 0; i < nqueues; i++) {
        pthread_mutex_init(&queues[i].lock, NULL);
        queues[i].fill = malloc(WM_LOGQ_BYTES);
        queues[i].spare = malloc(WM_LOGQ_BYTES);
        if (queues[i].fill == NULL || queues[i].spare == NULL) {
            nqueues = i + 1;
            wm_logq_stop();
            return -1;
        }
    }
    stopping = writer_done = false;
    /* The writer takes no signal: it is created with all of them blocked
     * (it inherits the mask), so stop signals reach only the threads that
     * handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&writer, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        wm_logq_stop();
        return -1;
    }
    __atomic_store_n(&running, true, __ATOMIC_RELEASE);
    return 0;
}

void wm_logq_bind_thread(int index)
{
    my_queue = (queues != NULL && index >= 0 && index < nqueues - 1) ? &queues[index] : NULL;
}

/* Wait for the writer to finish what is queued, at most STOP_WAIT_MS; true
 * when it did (joined). */
static bool writer_finished(void)
{
    struct timespec until;
    bool done;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += STOP_WAIT_MS / 1000;
    pthread_mutex_lock(&wake_lock);
    stopping = true;
    pthread_cond_signal(&wake);
    while (!writer_done) {
        if (pthread_cond_timedwait(&done_cv, &wake_lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    done = writer_done;
    pthread_mutex_unlock(&wake_lock);
    if (done) {
        pthread_join(writer, NULL);
    }
    return done;
}

void wm_logq_stop(void)
{
    if (abandoned) {
        return;
    }
    if (__atomic_load_n(&running, __ATOMIC_ACQUIRE)) {
        if (!writer_finished()) {
            /* Stuck in a write (a pipe or FIFO whose reader stopped
             * reading): the process must still end. The queues stay (the
             * writer may use them yet) and take lines until full. */
            int fd = __atomic_load_n(&writing_fd, __ATOMIC_RELAXED);
            abandoned = true;
            if (fd != 1 && fd != 2) {
                dprintf(2, "wmproxy: log writes to fd %d took no byte for %d s: the lines "
                           "still queued are lost\n", fd, STOP_WAIT_MS / 1000);
            }
            return;
        }
        __atomic_store_n(&running, false, __ATOMIC_RELEASE);
    }
    for (int i = 0; i < nqueues; i++) {
        if (queues[i].used > 0) {
            flush_buffer(queues[i].fill, queues[i].used);
        }
        free(queues[i].fill);
        free(queues[i].spare);
        pthread_mutex_destroy(&queues[i].lock);
    }
    free(queues);
    queues = NULL;
    nqueues = 0;
    my_queue = NULL;
    pthread_cond_destroy(&done_cv);
}

/* Append a record; false when it does not fit. */
static bool put(int fd, const void *p, uint32_t len)
{
    struct queue *q = my_queue != NULL ? my_queue : &queues[nqueues - 1];
    size_t need = sizeof(struct rec) + (len == CLOSE_MARK ? 0 : len);
    struct rec r = {fd, len};
    bool was_empty;

    pthread_mutex_lock(&q->lock);
    if (q->used + need > WM_LOGQ_BYTES - (len == CLOSE_MARK ? 0 : CLOSE_RESERVE)) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    was_empty = q->used == 0;
    memcpy(q->fill + q->used, &r, sizeof(r));
    if (len != CLOSE_MARK) {
        memcpy(q->fill + q->used + sizeof(r), p, len);
    }
    q->used += need;
    pthread_mutex_unlock(&q->lock);
    if (was_empty) {
        pthread_mutex_lock(&wake_lock);
        pending = true;
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&wake_lock);
    }
    return true;
}

void wm_logq_write(int fd, const void *p, size_t n)
{
    if (!__atomic_load_n(&running, __ATOMIC_ACQUIRE) || n >= WM_LOGQ_BYTES) {
        write_all(fd, p, n);
        return;
    }
    if (!put(fd, p, (uint32_t)n)) {
        __atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
    }
}

void wm_logq_close(int fd)
{
    if (!__atomic_load_n(&running, __ATOMIC_ACQUIRE)) {
        close(fd);
        return;
    }
    /* Lines take a queue only up to its close reserve, so this fails only
     * with 512 closes waiting behind a writer that is stuck: fd then stays
     * open (closing it now would send the lines still queued for it to
     * whatever file takes its number next). */
    int stuck = __atomic_load_n(&writing_fd, __ATOMIC_RELAXED);
    if (!put(fd, NULL, CLOSE_MARK) && stuck != 1 && stuck != 2) {
        dprintf(2, "wmproxy: log writes to fd %d are stuck: fd %d is left open\n", stuck, fd);
    }
}

uint64_t wm_logq_dropped(void)
{
    return __atomic_load_n(&dropped, __ATOMIC_RELAXED);
}
