/*
 * files/fserve.c - answering one request for a static file: method,
 * path below the root, hidden entries, directories (301 to the slash
 * form, index files, listings), representation (precompressed sibling,
 * gzip on the fly or identity), conditionals (RFC 9110 13.2.2 order),
 * ranges, then the body from memory (small files) or streamed (fbody.c).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "files/files_int.h"
#include "http/util.h"
#include "http/head.h"
#include "net/conn.h"

#define MAX_REL 4096

/* ---- small helpers ---- */

static const char *hdr(struct wm_http_head *req, const char *name, size_t *n)
{
    return wm_http_head_get(req, name, n);
}

/* A list field (If-Match, If-None-Match, Accept-Encoding, Accept): its
 * lines joined by ", " (RFC 9110 5.3: the same as one line), kept in q
 * until the answer is freed; NULL when absent. */
static const char *list_hdr(struct wm_files_req *q, struct wm_http_head *req, const char *name,
                            size_t *n)
{
    const char *first = hdr(req, name, n);
    size_t nl = strlen(name);
    size_t total = 0;
    size_t count = 0;
    struct wm_http_field f;
    char *j;

    if (first == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < wm_http_head_nfields(req); i++) {
        wm_http_head_field(req, i, &f);
        if (f.nlen == nl && strncasecmp(f.name, name, nl) == 0) {
            total += f.vlen + 2;
            count++;
        }
    }
    if (count < 2 || q->nlists == (int)(sizeof(q->lists) / sizeof(q->lists[0])) ||
        (j = malloc(total)) == NULL) {
        return first; /* out of room: the first line, as before */
    }
    total = 0;
    for (size_t i = 0; i < wm_http_head_nfields(req); i++) {
        wm_http_head_field(req, i, &f);
        if (f.nlen == nl && strncasecmp(f.name, name, nl) == 0) {
            if (total > 0) {
                memcpy(j + total, ", ", 2);
                total += 2;
            }
            memcpy(j + total, f.value, f.vlen);
            total += f.vlen;
        }
    }
    q->lists[q->nlists++] = j;
    *n = total;
    return j;
}

static int answer(struct wm_files_req *q, struct wm_hfwd_target *t, int status, const char *ctype,
                  const void *body, size_t len)
{
    evbuffer_add(q->hdrs, "", 1); /* NUL: local_extra is a C string */
    t->local_status = status;
    t->local_ctype = ctype;
    t->local_extra = (const char *)evbuffer_pullup(q->hdrs, -1);
    t->local_body = body;
    t->local_len = len;
    return t->local_extra != NULL ? WM_HFWD_LOCAL : 500;
}

static int text_answer(struct wm_files_req *q, struct wm_hfwd_target *t, int status,
                       const char *text)
{
    evbuffer_add_printf(q->body, "%s\n", text);
    return answer(q, t, status, "text/plain; charset=utf-8", evbuffer_pullup(q->body, -1),
                  evbuffer_get_length(q->body));
}

static bool is_get_or_head(struct wm_http_head *req, bool *head)
{
    size_t n;
    const char *m = wm_http_head_method(req, &n);

    *head = n == 4 && memcmp(m, "HEAD", 4) == 0;
    return *head || (n == 3 && memcmp(m, "GET", 3) == 0);
}

/* ---- conditionals ---- */

/* 0: go on; 304 or 412. */
static int conditionals(struct wm_files_req *q, struct wm_http_head *req, const char *etag,
                        int64_t mtime)
{
    size_t n;
    const char *v;

    if ((v = list_hdr(q, req, "if-match", &n)) != NULL) {
        if (!files_etag_match(v, n, etag, false)) {
            return 412;
        }
    } else if ((v = hdr(req, "if-unmodified-since", &n)) != NULL) {
        int64_t d = wm_files_http_date(v, n);
        if (d >= 0 && mtime > d) {
            return 412;
        }
    }
    if ((v = list_hdr(q, req, "if-none-match", &n)) != NULL) {
        return files_etag_match(v, n, etag, true) ? 304 : 0;
    }
    if ((v = hdr(req, "if-modified-since", &n)) != NULL) {
        /* a date later than our clock is not valid and is ignored (RFC
         * 9110 13.1.3): it would keep a cache on a stale copy */
        int64_t d = wm_files_http_date(v, n);
        if (d >= 0 && mtime <= d && d <= (int64_t)time(NULL)) {
            return 304;
        }
    }
    return 0;
}

