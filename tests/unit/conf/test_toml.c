/*
 * tests/unit/conf/test_toml.c - TOML reader and value tree.
 *
 * Inputs are copied into buffers of their exact size so that ASan catches any read past
 * the end (the reader never relies on a terminating NUL).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cval.h"
#include "conf/toml.h"
#include "core/err.h"

/* Parse src[0..len) from an exact-size heap copy. */
static struct wm_cval *parse_n(const char *src, size_t len, struct wm_err *err)
{
    char *copy = malloc(len > 0 ? len : 1);
    struct wm_cval *root;

    assert_non_null(copy);
    memcpy(copy, src, len);
    root = wm_toml_parse(copy, len, "t.toml", err);
    free(copy);
    return root;
}

static struct wm_cval *parse(const char *src, struct wm_err *err)
{
    return parse_n(src, strlen(src), err);
}

static char *to_json(const struct wm_cval *v, bool tagged)
{
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(wm_cval_to_json(v, tagged, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

/* ---- valid documents: source -> plain JSON (document order) ---- */

struct ok_case {
    const char *src;
    const char *json;
};

static const struct ok_case ok_cases[] = {
    {"", "{}"},
    {"# only a comment\n\n", "{}"},
    {"\xEF\xBB\xBF" "a = 1\n", "{\"a\":1}"},
    {"a = 1\r\nb = 2\r\n", "{\"a\":1,\"b\":2}"},
    {"a = 1", "{\"a\":1}"},
    {"a.b.c = 1\na.b.d = 2\n", "{\"a\":{\"b\":{\"c\":1,\"d\":2}}}"},
    {"\"quoted key\" = 1\n'lit' = 2\n\"\" = 3\n", "{\"quoted key\":1,\"lit\":2,\"\":3}"},
    {"1.2 = 3\n", "{\"1\":{\"2\":3}}"},
    {"a . b = 1\n", "{\"a\":{\"b\":1}}"},
    {"[t]\nx = 1\n[t.sub]\ny = 2\n", "{\"t\":{\"x\":1,\"sub\":{\"y\":2}}}"},
    {"[a.b.c]\n[a]\nx = 1\n", "{\"a\":{\"b\":{\"c\":{}},\"x\":1}}"},
    {"[[p]]\nn = 1\n[[p]]\nn = 2\n[p.q]\nz = 3\n",
     "{\"p\":[{\"n\":1},{\"n\":2,\"q\":{\"z\":3}}]}"},
    {"[fruit]\napple.color = \"red\"\n[fruit.apple.texture]\nsmooth = true\n",
     "{\"fruit\":{\"apple\":{\"color\":\"red\",\"texture\":{\"smooth\":true}}}}"},
    {"s = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n",
     "{\"s\":\"tab\\there \\\"q\\\" \\\\ \xC3\xA9 \xF0\x9F\x98\x80\"}"},
    {"s = 'C:\\path'\n", "{\"s\":\"C:\\\\path\"}"},
    {"s = \"\"\"\nline1\nline2\"\"\"\n", "{\"s\":\"line1\\nline2\"}"},
    {"s = \"\"\"\r\nA\r\nB\"\"\"\n", "{\"s\":\"A\\nB\"}"},
    {"s = \"\"\"a \\\n    b \\   \n  c\"\"\"\n", "{\"s\":\"a b c\"}"},
    {"s = \"\"\"q\"\"\"\"\"\n", "{\"s\":\"q\\\"\\\"\"}"},
    {"s = '''\nraw \\n ''''\n", "{\"s\":\"raw \\\\n '\"}"},
    {"s = \"\\u0000x\"\n", "{\"s\":\"\\u0000x\"}"},
    {"i = [+99, -17, 0, -0, 1_000, 0xDEAD_beef, 0o755, 0b1101]\n",
     "{\"i\":[99,-17,0,0,1000,3735928559,493,13]}"},
    {"i = [9223372036854775807, -9223372036854775808]\n",
     "{\"i\":[9223372036854775807,-9223372036854775808]}"},
    {"f = [1.5, -0.25, 5e+2, 1E-2, 6.626e-34, 224_617.445_991]\n",
     "{\"f\":[1.5,-0.25,500.0,0.01,6.626e-34,224617.445991]}"},
    {"f = [inf, +inf, -inf, nan, -nan, 0.0, -0.0]\n",
     "{\"f\":[\"inf\",\"inf\",\"-inf\",\"nan\",\"nan\",0.0,-0.0]}"},
    {"b = [true, false]\n", "{\"b\":[true,false]}"},
    {"d = [1979-05-27T07:32:00Z, 1979-05-27 00:32:00.999-07:00, 1979-05-27t07:32:00z]\n",
     "{\"d\":[\"1979-05-27T07:32:00Z\",\"1979-05-27T00:32:00.999-07:00\","
     "\"1979-05-27T07:32:00Z\"]}"},
    {"d = [1979-05-27T07:32:00, 1979-05-27, 07:32:00.5, 2000-02-29]\n",
     "{\"d\":[\"1979-05-27T07:32:00\",\"1979-05-27\",\"07:32:00.5\",\"2000-02-29\"]}"},
    {"a = [\n  1, # one\n  [2, \"x\"],\n  {k = 'v'},\n]\n",
     "{\"a\":[1,[2,\"x\"],{\"k\":\"v\"}]}"},
    {"t = {}\nu = { a = 1, b.c = 2, b.d = [ 3,\n 4 ] }\n",
     "{\"t\":{},\"u\":{\"a\":1,\"b\":{\"c\":2,\"d\":[3,4]}}}"},
    {"k = \"v\" # trailing comment\n", "{\"k\":\"v\"}"},
    {"\xC3\xA9t\xC3\xA9 = \"\xE4\xB8\xAD\"\n", NULL}, /* bare keys are ASCII only: invalid */
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
        if (ok_cases[i].json == NULL) {
            assert_null(root);
            continue;
        }
        if (root == NULL) {
            fail_msg("case %zu: %s", i, wm_err_format(&err, buf, sizeof(buf)));
        }
        json = to_json(root, false);
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
    {"a = 1\na = 2\n", 2, 1, "duplicate key 'a' (first defined at line 1)"},
    {"[s]\nport = 1\n\nport = 2\n", 4, 1, "duplicate key 's.port' (first defined at line 2)"},
    {"a\n", 1, 2, "expected '=' after key"},
    {"a = \n", 1, 5, "expected a value"},
    {"a = 1 2\n", 1, 7, "expected end of line"},
    {"a = \"\xC3\xA9\" x\n", 1, 9, "expected end of line, found 'x'"},
    {"a = \"abc\n", 1, 5, "unterminated string"},
    {"a = \"\"\"abc\n", 1, 5, "unterminated multi-line string"},
    {"a = \"\\q\"\n", 1, 6, "invalid escape sequence '\\q'"},
    {"a = \"\\uD800\"\n", 1, 6, "not a Unicode scalar value"},
    {"a = \"\\u12\"\n", 1, 6, "needs 4 hex digits"},
    {"a = \"\\x41\"\n", 1, 6, "invalid escape"},
    {"a = \"\"\"x\"\"\"\"\"\"\n", 1, 9, "too many quotes"},
    {"\"\"\"k\"\"\" = 1\n", 1, 1, "multi-line strings cannot be keys"},
    {"a = 0x\n", 1, 5, "invalid number '0x'"},
    {"a = 012\n", 1, 5, "leading zeros"},
    {"a = 1__0\n", 1, 5, "'_' must sit between digits"},
    {"a = +0x10\n", 1, 5, "cannot have a sign"},
    {"a = 9223372036854775808\n", 1, 5, "out of range for a 64-bit integer"},
    {"a = -9223372036854775809\n", 1, 5, "out of range"},
    {"a = 0x8000000000000000\n", 1, 5, "out of range"},
    {"a = 1e999\n", 1, 5, "out of range for a 64-bit float"},
    {"a = 1.\n", 1, 5, "'.' must be followed by digits"},
    {"a = .5\n", 1, 5, "expected a value"},
    {"a = tru\n", 1, 5, "expected true"},
    {"a = 1979-02-29\n", 1, 5, "invalid date"},
    {"a = 1979-05-27T25:00:00\n", 1, 5, "invalid time"},
    {"a = 07:32\n", 1, 5, "invalid time"},
    {"a = 1979-05-27T07:32:00+7:00\n", 1, 5, "invalid time offset"},
    {"a = 1979-05-27x\n", 1, 5, "invalid date or time"},
    {"[a]\n[a]\n", 2, 1, "table [a] defined twice (first at line 1)"},
    {"a.b = 1\n[a]\n", 2, 1, "already defined by dotted keys"},
    {"[a.b]\n[a]\nb.c = 1\n", 3, 1, "table 'a.b' was created by a [table] header"},
    {"a = {b = 1}\na.c = 2\n", 2, 1, "already an inline table"},
    {"a = {b = 1}\n[a]\n", 2, 2, "already an inline table"},
    {"a = [1]\n[[a]]\n", 2, 3, "already an array"},
    {"[[a]]\n[a]\n", 2, 2, "already an array of tables"},
    {"a = 1\na.b = 2\n", 2, 1, "already an integer"},
    {"a = {b = 1,}\n", 1, 12, "trailing comma"},
    {"a = {b = 1\n}\n", 1, 11, "one line"},
    {"a = [1 2]\n", 1, 8, "expected ',' or ']'"},
    {"[a\n", 1, 3, "expected ']' to close"},
    {"[[a]\n", 1, 5, "expected ']]'"},
    {"[]\n", 1, 2, "expected a key"},
    {"a = 1\n\x01\n", 2, 1, "control character U+0001"},
    {"# \x7F\n", 1, 3, "control character U+007F"},
    {"a = 1\rb = 2\n", 1, 6, "carriage return"},
    {"a = \"\xFF\"\n", 1, 6, "invalid UTF-8"},
    {"a = \"\xC0\xAF\"\n", 1, 6, "invalid UTF-8"},
    {"a = \"\xED\xA0\x80\"\n", 1, 6, "invalid UTF-8"},
    {"a = \"\xE4\xB8\"", 1, 6, "invalid UTF-8"},
    {"a = 1\n\xEF\xBB\xBF" "b = 2\n", 2, 1, "expected a key"},
    {"a = \"\\U00110000\"\n", 1, 6, "not a Unicode scalar value"},
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
            strstr(err.msg, bad_cases[i].msg) == NULL || strcmp(err.file, "t.toml") != 0) {
            fail_msg("case %zu: got \"%s\", want %d:%d \"%s\"", i, buf, bad_cases[i].line,
                     bad_cases[i].col, bad_cases[i].msg);
        }
        /* the formatted form names file:line:col */
        snprintf(buf + 512, 64, "t.toml:%d:%d: ", err.line, err.col);
        assert_true(strncmp(buf, buf + 512, strlen(buf + 512)) == 0);
    }
}

/* ---- positions ---- */

static void test_positions(void **state)
{
    const char *src = "# c\n"
                      "name = \"x\"\n"
                      "  \xC3\xA9\xC3\xA9 = 1\n" /* invalid bare key is not used below */
                      ;
    const char *doc = "# c\n"
                      "name = \"x\"\n"
                      "\"\xC3\xA9\xC3\xA9\" = [1, { k = 2 }]\n"
                      "[srv]\n"
                      "  port = 8080\n"
                      "[[m]]\n"
                      "a.b = 1979-05-27\n";
    struct wm_err err;
    struct wm_cval *root;
    const struct wm_cval *v;
    const struct wm_cval *arr;

    (void)state;
    root = parse(src, &err);
    assert_null(root);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.col, 3);

    root = parse(doc, &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_type(root), WM_CVAL_TABLE);
    assert_int_equal(wm_cval_count(root), 4);

    v = wm_cval_get(root, "name");
    assert_int_equal(wm_cval_line(v), 2);
    assert_int_equal(wm_cval_col(v), 8);
    assert_int_equal(wm_cval_key_line(root, 0), 2);
    assert_int_equal(wm_cval_key_col(root, 0), 1);

    /* columns count characters: the two-byte 'é' counts once */
    arr = wm_cval_get(root, "\xC3\xA9\xC3\xA9");
    assert_non_null(arr);
    assert_int_equal(wm_cval_col(arr), 8);
    assert_int_equal(wm_cval_col(wm_cval_at(arr, 0)), 9);
    v = wm_cval_at(arr, 1);
    assert_int_equal(wm_cval_type(v), WM_CVAL_TABLE);
    assert_int_equal(wm_cval_col(v), 12);
    assert_int_equal(wm_cval_key_col(v, 0), 14);
    assert_int_equal(wm_cval_col(wm_cval_at(v, 0)), 18);

    v = wm_cval_get(root, "srv");
    assert_int_equal(wm_cval_line(v), 4);
    assert_int_equal(wm_cval_col(v), 1);
    v = wm_cval_get(v, "port");
    assert_int_equal(wm_cval_line(v), 5);
    assert_int_equal(wm_cval_col(v), 10);
    assert_int_equal(wm_cval_int(v), 8080);

    v = wm_cval_get(root, "m");
    assert_int_equal(wm_cval_type(v), WM_CVAL_ARRAY);
    v = wm_cval_get(wm_cval_get(wm_cval_at(v, 0), "a"), "b");
    assert_int_equal(wm_cval_type(v), WM_CVAL_DATE_LOCAL);
    assert_string_equal(wm_cval_text(v), "1979-05-27");
    assert_int_equal(wm_cval_line(v), 7);
    assert_int_equal(wm_cval_col(v), 7);
    wm_cval_free(root);
}

