/*
 * tests/unit/net/test_tlsrec.c - the carrier record layer (net/tlsrec.h):
 * round trips over buffers cut at odd places, the wire format checked
 * against OpenSSL's AES-GCM, forged, reordered, truncated and oversized
 * records, the close record, key steps, and the exporter keys of a real
 * handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "net/tls.h"
#include "net/tlsrec.h"

static const unsigned char secret[WM_TLSREC_SECRET] = "0123456789abcdef0123456789abcdef";

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)(i * 131u + seed + (i >> 8));
    }
}

/* An evbuffer holding data in pieces of `cut` bytes (separate chains). */
static struct evbuffer *chopped(const unsigned char *data, size_t n, size_t cut)
{
    struct evbuffer *b = evbuffer_new();

    for (size_t at = 0; at < n; at += cut) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, data + at, n - at < cut ? n - at : cut);
        evbuffer_add_buffer(b, piece); /* moves the chain: one per piece */
        evbuffer_free(piece);
    }
    return b;
}

/* Seal records of the given sizes from `data` into a wire buffer. */
static struct evbuffer *seal_all(struct wm_tlsrec *tx, const unsigned char *data,
                                 const size_t *sizes, int nsizes, size_t cut)
{
    size_t total = 0;
    for (int i = 0; i < nsizes; i++) {
        total += sizes[i];
    }
    struct evbuffer *in = chopped(data, total, cut);
    struct evbuffer *wire = evbuffer_new();
    unsigned char *rec = malloc(WM_TLSREC_MAX + WM_TLSREC_OVERHEAD);

    for (int i = 0; i < nsizes; i++) {
        size_t w = wm_tlsrec_seal(tx, in, sizes[i], rec);
        assert_int_equal(w, sizes[i] + WM_TLSREC_OVERHEAD);
        evbuffer_drain(in, sizes[i]);
        evbuffer_add(wire, rec, w);
    }
    assert_int_equal(evbuffer_get_length(in), 0);
    free(rec);
    evbuffer_free(in);
    return wire;
}

static void test_round_trip_over_odd_chains(void **state)
{
    static const size_t sizes[] = {1, WM_TLSREC_MAX, 5000, 17, WM_TLSREC_MAX - 1, 0};
    size_t total = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        total += sizes[i];
    }
    unsigned char *data = malloc(total);
    unsigned char *out = malloc(total);
    fill(data, total, 3);
    static const size_t cuts[] = {1, 7, 4096, 100000};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        struct wm_tlsrec *tx = wm_tlsrec_new(secret);
        struct wm_tlsrec *rx = wm_tlsrec_new(secret);
        struct evbuffer *wire = seal_all(tx, data, sizes, 6, cuts[c] == 1 ? 3 : cuts[c]);
        size_t wlen = evbuffer_get_length(wire);
        unsigned char *flat = malloc(wlen);
        evbuffer_remove(wire, flat, wlen);
        /* the reader's side cut differently again */
        struct evbuffer *in = chopped(flat, wlen, cuts[c]);
        size_t got = 0;
        size_t n;
        const char *why;
        enum wm_tlsrec_res r;
        while ((r = wm_tlsrec_open(rx, in, out + got, total - got, &n, &why)) == WM_TLSREC_DATA) {
            got += n;
        }
        assert_int_equal(r, WM_TLSREC_CLOSE);
        assert_int_equal(got, total);
        assert_memory_equal(out, data, total);
        assert_int_equal(evbuffer_get_length(in), 0);
        evbuffer_free(in);
        evbuffer_free(wire);
        free(flat);
        wm_tlsrec_free(tx);
        wm_tlsrec_free(rx);
    }
    free(data);
    free(out);
}

/* The key and iv as docs/tunnel.md derives them, made here with OpenSSL. */
static void derive(const unsigned char *s, const char *label, unsigned char *out)
{
    unsigned char msg[32];
    size_t n = strlen(label);
    size_t outl;
    memcpy(msg, label, n);
    msg[n++] = 1;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, s, 32, msg, n, out, 32, &outl));
}