/* Does If-Range (absent: yes) allow the Range? A strong ETag or the exact
 * Last-Modified date. */
static bool if_range_ok(struct wm_http_head *req, const struct files_entry *e)
{
    size_t n;
    const char *v = hdr(req, "if-range", &n);

    if (v == NULL) {
        return true;
    }
    if (n > 0 && (v[0] == '"' || v[0] == 'W')) {
        return n == strlen(e->etag) && memcmp(v, e->etag, n) == 0;
    }
    return wm_files_http_date(v, n) == e->mtime;
}

/* ---- representation ---- */

static const char *const coding_names[] = {"identity", "gzip", "br", "zstd"};
static const char *const coding_exts[] = {"", ".gz", ".br", ".zst"};

/* The precompressed sibling the client prefers, or NULL. */
static struct files_entry *sibling(struct wm_files_req *q, const char *rel, const char *ae,
                                   size_t aelen, enum files_coding *which)
{
    const struct wm_files *fs = q->fs;
    int best = 0;
    /* identity counts only when the client ranks it (RFC 9110 12.5.3) */
    int qid = memmem(ae, aelen, "identity", 8) != NULL ? wm_files_accept_q(ae, aelen, "identity")
                                                      : 0;
    struct files_entry *pick = NULL;
    char path[MAX_REL + 8];

    for (size_t i = 0; i < fs->npre; i++) {
        int qc = wm_files_accept_q(ae, aelen, coding_names[fs->pre[i]]);
        struct files_entry *s;
        if (qc <= best || qc < qid) {
            continue;
        }
        snprintf(path, sizeof(path), "%s%s", rel, coding_exts[fs->pre[i]]);
        if (files_open(fs, path, &s) != 0) {
            continue;
        }
        if (!S_ISREG(s->st.st_mode)) {
            files_entry_put(s);
            continue;
        }
        files_entry_put(pick);
        pick = s;
        best = qc;
        *which = fs->pre[i];
    }
    return pick;
}

/* ---- a regular file ---- */

static void common_headers(struct wm_files_req *q, const struct files_entry *e, const char *etag,
                           bool vary, enum files_coding enc)
{
    const struct wm_files *fs = q->fs;

    evbuffer_add_printf(q->hdrs, "Last-Modified: %s\r\nETag: %s\r\n", e->lastmod, etag);
    if (enc == FILES_IDENTITY) {
        evbuffer_add(q->hdrs, "Accept-Ranges: bytes\r\n", 22);
    } else {
        evbuffer_add_printf(q->hdrs, "Content-Encoding: %s\r\n", coding_names[enc]);
    }
    if (vary) {
        evbuffer_add(q->hdrs, "Vary: Accept-Encoding\r\n", 23);
    }
    if (fs->cache_control != NULL) {
        evbuffer_add(q->hdrs, fs->cache_control, strlen(fs->cache_control));
    }
    if (fs->cors) {
        evbuffer_add(q->hdrs, "Access-Control-Allow-Origin: *\r\n", 32);
    }
}

/* The body of representation e (identity, ranges already in q). */
static int body_of(struct wm_files_req *q, struct wm_hfwd_target *t, int status,
                   const char *ctype, bool head)
{
    struct files_entry *e = q->ent;

    if (q->multipart && e->data != NULL) {
        files_multipart_mem(q);
        return answer(q, t, status, ctype, evbuffer_pullup(q->body, -1),
                      evbuffer_get_length(q->body));
    }
    if (e->data != NULL || head) {
        uint64_t first = q->nranges > 0 ? q->ranges[0].first : 0;
        uint64_t len = q->nranges > 0 ? q->ranges[0].last - first + 1 : (uint64_t)e->st.st_size;
        if (head && (q->multipart || e->data == NULL)) {
            len = files_body_plan(q, false);
            files_body_free(q);
            memset(&q->stream, 0, sizeof(q->stream));
        }
        return answer(q, t, status, ctype, e->data != NULL ? e->data + first : NULL, (size_t)len);
    }
    files_body_plan(q, false);
    answer(q, t, status, ctype, NULL, 0);
    t->stream = &q->stream;
    return WM_HFWD_STREAM;
}

