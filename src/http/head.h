/*
 * http/head.h - one HTTP/1 message head (request line or status line plus
 * header fields), stored compactly in one growable buffer with a hard limit.
 */
#ifndef WM_HTTP_HEAD_H
#define WM_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/hdr.h"

struct evbuffer;
struct wm_http_head;

struct wm_http_field {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
    enum wm_hdr id; /* the name's id (WM_HDR_OTHER: compare the name) */
};

/* limit: maximum bytes of the head (line + fields); fields: maximum count. */
struct wm_http_head *wm_http_head_new(size_t limit, size_t max_fields);
void wm_http_head_free(struct wm_http_head *h);
/* Forget the content, keep the limits; releases the storage (a head holds
 * memory only while a message is being read or used). */
void wm_http_head_reset(struct wm_http_head *h);
/* Forget the content, keep the storage (up to a few KiB) for the next
 * head: for heads that are used again at once. */
void wm_http_head_clear(struct wm_http_head *h);

/* Builders used by the parser. Each returns 0, or -1 when a limit is hit.
 * Pieces of one element may arrive in several calls (split reads). */
enum wm_http_part {
    WM_HTTP_PART_METHOD,
    WM_HTTP_PART_URL,
    WM_HTTP_PART_STATUS,
    WM_HTTP_PART_NAME,
    WM_HTTP_PART_VALUE,
};
int wm_http_head_append(struct wm_http_head *h, enum wm_http_part part, const char *p,
                        size_t n);
/* The element of `part` is complete (header name or value). */
int wm_http_head_end_part(struct wm_http_head *h, enum wm_http_part part);
/* A whole field at once (the pieces and ends above in one call), for
 * heads built from other framings. 0, or -1 when a limit is hit. */
int wm_http_head_add_field(struct wm_http_head *h, const char *name, size_t nlen,
                           const char *value, size_t vlen);
/* The same when the caller has the name's id already: id must be
 * wm_hdr_id(name, nlen). */
int wm_http_head_add_named(struct wm_http_head *h, enum wm_hdr id, const char *name, size_t nlen,
                           const char *value, size_t vlen);
void wm_http_head_set_version(struct wm_http_head *h, int major, int minor);
void wm_http_head_set_status(struct wm_http_head *h, int status);

/* Accessors; returned pointers stay valid until reset/free. */
const char *wm_http_head_method(const struct wm_http_head *h, size_t *len);
const char *wm_http_head_url(const struct wm_http_head *h, size_t *len);
const char *wm_http_head_reason(const struct wm_http_head *h, size_t *len);
int wm_http_head_status(const struct wm_http_head *h);
int wm_http_head_major(const struct wm_http_head *h);
int wm_http_head_minor(const struct wm_http_head *h);
size_t wm_http_head_nfields(const struct wm_http_head *h);
/* Field i (0-based, in arrival order). Value has surrounding spaces trimmed. */
void wm_http_head_field(const struct wm_http_head *h, size_t i, struct wm_http_field *f);
/* First field whose name equals name (case-insensitive); NULL if none. */
const char *wm_http_head_get(const struct wm_http_head *h, const char *name, size_t *vlen);
/* First field with this id (not WM_HDR_OTHER); NULL if none. */
const char *wm_http_head_get_id(const struct wm_http_head *h, enum wm_hdr id, size_t *vlen);
/* Bytes of storage used (for limits and tests). */
size_t wm_http_head_size(const struct wm_http_head *h);

/* Is field name a hop-by-hop header for this message: one of the fixed set
 * (Connection, Proxy-Connection, Keep-Alive, Proxy-Authorization, TE,
 * Trailer, Upgrade) or named by a Connection header of h? */
bool wm_http_head_is_hop(const struct wm_http_head *h, const char *name, size_t nlen);
/* The same for a field of h (its id spares comparing the name). */
bool wm_http_head_field_is_hop(const struct wm_http_head *h, const struct wm_http_field *f);

#endif
