/*
 * files/fcache.c - each worker's open-file cache (like nginx's
 * open_file_cache): WM_FILES_CACHE_SLOTS slots by hash of (server, path),
 * each an open descriptor with its stat, its ETag and Last-Modified, and
 * the bytes of small files. An entry is used for WM_FILES_CACHE_TTL_MS,
 * then opened again, so a changed file is seen within that time (and a
 * file replaced by rename at once on the next open: its inode differs).
 *
 * Opening goes through openat2(RESOLVE_BENEATH) below the root's
 * descriptor: a path or symlink leaving the root fails with EXDEV.
 *
 * A sweep (a timer of the worker's, while the cache holds entries) closes
 * the entries not opened again for WM_FILES_CACHE_IDLE_MS: a file nobody
 * asks for any more, or deleted, is not held open, nor are the entries of
 * a configuration replaced by a reload (their generation is never asked
 * for again).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/util.h"
#include "core/worker.h"
#include "files/files_int.h"
#include "http/util.h"

static __thread struct files_entry *slots[WM_FILES_CACHE_SLOTS];
static __thread size_t nlive;         /* slots holding an entry */
static __thread struct event *sweep_ev;

void files_entry_put(struct files_entry *e)
{
    if (e == NULL || --e->refs > 0) {
        return;
    }
    if (e->fd >= 0) {
        close(e->fd);
    }
    free(e->data);
    free(e->gz);
    free(e->key);
    free(e);
}

