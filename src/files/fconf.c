/*
 * files/fconf.c - compiling a file_server table into struct wm_files.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/config_http.h"
#include "core/err.h"
#include "core/util.h"
#include "files/files_int.h"

static atomic_ullong next_gen = 1;

static char *dupfmt(const char *fmt, const char *a)
{
    size_t n = strlen(fmt) + strlen(a) + 1;
    char *s = malloc(n);

    if (s != NULL) {
        snprintf(s, n, fmt, a);
    }
    return s;
}

static char **duplist(const char *const *v, size_t n, size_t *nout)
{
    char **out = calloc(n + 1, sizeof(*out));

    *nout = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((out[i] = strdup(v[i])) == NULL) {
            return out;
        }
        (*nout)++;
    }
    return out;
}

static int codings(struct wm_files *fs, const struct wm_conf_files *c, const char *key,
                   struct wm_err *err)
{
    static const char *const dflt[] = {"gzip", "br"};
    const char *const *v = c->precompressed != NULL ? c->precompressed : dflt;
    size_t n = c->precompressed != NULL ? c->nprecompressed : 2;

    for (size_t i = 0; i < n && fs->npre < FILES_CODING_COUNT; i++) {
        enum files_coding k;
        if (strcmp(v[i], "gzip") == 0 || strcmp(v[i], "gz") == 0) {
            k = FILES_GZIP;
        } else if (strcmp(v[i], "br") == 0) {
            k = FILES_BR;
        } else if (strcmp(v[i], "zstd") == 0 || strcmp(v[i], "zst") == 0) {
            k = FILES_ZSTD;
        } else {
            return wm_err_set(err, NULL, 0, 0, key,
                              "file_server.precompressed: unknown coding \"%s\" (gzip, br, zstd)",
                              v[i]);
        }
        fs->pre[fs->npre++] = k;
    }
    return 0;
}

static int open_root(struct wm_files *fs, const char *root, const char *dir, const char *key,
                     struct wm_err *err)
{
    char path[4096];

    if (root == NULL || root[0] == '\0') {
        root = ".";
    }
    if (root[0] != '/' && dir != NULL) {
        snprintf(path, sizeof(path), "%s/%s", dir, root);
    } else {
        snprintf(path, sizeof(path), "%s", root);
    }
    fs->root = realpath(path, NULL);
    fs->rootfd = fs->root != NULL ? open(fs->root, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fs->rootfd < 0) {
        return wm_err_set(err, NULL, 0, 0, key, "file_server.root: cannot open directory %s: %s",
                          path, strerror(errno));
    }
    return 0;
}

/* Values that go into response headers as they are: a CR or LF would end
 * the header and start one the configuration never named. */
static int header_values(const struct wm_conf_files *c, const char *key, struct wm_err *err)
{
    const char *const v[] = {c->default_mimetype, c->charset, c->cache_control};
    const char *const name[] = {"default_mimetype", "charset", "cache_control"};

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (v[i] != NULL && !wm_field_value_ok(v[i], strlen(v[i]))) {
            return wm_err_set(err, NULL, 0, 0, key,
                              "file_server.%s: the value has a control character (CR, LF, "
                              "NUL...)",
                              name[i]);
        }
    }
    for (size_t i = 0; i < c->next_mimetype; i++) {
        const char *t = c->ext_mimetype[i].value;
        if (!wm_field_value_ok(t, strlen(t))) {
            return wm_err_set(err, NULL, 0, 0, key,
                              "file_server.ext_mimetype.%s: the value has a control character "
                              "(CR, LF, NUL...)",
                              c->ext_mimetype[i].key);
        }
    }
    return 0;
}

