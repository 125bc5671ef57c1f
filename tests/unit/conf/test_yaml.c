/*
 * tests/unit/conf/test_yaml.c - YAML reader (libyaml events) into the value tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/cval.h"
#include "conf/yaml.h"
#include "core/err.h"

/* Parse src[0..len) from an exact-size heap copy. */
static struct wm_cval *parse_n(const char *src, size_t len, struct wm_err *err)
{
    char *copy = malloc(len > 0 ? len : 1);
    struct wm_cval *root;

    assert_non_null(copy);
    memcpy(copy, src, len);
    root = wm_yaml_parse(copy, len, "t.yaml", err);
    free(copy);
    return root;
}

static struct wm_cval *parse(const char *src, struct wm_err *err)
{
    return parse_n(src, strlen(src), err);
}

/* ---- valid documents: source -> plain JSON (document order) ---- */

struct ok_case {
    const char *src;
    const char *json;
};

static const struct ok_case ok_cases[] = {
    {"", "{}"},
    {"# only a comment\n", "{}"},
    {"---\n", "{}"},
    {"--- ~\n", "{}"},
    {"a: 1\nb: [x, 'y', \"z\"]\n", "{\"a\":1,\"b\":[\"x\",\"y\",\"z\"]}"},
    {"e:\nf: ~\ng: [null, Null, NULL]\n", "{\"e\":null,\"f\":null,\"g\":[null,null,null]}"},
    {"b: [true, True, TRUE, false, False, FALSE, yes, no, on, tRUE]\n",
     "{\"b\":[true,true,true,false,false,false,\"yes\",\"no\",\"on\",\"tRUE\"]}"},
    {"i: [0, -17, +5, 0x1F, 0o17, 012, 1_000, 0x, 9223372036854775807, -9223372036854775808]\n",
     "{\"i\":[0,-17,5,31,15,12,\"1_000\",\"0x\",9223372036854775807,-9223372036854775808]}"},
    {"f: [1.5, .5, -1e3, 2., .inf, -.Inf, +.INF, .nan, 1.2.3, .]\n",
     "{\"f\":[1.5,0.5,-1000.0,2.0,\"inf\",\"-inf\",\"inf\",\"nan\",\"1.2.3\",\".\"]}"},
    {"s: [\"1\", '2', !!str 3, ! 4, !!int \"5\", !!float 6, !!null '', !!bool \"true\"]\n",
     "{\"s\":[\"1\",\"2\",\"3\",\"4\",5,6.0,null,true]}"},
    {"a: |\n  x\n  y\nb: >\n  p\n  q\n", "{\"a\":\"x\\ny\\n\",\"b\":\"p q\\n\"}"},
    {"\"k \\u00e9\": \"\\t\\0\"\n", "{\"k \xC3\xA9\":\"\\t\\u0000\"}"},
    {"a:\n  b:\n    - c: 1\n      d: [2]\n    - e\n",
     "{\"a\":{\"b\":[{\"c\":1,\"d\":[2]},\"e\"]}}"},
    {"a: &v hi\nb: *v\n", "{\"a\":\"hi\",\"b\":\"hi\"}"},
    {"base: &b {a: 1, b: 2}\nd:\n  <<: *b\n  b: 3\n",
     "{\"base\":{\"a\":1,\"b\":2},\"d\":{\"b\":3,\"a\":1}}"},
    {"x: &x {a: 1}\ny: &y {a: 2, b: 2}\nz:\n  <<: [*x, *y]\n  c: 3\n",
     "{\"x\":{\"a\":1},\"y\":{\"a\":2,\"b\":2},\"z\":{\"c\":3,\"a\":1,\"b\":2}}"},
    {"m:\n  <<: {k: v}\n", "{\"m\":{\"k\":\"v\"}}"},
    {"q: \"<<\"\n", "{\"q\":\"<<\"}"},
    {"1: a\ntrue: b\n~: c\n0x10: d\n", "{\"1\":\"a\",\"true\":\"b\",\"~\":\"c\",\"0x10\":\"d\"}"},
    {"? [a, b]\n: c\n", "{\"[\\\"a\\\",\\\"b\\\"]\":\"c\"}"},
    {"h: [-, etag]\ni: {k: -}\nj: [+, -, -]\n",
     "{\"h\":[\"-\",\"etag\"],\"i\":{\"k\":\"-\"},\"j\":[\"+\",\"-\",\"-\"]}"},
    /* wmproxy (serde_yaml, a libyaml port) reads a lone '-' in flow context as "-" */
    {"a: [-,-]\nb: {-: x, y: -}\nc: [ -]\nd: [-x, -1, -.5]\n",
     "{\"a\":[\"-\",\"-\"],\"b\":{\"-\":\"x\",\"y\":\"-\"},\"c\":[\"-\"],"
     "\"d\":[\"-x\",-1,-0.5]}"},
    {"h:\n  - [-, etag]\n  - [+, k, v]\n", "{\"h\":[[\"-\",\"etag\"],[\"+\",\"k\",\"v\"]]}"},
    /* an anchor may be redefined: an alias takes the latest definition */
    {"a: &a 1\nb: &a [*a]\nc: *a\n", "{\"a\":1,\"b\":[1],\"c\":[1]}"},
    /* an anchored key can be aliased */
    {"&k x: 1\ny: *k\n", "{\"x\":1,\"y\":\"x\"}"},
    /* an anchor inside a complex key outlives the key (a fuzzer found the
     * alias reading a freed value) */
    {"? [&a 7, b]\n: c\nd: *a\n", "{\"[7,\\\"b\\\"]\":\"c\",\"d\":7}"},
    {"? {k: &m [1, 2]}\n: v\nw: *m\n", "{\"{\\\"k\\\":[1,2]}\":\"v\",\"w\":[1,2]}"},
    {"a: 1\r\nb: 2\r\n", "{\"a\":1,\"b\":2}"},
    {"a: 1\n...\n", "{\"a\":1}"},
};