static int serve_file(struct wm_files_req *q, struct wm_hfwd_target *t, struct wm_http_head *req,
                      struct files_entry *e, const char *rel, int status, bool head)
{
    const struct wm_files *fs = q->fs;
    const char *ctype = files_mime(fs, rel, q->ctype_buf, sizeof(q->ctype_buf));
    size_t aelen = 0;
    size_t rlen = 0;
    const char *ae = list_hdr(q, req, "accept-encoding", &aelen);
    const char *range = status == 200 && !head ? hdr(req, "range", &rlen) : NULL;
    bool use_range = range != NULL && if_range_ok(req, e);
    bool can_gzip = fs->compress && files_compressible(ctype);
    bool vary = fs->npre > 0 || can_gzip;
    enum files_coding enc = FILES_IDENTITY;
    struct files_entry *rep = e;
    char etag[80];
    int r;

    if (!use_range && ae != NULL) {
        struct files_entry *s = sibling(q, rel, ae, aelen, &enc);
        if (s != NULL) {
            rep = s;
        } else if (can_gzip && e->st.st_size >= WM_FILES_GZIP_MIN &&
                   wm_files_accept_q(ae, aelen, "gzip") > 0 &&
                   (memmem(ae, aelen, "identity", 8) == NULL ||
                    wm_files_accept_q(ae, aelen, "gzip") >= wm_files_accept_q(ae, aelen,
                                                                              "identity"))) {
            enc = FILES_GZIP;
        }
    }
    if (rep != e) {
        q->ent = rep; /* the sibling's reference moves to q */
        files_entry_put(e);
    }
    if (enc != FILES_IDENTITY && rep == e) {
        /* on the fly: a tag of its own, so caches never mix the two */
        snprintf(etag, sizeof(etag), "%.*s-gz\"", (int)strlen(e->etag) - 1, e->etag);
    } else {
        snprintf(etag, sizeof(etag), "%s", rep->etag);
    }
    if (status == 200 && (r = conditionals(q, req, etag, rep->mtime)) != 0) {
        if (r == 304) {
            common_headers(q, rep, etag, vary, FILES_IDENTITY);
            return answer(q, t, 304, NULL, NULL, 0);
        }
        return text_answer(q, t, 412, "precondition failed");
    }
    common_headers(q, rep, etag, vary, enc);
    if (enc != FILES_IDENTITY && rep == e) {
        size_t zl;
        const unsigned char *z = files_entry_gzip(e, &zl);
        if (z != NULL) {
            return answer(q, t, status, ctype, z, zl);
        }
        files_body_plan(q, true);
        answer(q, t, status, ctype, NULL, 0);
        t->stream = &q->stream;
        return WM_HFWD_STREAM;
    }
    uint64_t size = (uint64_t)rep->st.st_size;
    q->nranges = use_range ? wm_files_range_parse(range, rlen, size, q->ranges,
                                                  WM_FILES_MAX_RANGES)
                           : 0;
    if (q->nranges == WM_FILES_RANGE_UNSATISFIABLE) {
        evbuffer_add_printf(q->hdrs, "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
        q->nranges = 0;
        return text_answer(q, t, 416, "range not satisfiable");
    }
    if (q->nranges == 1) {
        evbuffer_add_printf(q->hdrs, "Content-Range: bytes %llu-%llu/%llu\r\n",
                            (unsigned long long)q->ranges[0].first,
                            (unsigned long long)q->ranges[0].last, (unsigned long long)size);
        status = 206;
    } else if (q->nranges > 1) {
        snprintf(q->boundary, sizeof(q->boundary), "wmproxy%016llx",
                 (unsigned long long)wm_random_u64());
        q->multipart = true;
        q->ctype = ctype;
        snprintf(q->mp_ctype, sizeof(q->mp_ctype), "multipart/byteranges; boundary=%s",
                 q->boundary);
        ctype = q->mp_ctype;
        status = 206;
    } else if (size > 0) {
        q->nranges = 1;
        q->ranges[0] = (struct wm_files_range){0, size - 1};
        return body_of(q, t, status, ctype, head);
    }
    if (size == 0) {
        return answer(q, t, status, ctype, "", 0);
    }
    return body_of(q, t, status, ctype, head);
}

/* ---- not found, directories ---- */

static int not_found(struct wm_files_req *q, struct wm_hfwd_target *t, struct wm_http_head *req,
                     bool head)
{
    const struct wm_files *fs = q->fs;
    char rel[MAX_REL];
    bool dir;
    struct files_entry *e;

    if (fs->path404 != NULL &&
        wm_files_path_clean(fs->path404, strlen(fs->path404), "", rel, sizeof(rel), &dir) == 0 &&
        files_open(fs, rel, &e) == 0) {
        if (S_ISREG(e->st.st_mode)) {
            q->ent = e;
            return serve_file(q, t, req, e, rel, fs->status404, head);
        }
        files_entry_put(e);
    }
    return text_answer(q, t, fs->status404 >= 400 ? fs->status404 : 404, "not found");
}

static int open_error(struct wm_files_req *q, struct wm_hfwd_target *t, struct wm_http_head *req,
                      const char *rel, int err, bool head)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return not_found(q, t, req, head);
    case EACCES:
    case EPERM:
        return text_answer(q, t, 403, "forbidden");
    case EXDEV:
    case ELOOP:
        return text_answer(q, t, 403, "forbidden: the path leaves the root");
    default:
        /* ours (out of descriptors, an I/O error): the operator must see why */
        wm_log(WM_LOG_WARN, wm_hfwd_conn(q->f)->id, "files: cannot open /%s: %s", rel,
               strerror(err));
        return text_answer(q, t, 500, "cannot open the file");
    }
}

