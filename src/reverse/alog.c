/*
 * reverse/alog.c - wmproxy's access and error logs for [http]: named log
 * files (`log_names`), line formats (`log_format`) and the variables they
 * use, written after the response (so {status} and the others are real).
 *
 * Files are shared by every worker and every generation of the settings
 * (a registry keyed by path). A line goes out in one write(2) on an
 * O_APPEND descriptor, so lines from several workers never interleave;
 * wm_rev_logs_reopen() (SIGUSR1, logrotate) opens each path again and
 * dup2()s it over the old descriptor, which writers keep using.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/json.h"
#include "core/log.h"
#include "core/logq.h"
#include "core/util.h"
#include "http/head.h"
#include "net/conn.h"
#include "reverse/alog.h"
#include "reverse/rev.h"
#include "reverse/rev_int.h"

struct rv_logfile {
    int refs; /* registry lock */
    int fd;
    char path[4096];
    struct rv_logfile *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rv_logfile *reg_head;

/* Open for appending; missing parent directories are made (as wmproxy's
 * log4rs does: its sample config names logs/access.log). */
static int open_path(const char *path)
{
    int fd = wm_open_append(path, 0640);
    char dir[4096];

    if (fd >= 0 || errno != ENOENT || strlen(path) >= sizeof(dir)) {
        return fd;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    return wm_open_append(path, 0640);
}

struct rv_logfile *rv_logfile_get(const char *path, char *msg, size_t cap)
{
    struct rv_logfile *f;

    pthread_mutex_lock(&reg_lock);
    for (f = reg_head; f != NULL; f = f->next) {
        if (strcmp(f->path, path) == 0) {
            f->refs++;
            pthread_mutex_unlock(&reg_lock);
            return f;
        }
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || strlen(path) >= sizeof(f->path)) {
        snprintf(msg, cap, "%s: %s", path, f == NULL ? "out of memory" : "path too long");
        free(f);
        pthread_mutex_unlock(&reg_lock);
        return NULL;
    }
    f->fd = open_path(path);
    if (f->fd < 0) {
        snprintf(msg, cap, "cannot open %s: %s", path,
                 errno == ENXIO ? "a FIFO that no process reads" : strerror(errno));
        free(f);
        pthread_mutex_unlock(&reg_lock);
        return NULL;
    }
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->refs = 1;
    f->next = reg_head;
    reg_head = f;
    pthread_mutex_unlock(&reg_lock);
    return f;
}

void rv_logfile_put(struct rv_logfile *f)
{
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&reg_lock);
    if (--f->refs == 0) {
        for (struct rv_logfile **pp = &reg_head; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == f) {
                *pp = f->next;
                break;
            }
        }
        wm_logq_close(f->fd); /* after the lines still queued for it */
        free(f);
    }
    pthread_mutex_unlock(&reg_lock);
}

