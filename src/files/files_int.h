/*
 * files/files_int.h - the file server's compiled settings, cache entries
 * and per-request state, shared by the files of src/files only.
 */
#ifndef WM_FILES_FILES_INT_H
#define WM_FILES_FILES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "files/files.h"
#include "http/fwd.h"

struct evbuffer;
struct event;
struct evbuffer_file_segment;

/* Content codings we know (precompressed siblings, on-the-fly gzip). */
enum files_coding { FILES_IDENTITY = 0, FILES_GZIP, FILES_BR, FILES_ZSTD, FILES_CODING_COUNT };

struct files_mime {
    char *ext;   /* without the dot, lower case */
    char *type;  /* with "; charset=..." for text types */
};

/* The compiled file_server (read-only after wm_files_new). */
struct wm_files {
    uint64_t gen;           /* unique per compiled server: part of cache keys */
    int rootfd;             /* O_PATH directory */
    char *root;             /* as resolved, for messages */
    char *prefix;           /* URL prefix cut before the root */
    char **hide;
    size_t nhide;
    char **index;
    size_t nindex;
    bool browse;
    bool compress;          /* on-the-fly gzip */
    bool cors;
    bool follow;            /* follow_symlinks */
    enum files_coding pre[FILES_CODING_COUNT]; /* precompressed codings, in order */
    size_t npre;
    char *cache_control;    /* "Cache-Control: ...\r\n" or NULL */
    char *charset;
    char *path404;
    int status404;
    char *robots;
    char *default_mime;
    struct files_mime *ext; /* ext_mimetype, checked before the built-in table */
    size_t next;
    struct wm_rate rate;    /* amount 0: no limit */
    size_t read_buf;
};

/* An open file or directory of one worker's cache (refcounted: the cache
 * slot holds one reference, each request using it another). */
struct files_entry {
    int refs;
    uint64_t gen;
    char *key;              /* path below the root */
    int fd;                 /* O_RDONLY (directories too); -1 for a missing path */
    int err;                /* a missing path: ENOENT or ENOTDIR (cached too) */
    struct stat st;
    uint64_t checked_ms;    /* opened (revalidated after WM_FILES_CACHE_TTL_MS) */
    unsigned char *data;    /* regular files <= WM_FILES_SMALL: their bytes */
    unsigned char *gz;      /* and gzip of them, made on first need */
    size_t gzlen;
    char etag[64];          /* "size-mtime-inode" in hex, quoted */
    int64_t mtime;          /* Last-Modified: st_mtim, or the open time when that is
                             * later (RFC 9110 8.8.2.1: never after Date) */
    char lastmod[40];
};

/* One answer (struct wm_files_req in files.h). */
struct wm_files_req {
    const struct wm_files *fs;
    struct wm_hfwd *f;
    struct evbuffer *hdrs;  /* extra header lines (t->local_extra) */
    struct evbuffer *body;  /* a body built in memory */
    struct files_entry *ent;
    struct wm_hfwd_stream stream;
    /* the body plan */
    struct wm_files_range ranges[WM_FILES_MAX_RANGES];
    int nranges;
    int cur;                /* range being sent */
    uint64_t pos;           /* next byte of it */
    bool in_part;           /* the part head of `cur` is out */
    bool multipart;
    char boundary[40];
    const char *ctype;
    bool plain;             /* sendfile allowed */
    struct evbuffer_file_segment *seg;
    void *z;                /* z_stream of on-the-fly gzip, or NULL */
    bool z_end;
    /* rate limit */
    uint64_t start_ms;
    uint64_t sent;
    struct event *timer;
    char ctype_buf[160];
    char mp_ctype[96];      /* multipart/byteranges; boundary=... */
    char *lists[4];         /* list fields sent on several lines, joined (owned) */
    int nlists;
};

/* fparse.c */
/* Does an If-Match / If-None-Match list name etag ("*" matches)? weak_ok:
 * weak comparison (If-None-Match). */
bool files_etag_match(const char *v, size_t n, const char *etag, bool weak_ok);

/* fmime.c: the Content-Type for a file name (ext_mimetype first). Returns
 * a static or fs-owned string, or the text type with the charset written
 * into buf. */
const char *files_mime(const struct wm_files *fs, const char *name, char *buf, size_t cap);
bool files_compressible(const char *ctype);

/* fcache.c: open rel (below fs's root) through this worker's cache. 0
 * with *e (a reference: files_entry_put() it), or an errno: ENOENT,
 * ENOTDIR, EACCES, EXDEV (a symlink leaves the root), ELOOP, EMFILE, ... */
int files_open(const struct wm_files *fs, const char *rel, struct files_entry **e);
void files_entry_put(struct files_entry *e);
/* The status of what rel names once resolved as a request for it would be
 * (symlinks followed, below the root unless follow_symlinks): 0, or -1
 * with errno (EXDEV: it leaves the root; ENOENT: a dangling link). */
int files_stat_beneath(const struct wm_files *fs, const char *rel, struct stat *st);
/* The gzip of a small cached file (made once). NULL when it cannot be. */
const unsigned char *files_entry_gzip(struct files_entry *e, size_t *len);

/* fbody.c: plan and produce a streamed body from q->ent and q->ranges. */
unsigned long long files_body_plan(struct wm_files_req *q, bool gzip);
/* The ranges of a small file as a multipart body in memory (q->body). */
void files_multipart_mem(struct wm_files_req *q);
void files_body_free(struct wm_files_req *q);

/* fbrowse.c: the listing of directory e (rel its path below the root,
 * url its URL path) into q->body as HTML or JSON. 0, or an HTTP status. */
int files_browse(struct wm_files_req *q, struct files_entry *e, const char *rel,
                 const char *url, size_t ulen, bool json);
/* s[0..n) %-encoded into out: unreserved bytes (and '/' with keep_slash)
 * as they are. */
void files_url_encode(struct evbuffer *out, const char *s, size_t n, bool keep_slash);
/* Is rel hidden (a `hide` entry is a substring of it)? */
bool files_hidden(const struct wm_files *fs, const char *rel);
/* Can a request name this directory entry? (A name with a control byte, a
 * backslash or bytes that are not UTF-8 is refused by the path check, so a
 * listing leaves it out.) */
bool files_name_fetchable(const char *name);

#endif