static void test_ok_cases(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    char buf[1024];
    char *json;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        root = parse(ok_cases[i].src, &err);
        if (root == NULL) {
            fail_msg("case %zu: %s", i, wm_err_format(&err, buf, sizeof(buf)));
        }
        assert_int_equal(wm_cval_to_json(root, false, &json, NULL), 0);
        if (strcmp(json, ok_cases[i].json) != 0) {
            fail_msg("case %zu:\n got  %s\n want %s", i, json, ok_cases[i].json);
        }
        free(json);
        wm_cval_free(root);
    }
}

/* ---- invalid documents: source -> line, column, message fragment ---- */

struct bad_case {
    const char *src;
    int line;
    int col;
    const char *msg;
};

static const struct bad_case bad_cases[] = {
    {"a: 1\na: 2\n", 2, 1, "duplicate key 'a' (first defined at line 1)"},
    {"m:\n  x: 1\n  y: 2\n  x: 3\n", 4, 3, "duplicate key 'x' (first defined at line 2)"},
    {"\"1\": a\n1: b\n", 2, 1, "duplicate key '1'"},
    {"a: 1\n---\nb: 2\n", 2, 1, "expected one document"},
    {"--- {a: 1}\n--- {b: 2}\n", 2, 1, "expected one document"},
    {"a: b: c\n", 1, 5, "mapping"},
    {"a: [1, 2\n", 2, 1, "flow sequence"},
    {"a: 'x\n", 1, 5, "single-quoted scalar without closing quote"},
    {"- a\n", 1, 1, "top level must be a mapping, not array"},
    {"hello\n", 1, 1, "top level must be a mapping, not string"},
    {"a: *nope\n", 1, 4, "alias '*nope' names no finished anchor"},
    {"a: &x [1, *x]\n", 1, 11, "names no finished anchor"},
    {"a: 9223372036854775808\n", 1, 4, "out of range for int64"},
    {"a: 0x8000000000000000\n", 1, 4, "out of range for int64"},
    {"a: !!int x\n", 1, 10, "does not match its tag"},
    {"a: !!bool yes\n", 1, 11, "does not match its tag"},
    {"a: !!null 0\n", 1, 11, "does not match its tag"},
    /* a tag the reader would otherwise ignore: the value is not what it says */
    {"a: !!binary c2VjcmV0\n", 1, 13, "tag !!binary is not supported here"},
    {"a: !x 1\n", 1, 7, "tag !x is not supported here (a value takes"},
    {"a: !!seq {b: 1}\n", 1, 10, "tag !!seq is not supported here (a list takes"},
    {"a: !!python/object:os.system [1]\n", 1, 30, "is not supported here"},
    {"<<: 5\n", 1, 1, "merge key '<<' needs a mapping"},
    {"<<: [{a: 1}, 2]\n", 1, 1, "merge key '<<' needs a mapping"},
    {"a: 1\n\tb: 2\n", 2, 1, "tab character may not be used as indentation"},
    {"a: [x, - y]\n", 1, 8, "did not find expected node content"},
    /* libyaml's wording, with the context it was parsing */
    {"a: [1, 2\n", 2, 1, "(while parsing a flow sequence started at line 1, column 4)"},
    {"a: \"x\n", 1, 5, "double-quoted scalar without closing quote"},
    {"a:\n  b: 1\n c: 2\n", 3, 2, "invalid indentation"},
    {"a: 1\n- b\n", 2, 1, "did not find expected key (while parsing a block mapping"},
    {"h: [-, x]\ni: [-, y, ]]\n", 2, 12, "did not find expected key"},
    /* the former YAML library crashed on this one */
    {"? d:\t?", 1, 6, "mapping keys are not allowed in this context"},
    /* a value is reported where it is written, after its anchor and tag */
    {"a: !!int &x y\n", 1, 13, "does not match its tag"},
    {"a:\n  &b !!bool # c\n    maybe\n", 3, 5, "does not match its tag"},
    {"a: &x {b: *x}\n", 1, 11, "alias '*x' names no finished anchor"},
    {"a: b\n...\n--- c\n", 3, 1, "expected one document"},
    /* keys nested in keys: their text doubled per level (a 76-byte file took 60 s, 1 GB) */
    {"? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? "
     "? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? x\n",
     1, 63, "a complex key longer than 1024 bytes as text"},
    /* only printable Unicode (YAML 1.2 section 5.1), checked before libyaml,
     * whose reader knows only byte offsets */
    {"%ev\xE1\xE1\n", 1, 4, "invalid UTF-8 byte 0xE1"},
    {"a: 1\nb: \"x\x01\"\n", 2, 6, "U+0001 is not allowed"},
    {"a: \xC3\xA9\x7F\n", 1, 5, "U+007F is not allowed"},
    {"a: \xC2\x9B\n", 1, 4, "U+009B is not allowed"},
    {"a: \xED\xA0\x80\n", 1, 4, "invalid UTF-8 byte 0xED"},
    {"a:\r\nb: \xFF\n", 2, 4, "invalid UTF-8 byte 0xFF"},
};

