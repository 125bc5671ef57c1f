/*
 * conf/toml.c - TOML reader: document structure, table headers and the definition rules.
 *
 * Every table and array carries TOML_F_* bits (toml_int.h) saying how it came to exist;
 * the TOML 1.0 rules then read:
 *   - a [header] may define a table that exists only as an implicit parent, once;
 *   - dotted keys may only extend tables that dotted keys created ("provided such tables
 *     were not previously created" otherwise), never a header-created one;
 *   - inline tables and static arrays are closed once written;
 *   - [[header]] appends only to arrays that [[header]] created, and a header path
 *     crossing such an array continues in its last table.
 */
#include "conf/toml.h"

#include "conf/cval.h"
#include "conf/toml_int.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>

#define KEY_SHOW_MAX TOML_NAME_MAX /* bytes of a key quoted in an error */

/* "table", "inline table", "array", "array of tables" or the scalar type name. */
static const char *kind_of(const struct wm_cval *v)
{
    unsigned int f = wm_cval_flags(v);

    switch (wm_cval_type(v)) {
    case WM_CVAL_TABLE:
        return (f & TOML_F_FROZEN) ? "an inline table" : "a table";
    case WM_CVAL_ARRAY:
        return (f & TOML_F_AOT) ? "an array of tables" : "an array";
    case WM_CVAL_INT:
        return "an integer";
    default:
        return wm_cval_type_name(wm_cval_type(v));
    }
}

/* Add child (new, NULL when its allocation failed; always taken) to t under
 * kp, marked with the TOML_F_* bits of how it came to exist. */
static int new_child(struct toml_parser *p, struct wm_cval *t, const struct toml_keypart *kp,
                     struct wm_cval *child, unsigned int flags, struct wm_cval **out)
{
    if (child == NULL || wm_cval_table_add(t, kp->s, kp->len, kp->line, kp->col, child) != 0) {
        return toml_error(p, "out of memory"); /* the table freed child */
    }
    wm_cval_set_flags(child, flags);
    *out = child;
    return 0;
}

static int check_depth(struct toml_parser *p, const struct toml_keypart *kp, int depth)
{
    if (depth > WM_TOML_MAX_DEPTH) {
        return toml_error_at(p, kp->line, kp->col, "nesting deeper than %d levels",
                             WM_TOML_MAX_DEPTH);
    }
    return 0;
}

/* Printable "prefix.k[0]...k[upto]" into buf. */
static const char *full_name(const char *prefix, const struct toml_key *k, size_t upto,
                             char *buf, size_t n)
{
    size_t off = 0;
    int r;

    buf[0] = '\0';
    if (prefix != NULL && prefix[0] != '\0') {
        r = snprintf(buf, n, "%s.", prefix);
        off = r < 0 ? 0 : (size_t)r >= n ? n - 1 : (size_t)r;
    }
    toml_key_display(k, upto, buf + off, n - off);
    return buf;
}

/* Walk from t along the parent parts of k (all but the last one), creating
 * the tables missing on the way. header: the key of a [table] header (from
 * the root, through the last table of an array of tables, counting depth);
 * else a dotted key, which only extends tables that dotted keys created.
 * *out: the table that gets the last part. 0, or -1 after an error. */
static int walk_parents(struct toml_parser *p, struct wm_cval *t, const char *prefix,
                        const struct toml_key *k, bool header, struct wm_cval **out, int *depth)
{
    char name[KEY_SHOW_MAX];
    size_t idx = 0;

    for (size_t i = 0; i + 1 < k->n; i++) {
        const struct toml_keypart *kp = &k->parts[i];
        struct wm_cval *child = wm_cval_table_find(t, kp->s, kp->len, &idx);
        unsigned int f = child != NULL ? wm_cval_flags(child) : 0;
        if (child == NULL) {
            if (new_child(p, t, kp, wm_cval_new_table(kp->line, kp->col),
                          header ? TOML_F_IMPLICIT : TOML_F_DOTTED, &child) != 0) {
                return -1;
            }
        } else if (header && wm_cval_type(child) == WM_CVAL_ARRAY && (f & TOML_F_AOT)) {
            child = wm_cval_array_last(child);
            if (child == NULL) {
                return toml_error_at(p, kp->line, kp->col, "empty array of tables");
            }
            (*depth)++;
        } else if (wm_cval_type(child) == WM_CVAL_TABLE && !(f & TOML_F_FROZEN) && !header &&
                   !(f & TOML_F_DOTTED)) {
            return toml_error_at(p, kp->line, kp->col,
                                 "table '%s' was created by a [table] header (line %d); "
                                 "dotted keys cannot add to it",
                                 full_name(prefix, k, i, name, sizeof(name)), wm_cval_line(child));
        } else if (wm_cval_type(child) != WM_CVAL_TABLE || (f & TOML_F_FROZEN)) {
            return toml_error_at(p, kp->line, kp->col,
                                 "key '%s' is already %s (line %d) and cannot be extended",
                                 full_name(prefix, k, i, name, sizeof(name)), kind_of(child),
                                 wm_cval_key_line(t, idx));
        }
        t = child;
        if (header && (check_depth(p, kp, ++*depth) != 0)) {
            return -1;
        }
    }
    *out = t;
    return 0;
}