/* A directory asked for without its slash: 301 to the slash form. The
 * client's own target is reused (still %-encoded); a leading "//" would
 * be another host. A try_paths candidate (rewritten) is named instead,
 * %-encoded, with the request's query: the client's own path plus a slash
 * would come back to the same candidate, a slash longer each time. */
static int redirect_slash(struct wm_files_req *q, struct wm_hfwd_target *t,
                          struct wm_http_head *req, const char *path, size_t plen,
                          bool rewritten)
{
    size_t n;
    const char *url = wm_http_head_url(req, &n);
    const char *qm = memchr(url, '?', n);
    size_t pl = qm != NULL ? (size_t)(qm - url) : n;

    if (rewritten) {
        while (plen > 0 && path[0] == '/') { /* one slash in front, as below */
            path++;
            plen--;
        }
        evbuffer_add(q->hdrs, "Location: /", 11);
        files_url_encode(q->hdrs, path, plen, true);
        evbuffer_add_printf(q->hdrs, "/%.*s\r\n", (int)(n - pl), url + pl);
        return text_answer(q, t, 301, "moved permanently");
    }
    while (pl > 1 && url[0] == '/' && url[1] == '/') {
        url++;
        pl--;
        n--;
    }
    evbuffer_add_printf(q->hdrs, "Location: %.*s/%.*s\r\n", (int)pl, url, (int)(n - pl),
                        url + pl);
    return text_answer(q, t, 301, "moved permanently");
}

static int serve_dir(struct wm_files_req *q, struct wm_hfwd_target *t, struct wm_http_head *req,
                     struct files_entry *d, const char *rel, const char *path, size_t plen,
                     bool head)
{
    const struct wm_files *fs = q->fs;
    char ipath[MAX_REL + 256];
    size_t n;
    const char *accept;
    int r;

    for (size_t i = 0; i < fs->nindex; i++) {
        struct files_entry *e;
        snprintf(ipath, sizeof(ipath), "%s%s%s", rel, rel[0] ? "/" : "", fs->index[i]);
        if (files_hidden(fs, ipath) || files_open(fs, ipath, &e) != 0) {
            continue;
        }
        if (S_ISREG(e->st.st_mode)) {
            files_entry_put(d);
            q->ent = e;
            return serve_file(q, t, req, e, ipath, 200, head);
        }
        files_entry_put(e);
    }
    if (!fs->browse) {
        files_entry_put(d);
        q->ent = NULL;
        return text_answer(q, t, 403, "forbidden: directory listing is off");
    }
    accept = list_hdr(q, req, "accept", &n);
    /* named with a q-value above 0 (";q=0" is "not acceptable", RFC 9110 12.5.1) */
    bool json = accept != NULL && wm_files_accept_q(accept, n, "application/json") > 0;
    r = files_browse(q, d, rel, path, plen, json);
    if (r != 0) {
        return text_answer(q, t, r, "cannot list the directory");
    }
    evbuffer_add(q->hdrs, "Cache-Control: no-cache\r\n", 25);
    if (fs->cors) {
        evbuffer_add(q->hdrs, "Access-Control-Allow-Origin: *\r\n", 32);
    }
    return answer(q, t, 200,
                  json ? "application/json; charset=utf-8" : "text/html; charset=utf-8",
                  evbuffer_pullup(q->body, -1), evbuffer_get_length(q->body));
}

