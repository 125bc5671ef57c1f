/*
 * core/logq.h - log lines leave the event loops through bounded queues and
 * one writer thread, so a slow disk (or a stalled stdout pipe) never
 * blocks a worker. Each worker thread has its own queue; every other
 * thread shares one. A full queue drops the line and counts it
 * (wmproxy_log_dropped_lines_total in /metrics).
 *
 * Lines keep their order per thread. Descriptors handed to the queue must
 * stay open while lines for them may be queued: close them with
 * wm_logq_close(), which closes in order after those lines.
 *
 * Before wm_logq_start() and after wm_logq_stop() every call writes (or
 * closes) at once in the caller's thread.
 */
#ifndef WM_CORE_LOGQ_H
#define WM_CORE_LOGQ_H

#include <stddef.h>
#include <stdint.h>

#define WM_LOGQ_BYTES (256u * 1024) /* per queue */

/* Start the writer for nthreads worker queues (+1 shared). 0 or -1. */
int wm_logq_start(int nthreads);
/* A worker thread takes queue index (0..nthreads-1). */
void wm_logq_bind_thread(int index);
/* Write everything queued, then stop the writer (main thread, after the
 * workers are joined). A writer stuck on a descriptor that takes no byte
 * (a pipe or FIFO whose reader stopped) is waited for 5 s; then the lines
 * still queued are lost (said on stderr unless stderr or stdout is the
 * stuck one), the queues stay, and later calls keep queueing. */
void wm_logq_stop(void);

/* Queue n bytes (one or more whole lines) for fd. */
void wm_logq_write(int fd, const void *p, size_t n);
/* Close fd after every line queued for it before this call. */
void wm_logq_close(int fd);

/* Lines dropped because a queue was full, since start. */
uint64_t wm_logq_dropped(void);

#endif