static void test_bad_cases(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    char buf[1024];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        root = parse(bad_cases[i].src, &err);
        if (root != NULL) {
            wm_cval_free(root);
            fail_msg("case %zu accepted: %s", i, bad_cases[i].src);
        }
        wm_err_format(&err, buf, sizeof(buf));
        if (err.line != bad_cases[i].line || err.col != bad_cases[i].col ||
            strstr(err.msg, bad_cases[i].msg) == NULL || strcmp(err.file, "t.yaml") != 0 ||
            err.msg[0] == '\0') {
            fail_msg("case %zu: got \"%s\", want %d:%d \"%s\"", i, buf, bad_cases[i].line,
                     bad_cases[i].col, bad_cases[i].msg);
        }
    }
}

/* Oversized: alias bombs, deep nesting. */
static void test_limits(void **state)
{
    const char *bomb = "a: &a [1,2,3,4,5,6,7,8,9]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                       "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    struct wm_err err;
    struct wm_cval *root;
    char *s;
    size_t i;

    (void)state;
    root = parse(bomb, &err);
    assert_null(root);
    assert_non_null(strstr(err.msg, "aliases expand to more than"));

    s = malloc(2 * 1000 + 8);
    assert_non_null(s);
    memcpy(s, "a: ", 3);
    for (i = 0; i < 1000; i++) {
        s[3 + i] = '[';
        s[3 + 1000 + i] = ']';
    }
    s[2003] = '\n';
    s[2004] = '\0';
    root = parse(s, &err);
    assert_null(root);
    assert_true(strstr(err.msg, "nesting deeper than 128") != NULL || err.msg[0] != '\0');
    free(s);

    /* 100 levels are accepted */
    s = malloc(2 * 100 + 8);
    assert_non_null(s);
    memcpy(s, "a: ", 3);
    for (i = 0; i < 100; i++) {
        s[3 + i] = '[';
        s[3 + 100 + i] = ']';
    }
    s[203] = '\0';
    root = parse(s, &err);
    assert_non_null(root);
    wm_cval_free(root);
    free(s);

    /* an alias may not carry a deep subtree below the limit */
    root = parse("x: &x [[[[[[[[[[1]]]]]]]]]]\ny: *x\n", &err);
    assert_non_null(root);
    wm_cval_free(root);
}

