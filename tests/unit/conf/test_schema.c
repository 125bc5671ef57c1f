/*
 * tests/unit/conf/test_schema.c - table-driven decoding (conf/schema.h) on a
 * schema of its own: each value kind's setter, bounds and bad values
 * reported at file:line:col with the key path, unknown keys with a hint,
 * required keys, aliases, defaults, inactive keys and custom setters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cval.h"
#include "conf/schema.h"
#include "conf/toml.h"
#include "conf/units.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/proxyflags.h"

struct sub {
    int64_t n;
    const char *name;
};

struct obj {
    const char *s;
    bool b;
    int64_t i;
    uint64_t dur;
    uint64_t size;
    struct wm_rate rate;
    const char *hp;
    const char *listen;
    int level;
    unsigned flags;
    const char *mode;
    const char **list;
    size_t nlist;
    struct wm_conf_header *hdrs;
    size_t nhdrs;
    struct wm_conf_kv *kv;
    size_t nkv;
    struct sub *one;
    struct sub *many;
    size_t nmany;
    int64_t custom;
    int custom_calls;
};

static const char *const modes[] = {"client", "server", NULL};

static int custom_twice(struct wm_cctx *ctx, const struct wm_cval *v, void *dst,
                        const char *path)
{
    if (wm_cval_type(v) != WM_CVAL_INT) {
        wm_cctx_error(ctx, v, path, "expected an integer to double");
        return -1;
    }
    *(int64_t *)dst = 2 * wm_cval_int(v);
    return 0;
}

static void sub_defaults(void *p)
{
    struct sub *s = p;

    s->n = 7;
    s->name = "unnamed";
}

#define SOFF(f) offsetof(struct sub, f)
static const struct wm_ckey sub_keys[] = {
    {.name = "n", .kind = WM_CK_INT, .off = SOFF(n), .min = 1, .max = 9},
    {.name = "name", .kind = WM_CK_STR, .off = SOFF(name), .flags = WM_CKF_REQUIRED},
    {.name = NULL},
};
static const struct wm_cschema sub_schema = {
    .name = "[sub]", .size = sizeof(struct sub), .keys = sub_keys, .defaults = sub_defaults,
};

#define OOFF(f) offsetof(struct obj, f)
static const struct wm_ckey obj_keys[] = {
    {.name = "s", .kind = WM_CK_STR, .off = OOFF(s)},
    {.name = "b", .kind = WM_CK_BOOL, .off = OOFF(b)},
    {.name = "i", .kind = WM_CK_INT, .off = OOFF(i), .min = -5, .max = 100},
    {.name = "dur", .kind = WM_CK_DURATION, .off = OOFF(dur), .min = 1000, .max = 60000},
    {.name = "size", .kind = WM_CK_SIZE, .off = OOFF(size)},
    {.name = "rate", .kind = WM_CK_RATE, .off = OOFF(rate)},
    {.name = "hp", .kind = WM_CK_HOSTPORT, .off = OOFF(hp)},
    {.name = "listen", .kind = WM_CK_LISTEN, .off = OOFF(listen), .alias = "bind"},
    {.name = "level", .kind = WM_CK_LEVEL, .off = OOFF(level)},
    {.name = "flag", .kind = WM_CK_FLAGS, .off = OOFF(flags)},
    {.name = "mode", .kind = WM_CK_ENUM, .off = OOFF(mode), .choices = modes},
    {.name = "list", .kind = WM_CK_STRLIST, .off = OOFF(list), .off_count = OOFF(nlist)},
    {.name = "headers", .kind = WM_CK_HEADERS, .off = OOFF(hdrs), .off_count = OOFF(nhdrs)},
    {.name = "env", .kind = WM_CK_STRMAP, .off = OOFF(kv), .off_count = OOFF(nkv)},
    {.name = "one", .kind = WM_CK_TABLE, .off = OOFF(one), .sub = &sub_schema},
    {.name = "many", .kind = WM_CK_TABLE_ARRAY, .off = OOFF(many), .off_count = OOFF(nmany),
     .sub = &sub_schema},
    {.name = "twice", .kind = WM_CK_CUSTOM, .off = OOFF(custom), .custom = custom_twice},
    {.name = "later", .kind = WM_CK_STR, .off = WM_CK_NOSTORE, .flags = WM_CKF_INACTIVE,
     .feature = "a later feature"},
    {.name = NULL},
};

static void obj_defaults(void *p)
{
    struct obj *o = p;

    memset(o, 0, sizeof(*o));
    o->s = "default";
    o->i = 42;
    o->dur = 30000;
    o->flags = WM_PROXY_FLAG_ALL;
}

static const struct wm_cschema obj_schema = {
    .name = "[obj]", .size = sizeof(struct obj), .keys = obj_keys, .defaults = obj_defaults,
};

/* A decoded document: the tree, the context and the object. */
struct doc {
    struct wm_arena *arena;
    struct wm_cval *tree;
    struct wm_cctx ctx;
    struct obj o;
};

