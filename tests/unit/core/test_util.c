/*
 * tests/unit/core/test_util.c - core/util.h: constant-time compare, base64,
 * strict number parsing, case-insensitive helpers.
 *
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- wm_ct_equal ---- */

struct ct_case {
    const char *a;
    size_t alen;
    const char *b;
    size_t blen;
    bool want;
};

static void test_ct_equal(void **state)
{
    static const struct ct_case cases[] = {
        {"", 0, "", 0, true},
        {"a", 1, "a", 1, true},
        {"secret", 6, "secret", 6, true},
        {"secret", 6, "secreT", 6, false},
        {"secret", 6, "Secret", 6, false},
        {"secret", 6, "secre", 5, false},
        {"secre", 5, "secret", 6, false},
        {"", 0, "x", 1, false},
        {"x", 1, "", 0, false},
        /* b repeated cyclically must not fool the compare */
        {"abab", 4, "ab", 2, false},
        {"aaaa", 4, "a", 1, false},
        {"a\0b", 3, "a\0b", 3, true},
        {"a\0b", 3, "a\0c", 3, false},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct ct_case *c = &cases[i];
        bool got = wm_ct_equal(c->a, c->alen, c->b, c->blen);
        if (got != c->want) {
            fail_msg("case %zu: got %d want %d", i, got, c->want);
        }
    }
}

/* ---- base64 ---- */

struct b64_case {
    const char *in; /* base64 text */
    size_t inlen;   /* 0: strlen(in) */
    const char *out; /* decoded bytes; NULL: must fail */
    size_t outlen;
};

static void test_base64_decode_table(void **state)
{
    static const struct b64_case cases[] = {
        /* RFC 4648 section 10 vectors, padded and unpadded */
        {"", 0, "", 0},
        {"Zg==", 0, "f", 1},
        {"Zm8=", 0, "fo", 2},
        {"Zm9v", 0, "foo", 3},
        {"Zm9vYg==", 0, "foob", 4},
        {"Zm9vYmE=", 0, "fooba", 5},
        {"Zm9vYmFy", 0, "foobar", 6},
        {"Zg", 0, "f", 1},
        {"Zm8", 0, "fo", 2},
        {"Zm9vYg", 0, "foob", 4},
        {"Zm9vYmE", 0, "fooba", 5},
        {"dXNlcjpwYXNz", 0, "user:pass", 9},
        {"+/+/", 0, "\xfb\xff\xbf", 3},
        {"AAAA", 0, "\0\0\0", 3},
        /* invalid */
        {"Z", 0, NULL, 0}, /* lone symbol: no full byte */
        {"Zm9vY", 0, NULL, 0}, /* 5 symbols */
        {"Zg===", 0, NULL, 0}, /* three pads */
        {"====", 0, NULL, 0},
        {"Zg==Zg==", 0, NULL, 0}, /* pad in the middle */
        {"Zm9v\n", 0, NULL, 0},
        {"Zm 9v", 0, NULL, 0},
        {"Zm9v-_", 0, NULL, 0}, /* base64url alphabet is not standard */
        {"Zm9v\x80", 0, NULL, 0},
        {"Zm\0v", 4, NULL, 0},
    };
    unsigned char out[64];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct b64_case *c = &cases[i];
        size_t n = c->inlen != 0 ? c->inlen : strlen(c->in);
        long r = wm_base64_decode(c->in, n, out, sizeof(out));
        if (c->out == NULL) {
            if (r != -1) {
                fail_msg("case %zu (%s): want -1 got %ld", i, c->in, r);
            }
            continue;
        }
        if (r != (long)c->outlen) {
            fail_msg("case %zu (%s): want %zu got %ld", i, c->in, c->outlen, r);
        }
        assert_memory_equal(out, c->out, c->outlen);
    }
}

