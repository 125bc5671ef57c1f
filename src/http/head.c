#include "http/head.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Elements are stored back to back in buf; spans are offsets, so the buffer
 * can grow (realloc) without invalidating them. */
struct span {
    uint32_t off;
    uint32_t len;
};

struct field {
    struct span name;
    struct span value; /* trimmed once complete */
    uint8_t id;        /* enum wm_hdr of the name, set once it is complete */
};

struct wm_http_head {
    size_t limit;
    size_t max_fields;
    char *buf;
    size_t used;
    size_t cap;
    struct span method;
    struct span url;
    struct span reason;
    int status;
    int major;
    int minor;
    struct field *fields; /* grown on demand up to max_fields; NULL when empty */
    size_t fcap;
    size_t nfields;
    size_t nconnection; /* Connection fields: they may name more hop-by-hop ones */
    bool cur_conn;      /* the field being read is a Connection field */
    bool conn_extra;    /* a Connection field names something beyond
                           close / keep-alive / upgrade */
    bool in_name;  /* a name is being built */
    bool in_value; /* a value is being built */
};

/* Storage is allocated with the first byte of a message and released by
 * reset, so a connection waiting between requests holds none (clear keeps
 * it, for heads used again at once). */
#define HEAD_INITIAL_CAP 1024
#define HEAD_INITIAL_FIELDS 16
#define HEAD_KEEP_CAP 4096 /* wm_http_head_clear() keeps storage up to that */

struct wm_http_head *wm_http_head_new(size_t limit, size_t max_fields)
{
    struct wm_http_head *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return NULL;
    }
    h->limit = limit;
    h->max_fields = max_fields;
    return h;
}

void wm_http_head_free(struct wm_http_head *h)
{
    if (h == NULL) {
        return;
    }
    free(h->buf);
    free(h->fields);
    free(h);
}

void wm_http_head_reset(struct wm_http_head *h)
{
    free(h->buf);
    h->buf = NULL;
    h->cap = 0;
    free(h->fields);
    h->fields = NULL;
    h->fcap = 0;
    wm_http_head_clear(h);
}

void wm_http_head_clear(struct wm_http_head *h)
{
    if (h->cap > HEAD_KEEP_CAP) {
        free(h->buf); /* a rare big head does not stay */
        h->buf = NULL;
        h->cap = 0;
    }
    h->used = 0;
    h->method = h->url = h->reason = (struct span){0, 0};
    h->status = h->major = h->minor = 0;
    h->nfields = 0;
    h->nconnection = 0;
    h->cur_conn = false;
    h->conn_extra = false;
    h->in_name = h->in_value = false;
}

static struct span *part_span(struct wm_http_head *h, enum wm_http_part part)
{
    switch (part) {
    case WM_HTTP_PART_METHOD:
        return &h->method;
    case WM_HTTP_PART_URL:
        return &h->url;
    case WM_HTTP_PART_STATUS:
        return &h->reason;
    case WM_HTTP_PART_NAME:
        return h->nfields < h->fcap ? &h->fields[h->nfields].name : NULL;
    case WM_HTTP_PART_VALUE:
        return h->nfields < h->fcap ? &h->fields[h->nfields].value : NULL;
    }
    return NULL;
}

/* Room for field nfields (doubling, up to max_fields). 0 or -1. */
static int grow_fields(struct wm_http_head *h)
{
    size_t ncap;
    struct field *nf;

    if (h->nfields < h->fcap) {
        return 0;
    }
    ncap = h->fcap ? h->fcap * 2 : HEAD_INITIAL_FIELDS;
    if (ncap > h->max_fields) {
        ncap = h->max_fields;
    }
    nf = realloc(h->fields, ncap * sizeof(*nf));
    if (nf == NULL) {
        return -1;
    }
    h->fields = nf;
    h->fcap = ncap;
    return 0;
}

/* Room for n more bytes (the caller checked the limit). 0 or -1. */
static int reserve(struct wm_http_head *h, size_t n)
{
    if (h->used + n > h->cap) {
        size_t ncap = h->cap ? h->cap : HEAD_INITIAL_CAP;
        while (ncap < h->used + n) {
            ncap *= 2;
        }
        if (ncap > h->limit) {
            ncap = h->limit;
        }
        char *nb = realloc(h->buf, ncap);
        if (nb == NULL) {
            return -1;
        }
        h->buf = nb;
        h->cap = ncap;
    }
    return 0;
}

