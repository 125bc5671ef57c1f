/*
 * core/log.h - one line per event, with time, level and connection id.
 *
 * Lines look like:
 *   2026-11-25T15:35:32.123+01:00 INFO  c=42 access proto=socks5 client=127.0.0.1:5000 ...
 * (ISO 8601 local time with its UTC offset.) Each line is built in a stack buffer and written with one write(2), so lines
 * from different worker threads never interleave. Callers go through the
 * wm_log() macro, which tests the level before any formatting is done.
 */
#ifndef WM_CORE_LOG_H
#define WM_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum wm_log_level {
    WM_LOG_OFF = -1,
    WM_LOG_ERROR = 0,
    WM_LOG_WARN,
    WM_LOG_INFO,
    WM_LOG_DEBUG,
    WM_LOG_TRACE,
    WM_LOG_LEVEL_COUNT
};

/* Current threshold; read by the macro on every thread, written by the main
 * thread (wm_log_set_level(), wm_log_set_fd() at a reload): an atomic, so a
 * worker reads the old or the new level, never a torn one. */
extern int wm_log_threshold;
#define WM_LOG_THRESHOLD() __atomic_load_n(&wm_log_threshold, __ATOMIC_RELAXED)

#define wm_log(level, conn_id, ...)                                                   \
    do {                                                                              \
        if ((int)(level) <= WM_LOG_THRESHOLD()) {                                     \
            wm_log_write((level), (conn_id), __VA_ARGS__);                            \
        }                                                                             \
    } while (0)

#define wm_log_enabled(level) ((int)(level) <= WM_LOG_THRESHOLD())

/* Format and write one line. conn_id 0 prints "-". Use wm_log() instead. */
void wm_log_write(enum wm_log_level level, uint64_t conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void wm_log_set_level(enum wm_log_level level);
enum wm_log_level wm_log_get_level(void);

/* Parse "error|warn|info|debug|trace|off" (case-insensitive). 0 or -1. */
int wm_log_parse_level(const char *s, enum wm_log_level *out);
const char *wm_log_level_name(enum wm_log_level level);

/* Where lines go: fd (default 1, stdout). -1 discards everything below ERROR;
 * errors then still reach stderr so a failing start is never silent. */
void wm_log_set_fd(int fd);

/* Open (append) a log file and send lines there. 0 or -1 (errno set). */
int wm_log_open_file(const char *path);

/* Call fn with each of the last (up to 20) WARN and ERROR lines, oldest
 * first, without their newline. Thread-safe; fn must not log. */
void wm_log_recent(void (*fn)(const char *line, void *arg), void *arg);

/* Return a fresh process-wide connection id (never 0). Thread-safe. */
uint64_t wm_log_next_id(void);

#endif