static void decode(struct doc *d, const char *text)
{
    struct wm_err err;

    d->arena = wm_arena_new();
    assert_non_null(d->arena);
    d->tree = wm_toml_parse(text, strlen(text), "t.toml", &err);
    if (d->tree == NULL) {
        fail_msg("TOML: %s", err.msg);
    }
    wm_cctx_init(&d->ctx, "t.toml", d->arena);
    obj_defaults(&d->o);
    wm_schema_decode(&d->ctx, &obj_schema, d->tree, &d->o, "");
}

static void doc_free(struct doc *d)
{
    wm_cctx_deinit(&d->ctx);
    wm_cval_free(d->tree);
    wm_arena_free(d->arena);
}

static void print_diags(const struct doc *d)
{
    char line[1400];

    for (size_t i = 0; i < d->ctx.ndiags; i++) {
        print_error("%s\n", wm_err_format(&d->ctx.diags[i].e, line, sizeof(line)));
    }
}

/* ---- every setter, with good values ---- */

static void test_each_kind(void **state)
{
    struct doc d;

    (void)state;
    decode(&d, "s = \"text\"\n"
               "b = true\n"
               "i = -5\n"
               "dur = \"1m\"\n"
               "size = \"4k\"\n"
               "rate = \"1000r/s\"\n"
               "hp = \"example.com:443\"\n"
               "bind = \"127.0.0.1:8080\"\n"
               "level = \"debug\"\n"
               "flag = \"http socks5\"\n"
               "mode = \"server\"\n"
               "list = [\"a\", \"b\"]\n"
               "headers = [\"proxy + x-a 1\", \"- server\"]\n"
               "twice = 21\n"
               "[env]\n"
               "K = \"v\"\n"
               "[one]\n"
               "name = \"first\"\n"
               "[[many]]\n"
               "name = \"m1\"\n"
               "n = 3\n"
               "[[many]]\n"
               "name = \"m2\"\n");
    if (d.ctx.ndiags != 0) {
        print_diags(&d);
        fail_msg("expected no diagnostics");
    }
    assert_string_equal(d.o.s, "text");
    assert_true(d.o.b);
    assert_int_equal(d.o.i, -5);
    assert_int_equal(d.o.dur, 60000);
    assert_int_equal(d.o.size, 4096);
    assert_true(d.o.rate.requests);
    assert_int_equal(d.o.rate.amount, 1000);
    assert_int_equal(d.o.rate.per_ms, 1000);
    assert_string_equal(d.o.hp, "example.com:443");
    assert_string_equal(d.o.listen, "127.0.0.1:8080");
    assert_int_equal(d.o.level, WM_LOG_DEBUG);
    assert_int_equal(d.o.flags, WM_PROXY_FLAG_HTTP | WM_PROXY_FLAG_SOCKS5);
    assert_string_equal(d.o.mode, "server");
    assert_ptr_equal(d.o.mode, modes[1]); /* the table's own string */
    assert_int_equal(d.o.nlist, 2);
    assert_string_equal(d.o.list[1], "b");
    assert_int_equal(d.o.nhdrs, 2);
    assert_true(d.o.hdrs[0].request);
    assert_int_equal(d.o.hdrs[0].op, '+');
    assert_string_equal(d.o.hdrs[0].name, "x-a");
    assert_string_equal(d.o.hdrs[0].value, "1");
    assert_int_equal(d.o.hdrs[1].op, '-');
    assert_null(d.o.hdrs[1].value);
    assert_int_equal(d.o.nkv, 1);
    assert_string_equal(d.o.kv[0].key, "K");
    assert_string_equal(d.o.kv[0].value, "v");
    assert_non_null(d.o.one);
    assert_string_equal(d.o.one->name, "first");
    assert_int_equal(d.o.one->n, 7); /* the sub-schema's default */
    assert_int_equal(d.o.nmany, 2);
    assert_int_equal(d.o.many[0].n, 3);
    assert_int_equal(d.o.many[1].n, 7);
    assert_string_equal(d.o.many[1].name, "m2");
    assert_int_equal(d.o.custom, 42);
    doc_free(&d);
}

