/*
 * tests/unit/tunnel/test_mux.c - tunnel/mux.h: wm_tun_mac(), the handshake
 * HMAC of docs/tunnel.md:
 *
 *   mac = HMAC-SHA-256(password, label || n1 || n2 || binding || user)
 *
 * binding: the TLS exporter value of the carrier (empty on plain ones).
 *
 * Known answers were computed outside this project (Python's hmac module)
 * and are also recomputed here with OpenSSL's one-shot HMAC(). Nonces, user
 * and output live in exact-size heap buffers so ASan catches a read or write
 * past them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tunnel/mux.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define LABEL_C "wmtun/1 client"
#define LABEL_S "wmtun/1 server"

/* Nonce contents for tables: bytes seed, seed + 1, ... */
static uint8_t *nonce_new(int seed)
{
    uint8_t *n = malloc(WM_TUN_NONCE);

    assert_non_null(n);
    for (size_t i = 0; i < WM_TUN_NONCE; i++) {
        n[i] = (uint8_t)(seed + (int)i);
    }
    return n;
}

static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);

    assert_non_null(d);
    if (n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

/* The module's MAC, with every input and the output in exact heap buffers. */
static void mac(const char *pass, const char *label, const uint8_t *n1, const uint8_t *n2,
                const char *user, size_t ulen, uint8_t out[WM_TUN_MAC])
{
    uint8_t *a = dup_exact(n1, WM_TUN_NONCE);
    uint8_t *b = dup_exact(n2, WM_TUN_NONCE);
    uint8_t *u = dup_exact(user, ulen);
    uint8_t *o = malloc(WM_TUN_MAC);

    assert_non_null(o);
    wm_tun_mac(pass, label, a, b, NULL, 0, (const char *)u, ulen, o);
    memcpy(out, o, WM_TUN_MAC);
    free(o);
    free(u);
    free(b);
    free(a);
}

/* The same MAC computed here, from the formula, with OpenSSL's HMAC(). */
static void ref_mac(const char *pass, const char *label, const uint8_t *n1, const uint8_t *n2,
                    const char *user, size_t ulen, uint8_t out[WM_TUN_MAC])
{
    size_t ll = strlen(label);
    size_t n = ll + 2 * WM_TUN_NONCE + ulen;
    uint8_t *msg = malloc(n);
    unsigned int outlen = 0;

    assert_non_null(msg);
    memcpy(msg, label, ll);
    memcpy(msg + ll, n1, WM_TUN_NONCE);
    memcpy(msg + ll + WM_TUN_NONCE, n2, WM_TUN_NONCE);
    if (ulen > 0) {
        memcpy(msg + ll + 2 * WM_TUN_NONCE, user, ulen);
    }
    assert_non_null(HMAC(EVP_sha256(), pass, (int)strlen(pass), msg, n, out, &outlen));
    assert_int_equal(outlen, WM_TUN_MAC);
    free(msg);
}

static void hex(const char *s, uint8_t out[WM_TUN_MAC])
{
    assert_int_equal(strlen(s), 2 * WM_TUN_MAC);
    for (size_t i = 0; i < WM_TUN_MAC; i++) {
        unsigned v;

        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* n1 = 00..1f, n2 = 20..3f (the server label takes nonce_c first). */
static void test_mac_known_answer(void **state)
{
    static const struct {
        const char *pass;
        const char *label;
        int n1;
        int n2;
        const char *user;
        const char *hex;
    } rows[] = {
        {"s3cret", LABEL_C, 0x00, 0x20, "alice",
         "a14f7db5a9c0070927ba5ad33b211d1d34e4aa475fd37269d59a7e2f0479adcc"},
        {"s3cret", LABEL_S, 0x20, 0x00, "alice",
         "ae3fa7019f022bc158ff336fd2b956744de63922dc3ffdd4f6cf1ac4cd5f93ec"},
        {"", LABEL_C, 0x00, 0x20, "",
         "bb9e536e127c73f660e5c20282e053a68335f89ba5b42d4c695f2544ec1aaf57"},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        uint8_t *n1 = nonce_new(rows[i].n1);
        uint8_t *n2 = nonce_new(rows[i].n2);
        size_t ulen = strlen(rows[i].user);
        uint8_t want[WM_TUN_MAC];
        uint8_t ref[WM_TUN_MAC];
        uint8_t got[WM_TUN_MAC];

        hex(rows[i].hex, want);
        ref_mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, ulen, ref);
        mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, ulen, got);
        if (memcmp(ref, want, WM_TUN_MAC) != 0 || memcmp(got, want, WM_TUN_MAC) != 0) {
            fail_msg("known answer %zu differs", i);
        }
        free(n2);
        free(n1);
    }
}

/* Same inputs, same MAC, equal to the reference, including edge inputs. */
static void test_mac_deterministic(void **state)
{
    static char long_user[WM_TUN_STR_MAX];
    static const struct {
        const char *pass;
        const char *label;
        const char *user;
        size_t ulen;
    } rows[] = {
        {"s3cret", LABEL_C, "alice", 5},
        {"s3cret", LABEL_S, "alice", 5},
        {"", LABEL_C, "", 0},
        {"p", LABEL_C, "a\0b", 3}, /* binary user */
        {"a rather long password, longer than one SHA-256 block of sixty-four bytes", LABEL_S,
         "bob", 3},
        {"s3cret", LABEL_C, long_user, sizeof(long_user)}, /* longest user on the wire */
    };

    (void)state;
    memset(long_user, 'u', sizeof(long_user));
    for (size_t i = 0; i < NELEM(rows); i++) {
        uint8_t *n1 = nonce_new(7);
        uint8_t *n2 = nonce_new(99);
        uint8_t a[WM_TUN_MAC];
        uint8_t b[WM_TUN_MAC];
        uint8_t ref[WM_TUN_MAC];

        mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, rows[i].ulen, a);
        mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, rows[i].ulen, b);
        ref_mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, rows[i].ulen, ref);
        if (memcmp(a, b, WM_TUN_MAC) != 0 || memcmp(a, ref, WM_TUN_MAC) != 0) {
            fail_msg("row %zu: not deterministic or not the reference", i);
        }
        free(n2);
        free(n1);
    }
}

