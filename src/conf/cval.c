/*
 * conf/cval.c - the configuration value tree: storage, accessors, builders.
 *
 * Tables keep their entries in an array (document order) and, once they grow past
 * CVAL_HASH_MIN entries, an open-addressing index over it so that building a table of n
 * keys stays O(n) rather than O(n^2) on large or hostile input.
 */
#include "conf/cval.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define CVAL_HASH_MIN 8 /* entries before a table gets a hash index */

struct cval_ent {
    char *key; /* NUL-terminated copy; keylen counts embedded NULs */
    size_t keylen;
    int line;
    int col;
    struct wm_cval *val;
};

struct wm_cval {
    enum wm_cval_type type;
    int line;
    int col;
    unsigned int flags;
    char *text; /* datetime canonical text or kept source text; NULL otherwise */
    union {
        struct {
            char *s;
            size_t len;
        } str;
        int64_t i;
        double f;
        bool b;
        struct {
            struct wm_cval **v;
            size_t n;
            size_t cap;
        } arr;
        struct {
            struct cval_ent *e;
            size_t n;
            size_t cap;
            size_t *slot; /* entry index + 1, 0 = empty; hcap slots */
            size_t hcap;  /* 0 or a power of two */
        } tab;
    } u;
};

static const char *const type_names[WM_CVAL_TYPE_COUNT] = {
    [WM_CVAL_TABLE] = "table",
    [WM_CVAL_ARRAY] = "array",
    [WM_CVAL_STRING] = "string",
    [WM_CVAL_INT] = "integer",
    [WM_CVAL_FLOAT] = "float",
    [WM_CVAL_BOOL] = "bool",
    [WM_CVAL_DATETIME] = "datetime",
    [WM_CVAL_DATETIME_LOCAL] = "datetime-local",
    [WM_CVAL_DATE_LOCAL] = "date-local",
    [WM_CVAL_TIME_LOCAL] = "time-local",
    [WM_CVAL_NULL] = "null",
};

/* ---- accessors ---- */

enum wm_cval_type wm_cval_type(const struct wm_cval *v)
{
    return v->type;
}

const char *wm_cval_type_name(enum wm_cval_type t)
{
    if ((unsigned int)t >= WM_CVAL_TYPE_COUNT) {
        return "?";
    }
    return type_names[t];
}

int wm_cval_line(const struct wm_cval *v)
{
    return v->line;
}

int wm_cval_col(const struct wm_cval *v)
{
    return v->col;
}

size_t wm_cval_count(const struct wm_cval *v)
{
    if (v->type == WM_CVAL_TABLE) {
        return v->u.tab.n;
    }
    if (v->type == WM_CVAL_ARRAY) {
        return v->u.arr.n;
    }
    return 0;
}

const struct wm_cval *wm_cval_at(const struct wm_cval *v, size_t i)
{
    if (v->type == WM_CVAL_TABLE && i < v->u.tab.n) {
        return v->u.tab.e[i].val;
    }
    if (v->type == WM_CVAL_ARRAY && i < v->u.arr.n) {
        return v->u.arr.v[i];
    }
    return NULL;
}

static const struct cval_ent *ent_at(const struct wm_cval *t, size_t i)
{
    if (t->type != WM_CVAL_TABLE || i >= t->u.tab.n) {
        return NULL;
    }
    return &t->u.tab.e[i];
}

const char *wm_cval_key_at(const struct wm_cval *t, size_t i)
{
    const struct cval_ent *e = ent_at(t, i);

    return e != NULL ? e->key : NULL;
}

size_t wm_cval_key_len(const struct wm_cval *t, size_t i)
{
    const struct cval_ent *e = ent_at(t, i);

    return e != NULL ? e->keylen : 0;
}

int wm_cval_key_line(const struct wm_cval *t, size_t i)
{
    const struct cval_ent *e = ent_at(t, i);

    return e != NULL ? e->line : 0;
}

int wm_cval_key_col(const struct wm_cval *t, size_t i)
{
    const struct cval_ent *e = ent_at(t, i);

    return e != NULL ? e->col : 0;
}

/* FNV-1a: keys are short and the index only needs a fair spread. */
static size_t key_hash(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 32));
}

