/*
 * reverse/alog.h - access log files for other services ([stream]): the
 * reverse proxy's registry of open files (shared by path, kept open across
 * reloads, reopened on SIGUSR1 by wm_rev_logs_reopen()).
 */
#ifndef WM_REVERSE_ALOG_H
#define WM_REVERSE_ALOG_H

#include <stddef.h>

struct rv_logfile;

/* The file at path, opened for appending (parent directories made); a
 * reference the caller drops with wm_alog_file_put(). NULL with msg. */
struct rv_logfile *wm_alog_file_get(const char *path, char *msg, size_t cap);
void wm_alog_file_put(struct rv_logfile *f); /* NULL is a no-op */

/* Append line[0..n) (ending in '\n') through the log queue (core/logq.h): one
 * write(2), never blocking the caller; dropped and counted when full. Any
 * thread. */
void wm_alog_file_write(struct rv_logfile *f, const char *line, size_t n);

#endif
