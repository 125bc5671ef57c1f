/*
 * tests/unit/tunnel/test_frame.c - tunnel/frame.h: the wmtun/1 frame header
 * and control payloads (docs/tunnel.md).
 *
 * Every payload codec has a table of values. For each row the encoder's
 * output must equal bytes built here from the spec, every smaller cap must be
 * refused without writing past it, and the decoder must accept the bytes,
 * refuse every strict prefix and refuse one trailing byte.
 *
 * Decodes are "checked": the input is copied to an exact-size heap buffer
 * (ASan catches a read past n) and, on success, the decoded fields are built
 * back into bytes here, which must equal the input, so the decoder consumed
 * exactly the input and read each field from the right place. The same
 * checked decoders take 20,000 random strings and 20,000 mutated encodings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tunnel/frame.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define SMAX WM_TUN_STR_MAX
#define ENC_MAX 65536 /* larger than any encoding built below */
#define RR_MAX 512    /* REGISTER_RESULT entries a checked decode accepts */
#define FUZZ_ROUNDS 20000
#define FUZZ_LEN 300

/* Where a table-driven failure happened, for the message. */
static const char *at_what = "";
static size_t at_row;

#define EXPECT(c)                                                                               \
    do {                                                                                        \
        if (!(c)) {                                                                             \
            fail_msg("%s row %zu: %s (line %d)", at_what, at_row, #c, __LINE__);                \
        }                                                                                       \
    } while (0)

#define EXPECT_EQ(a, b)                                                                         \
    do {                                                                                        \
        long long a_ = (long long)(a);                                                          \
        long long b_ = (long long)(b);                                                          \
        if (a_ != b_) {                                                                         \
            fail_msg("%s row %zu: %s is %lld, want %lld (line %d)", at_what, at_row, #a, a_,   \
                     b_, __LINE__);                                                             \
        }                                                                                       \
    } while (0)

/* Strings for tables: STR("lit") or BIG(n), n bytes of a long pattern.
 * Never {NULL, 0}: the encoders memcpy from s.p even when s.n is 0. */
#define STR(lit) {(lit), sizeof(lit) - 1}
#define BIG(n) {big, (n)}

static char big[SMAX + 2];     /* no NUL: for struct wm_tun_str */
static char z_max[SMAX + 1];   /* NUL-terminated, strlen SMAX */
static char z_over[SMAX + 2];  /* NUL-terminated, strlen SMAX + 1 */
static struct wm_tun_mapping *reg_out; /* WM_TUN_MAX_MAPPINGS, for checked decodes */

/* ---- bytes built from the spec, independently of frame.c ---- */

struct msg {
    uint8_t b[ENC_MAX];
    size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
    assert_true(n <= sizeof(m->b) - m->n);
    if (n > 0) {
        memcpy(m->b + m->n, p, n);
    }
    m->n += n;
}

static void put_u8(struct msg *m, uint8_t v)
{
    put(m, &v, 1);
}

static void put_u16(struct msg *m, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

    put(m, b, 2);
}

static void put_u32(struct msg *m, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    put(m, b, 4);
}

static void put_fill(struct msg *m, uint8_t c, size_t n)
{
    assert_true(n <= sizeof(m->b) - m->n);
    memset(m->b + m->n, c, n);
    m->n += n;
}

/* Strings are a 2-byte length, then the bytes. */
static void put_str(struct msg *m, struct wm_tun_str s)
{
    put_u16(m, (uint16_t)s.n);
    put(m, s.p, s.n);
}

/* Exact-size heap copy of p[0..n) (n == 0 still allocates). */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);

    assert_non_null(d);
    if (n > 0) {
        memcpy(d, p, n);
    }
    return d;
}

/* Nonce/MAC contents for tables: 0 zeros, -1 all 0xff, else seed + i. */
static void pattern(uint8_t *b, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = seed == 0 ? 0 : seed < 0 ? 0xff : (uint8_t)(seed + (int)i);
    }
}

/* A decoded string points into the decoded buffer (or is empty). */
static bool str_inside(struct wm_tun_str s, const uint8_t *d, size_t n)
{
    if (s.n == 0) {
        return s.p != NULL;
    }
    return (const uint8_t *)s.p >= d && (const uint8_t *)s.p + s.n <= d + n;
}

static void expect_bytes(const struct msg *m, const uint8_t *p, size_t n)
{
    EXPECT_EQ(m->n, n);
    EXPECT(memcmp(m->b, p, n) == 0);
}

/* ---- one codec: spec builder, encoder, checked decoder ---- */

struct codec {
    const char *name;
    size_t (*enc)(uint8_t *out, size_t cap, const void *v);
    void (*build)(struct msg *m, const void *v);
    int (*chk)(const uint8_t *p, size_t n);
    size_t rest;        /* OPEN_RESULT/RST/GOAWAY: bytes before the trailing reason */
    const void *sample; /* a valid value, seed for mutations */
};

/* HELLO: version (1), window (4), name (string). */
static void build_hello(struct msg *m, const void *v)
{
    const struct wm_tun_hello *h = v;

    put_u8(m, h->version);
    put_u32(m, h->window);
    put_str(m, h->name);
}

static size_t enc_hello(uint8_t *out, size_t cap, const void *v)
{
    return wm_tun_hello_encode(out, cap, v);
}