/* Open record number seq (under the first key) with OpenSSL. */
static int openssl_open(const unsigned char *rec, size_t reclen, uint64_t seq, unsigned char *pt)
{
    unsigned char km[32];
    unsigned char nonce[12];
    int outl = 0;
    int fin = 0;
    size_t ctlen = reclen - WM_TLSREC_OVERHEAD;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    derive(secret, "wmtun key", km);
    memcpy(nonce, km + 16, 12);
    for (int i = 0; i < 8; i++) {
        nonce[11 - i] ^= (unsigned char)(seq >> (8 * i));
    }
    assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, km, nonce), 1);
    assert_int_equal(EVP_DecryptUpdate(c, NULL, &outl, rec, WM_TLSREC_HEADER), 1);
    if (ctlen > 0) {
        assert_int_equal(EVP_DecryptUpdate(c, pt, &outl, rec + WM_TLSREC_HEADER, (int)ctlen), 1);
    }
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(rec + reclen - 16));
    fin = EVP_DecryptFinal_ex(c, pt + outl, &outl);
    EVP_CIPHER_CTX_free(c);
    return fin;
}

static void test_wire_format_is_aes_128_gcm(void **state)
{
    unsigned char data[3000];
    unsigned char rec[3000 + WM_TLSREC_OVERHEAD];
    unsigned char pt[3000];
    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    (void)state;

    fill(data, sizeof(data), 9);
    for (uint64_t seq = 0; seq < 3; seq++) {
        struct evbuffer *in = chopped(data, sizeof(data), 1000);
        size_t w = wm_tlsrec_seal(tx, in, sizeof(data), rec);
        assert_int_equal(w, sizeof(rec));
        assert_int_equal(rec[0], 0x17);
        assert_int_equal(rec[1], 3);
        assert_int_equal(rec[2], 3);
        assert_int_equal(rec[3] << 8 | rec[4], sizeof(data) + 16);
        memset(pt, 0, sizeof(pt));
        assert_int_equal(openssl_open(rec, w, seq, pt), 1);
        assert_memory_equal(pt, data, sizeof(data));
        /* under another sequence number it does not open */
        assert_int_equal(openssl_open(rec, w, seq + 1, pt), 0);
        evbuffer_free(in);
    }
    /* the close record: no ciphertext, only the tag */
    struct evbuffer *none = evbuffer_new();
    assert_int_equal(wm_tlsrec_seal(tx, none, 0, rec), WM_TLSREC_OVERHEAD);
    assert_int_equal(openssl_open(rec, WM_TLSREC_OVERHEAD, 3, pt), 1);
    evbuffer_free(none);
    wm_tlsrec_free(tx);
}

/* One record of 100 bytes on the wire, as bytes. */
static size_t one_record(struct wm_tlsrec *tx, unsigned char *rec)
{
    unsigned char data[100];
    struct evbuffer *in;
    size_t w;

    fill(data, sizeof(data), 1);
    in = chopped(data, sizeof(data), 100);
    w = wm_tlsrec_seal(tx, in, sizeof(data), rec);
    evbuffer_free(in);
    return w;
}

static enum wm_tlsrec_res open_bytes(struct wm_tlsrec *rx, const unsigned char *b, size_t n,
                                     size_t *left, const char **why)
{
    unsigned char out[WM_TLSREC_MAX];
    struct evbuffer *in = evbuffer_new();
    size_t got;
    enum wm_tlsrec_res r;

    evbuffer_add(in, b, n);
    r = wm_tlsrec_open(rx, in, out, sizeof(out), &got, why);
    *left = evbuffer_get_length(in);
    evbuffer_free(in);
    return r;
}