/* Numbers where strings of them are accepted, and the short forms. */
static void test_alternate_forms(void **state)
{
    struct doc d;

    (void)state;
    decode(&d, "i = \"17\"\ndur = 2\nsize = 10\nflag = 6\nlist = \"solo\"\n[many]\nname = \"x\"\n");
    if (d.ctx.ndiags != 0) {
        print_diags(&d);
        fail_msg("expected no diagnostics");
    }
    assert_int_equal(d.o.i, 17);
    assert_int_equal(d.o.dur, 2000);   /* a bare number is seconds */
    assert_int_equal(d.o.size, 10);    /* and bytes */
    assert_int_equal(d.o.flags, WM_PROXY_FLAG_HTTPS | WM_PROXY_FLAG_SOCKS5);
    assert_int_equal(d.o.nlist, 1);    /* a string is a list of one */
    assert_string_equal(d.o.list[0], "solo");
    assert_int_equal(d.o.nmany, 1);    /* a table is an array of one */
    assert_string_equal(d.o.many[0].name, "x");
    doc_free(&d);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct doc d;

    (void)state;
    decode(&d, "# nothing set\n");
    assert_int_equal(d.ctx.ndiags, 0);
    assert_string_equal(d.o.s, "default");
    assert_false(d.o.b);
    assert_int_equal(d.o.i, 42);
    assert_int_equal(d.o.dur, 30000);
    assert_int_equal(d.o.flags, WM_PROXY_FLAG_ALL);
    assert_null(d.o.one);
    assert_int_equal(d.o.nmany, 0);
    doc_free(&d);
}

/* ---- bad values: one error each, at file:line:col with the key path ---- */

struct bad_case {
    const char *text;
    int line;
    int col;
    const char *key;
    const char *msg; /* a part of the message */
};

