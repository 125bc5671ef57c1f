/*
 * conf/yaml_build.c - YAML reader: the tree builder fed by yaml.c's event loop.
 *
 * Containers being filled live on a stack of frames. A finished value is "delivered" to
 * the frame below: appended to a sequence, or in a mapping either taken as the pending key
 * (its text) or stored under it. Anchors point at delivered values; values that end up in
 * no container (anchored keys, merge sources) are parked in the detached list so that
 * those pointers stay valid until the builder is freed.
 *
 * Aliases are expanded as copies under a budget (WM_YAML_MAX_ALIAS_NODES values in all),
 * so a document of nested aliases ("billion laughs") is refused instead of exhausting
 * memory. Anchors are found through a hash table: a document may hold many.
 */
#include "conf/cval.h"
#include "conf/yaml.h"
#include "conf/yaml_int.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct yframe {
    struct wm_cval *v; /* table or array being filled */
    char *anchor;      /* registered when the container ends; NULL if none */
    char *key;         /* pending key of a mapping (have_key) */
    size_t keylen;
    int key_line;
    int key_col;
    bool have_key;
    bool key_merge;        /* pending key is the merge key "<<" */
    struct wm_cval *merge; /* value of "<<", applied when the mapping ends */
};

struct yanchor {
    char *name;        /* NULL: free slot */
    struct wm_cval *v; /* owned by the tree or the detached list */
};

struct yaml_build {
    struct yframe stack[WM_YAML_MAX_DEPTH];
    int depth;
    struct yanchor *anchors; /* open addressing, capanchors a power of two */
    size_t nanchors;
    size_t capanchors;
    struct wm_cval **detached;
    size_t ndetached;
    size_t capdetached;
    struct wm_cval *root;
    size_t alias_nodes;
    int line; /* position of the current event, for out-of-memory errors */
    int col;
    const char *file;
    struct wm_err *err;
};

int yaml_build_fail(struct yaml_build *b, int line, int col, const char *fmt, ...)
{
    char msg[WM_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return wm_err_set(b->err, b->file, line, col, NULL, "%s", msg);
}

static int oom(struct yaml_build *b)
{
    return yaml_build_fail(b, b->line, b->col, "out of memory");
}

static char *dup_n(const char *s, size_t len)
{
    char *d = malloc(len + 1);

    if (d != NULL) {
        if (len > 0) {
            memcpy(d, s, len);
        }
        d[len] = '\0';
    }
    return d;
}

struct yaml_build *yaml_build_new(const char *filename, struct wm_err *err)
{
    struct yaml_build *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        wm_err_set(err, filename, 0, 0, NULL, "out of memory");
        return NULL;
    }
    b->file = filename;
    b->err = err;
    b->line = 1;
    b->col = 1;
    return b;
}

void yaml_build_free(struct yaml_build *b)
{
    size_t i;

    if (b == NULL) {
        return;
    }
    while (b->depth > 0) {
        b->depth--;
        wm_cval_free(b->stack[b->depth].v);
        wm_cval_free(b->stack[b->depth].merge);
        free(b->stack[b->depth].anchor);
        free(b->stack[b->depth].key);
    }
    for (i = 0; i < b->capanchors; i++) {
        free(b->anchors[i].name);
    }
    free(b->anchors);
    for (i = 0; i < b->ndetached; i++) {
        wm_cval_free(b->detached[i]);
    }
    free(b->detached);
    wm_cval_free(b->root);
    free(b);
}

/* Keep v alive (unowned by the tree) until the builder is freed. Takes v. */
static int park(struct yaml_build *b, struct wm_cval *v)
{
    struct wm_cval **p;
    size_t ncap;

    if (b->ndetached == b->capdetached) {
        ncap = b->capdetached == 0 ? 8 : b->capdetached * 2;
        p = realloc(b->detached, ncap * sizeof(*p));
        if (p == NULL) {
            wm_cval_free(v);
            return oom(b);
        }
        b->detached = p;
        b->capdetached = ncap;
    }
    b->detached[b->ndetached++] = v;
    return 0;
}

/* ---- anchors ---- */

static size_t anchor_hash(const char *name)
{
    size_t h = 14695981039346656037ULL & SIZE_MAX; /* FNV-1a */

    for (; *name != '\0'; name++) {
        h = (h ^ (unsigned char)*name) * (1099511628211ULL & SIZE_MAX);
    }
    return h;
}

