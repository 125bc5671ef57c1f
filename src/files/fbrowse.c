/*
 * files/fbrowse.c - directory listings (browse = true): HTML (names
 * escaped, links %-encoded, sizes, dates; directories first, then by
 * name) or JSON when the client asks for application/json. Entries that
 * `hide` matches are left out, like the requests for them.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "files/files_int.h"
#include "http/util.h"

struct item {
    char *name;
    bool dir;
    uint64_t size;
    int64_t mtime;
};

bool files_hidden(const struct wm_files *fs, const char *rel)
{
    for (size_t i = 0; i < fs->nhide; i++) {
        if (fs->hide[i][0] != '\0' && strstr(rel, fs->hide[i]) != NULL) {
            return true;
        }
    }
    return false;
}

static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a;
    const struct item *y = b;

    if (x->dir != y->dir) {
        return x->dir ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static void html_text(struct evbuffer *out, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '<': evbuffer_add(out, "&lt;", 4); break;
        case '>': evbuffer_add(out, "&gt;", 4); break;
        case '&': evbuffer_add(out, "&amp;", 5); break;
        case '"': evbuffer_add(out, "&quot;", 6); break;
        case '\'': evbuffer_add(out, "&#39;", 5); break;
        default: evbuffer_add(out, s, 1); break;
        }
    }
}

void files_url_encode(struct evbuffer *out, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)s + n;
         p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            evbuffer_add(out, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            evbuffer_add(out, e, 3);
        }
    }
}

/* A path segment for an href. */
static void href(struct evbuffer *out, const char *s)
{
    files_url_encode(out, s, strlen(s), false);
}

/* An entry as a request for it would find it: a symlink by what it points
 * to (type, size, date), and left out (-1) when a request could not follow
 * it (it leaves the root without follow_symlinks, or dangles). */
static int entry_stat(const struct wm_files *fs, DIR *d, const char *name, const char *path,
                      struct stat *st)
{
    if (fstatat(dirfd(d), name, st, AT_SYMLINK_NOFOLLOW) < 0) {
        return -1;
    }
    return S_ISLNK(st->st_mode) ? files_stat_beneath(fs, path, st) : 0;
}

/* Sort v[0..*n) and keep the first WM_FILES_LIST_MAX; *more counts the
 * entries let go. */
static void keep_first(struct item *v, size_t *n, size_t *more)
{
    qsort(v, *n, sizeof(*v), item_cmp);
    for (size_t i = WM_FILES_LIST_MAX; i < *n; i++) {
        free(v[i].name);
        (*more)++;
    }
    if (*n > WM_FILES_LIST_MAX) {
        *n = WM_FILES_LIST_MAX;
    }
}

/* The entries of directory fd (not hidden), sorted: the first
 * WM_FILES_LIST_MAX in that order, whatever order readdir gives (at most
 * twice that many held at once), *more the others. At most
 * WM_FILES_LIST_SCAN entries are read (*cut: there were more), so a huge
 * directory costs bounded time. -1 on failure. */
static int read_items(const struct wm_files *fs, int fd, const char *rel, struct item **out,
                      size_t *n, size_t *more, bool *cut)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct item *v = NULL;
    size_t cap = 0;
    struct dirent *de;
    char path[4096];
    size_t seen = 0;

    *n = 0;
    *more = 0;
    *cut = false;
    if (d == NULL) {
        if (dfd >= 0) {
            close(dfd);
        }
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (++seen > WM_FILES_LIST_SCAN) {
            *cut = true;
            break;
        }
        if (!files_name_fetchable(de->d_name)) {
            continue; /* ".", "..", and names no request can reach */
        }
        snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        if (files_hidden(fs, path) || entry_stat(fs, d, de->d_name, path, &st) < 0) {
            continue;
        }
        if (*n == 2 * WM_FILES_LIST_MAX) {
            keep_first(v, n, more);
        }
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            struct item *nv = realloc(v, nc * sizeof(*v));
            if (nv == NULL) {
                break;
            }
            v = nv;
            cap = nc;
        }
        v[*n] = (struct item){strdup(de->d_name), S_ISDIR(st.st_mode), (uint64_t)st.st_size,
                              (int64_t)st.st_mtim.tv_sec};
        if (v[*n].name == NULL) {
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n > 0) {
        keep_first(v, n, more);
    }
    *out = v;
    return 0;
}

static void list_json(struct evbuffer *out, const struct item *v, size_t n)
{
    char date[40];

    evbuffer_add(out, "[", 1);
    for (size_t i = 0; i < n; i++) {
        wm_http_date_fmt(v[i].mtime, date, sizeof(date));
        evbuffer_add_printf(out, "%s{\"name\":", i ? "," : "");
        wm_json_string(out, v[i].name);
        evbuffer_add_printf(out, ",\"type\":\"%s\",\"size\":%llu,\"mtime\":\"%s\"}",
                            v[i].dir ? "dir" : "file", (unsigned long long)v[i].size, date);
    }
    evbuffer_add(out, "]\n", 2);
}

static void list_html(struct evbuffer *out, const struct item *v, size_t n, size_t more,
                      bool cut, const char *title, bool top)
{
    char date[40];

    evbuffer_add_printf(out, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                             "<title>Index of ");
    html_text(out, title);
    evbuffer_add_printf(out, "</title></head>\n<body>\n<h1>Index of ");
    html_text(out, title);
    evbuffer_add_printf(out, "</h1>\n<table>\n<tr><th>Name</th><th>Size</th>"
                             "<th>Modified</th></tr>\n");
    if (!top) {
        evbuffer_add_printf(out, "<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for (size_t i = 0; i < n; i++) {
        wm_http_date_fmt(v[i].mtime, date, sizeof(date));
        evbuffer_add(out, "<tr><td><a href=\"", 17);
        href(out, v[i].name);
        evbuffer_add(out, v[i].dir ? "/\">" : "\">", v[i].dir ? 3 : 2);
        html_text(out, v[i].name);
        if (v[i].dir) {
            evbuffer_add_printf(out, "/</a></td><td>-</td>");
        } else {
            evbuffer_add_printf(out, "</a></td><td>%llu</td>", (unsigned long long)v[i].size);
        }
        evbuffer_add_printf(out, "<td>%s</td></tr>\n", date);
    }
    if (cut) {
        evbuffer_add_printf(out, "<tr><td>%zu more entries not listed, and the directory holds "
                                 "more than the %d read</td><td></td><td></td></tr>\n",
                            more, WM_FILES_LIST_SCAN);
    } else if (more > 0) {
        evbuffer_add_printf(out, "<tr><td>%zu more entries not listed</td><td></td><td></td>"
                                 "</tr>\n", more);
    }
    evbuffer_add_printf(out, "</table>\n</body></html>\n");
}

int files_browse(struct wm_files_req *q, struct files_entry *e, const char *rel,
                 const char *url, size_t ulen, bool json)
{
    struct item *v = NULL;
    size_t n = 0;
    size_t more = 0;
    bool cut = false;
    char title[4096];

    if (read_items(q->fs, e->fd, rel, &v, &n, &more, &cut) < 0) {
        return errno == EACCES ? 403 : 500;
    }
    snprintf(title, sizeof(title), "%.*s", (int)ulen, url);
    if (json) {
        list_json(q->body, v, n);
    } else {
        list_html(q->body, v, n, more, cut, title, rel[0] == '\0');
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
    }
    free(v);
    return 0;
}
