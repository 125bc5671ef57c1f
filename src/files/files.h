/*
 * files/files.h - static files: the `file_server` handler of a reverse
 * proxy location (and of `wmproxy file-server`).
 *
 * A struct wm_files is compiled once from a file_server table (on the main
 * thread, with the reverse proxy's settings) and is read-only afterwards;
 * any worker may serve with it. Each request gets a struct wm_files_req
 * (the state of one answer: its head, and the producer of a streamed
 * body), freed by the caller with wm_files_req_free() when the HTTP engine
 * releases the request (or earlier when it was not used).
 *
 * Safety: the request path is cleaned (wm_files_path_clean) and opened
 * below the root's directory descriptor with openat2(RESOLVE_BENEATH), so
 * no name, "..", or symlink leaves the root unless follow_symlinks is set.
 *
 * Speed: each worker keeps a small cache of open files (descriptor, stat,
 * and the bytes of files up to WM_FILES_SMALL; missing paths too)
 * revalidated after WM_FILES_CACHE_TTL_MS, like nginx's open_file_cache; bodies go with
 * sendfile(2) on plain connections, with pread() on TLS ones.
 */
#ifndef WM_FILES_FILES_H
#define WM_FILES_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/units.h"

struct wm_conf_files;
struct wm_err;
struct wm_hfwd;
struct wm_hfwd_target;
struct wm_http_head;
struct wm_files;
struct wm_files_req;

#define WM_FILES_CACHE_TTL_MS 1000   /* a cached open file is re-checked after this */
#define WM_FILES_CACHE_SLOTS 1024    /* open files cached per worker */
#define WM_FILES_CACHE_IDLE_MS 5000  /* an entry not opened again for this long is closed
                                      * (a deleted file's space, an old config's entries) */
#define WM_FILES_SMALL (32 * 1024)   /* files up to this size are cached in memory */
#define WM_FILES_READ_BUF (64 * 1024) /* default max_read_buf: bytes read per step */
#define WM_FILES_GZIP_MIN 1024       /* smaller bodies are not compressed on the fly */
#define WM_FILES_MAX_RANGES 32       /* more ranges than this: the whole file (200) */
#define WM_FILES_LIST_MAX 10000      /* entries in one directory listing */
#define WM_FILES_LIST_SCAN 100000    /* directory entries read for one listing */

/* What the location adds to its file_server table. */
struct wm_files_where {
    const char *loc_prefix;   /* the location's path prefix (default `prefix`), or NULL */
    const char *loc_root;     /* the location's (inherited) root, or NULL */
    const char *conf_dir;     /* relative roots are taken from here (NULL: the cwd) */
    struct wm_rate rate;      /* the location's rate_limit (amount 0: none) */
    uint64_t max_read_buf;    /* the location's max_read_buf (0: none) */
};

/* Compile c. NULL with err (err->key is `key` plus the bad key) when the
 * root cannot be opened or a value is wrong. */
struct wm_files *wm_files_new(const struct wm_conf_files *c, const struct wm_files_where *w,
                              const char *key, struct wm_err *err);
void wm_files_free(struct wm_files *fs); /* NULL is a no-op */

/*
 * Answer a request for `path` (already %-decoded and normalised by the
 * reverse proxy; query cut off). `rewritten`: path is a try_paths
 * candidate, not the request's own path; a directory's slash redirect then
 * names it (as nginx's internal redirect does), else the request-target as
 * sent. Fills t (local_* and maybe stream) and returns
 * WM_HFWD_LOCAL or WM_HFWD_STREAM with *out set (the caller owns it and
 * frees it with wm_files_req_free() after the engine released t), or an
 * HTTP status >= 400 with *detail (no *out).
 */
int wm_files_serve(const struct wm_files *fs, struct wm_hfwd *f, struct wm_http_head *req,
                   const char *path, size_t plen, bool rewritten, struct wm_hfwd_target *t,
                   struct wm_files_req **out, const char **detail);
void wm_files_req_free(struct wm_files_req *q); /* NULL is a no-op */

/* try_paths: would `path` be served as an existing file or directory? */
bool wm_files_exists(const struct wm_files *fs, const char *path, size_t plen);

/* Worker exit: close this worker's cached files. */
void wm_files_worker_exit(void);

/* ---- the parsers (files/fparse.c), exported for tests and fuzzing ---- */

/*
 * The part of a decoded URL path below the root: `path` without `prefix`,
 * checked segment by segment. Refused (-1): a segment "..", a NUL,
 * a backslash, a control byte, bytes that are not valid UTF-8 (overlong
 * forms included), or a result longer than cap - 1. "." and empty
 * segments are dropped. 0 with out = "a/b/c" ("" for the root itself) and
 * *dir set when the path ends in '/'. A path outside the prefix is -1.
 */
int wm_files_path_clean(const char *path, size_t n, const char *prefix, char *out, size_t cap,
                        bool *dir);

struct wm_files_range {
    uint64_t first;
    uint64_t last; /* inclusive */
};

enum {
    WM_FILES_RANGE_NONE = 0,          /* not a bytes range we serve: send the whole file */
    WM_FILES_RANGE_UNSATISFIABLE = -1, /* 416 */
};

/*
 * A Range header value against a file of `size` bytes (RFC 9110 14.1.2):
 * "bytes=0-99", "bytes=-500", "bytes=9500-", lists. Returns the number of
 * satisfiable ranges written to out (at most max, clamped to the file),
 * WM_FILES_RANGE_NONE for a malformed header, another unit, more than
 * max ranges, or ranges that together ask for more bytes than the file
 * has (they overlap), or WM_FILES_RANGE_UNSATISFIABLE.
 */
int wm_files_range_parse(const char *v, size_t n, uint64_t size, struct wm_files_range *out,
                         int max);

/* The q-value (0..1000) an Accept-Encoding value gives `coding` ("gzip"),
 * "*" counting for codings not named; 0 when absent. identity is 1000
 * unless refused. */
int wm_files_accept_q(const char *v, size_t n, const char *coding);

/* An HTTP date (IMF-fixdate, RFC 850 or asctime) to seconds since the
 * epoch; -1 when not a date. */
int64_t wm_files_http_date(const char *v, size_t n);

#endif