/* Slot holding name, or the free slot where it would go (capanchors > 0). */
static struct yanchor *anchor_slot(const struct yaml_build *b, const char *name)
{
    size_t mask = b->capanchors - 1;
    size_t i = anchor_hash(name) & mask;

    while (b->anchors[i].name != NULL && strcmp(b->anchors[i].name, name) != 0) {
        i = (i + 1) & mask;
    }
    return &b->anchors[i];
}

/* Keep the table at most half full. */
static int anchor_grow(struct yaml_build *b)
{
    struct yanchor *old = b->anchors;
    size_t oldcap = b->capanchors;
    size_t i;

    if (b->nanchors + 1 <= b->capanchors / 2) {
        return 0;
    }
    if (oldcap > SIZE_MAX / 2 / sizeof(*old)) {
        return oom(b);
    }
    b->capanchors = oldcap == 0 ? 16 : oldcap * 2;
    b->anchors = calloc(b->capanchors, sizeof(*old));
    if (b->anchors == NULL) {
        b->anchors = old;
        b->capanchors = oldcap;
        return oom(b);
    }
    for (i = 0; i < oldcap; i++) {
        if (old[i].name != NULL) {
            *anchor_slot(b, old[i].name) = old[i];
        }
    }
    free(old);
    return 0;
}

/* Register (or redefine: the latest definition wins) anchor name -> v. Takes name. */
static int anchor_add(struct yaml_build *b, char *name, struct wm_cval *v)
{
    struct yanchor *a;

    if (anchor_grow(b) != 0) {
        free(name);
        return -1;
    }
    a = anchor_slot(b, name);
    if (a->name != NULL) {
        free(name);
    } else {
        a->name = name;
        b->nanchors++;
    }
    a->v = v;
    return 0;
}

static const struct wm_cval *anchor_find(const struct yaml_build *b, const char *name)
{
    return b->capanchors > 0 ? anchor_slot(b, name)->v : NULL;
}

/* ---- aliases and merge keys ---- */

/* Number of values in v and its height (0 for a scalar). */
static size_t tree_size(const struct wm_cval *v, int *height)
{
    size_t n = 1;
    size_t i;
    int h;

    *height = 0;
    for (i = 0; i < wm_cval_count(v); i++) {
        n += tree_size(wm_cval_at(v, i), &h);
        if (h + 1 > *height) {
            *height = h + 1;
        }
    }
    return n;
}

/* Copy src to be placed at nesting level depth, within the alias budget. */
static struct wm_cval *budget_copy(struct yaml_build *b, const struct wm_cval *src, int depth,
                                   int line, int col)
{
    struct wm_cval *c;
    int height;
    size_t n = tree_size(src, &height);

    if (depth + height > WM_YAML_MAX_DEPTH) {
        yaml_build_fail(b, line, col, "nesting deeper than %d levels", WM_YAML_MAX_DEPTH);
        return NULL;
    }
    if (n > WM_YAML_MAX_ALIAS_NODES - b->alias_nodes) {
        yaml_build_fail(b, line, col,
                        "aliases expand to more than %lu values (an alias bomb?): refused",
                        (unsigned long)WM_YAML_MAX_ALIAS_NODES);
        return NULL;
    }
    b->alias_nodes += n;
    c = wm_cval_copy(src);
    if (c == NULL) {
        oom(b);
    }
    return c;
}

/* Add the keys of merge source src (a table) that t lacks. */
static int merge_from(struct yaml_build *b, struct wm_cval *t, const struct wm_cval *src,
                      int depth)
{
    struct wm_cval *c;
    const char *key;
    size_t klen;
    size_t i;

    for (i = 0; i < wm_cval_count(src); i++) {
        key = wm_cval_key_at(src, i);
        klen = wm_cval_key_len(src, i);
        if (wm_cval_table_find(t, key, klen, NULL) != NULL) {
            continue; /* explicit keys and earlier sources win */
        }
        c = budget_copy(b, wm_cval_at(src, i), depth, wm_cval_line(t), wm_cval_col(t));
        if (c == NULL) {
            return -1;
        }
        if (wm_cval_table_add(t, key, klen, wm_cval_key_line(src, i), wm_cval_key_col(src, i),
                              c) != 0) {
            return oom(b);
        }
    }
    return 0;
}

