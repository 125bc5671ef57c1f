#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/logq.h"
#include "core/util.h"

#define WM_LOG_LINE_MAX 4096

int wm_log_threshold = WM_LOG_INFO;
static int level_wanted = WM_LOG_INFO; /* what was asked for (main thread) */
static int log_fd = 1; /* atomic: set by the main thread at a reload, read by all */
static int log_file_fd = -1;
static uint64_t next_conn_id;

static const char *const level_names[WM_LOG_LEVEL_COUNT] = {
    "ERROR", "WARN", "INFO", "DEBUG", "TRACE",
};

/* The last warnings and errors, for /status (the dashboard shows them). */
#define RECENT_MAX 20
#define RECENT_LEN 400
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static char recent[RECENT_MAX][RECENT_LEN];
static unsigned recent_next; /* total kept so far; slot = next % RECENT_MAX */

static void keep_recent(const char *line, size_t n)
{
    pthread_mutex_lock(&recent_lock);
    char *slot = recent[recent_next++ % RECENT_MAX];
    n = n < RECENT_LEN - 1 ? n : RECENT_LEN - 1;
    memcpy(slot, line, n);
    slot[n] = '\0';
    pthread_mutex_unlock(&recent_lock);
}

void wm_log_recent(void (*fn)(const char *line, void *arg), void *arg)
{
    pthread_mutex_lock(&recent_lock);
    unsigned first = recent_next > RECENT_MAX ? recent_next - RECENT_MAX : 0;
    for (unsigned i = first; i < recent_next; i++) {
        fn(recent[i % RECENT_MAX], arg);
    }
    pthread_mutex_unlock(&recent_lock);
}

/* Through the writer thread's queue (core/logq.h): never blocks. */
static void write_all(int fd, const char *p, size_t n)
{
    wm_logq_write(fd, p, n);
}

void wm_log_write(enum wm_log_level level, uint64_t conn_id, const char *fmt, ...)
{
    char line[WM_LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    size_t off;
    int r;
    va_list ap;
    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED);

    if (fd < 0) {
        if (level != WM_LOG_ERROR) {
            return;
        }
        fd = 2;
    }
    if (level < WM_LOG_ERROR || level >= WM_LOG_LEVEL_COUNT) {
        level = WM_LOG_ERROR;
    }
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    /* ISO 8601 with the UTC offset (+01:00): lines from hosts in other
     * zones, or across a DST change, still sort and compare. */
    off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    long gmtoff = tm.tm_gmtoff;
    char sign = gmtoff < 0 ? '-' : '+';
    gmtoff = gmtoff < 0 ? -gmtoff : gmtoff;
    r = snprintf(line + off, sizeof(line) - off, ".%03d%c%02ld:%02ld %-5s c=",
                 (int)(tv.tv_usec / 1000), sign, gmtoff / 3600, gmtoff / 60 % 60,
                 level_names[level]);
    if (r > 0) {
        off += (size_t)r;
    }
    if (conn_id != 0) {
        r = snprintf(line + off, sizeof(line) - off, "%llu ", (unsigned long long)conn_id);
    } else {
        r = snprintf(line + off, sizeof(line) - off, "- ");
    }
    if (r > 0) {
        off += (size_t)r;
    }
    va_start(ap, fmt);
    r = vsnprintf(line + off, sizeof(line) - off - 1, fmt, ap);
    va_end(ap);
    if (r > 0) {
        off += (size_t)r < sizeof(line) - off - 1 ? (size_t)r : sizeof(line) - off - 2;
    }
    /* One event, one line: fold any newline the message carries, and
     * write other control characters (from peers: names, hosts, reasons)
     * escaped so they cannot drive a terminal or forge a line. The common
     * line has none and is written as it is. */
    bool plain = true;
    for (size_t i = 0; i < off && plain; i++) {
        unsigned char ch = (unsigned char)line[i];
        plain = ch >= 0x20 ? ch != 0x7F && ch != 0xC2 : ch == '\n' || ch == '\r';
    }
    if (plain) {
        for (size_t i = 0; i < off; i++) {
            if (line[i] == '\n' || line[i] == '\r') {
                line[i] = ' ';
            }
        }
        if (level <= WM_LOG_WARN) {
            keep_recent(line, off);
        }
        line[off++] = '\n';
        write_all(fd, line, off);
        return;
    }
    char out[sizeof(line) + 64];
    size_t o = wm_escape_ctl(out, sizeof(out) - 1, line, off, true);
    if (level <= WM_LOG_WARN) {
        keep_recent(out, o);
    }
    out[o++] = '\n';
    write_all(fd, out, o);
}

void wm_log_set_level(enum wm_log_level level)
{
    level_wanted = (int)level;
    __atomic_store_n(&wm_log_threshold,
                     log_fd < 0 && level_wanted > WM_LOG_ERROR ? WM_LOG_ERROR : level_wanted,
                     __ATOMIC_RELAXED);
}

enum wm_log_level wm_log_get_level(void)
{
    return (enum wm_log_level)level_wanted;
}

int wm_log_parse_level(const char *s, enum wm_log_level *out)
{
    if (strcasecmp(s, "off") == 0) {
        *out = WM_LOG_OFF;
        return 0;
    }
    for (int i = 0; i < WM_LOG_LEVEL_COUNT; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum wm_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *wm_log_level_name(enum wm_log_level level)
{
    if (level == WM_LOG_OFF) {
        return "OFF";
    }
    if (level < WM_LOG_ERROR || level >= WM_LOG_LEVEL_COUNT) {
        return "?";
    }
    return level_names[level];
}

void wm_log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
    /* With no output only errors are shown (on stderr): do not even format
     * the rest. */
    __atomic_store_n(&wm_log_threshold,
                     fd < 0 && level_wanted > WM_LOG_ERROR ? WM_LOG_ERROR : level_wanted,
                     __ATOMIC_RELAXED);
}

int wm_log_open_file(const char *path)
{
    int fd = wm_open_append(path, 0644);

    if (fd < 0) {
        return -1;
    }
    if (log_file_fd >= 0) {
        /* Swap in place: other threads may be writing to the old one. */
        dup2(fd, log_file_fd);
        close(fd);
        fd = log_file_fd;
    }
    log_file_fd = fd;
    wm_log_set_fd(fd);
    return 0;
}

uint64_t wm_log_next_id(void)
{
    return __atomic_add_fetch(&next_conn_id, 1, __ATOMIC_RELAXED);
}