/* ---- accessors ---- */

static void test_accessors(void **state)
{
    const char *doc = "s = \"a\\u0000b\"\n\"k\\u0000\" = 1\nf = 2.5\nb = true\n"
                      "t = 1979-05-27T07:32:00+01:00\n";
    struct wm_err err;
    struct wm_cval *root;
    const struct wm_cval *v;
    const char *s;
    size_t len = 0;

    (void)state;
    root = parse(doc, &err);
    assert_non_null(root);

    v = wm_cval_get(root, "s");
    s = wm_cval_str(v, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 3);
    assert_ptr_equal(wm_cval_text(v), s);
    assert_null(wm_cval_str(root, NULL));

    /* a key holding NUL is only reachable with its length */
    assert_null(wm_cval_get(root, "k"));
    v = wm_cval_get_n(root, "k\0", 2);
    assert_non_null(v);
    assert_int_equal(wm_cval_int(v), 1);
    assert_int_equal(wm_cval_key_len(root, 1), 2);
    assert_string_equal(wm_cval_key_at(root, 1), "k");

    v = wm_cval_get(root, "f");
    assert_true(wm_cval_float(v) == 2.5);
    assert_int_equal(wm_cval_int(v), 0);
    assert_null(wm_cval_text(v));
    assert_true(wm_cval_bool(wm_cval_get(root, "b")));
    v = wm_cval_get(root, "t");
    assert_int_equal(wm_cval_type(v), WM_CVAL_DATETIME);
    assert_string_equal(wm_cval_text(v), "1979-05-27T07:32:00+01:00");

    assert_null(wm_cval_get(root, "missing"));
    assert_null(wm_cval_get(v, "x"));
    assert_null(wm_cval_get(NULL, "x"));
    assert_null(wm_cval_at(root, 99));
    assert_null(wm_cval_key_at(root, 99));
    assert_int_equal(wm_cval_count(v), 0);

    assert_string_equal(wm_cval_type_name(WM_CVAL_INT), "integer");
    assert_string_equal(wm_cval_type_name(WM_CVAL_DATETIME_LOCAL), "datetime-local");
    assert_string_equal(wm_cval_type_name(WM_CVAL_TYPE_COUNT), "?");
    wm_cval_free(root);
    wm_cval_free(NULL);
}