void wm_files_worker_exit(void)
{
    for (size_t i = 0; i < WM_FILES_CACHE_SLOTS; i++) {
        files_entry_put(slots[i]);
        slots[i] = NULL;
    }
    nlive = 0;
    if (sweep_ev != NULL) {
        event_free(sweep_ev);
        sweep_ev = NULL;
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = wm_now_coarse_ms();

    (void)fd;
    (void)what;
    (void)arg;
    for (size_t i = 0; i < WM_FILES_CACHE_SLOTS && nlive > 0; i++) {
        if (slots[i] != NULL && now - slots[i]->checked_ms >= WM_FILES_CACHE_IDLE_MS) {
            files_entry_put(slots[i]); /* a request still using it keeps it until done */
            slots[i] = NULL;
            nlive--;
        }
    }
    if (nlive == 0) {
        event_del(sweep_ev); /* set again by the next entry */
    }
}

/* Slot i takes e (NULL: empties it), its old entry released. */
static void slot_set(size_t i, struct files_entry *e)
{
    struct wm_worker *w;

    if (slots[i] == NULL && e != NULL) {
        nlive++;
    } else if (slots[i] != NULL && e == NULL) {
        nlive--;
    }
    files_entry_put(slots[i]);
    slots[i] = e;
    if (nlive == 0 || (sweep_ev != NULL && event_pending(sweep_ev, EV_TIMEOUT, NULL))) {
        return;
    }
    if (sweep_ev == NULL && (w = wm_worker_self()) != NULL) {
        sweep_ev = event_new(wm_worker_base(w), -1, EV_PERSIST, sweep_cb, NULL);
    }
    if (sweep_ev != NULL) {
        struct timeval tv = {WM_FILES_CACHE_IDLE_MS / 2000, (WM_FILES_CACHE_IDLE_MS / 2 % 1000) * 1000};
        event_add(sweep_ev, &tv);
    }
}

static size_t slot_of(uint64_t gen, const char *rel)
{
    uint64_t h = 1469598103934665603ULL ^ gen;

    for (const unsigned char *p = (const unsigned char *)rel; *p != '\0'; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    return (size_t)(h % WM_FILES_CACHE_SLOTS);
}

static int open_beneath(const struct wm_files *fs, const char *rel)
{
    struct open_how how;
    int fd;

    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_NO_MAGICLINKS | (fs->follow ? 0 : RESOLVE_BENEATH);
    fd = (int)syscall(SYS_openat2, fs->rootfd, rel[0] != '\0' ? rel : ".", &how, sizeof(how));
    if (fd < 0 && errno == EAGAIN) {
        errno = EBUSY; /* RESOLVE_CACHED is not asked: should not happen */
    }
    return fd;
}

int files_stat_beneath(const struct wm_files *fs, const char *rel, struct stat *st)
{
    struct open_how how;
    int fd;

    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_MAGICLINKS | (fs->follow ? 0 : RESOLVE_BENEATH);
    fd = (int)syscall(SYS_openat2, fs->rootfd, rel[0] != '\0' ? rel : ".", &how, sizeof(how));
    if (fd < 0) {
        return -1;
    }
    int rc = fstat(fd, st);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The bytes of a small regular file; NULL when it changed while read. */
static unsigned char *read_small(int fd, size_t size)
{
    unsigned char *d = malloc(size > 0 ? size : 1);
    size_t got = 0;

    while (d != NULL && got < size) {
        ssize_t r = pread(fd, d + got, size - got, (off_t)got);
        if (r <= 0) {
            free(d);
            return NULL;
        }
        got += (size_t)r;
    }
    return d;
}

static int entry_open(const struct wm_files *fs, const char *rel, struct files_entry **out)
{
    struct files_entry *e;
    int fd = open_beneath(fs, rel);

    if (fd < 0) {
        return errno;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->key = strdup(rel)) == NULL || fstat(fd, &e->st) < 0) {
        int err = e == NULL || e->key == NULL ? ENOMEM : errno;
        if (e != NULL) {
            free(e->key);
        }
        free(e);
        close(fd);
        return err;
    }
    e->refs = 1;
    e->fd = fd;
    e->gen = fs->gen;
    e->checked_ms = wm_now_coarse_ms();
    if (S_ISREG(e->st.st_mode) && e->st.st_size <= WM_FILES_SMALL) {
        e->data = read_small(fd, (size_t)e->st.st_size);
    }
    snprintf(e->etag, sizeof(e->etag), "\"%llx-%llx-%llx\"", (unsigned long long)e->st.st_size,
             (unsigned long long)e->st.st_mtim.tv_sec * 1000000000ULL +
                 (unsigned long long)e->st.st_mtim.tv_nsec,
             (unsigned long long)e->st.st_ino);
    /* a file dated in the future (clock skew, an archive) is said modified
     * now: a Last-Modified after Date would never be answered 304 */
    e->mtime = (int64_t)e->st.st_mtim.tv_sec;
    if (e->mtime > (int64_t)time(NULL)) {
        e->mtime = (int64_t)time(NULL);
    }
    wm_http_date_fmt(e->mtime, e->lastmod, sizeof(e->lastmod));
    *out = e;
    return 0;
}

/* A path found missing is remembered for the TTL too: a browser's
 * Accept-Encoding would otherwise cost an openat2() per request and coding
 * for siblings that do not exist. */
static void remember_missing(const struct wm_files *fs, size_t i, const char *rel, int err)
{
    struct files_entry *e = calloc(1, sizeof(*e));

    if (e == NULL || (e->key = strdup(rel)) == NULL) {
        free(e);
        return;
    }
    e->refs = 1;
    e->fd = -1;
    e->err = err;
    e->gen = fs->gen;
    e->checked_ms = wm_now_coarse_ms();
    slot_set(i, e);
}

int files_open(const struct wm_files *fs, const char *rel, struct files_entry **out)
{
    size_t i = slot_of(fs->gen, rel);
    struct files_entry *e = slots[i];
    int err;

    if (e != NULL && e->gen == fs->gen && strcmp(e->key, rel) == 0 &&
        wm_now_coarse_ms() - e->checked_ms < WM_FILES_CACHE_TTL_MS) {
        if (e->err != 0) {
            return e->err;
        }
        e->refs++;
        *out = e;
        return 0;
    }
    err = entry_open(fs, rel, out);
    if (err == ENOENT || err == ENOTDIR) {
        remember_missing(fs, i, rel, err);
    }
    if (err != 0) {
        return err;
    }
    slot_set(i, *out);
    (*out)->refs++;
    return 0;
}

const unsigned char *files_entry_gzip(struct files_entry *e, size_t *len)
{
    z_stream z;
    size_t cap;

    if (e->gz != NULL) {
        *len = e->gzlen;
        return e->gz;
    }
    if (e->data == NULL) {
        return NULL;
    }
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return NULL;
    }
    cap = deflateBound(&z, (uLong)e->st.st_size);
    e->gz = malloc(cap);
    if (e->gz == NULL) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = e->data;
    z.avail_in = (uInt)e->st.st_size;
    z.next_out = e->gz;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&z);
        free(e->gz);
        e->gz = NULL;
        return NULL;
    }
    e->gzlen = cap - z.avail_out;
    deflateEnd(&z);
    *len = e->gzlen;
    return e->gz;
}