static bool key_eq(const struct cval_ent *e, const char *key, size_t len)
{
    return e->keylen == len && memcmp(e->key, key, len) == 0;
}

/* Index of key in table t, or (size_t)-1. */
static size_t tab_index(const struct wm_cval *t, const char *key, size_t len)
{
    size_t i;
    size_t mask;
    size_t s;

    if (t->u.tab.hcap == 0) {
        for (i = 0; i < t->u.tab.n; i++) {
            if (key_eq(&t->u.tab.e[i], key, len)) {
                return i;
            }
        }
        return (size_t)-1;
    }
    mask = t->u.tab.hcap - 1;
    for (s = key_hash(key, len) & mask; t->u.tab.slot[s] != 0; s = (s + 1) & mask) {
        i = t->u.tab.slot[s] - 1;
        if (key_eq(&t->u.tab.e[i], key, len)) {
            return i;
        }
    }
    return (size_t)-1;
}

const struct wm_cval *wm_cval_get_n(const struct wm_cval *t, const char *key, size_t keylen)
{
    size_t i;

    if (t == NULL || t->type != WM_CVAL_TABLE || key == NULL) {
        return NULL;
    }
    i = tab_index(t, key, keylen);
    return i == (size_t)-1 ? NULL : t->u.tab.e[i].val;
}

const struct wm_cval *wm_cval_get(const struct wm_cval *t, const char *key)
{
    if (key == NULL) {
        return NULL;
    }
    return wm_cval_get_n(t, key, strlen(key));
}

const char *wm_cval_str(const struct wm_cval *v, size_t *len)
{
    if (v->type != WM_CVAL_STRING) {
        return NULL;
    }
    if (len != NULL) {
        *len = v->u.str.len;
    }
    return v->u.str.s;
}

int64_t wm_cval_int(const struct wm_cval *v)
{
    return v->type == WM_CVAL_INT ? v->u.i : 0;
}

double wm_cval_float(const struct wm_cval *v)
{
    return v->type == WM_CVAL_FLOAT ? v->u.f : 0.0;
}

bool wm_cval_bool(const struct wm_cval *v)
{
    return v->type == WM_CVAL_BOOL ? v->u.b : false;
}

const char *wm_cval_text(const struct wm_cval *v)
{
    if (v->type == WM_CVAL_STRING) {
        return v->u.str.s;
    }
    return v->text;
}

/* ---- freeing ---- */

void wm_cval_free(struct wm_cval *root)
{
    size_t i;

    if (root == NULL) {
        return;
    }
    switch (root->type) {
    case WM_CVAL_TABLE:
        for (i = 0; i < root->u.tab.n; i++) {
            free(root->u.tab.e[i].key);
            wm_cval_free(root->u.tab.e[i].val);
        }
        free(root->u.tab.e);
        free(root->u.tab.slot);
        break;
    case WM_CVAL_ARRAY:
        for (i = 0; i < root->u.arr.n; i++) {
            wm_cval_free(root->u.arr.v[i]);
        }
        free(root->u.arr.v);
        break;
    case WM_CVAL_STRING:
        free(root->u.str.s);
        break;
    default:
        break;
    }
    free(root->text);
    free(root);
}

/* ---- builders ---- */

static struct wm_cval *cval_new(enum wm_cval_type t, int line, int col)
{
    struct wm_cval *v = calloc(1, sizeof(*v));

    if (v == NULL) {
        return NULL;
    }
    v->type = t;
    v->line = line;
    v->col = col;
    return v;
}

/* NUL-terminated copy of s[0..len); NULL if out of memory. */
static char *mem_dup(const char *s, size_t len)
{
    char *d;

    if (len == SIZE_MAX) {
        return NULL;
    }
    d = malloc(len + 1);
    if (d == NULL) {
        return NULL;
    }
    if (len > 0) {
        memcpy(d, s, len);
    }
    d[len] = '\0';
    return d;
}

struct wm_cval *wm_cval_new_table(int line, int col)
{
    return cval_new(WM_CVAL_TABLE, line, col);
}