void wm_rev_logs_reopen(void)
{
    pthread_mutex_lock(&reg_lock);
    for (struct rv_logfile *f = reg_head; f != NULL; f = f->next) {
        int fd = open_path(f->path);
        if (fd < 0) {
            wm_log(WM_LOG_ERROR, 0, "access log %s: cannot reopen: %s", f->path,
                   strerror(errno));
            continue;
        }
        dup2(fd, f->fd); /* atomic for writers: the descriptor number stays */
        close(fd);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* ---- the line ---- */

/* Append a header's value, made safe for one line ('"' and controls). */
/* Set while a JSON line is made: quotes stay (JSON escapes them). */
static __thread bool json_values;

static void put_safe(struct evbuffer *out, const char *v, size_t n)
{
    if (v == NULL || n == 0) {
        evbuffer_add(out, "-", 1);
        return;
    }
    for (size_t i = 0; i < n && i < 2048; i++) {
        const unsigned char *u = (const unsigned char *)v + i;
        /* C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F) are controls too:
         * CSI drives a terminal that tails the file */
        bool c1 = u[0] == 0xC2 && i + 1 < n && u[1] >= 0x80 && u[1] <= 0x9F;
        char ch = u[0] < 0x20 || u[0] == 0x7f || c1 || (u[0] == '"' && !json_values) ? '?'
                                                                                     : v[i];
        evbuffer_add(out, &ch, 1);
        i += c1;
    }
}

static void put_header(struct evbuffer *out, struct wm_http_head *req, const char *name)
{
    size_t n = 0;
    const char *v = wm_http_head_get(req, name, &n);

    put_safe(out, v, n);
}

/* {d(%Y-%m-%d %H:%M:%S)} */
static void put_date(struct evbuffer *out, const char *fmt, size_t flen)
{
    char f[64];
    char buf[128];
    struct timeval tv;
    struct tm tm;

    snprintf(f, sizeof(f), "%.*s", (int)(flen > 0 ? flen : 0), fmt);
    if (flen == 0) {
        snprintf(f, sizeof(f), "%%Y-%%m-%%d %%H:%%M:%%S");
    }
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    if (strftime(buf, sizeof(buf), f, &tm) > 0) {
        evbuffer_add(out, buf, strlen(buf));
    }
}

static void put_url_part(struct evbuffer *out, struct wm_http_head *req, int part)
{
    size_t n;
    const char *u = wm_http_head_url(req, &n);
    const char *q = memchr(u, '?', n);

    if (part == 0) { /* url */
        put_safe(out, u, n);
    } else if (part == 1) { /* path */
        put_safe(out, u, q != NULL ? (size_t)(q - u) : n);
    } else { /* query */
        put_safe(out, q != NULL ? q + 1 : NULL, q != NULL ? n - (size_t)(q - u) - 1 : 0);
    }
}

static void put_ms(struct evbuffer *out, long long ms)
{
    if (ms < 0) {
        evbuffer_add(out, "-", 1);
    } else {
        evbuffer_add_printf(out, "%lld.%03lld", ms / 1000, ms % 1000);
    }
}

/* One variable; false when the name is unknown. */
static bool put_var(struct evbuffer *out, const char *name, size_t n, const char *arg,
                    size_t alen, const struct rv_logctx *x)
{
    struct wm_http_head *req = x->req;
    const struct wm_hfwd_log *l = x->l;
    char ip[64];

#define IS(lit) wm_strieq(name, n, lit)
    if (IS("d") || IS("date")) {
        put_date(out, arg, alen);
    } else if (IS("l") || IS("level")) {
        evbuffer_add(out, "INFO", 4);
    } else if (IS("n") || IS("t")) {
        /* the line ends by itself; the target is implied */
    } else if (IS("m")) {
        put_url_part(out, req, 0);
    } else if (IS("client_ip")) {
        evbuffer_add_printf(out, "%s", x->c->peerlen > 0
                                           ? wm_addr_format_ip((struct sockaddr *)&x->c->peer,
                                                               ip, sizeof(ip))
                                           : "-");
    } else if (IS("client_user")) {
        evbuffer_add(out, "-", 1);
    } else if (IS("url")) {
        put_url_part(out, req, 0);
    } else if (IS("path")) {
        put_url_part(out, req, 1);
    } else if (IS("query")) {
        put_url_part(out, req, 2);
    } else if (IS("method")) {
        size_t ml;
        const char *m = wm_http_head_method(req, &ml);
        put_safe(out, m, ml);
    } else if (IS("host")) {
        put_header(out, req, "host");
    } else if (IS("referer")) {
        put_header(out, req, "referer");
    } else if (IS("user_agent")) {
        put_header(out, req, "user-agent");
    } else if (IS("cookie")) {
        put_header(out, req, "cookie");
    } else if (IS("status")) {
        evbuffer_add_printf(out, "%d", l->status);
    } else if (IS("up_status")) {
        l->up_status > 0 ? evbuffer_add_printf(out, "%d", l->up_status) : evbuffer_add(out, "-", 1);
    } else if (IS("body_bytes_sent")) {
        evbuffer_add_printf(out, "%llu", l->body_out);
    } else if (IS("bytes_sent")) {
        evbuffer_add_printf(out, "%llu", l->bytes_out);
    } else if (IS("request_time")) {
        put_ms(out, (long long)l->request_ms);
    } else if (IS("up_response_time")) {
        put_ms(out, l->up_response_ms);
    } else if (IS("up_addr")) {
        put_safe(out, x->up_addr, x->up_addr != NULL ? strlen(x->up_addr) : 0);
    } else if (IS("ssl_protocol")) {
        put_safe(out, x->ssl_protocol, x->ssl_protocol != NULL ? strlen(x->ssl_protocol) : 0);
    } else if (IS("ssl_cipher")) {
        put_safe(out, x->ssl_cipher, x->ssl_cipher != NULL ? strlen(x->ssl_cipher) : 0);
    } else {
        return false;
    }
#undef IS
    return true;
}

/* log_format "json": one object per line, the variables of the text
 * line as members; "-" (no value) becomes null, counts are numbers. */
static void json_line(struct evbuffer *out, const struct rv_logctx *x)
{
    static const struct {
        const char *key, *var, *arg;
        bool number;
    } f[] = {
        {"time", "d", "%Y-%m-%dT%H:%M:%S%z", false}, {"client_ip", "client_ip", NULL, false},
        {"method", "method", NULL, false}, {"url", "url", NULL, false},
        {"host", "host", NULL, false}, {"status", "status", NULL, true},
        {"up_status", "up_status", NULL, true}, {"up_addr", "up_addr", NULL, false},
        {"body_bytes_sent", "body_bytes_sent", NULL, true},
        {"bytes_sent", "bytes_sent", NULL, true}, {"request_time", "request_time", NULL, true},
        {"up_response_time", "up_response_time", NULL, true},
        {"referer", "referer", NULL, false}, {"user_agent", "user_agent", NULL, false},
        {"ssl_protocol", "ssl_protocol", NULL, false}, {"ssl_cipher", "ssl_cipher", NULL, false},
    };
    struct evbuffer *v = evbuffer_new();

    if (v == NULL) {
        return;
    }
    evbuffer_add(out, "{", 1);
    json_values = true;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        evbuffer_drain(v, evbuffer_get_length(v));
        put_var(v, f[i].var, strlen(f[i].var), f[i].arg, f[i].arg != NULL ? strlen(f[i].arg) : 0,
                x);
        evbuffer_add(v, "", 1); /* NUL */
        const char *s = (const char *)evbuffer_pullup(v, -1);
        evbuffer_add_printf(out, "%s\"%s\":", i > 0 ? "," : "", f[i].key);
        if (s[0] == '\0' || strcmp(s, "-") == 0) {
            evbuffer_add(out, "null", 4);
        } else if (f[i].number) {
            evbuffer_add(out, s, strlen(s));
        } else {
            wm_json_string(out, s);
        }
    }
    json_values = false;
    evbuffer_add(out, "}", 1);
    evbuffer_free(v);
}

void rv_alog_write(const struct rv_alog *a, const struct rv_logctx *x)
{
    struct evbuffer *out = evbuffer_new();
    const char *p = a->json ? "" : a->format;

    if (out == NULL) {
        return;
    }
    if (a->json) {
        json_line(out, x);
    }
    while (*p != '\0') {
        const char *end = *p == '{' ? strchr(p, '}') : NULL;
        if (end == NULL) {
            evbuffer_add(out, p, 1);
            p++;
            continue;
        }
        const char *name = p + 1;
        const char *paren = memchr(name, '(', (size_t)(end - name));
        size_t n = (size_t)((paren != NULL ? paren : end) - name);
        const char *arg = paren != NULL ? paren + 1 : NULL;
        size_t alen = 0;
        if (arg != NULL) {
            const char *close = memchr(arg, ')', (size_t)(end - arg));
            alen = close != NULL ? (size_t)(close - arg) : (size_t)(end - arg);
        }
        if (!put_var(out, name, n, arg, alen, x)) {
            evbuffer_add(out, p, (size_t)(end - p + 1)); /* unknown: as written */
        }
        p = end + 1;
    }
    evbuffer_add(out, "\n", 1);
    size_t len = evbuffer_get_length(out);
    /* queued: a slow disk never blocks the worker (core/logq.h) */
    wm_logq_write(a->file->fd, evbuffer_pullup(out, -1), len);
    evbuffer_free(out);
}

struct rv_logfile *wm_alog_file_get(const char *path, char *msg, size_t cap)
{
    return rv_logfile_get(path, msg, cap);
}

void wm_alog_file_put(struct rv_logfile *f)
{
    rv_logfile_put(f);
}

void wm_alog_file_write(struct rv_logfile *f, const char *line, size_t n)
{
    /* queued: a slow disk or a stalled FIFO never blocks the worker */
    wm_logq_write(f->fd, line, n);
}