static void test_tagged_json(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    char *json;

    (void)state;
    root = parse("a = 0x10\nb = [1.0, nan]\nc = 07:32:00\n", &err);
    assert_non_null(root);
    json = to_json(root, true);
    assert_string_equal(json, "{\"a\":{\"type\":\"integer\",\"value\":\"16\"},"
                              "\"b\":[{\"type\":\"float\",\"value\":\"1.0\"},"
                              "{\"type\":\"float\",\"value\":\"nan\"}],"
                              "\"c\":{\"type\":\"time-local\",\"value\":\"07:32:00\"}}");
    free(json);
    wm_cval_free(root);
}

/* JSON escaping of hand-built values: control characters, bad UTF-8, deep trees. */
static void test_json_escaping(void **state)
{
    struct wm_cval *t = wm_cval_new_table(0, 0);
    struct wm_cval *deep;
    struct wm_cval *a;
    char *json;
    int i;

    (void)state;
    assert_non_null(t);
    assert_int_equal(wm_cval_table_add(t, "k\"\\", 3, 0, 0,
                                       wm_cval_new_string("\x01\x1f\x7f\n\t\xC3\xA9\xFF", 8,
                                                          0, 0)), 0);
    assert_int_equal(wm_cval_table_add(t, "n", 1, 0, 0, wm_cval_new_null(0, 0)), 0);
    assert_int_equal(wm_cval_table_add(t, "n", 1, 0, 0, wm_cval_new_null(0, 0)),
                     WM_CVAL_EXISTS);
    json = to_json(t, false);
    assert_string_equal(json, "{\"k\\\"\\\\\":\"\\u0001\\u001f\\u007f\\n\\t\xC3\xA9\xEF\xBF\xBD\","
                              "\"n\":null}");
    free(json);
    wm_cval_free(t);

    /* deeper than the dumper accepts: error, no crash */
    deep = wm_cval_new_array(0, 0);
    a = deep;
    for (i = 0; i < WM_CVAL_JSON_MAX_DEPTH + 5; i++) {
        struct wm_cval *n = wm_cval_new_array(0, 0);

        assert_int_equal(wm_cval_array_push(a, n), 0);
        a = n;
    }
    json = (char *)1;
    assert_int_equal(wm_cval_to_json(deep, false, &json, NULL), -1);
    assert_null(json);
    wm_cval_free(deep);
}