struct wm_cval *wm_cval_new_array(int line, int col)
{
    return cval_new(WM_CVAL_ARRAY, line, col);
}

struct wm_cval *wm_cval_new_string(const char *s, size_t len, int line, int col)
{
    struct wm_cval *v = cval_new(WM_CVAL_STRING, line, col);

    if (v == NULL) {
        return NULL;
    }
    v->u.str.s = mem_dup(s, len);
    if (v->u.str.s == NULL) {
        free(v);
        return NULL;
    }
    v->u.str.len = len;
    return v;
}

struct wm_cval *wm_cval_new_int(int64_t i, int line, int col)
{
    struct wm_cval *v = cval_new(WM_CVAL_INT, line, col);

    if (v != NULL) {
        v->u.i = i;
    }
    return v;
}

struct wm_cval *wm_cval_new_float(double f, int line, int col)
{
    struct wm_cval *v = cval_new(WM_CVAL_FLOAT, line, col);

    if (v != NULL) {
        v->u.f = f;
    }
    return v;
}

struct wm_cval *wm_cval_new_bool(bool b, int line, int col)
{
    struct wm_cval *v = cval_new(WM_CVAL_BOOL, line, col);

    if (v != NULL) {
        v->u.b = b;
    }
    return v;
}

struct wm_cval *wm_cval_new_null(int line, int col)
{
    return cval_new(WM_CVAL_NULL, line, col);
}

struct wm_cval *wm_cval_new_datetime(enum wm_cval_type t, const char *text, size_t len,
                                     int line, int col)
{
    struct wm_cval *v;

    if (t != WM_CVAL_DATETIME && t != WM_CVAL_DATETIME_LOCAL && t != WM_CVAL_DATE_LOCAL &&
        t != WM_CVAL_TIME_LOCAL) {
        return NULL;
    }
    v = cval_new(t, line, col);
    if (v == NULL) {
        return NULL;
    }
    v->text = mem_dup(text, len);
    if (v->text == NULL) {
        free(v);
        return NULL;
    }
    return v;
}

struct wm_cval *wm_cval_copy(const struct wm_cval *v)
{
    struct wm_cval *c;
    struct wm_cval *item;
    const struct cval_ent *e;
    size_t i;

    switch (v->type) {
    case WM_CVAL_TABLE:
    case WM_CVAL_ARRAY:
        c = cval_new(v->type, v->line, v->col);
        break;
    case WM_CVAL_STRING:
        c = wm_cval_new_string(v->u.str.s, v->u.str.len, v->line, v->col);
        break;
    default:
        c = cval_new(v->type, v->line, v->col);
        if (c != NULL) {
            c->u = v->u;
        }
        break;
    }
    if (c == NULL) {
        return NULL;
    }
    c->flags = v->flags;
    if (v->text != NULL && wm_cval_set_text(c, v->text, strlen(v->text)) != 0) {
        goto fail;
    }
    for (i = 0; v->type == WM_CVAL_ARRAY && i < v->u.arr.n; i++) {
        item = wm_cval_copy(v->u.arr.v[i]);
        if (item == NULL || wm_cval_array_push(c, item) != 0) {
            goto fail;
        }
    }
    for (i = 0; v->type == WM_CVAL_TABLE && i < v->u.tab.n; i++) {
        e = &v->u.tab.e[i];
        item = wm_cval_copy(e->val);
        if (item == NULL || wm_cval_table_add(c, e->key, e->keylen, e->line, e->col, item) != 0) {
            goto fail;
        }
    }
    return c;
fail:
    wm_cval_free(c);
    return NULL;
}

int wm_cval_set_text(struct wm_cval *v, const char *text, size_t len)
{
    char *d;

    if (v->type == WM_CVAL_TABLE || v->type == WM_CVAL_ARRAY) {
        return -1;
    }
    if (v->type == WM_CVAL_STRING) {
        return 0;
    }
    d = mem_dup(text, len);
    if (d == NULL) {
        return -1;
    }
    free(v->text);
    v->text = d;
    return 0;
}

void wm_cval_set_pos(struct wm_cval *v, int line, int col)
{
    v->line = line;
    v->col = col;
}

unsigned int wm_cval_flags(const struct wm_cval *v)
{
    return v->flags;
}

