#include "core/err.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"

/* Rewrite control characters of s (NUL-terminated, in a buffer of cap) so
 * an error quoting bad input stays one line (wm_escape_ctl). */
static void escape_ctl(char *s, size_t cap)
{
    char tmp[WM_ERR_MSG_MAX];
    size_t n = wm_escape_ctl(tmp, cap < sizeof(tmp) ? cap : sizeof(tmp), s, strlen(s), false);

    memcpy(s, tmp, n + 1);
}

void wm_err_clear(struct wm_err *e)
{
    memset(e, 0, sizeof(*e));
}

int wm_err_set(struct wm_err *e, const char *file, int line, int col, const char *key,
               const char *fmt, ...)
{
    va_list ap;

    if (e == NULL) {
        return -1;
    }
    wm_err_clear(e);
    if (file != NULL) {
        snprintf(e->file, sizeof(e->file), "%s", file);
    }
    e->line = line;
    e->col = col;
    if (key != NULL) {
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    escape_ctl(e->file, sizeof(e->file));
    escape_ctl(e->key, sizeof(e->key));
    escape_ctl(e->msg, sizeof(e->msg));
    return -1;
}

int wm_err_add_line(struct wm_err *e, const char *fmt, ...)
{
    char line[WM_ERR_MSG_MAX];
    size_t off;
    va_list ap;

    if (e == NULL) {
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    escape_ctl(line, sizeof(line));
    off = strlen(e->msg);
    if (off > 0 && off + 1 < sizeof(e->msg)) {
        e->msg[off++] = '\n';
    }
    size_t n = strlen(line);
    if (n > sizeof(e->msg) - 1 - off) {
        n = sizeof(e->msg) - 1 - off;
    }
    memcpy(e->msg + off, line, n);
    e->msg[off + n] = '\0';
    return -1;
}

const char *wm_err_format(const struct wm_err *e, char *buf, size_t n)
{
    size_t off = 0;
    int r;

    if (n == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (e->file[0] != '\0') {
        if (e->line > 0 && e->col > 0) {
            r = snprintf(buf, n, "%s:%d:%d: ", e->file, e->line, e->col);
        } else if (e->line > 0) {
            r = snprintf(buf, n, "%s:%d: ", e->file, e->line);
        } else {
            r = snprintf(buf, n, "%s: ", e->file);
        }
        off = r < 0 ? 0 : ((size_t)r >= n ? n - 1 : (size_t)r);
    } else if (e->line > 0) {
        r = snprintf(buf, n, "line %d:%d: ", e->line, e->col);
        off = r < 0 ? 0 : ((size_t)r >= n ? n - 1 : (size_t)r);
    }
    if (e->key[0] != '\0' && off < n) {
        r = snprintf(buf + off, n - off, "%s: ", e->key);
        off += r < 0 ? 0 : ((size_t)r >= n - off ? n - off - 1 : (size_t)r);
    }
    if (off < n) {
        snprintf(buf + off, n - off, "%s", e->msg);
    }
    return buf;
}