static void test_copy_and_big_table(void **state)
{
    struct wm_cval *t = wm_cval_new_table(1, 1);
    struct wm_cval *c;
    char key[32];
    int i;

    (void)state;
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(wm_cval_table_add(t, key, strlen(key), i, 1,
                                           wm_cval_new_int(i, i, 5)), 0);
    }
    c = wm_cval_copy(t);
    wm_cval_free(t);
    assert_int_equal(wm_cval_count(c), 5000);
    assert_int_equal(wm_cval_int(wm_cval_get(c, "key4321")), 4321);
    assert_int_equal(wm_cval_line(wm_cval_get(c, "key17")), 17);
    assert_string_equal(wm_cval_key_at(c, 4999), "key4999");
    assert_null(wm_cval_get(c, "key5000"));
    wm_cval_free(c);
}

/* ---- truncated and oversized input ---- */

static const char truncation_doc[] =
    "\xEF\xBB\xBF# head\n"
    "title = \"T\\u00e9st \\\"x\\\"\"\n"
    "ml = \"\"\"\nab\\\n  c\"\"\"\n"
    "lit = '''x'''\n"
    "n = [0x1F, -1_000, 1.5e3, inf, 1979-05-27T07:32:00.123-07:00, 07:00:00]\n"
    "inl = { a.b = 1, c = [ {d = 'e'} ] }\n"
    "[t.\"q k\"]\r\n"
    "x = true\n"
    "[[aot]]\n"
    "y = false # end\n";

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
            assert_true(err.col > 0);
            assert_true(err.msg[0] != '\0');
        }
        wm_cval_free(root);
    }
}

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen(head);
    size_t ul = strlen(unit);
    size_t tl = strlen(tail);
    char *s = malloc(hl + ul * n + tl + 1);
    size_t i;

    assert_non_null(s);
    memcpy(s, head, hl);
    for (i = 0; i < n; i++) {
        memcpy(s + hl + i * ul, unit, ul);
    }
    memcpy(s + hl + n * ul, tail, tl + 1);
    return s;
}