void wm_cval_set_flags(struct wm_cval *v, unsigned int flags)
{
    v->flags = flags;
}

int wm_cval_array_push(struct wm_cval *arr, struct wm_cval *item)
{
    void *v;

    if (arr->type != WM_CVAL_ARRAY) {
        wm_cval_free(item);
        return -1;
    }
    v = arr->u.arr.v;
    if (wm_grow(&v, &arr->u.arr.cap, arr->u.arr.n + 1, sizeof(*arr->u.arr.v), 4) != 0) {
        wm_cval_free(item);
        return -1;
    }
    arr->u.arr.v = v;
    arr->u.arr.v[arr->u.arr.n++] = item;
    return 0;
}

struct wm_cval *wm_cval_array_last(struct wm_cval *arr)
{
    if (arr->type != WM_CVAL_ARRAY || arr->u.arr.n == 0) {
        return NULL;
    }
    return arr->u.arr.v[arr->u.arr.n - 1];
}

/* Put entry index i into the hash index (which has a free slot). */
static void slot_put(struct wm_cval *t, size_t i)
{
    const struct cval_ent *e = &t->u.tab.e[i];
    size_t mask = t->u.tab.hcap - 1;
    size_t s = key_hash(e->key, e->keylen) & mask;

    while (t->u.tab.slot[s] != 0) {
        s = (s + 1) & mask;
    }
    t->u.tab.slot[s] = i + 1;
}

/* Keep the index at most half full once the table is large enough to need one. */
static int index_reserve(struct wm_cval *t, size_t n)
{
    size_t hcap = t->u.tab.hcap;
    size_t *slot;
    size_t i;

    if (n < CVAL_HASH_MIN || (hcap != 0 && n <= hcap / 2)) {
        return 0;
    }
    if (hcap == 0) {
        hcap = 2 * CVAL_HASH_MIN;
    }
    while (n > hcap / 2) {
        if (hcap > SIZE_MAX / (2 * sizeof(*slot))) {
            return -1;
        }
        hcap *= 2;
    }
    slot = calloc(hcap, sizeof(*slot));
    if (slot == NULL) {
        return -1;
    }
    free(t->u.tab.slot);
    t->u.tab.slot = slot;
    t->u.tab.hcap = hcap;
    for (i = 0; i < t->u.tab.n; i++) {
        slot_put(t, i);
    }
    return 0;
}

int wm_cval_table_add(struct wm_cval *t, const char *key, size_t keylen, int line, int col,
                      struct wm_cval *val)
{
    struct cval_ent *e;
    void *ents;
    char *k;

    if (t->type != WM_CVAL_TABLE) {
        wm_cval_free(val);
        return -1;
    }
    if (tab_index(t, key, keylen) != (size_t)-1) {
        wm_cval_free(val);
        return WM_CVAL_EXISTS;
    }
    ents = t->u.tab.e;
    if (wm_grow(&ents, &t->u.tab.cap, t->u.tab.n + 1, sizeof(*t->u.tab.e), 4) != 0) {
        wm_cval_free(val);
        return -1;
    }
    t->u.tab.e = ents;
    if (index_reserve(t, t->u.tab.n + 1) != 0) {
        wm_cval_free(val);
        return -1;
    }
    k = mem_dup(key, keylen);
    if (k == NULL) {
        wm_cval_free(val);
        return -1;
    }
    e = &t->u.tab.e[t->u.tab.n];
    e->key = k;
    e->keylen = keylen;
    e->line = line;
    e->col = col;
    e->val = val;
    if (t->u.tab.hcap != 0) {
        slot_put(t, t->u.tab.n);
    }
    t->u.tab.n++;
    return 0;
}

struct wm_cval *wm_cval_table_find(struct wm_cval *t, const char *key, size_t keylen,
                                   size_t *idx)
{
    size_t i;

    if (t->type != WM_CVAL_TABLE) {
        return NULL;
    }
    i = tab_index(t, key, keylen);
    if (i == (size_t)-1) {
        return NULL;
    }
    if (idx != NULL) {
        *idx = i;
    }
    return t->u.tab.e[i].val;
}