static int apply_merge(struct yaml_build *b, struct yframe *f, int depth)
{
    struct wm_cval *m = f->merge;
    size_t i;
    int r = 0;

    f->merge = NULL;
    if (wm_cval_type(m) == WM_CVAL_TABLE) {
        r = merge_from(b, f->v, m, depth);
    } else {
        for (i = 0; i < wm_cval_count(m) && r == 0; i++) {
            r = merge_from(b, f->v, wm_cval_at(m, i), depth);
        }
    }
    /* the source may be anchored: keep it alive until the end */
    if (park(b, m) != 0) {
        return -1;
    }
    return r;
}

static bool is_merge_source(const struct wm_cval *v)
{
    size_t i;

    if (wm_cval_type(v) == WM_CVAL_TABLE) {
        return true;
    }
    if (wm_cval_type(v) != WM_CVAL_ARRAY) {
        return false;
    }
    for (i = 0; i < wm_cval_count(v); i++) {
        if (wm_cval_type(wm_cval_at(v, i)) != WM_CVAL_TABLE) {
            return false;
        }
    }
    return true;
}

/* ---- delivering finished values ---- */

/* Text a value stands for as a mapping key (new buffer in *out). */
static int key_text(struct yaml_build *b, const struct wm_cval *v, char **out, size_t *len)
{
    const char *s;

    if (wm_cval_type(v) == WM_CVAL_TABLE || wm_cval_type(v) == WM_CVAL_ARRAY) {
        /* a complex key: its flow JSON form is the only sensible text;
         * bounded, as keys nested in keys double their escapes per level */
        if (wm_cval_to_json(v, false, out, len) != 0) {
            return oom(b);
        }
        if (*len > WM_YAML_MAX_COMPLEX_KEY) {
            free(*out);
            *out = NULL;
            return yaml_build_fail(b, wm_cval_line(v), wm_cval_col(v),
                                   "a complex key longer than %d bytes as text",
                                   WM_YAML_MAX_COMPLEX_KEY);
        }
        return 0;
    }
    if (wm_cval_type(v) == WM_CVAL_STRING) {
        s = wm_cval_str(v, len);
    } else {
        s = wm_cval_text(v);
        if (s == NULL) {
            s = "";
        }
        *len = strlen(s);
    }
    *out = dup_n(s, *len);
    return *out != NULL ? 0 : oom(b);
}

/* v is the value of the pending key of mapping frame f. Takes v. */
static int deliver_value(struct yaml_build *b, struct yframe *f, struct wm_cval *v)
{
    size_t idx = 0;
    int r = 0;

    f->have_key = false;
    if (f->key_merge && (!is_merge_source(v) || f->merge != NULL)) {
        r = yaml_build_fail(b, f->key_line, f->key_col, f->merge != NULL ?
                            "duplicate merge key '<<'" :
                            "merge key '<<' needs a mapping or a sequence of mappings");
        wm_cval_free(v);
    } else if (f->key_merge) {
        f->merge = v;
    } else {
        r = wm_cval_table_add(f->v, f->key, f->keylen, f->key_line, f->key_col, v);
        if (r == WM_CVAL_EXISTS) {
            wm_cval_table_find(f->v, f->key, f->keylen, &idx);
            r = yaml_build_fail(b, f->key_line, f->key_col,
                                "duplicate key '%.*s' (first defined at line %d)",
                                (int)(f->keylen > 128 ? 128 : f->keylen), f->key,
                                wm_cval_key_line(f->v, idx));
        } else if (r != 0) {
            r = oom(b);
        }
    }
    free(f->key);
    f->key = NULL;
    return r;
}