/* Text of n lines built by line(i, buf) into a new buffer. */
static char *build_lines(size_t n, size_t maxline, void (*line)(size_t, char *, size_t))
{
    char *s = malloc(n * maxline + 1);
    size_t off = 0;
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++) {
        line(i, s + off, maxline);
        off += strlen(s + off);
    }
    s[off] = '\0';
    return s;
}

static void bomb_line(size_t i, char *buf, size_t cap)
{
    /* level i (1..) is 9 aliases of level i-1: 9^7 values at level 7 */
    if (i == 0) {
        snprintf(buf, cap, "l0: &l0 [1,2,3,4,5,6,7,8,9]\n");
    } else {
        snprintf(buf, cap, "l%zu: &l%zu [*l%zu,*l%zu,*l%zu,*l%zu,*l%zu,*l%zu,*l%zu,*l%zu,*l%zu]\n",
                 i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    }
}

static void merge_line(size_t i, char *buf, size_t cap)
{
    /* 40000 values behind one anchor, then mappings that each merge them */
    if (i < 4) {
        bomb_line(i, buf, cap);
    } else if (i == 4) {
        snprintf(buf, cap, "big: &big {a: *l3, b: *l3, c: *l3, d: *l3, e: *l3, f: *l3}\n");
    } else {
        snprintf(buf, cap, "m%zu: {<<: *big}\n", i);
    }
}

static void anchor_line(size_t i, char *buf, size_t cap)
{
    if (i % 2 == 0) {
        snprintf(buf, cap, "k%zu: &a%zu v%zu\n", i, i, i);
    } else {
        snprintf(buf, cap, "k%zu: *a%zu\n", i, i - 1);
    }
}

/* Alias and merge expansion stop at WM_YAML_MAX_ALIAS_NODES values, with an error at the
 * alias that crosses it; many anchors are cheap to look up. */
static void test_alias_budget(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    char *s;

    (void)state;
    s = build_lines(8, 128, bomb_line);
    root = parse(s, &err);
    assert_null(root);
    assert_string_equal(err.file, "t.yaml");
    assert_int_equal(err.line, 6); /* copies of l5 would add 597870 values */
    assert_true(err.col > 1);
    assert_non_null(strstr(err.msg, "aliases expand to more than 262144 values"));
    free(s);

    /* l0..l4: 74700 values copied, within the budget */
    s = build_lines(5, 128, bomb_line);
    root = parse(s, &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_count(wm_cval_at(wm_cval_get(root, "l4"), 8)), 9);
    wm_cval_free(root);
    free(s);

    s = build_lines(40, 128, merge_line);
    root = parse(s, &err);
    assert_null(root);
    assert_non_null(strstr(err.msg, "aliases expand to more than"));
    assert_true(err.line > 5);
    free(s);

    s = build_lines(40000, 48, anchor_line);
    root = parse(s, &err);
    assert_non_null(root);
    assert_string_equal(wm_cval_str(wm_cval_get(root, "k39999"), NULL), "v39998");
    wm_cval_free(root);
    free(s);
}

/* Nesting stops at WM_YAML_MAX_DEPTH levels, in block and flow style, and through aliases;
 * a text over WM_YAML_MAX_BYTES is refused before parsing. */
static void test_depth_and_size(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    size_t n = 200;
    size_t off = 0;
    size_t i;
    char *s = malloc(n * (n + 8));

    (void)state;
    assert_non_null(s);
    for (i = 0; i < n; i++) {
        memset(s + off, ' ', i);
        off += i;
        off += (size_t)sprintf(s + off, "k%zu:\n", i);
    }
    s[off] = '\0';
    root = parse(s, &err);
    assert_null(root);
    assert_int_equal(err.line, 129); /* the mapping at line 129 is the 129th level */
    assert_int_equal(err.col, 129);
    assert_non_null(strstr(err.msg, "nesting deeper than 128 levels"));
    free(s);

    s = malloc(1000);
    assert_non_null(s);
    memcpy(s, "a: ", 3);
    for (i = 0; i < 300; i++) {
        s[3 + i] = '[';
    }
    s[303] = '\0';
    root = parse(s, &err);
    assert_null(root);
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 4 + 127); /* the root mapping is the first level */
    assert_non_null(strstr(err.msg, "nesting deeper than 128 levels"));

    /* 120 levels behind an alias placed 10 levels down */
    off = (size_t)sprintf(s, "x: &x ");
    for (i = 0; i < 120; i++) {
        s[off++] = '[';
    }
    for (i = 0; i < 120; i++) {
        s[off++] = ']';
    }
    off += (size_t)sprintf(s + off, "\ny: [[[[[[[[[*x]]]]]]]]]\n");
    s[off] = '\0';
    root = parse(s, &err);
    assert_null(root);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.col, 13);
    assert_non_null(strstr(err.msg, "nesting deeper than 128 levels"));
    free(s);

    s = malloc(WM_YAML_MAX_BYTES + 1);
    assert_non_null(s);
    memset(s, '#', WM_YAML_MAX_BYTES + 1);
    assert_null(wm_yaml_parse(s, WM_YAML_MAX_BYTES + 1, "t.yaml", &err));
    assert_non_null(strstr(err.msg, "larger than 4194304 bytes"));
    assert_string_equal(err.file, "t.yaml");
    root = wm_yaml_parse(s, WM_YAML_MAX_BYTES, "t.yaml", &err); /* one long comment */
    assert_non_null(root);
    wm_cval_free(root);
    free(s);
}