int toml_insert(struct toml_parser *p, struct wm_cval *t, const char *prefix,
                const struct toml_key *k, struct wm_cval *val)
{
    const struct toml_keypart *kp = &k->parts[k->n - 1];
    char name[KEY_SHOW_MAX];
    size_t idx = 0;
    int r;

    if (walk_parents(p, t, prefix, k, false, &t, NULL) != 0) {
        wm_cval_free(val);
        return -1;
    }
    r = wm_cval_table_add(t, kp->s, kp->len, kp->line, kp->col, val);
    if (r == WM_CVAL_EXISTS) {
        wm_cval_table_find(t, kp->s, kp->len, &idx);
        return toml_error_at(p, kp->line, kp->col, "duplicate key '%s' (first defined at line %d)",
                             full_name(prefix, k, k->n - 1, name, sizeof(name)),
                             wm_cval_key_line(t, idx));
    }
    if (r != 0) {
        return toml_error(p, "out of memory");
    }
    return 0;
}

/* [a.b.c]: define table c (or give an implicit one its definition). */
static int define_table(struct toml_parser *p, struct wm_cval *t, const struct toml_key *k,
                        int line, int col)
{
    const struct toml_keypart *kp = &k->parts[k->n - 1];
    struct wm_cval *child;
    char name[KEY_SHOW_MAX];
    unsigned int f;
    size_t idx = 0;

    toml_key_display(k, k->n - 1, name, sizeof(name));
    child = wm_cval_table_find(t, kp->s, kp->len, &idx);
    if (child == NULL) {
        if (new_child(p, t, kp, wm_cval_new_table(line, col), TOML_F_EXPLICIT, &child) != 0) {
            return -1;
        }
        p->cur = child;
        return 0;
    }
    f = wm_cval_flags(child);
    if (wm_cval_type(child) != WM_CVAL_TABLE || (f & TOML_F_FROZEN)) {
        return toml_error_at(p, kp->line, kp->col, "key '%s' is already %s (line %d)", name,
                             kind_of(child), wm_cval_key_line(t, idx));
    }
    if (f & TOML_F_EXPLICIT) {
        return toml_error_at(p, line, col, "table [%s] defined twice (first at line %d)", name,
                             wm_cval_line(child));
    }
    if (f & TOML_F_DOTTED) {
        return toml_error_at(p, line, col,
                             "table [%s] was already defined by dotted keys (line %d)", name,
                             wm_cval_key_line(t, idx));
    }
    wm_cval_set_flags(child, f | TOML_F_EXPLICIT);
    wm_cval_set_pos(child, line, col);
    p->cur = child;
    return 0;
}

/* [[a.b.c]]: append a new table to array of tables c. */
static int append_table(struct toml_parser *p, struct wm_cval *t, const struct toml_key *k,
                        int line, int col)
{
    const struct toml_keypart *kp = &k->parts[k->n - 1];
    struct wm_cval *arr;
    struct wm_cval *elem;
    char name[KEY_SHOW_MAX];
    size_t idx = 0;

    arr = wm_cval_table_find(t, kp->s, kp->len, &idx);
    if (arr == NULL) {
        if (new_child(p, t, kp, wm_cval_new_array(line, col), TOML_F_AOT, &arr) != 0) {
            return -1;
        }
    } else if (wm_cval_type(arr) != WM_CVAL_ARRAY || !(wm_cval_flags(arr) & TOML_F_AOT)) {
        return toml_error_at(p, kp->line, kp->col,
                             "cannot define array of tables [[%s]]: key is already %s (line %d)",
                             toml_key_display(k, k->n - 1, name, sizeof(name)), kind_of(arr),
                             wm_cval_key_line(t, idx));
    }
    elem = wm_cval_new_table(line, col);
    if (elem == NULL) {
        return toml_error(p, "out of memory");
    }
    wm_cval_set_flags(elem, TOML_F_EXPLICIT);
    if (wm_cval_array_push(arr, elem) != 0) {
        return toml_error(p, "out of memory");
    }
    p->cur = elem;
    return 0;
}

