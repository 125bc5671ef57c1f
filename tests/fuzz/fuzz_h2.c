/*
 * tests/fuzz/fuzz_h2.c - libFuzzer target: HTTP/2 client bytes through an
 * nghttp2 server session whose callbacks feed the HTTP/2 -> HTTP/1.1
 * translation (h2/h2.h: pseudo-headers, :authority vs Host, cookie crumbs,
 * connection-specific fields refused), as h2/h2.c does. Every head the
 * translation accepts must parse as exactly one strict HTTP/1.1 request
 * head (no smuggling: one Host at most, chunked only when announced).
 * Byte 0: bit 0 TLS scheme, bits 1-6 piece size; the client preface is
 * supplied, the rest is the client's frames.
 */
#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "h2/h2.h"
#include "http/head.h"
#include "http/parser.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct fz {
    bool tls;
    struct wm_h2_req *req[8]; /* by stream id / 2 % 8: enough for a harness */
};

static struct wm_h2_req **slot(struct fz *z, int32_t id)
{
    return &z->req[((uint32_t)id / 2) % 8];
}

static void check_head(struct evbuffer *out, bool chunked)
{
    size_t len = evbuffer_get_length(out);
    const char *p = (const char *)evbuffer_pullup(out, -1);
    struct wm_http_parser *hp = wm_http_parser_new(WM_HTTP_REQUEST, 1 << 20, 1000);
    size_t used = 0;
    size_t hosts = 0;

    if (hp == NULL) {
        return;
    }
    if (wm_http_parser_feed_head(hp, p, len, &used) != WM_HTTP_HEAD_DONE || used != len) {
        abort(); /* the translation wrote something that is not one request head */
    }
    struct wm_http_head *hd = wm_http_parser_head(hp);
    for (size_t i = 0; i < wm_http_head_nfields(hd); i++) {
        struct wm_http_field f;
        wm_http_head_field(hd, i, &f);
        hosts += wm_strieq(f.name, f.nlen, "host");
        if (wm_strieq(f.name, f.nlen, "connection") && !wm_strieq(f.value, f.vlen, "upgrade")) {
            abort();
        }
    }
    if (hosts > 1 || wm_http_parser_chunked(hp) != chunked || wm_http_head_major(hd) != 1 ||
        wm_http_head_minor(hd) != 1) {
        abort();
    }
    wm_http_parser_free(hp);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct fz *z = user;
    struct wm_h2_req **r = slot(z, f->hd.stream_id);

    (void)s;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        wm_h2_req_free(*r);
        *r = wm_h2_req_new();
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct wm_h2_req *r = *slot(user, f->hd.stream_id);

    (void)s;
    (void)flags;
    if (r != NULL && f->hd.type == NGHTTP2_HEADERS) {
        (void)wm_h2_req_add(r, name, nlen, value, vlen);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct fz *z = user;
    struct wm_h2_req **r = slot(z, f->hd.stream_id);
    struct evbuffer *out;
    bool chunked;
    bool ws;
    bool is_head;

    (void)s;
    if (f->hd.type != NGHTTP2_HEADERS || *r == NULL || (out = evbuffer_new()) == NULL) {
        return 0;
    }
    int st = wm_h2_req_head(*r, (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0, z->tls, out,
                            &chunked, &ws, &is_head);
    if (st == 0) {
        check_head(out, chunked);
    } else if (st < 400 || st > 599) {
        abort();
    }
    evbuffer_free(out);
    wm_h2_req_free(*r);
    *r = NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session *s;
    nghttp2_option *opt;
    struct fz z;

    if (size < 1) {
        return 0;
    }
    memset(&z, 0, sizeof(z));
    z.tls = data[0] & 1;
    size_t piece = (size_t)((data[0] >> 1) & 0x3f) * 64 + 1;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return 0;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_continuations(opt, 32);
    if (nghttp2_session_server_new2(&s, cb, &z, opt) != 0) {
        nghttp2_option_del(opt);
        nghttp2_session_callbacks_del(cb);
        return 0;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1);
    if (nghttp2_session_mem_recv(s, (const uint8_t *)preface, 24) == 24) {
        for (size_t off = 1; off < size;) {
            size_t n = size - off < piece ? size - off : piece;
            ssize_t r = nghttp2_session_mem_recv(s, data + off, n);
            if (r < 0) {
                break;
            }
            off += n;
            const uint8_t *o;
            while (nghttp2_session_mem_send(s, &o) > 0) {
            }
        }
    }
    for (size_t i = 0; i < 8; i++) {
        wm_h2_req_free(z.req[i]);
    }
    nghttp2_session_del(s);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return 0;
}
