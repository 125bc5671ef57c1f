/*
 * tests/fuzz/fuzz_feed.h - what the harnesses that play a socket peer
 * share: the start-up, reading everything the program sent, and writing
 * the input in pieces with the event loop running in between.
 */
#ifndef WM_FUZZ_FEED_H
#define WM_FUZZ_FEED_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"
#include "core/worker.h"

/* Quiet logs, SIGPIPE ignored as the program does (writes to closed peers
 * fail instead), one worker; returns its event base. */
static inline struct event_base *fuzz_start(void)
{
    wm_log_set_level(WM_LOG_OFF);
    signal(SIGPIPE, SIG_IGN);
    if (wm_workers_init(1) != 0) {
        abort();
    }
    return wm_worker_base(wm_worker_get(0));
}

/* Read and drop whatever is waiting on nonblocking fd (-1: nothing). */
static inline void fuzz_drain(int fd)
{
    char buf[65536];

    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
    }
}

/* Write data[0..n) to fd in pieces of `piece` bytes, calling spin(fd, 3)
 * after each, until all is written, a write fails or stop() (may be NULL)
 * says the other side is gone. */
static inline void fuzz_feed(int fd, const uint8_t *data, size_t n, size_t piece,
                             void (*spin)(int fd, int rounds), bool (*stop)(void))
{
    for (size_t off = 0; off < n && (stop == NULL || !stop());) {
        size_t k = n - off < piece ? n - off : piece;
        ssize_t w = write(fd, data + off, k);
        if (w < 0 && errno != EAGAIN) {
            break;
        }
        off += w > 0 ? (size_t)w : 0;
        spin(fd, 3);
    }
}

#endif