/* Changing any one input changes the MAC. */
static void test_mac_sensitivity(void **state)
{
    enum { N1_FLIP = 1, N2_FLIP = 2, SWAP = 4 };
    static const struct {
        const char *what;
        const char *pass;
        const char *label;
        unsigned nonces;
        size_t at; /* byte whose low bit N1_FLIP/N2_FLIP flips */
        const char *user;
        size_t ulen;
    } rows[] = {
        {"password case", "s3creT", LABEL_C, 0, 0, "alice", 5},
        {"password longer", "s3cret ", LABEL_C, 0, 0, "alice", 5},
        {"password shorter", "s3cre", LABEL_C, 0, 0, "alice", 5},
        {"password empty", "", LABEL_C, 0, 0, "alice", 5},
        {"server label", "s3cret", LABEL_S, 0, 0, "alice", 5},
        {"other version", "s3cret", "wmtun/2 client", 0, 0, "alice", 5},
        {"n1 first byte", "s3cret", LABEL_C, N1_FLIP, 0, "alice", 5},
        {"n1 last byte", "s3cret", LABEL_C, N1_FLIP, WM_TUN_NONCE - 1, "alice", 5},
        {"n2 first byte", "s3cret", LABEL_C, N2_FLIP, 0, "alice", 5},
        {"n2 last byte", "s3cret", LABEL_C, N2_FLIP, WM_TUN_NONCE - 1, "alice", 5},
        {"nonces swapped", "s3cret", LABEL_C, SWAP, 0, "alice", 5},
        {"user last byte", "s3cret", LABEL_C, 0, 0, "alicf", 5},
        {"user first byte", "s3cret", LABEL_C, 0, 0, "blice", 5},
        {"user shorter", "s3cret", LABEL_C, 0, 0, "alice", 4},
        {"user longer", "s3cret", LABEL_C, 0, 0, "alice ", 6},
        {"user empty", "s3cret", LABEL_C, 0, 0, "", 0},
        {"user with NUL", "s3cret", LABEL_C, 0, 0, "alice\0", 6},
    };
    uint8_t *b1 = nonce_new(0x10);
    uint8_t *b2 = nonce_new(0x80);
    uint8_t base[WM_TUN_MAC];
    uint8_t zero[WM_TUN_MAC] = {0};

    (void)state;
    mac("s3cret", LABEL_C, b1, b2, "alice", 5, base);
    assert_memory_not_equal(base, zero, WM_TUN_MAC);
    for (size_t i = 0; i < NELEM(rows); i++) {
        uint8_t n1[WM_TUN_NONCE];
        uint8_t n2[WM_TUN_NONCE];
        uint8_t got[WM_TUN_MAC];
        uint8_t ref[WM_TUN_MAC];

        memcpy(n1, rows[i].nonces & SWAP ? b2 : b1, WM_TUN_NONCE);
        memcpy(n2, rows[i].nonces & SWAP ? b1 : b2, WM_TUN_NONCE);
        if (rows[i].nonces & N1_FLIP) {
            n1[rows[i].at] ^= 1;
        }
        if (rows[i].nonces & N2_FLIP) {
            n2[rows[i].at] ^= 1;
        }
        mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, rows[i].ulen, got);
        ref_mac(rows[i].pass, rows[i].label, n1, n2, rows[i].user, rows[i].ulen, ref);
        if (memcmp(got, base, WM_TUN_MAC) == 0) {
            fail_msg("%s: MAC unchanged", rows[i].what);
        }
        if (memcmp(got, ref, WM_TUN_MAC) != 0) {
            fail_msg("%s: not the reference MAC", rows[i].what);
        }
    }
    free(b2);
    free(b1);
}