int wm_http_head_append(struct wm_http_head *h, enum wm_http_part part, const char *p,
                        size_t n)
{
    struct span *s;

    if (part == WM_HTTP_PART_NAME && !h->in_name) {
        if (h->nfields >= h->max_fields || grow_fields(h) < 0) {
            return -1;
        }
        h->in_name = true;
        h->fields[h->nfields].name = (struct span){(uint32_t)h->used, 0};
        h->fields[h->nfields].value = (struct span){(uint32_t)h->used, 0};
    } else if (part == WM_HTTP_PART_VALUE && !h->in_value) {
        if (h->nfields >= h->fcap) {
            return -1; /* a value without a name */
        }
        h->in_value = true;
        h->fields[h->nfields].value = (struct span){(uint32_t)h->used, 0};
    }
    s = part_span(h, part);
    if (s == NULL || n > h->limit - h->used) {
        return -1;
    }
    if (s->len == 0) {
        s->off = (uint32_t)h->used;
    }
    if (n == 0) {
        return 0; /* an empty piece (llhttp reports some); nothing to copy */
    }
    if (reserve(h, n) < 0) {
        return -1;
    }
    /* Pieces of one element arrive in order and nothing else is appended in
     * between, so the element stays contiguous. */
    memcpy(h->buf + h->used, p, n);
    h->used += n;
    s->len += (uint32_t)n;
    return 0;
}

/* Does a Connection value name a token other than close, keep-alive and
 * upgrade (the only ones that do not name an extra hop-by-hop header, or
 * name one already in the fixed set)? */
static bool conn_names_extra(const char *v, size_t n)
{
    size_t pos = 0;
    const char *t;
    size_t tn;

    while (wm_list_next(v, n, &pos, &t, &tn)) {
        if (tn > 0 && !wm_strieq(t, tn, "close") && !wm_strieq(t, tn, "keep-alive") &&
            !wm_strieq(t, tn, "upgrade")) {
            return true;
        }
    }
    return false;
}

/* Field nfields' name is complete, its id known: whether it is Connection. */
static void name_done(struct wm_http_head *h, enum wm_hdr id)
{
    struct field *f = &h->fields[h->nfields];

    f->id = (uint8_t)id;
    h->cur_conn = f->id == WM_HDR_CONNECTION;
    if (h->cur_conn) {
        h->nconnection++;
    }
}

/* Field nfields' value is complete: trimmed, counted. */
static void value_done(struct wm_http_head *h)
{
    struct span *v = &h->fields[h->nfields].value;

    if (v->len > 0) { /* an empty value may have no storage yet */
        const char *p = h->buf + v->off;
        size_t n = v->len;
        wm_trim(&p, &n);
        v->off = (uint32_t)(p - h->buf);
        v->len = (uint32_t)n;
    }
    if (h->cur_conn && !h->conn_extra) {
        h->conn_extra = conn_names_extra(h->buf + v->off, v->len);
    }
    h->cur_conn = false;
    h->nfields++;
}

int wm_http_head_end_part(struct wm_http_head *h, enum wm_http_part part)
{
    if (part == WM_HTTP_PART_NAME) {
        if (!h->in_name) {
            return -1; /* empty name */
        }
        h->in_name = false;
        struct span n = h->fields[h->nfields].name;
        /* an empty name (refused by the parser after this) may have no storage */
        name_done(h, n.len > 0 ? wm_hdr_id(h->buf + n.off, n.len) : WM_HDR_OTHER);
        h->fields[h->nfields].value = (struct span){(uint32_t)h->used, 0};
    } else if (part == WM_HTTP_PART_VALUE) {
        /* An empty value produces no append: accept it. */
        if (!h->in_name && h->nfields < h->fcap) {
            h->in_value = false;
            value_done(h);
            return 0;
        }
        return -1;
    }
    return 0;
}

int wm_http_head_add_field(struct wm_http_head *h, const char *name, size_t nlen,
                           const char *value, size_t vlen)
{
    return wm_http_head_add_named(h, wm_hdr_id(name, nlen), name, nlen, value, vlen);
}