static void test_base64_encode_table(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"user:pass", "dXNlcjpwYXNz"},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        size_t n = strlen(cases[i].in);
        long r = wm_base64_encode((const unsigned char *)cases[i].in, n, out, sizeof(out));
        assert_int_equal(r, (long)strlen(cases[i].out));
        assert_string_equal(out, cases[i].out);
    }
}

/* Every length 0..64 and every byte value round-trips; padding and unpadded
 * forms decode alike. */
static void test_base64_round_trip(void **state)
{
    unsigned char in[256];
    char enc[400];
    unsigned char dec[300];

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (unsigned char)(255 - i);
    }
    for (size_t n = 0; n <= sizeof(in); n++) {
        long el = wm_base64_encode(in, n, enc, sizeof(enc));
        assert_int_equal(el, (long)((n + 2) / 3 * 4));
        assert_int_equal(strlen(enc), (size_t)el);
        long dl = wm_base64_decode(enc, (size_t)el, dec, sizeof(dec));
        assert_int_equal(dl, (long)n);
        assert_memory_equal(dec, in, n);
        /* Unpadded */
        size_t un = (size_t)el;
        while (un > 0 && enc[un - 1] == '=') {
            un--;
        }
        dl = wm_base64_decode(enc, un, dec, sizeof(dec));
        assert_int_equal(dl, (long)n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_base64_capacity(void **state)
{
    unsigned char dec[8];
    char enc[16];
    const unsigned char raw[6] = {'f', 'o', 'o', 'b', 'a', 'r'};

    (void)state;
    /* Decode: exact fit works, one byte short fails (at every short size). */
    assert_int_equal(wm_base64_decode("Zm9vYmFy", 8, dec, 6), 6);
    for (size_t cap = 0; cap < 6; cap++) {
        memset(dec, 0xaa, sizeof(dec));
        assert_int_equal(wm_base64_decode("Zm9vYmFy", 8, dec, cap), -1);
        /* no write past cap */
        for (size_t k = cap; k < sizeof(dec); k++) {
            assert_int_equal(dec[k], 0xaa);
        }
    }
    assert_int_equal(wm_base64_decode("Zg==", 4, dec, 0), -1);
    assert_int_equal(wm_base64_decode("", 0, NULL, 0), 0);

    /* Encode: needs room for the NUL too. */
    assert_int_equal(wm_base64_encode(raw, 6, enc, 9), 8);
    assert_string_equal(enc, "Zm9vYmFy");
    for (size_t cap = 0; cap < 9; cap++) {
        memset(enc, 'x', sizeof(enc));
        assert_int_equal(wm_base64_encode(raw, 6, enc, cap), -1);
        for (size_t k = cap; k < sizeof(enc); k++) {
            assert_int_equal(enc[k], 'x');
        }
    }
    assert_int_equal(wm_base64_encode(raw, 1, enc, 4), -1);
    assert_int_equal(wm_base64_encode(raw, 1, enc, 5), 4);
    assert_int_equal(wm_base64_encode(raw, 0, enc, 1), 0);
    assert_string_equal(enc, "");
    assert_int_equal(wm_base64_encode(raw, 0, enc, 0), -1);
}

/* ---- wm_parse_u64 ---- */

struct u64_case {
    const char *s;
    uint64_t max;
    int ret;
    uint64_t want;
};

static void test_parse_u64_table(void **state)
{
    static const struct u64_case cases[] = {
        {"0", 10, 0, 0},
        {"7", 10, 0, 7},
        {"10", 10, 0, 10},
        {"11", 10, -1, 0},
        {"00010", 10, 0, 10},
        {"65535", 65535, 0, 65535},
        {"65536", 65535, -1, 0},
        {"99999", 65535, -1, 0},
        {"655350", 65535, -1, 0},
        {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, -1, 0},
        {"18446744073709551620", UINT64_MAX, -1, 0},
        {"99999999999999999999", UINT64_MAX, -1, 0},
        {"184467440737095516150", UINT64_MAX, -1, 0},
        {"1844674407370955161", UINT64_MAX, 0, 1844674407370955161ULL},
        {"000000000000000000000000000001", UINT64_MAX, 0, 1},
        {"0", 0, 0, 0},
        {"9", 9, 0, 9},
        {"", 10, -1, 0},
        {"-1", 10, -1, 0},
        {"+1", 10, -1, 0},
        {" 1", 10, -1, 0},
        {"1 ", 10, -1, 0},
        {"1a", 100, -1, 0},
        {"0x1", 100, -1, 0},
        {"1.0", 100, -1, 0},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const struct u64_case *c = &cases[i];
        uint64_t v = 12345;
        int r = wm_parse_u64(c->s, strlen(c->s), c->max, &v);
        if (r != c->ret) {
            fail_msg("case %zu (%s max %llu): ret %d want %d", i, c->s,
                     (unsigned long long)c->max, r, c->ret);
        }
        if (r == 0 && v != c->want) {
            fail_msg("case %zu (%s): got %llu", i, c->s, (unsigned long long)v);
        }
        if (r < 0 && v != 12345) {
            fail_msg("case %zu (%s): *out written on error", i, c->s);
        }
    }
}

/* The length bounds the input: digits past n are not read. */
static void test_parse_u64_length(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(wm_parse_u64("12345", 2, 100, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(wm_parse_u64("80x", 2, 65535, &v), 0);
    assert_int_equal(v, 80);
    assert_int_equal(wm_parse_u64("1", 0, 100, &v), -1);
}

/*
 * Regression (fixed) (src/core/util.c, wm_parse_u64): when max < 9 the overflow check
 * `v > (max - d) / 10` wraps around for a digit d > max, so a single digit
 * larger than max is accepted: wm_parse_u64("8", 1, 7, &v) returns 0 with
 * v == 8 (want -1). core/proxyflags.c wm_proxy_parse_flags parses with max 7
 * and so accepts "8" and "9".
 */
static void test_parse_u64_small_max(void **state)
{
    static const struct u64_case cases[] = {
        {"8", 7, -1, 0},
        {"9", 7, -1, 0},
        {"1", 0, -1, 0},
        {"6", 5, -1, 0},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        uint64_t v = 0;
        int r = wm_parse_u64(cases[i].s, strlen(cases[i].s), cases[i].max, &v);
        if (r != cases[i].ret) {
            fail_msg("case %zu (%s max %llu): ret %d (v=%llu) want %d", i, cases[i].s,
                     (unsigned long long)cases[i].max, r, (unsigned long long)v,
                     cases[i].ret);
        }
    }
}

/* ---- wm_strieq ---- */

static void test_strieq(void **state)
{
    static const struct {
        const char *s;
        size_t n;
        const char *lit;
        bool want;
    } cases[] = {
        {"", 0, "", true},
        {"abc", 3, "abc", true},
        {"ABC", 3, "abc", true},
        {"abc", 3, "ABC", true},
        {"Content-Length", 14, "content-length", true},
        {"abc", 2, "ab", true}, /* only n bytes count */
        {"abc", 2, "abc", false}, /* lit longer */
        {"abc", 3, "ab", false}, /* lit shorter */
        {"abc", 0, "", true},
        {"abc", 0, "a", false},
        {"abd", 3, "abc", false},
        {"a\0c", 3, "a", false}, /* embedded NUL in s is a byte */
        {"[", 1, "{", false}, /* only A-Z fold: '[' + 32 == '{' */
        {"@", 1, "`", false},
        {"\xc9", 1, "\xe9", false}, /* no locale folding */
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        bool got = wm_strieq(cases[i].s, cases[i].n, cases[i].lit);
        if (got != cases[i].want) {
            fail_msg("case %zu: got %d", i, got);
        }
    }
}

/* wm_memieq folds eight bytes at a time: every pair of bytes, at every
 * offset of a word and in the tail, against a byte-by-byte reference. */
static bool ref_ieq(unsigned char x, unsigned char y)
{
    x = (unsigned char)(x >= 'A' && x <= 'Z' ? x + 32 : x);
    y = (unsigned char)(y >= 'A' && y <= 'Z' ? y + 32 : y);
    return x == y;
}

static void test_memieq_every_byte_pair(void **state)
{
    char a[19];
    char b[19];

    (void)state;
    for (size_t pos = 0; pos < sizeof(a); pos += 3) {
        for (unsigned x = 0; x < 256; x++) {
            for (unsigned y = 0; y < 256; y++) {
                memset(a, 'q', sizeof(a));
                memset(b, 'Q', sizeof(b));
                a[pos] = (char)x;
                b[pos] = (char)y;
                bool want = ref_ieq((unsigned char)x, (unsigned char)y);
                if (wm_memieq(a, b, sizeof(a)) != want) {
                    fail_msg("pos %zu bytes %02x %02x", pos, x, y);
                }
                if (!(y >= 'A' && y <= 'Z')) {
                    memset(b, 'q', sizeof(b));
                    b[pos] = (char)y;
                    for (size_t n = pos + 1; n <= sizeof(a); n += 5) {
                        if (wm_memieq_lower(a, b, n) != want) {
                            fail_msg("lower: pos %zu n %zu bytes %02x %02x", pos, n, x, y);
                        }
                    }
                }
            }
        }
    }
    /* bytes past n never count */
    assert_true(wm_memieq("abcdefghiX", "ABCDEFGHIY", 9));
    assert_false(wm_memieq("abcdefghiX", "ABCDEFGHIY", 10));
}

/* ---- wm_list_has_token ---- */

static void test_list_has_token(void **state)
{
    static const struct {
        const char *s;
        const char *tok;
        bool want;
    } cases[] = {
        {"close", "close", true},
        {"Close", "close", true},
        {"keep-alive, Upgrade", "upgrade", true},
        {"keep-alive,Upgrade", "keep-alive", true},
        {"  a ,\tb\t, c  ", "b", true},
        {"  a ,\tb\t, c  ", "c", true},
        {"  a ,\tb\t, c  ", "a", true},
        {"a,b,c", "d", false},
        {"closed", "close", false},
        {"xclose", "close", false},
        {"close-x", "close", false},
        {"clo se", "close", false},
        {"", "close", false},
        {",,,", "close", false},
        {"chunked, gzip", "chunked", true},
        {"gzip, chunked", "CHUNKED", true},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        bool got = wm_list_has_token(cases[i].s, strlen(cases[i].s), cases[i].tok);
        if (got != cases[i].want) {
            fail_msg("case %zu (\"%s\" has \"%s\"): got %d", i, cases[i].s, cases[i].tok, got);
        }
    }
    /* n bounds the list */
    assert_false(wm_list_has_token("a,close", 2, "close"));
    assert_true(wm_list_has_token("a,close", 7, "close"));
}

/* ---- wm_trim ---- */

static void test_trim(void **state)
{
    static const struct {
        const char *in;
        size_t off;
        size_t len;
    } cases[] = {
        {"", 0, 0},
        {"x", 0, 1},
        {"  x", 2, 1},
        {"x  ", 0, 1},
        {" \t x y \t ", 3, 3},
        {"   ", 0, 0},
        {"\t\t", 0, 0},
        {"\r\nx\r\n", 0, 5}, /* only spaces and tabs */
        {"a b", 0, 3},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        const char *s = cases[i].in;
        size_t n = strlen(s);
        wm_trim(&s, &n);
        assert_int_equal(n, cases[i].len);
        if (n > 0) {
            assert_ptr_equal(s, cases[i].in + cases[i].off);
        }
    }
}

/* An error quoting raw input stays one line: control characters escaped in
 * file, key and message; everything else (UTF-8 included) kept. */
static void test_err_escapes_control_chars(void **state)
{
    struct wm_err e;
    char buf[1024];

    (void)state;
    assert_int_equal(wm_err_set(&e, "a\nb.yaml", 3, 4, "k\x1b[31m",
                                "invalid rule \"%s\"", "x\r\r\ty\x7f caf\xc3\xa9\xc2\x85"),
                     -1);
    assert_string_equal(e.file, "a\\nb.yaml");
    assert_string_equal(e.key, "k\\x1B[31m");
    assert_string_equal(e.msg, "invalid rule \"x\\r\\r\\ty\\x7F caf\xc3\xa9\\xC2\\x85\"");
    assert_string_equal(wm_err_format(&e, buf, sizeof(buf)),
                        "a\\nb.yaml:3:4: k\\x1B[31m: invalid rule \"x\\r\\r\\ty\\x7F caf\xc3\xa9"
                        "\\xC2\\x85\"");
    /* a message full of control characters is cut, never overflows */
    char big[600];
    memset(big, 1, sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wm_err_set(&e, NULL, 0, 0, NULL, "%s", big);
    assert_true(strlen(e.msg) < sizeof(e.msg));
    assert_int_equal(strncmp(e.msg, "\\x01\\x01", 8), 0);
    assert_int_equal(strlen(e.msg) % 4, 0);
}

/* One event, one line: newlines fold to spaces, other control characters
 * from peers become \\xHH, UTF-8 stays. */
static void test_log_line_is_one_line(void **state)
{
    int p[2];
    char buf[512];

    (void)state;
    assert_int_equal(pipe(p), 0);
    wm_log_set_fd(p[1]);
    wm_log_set_level(WM_LOG_INFO);
    wm_log_write(WM_LOG_WARN, 7, "unknown mapping \"%s\"",
                 "a\r\nb\x1b[2J\x7f\tcaf\xc3\xa9\xc2\x9b" "1m");
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    const char *msg = strstr(buf, "c=7 ");
    assert_non_null(msg);
    assert_string_equal(msg, "c=7 unknown mapping \"a  b\\x1B[2J\\x7F\\x09caf\xc3\xa9\\xC2\\x9B1m\"\n");
    wm_log_set_fd(-1);
    close(p[0]);
    close(p[1]);
}

/* JSON string literals are valid UTF-8 JSON whatever the input holds. */
static void test_json_string_table(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", "\"\""},
        {"plain", "\"plain\""},
        {"q\"b\\", "\"q\\\"b\\\\\""},
        {"\n\r\t\x01\x1f\x7f", "\"\\n\\r\\t\\u0001\\u001f\x7f\""},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
        {"a\xff" "b", "\"a\\ufffdb\""},                  /* never a UTF-8 byte */
        {"\xc3", "\"\\ufffd\""},                      /* cut sequence at the end */
        {"\xc3(", "\"\\ufffd(\""},                    /* bad continuation */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},            /* overlong '/' */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},   /* surrogate */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* above U+10FFFF */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct evbuffer *b = evbuffer_new();
        assert_non_null(b);
        wm_json_string(b, cases[i].in);
        evbuffer_add(b, "", 1);
        const char *got = (const char *)evbuffer_pullup(b, -1);
        if (strcmp(got, cases[i].out) != 0) {
            fail_msg("case %zu: got %s want %s", i, got, cases[i].out);
        }
        evbuffer_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_base64_decode_table),
        cmocka_unit_test(test_base64_encode_table),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_capacity),
        cmocka_unit_test(test_parse_u64_table),
        cmocka_unit_test(test_parse_u64_length),
        cmocka_unit_test(test_parse_u64_small_max),
        cmocka_unit_test(test_strieq),
        cmocka_unit_test(test_memieq_every_byte_pair),
        cmocka_unit_test(test_list_has_token),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_err_escapes_control_chars),
        cmocka_unit_test(test_log_line_is_one_line),
        cmocka_unit_test(test_json_string_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