static int mimes(struct wm_files *fs, const struct wm_conf_files *c, const char *key,
                 struct wm_err *err)
{
    fs->ext = calloc(c->next_mimetype + 1, sizeof(*fs->ext));
    if (fs->ext == NULL) {
        return wm_err_set(err, NULL, 0, 0, key, "out of memory");
    }
    for (size_t i = 0; i < c->next_mimetype; i++) {
        const char *e = c->ext_mimetype[i].key;
        e += *e == '.';
        fs->ext[i].ext = strdup(e);
        fs->ext[i].type = strdup(c->ext_mimetype[i].value);
        fs->next++;
        if (fs->ext[i].ext == NULL || fs->ext[i].type == NULL) {
            return wm_err_set(err, NULL, 0, 0, key, "out of memory");
        }
        for (char *p = fs->ext[i].ext; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
    }
    return 0;
}

struct wm_files *wm_files_new(const struct wm_conf_files *c, const struct wm_files_where *w,
                              const char *key, struct wm_err *err)
{
    static const char *const dflt_index[] = {"index.html", "index.htm"};
    struct wm_files *fs = calloc(1, sizeof(*fs));
    char num[32];

    if (fs == NULL) {
        wm_err_set(err, NULL, 0, 0, key, "out of memory");
        return NULL;
    }
    fs->gen = atomic_fetch_add(&next_gen, 1);
    fs->rootfd = -1;
    if (open_root(fs, c->root != NULL ? c->root : w->loc_root, w->conf_dir, key, err) < 0 ||
        codings(fs, c, key, err) < 0 || header_values(c, key, err) < 0 ||
        mimes(fs, c, key, err) < 0) {
        wm_files_free(fs);
        return NULL;
    }
    fs->prefix = strdup(c->prefix != NULL ? c->prefix : w->loc_prefix != NULL ? w->loc_prefix : "");
    fs->hide = duplist(c->hide, c->nhide, &fs->nhide);
    fs->index = c->index != NULL ? duplist(c->index, c->nindex, &fs->nindex)
                                 : duplist(dflt_index, 2, &fs->nindex);
    fs->browse = c->browse;
    fs->compress = !c->disable_compress;
    fs->cors = c->cors;
    fs->follow = c->follow_symlinks;
    if (c->cache_control != NULL) {
        fs->cache_control = dupfmt("Cache-Control: %s\r\n", c->cache_control);
    } else if (c->cache_time_ms > 0) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)(c->cache_time_ms / 1000));
        fs->cache_control = dupfmt("Cache-Control: max-age=%s\r\n", num);
    }
    fs->charset = strdup(c->charset != NULL ? c->charset : "utf-8");
    fs->path404 = c->path404 != NULL ? strdup(c->path404) : NULL;
    fs->status404 = c->status > 0 ? (int)c->status : 404;
    fs->robots = c->robots != NULL ? strdup(c->robots) : NULL;
    fs->default_mime = strdup(c->default_mimetype != NULL ? c->default_mimetype
                                                          : "application/octet-stream");
    fs->rate = c->rate_limit.amount > 0 ? c->rate_limit : w->rate;
    if (fs->rate.amount > 0 && (fs->rate.requests || fs->rate.per_ms == 0)) {
        wm_err_set(err, NULL, 0, 0, key, "rate_limit: expected bytes per time, like \"4m/s\"");
        wm_files_free(fs);
        return NULL;
    }
    fs->read_buf = (size_t)(c->max_read_buf ? c->max_read_buf
                            : w->max_read_buf ? w->max_read_buf : WM_FILES_READ_BUF);
    fs->read_buf = fs->read_buf < 4096 ? 4096 : fs->read_buf > (16u << 20) ? (16u << 20)
                                                                             : fs->read_buf;
    if (fs->prefix == NULL || fs->hide == NULL || fs->index == NULL || fs->charset == NULL ||
        fs->default_mime == NULL) {
        wm_err_set(err, NULL, 0, 0, key, "out of memory");
        wm_files_free(fs);
        return NULL;
    }
    return fs;
}

static void freelist(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

void wm_files_free(struct wm_files *fs)
{
    if (fs == NULL) {
        return;
    }
    if (fs->rootfd >= 0) {
        close(fs->rootfd);
    }
    free(fs->root);
    free(fs->prefix);
    freelist(fs->hide, fs->nhide);
    freelist(fs->index, fs->nindex);
    free(fs->cache_control);
    free(fs->charset);
    free(fs->path404);
    free(fs->robots);
    free(fs->default_mime);
    for (size_t i = 0; i < fs->next; i++) {
        free(fs->ext[i].ext);
        free(fs->ext[i].type);
    }
    free(fs->ext);
    free(fs);
}