static int chk_hello(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    struct wm_tun_hello o;
    int r = wm_tun_hello_decode(d, n, &o);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(o.window >= 1024 && o.window <= 0x7fffffffu);
        EXPECT(str_inside(o.name, d, n));
        m.n = 0;
        build_hello(&m, &o);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* CHALLENGE: nonce (32), flags (1), window (4). */
static void build_challenge(struct msg *m, const void *v)
{
    const struct wm_tun_challenge *c = v;

    put(m, c->nonce, WM_TUN_NONCE);
    put_u8(m, c->flags);
    put_u32(m, c->window);
}

static size_t enc_challenge(uint8_t *out, size_t cap, const void *v)
{
    return wm_tun_challenge_encode(out, cap, v);
}

static int chk_challenge(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    struct wm_tun_challenge o;
    int r = wm_tun_challenge_decode(d, n, &o);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(o.flags <= (WM_TUN_CH_AUTH | WM_TUN_CH_TLS));
        EXPECT(o.window >= 1024 && o.window <= 0x7fffffffu);
        m.n = 0;
        build_challenge(&m, &o);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* AUTH: nonce (32), user (string), mac (32). */
static void build_auth(struct msg *m, const void *v)
{
    const struct wm_tun_auth *a = v;

    put(m, a->nonce, WM_TUN_NONCE);
    put_str(m, a->user);
    put(m, a->mac, WM_TUN_MAC);
}

static size_t enc_auth(uint8_t *out, size_t cap, const void *v)
{
    return wm_tun_auth_encode(out, cap, v);
}

static int chk_auth(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    struct wm_tun_auth o;
    int r = wm_tun_auth_decode(d, n, &o);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(str_inside(o.user, d, n));
        m.n = 0;
        build_auth(&m, &o);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* AUTH_RESULT: ok (1), mac (32), reason (string). */
static void build_auth_result(struct msg *m, const void *v)
{
    const struct wm_tun_auth_result *a = v;

    put_u8(m, a->ok);
    put(m, a->mac, WM_TUN_MAC);
    put_str(m, a->reason);
}

static size_t enc_auth_result(uint8_t *out, size_t cap, const void *v)
{
    return wm_tun_auth_result_encode(out, cap, v);
}

static int chk_auth_result(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    struct wm_tun_auth_result o;
    int r = wm_tun_auth_result_decode(d, n, &o);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(o.ok <= 1);
        EXPECT(str_inside(o.reason, d, n));
        m.n = 0;
        build_auth_result(&m, &o);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* REGISTER: count (2), then per mapping name, mode (1), domain, port (2),
 * bind, group, nrules (2), then per rule request (1), op (1), name, value. */
struct regv {
    const struct wm_tun_mapping *m;
    size_t count;
};

static void build_register(struct msg *m, const void *v)
{
    const struct regv *rv = v;

    put_u16(m, (uint16_t)rv->count);
    for (size_t i = 0; i < rv->count; i++) {
        const struct wm_tun_mapping *p = &rv->m[i];

        put_str(m, p->name);
        put_u8(m, p->mode);
        put_str(m, p->domain);
        put_u16(m, p->remote_port);
        put_str(m, p->bind);
        put_str(m, p->group);
        put_u16(m, p->nrules);
        for (size_t k = 0; k < p->nrules; k++) {
            put_u8(m, p->rules[k].request);
            put_u8(m, p->rules[k].op);
            put_str(m, p->rules[k].name);
            put_str(m, p->rules[k].value);
        }
    }
}

static size_t enc_register(uint8_t *out, size_t cap, const void *v)
{
    const struct regv *rv = v;

    return wm_tun_register_encode(out, cap, rv->m, rv->count);
}

static bool mapping_ok(const struct wm_tun_mapping *p, const uint8_t *d, size_t n)
{
    if (p->mode < WM_TUN_MODE_HTTP || p->mode > WM_TUN_MODE_UDP || p->name.n == 0 ||
        p->nrules > WM_TUN_MAX_RULES || !str_inside(p->name, d, n) ||
        !str_inside(p->domain, d, n) || !str_inside(p->bind, d, n) ||
        !str_inside(p->group, d, n)) {
        return false;
    }
    for (size_t k = 0; k < p->nrules; k++) {
        const struct wm_tun_rule *h = &p->rules[k];

        if (h->request > 1 || (h->op != '+' && h->op != '-' && h->op != '=') ||
            !str_inside(h->name, d, n) || !str_inside(h->value, d, n)) {
            return false;
        }
    }
    return true;
}

static int chk_register(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    int r = wm_tun_register_decode(d, n, reg_out, WM_TUN_MAX_MAPPINGS);

    EXPECT(r >= -1 && r <= WM_TUN_MAX_MAPPINGS);
    if (r >= 0) {
        struct regv rv = {reg_out, (size_t)r};

        for (int i = 0; i < r; i++) {
            EXPECT(mapping_ok(&reg_out[i], d, n));
        }
        m.n = 0;
        build_register(&m, &rv);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* REGISTER_RESULT: count (2), then per entry ok (1), reason (string). */
struct rrv {
    const uint8_t *ok;
    const char *const *reason;
    size_t count;
};

static void build_register_result(struct msg *m, const void *v)
{
    const struct rrv *rv = v;

    put_u16(m, (uint16_t)rv->count);
    for (size_t i = 0; i < rv->count; i++) {
        struct wm_tun_str s = {rv->reason[i], strlen(rv->reason[i])};

        put_u8(m, rv->ok[i]);
        put_str(m, s);
    }
}

static size_t enc_register_result(uint8_t *out, size_t cap, const void *v)
{
    const struct rrv *rv = v;

    return wm_tun_register_result_encode(out, cap, rv->ok, rv->reason, rv->count);
}

static int chk_register_result(const uint8_t *p, size_t n)
{
    static struct msg m;
    static uint8_t ok[RR_MAX];
    static struct wm_tun_str reason[RR_MAX];
    uint8_t *d = dup_exact(p, n);
    int r = wm_tun_register_result_decode(d, n, ok, reason, RR_MAX);

    EXPECT(r >= -1 && r <= RR_MAX);
    if (r >= 0) {
        /* Reasons may hold NUL bytes: build from the decoded lengths. */
        m.n = 0;
        put_u16(&m, (uint16_t)r);
        for (int i = 0; i < r; i++) {
            EXPECT(ok[i] <= 1);
            EXPECT(str_inside(reason[i], d, n));
            put_u8(&m, ok[i]);
            put_str(&m, reason[i]);
        }
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* OPEN: kind (1), name (string, MAPPING only), peer (string). */
static void build_open(struct msg *m, const void *v)
{
    const struct wm_tun_open *o = v;

    put_u8(m, o->kind);
    if (o->kind == WM_TUN_OPEN_MAPPING) {
        put_str(m, o->name);
    }
    put_str(m, o->peer);
}

static size_t enc_open(uint8_t *out, size_t cap, const void *v)
{
    return wm_tun_open_encode(out, cap, v);
}

static int chk_open(const uint8_t *p, size_t n)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    struct wm_tun_open o;
    int r = wm_tun_open_decode(d, n, &o);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(o.kind == WM_TUN_OPEN_PROXY || o.kind == WM_TUN_OPEN_MAPPING);
        EXPECT(o.kind == WM_TUN_OPEN_MAPPING ? o.name.n > 0 : o.name.n == 0);
        EXPECT(str_inside(o.name, d, n));
        EXPECT(str_inside(o.peer, d, n));
        m.n = 0;
        build_open(&m, &o);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

/* OPEN_RESULT: code (1), RST/GOAWAY: code (4); then the reason, to the end. */
struct codev {
    uint32_t code;
    const char *reason; /* NULL: none */
};

static void build_code(struct msg *m, bool wide, const struct codev *c)
{
    if (wide) {
        put_u32(m, c->code);
    } else {
        put_u8(m, (uint8_t)c->code);
    }
    if (c->reason != NULL) {
        put(m, c->reason, strlen(c->reason));
    }
}

static void build_code8(struct msg *m, const void *v)
{
    build_code(m, false, v);
}

static void build_code32(struct msg *m, const void *v)
{
    build_code(m, true, v);
}

static size_t enc_code8(uint8_t *out, size_t cap, const void *v)
{
    const struct codev *c = v;

    return wm_tun_code_encode(out, cap, false, c->code, c->reason);
}

static size_t enc_code32(uint8_t *out, size_t cap, const void *v)
{
    const struct codev *c = v;

    return wm_tun_code_encode(out, cap, true, c->code, c->reason);
}

static int chk_code(const uint8_t *p, size_t n, bool wide)
{
    static struct msg m;
    uint8_t *d = dup_exact(p, n);
    uint32_t code = 0xdeadbeef;
    struct wm_tun_str reason;
    int r = wm_tun_code_decode(d, n, wide, &code, &reason);

    EXPECT(r == 0 || r == -1);
    if (r == 0) {
        EXPECT(wide || code <= 0xff);
        EXPECT(reason.n <= SMAX);
        EXPECT(str_inside(reason, d, n));
        m.n = 0;
        if (wide) {
            put_u32(&m, code);
        } else {
            put_u8(&m, (uint8_t)code);
        }
        put(&m, reason.p, reason.n);
        expect_bytes(&m, d, n);
    }
    free(d);
    return r;
}

static int chk_code8(const uint8_t *p, size_t n)
{
    return chk_code(p, n, false);
}

static int chk_code32(const uint8_t *p, size_t n)
{
    return chk_code(p, n, true);
}

/* Samples: one valid value per codec. */
static const struct wm_tun_hello sample_hello = {1, 256 * 1024, STR("edge-01")};
static const struct wm_tun_challenge sample_challenge = {{1, 2, 3, 4, 5, 6, 7, 8}, 1, 65536};
static const struct wm_tun_auth sample_auth = {{9, 8, 7}, STR("alice"), {0xaa, 0xbb}};
static const struct wm_tun_auth_result sample_auth_result = {1, {0x11, 0x22}, STR("")};
static const struct wm_tun_mapping sample_maps[2] = {
    {STR("web"), WM_TUN_MODE_HTTP, STR("*.example.com"), 0, STR(""), STR("blue"), 2,
     {{1, '+', STR("X-Tunnel"), STR("1")}, {0, '-', STR("Server"), STR("")}}},
    {STR("pg"), WM_TUN_MODE_TCP, STR(""), 15432, STR("0.0.0.0"), STR(""), 0, {{0}}},
};
static const struct regv sample_register = {sample_maps, 2};
static const uint8_t sample_rr_ok[3] = {1, 0, 1};
static const char *const sample_rr_reason[3] = {"", "domain owned by client b", ""};
static const struct rrv sample_register_result = {sample_rr_ok, sample_rr_reason, 3};
static const struct wm_tun_open sample_open = {WM_TUN_OPEN_MAPPING, STR("web"),
                                               STR("203.0.113.9:40000")};
static const struct codev sample_code = {WM_TUN_ERR_PROTOCOL, "bad frame"};

enum { C_HELLO, C_CHALLENGE, C_AUTH, C_AUTH_RESULT, C_REGISTER, C_REGISTER_RESULT, C_OPEN,
       C_CODE8, C_CODE32, C_COUNT };

static const struct codec codecs[C_COUNT] = {
    [C_HELLO] = {"hello", enc_hello, build_hello, chk_hello, 0, &sample_hello},
    [C_CHALLENGE] = {"challenge", enc_challenge, build_challenge, chk_challenge, 0,
                     &sample_challenge},
    [C_AUTH] = {"auth", enc_auth, build_auth, chk_auth, 0, &sample_auth},
    [C_AUTH_RESULT] = {"auth_result", enc_auth_result, build_auth_result, chk_auth_result, 0,
                       &sample_auth_result},
    [C_REGISTER] = {"register", enc_register, build_register, chk_register, 0,
                    &sample_register},
    [C_REGISTER_RESULT] = {"register_result", enc_register_result, build_register_result,
                           chk_register_result, 0, &sample_register_result},
    [C_OPEN] = {"open", enc_open, build_open, chk_open, 0, &sample_open},
    [C_CODE8] = {"open_result code", enc_code8, build_code8, chk_code8, 1, &sample_code},
    [C_CODE32] = {"rst/goaway code", enc_code32, build_code32, chk_code32, 4, &sample_code},
};

/* ---- the generic row check ---- */

/* Every cap below need is refused with nothing written at or past cap. */
static void check_caps(const struct codec *c, const void *v, size_t need)
{
    for (size_t cap = 0; cap < need; cap++) {
        uint8_t *out = malloc(cap + 1);

        assert_non_null(out);
        out[cap] = 0xa5;
        if (c->enc(out, cap, v) != 0) {
            fail_msg("%s row %zu: cap %zu of %zu accepted", at_what, at_row, cap, need);
        }
        EXPECT_EQ(out[cap], 0xa5);
        free(out);
    }
}

/* A valid encoding: strict prefixes and one trailing byte are refused,
 * except that a trailing reason (OPEN_RESULT, RST, GOAWAY) takes them in. */
static void check_framing(const struct codec *c, const uint8_t *p, size_t n, int dec)
{
    static const uint8_t extra[] = {0x00, 0x01, 0xff};
    static uint8_t longer[ENC_MAX + 1];

    for (size_t k = 0; k < n; k++) {
        int want = c->rest == 0 || k < c->rest ? -1 : 0;

        if (c->chk(p, k) != want) {
            fail_msg("%s row %zu: prefix %zu of %zu: want %d", at_what, at_row, k, n, want);
        }
    }
    memcpy(longer, p, n);
    for (size_t i = 0; i < NELEM(extra); i++) {
        int want = c->rest == 0 || n + 1 - c->rest > SMAX ? -1 : 0;

        longer[n] = extra[i];
        EXPECT_EQ(c->chk(longer, n + 1), want);
    }
    EXPECT_EQ(c->chk(p, n), dec);
}

/* One table row: enc says whether the encoder must accept the value; dec is
 * what decoding the spec's bytes for it must return. */
static void check_row(const struct codec *c, size_t row, const void *v, bool enc, int dec)
{
    static struct msg want;
    static uint8_t out[ENC_MAX];
    size_t n;

    at_what = c->name;
    at_row = row;
    want.n = 0;
    c->build(&want, v);
    n = c->enc(out, sizeof(out), v);
    if (!enc) {
        EXPECT_EQ(n, 0);
        check_caps(c, v, want.n + 2);
        EXPECT_EQ(c->chk(want.b, want.n), dec);
        return;
    }
    expect_bytes(&want, out, n);
    EXPECT_EQ(c->enc(out, n, v), n);
    EXPECT_EQ(c->enc(out, n + 1, v), n);
    check_caps(c, v, n);
    EXPECT_EQ(c->chk(out, n), dec);
    if (dec >= 0) {
        check_framing(c, out, n, dec);
    }
}

/* ---- header ---- */

static int hdr_decode(const uint8_t b[WM_TUN_HDR], struct wm_tun_hdr *h)
{
    uint8_t *d = dup_exact(b, WM_TUN_HDR);
    int r = wm_tun_hdr_decode(d, h);

    free(d);
    return r;
}

static void test_hdr_table(void **state)
{
    static const struct {
        uint32_t len;
        uint8_t type;
        uint8_t flags;
        uint32_t sid;
        uint8_t b[WM_TUN_HDR];
    } rows[] = {
        {0, WM_TUN_DATA, WM_TUN_FLAG_FIN, 1, {0, 0, 0, 0x00, 0x01, 0, 0, 0, 1}},
        {WM_TUN_MAX_PAYLOAD, WM_TUN_DATA, 0, 3, {0, 0x3f, 0xf7, 0x00, 0, 0, 0, 0, 3}},
        {17, WM_TUN_OPEN, 0, 0x7fffffff, {0, 0, 17, 0x01, 0, 0x7f, 0xff, 0xff, 0xff}},
        {5, WM_TUN_OPEN_RESULT, 0, 2, {0, 0, 5, 0x02, 0, 0, 0, 0, 2}},
        {4, WM_TUN_RST, 0, 0x01020304, {0, 0, 4, 0x03, 0, 1, 2, 3, 4}},
        {4, WM_TUN_WINDOW_UPDATE, 0, 0x10000, {0, 0, 4, 0x04, 0, 0, 1, 0, 0}},
        {8, WM_TUN_PING, WM_TUN_FLAG_ACK, 0, {0, 0, 8, 0x05, 1, 0, 0, 0, 0}},
        {18, WM_TUN_GOAWAY, 0, 0, {0, 0, 18, 0x06, 0, 0, 0, 0, 0}},
        {0x0100, WM_TUN_HELLO, 0, 0, {0, 1, 0, 0x10, 0, 0, 0, 0, 0}},
        {37, WM_TUN_CHALLENGE, 0, 0, {0, 0, 37, 0x11, 0, 0, 0, 0, 0}},
        {66, WM_TUN_AUTH, 0xff, 0, {0, 0, 66, 0x12, 0xff, 0, 0, 0, 0}},
        {35, WM_TUN_AUTH_RESULT, 0, 0, {0, 0, 35, 0x13, 0, 0, 0, 0, 0}},
        {0x2000, WM_TUN_REGISTER, 0, 0, {0, 0x20, 0, 0x14, 0, 0, 0, 0, 0}},
        {2, WM_TUN_REGISTER_RESULT, 0, 0, {0, 0, 2, 0x15, 0, 0, 0, 0, 0}},
        {0x12345, 0x99, 0x80, 0x00abcdef, {1, 0x23, 0x45, 0x99, 0x80, 0, 0xab, 0xcd, 0xef}},
    };

    (void)state;
    at_what = "hdr";
    for (size_t i = 0; i < NELEM(rows); i++) {
        uint8_t b[WM_TUN_HDR];
        struct wm_tun_hdr h;

        at_row = i;
        wm_tun_hdr_encode(b, rows[i].len, rows[i].type, rows[i].flags, rows[i].sid);
        EXPECT(memcmp(b, rows[i].b, WM_TUN_HDR) == 0);
        if (rows[i].len > WM_TUN_MAX_PAYLOAD) {
            EXPECT_EQ(hdr_decode(b, &h), -1); /* the last row: too long */
            continue;
        }
        EXPECT_EQ(hdr_decode(b, &h), 0);
        EXPECT_EQ(h.len, rows[i].len);
        EXPECT_EQ(h.type, rows[i].type);
        EXPECT_EQ(h.flags, rows[i].flags);
        EXPECT_EQ(h.sid, rows[i].sid);
    }
}

/* Every type x flags x stream id x length decodes to what was encoded. */
static void test_hdr_roundtrip_all(void **state)
{
    static const uint8_t types[] = {
        WM_TUN_DATA, WM_TUN_OPEN, WM_TUN_OPEN_RESULT, WM_TUN_RST, WM_TUN_WINDOW_UPDATE,
        WM_TUN_PING, WM_TUN_GOAWAY, WM_TUN_HELLO, WM_TUN_CHALLENGE, WM_TUN_AUTH,
        WM_TUN_AUTH_RESULT, WM_TUN_REGISTER, WM_TUN_REGISTER_RESULT,
    };
    static const uint8_t flags[] = {0, WM_TUN_FLAG_FIN, 0x02, 0x80, 0xff};
    static const uint32_t sids[] = {0, 1, 2, 255, 256, 0xffff, 0x10000, 0x00800000,
                                    0x7ffffffe, 0x7fffffff};
    static const uint32_t lens[] = {0, 1, 4, 8, 255, 256, 4096, WM_TUN_MAX_PAYLOAD - 1,
                                    WM_TUN_MAX_PAYLOAD};

    (void)state;
    at_what = "hdr round trip";
    at_row = 0;
    for (size_t t = 0; t < NELEM(types); t++) {
        for (size_t f = 0; f < NELEM(flags); f++) {
            for (size_t s = 0; s < NELEM(sids); s++) {
                for (size_t l = 0; l < NELEM(lens); l++, at_row++) {
                    uint8_t b[WM_TUN_HDR];
                    struct wm_tun_hdr h;

                    wm_tun_hdr_encode(b, lens[l], types[t], flags[f], sids[s]);
                    EXPECT_EQ(hdr_decode(b, &h), 0);
                    EXPECT(h.len == lens[l] && h.type == types[t] && h.flags == flags[f] &&
                           h.sid == sids[s]);
                }
            }
        }
    }
}

/* Reserved bit set, or a payload over WM_TUN_MAX_PAYLOAD. */
static void test_hdr_bad(void **state)
{
    static const struct {
        uint32_t len;
        uint32_t sid;
    } rows[] = {
        {0, 0x80000000u},
        {4, 0x80000001u},
        {8, 0xffffffffu},
        {WM_TUN_MAX_PAYLOAD, 0x80000000u},
        {WM_TUN_MAX_PAYLOAD + 1, 0},
        {WM_TUN_MAX_PAYLOAD + 1, 1},
        {WM_TUN_MAX_FRAME, 1},
        {0x10000, 0},
        {0x7fffff, 5},
        {0xffffff, 0},
        {0xffffff, 0x7fffffff},
        {0xffffff, 0xffffffffu},
    };
    static const uint8_t types[] = {WM_TUN_DATA, WM_TUN_PING, WM_TUN_HELLO, 0x42};

    (void)state;
    at_what = "hdr bad";
    for (size_t i = 0; i < NELEM(rows); i++) {
        at_row = i;
        for (size_t t = 0; t < NELEM(types); t++) {
            uint8_t b[WM_TUN_HDR];
            struct wm_tun_hdr h;

            wm_tun_hdr_encode(b, rows[i].len, types[t], 0, rows[i].sid);
            EXPECT_EQ(hdr_decode(b, &h), -1);
        }
    }
}

static void test_hdr_check_table(void **state)
{
    static const struct {
        uint8_t type;
        uint32_t sid;
        uint32_t len;
        bool ok;
    } rows[] = {
        {WM_TUN_DATA, 0, 10, false},
        {WM_TUN_DATA, 1, 0, true}, /* a bare FIN */
        {WM_TUN_DATA, 0x7fffffff, WM_TUN_MAX_PAYLOAD, true},
        {WM_TUN_OPEN, 0, 5, false},
        {WM_TUN_OPEN, 1, 0, false},
        {WM_TUN_OPEN, 1, 1, true},
        {WM_TUN_OPEN, 2, 300, true},
        {WM_TUN_OPEN_RESULT, 0, 1, false},
        {WM_TUN_OPEN_RESULT, 2, 0, false},
        {WM_TUN_OPEN_RESULT, 2, 1, true},
        {WM_TUN_RST, 0, 4, false},
        {WM_TUN_RST, 1, 0, false},
        {WM_TUN_RST, 1, 3, false},
        {WM_TUN_RST, 1, 4, true},
        {WM_TUN_RST, 1, 100, true},
        {WM_TUN_WINDOW_UPDATE, 0, 4, false},
        {WM_TUN_WINDOW_UPDATE, 1, 0, false},
        {WM_TUN_WINDOW_UPDATE, 1, 3, false},
        {WM_TUN_WINDOW_UPDATE, 1, 4, true},
        {WM_TUN_WINDOW_UPDATE, 1, 5, false},
        {WM_TUN_WINDOW_UPDATE, 1, 8, false},
        {WM_TUN_PING, 1, 8, false},
        {WM_TUN_PING, 0, 0, false},
        {WM_TUN_PING, 0, 7, false},
        {WM_TUN_PING, 0, 8, true},
        {WM_TUN_PING, 0, 9, false},
        {WM_TUN_PING, 0, 16, false},
        {WM_TUN_GOAWAY, 1, 4, false},
        {WM_TUN_GOAWAY, 0, 0, false},
        {WM_TUN_GOAWAY, 0, 3, false},
        {WM_TUN_GOAWAY, 0, 4, true},
        {WM_TUN_GOAWAY, 0, 40, true},
        {WM_TUN_HELLO, 0, 7, true},
        {WM_TUN_HELLO, 1, 7, false},
        {WM_TUN_CHALLENGE, 0, 37, true},
        {WM_TUN_CHALLENGE, 2, 37, false},
        {WM_TUN_AUTH, 0, 66, true},
        {WM_TUN_AUTH, 0x7fffffff, 66, false},
        {WM_TUN_AUTH_RESULT, 0, 35, true},
        {WM_TUN_AUTH_RESULT, 3, 35, false},
        {WM_TUN_REGISTER, 0, 2, true},
        {WM_TUN_REGISTER, 1, 2, false},
        {WM_TUN_REGISTER_RESULT, 0, 2, true},
        {WM_TUN_REGISTER_RESULT, 4, 2, false},
    };

    (void)state;
    at_what = "hdr check";
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_hdr h = {rows[i].len, rows[i].type, 0, rows[i].sid};
        const char *why = wm_tun_hdr_check(&h);

        at_row = i;
        if (rows[i].ok) {
            EXPECT(why == NULL);
        } else {
            EXPECT(why != NULL && why[0] != '\0');
        }
        EXPECT(strcmp(wm_tun_type_name(rows[i].type), "?") != 0);
    }
}

/* 0x07..0x0f and 0x16..0xff: unknown on any stream with any length. */
static void test_hdr_check_unknown(void **state)
{
    static const uint32_t sids[] = {0, 1, 2, 0x7fffffff};
    static const uint32_t lens[] = {0, 1, 4, 8, WM_TUN_MAX_PAYLOAD};

    (void)state;
    at_what = "hdr check unknown type";
    for (unsigned t = 0x07; t <= 0xff; t++) {
        if (t >= WM_TUN_HELLO && t <= WM_TUN_REGISTER_RESULT) {
            continue;
        }
        at_row = t;
        EXPECT(strcmp(wm_tun_type_name((uint8_t)t), "?") == 0);
        for (size_t s = 0; s < NELEM(sids); s++) {
            for (size_t l = 0; l < NELEM(lens); l++) {
                struct wm_tun_hdr h = {lens[l], (uint8_t)t, 0, sids[s]};
                const char *why = wm_tun_hdr_check(&h);

                EXPECT(why != NULL && why[0] != '\0');
            }
        }
    }
}

/* ---- handshake payloads ---- */

static void test_hello_table(void **state)
{
    static const struct {
        uint8_t version;
        uint32_t window;
        struct wm_tun_str name;
        bool enc;
        int dec;
    } rows[] = {
        {1, 1024, STR(""), true, 0},
        {1, 1025, STR("x"), true, 0},
        {1, 256 * 1024, STR("edge-01"), true, 0},
        {0, 0x7fffffff, BIG(SMAX), true, 0},
        {255, 65536, STR("a\0b"), true, 0},
        {1, 1023, STR("n"), true, -1},
        {1, 0, STR(""), true, -1},
        {1, 0x80000000u, STR("n"), true, -1},
        {1, 0xffffffffu, STR("n"), true, -1},
        {1, 4096, BIG(SMAX + 1), false, -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_hello v = {rows[i].version, rows[i].window, rows[i].name};

        check_row(&codecs[C_HELLO], i, &v, rows[i].enc, rows[i].dec);
    }
}

static void test_challenge_table(void **state)
{
    static const struct {
        int nonce;
        uint8_t flags;
        uint32_t window;
        int dec;
    } rows[] = {
        {0, 0, 1024, 0},
        {1, 1, 256 * 1024, 0},
        {-1, 1, 0x7fffffff, 0},
        {7, 0, 1u << 20, 0},
        {1, 2, 4096, 0}, /* TLS */
        {1, 3, 4096, 0}, /* credentials and TLS */
        {1, 4, 4096, -1},
        {1, 0xff, 4096, -1},
        {1, 0, 1023, -1},
        {1, 0, 0, -1},
        {1, 1, 0x80000000u, -1},
        {1, 1, 0xffffffffu, -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_challenge v;

        pattern(v.nonce, sizeof(v.nonce), rows[i].nonce);
        v.flags = rows[i].flags;
        v.window = rows[i].window;
        check_row(&codecs[C_CHALLENGE], i, &v, true, rows[i].dec);
    }
}

static void test_auth_table(void **state)
{
    static const struct {
        int nonce;
        struct wm_tun_str user;
        int mac;
        bool enc;
    } rows[] = {
        {0, STR(""), 0, true}, /* no credentials */
        {1, STR("alice"), 2, true},
        {-1, STR("\0nul"), -1, true},
        {3, BIG(1), 4, true},
        {5, BIG(SMAX), 6, true},
        {7, BIG(SMAX + 1), 8, false},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_auth v;

        pattern(v.nonce, sizeof(v.nonce), rows[i].nonce);
        v.user = rows[i].user;
        pattern(v.mac, sizeof(v.mac), rows[i].mac);
        check_row(&codecs[C_AUTH], i, &v, rows[i].enc, rows[i].enc ? 0 : -1);
    }
}

static void test_auth_result_table(void **state)
{
    static const struct {
        uint8_t ok;
        int mac;
        struct wm_tun_str reason;
        bool enc;
        int dec;
    } rows[] = {
        {1, 5, STR(""), true, 0},
        {1, 0, STR(""), true, 0}, /* server without credentials */
        {0, 0, STR("wrong credentials"), true, 0},
        {1, -1, BIG(SMAX), true, 0},
        {2, 0, STR(""), true, -1},
        {0x80, 1, STR("x"), true, -1},
        {0xff, 1, STR("x"), true, -1},
        {0, 0, BIG(SMAX + 1), false, -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_auth_result v;

        v.ok = rows[i].ok;
        pattern(v.mac, sizeof(v.mac), rows[i].mac);
        v.reason = rows[i].reason;
        check_row(&codecs[C_AUTH_RESULT], i, &v, rows[i].enc, rows[i].dec);
    }
}

/* ---- REGISTER ---- */

struct reg_row {
    size_t count; /* copies of the mapping */
    struct wm_tun_str name;
    uint8_t mode;
    struct wm_tun_str domain;
    uint16_t port;
    struct wm_tun_str bind;
    struct wm_tun_str group;
    uint16_t nrules; /* rules cycle through valid ops; the last one is: */
    uint8_t req;
    uint8_t op;
    struct wm_tun_str rname;
    struct wm_tun_str rvalue;
    bool enc;
    int dec;
};

/* Rows leave most strings out: {NULL, 0} stands for a default. */
static struct wm_tun_str or_default(struct wm_tun_str s, const char *dflt)
{
    struct wm_tun_str d = {dflt, strlen(dflt)};

    return s.p != NULL ? s : d;
}

/* count copies of the row's mapping (defaults: name "m", other strings "",
 * last rule "X" ""), in an exact-size heap array. */
static struct wm_tun_mapping *reg_make(const struct reg_row *r)
{
    static const struct wm_tun_str hname = STR("X-Rule");
    static const struct wm_tun_str hvalue = STR("v");
    struct wm_tun_mapping *m = calloc(r->count ? r->count : 1, sizeof(*m));

    assert_non_null(m);
    for (size_t i = 0; i < r->count; i++) {
        m[i].name = or_default(r->name, "m");
        m[i].mode = r->mode;
        m[i].domain = or_default(r->domain, "");
        m[i].remote_port = r->port;
        m[i].bind = or_default(r->bind, "");
        m[i].group = or_default(r->group, "");
        m[i].nrules = r->nrules;
        for (size_t k = 0; k < r->nrules; k++) {
            bool last = k + 1 == r->nrules;
            struct wm_tun_rule *h = &m[i].rules[k];

            h->request = last ? r->req : (uint8_t)(k & 1);
            h->op = last ? r->op : (uint8_t)"+-="[k % 3];
            h->name = last ? or_default(r->rname, "X") : hname;
            h->value = last ? or_default(r->rvalue, "") : hvalue;
        }
    }
    return m;
}

#define M(n, mo) .count = (n), .mode = (mo)

static void test_register_table(void **state)
{
    static const struct reg_row rows[] = {
        {M(0, WM_TUN_MODE_HTTP), .enc = true, .dec = 0},
        {M(1, WM_TUN_MODE_HTTP), .name = STR("web"), .domain = STR("app.example.com"),
         .enc = true, .dec = 1},
        {M(1, WM_TUN_MODE_HTTPS), .domain = STR("*.example.com"), .port = 443,
         .group = STR("blue"), .nrules = 1, .req = 1, .op = '+',
         .rname = STR("X-Forwarded-Proto"), .rvalue = STR("https"), .enc = true, .dec = 1},
        {M(3, WM_TUN_MODE_TCP), .name = STR("db"), .port = 5432, .bind = STR("0.0.0.0:15432"),
         .group = STR("pg"), .nrules = 3, .req = 0, .op = '=', .rname = STR("Host"),
         .rvalue = STR("db.internal"), .enc = true, .dec = 3},
        {M(1, WM_TUN_MODE_PROXY), .port = 65535, .bind = STR("127.0.0.1:1080"),
         .nrules = WM_TUN_MAX_RULES, .req = 0, .op = '-', .rname = STR("Server"), .enc = true,
         .dec = 1},
        {M(WM_TUN_MAX_MAPPINGS, WM_TUN_MODE_TCP), .enc = true, .dec = WM_TUN_MAX_MAPPINGS},
        {M(1, WM_TUN_MODE_HTTP), .name = BIG(SMAX), .domain = BIG(SMAX), .port = 80,
         .bind = BIG(SMAX), .group = BIG(SMAX), .nrules = 1, .req = 1, .op = '=',
         .rname = BIG(SMAX), .rvalue = BIG(SMAX), .enc = true, .dec = 1},
        /* encodable, refused by the decoder */
        {M(1, 0), .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_UDP + 1), .enc = true, .dec = -1},
        {M(2, 0xff), .enc = true, .dec = -1},
        {M(2, WM_TUN_MODE_HTTP), .name = STR(""), .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 2, .req = 0, .op = '*', .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 1, .req = 0, .op = 0, .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 1, .req = 0, .op = 'a', .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 3, .req = 2, .op = '+', .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 1, .req = 0xff, .op = '-', .enc = true, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 1, .req = 1, .op = '+', .rname = STR(""),
         .enc = true, .dec = -1},
        /* refused by the encoder (and by the decoder when built by hand) */
        {M(WM_TUN_MAX_MAPPINGS + 1, WM_TUN_MODE_TCP), .enc = false, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .domain = BIG(SMAX + 1), .enc = false, .dec = -1},
        {M(1, WM_TUN_MODE_TCP), .bind = BIG(SMAX + 1), .enc = false, .dec = -1},
        {M(1, WM_TUN_MODE_TCP), .group = BIG(SMAX + 1), .enc = false, .dec = -1},
        {M(1, WM_TUN_MODE_HTTP), .nrules = 1, .req = 0, .op = '+', .rvalue = BIG(SMAX + 1),
         .enc = false, .dec = -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_mapping *m = reg_make(&rows[i]);
        struct regv v = {m, rows[i].count};

        check_row(&codecs[C_REGISTER], i, &v, rows[i].enc, rows[i].dec);
        free(m);
    }

    /* Regression (fixed): more rules than WM_TUN_MAX_RULES used to be read
     * past the end of rules[]; the encoder now refuses them. */
    {
        struct wm_tun_mapping *m = calloc(1, sizeof(*m));
        uint8_t out[256];
        assert_non_null(m);
        m->name.p = "n";
        m->name.n = 1;
        m->mode = WM_TUN_MODE_HTTP;
        m->nrules = WM_TUN_MAX_RULES + 1;
        assert_int_equal(wm_tun_register_encode(out, sizeof(out), m, 1), 0);
        free(m);
    }
}

/* More mappings than the caller's max; out has exactly max entries. */
static void test_register_max(void **state)
{
    static const struct {
        size_t count;
        size_t max;
        int dec;
    } rows[] = {
        {0, 0, 0}, {1, 0, -1}, {1, 1, 1}, {2, 1, -1}, {5, 5, 5}, {5, 6, 5}, {6, 5, -1},
        {WM_TUN_MAX_MAPPINGS, WM_TUN_MAX_MAPPINGS, WM_TUN_MAX_MAPPINGS},
        {WM_TUN_MAX_MAPPINGS, WM_TUN_MAX_MAPPINGS - 1, -1},
        {WM_TUN_MAX_MAPPINGS + 1, WM_TUN_MAX_MAPPINGS + 1, -1}, /* over the protocol limit */
        {WM_TUN_MAX_MAPPINGS + 1, 1000, -1},
    };
    static const struct reg_row tmpl = {M(0, WM_TUN_MODE_HTTP), .name = STR("w"),
                                        .nrules = 1, .req = 1, .op = '=', .enc = true};
    static struct msg b;

    (void)state;
    at_what = "register max";
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct reg_row r = tmpl;
        struct wm_tun_mapping *m;
        struct wm_tun_mapping *out;
        uint8_t *d;

        at_row = i;
        r.count = rows[i].count;
        m = reg_make(&r);
        b.n = 0;
        build_register(&b, &(struct regv){m, r.count});
        out = rows[i].max ? calloc(rows[i].max, sizeof(*out)) : NULL;
        assert_true(rows[i].max == 0 || out != NULL);
        d = dup_exact(b.b, b.n);
        EXPECT_EQ(wm_tun_register_decode(d, b.n, out, rows[i].max), rows[i].dec);
        if (rows[i].dec > 0) {
            EXPECT(wm_tun_str_eq(out[rows[i].dec - 1].name, "w"));
            EXPECT_EQ(out[rows[i].dec - 1].rules[0].op, '=');
        }
        free(d);
        free(out);
        free(m);
    }
}

/* Inputs no encoder produces: too many rules, counts that lie. */
static void test_register_crafted(void **state)
{
    static const struct {
        uint16_t count;     /* declared */
        uint16_t mappings;  /* present */
        uint16_t nrules;    /* declared per mapping */
        uint16_t rules;     /* present per mapping */
        int dec;
    } rows[] = {
        {1, 1, WM_TUN_MAX_RULES, WM_TUN_MAX_RULES, 1},
        {1, 1, WM_TUN_MAX_RULES + 1, WM_TUN_MAX_RULES + 1, -1},
        {2, 2, 1, 1, 2},
        {2, 2, 0xffff, 0, -1},
        {1, 1, 2, 1, -1},   /* rule missing */
        {1, 1, 1, 2, -1},   /* rule left over */
        {1, 2, 0, 0, -1},   /* mapping left over */
        {3, 2, 0, 0, -1},   /* mapping missing */
        {0xffff, 1, 0, 0, -1},
    };
    static struct msg b;

    (void)state;
    at_what = "register crafted";
    for (size_t i = 0; i < NELEM(rows); i++) {
        static const struct wm_tun_str name = STR("svc");
        static const struct wm_tun_str empty = STR("");
        static const struct wm_tun_str hn = STR("X-A");

        at_row = i;
        b.n = 0;
        put_u16(&b, rows[i].count);
        for (size_t k = 0; k < rows[i].mappings; k++) {
            put_str(&b, name);
            put_u8(&b, WM_TUN_MODE_TCP);
            put_str(&b, empty);
            put_u16(&b, 9000);
            put_str(&b, empty);
            put_str(&b, empty);
            put_u16(&b, rows[i].nrules);
            for (size_t j = 0; j < rows[i].rules; j++) {
                put_u8(&b, 1);
                put_u8(&b, '+');
                put_str(&b, hn);
                put_str(&b, empty);
            }
        }
        EXPECT_EQ(chk_register(b.b, b.n), rows[i].dec);
    }
}

/* ---- REGISTER_RESULT ---- */

static void test_register_result_table(void **state)
{
    static const struct {
        size_t count;
        uint8_t ok;            /* entries alternate ok and 1 - ok ... */
        const char *reason;    /* ... the last one has ok and this reason */
        bool enc;
        int dec;
    } rows[] = {
        {0, 1, "", true, 0},
        {1, 1, "", true, 1},
        {1, 0, "domain app.example.com is owned by client edge-02", true, 1},
        {3, 1, "", true, 3},
        {WM_TUN_MAX_MAPPINGS, 0, "port in use", true, WM_TUN_MAX_MAPPINGS},
        {1, 1, z_max, true, 1},
        {2, 2, "", true, -1},
        {1, 0xff, "x", true, -1},
        {1, 0, z_over, false, -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        size_t c = rows[i].count;
        uint8_t *ok = calloc(c ? c : 1, 1);
        const char **reason = calloc(c ? c : 1, sizeof(*reason));
        struct rrv v = {ok, reason, c};

        assert_true(ok != NULL && reason != NULL);
        for (size_t k = 0; k < c; k++) {
            ok[k] = k + 1 == c ? rows[i].ok : (uint8_t)((c - k) & 1);
            reason[k] = k + 1 == c ? rows[i].reason : "refused";
        }
        check_row(&codecs[C_REGISTER_RESULT], i, &v, rows[i].enc, rows[i].dec);
        free(ok);
        free(reason);
    }
}

static void test_register_result_max(void **state)
{
    static const struct {
        uint16_t count;
        size_t max;
        int dec;
    } rows[] = {
        {0, 0, 0}, {1, 0, -1}, {1, 1, 1}, {2, 1, -1}, {4, 4, 4}, {4, 9, 4}, {0xffff, 3, -1},
    };
    static struct msg b;

    (void)state;
    at_what = "register_result max";
    for (size_t i = 0; i < NELEM(rows); i++) {
        static const struct wm_tun_str why = STR("no");
        uint8_t *ok = rows[i].max ? malloc(rows[i].max) : NULL;
        struct wm_tun_str *reason = rows[i].max ? malloc(rows[i].max * sizeof(*reason)) : NULL;
        uint8_t *d;

        at_row = i;
        b.n = 0;
        put_u16(&b, rows[i].count);
        for (size_t k = 0; k < rows[i].count && k < 16; k++) {
            put_u8(&b, 0);
            put_str(&b, why);
        }
        d = dup_exact(b.b, b.n);
        EXPECT_EQ(wm_tun_register_result_decode(d, b.n, ok, reason, rows[i].max),
                  rows[i].dec);
        free(d);
        free(ok);
        free(reason);
    }

    /* Regression (fixed): a count over the protocol limit used to be
     * written truncated to 16 bits; it is refused now. */
    {
        size_t count = 65536;
        uint8_t *ok = calloc(count, 1);
        const char **reason = calloc(count, sizeof(*reason));
        size_t cap = 2 + 3 * count;
        uint8_t *out = malloc(cap);
        assert_non_null(ok);
        assert_non_null(reason);
        assert_non_null(out);
        for (size_t k = 0; k < count; k++) {
            reason[k] = "";
        }
        assert_int_equal(wm_tun_register_result_encode(out, cap, ok, reason, count), 0);
        free(ok);
        free(reason);
        free(out);
    }
}

/* ---- OPEN, OPEN_RESULT, RST, GOAWAY ---- */

static void test_open_table(void **state)
{
    static const struct {
        uint8_t kind;
        struct wm_tun_str name;
        struct wm_tun_str peer;
        bool enc;
        int dec;
    } rows[] = {
        {WM_TUN_OPEN_PROXY, STR(""), STR(""), true, 0},
        {WM_TUN_OPEN_PROXY, STR(""), STR("192.0.2.7:51234"), true, 0},
        {WM_TUN_OPEN_PROXY, STR("not sent"), STR("[2001:db8::1]:443"), true, 0},
        {WM_TUN_OPEN_PROXY, STR(""), BIG(SMAX), true, 0},
        {WM_TUN_OPEN_MAPPING, STR("web"), STR("198.51.100.1:80"), true, 0},
        {WM_TUN_OPEN_MAPPING, STR("w"), STR(""), true, 0},
        {WM_TUN_OPEN_MAPPING, BIG(SMAX), BIG(SMAX), true, 0},
        {WM_TUN_OPEN_MAPPING, STR(""), STR("p"), true, -1},
        {0, STR(""), STR("p"), true, -1},
        {3, STR("web"), STR("p"), true, -1},
        {0xff, STR(""), STR(""), true, -1},
        {WM_TUN_OPEN_PROXY, STR(""), BIG(SMAX + 1), false, -1},
        {WM_TUN_OPEN_MAPPING, BIG(SMAX + 1), STR(""), false, -1},
        {WM_TUN_OPEN_MAPPING, STR("web"), BIG(SMAX + 1), false, -1},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_open v = {rows[i].kind, rows[i].name, rows[i].peer};

        check_row(&codecs[C_OPEN], i, &v, rows[i].enc, rows[i].dec);
    }
}

static void test_code_table(void **state)
{
    static const struct {
        bool wide;
        uint32_t code;
        const char *reason;
    } rows[] = {
        {false, WM_TUN_OPEN_OK, NULL},
        {false, WM_TUN_OPEN_OK, ""},
        {false, WM_TUN_OPEN_REFUSED, "connection refused"},
        {false, WM_TUN_OPEN_LIMIT, "too many streams"},
        {false, 0xff, "x"},
        {false, WM_TUN_OPEN_UNREACHABLE, z_max},
        {true, WM_TUN_ERR_NONE, NULL},
        {true, WM_TUN_ERR_CANCEL, ""},
        {true, WM_TUN_ERR_PROTOCOL, "protocol error"},
        {true, WM_TUN_ERR_SHUTDOWN, "reload"},
        {true, 0x7fffffff, "z"},
        {true, 0xffffffffu, z_max},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct codev v = {rows[i].code, rows[i].reason};

        check_row(&codecs[rows[i].wide ? C_CODE32 : C_CODE8], i, &v, true, 0);
    }
}

/* The reason is the rest of the frame: longer than SMAX is refused when
 * decoding; the encoder cuts it to SMAX (it does not refuse it). */
static void test_code_long_reason(void **state)
{
    static struct msg b;
    static uint8_t out[ENC_MAX];

    (void)state;
    at_what = "code long reason";
    for (size_t w = 0; w < 2; w++) {
        const struct codec *c = &codecs[w ? C_CODE32 : C_CODE8];
        struct codev over = {WM_TUN_ERR_PROTOCOL, z_over};

        at_row = w;
        b.n = 0;
        c->build(&b, &over);
        EXPECT_EQ(c->chk(b.b, b.n), -1);
        b.n--; /* what the encoder sends: the first SMAX bytes */
        EXPECT_EQ(c->enc(out, sizeof(out), &over), b.n);
        expect_bytes(&b, out, b.n);
        EXPECT_EQ(c->chk(out, b.n), 0);
        put_fill(&b, 'q', ENC_MAX - b.n - 1);
        EXPECT_EQ(c->chk(b.b, b.n), -1);
    }
}

/* Declared string lengths beyond the buffer (lead zero bytes, then b). */
static void test_short_strings(void **state)
{
    static const struct {
        int codec;
        size_t lead;
        uint8_t b[24];
        size_t n;
    } rows[] = {
        {C_HELLO, 0, {1, 0, 0, 0x10, 0, 0, 5, 'a', 'b'}, 9},
        {C_HELLO, 0, {1, 0, 0, 0x10, 0, 0xff, 0xff, 'a'}, 8},
        {C_HELLO, 0, {1, 0, 0, 0x10, 0, 0}, 6},
        {C_AUTH, 32, {0, 64, 'u'}, 3},
        {C_AUTH, 32, {0, 1, 'u'}, 3}, /* the MAC is missing */
        {C_AUTH, 32, {0xff, 0xff}, 2},
        {C_AUTH_RESULT, 33, {0, 9, 'r'}, 3},
        {C_AUTH_RESULT, 33, {0x04, 0x01}, 2},
        {C_OPEN, 0, {WM_TUN_OPEN_PROXY, 0, 3, 'a', 'b'}, 5},
        {C_OPEN, 0, {WM_TUN_OPEN_MAPPING, 0, 3, 'w', 'e', 'b', 0, 9, '1'}, 9},
        {C_OPEN, 0, {WM_TUN_OPEN_MAPPING, 0, 200, 'w'}, 4},
        {C_REGISTER_RESULT, 0, {0, 1, 0, 0, 7, 'x'}, 6},
        {C_REGISTER_RESULT, 0, {0, 2, 1, 0, 0, 0, 0, 1}, 8},
        {C_REGISTER, 0, {0, 1, 0, 4, 'w', 'e'}, 6},
        {C_REGISTER, 0, {0, 1, 0, 1, 'w', 1, 0, 9, 'a'}, 9},
        {C_REGISTER, 0, {0, 1, 0, 1, 'w', 3, 0, 0, 0, 0, 0, 2, 'b'}, 13},
        {C_REGISTER, 0, {0, 1, 0, 1, 'w', 3, 0, 0, 0, 0, 0, 0, 0, 5, 'g'}, 15},
        {C_REGISTER, 0, {0, 1, 0, 1, 'w', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, '+', 0, 2, 'h'},
         21},
        {C_REGISTER, 0,
         {0, 1, 0, 1, 'w', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, '+', 0, 1, 'h', 0, 3, 'v'}, 24},
    };
    static struct msg b;

    (void)state;
    for (size_t i = 0; i < NELEM(rows); i++) {
        at_what = "short string";
        at_row = i;
        b.n = 0;
        put_fill(&b, 0, rows[i].lead);
        put(&b, rows[i].b, rows[i].n);
        EXPECT_EQ(codecs[rows[i].codec].chk(b.b, b.n), -1);
    }
}

/* A few encodings written out by hand from docs/tunnel.md. */
static void test_wire_vectors(void **state)
{
    static const struct wm_tun_hello hello = {1, 0x40000, STR("ab")};
    static const struct wm_tun_open open_map = {WM_TUN_OPEN_MAPPING, STR("w"), STR("p")};
    static const struct wm_tun_open open_proxy = {WM_TUN_OPEN_PROXY, STR(""), STR("")};
    static const struct codev goaway = {WM_TUN_ERR_PROTOCOL, "x"};
    static const struct codev refused = {WM_TUN_OPEN_REFUSED, "no"};
    static const struct wm_tun_mapping map = {STR("a"), WM_TUN_MODE_TCP, STR(""), 0x1f90,
                                              STR(""), STR("g"), 1,
                                              {{1, '=', STR("H"), STR("v")}}};
    static const struct regv reg = {&map, 1};
    static const uint8_t rr_ok[1] = {0};
    static const char *const rr_reason[1] = {"no"};
    static const struct rrv rr = {rr_ok, rr_reason, 1};
    static const struct {
        int codec;
        const void *v;
        uint8_t b[40];
        size_t n;
    } rows[] = {
        {C_HELLO, &hello, {1, 0, 4, 0, 0, 0, 2, 'a', 'b'}, 9},
        {C_OPEN, &open_map, {2, 0, 1, 'w', 0, 1, 'p'}, 7},
        {C_OPEN, &open_proxy, {1, 0, 0}, 3},
        {C_CODE32, &goaway, {0, 0, 0, 3, 'x'}, 5},
        {C_CODE8, &refused, {1, 'n', 'o'}, 3},
        {C_REGISTER, &reg, {0, 1, 0, 1, 'a', 3, 0, 0, 0x1f, 0x90, 0, 0, 0, 1, 'g', 0, 1,
                            1, '=', 0, 1, 'H', 0, 1, 'v'}, 25},
        {C_REGISTER_RESULT, &rr, {0, 1, 0, 0, 2, 'n', 'o'}, 7},
    };
    static uint8_t out[64];

    (void)state;
    at_what = "wire vector";
    for (size_t i = 0; i < NELEM(rows); i++) {
        const struct codec *c = &codecs[rows[i].codec];

        at_row = i;
        EXPECT_EQ(c->enc(out, sizeof(out), rows[i].v), rows[i].n);
        EXPECT(memcmp(out, rows[i].b, rows[i].n) == 0);
        EXPECT_EQ(c->chk(rows[i].b, rows[i].n),
                  rows[i].codec == C_REGISTER || rows[i].codec == C_REGISTER_RESULT ? 1 : 0);
    }
}

/* ---- random input ---- */

static uint64_t rnd_state;

/* splitmix64: the same sequence everywhere, unlike rand(). */
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A decoder must fail or take exactly the input (the checked decoders
 * verify the latter); the header must decode to what encodes back. */
static void feed_all(const uint8_t *p, size_t n, size_t *accepted)
{
    for (size_t c = 0; c < C_COUNT; c++) {
        at_what = codecs[c].name;
        if (codecs[c].chk(p, n) >= 0) {
            accepted[c]++;
        }
    }
    if (n >= WM_TUN_HDR) {
        struct wm_tun_hdr h;
        uint8_t b[WM_TUN_HDR];

        at_what = "hdr";
        if (hdr_decode(p, &h) == 0) {
            wm_tun_hdr_encode(b, h.len, h.type, h.flags, h.sid);
            EXPECT(memcmp(b, p, WM_TUN_HDR) == 0);
            (void)wm_tun_hdr_check(&h);
        }
    }
}

static void test_fuzz_random(void **state)
{
    static uint8_t buf[FUZZ_LEN];
    size_t accepted[C_COUNT] = {0};

    (void)state;
    rnd_state = 0x776d74756e2f31ull; /* "wmtun/1" */
    for (size_t i = 0; i < FUZZ_ROUNDS; i++) {
        size_t n = (size_t)(rnd() % (FUZZ_LEN + 1));

        at_row = i;
        for (size_t k = 0; k < n; k++) {
            buf[k] = (uint8_t)rnd();
        }
        feed_all(buf, n, accepted);
    }
    /* Sanity: the reason-only codecs take most inputs, so success is checked. */
    assert_true(accepted[C_CODE8] > FUZZ_ROUNDS / 2);
}

/* Mutations of valid encodings reach deeper than random bytes. */
static void test_fuzz_mutate(void **state)
{
    static struct msg seed[C_COUNT];
    static uint8_t buf[FUZZ_LEN + 64];
    size_t accepted[C_COUNT] = {0};

    (void)state;
    for (size_t c = 0; c < C_COUNT; c++) {
        seed[c].n = 0;
        codecs[c].build(&seed[c], codecs[c].sample);
        at_what = codecs[c].name;
        at_row = 0;
        EXPECT(codecs[c].chk(seed[c].b, seed[c].n) >= 0);
    }
    rnd_state = 0x6d757461746521ull;
    for (size_t i = 0; i < FUZZ_ROUNDS; i++) {
        const struct msg *s = &seed[i % C_COUNT];
        size_t n = s->n;
        unsigned edits = 1 + (unsigned)(rnd() % 3);

        at_row = i;
        memcpy(buf, s->b, n);
        for (unsigned e = 0; e < edits; e++) {
            uint64_t r = rnd();
            size_t at = n ? (size_t)(r >> 8) % n : 0;

            switch (r % 4) {
            case 0: /* a random byte */
                if (n > 0) {
                    buf[at] = (uint8_t)(r >> 40);
                }
                break;
            case 1: /* a boundary value */
                if (n > 0) {
                    buf[at] = (const uint8_t[]){0, 1, 2, 3, 4, 0x7f, 0x80, 0xff}[(r >> 40) & 7];
                }
                break;
            case 2: /* cut */
                n = at;
                break;
            default: /* grow */
                while (n < sizeof(buf) && (r >>= 3) % 5 != 0) {
                    buf[n++] = (uint8_t)r;
                }
                break;
            }
        }
        feed_all(buf, n, accepted);
    }
    /* Sanity: every decoder accepted some mutants, so success is checked. */
    for (size_t c = 0; c < C_COUNT; c++) {
        at_what = codecs[c].name;
        EXPECT(accepted[c] > 0);
    }
}

/* ---- small helpers ---- */

static void test_str_helpers(void **state)
{
    static const struct {
        struct wm_tun_str s;
        size_t cap;
        const char *copy;
    } rows[] = {
        {STR(""), 1, ""},
        {STR("abc"), 1, ""},
        {STR("abc"), 3, "ab"},
        {STR("abc"), 4, "abc"},
        {STR("abc"), 64, "abc"},
    };
    static const struct {
        uint8_t code;
        const char *name;
    } codes[] = {
        {WM_TUN_OPEN_OK, "ok"}, {WM_TUN_OPEN_REFUSED, "refused"},
        {WM_TUN_OPEN_UNREACHABLE, "unreachable"}, {WM_TUN_OPEN_TIMEOUT, "timeout"},
        {WM_TUN_OPEN_NO_MAPPING, "no such mapping"}, {WM_TUN_OPEN_NOT_ALLOWED, "not allowed"},
        {WM_TUN_OPEN_LIMIT, "resource limit"}, {WM_TUN_OPEN_CODE_COUNT, "error"},
        {0xff, "error"},
    };
    struct wm_tun_str ab = STR("a\0b");

    (void)state;
    at_what = "str_copy";
    for (size_t i = 0; i < NELEM(rows); i++) {
        char *dst = malloc(rows[i].cap);

        at_row = i;
        assert_non_null(dst);
        wm_tun_str_copy(dst, rows[i].cap, rows[i].s);
        EXPECT(strcmp(dst, rows[i].copy) == 0);
        free(dst);
    }
    assert_true(wm_tun_str_eq((struct wm_tun_str)STR("web"), "web"));
    assert_false(wm_tun_str_eq((struct wm_tun_str)STR("web"), "we"));
    assert_false(wm_tun_str_eq((struct wm_tun_str)STR("we"), "web"));
    assert_true(wm_tun_str_eq((struct wm_tun_str)STR(""), ""));
    assert_false(wm_tun_str_eq(ab, "a"));
    at_what = "open_code_str";
    for (size_t i = 0; i < NELEM(codes); i++) {
        at_row = i;
        EXPECT(strcmp(wm_tun_open_code_str(codes[i].code), codes[i].name) == 0);
    }
}

/* The OPEN peer field: "visitor" or "visitor>local", parsed leniently. */
static void test_peer_field(void **state)
{
    static const struct {
        const char *in;
        const char *src; /* formatted back, or NULL: unknown */
        const char *dst;
    } rows[] = {
        {"127.0.0.1:5000", "127.0.0.1:5000", NULL},
        {"[::1]:1", "[::1]:1", NULL},
        {"127.0.0.1:5000>127.0.0.1:80", "127.0.0.1:5000", "127.0.0.1:80"},
        {"[2001:db8::1]:65535>[::1]:443", "[2001:db8::1]:65535", "[::1]:443"},
        {"1.2.3.4:5>", "1.2.3.4:5", NULL},
        {"1.2.3.4:5>nonsense", "1.2.3.4:5", NULL},
        {"1.2.3.4:5>6.7.8.9:1>x", "1.2.3.4:5", NULL},
        {"-", NULL, NULL},
        {"", NULL, NULL},
        {">1.2.3.4:5", NULL, NULL},
        {"stream", NULL, NULL},
        {"host.example:80", NULL, NULL},
        {"1.2.3.4", NULL, NULL},
        {"1.2.3.4:0", NULL, NULL},
        {"1.2.3.4:5\n", NULL, NULL},
    };
    char buf[WM_TUN_PEER_MAX];
    char a[WM_TUN_PEER_MAX];

    (void)state;
    at_what = "peer_parse";
    for (size_t i = 0; i < NELEM(rows); i++) {
        struct wm_tun_peer pe;
        struct wm_tun_str in = {rows[i].in, strlen(rows[i].in)};
        at_row = i;
        wm_tun_peer_parse(in, &pe);
        EXPECT((pe.srclen > 0) == (rows[i].src != NULL));
        EXPECT((pe.dstlen > 0) == (rows[i].dst != NULL));
        if (rows[i].src != NULL) {
            wm_tun_peer_format(buf, sizeof(buf), (struct sockaddr *)&pe.src,
                               pe.dstlen > 0 ? (struct sockaddr *)&pe.dst : NULL);
            snprintf(a, sizeof(a), rows[i].dst ? "%s>%s" : "%s", rows[i].src, rows[i].dst);
            EXPECT(strcmp(buf, a) == 0);
        }
    }
    assert_string_equal(wm_tun_peer_format(buf, sizeof(buf), NULL, NULL), "-");
    /* the longest form fits */
    struct wm_tun_peer pe;
    const char *lng = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535>"
                      "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535";
    wm_tun_peer_parse((struct wm_tun_str){lng, strlen(lng)}, &pe);
    wm_tun_peer_format(buf, sizeof(buf), (struct sockaddr *)&pe.src, (struct sockaddr *)&pe.dst);
    assert_string_equal(buf, lng);
}

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)('a' + i % 26);
    }
    memset(z_max, 'r', SMAX);
    z_max[SMAX] = '\0';
    memset(z_over, 'o', SMAX + 1);
    z_over[SMAX + 1] = '\0';
    reg_out = calloc(WM_TUN_MAX_MAPPINGS, sizeof(*reg_out));
    return reg_out != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(reg_out);
    reg_out = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_table),
        cmocka_unit_test(test_hdr_roundtrip_all),
        cmocka_unit_test(test_hdr_bad),
        cmocka_unit_test(test_hdr_check_table),
        cmocka_unit_test(test_hdr_check_unknown),
        cmocka_unit_test(test_hello_table),
        cmocka_unit_test(test_challenge_table),
        cmocka_unit_test(test_auth_table),
        cmocka_unit_test(test_auth_result_table),
        cmocka_unit_test(test_register_table),
        cmocka_unit_test(test_register_max),
        cmocka_unit_test(test_register_crafted),
        cmocka_unit_test(test_register_result_table),
        cmocka_unit_test(test_register_result_max),
        cmocka_unit_test(test_open_table),
        cmocka_unit_test(test_code_table),
        cmocka_unit_test(test_code_long_reason),
        cmocka_unit_test(test_short_strings),
        cmocka_unit_test(test_wire_vectors),
        cmocka_unit_test(test_fuzz_random),
        cmocka_unit_test(test_fuzz_mutate),
        cmocka_unit_test(test_str_helpers),
        cmocka_unit_test(test_peer_field),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
