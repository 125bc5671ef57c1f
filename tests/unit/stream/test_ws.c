/*
 * tests/unit/stream/test_ws.c - stream/ws.h: frame headers (all three
 * length forms, masking by role), the receiver's rules (RSV, opcodes,
 * control frames, fragmentation, 63-bit lengths, message limit), close
 * payloads, masking at any offset, and the RFC's handshake example.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stream/ws.h"

static int dec(struct wm_ws_dec *d, const uint8_t *p, size_t n, struct wm_ws_frame *f,
               uint16_t *code)
{
    *code = 0;
    return wm_ws_dec_header(d, p, n, f, code);
}

static void test_header_roundtrip(void **state)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, (1ULL << 40) + 7};
    const uint8_t mask[4] = {1, 2, 3, 4};
    uint8_t h[WM_WS_HDR_MAX];
    struct wm_ws_frame f;
    uint16_t code;

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int server = 0; server < 2; server++) {
            struct wm_ws_dec d = {.server = server, .max = UINT64_MAX >> 1};
            size_t n = wm_ws_header(h, true, WM_WS_OP_BINARY, lens[i], server ? mask : NULL);
            assert_int_equal(n, 2 + (lens[i] < 126 ? 0 : lens[i] <= 65535 ? 2 : 8) +
                                    (server ? 4 : 0));
            /* every shorter prefix asks for more */
            for (size_t k = 0; k < n; k++) {
                assert_int_equal(dec(&d, h, k, &f, &code), 0);
            }
            assert_int_equal(dec(&d, h, n, &f, &code), (int)n);
            assert_true(f.len == lens[i]);
            assert_int_equal(f.masked, server);
            if (server) {
                assert_memory_equal(f.mask, mask, 4);
            }
        }
    }
}

static void test_rules(void **state)
{
    static const struct {
        const char *name;
        uint8_t b[14];
        size_t n;
        bool server;
        uint16_t code; /* 0: accepted */
    } cases[] = {
        {"unmasked from a client", {0x82, 0x01}, 2, true, 1002},
        {"masked from a server", {0x82, 0x81, 1, 2, 3, 4}, 6, false, 1002},
        {"rsv1", {0xC2, 0x80, 0, 0, 0, 0}, 6, true, 1002},
        {"opcode 3", {0x83, 0x80, 0, 0, 0, 0}, 6, true, 1002},
        {"opcode 0xB", {0x8B, 0x80, 0, 0, 0, 0}, 6, true, 1002},
        {"lone continuation", {0x80, 0x80, 0, 0, 0, 0}, 6, true, 1002},
        {"ping 126", {0x89, 0xFE, 0, 126, 0, 0, 0, 0}, 8, true, 1002},
        {"fragmented ping", {0x09, 0x80, 0, 0, 0, 0}, 6, true, 1002},
        {"len msb", {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 14, true, 1002},
        {"len 16 not minimal", {0x82, 0xFE, 0, 5, 0, 0, 0, 0}, 8, true, 1002},
        {"len 64 not minimal", {0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0}, 14, true, 1002},
        {"over the limit", {0x82, 0xFF, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0}, 14, true, 1009},
        {"close 125 ok", {0x88, 0xFD, 0, 0, 0, 0}, 6, true, 0},
        {"pong empty", {0x8A, 0x00}, 2, false, 0},
    };
    struct wm_ws_frame f;
    uint16_t code;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wm_ws_dec d = {.server = cases[i].server, .max = 1 << 20};
        int r = dec(&d, cases[i].b, cases[i].n, &f, &code);
        if (cases[i].code == 0) {
            assert_true(r > 0);
        } else {
            if (r != -1 || code != cases[i].code) {
                fail_msg("%s: r=%d code=%u", cases[i].name, r, code);
            }
        }
    }
}

static void test_fragmentation(void **state)
{
    struct wm_ws_dec d = {.server = false, .max = 10};
    struct wm_ws_frame f;
    uint16_t code;
    const uint8_t first[] = {0x02, 0x04};  /* binary, not fin, 4 bytes */
    const uint8_t ping[] = {0x89, 0x00};   /* a control frame in between */
    const uint8_t again[] = {0x02, 0x01};  /* a new data frame inside: wrong */
    const uint8_t cont[] = {0x00, 0x04};   /* continuation, not fin */
    const uint8_t last[] = {0x80, 0x03};   /* continuation, fin: 11 > 10 */

    (void)state;
    assert_int_equal(dec(&d, first, 2, &f, &code), 2);
    assert_true(d.in_msg);
    assert_int_equal(dec(&d, ping, 2, &f, &code), 2);
    assert_true(d.in_msg);
    struct wm_ws_dec d2 = d;
    assert_int_equal(dec(&d2, again, 2, &f, &code), -1);
    assert_int_equal(code, 1002);
    assert_int_equal(dec(&d, cont, 2, &f, &code), 2);
    assert_int_equal(dec(&d, last, 2, &f, &code), -1);
    assert_int_equal(code, 1009);
}

static void test_close_payloads(void **state)
{
    uint16_t code;

    (void)state;
    assert_int_equal(wm_ws_close_parse(NULL, 0, &code), 0);
    assert_int_equal(code, 1005);
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03", 1, &code), -1);
    assert_int_equal(code, 1002);
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03\xe8ok", 4, &code), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x0f\xa0", 2, &code), 0); /* 4000 */
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03\xed", 2, &code), -1); /* 1005 */
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03\xee", 2, &code), -1); /* 1006 */
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03\xec", 2, &code), -1); /* 1004 */
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x13\x88", 2, &code), -1); /* 5000 */
    assert_int_equal(wm_ws_close_parse((const uint8_t *)"\x03\xe8\xc3\x28", 4, &code), -1);
    assert_int_equal(code, 1007);
}

static void test_mask_offsets(void **state)
{
    const uint8_t mask[4] = {0xA1, 0xB2, 0xC3, 0xD4};
    uint8_t whole[37];
    uint8_t parts[37];

    (void)state;
    for (size_t i = 0; i < sizeof(whole); i++) {
        whole[i] = parts[i] = (uint8_t)(i * 7);
    }
    wm_ws_mask(whole, sizeof(whole), mask, 0);
    /* masking in pieces at their offsets gives the same bytes */
    wm_ws_mask(parts, 5, mask, 0);
    wm_ws_mask(parts + 5, 19, mask, 5);
    wm_ws_mask(parts + 24, 13, mask, 24);
    assert_memory_equal(whole, parts, sizeof(whole));
    assert_int_equal(whole[6], (uint8_t)(42 ^ 0xC3));
}

static void test_accept_key(void **state)
{
    char out[WM_WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455 1.3 */

    (void)state;
    assert_true(wm_ws_key_ok(key, strlen(key)));
    assert_false(wm_ws_key_ok("short", 5));
    assert_false(wm_ws_key_ok("dGhlIHNhbXBsZSBub25jZQ=!", 24));
    wm_ws_accept(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip), cmocka_unit_test(test_rules),
        cmocka_unit_test(test_fragmentation),    cmocka_unit_test(test_close_payloads),
        cmocka_unit_test(test_mask_offsets),     cmocka_unit_test(test_accept_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
