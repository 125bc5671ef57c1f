#include "core/err.h"

#include <stdio.h>
#include <string.h>

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