static void test_positions(void **state)
{
    const char *doc = "# c\n"
                      "name: x\n"
                      "\xC3\xA9\xC3\xA9: [1, {k: 2}]\n"
                      "srv:\n"
                      "  port: 8080\n"
                      "h: [-, etag, -]\n"
                      "al: *missing\n";
    struct wm_err err;
    struct wm_cval *root;
    const struct wm_cval *v;
    const struct wm_cval *seq;
    size_t i;

    (void)state;
    root = parse(doc, &err);
    assert_null(root);
    assert_int_equal(err.line, 7);
    assert_int_equal(err.col, 5);

    root = parse_n(doc, strlen(doc) - strlen("al: *missing\n"), &err);
    assert_non_null(root);
    v = wm_cval_get(root, "name");
    assert_int_equal(wm_cval_line(v), 2);
    assert_int_equal(wm_cval_col(v), 7);
    assert_int_equal(wm_cval_key_line(root, 0), 2);
    assert_int_equal(wm_cval_key_col(root, 0), 1);

    /* columns count characters */
    seq = wm_cval_get(root, "\xC3\xA9\xC3\xA9");
    assert_int_equal(wm_cval_line(seq), 3);
    assert_int_equal(wm_cval_col(seq), 5);
    assert_int_equal(wm_cval_col(wm_cval_at(seq, 0)), 6);
    v = wm_cval_at(seq, 1);
    assert_int_equal(wm_cval_col(v), 9);
    assert_int_equal(wm_cval_key_col(v, 0), 10);
    assert_int_equal(wm_cval_col(wm_cval_at(v, 0)), 13);

    v = wm_cval_get(root, "srv");
    assert_int_equal(wm_cval_key_line(root, 2), 4);
    v = wm_cval_get(v, "port");
    assert_int_equal(wm_cval_line(v), 5);
    assert_int_equal(wm_cval_col(v), 9);

    /* a lone '-' in a flow sequence is a string at its own column */
    seq = wm_cval_get(root, "h");
    assert_int_equal(wm_cval_col(seq), 4);
    assert_int_equal(wm_cval_count(seq), 3);
    assert_int_equal(wm_cval_col(wm_cval_at(seq, 0)), 5);
    assert_int_equal(wm_cval_col(wm_cval_at(seq, 1)), 8);
    assert_int_equal(wm_cval_col(wm_cval_at(seq, 2)), 14);
    for (i = 0; i < 3; i++) {
        assert_int_equal(wm_cval_type(wm_cval_at(seq, i)), WM_CVAL_STRING);
    }
    wm_cval_free(root);

    /* a node's position is its content's, after anchor and tag */
    root = parse("a: &v !!str 7\nb: !!int\n  12\nc: &c [1]\nd: &d\n  k: v\n", &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_col(wm_cval_get(root, "a")), 13);
    assert_int_equal(wm_cval_line(wm_cval_get(root, "b")), 3);
    assert_int_equal(wm_cval_col(wm_cval_get(root, "b")), 3);
    assert_int_equal(wm_cval_col(wm_cval_get(root, "c")), 7);
    assert_int_equal(wm_cval_line(wm_cval_get(root, "d")), 6);
    assert_int_equal(wm_cval_col(wm_cval_get(root, "d")), 3);
    wm_cval_free(root);

    /* an error after a flow '-' is reported at its column */
    root = parse("h: [-, x]\ni: [-, y, ]]\n", &err);
    assert_null(root);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.col, 12);
}