static int parse_header(struct toml_parser *p)
{
    struct toml_key k = {NULL, 0, 0};
    struct wm_cval *parent = NULL;
    int line = p->line;
    int col = p->col;
    bool aot = toml_peek_at(p, 1) == '[';
    char d[16];
    int depth = 0;
    int r = -1;

    toml_advance(p, aot ? 2 : 1);
    toml_skip_ws(p);
    if (toml_parse_key(p, &k) != 0) {
        goto out;
    }
    if (toml_peek(p) != ']' || (aot && toml_peek_at(p, 1) != ']')) {
        if (toml_peek(p) == ']') {
            toml_advance(p, 1); /* "[[a]x": complain about what follows the first ']' */
        }
        toml_error(p, "expected '%s' to close the table header, found %s", aot ? "]]" : "]",
                   toml_describe(p, d, sizeof(d)));
        goto out;
    }
    toml_advance(p, aot ? 2 : 1);
    if (walk_parents(p, p->root, NULL, &k, true, &parent, &depth) != 0 ||
        check_depth(p, &k.parts[k.n - 1], depth + (aot ? 2 : 1)) != 0) {
        goto out;
    }
    r = aot ? append_table(p, parent, &k, line, col) : define_table(p, parent, &k, line, col);
    p->cur_depth = depth + (aot ? 2 : 1);
    toml_key_display(&k, k.n - 1, p->cur_name, sizeof(p->cur_name));
out:
    toml_key_clear(&k);
    return r;
}

static int parse_keyval(struct toml_parser *p)
{
    struct toml_key k = {NULL, 0, 0};
    struct wm_cval *val;
    char d[16];
    int depth;
    int r = -1;

    if (toml_parse_key(p, &k) != 0) {
        goto out;
    }
    if (toml_peek(p) != '=') {
        toml_error(p, "expected '=' after key, found %s", toml_describe(p, d, sizeof(d)));
        goto out;
    }
    toml_advance(p, 1);
    toml_skip_ws(p);
    depth = p->cur_depth + (int)k.n;
    if (check_depth(p, &k.parts[k.n - 1], depth) != 0 ||
        toml_parse_value(p, depth, &val) != 0) {
        goto out;
    }
    r = toml_insert(p, p->cur, p->cur_name, &k, val);
out:
    toml_key_clear(&k);
    return r;
}

static int parse_document(struct toml_parser *p)
{
    char d[16];
    int c;

    for (;;) {
        toml_skip_ws(p);
        c = toml_peek(p);
        if (c == '[') {
            if (parse_header(p) != 0) {
                return -1;
            }
        } else if (c >= 0 && c != '#' && !toml_at_newline(p)) {
            if (parse_keyval(p) != 0) {
                return -1;
            }
        }
        toml_skip_ws(p);
        toml_skip_comment(p);
        if (toml_peek(p) < 0) {
            return 0;
        }
        if (!toml_at_newline(p)) {
            return toml_error(p, "expected end of line, found %s",
                              toml_describe(p, d, sizeof(d)));
        }
        toml_advance(p, toml_peek(p) == '\r' ? 2 : 1);
    }
}

struct wm_cval *wm_toml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err)
{
    struct toml_parser p = {0};

    if (err != NULL) {
        wm_err_clear(err);
    }
    p.s = text != NULL ? text : "";
    p.n = text != NULL ? len : 0;
    p.line = 1;
    p.col = 1;
    p.file = filename;
    p.err = err;
    if (toml_validate(&p) != 0) {
        return NULL;
    }
    p.root = wm_cval_new_table(1, 1);
    if (p.root == NULL) {
        toml_error(&p, "out of memory");
        return NULL;
    }
    p.cur = p.root;
    if (parse_document(&p) != 0) {
        wm_cval_free(p.root);
        p.root = NULL;
    }
    free(p.buf.p);
    return p.root;
}