static void test_bad_values(void **state)
{
    static const struct bad_case cases[] = {
        {"s = 1\n", 1, 5, "s", "expected a string, got 1"},
        {"b = \"yes\"\n", 1, 5, "b", "expected true or false, got \"yes\""},
        {"i = 101\n", 1, 5, "i", "expected an integer from -5 to 100, got 101"},
        {"i = -6\n", 1, 5, "i", "expected an integer from -5 to 100, got -6"},
        {"i = 1.5\n", 1, 5, "i", "expected an integer, got 1.5"},
        {"i = \"12a\"\n", 1, 5, "i", "expected an integer"},
        {"dur = \"2m\"\n", 1, 7, "dur", "out of range (1000..60000 ms)"},
        {"dur = \"500ms\"\n", 1, 7, "dur", "out of range (1000..60000 ms)"},
        {"dur = \"1y\"\n", 1, 7, "dur", "expected a duration like"},
        {"dur = true\n", 1, 7, "dur", "expected a duration like \"30s\", got true"},
        {"size = \"4x\"\n", 1, 8, "size", "expected a size like"},
        {"size = -1\n", 1, 8, "size", "expected a size like \"10m\", got -1"},
        {"rate = \"4m/h\"\n", 1, 8, "rate", "expected a rate like"},
        {"hp = \"example.com\"\n", 1, 6, "hp", "expected \"host:port\", got \"example.com\""},
        {"listen = \"example.com:80\"\n", 1, 10, "listen", "expected \"ip:port\""},
        {"level = \"loud\"\n", 1, 9, "level", "expected error, warn, info, debug, trace or off"},
        {"flag = \"ftp\"\n", 1, 8, "flag", "expected \"http https socks5\" (any of them) or 1..7"},
        {"flag = 8\n", 1, 8, "flag", "or 1..7, got 8"},
        {"mode = \"both\"\n", 1, 8, "mode", "expected one of \"client\", \"server\", got \"both\""},
        {"list = 3\n", 1, 8, "list", "expected a string or an array of strings"},
        {"list = [\"a\", 3]\n", 1, 14, "list[1]", "expected a string or an array of strings"},
        {"headers = [\"x-a\"]\n", 1, 12, "headers[0]", "expected a name and a value"},
        {"headers = 3\n", 1, 11, "headers", "expected an array of header rules"},
        {"env = 3\n", 1, 7, "env", "expected a table of strings"},
        {"[env]\nK = 1\n", 2, 5, "env.K", "expected a string"},
        {"one = 3\n", 1, 7, "one", "expected a table"},
        {"many = 3\n", 1, 8, "many", "expected an array of tables"},
        {"[one]\nname = \"x\"\nn = 10\n", 3, 5, "one.n", "expected an integer from 1 to 9"},
        {"[[many]]\nname = \"x\"\n[[many]]\nname = \"y\"\nn = 0\n", 5, 5, "many[1].n",
         "from 1 to 9, got 0"},
        {"twice = \"x\"\n", 1, 9, "twice", "expected an integer to double"},
    };
    char line[1400];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        struct doc d;
        decode(&d, c->text);
        if (d.ctx.ndiags != 1 || d.ctx.nerrors != 1) {
            print_diags(&d);
            fail_msg("case %zu (%s): expected one error, got %zu", i, c->text, d.ctx.ndiags);
        }
        const struct wm_err *e = &d.ctx.diags[0].e;
        if (strcmp(e->file, "t.toml") != 0 || e->line != c->line || e->col != c->col ||
            strcmp(e->key, c->key) != 0 || strstr(e->msg, c->msg) == NULL) {
            fail_msg("case %zu (%s): got \"%s\"", i, c->text,
                     wm_err_format(e, line, sizeof(line)));
        }
        doc_free(&d);
    }
}

/* ---- keys ---- */

static void test_unknown_keys(void **state)
{
    struct doc d;
    char line[1400];

    (void)state;
    decode(&d, "i = 1\nlevle = \"info\"\n[one]\nnmae = \"x\"\nname = \"y\"\n[zzz]\n");
    assert_int_equal(d.ctx.nerrors, 3);
    assert_string_equal(wm_err_format(&d.ctx.diags[0].e, line, sizeof(line)),
                        "t.toml:2:1: levle: unknown key \"levle\" in [obj] "
                        "(did you mean \"level\"?)");
    assert_string_equal(wm_err_format(&d.ctx.diags[1].e, line, sizeof(line)),
                        "t.toml:4:1: one.nmae: unknown key \"nmae\" in [sub] "
                        "(did you mean \"name\"?)");
    /* No hint when nothing is close; the key's own position. */
    assert_string_equal(d.ctx.diags[2].e.key, "zzz");
    assert_int_equal(d.ctx.diags[2].e.line, 6);
    assert_null(strstr(d.ctx.diags[2].e.msg, "did you mean"));
    assert_int_equal(d.o.i, 1); /* the good keys still count */
    assert_string_equal(d.o.one->name, "y");
    doc_free(&d);
}