static void test_text(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    const struct wm_cval *v;
    size_t len;

    (void)state;
    root = parse("a: 0x1F\nb: '7'\nc: ~\nd: 1.50\ne: TRUE\nf: plain text\n", &err);
    assert_non_null(root);
    v = wm_cval_get(root, "a");
    assert_int_equal(wm_cval_type(v), WM_CVAL_INT);
    assert_int_equal(wm_cval_int(v), 31);
    assert_string_equal(wm_cval_text(v), "0x1F");
    v = wm_cval_get(root, "b");
    assert_int_equal(wm_cval_type(v), WM_CVAL_STRING);
    assert_string_equal(wm_cval_str(v, &len), "7");
    assert_int_equal(len, 1);
    assert_string_equal(wm_cval_text(v), "7");
    v = wm_cval_get(root, "c");
    assert_int_equal(wm_cval_type(v), WM_CVAL_NULL);
    assert_string_equal(wm_cval_text(v), "~");
    v = wm_cval_get(root, "d");
    assert_true(wm_cval_float(v) == 1.5);
    assert_string_equal(wm_cval_text(v), "1.50");
    v = wm_cval_get(root, "e");
    assert_true(wm_cval_bool(v));
    assert_string_equal(wm_cval_text(v), "TRUE");
    assert_string_equal(wm_cval_text(wm_cval_get(root, "f")), "plain text");
    wm_cval_free(root);
}