static void test_forged_and_malformed_records_are_refused(void **state)
{
    unsigned char rec[200];
    unsigned char bad[200];
    size_t left;
    const char *why;
    (void)state;

    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    size_t w = one_record(tx, rec);
    assert_int_equal(w, 100 + WM_TLSREC_OVERHEAD);
    /* Every single flipped bit (header, ciphertext, tag) is caught. */
    for (size_t i = 0; i < w; i++) {
        memcpy(bad, rec, w);
        bad[i] ^= 0x10;
        struct wm_tlsrec *rx = wm_tlsrec_new(secret);
        enum wm_tlsrec_res r = open_bytes(rx, bad, w, &left, &why);
        if (i == 3 || i == 4) {
            /* a changed length: too long to be complete, or out of range */
            assert_true(r == WM_TLSREC_MORE || r == WM_TLSREC_BAD);
        } else {
            assert_int_equal(r, WM_TLSREC_BAD);
            assert_non_null(why);
        }
        assert_int_equal(left, w); /* nothing drained */
        wm_tlsrec_free(rx);
    }
    /* A wrong key. */
    unsigned char other[WM_TLSREC_SECRET];
    memcpy(other, secret, sizeof(other));
    other[0] ^= 1;
    struct wm_tlsrec *rx = wm_tlsrec_new(other);
    assert_int_equal(open_bytes(rx, rec, w, &left, &why), WM_TLSREC_BAD);
    assert_string_equal(why, "record authentication failed");
    wm_tlsrec_free(rx);
    /* Not a record at all (a plain-text client, an HTTP request). */
    rx = wm_tlsrec_new(secret);
    assert_int_equal(open_bytes(rx, (const unsigned char *)"GET / HTTP/1.1\r\n", 16, &left, &why),
                     WM_TLSREC_BAD);
    assert_string_equal(why, "not a tunnel record");
    assert_int_equal(open_bytes(rx, (const unsigned char *)"\x17\x03\x01", 3, &left, &why),
                     WM_TLSREC_BAD);
    /* Lengths out of range: shorter than a tag, longer than the maximum. */
    assert_int_equal(open_bytes(rx, (const unsigned char *)"\x17\x03\x03\x00\x0f", 5, &left, &why),
                     WM_TLSREC_BAD);
    assert_string_equal(why, "record length out of range");
    assert_int_equal(open_bytes(rx, (const unsigned char *)"\x17\x03\x03\x40\x11", 5, &left, &why),
                     WM_TLSREC_BAD);
    /* The largest length is fine: incomplete, so more is wanted. */
    assert_int_equal(open_bytes(rx, (const unsigned char *)"\x17\x03\x03\x40\x10", 5, &left, &why),
                     WM_TLSREC_MORE);
    /* Truncated anywhere: more is wanted, nothing drained. */
    for (size_t n = 0; n < w; n++) {
        assert_int_equal(open_bytes(rx, rec, n, &left, &why), WM_TLSREC_MORE);
        assert_int_equal(left, n);
    }
    wm_tlsrec_free(rx);
    wm_tlsrec_free(tx);
}

static void test_reordered_or_replayed_records_are_refused(void **state)
{
    unsigned char a[200];
    unsigned char b[200];
    size_t left;
    const char *why;
    (void)state;

    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    size_t wa = one_record(tx, a);
    size_t wb = one_record(tx, b);
    struct wm_tlsrec *rx = wm_tlsrec_new(secret);
    assert_int_equal(open_bytes(rx, b, wb, &left, &why), WM_TLSREC_BAD); /* b before a */
    wm_tlsrec_free(rx);
    rx = wm_tlsrec_new(secret);
    assert_int_equal(open_bytes(rx, a, wa, &left, &why), WM_TLSREC_DATA);
    assert_int_equal(open_bytes(rx, a, wa, &left, &why), WM_TLSREC_BAD); /* a again */
    wm_tlsrec_free(rx);
    wm_tlsrec_free(tx);
}

static void test_room_is_asked_for_without_draining(void **state)
{
    unsigned char rec[200];
    unsigned char out[100];
    struct evbuffer *in = evbuffer_new();
    size_t got;
    const char *why;
    (void)state;

    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    struct wm_tlsrec *rx = wm_tlsrec_new(secret);
    size_t w = one_record(tx, rec);
    evbuffer_add(in, rec, w);
    assert_int_equal(wm_tlsrec_open(rx, in, out, 99, &got, &why), WM_TLSREC_ROOM);
    assert_int_equal(got, 100);
    assert_int_equal(evbuffer_get_length(in), w);
    assert_int_equal(wm_tlsrec_open(rx, in, out, 100, &got, &why), WM_TLSREC_DATA);
    assert_int_equal(got, 100);
    assert_int_equal(evbuffer_get_length(in), 0);
    evbuffer_free(in);
    wm_tlsrec_free(tx);
    wm_tlsrec_free(rx);
}

/* With 4 records per key, 20 records cross five keys and still open; a
 * reader that does not step its key fails on the fifth record. */