/* Hand a finished value to the container below. Takes v; anchor is copied. */
static int deliver(struct yaml_build *b, struct wm_cval *v, const char *anchor, bool merge_key)
{
    struct yframe *f;
    char *name = NULL;

    if (anchor != NULL && ((name = dup_n(anchor, strlen(anchor))) == NULL ||
                           anchor_add(b, name, v) != 0)) {
        wm_cval_free(v);
        return name == NULL ? oom(b) : -1;
    }
    if (b->depth == 0) {
        wm_cval_free(b->root); /* only one document gets here */
        b->root = v;
        return 0;
    }
    f = &b->stack[b->depth - 1];
    if (wm_cval_type(f->v) == WM_CVAL_ARRAY) {
        return wm_cval_array_push(f->v, v) == 0 ? 0 : oom(b);
    }
    if (f->have_key) {
        return deliver_value(b, f, v);
    }
    if (key_text(b, v, &f->key, &f->keylen) != 0) {
        wm_cval_free(v);
        return -1;
    }
    f->have_key = true;
    f->key_merge = merge_key;
    f->key_line = wm_cval_line(v);
    f->key_col = wm_cval_col(v);
    if (anchor != NULL || wm_cval_type(v) == WM_CVAL_TABLE || wm_cval_type(v) == WM_CVAL_ARRAY) {
        /* an anchored key, or anchors inside a complex key ("? [&a x]"),
         * may be aliased later */
        return park(b, v);
    }
    wm_cval_free(v);
    return 0;
}

/* ---- events ---- */

int yaml_build_scalar(struct yaml_build *b, int line, int col, const char *s, size_t len,
                      bool plain, const char *tag, const char *anchor)
{
    struct wm_cval *v;
    char why[160];
    bool merge = plain && tag == NULL && len == 2 && memcmp(s, "<<", 2) == 0;

    b->line = line;
    b->col = col;
    if (yaml_scalar_value(s, len, plain, tag, line, col, &v, why, sizeof(why)) != 0) {
        return yaml_build_fail(b, line, col, "%s", why[0] != '\0' ? why : "out of memory");
    }
    return deliver(b, v, anchor, merge);
}

int yaml_build_alias(struct yaml_build *b, int line, int col, const char *name)
{
    const struct wm_cval *src = anchor_find(b, name);
    struct wm_cval *v;

    b->line = line;
    b->col = col;
    if (src == NULL) {
        return yaml_build_fail(b, line, col, "alias '*%s' names no finished anchor", name);
    }
    v = budget_copy(b, src, b->depth, line, col);
    if (v == NULL) {
        return -1;
    }
    wm_cval_set_pos(v, line, col);
    return deliver(b, v, NULL, false);
}

int yaml_build_start(struct yaml_build *b, int line, int col, bool map, const char *anchor)
{
    struct yframe *f;
    struct wm_cval *v;

    b->line = line;
    b->col = col;
    if (b->depth >= WM_YAML_MAX_DEPTH) {
        return yaml_build_fail(b, line, col, "nesting deeper than %d levels",
                               WM_YAML_MAX_DEPTH);
    }
    v = map ? wm_cval_new_table(line, col) : wm_cval_new_array(line, col);
    if (v == NULL) {
        return oom(b);
    }
    f = &b->stack[b->depth];
    memset(f, 0, sizeof(*f));
    f->v = v;
    b->depth++;
    if (anchor != NULL && (f->anchor = dup_n(anchor, strlen(anchor))) == NULL) {
        return oom(b);
    }
    return 0;
}

int yaml_build_end(struct yaml_build *b, int line, int col)
{
    struct yframe *f;
    struct wm_cval *v;
    int r;

    b->line = line;
    b->col = col;
    if (b->depth == 0) {
        return yaml_build_fail(b, line, col, "unbalanced end of collection");
    }
    f = &b->stack[b->depth - 1];
    if (f->merge != NULL && apply_merge(b, f, b->depth) != 0) {
        return -1;
    }
    /* frame ownership moves to the parent */
    v = f->v;
    f->v = NULL;
    b->depth--;
    r = deliver(b, v, f->anchor, false);
    free(f->anchor);
    free(f->key); /* NULL unless the mapping ended after a key (libyaml never does) */
    f->anchor = NULL;
    f->key = NULL;
    return r;
}

struct wm_cval *yaml_build_root(struct yaml_build *b)
{
    struct wm_cval *root = b->root;

    b->root = NULL;
    if (root != NULL && wm_cval_type(root) == WM_CVAL_TABLE) {
        return root;
    }
    if (root != NULL && wm_cval_type(root) != WM_CVAL_NULL) {
        yaml_build_fail(b, wm_cval_line(root), wm_cval_col(root),
                        "the top level must be a mapping, not %s",
                        wm_cval_type_name(wm_cval_type(root)));
        wm_cval_free(root);
        return NULL;
    }
    wm_cval_free(root);
    root = wm_cval_new_table(1, 1);
    if (root == NULL) {
        yaml_build_fail(b, 1, 1, "out of memory");
    }
    return root;
}