/* The reader must not print anything: its diagnostics end up in err only. */
static void test_quiet(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    struct stat st;
    FILE *tmp = tmpfile();
    int saved;

    (void)state;
    assert_non_null(tmp);
    fflush(stderr);
    saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    root = parse("a: [1, 2\nb: {c\n", &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_null(root);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    assert_int_equal(st.st_size, 0);
    fclose(tmp);
}

static const char truncation_doc[] = "# head\n"
                                     "top: &t\n"
                                     "  k: \"v \\u00e9\"\n"
                                     "  n: [1, 0x1F, .5, ~, 'q', -, {x: y}]\n"
                                     "list:\n"
                                     "  - a\n"
                                     "  - <<: *t\n"
                                     "    k: w\n"
                                     "lit: |\n"
                                     "  line\n"
                                     "? complex\n"
                                     ": value\n";

static void test_truncated(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    size_t len = sizeof(truncation_doc) - 1;
    size_t i;

    (void)state;
    root = parse_n(truncation_doc, len, &err);
    assert_non_null(root);
    wm_cval_free(root);
    for (i = 0; i < len; i++) {
        root = parse_n(truncation_doc, i, &err);
        if (root == NULL) {
            assert_true(err.line > 0);
            assert_true(err.msg[0] != '\0');
        }
        wm_cval_free(root);
    }
}

static void test_null_args(void **state)
{
    struct wm_err err;
    struct wm_cval *root;

    (void)state;
    root = wm_yaml_parse(NULL, 0, NULL, &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_count(root), 0);
    wm_cval_free(root);
    assert_null(wm_yaml_parse("a: [", 4, NULL, NULL));
    assert_null(wm_yaml_parse("a: 1\na: 2\n", 10, NULL, &err));
    assert_string_equal(err.file, "");
    assert_int_equal(err.line, 2);
}

static struct wm_cval *load(const char *path, struct wm_err *err, int *missing)
{
    struct wm_cval *root;
    char *text;
    size_t n;
    FILE *f = fopen(path, "rb");

    *missing = f == NULL;
    if (f == NULL) {
        return NULL;
    }
    text = malloc(1 << 20);
    assert_non_null(text);
    n = fread(text, 1, 1 << 20, f);
    fclose(f);
    root = wm_yaml_parse(text, n, path, err);
    free(text);
    return root;
}

/* The reference project's configuration files all parse. */
static void test_reference_configs(void **state)
{
    static const char *const dirs[] = {"../shared/wmproxy-ref/config",
                                       "/work/shared/wmproxy-ref/config"};
    static const char *const files[] = {"client.yaml", "reverse.yaml", "server.yaml"};
    const struct wm_cval *maps;
    const struct wm_cval *hdr;
    struct wm_cval *root;
    struct wm_err err;
    char path[512];
    char buf[1024];
    size_t d;
    size_t i;
    int missing;
    int found = 0;

    (void)state;
    for (d = 0; d < sizeof(dirs) / sizeof(dirs[0]) && found == 0; d++) {
        for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", dirs[d], files[i]);
            root = load(path, &err, &missing);
            if (missing) {
                continue;
            }
            found++;
            if (root == NULL) {
                fail_msg("%s", wm_err_format(&err, buf, sizeof(buf)));
            }
            if (i == 0) {
                maps = wm_cval_get(wm_cval_get(root, "proxy"), "mappings");
                assert_int_equal(wm_cval_count(maps), 2);
                /* "domain:" with nothing after it */
                assert_int_equal(wm_cval_type(wm_cval_get(wm_cval_at(maps, 1), "domain")),
                                 WM_CVAL_NULL);
                hdr = wm_cval_at(wm_cval_get(wm_cval_at(maps, 0), "headers"), 3);
                assert_string_equal(wm_cval_str(wm_cval_at(hdr, 0), NULL), "-");
                assert_string_equal(wm_cval_str(wm_cval_at(hdr, 1), NULL), "etag");
            }
            wm_cval_free(root);
        }
    }
    if (found == 0) {
        skip();
    }
}

static int forks;

static void count_fork(void)
{
    forks++;
}

/* The parse runs in the calling process: no child, whatever the input. */
static void test_no_child_process(void **state)
{
    static const char *const texts[] = {"a: 1\n", "? d:\t?", "a: [", "%x\xE1\xE1",
                                        "a: &a [1]\nb: [*a, *a]\n"};
    struct wm_err err;
    size_t i;

    (void)state;
    assert_int_equal(pthread_atfork(count_fork, NULL, NULL), 0);
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        wm_cval_free(parse(texts[i], &err));
    }
    assert_int_equal(forks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_cases),   cmocka_unit_test(test_bad_cases),
        cmocka_unit_test(test_limits),     cmocka_unit_test(test_positions),
        cmocka_unit_test(test_text),       cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_truncated),  cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_reference_configs),
        cmocka_unit_test(test_alias_budget), cmocka_unit_test(test_depth_and_size),
        cmocka_unit_test(test_no_child_process),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