/* ---- the entry points ---- */

static int route_file(struct wm_files_req *q, struct wm_hfwd_target *t, struct wm_http_head *req,
                      const char *path, size_t plen, bool rewritten, bool head)
{
    const struct wm_files *fs = q->fs;
    char rel[MAX_REL];
    bool dir;
    struct files_entry *e;
    int err;

    if (wm_files_path_clean(path, plen, fs->prefix, rel, sizeof(rel), &dir) < 0) {
        return not_found(q, t, req, head);
    }
    if (fs->robots != NULL && strcmp(rel, "robots.txt") == 0) {
        evbuffer_add(q->body, fs->robots, strlen(fs->robots));
        return answer(q, t, 200, "text/plain; charset=utf-8", evbuffer_pullup(q->body, -1),
                      evbuffer_get_length(q->body));
    }
    if (files_hidden(fs, rel)) {
        return not_found(q, t, req, head);
    }
    if ((err = files_open(fs, rel, &e)) != 0) {
        return open_error(q, t, req, rel, err, head);
    }
    q->ent = e;
    if (S_ISDIR(e->st.st_mode)) {
        return dir ? serve_dir(q, t, req, e, rel, path, plen, head)
                   : redirect_slash(q, t, req, path, plen, rewritten);
    }
    if (!S_ISREG(e->st.st_mode)) {
        return text_answer(q, t, 403, "forbidden: not a regular file");
    }
    if (dir) {
        /* "file/" is not the file; path404 may take q->ent's place */
        files_entry_put(e);
        q->ent = NULL;
        return not_found(q, t, req, head);
    }
    return serve_file(q, t, req, e, rel, 200, head);
}

int wm_files_serve(const struct wm_files *fs, struct wm_hfwd *f, struct wm_http_head *req,
                   const char *path, size_t plen, bool rewritten, struct wm_hfwd_target *t,
                   struct wm_files_req **out, const char **detail)
{
    struct wm_files_req *q = calloc(1, sizeof(*q));
    bool head;
    int r;

    if (q == NULL || (q->hdrs = evbuffer_new()) == NULL || (q->body = evbuffer_new()) == NULL) {
        wm_files_req_free(q);
        *detail = "out of memory";
        return 500;
    }
    q->fs = fs;
    q->f = f;
    *out = q;
    snprintf(t->log, sizeof(t->log), "files");
    if (!is_get_or_head(req, &head)) {
        evbuffer_add(q->hdrs, "Allow: GET, HEAD\r\n", 18);
        return text_answer(q, t, 405, "method not allowed");
    }
    r = route_file(q, t, req, path, plen, rewritten, head);
    if (r != WM_HFWD_LOCAL && r != WM_HFWD_STREAM) {
        *detail = "out of memory";
    }
    return r;
}

bool wm_files_exists(const struct wm_files *fs, const char *path, size_t plen)
{
    char rel[MAX_REL];
    bool dir;
    struct files_entry *e;
    bool ok;

    if (wm_files_path_clean(path, plen, fs->prefix, rel, sizeof(rel), &dir) < 0 ||
        files_hidden(fs, rel) || files_open(fs, rel, &e) != 0) {
        return false;
    }
    ok = S_ISDIR(e->st.st_mode) || (S_ISREG(e->st.st_mode) && !dir);
    files_entry_put(e);
    return ok;
}

void wm_files_req_free(struct wm_files_req *q)
{
    if (q == NULL) {
        return;
    }
    files_body_free(q);
    if (q->hdrs != NULL) {
        evbuffer_free(q->hdrs);
    }
    if (q->body != NULL) {
        evbuffer_free(q->body);
    }
    files_entry_put(q->ent);
    for (int i = 0; i < q->nlists; i++) {
        free(q->lists[i]);
    }
    free(q);
}
