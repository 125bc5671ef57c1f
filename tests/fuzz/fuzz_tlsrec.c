/*
 * tests/fuzz/fuzz_tlsrec.c - libFuzzer target: the carrier record layer
 * (net/tlsrec.h) as a property. The input picks the records per key, the
 * record sizes, how sender and receiver buffers are cut into chains and at
 * most one byte of the wire to change. Then:
 *  - untouched, every byte comes back in order and the close record ends
 *    it;
 *  - touched, the reader stops with BAD (or waits for more, when a length
 *    grew) at or before the touched record, and everything it released
 *    before is the original data;
 *  - the raw input, taken as wire bytes, never crashes the reader.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "net/tlsrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char secret[WM_TLSREC_SECRET] = "fuzz-secret-fuzz-secret-fuzz-sec";

struct input {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct input *in, unsigned bytes)
{
    unsigned v = 0;
    for (unsigned i = 0; i < bytes && in->n > 0; i++) {
        v = v << 8 | *in->p++;
        in->n--;
    }
    return v;
}

/* Append n bytes to b as chains of `cut` bytes. */
static void add_cut(struct evbuffer *b, const uint8_t *p, size_t n, size_t cut)
{
    for (size_t at = 0; at < n; at += cut) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, p + at, n - at < cut ? n - at : cut);
        evbuffer_add_buffer(b, piece);
        evbuffer_free(piece);
    }
}

static void raw(const uint8_t *data, size_t size)
{
    static unsigned char out[WM_TLSREC_MAX];
    struct wm_tlsrec *rx = wm_tlsrec_new(secret);
    struct evbuffer *in = evbuffer_new();
    size_t got;
    const char *why;

    add_cut(in, data, size, 7);
    while (wm_tlsrec_open(rx, in, out, sizeof(out), &got, &why) == WM_TLSREC_DATA) {
    }
    evbuffer_free(in);
    wm_tlsrec_free(rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t plain[16 * 3000];
    static uint8_t back[16 * 3000];
    static unsigned char rec[WM_TLSREC_MAX + WM_TLSREC_OVERHEAD];
    struct input in = {data, size};
    size_t ends[16]; /* wire offset where each record ends */
    size_t total = 0;
    int nrec = 0;

    raw(data, size);
    wm_tlsrec_set_epoch_bits(1 + take(&in, 1) % 3);
    size_t scut = 1 + take(&in, 2) % 5000;
    size_t rcut = 1 + take(&in, 2) % 5000;
    size_t flip = take(&in, 2);
    uint8_t mask = (uint8_t)take(&in, 1);
    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    struct wm_tlsrec *rx = wm_tlsrec_new(secret);
    struct evbuffer *src = evbuffer_new();
    struct evbuffer *wire = evbuffer_new();
    size_t sizes[16];

    while (in.n > 0 && nrec < 15) {
        sizes[nrec++] = 1 + take(&in, 2) % 2999; /* 0 would be the close */
    }
    for (int i = 0; i < nrec; i++) {
        for (size_t k = 0; k < sizes[i]; k++) {
            plain[total + k] = (uint8_t)(total + k + i);
        }
        add_cut(src, plain + total, sizes[i], scut);
        total += sizes[i];
    }
    sizes[nrec++] = 0; /* the close record */
    size_t wlen = 0;
    for (int i = 0; i < nrec; i++) {
        size_t w = wm_tlsrec_seal(tx, src, sizes[i], rec);
        if (w != sizes[i] + WM_TLSREC_OVERHEAD) {
            abort();
        }
        evbuffer_drain(src, sizes[i]);
        evbuffer_add(wire, rec, w);
        wlen += w;
        ends[i] = wlen;
    }
    /* at most one byte changed (mask 0: none) */
    uint8_t *flat = malloc(wlen);
    evbuffer_remove(wire, flat, wlen);
    flip %= wlen;
    flat[flip] ^= mask;
    int touched = nrec;
    for (int i = 0; i < nrec; i++) {
        if (mask != 0 && flip < ends[i]) {
            touched = i;
            break;
        }
    }
    struct evbuffer *rd = evbuffer_new();
    add_cut(rd, flat, wlen, rcut);
    size_t got = 0;
    size_t n;
    const char *why;
    enum wm_tlsrec_res r;
    int opened = 0;
    while ((r = wm_tlsrec_open(rx, rd, back + got, sizeof(back) - got, &n, &why)) ==
           WM_TLSREC_DATA) {
        got += n;
        opened++;
    }
    if (memcmp(back, plain, got) != 0 || opened > touched) {
        abort(); /* released data that was not sent, or past a change */
    }
    if (mask == 0 && (r != WM_TLSREC_CLOSE || got != total)) {
        abort();
    }
    if (mask != 0 && r != WM_TLSREC_BAD && r != WM_TLSREC_MORE) {
        abort();
    }
    free(flat);
    evbuffer_free(rd);
    evbuffer_free(src);
    evbuffer_free(wire);
    wm_tlsrec_free(tx);
    wm_tlsrec_free(rx);
    return 0;
}