static void test_oversized(void **state)
{
    struct wm_err err;
    struct wm_cval *root;
    char *s;
    char *t;
    size_t i;

    (void)state;
    /* nesting: 128 levels are fine, deeper is refused with a clear message */
    s = repeat("a = ", "[", 127, "");
    t = repeat(s, "]", 127, "\n");
    root = parse(t, &err);
    assert_non_null(root);
    wm_cval_free(root);
    free(s);
    free(t);
    s = repeat("a = ", "[", 100000, "");
    root = parse(s, &err);
    assert_null(root);
    assert_non_null(strstr(err.msg, "nesting deeper than 128"));
    free(s);
    s = repeat("a = ", "{b=", 1000, "1");
    root = parse(s, &err);
    assert_null(root);
    assert_non_null(strstr(err.msg, "nesting deeper"));
    free(s);
    s = repeat("[", "a.", 1000, "b]\n");
    root = parse(s, &err);
    assert_null(root);
    assert_non_null(strstr(err.msg, "more than 128 parts"));
    free(s);

    /* a one-megabyte string */
    s = repeat("s = \"", "xxxxxxxxxxxxxxx\\n", 65536, "\"\n");
    root = parse(s, &err);
    assert_non_null(root);
    assert_int_equal(strlen(wm_cval_str(wm_cval_get(root, "s"), NULL)), 16 * 65536);
    wm_cval_free(root);
    free(s);

    /* many keys in one table (stays linear thanks to the index) */
    s = malloc(200000 * 32);
    assert_non_null(s);
    t = s;
    for (i = 0; i < 200000; i++) {
        t += snprintf(t, 32, "k%zu = %zu\n", i, i);
    }
    root = parse(s, &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_count(root), 200000);
    assert_int_equal(wm_cval_int(wm_cval_get(root, "k199999")), 199999);
    wm_cval_free(root);
    free(s);

    /* a long bad number is quoted in the message, truncated */
    s = repeat("n = 1", "_", 5000, "\n");
    root = parse(s, &err);
    assert_null(root);
    assert_true(strlen(err.msg) < 200);
    free(s);
}