int wm_http_head_add_named(struct wm_http_head *h, enum wm_hdr id, const char *name, size_t nlen,
                           const char *value, size_t vlen)
{
    struct field *f;

    if (nlen == 0 || h->in_name || h->in_value || h->nfields >= h->max_fields ||
        grow_fields(h) < 0 || nlen + vlen > h->limit - h->used ||
        reserve(h, nlen + vlen) < 0) {
        return -1;
    }
    f = &h->fields[h->nfields];
    f->name = (struct span){(uint32_t)h->used, (uint32_t)nlen};
    memcpy(h->buf + h->used, name, nlen);
    h->used += nlen;
    f->value = (struct span){(uint32_t)h->used, (uint32_t)vlen};
    if (vlen > 0) {
        memcpy(h->buf + h->used, value, vlen);
        h->used += vlen;
    }
    name_done(h, id);
    value_done(h);
    return 0;
}

void wm_http_head_set_version(struct wm_http_head *h, int major, int minor)
{
    h->major = major;
    h->minor = minor;
}

void wm_http_head_set_status(struct wm_http_head *h, int status)
{
    h->status = status;
}

static const char *span_ptr(const struct wm_http_head *h, struct span s, size_t *len)
{
    if (len != NULL) {
        *len = s.len;
    }
    return h->buf != NULL ? h->buf + s.off : "";
}

const char *wm_http_head_method(const struct wm_http_head *h, size_t *len)
{
    return span_ptr(h, h->method, len);
}

const char *wm_http_head_url(const struct wm_http_head *h, size_t *len)
{
    return span_ptr(h, h->url, len);
}

const char *wm_http_head_reason(const struct wm_http_head *h, size_t *len)
{
    return span_ptr(h, h->reason, len);
}

int wm_http_head_status(const struct wm_http_head *h)
{
    return h->status;
}

int wm_http_head_major(const struct wm_http_head *h)
{
    return h->major;
}

int wm_http_head_minor(const struct wm_http_head *h)
{
    return h->minor;
}

size_t wm_http_head_nfields(const struct wm_http_head *h)
{
    return h->nfields;
}

void wm_http_head_field(const struct wm_http_head *h, size_t i, struct wm_http_field *f)
{
    f->name = span_ptr(h, h->fields[i].name, &f->nlen);
    f->value = span_ptr(h, h->fields[i].value, &f->vlen);
    f->id = (enum wm_hdr)h->fields[i].id;
}

const char *wm_http_head_get(const struct wm_http_head *h, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    enum wm_hdr id = wm_hdr_id(name, n);

    if (id != WM_HDR_OTHER) {
        return wm_http_head_get_id(h, id, vlen);
    }
    for (size_t i = 0; i < h->nfields; i++) {
        const struct field *f = &h->fields[i];
        if (f->name.len == n && wm_memieq(h->buf + f->name.off, name, n)) {
            return span_ptr(h, f->value, vlen);
        }
    }
    return NULL;
}

const char *wm_http_head_get_id(const struct wm_http_head *h, enum wm_hdr id, size_t *vlen)
{
    if (id == WM_HDR_OTHER) {
        return NULL;
    }
    for (size_t i = 0; i < h->nfields; i++) {
        if (h->fields[i].id == id) {
            return span_ptr(h, h->fields[i].value, vlen);
        }
    }
    return NULL;
}

size_t wm_http_head_size(const struct wm_http_head *h)
{
    return h->used;
}

/* Does a Connection field of h name name[0..nlen)? */
static bool named_by_connection(const struct wm_http_head *h, const char *name, size_t nlen)
{
    for (size_t i = 0; i < h->nfields; i++) {
        if (h->fields[i].id != WM_HDR_CONNECTION) {
            continue;
        }
        /* Connection: a, b -> headers a and b are hop-by-hop too. */
        const char *v = h->buf + h->fields[i].value.off;
        size_t vlen = h->fields[i].value.len;
        size_t pos = 0;
        const char *t;
        size_t tn;
        while (wm_list_next(v, vlen, &pos, &t, &tn)) {
            if (tn == nlen && tn > 0 && wm_memieq(t, name, nlen)) {
                return true;
            }
        }
    }
    return false;
}

bool wm_http_head_is_hop(const struct wm_http_head *h, const char *name, size_t nlen)
{
    return wm_hdr_is_hop(wm_hdr_id(name, nlen)) ||
           (h->conn_extra && named_by_connection(h, name, nlen));
}

bool wm_http_head_field_is_hop(const struct wm_http_head *h, const struct wm_http_field *f)
{
    return wm_hdr_is_hop(f->id) || (h->conn_extra && named_by_connection(h, f->name, f->nlen));
}