static void test_required_alias_inactive(void **state)
{
    struct doc d;

    (void)state;
    /* A required key missing, in a table and in an array element. */
    decode(&d, "[one]\nn = 2\n[[many]]\nname = \"a\"\n[[many]]\nn = 1\n");
    assert_int_equal(d.ctx.nerrors, 2);
    assert_string_equal(d.ctx.diags[0].e.key, "one.name");
    assert_non_null(strstr(d.ctx.diags[0].e.msg, "missing required key \"name\" in [sub]"));
    assert_string_equal(d.ctx.diags[1].e.key, "many[1].name");
    doc_free(&d);

    /* A name and its alias both given. */
    decode(&d, "listen = \"127.0.0.1:1\"\nbind = \"127.0.0.1:2\"\n");
    assert_int_equal(d.ctx.nerrors, 1);
    assert_non_null(strstr(d.ctx.diags[0].e.msg, "\"listen\" is given twice"));
    doc_free(&d);

    /* An inactive key: checked, a warning, not an error. */
    decode(&d, "later = \"x\"\n");
    assert_int_equal(d.ctx.ndiags, 1);
    assert_int_equal(d.ctx.nerrors, 0);
    assert_true(d.ctx.diags[0].warning);
    assert_non_null(strstr(d.ctx.diags[0].e.msg, "not yet active (a later feature)"));
    doc_free(&d);
    decode(&d, "later = 1\n");
    assert_int_equal(d.ctx.nerrors, 1); /* still type-checked */
    doc_free(&d);
}

/* Every error of a document, not only the first. */
static void test_all_errors(void **state)
{
    struct doc d;

    (void)state;
    decode(&d, "b = 1\ni = 1000\nmode = \"x\"\nflag = \"\"\nsize = \"?\"\n");
    assert_int_equal(d.ctx.nerrors, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(d.ctx.diags[i].e.line, (int)i + 1);
    }
    doc_free(&d);
}

/* ---- the header rule parser on its own ---- */

static void test_header_rules(void **state)
{
    static const struct {
        const char *rule;
        int ok;
        bool request;
        char op;
        const char *name;
        const char *value;
    } cases[] = {
        {"x-a 1", 0, false, '=', "x-a", "1"},
        {"proxy + x-b 'two words'", 0, true, '+', "x-b", "two words"},
        {"- server", 0, false, '-', "server", NULL},
        {"+ x-a", -1, false, 0, NULL, NULL},
        {"- x-a v", -1, false, 0, NULL, NULL},
        {"x-a 'open", -1, false, 0, NULL, NULL},
        {"x:a 1", -1, false, 0, NULL, NULL},
        {"a b c d e", -1, false, 0, NULL, NULL},
        {"", -1, false, 0, NULL, NULL},
    };
    struct wm_arena *a = wm_arena_new();

    (void)state;
    assert_non_null(a);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wm_conf_header h;
        struct wm_err err;
        wm_err_clear(&err);
        int r = wm_conf_parse_header(a, cases[i].rule, &h, &err);
        if (r != cases[i].ok) {
            fail_msg("rule \"%s\": r=%d (%s)", cases[i].rule, r, err.msg);
        }
        if (r < 0) {
            assert_true(err.msg[0] != '\0');
            continue;
        }
        assert_int_equal(h.request, cases[i].request);
        assert_int_equal(h.op, cases[i].op);
        assert_string_equal(h.name, cases[i].name);
        if (cases[i].value == NULL) {
            assert_null(h.value);
        } else {
            assert_string_equal(h.value, cases[i].value);
        }
    }
    wm_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_kind),
        cmocka_unit_test(test_alternate_forms),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_required_alias_inactive),
        cmocka_unit_test(test_all_errors),
        cmocka_unit_test(test_header_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
