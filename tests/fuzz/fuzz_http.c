/*
 * tests/fuzz/fuzz_http.c - libFuzzer target: http/parser.h on arbitrary
 * bytes, requests and responses, fed in pieces the way a socket delivers
 * them, through pipelined messages, bodies (chunked, sized, until-close)
 * and EOF. Byte 0 picks the kind and the piece size; the rest is the
 * stream. Every result must stay inside what was fed.
 */
#include <stdint.h>
#include <stdlib.h>

#include "http/parser.h"

static size_t body_bytes;

static void on_body(void *arg, const char *p, size_t n)
{
    (void)arg;
    if (n > 0 && (p[0] == 0 || p[n - 1] == 0)) {
        body_bytes++; /* touch both ends: ASan checks the range */
    }
    body_bytes += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t ctl = data[0];
    enum wm_http_kind kind = (ctl & 1) ? WM_HTTP_RESPONSE : WM_HTTP_REQUEST;
    size_t piece = (size_t)((ctl >> 1) & 0x3f) + 1; /* 1..64 bytes per read */
    const char *p = (const char *)data + 1;
    size_t n = size - 1, off = 0;
    struct wm_http_parser *hp = wm_http_parser_new(kind, 1024, 32);
    bool in_body = false;
    int messages = 0;

    if (hp == NULL) {
        return 0;
    }
    wm_http_parser_set_body_cb(hp, on_body, NULL);
    if (ctl & 0x80) {
        wm_http_parser_expect_no_body(hp, true);
    }
    while (off < n && messages < 64) {
        size_t avail = n - off < piece ? n - off : piece;
        size_t used = 0;
        enum wm_http_res r = in_body ? wm_http_parser_feed_body(hp, p + off, avail, &used)
                                     : wm_http_parser_feed_head(hp, p + off, avail, &used);
        if (used > avail) {
            abort();
        }
        off += used;
        if (r == WM_HTTP_HEAD_DONE) {
            (void)wm_http_parser_keep_alive(hp);
            (void)wm_http_parser_upgrade(hp);
            (void)wm_http_parser_chunked(hp);
            (void)wm_http_parser_needs_eof(hp);
            (void)wm_http_parser_has_body(hp);
            (void)wm_http_parser_method(hp);
            in_body = true;
            if (wm_http_parser_upgrade(hp)) {
                break; /* the rest is another protocol */
            }
            /* a bodyless message is complete at once */
            size_t none = 0;
            r = wm_http_parser_feed_body(hp, p + off, 0, &none);
            if (none != 0) {
                abort();
            }
            avail = used; /* what this round offered and was taken */
        }
        if (r == WM_HTTP_MSG_DONE) {
            wm_http_parser_next(hp);
            in_body = false;
            messages++;
        } else if (r >= WM_HTTP_ERR_SYNTAX) {
            (void)wm_http_parser_error(hp);
            break;
        } else if (r == WM_HTTP_MORE && used < avail) {
            abort(); /* MORE must consume everything offered */
        }
    }
    if (off >= n && in_body) {
        (void)wm_http_parser_feed_eof(hp);
    }
    wm_http_parser_free(hp);
    return 0;
}