/* With a channel binding (v2): known answers, and every binding byte
 * counts, so a relay with another TLS session computes another MAC. */
static void test_mac_binding(void **state)
{
    static const struct {
        const char *label;
        int n1;
        int n2;
        const char *hex;
    } rows[] = {
        {"wmtun/2 client", 0x00, 0x20,
         "be956caec7fa0f6c212867ae998f526ce4a13ae3c8ecbeeb1a7e6afbd7f15d64"},
        {"wmtun/2 server", 0x20, 0x00,
         "6f66a750e8537c2ea2d80d34989fbc9e5caca6b7e0762515a2cd686fb81f8891"},
    };
    uint8_t *bind = nonce_new(0x80);
    uint8_t *user = dup_exact("alice", 5);

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        uint8_t *n1 = nonce_new(rows[i].n1);
        uint8_t *n2 = nonce_new(rows[i].n2);
        uint8_t want[WM_TUN_MAC];
        uint8_t got[WM_TUN_MAC];
        uint8_t plain[WM_TUN_MAC];

        hex(rows[i].hex, want);
        wm_tun_mac("s3cret", rows[i].label, n1, n2, bind, WM_TUN_BINDING, (const char *)user, 5,
                   got);
        assert_memory_equal(got, want, WM_TUN_MAC);
        wm_tun_mac("s3cret", rows[i].label, n1, n2, NULL, 0, (const char *)user, 5, plain);
        assert_memory_not_equal(got, plain, WM_TUN_MAC);
        for (size_t k = 0; k < WM_TUN_BINDING; k += 31) {
            uint8_t other[WM_TUN_MAC];
            bind[k] ^= 1;
            wm_tun_mac("s3cret", rows[i].label, n1, n2, bind, WM_TUN_BINDING,
                       (const char *)user, 5, other);
            bind[k] ^= 1;
            assert_memory_not_equal(got, other, WM_TUN_MAC);
        }
        free(n2);
        free(n1);
    }
    free(user);
    free(bind);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac_known_answer),
        cmocka_unit_test(test_mac_deterministic),
        cmocka_unit_test(test_mac_sensitivity),
        cmocka_unit_test(test_mac_binding),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