static void test_keys_step_at_the_same_record(void **state)
{
    unsigned char rec[200];
    size_t left;
    const char *why;
    (void)state;

    wm_tlsrec_set_epoch_bits(2);
    struct wm_tlsrec *tx = wm_tlsrec_new(secret);
    struct wm_tlsrec *rx = wm_tlsrec_new(secret);
    for (int i = 0; i < 20; i++) {
        size_t w = one_record(tx, rec);
        assert_int_equal(open_bytes(rx, rec, w, &left, &why), WM_TLSREC_DATA);
        if (i == 4) {
            /* the fifth record is under the second key: the first fails */
            unsigned char pt[100];
            assert_int_equal(openssl_open(rec, w, 4, pt), 0);
            assert_int_equal(openssl_open(rec, w, 0, pt), 0);
        }
    }
    wm_tlsrec_set_epoch_bits(20);
    wm_tlsrec_free(tx);
    wm_tlsrec_free(rx);
}

/* A real TLS 1.3 handshake over memory BIOs: ALPN selects the record
 * layer when both contexts enable it, and the exporter gives each side
 * the other's keys; without it on one side, nothing is selected. */
static void handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL **s, SSL **c)
{
    BIO *s_in = BIO_new(BIO_s_mem());
    BIO *s_out = BIO_new(BIO_s_mem());
    BIO *c_in = BIO_new(BIO_s_mem());
    BIO *c_out = BIO_new(BIO_s_mem());
    char buf[16384];

    *s = SSL_new(sctx);
    *c = SSL_new(cctx);
    SSL_set_bio(*s, s_in, s_out);
    SSL_set_bio(*c, c_in, c_out);
    SSL_set_accept_state(*s);
    SSL_set_connect_state(*c);
    for (int i = 0; i < 10 && !(SSL_is_init_finished(*s) && SSL_is_init_finished(*c)); i++) {
        SSL_do_handshake(*c);
        int n;
        while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0) {
            BIO_write(s_in, buf, n);
        }
        SSL_do_handshake(*s);
        while ((n = BIO_read(s_out, buf, sizeof(buf))) > 0) {
            BIO_write(c_in, buf, n);
        }
    }
    assert_true(SSL_is_init_finished(*s));
    assert_true(SSL_is_init_finished(*c));
    /* nothing else after the handshake: no session tickets */
    assert_int_equal(BIO_ctrl_pending(c_in), 0);
}

static void test_handshake_selects_records_and_keys_pair_up(void **state)
{
    char err[256];
    SSL *s;
    SSL *c;
    (void)state;

    SSL_CTX *sctx = wm_tls_server_ctx_selfsigned("unit.test", err, sizeof(err));
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(sctx);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    assert_int_equal(wm_tlsrec_ctx_enable(sctx, true), 0);
    assert_int_equal(wm_tlsrec_ctx_enable(cctx, false), 0);
    handshake(sctx, cctx, &s, &c);
    assert_true(wm_tlsrec_selected(s));
    assert_true(wm_tlsrec_selected(c));

    struct wm_tlsrec *stx, *srx, *ctx_, *crx;
    assert_int_equal(wm_tlsrec_from_ssl(s, &stx, &srx), 0);
    assert_int_equal(wm_tlsrec_from_ssl(c, &ctx_, &crx), 0);
    unsigned char rec[200];
    size_t left;
    const char *why;
    size_t w = one_record(ctx_, rec);
    assert_int_equal(open_bytes(srx, rec, w, &left, &why), WM_TLSREC_DATA); /* client to server */
    w = one_record(stx, rec);
    assert_int_equal(open_bytes(crx, rec, w, &left, &why), WM_TLSREC_DATA); /* and back */
    w = one_record(stx, rec);
    assert_int_equal(open_bytes(srx, rec, w, &left, &why), WM_TLSREC_BAD);  /* not its own */
    wm_tlsrec_free(stx);
    wm_tlsrec_free(srx);
    wm_tlsrec_free(ctx_);
    wm_tlsrec_free(crx);
    SSL_free(s);
    SSL_free(c);

    /* An older client that does not offer it: plain TLS. */
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    handshake(sctx, old, &s, &c);
    assert_false(wm_tlsrec_selected(s));
    assert_false(wm_tlsrec_selected(c));
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(old);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_over_odd_chains),
        cmocka_unit_test(test_wire_format_is_aes_128_gcm),
        cmocka_unit_test(test_forged_and_malformed_records_are_refused),
        cmocka_unit_test(test_reordered_or_replayed_records_are_refused),
        cmocka_unit_test(test_room_is_asked_for_without_draining),
        cmocka_unit_test(test_keys_step_at_the_same_record),
        cmocka_unit_test(test_handshake_selects_records_and_keys_pair_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
