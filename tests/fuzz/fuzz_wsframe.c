/*
 * tests/fuzz/fuzz_wsframe.c - libFuzzer target: the WebSocket frame codec
 * (stream/ws.h) as a bridge drives it, on arbitrary bytes. Byte 0 picks
 * the role (bit 0: we are the server) and a small message limit (bit 1).
 * Every header the decoder accepts must fit the input and obey the rules
 * it claims to check; a built header must decode back to itself; close
 * payloads and handshake keys never crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const struct wm_ws_dec *d, const struct wm_ws_frame *f, int r, size_t n)
{
    if (r < 2 || (size_t)r > n || (size_t)r != f->hdr_len || f->masked != d->server ||
        f->len >> 63) {
        abort();
    }
    if (f->op >= 0x8 && (!f->fin || f->len > WM_WS_CONTROL_MAX)) {
        abort();
    }
}

/* Build f's header again and decode it with a fresh decoder. */
static void roundtrip(const struct wm_ws_frame *f, bool server)
{
    uint8_t h[WM_WS_HDR_MAX];
    size_t n = wm_ws_header(h, f->fin, f->op, f->len, f->masked ? f->mask : NULL);
    struct wm_ws_dec d = {.server = server, .max = UINT64_MAX >> 1};
    struct wm_ws_frame g;
    uint16_t code = 0;

    if (f->op == WM_WS_OP_CONT) {
        return; /* needs an open message */
    }
    if (wm_ws_dec_header(&d, h, n, &g, &code) != (int)n || g.len != f->len || g.op != f->op ||
        g.fin != f->fin) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wm_ws_dec d;
    size_t off = 1;

    if (size == 0) {
        return 0;
    }
    memset(&d, 0, sizeof(d));
    d.server = data[0] & 1;
    d.max = (data[0] & 2) ? 300 : 0;
    while (off < size) {
        struct wm_ws_frame f;
        uint16_t code = 0;
        int r = wm_ws_dec_header(&d, data + off, size - off, &f, &code);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            if (code != WM_WS_CLOSE_PROTOCOL && code != WM_WS_CLOSE_TOO_BIG) {
                abort();
            }
            break;
        }
        check_frame(&d, &f, r, size - off);
        roundtrip(&f, d.server);
        off += (size_t)r;
        size_t take = f.len < size - off ? (size_t)f.len : size - off;
        if (f.op == WM_WS_OP_CLOSE && take == f.len) {
            uint8_t buf[WM_WS_CONTROL_MAX];
            memcpy(buf, data + off, take);
            if (f.masked) {
                wm_ws_mask(buf, take, f.mask, 0);
            }
            if (wm_ws_close_parse(buf, take, &code) == 0 && take >= 2 &&
                !wm_ws_close_code_ok(code)) {
                abort();
            }
        }
        off += take;
    }
    char acc[WM_WS_ACCEPT_LEN + 1];
    if (wm_ws_key_ok((const char *)data, size)) {
        wm_ws_accept((const char *)data, size, acc);
        if (strlen(acc) != WM_WS_ACCEPT_LEN) {
            abort();
        }
    }
    return 0;
}