static void test_null_args(void **state)
{
    struct wm_err err;
    struct wm_cval *root;

    (void)state;
    root = wm_toml_parse(NULL, 0, NULL, &err);
    assert_non_null(root);
    assert_int_equal(wm_cval_count(root), 0);
    wm_cval_free(root);
    assert_null(wm_toml_parse("a =", 3, NULL, NULL));
    root = wm_toml_parse("a = 1", 5, NULL, &err);
    assert_non_null(root);
    wm_cval_free(root);
    assert_null(wm_toml_parse("a = 1\na = 2", 11, NULL, &err));
    assert_string_equal(err.file, "");
    assert_int_equal(err.line, 2);
}

/* The reference project's configuration files all parse. */
static void test_reference_configs(void **state)
{
    static const char *const dirs[] = {"../shared/wmproxy-ref/config",
                                       "/work/shared/wmproxy-ref/config"};
    static const char *const files[] = {"client.toml", "mapping_client.toml",
                                        "mapping_server.toml", "reverse.toml", "server.toml"};
    char path[512];
    char buf[1024];
    struct wm_err err;
    struct wm_cval *root;
    size_t d;
    size_t i;
    size_t n;
    char *text;
    FILE *f;
    int found = 0;

    (void)state;
    for (d = 0; d < sizeof(dirs) / sizeof(dirs[0]) && found == 0; d++) {
        for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", dirs[d], files[i]);
            f = fopen(path, "rb");
            if (f == NULL) {
                continue;
            }
            found++;
            text = malloc(1 << 20);
            assert_non_null(text);
            n = fread(text, 1, 1 << 20, f);
            fclose(f);
            root = wm_toml_parse(text, n, path, &err);
            free(text);
            if (root == NULL) {
                fail_msg("%s", wm_err_format(&err, buf, sizeof(buf)));
            }
            if (strcmp(files[i], "reverse.toml") == 0) {
                const struct wm_cval *up = wm_cval_get(wm_cval_get(root, "http"), "upstream");

                assert_int_equal(wm_cval_type(up), WM_CVAL_ARRAY);
                assert_int_equal(wm_cval_count(up), 2);
            }
            wm_cval_free(root);
        }
    }
    if (found == 0) {
        skip();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_cases),        cmocka_unit_test(test_bad_cases),
        cmocka_unit_test(test_positions),       cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_tagged_json),     cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_copy_and_big_table), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_oversized),       cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_reference_configs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
