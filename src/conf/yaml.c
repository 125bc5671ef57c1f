/*
 * conf/yaml.c - YAML reader: libfyaml events -> wm_cval tree.
 *
 * The event API is used (rather than libfyaml documents) because it gives a start mark for
 * every node and lets us expand aliases under a budget: a document of nested aliases
 * ("billion laughs") is refused instead of exhausting memory.
 *
 * Containers being filled live on a stack of frames. A finished value is "delivered" to
 * the frame below: appended to a sequence, or in a mapping either taken as the pending key
 * (its text) or stored under it. Anchors point at delivered values; values that end up in
 * no container (anchored keys, merge sources) are parked in the detached list so that
 * those pointers stay valid until the parse ends.
 */
#include "conf/yaml.h"

#include "conf/cval.h"
#include "conf/yaml_int.h"
#include "core/err.h"
#include "core/util.h"
#include "core/log.h"

#include <errno.h>
#include <libfyaml.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define YAML_FIX_MAX 256 /* compatibility rewrites before giving up */

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

/* The input was rewritten at (line, col): a lone '-' became "-" (two characters more). */
struct yfix {
    int line;
    int col;
};

struct yanchor {
    char *name;
    struct wm_cval *v; /* owned by the tree or the detached list */
};

struct ybuild {
    struct yframe stack[WM_YAML_MAX_DEPTH];
    int depth;
    struct yanchor *anchors;
    size_t nanchors;
    size_t capanchors;
    struct wm_cval **detached;
    size_t ndetached;
    size_t capdetached;
    struct wm_cval *root;
    int docs;
    size_t alias_nodes;
    int line; /* last known position, for events without a mark */
    int col;
    const char *text; /* input being parsed (after rewrites) */
    size_t len;
    const struct yfix *fix; /* compatibility rewrites of the input, oldest first */
    size_t nfix;
    int syn_line; /* unmapped position of a libfyaml error; 0 if none */
    int syn_col;
    const char *file;
    struct wm_err *err;
};

static int yerror(struct ybuild *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int yerror(struct ybuild *b, int line, int col, const char *fmt, ...)
{
    char msg[WM_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return wm_err_set(b->err, b->file, line, col, NULL, "%s", msg);
}

/* Position in the rewritten input -> position in the caller's text. */
static void map_pos(const struct ybuild *b, int *line, int *col)
{
    const struct yfix *f;
    size_t i;

    for (i = b->nfix; i > 0; i--) {
        f = &b->fix[i - 1];
        if (*line == f->line && *col > f->col) {
            *col = *col > f->col + 2 ? *col - 2 : f->col;
        }
    }
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

/* Grow *arr (elements of esz bytes, n used of *cap) to hold one more element. */
static int grow(void **arr, size_t *cap, size_t n, size_t esz)
{
    size_t ncap = *cap == 0 ? 8 : *cap * 2;
    void *p;

    if (n < *cap) {
        return 0;
    }
    if (ncap > SIZE_MAX / esz) {
        return -1;
    }
    p = realloc(*arr, ncap * esz);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

static int park(struct ybuild *b, struct wm_cval *v)
{
    void *arr = b->detached;

    if (grow(&arr, &b->capdetached, b->ndetached, sizeof(*b->detached)) != 0) {
        wm_cval_free(v);
        return yerror(b, b->line, b->col, "out of memory");
    }
    b->detached = arr;
    b->detached[b->ndetached++] = v;
    return 0;
}

/* Takes name. */
static int anchor_add(struct ybuild *b, char *name, struct wm_cval *v)
{
    void *arr = b->anchors;

    if (grow(&arr, &b->capanchors, b->nanchors, sizeof(*b->anchors)) != 0) {
        free(name);
        return yerror(b, b->line, b->col, "out of memory");
    }
    b->anchors = arr;
    b->anchors[b->nanchors].name = name;
    b->anchors[b->nanchors].v = v;
    b->nanchors++;
    return 0;
}

static struct wm_cval *anchor_find(const struct ybuild *b, const char *name)
{
    size_t i;

    /* an anchor may be redefined: the latest definition wins */
    for (i = b->nanchors; i > 0; i--) {
        if (strcmp(b->anchors[i - 1].name, name) == 0) {
            return b->anchors[i - 1].v;
        }
    }
    return NULL;
}

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
static struct wm_cval *budget_copy(struct ybuild *b, const struct wm_cval *src, int depth,
                                   int line, int col)
{
    struct wm_cval *c;
    int height;
    size_t n = tree_size(src, &height);

    if (depth + height > WM_YAML_MAX_DEPTH) {
        yerror(b, line, col, "nesting deeper than %d levels", WM_YAML_MAX_DEPTH);
        return NULL;
    }
    if (n > WM_YAML_MAX_ALIAS_NODES - b->alias_nodes) {
        yerror(b, line, col, "aliases expand to more than %lu values",
               (unsigned long)WM_YAML_MAX_ALIAS_NODES);
        return NULL;
    }
    b->alias_nodes += n;
    c = wm_cval_copy(src);
    if (c == NULL) {
        yerror(b, line, col, "out of memory");
    }
    return c;
}

/* Text a value stands for as a mapping key (new buffer in *out). */
static int key_text(struct ybuild *b, const struct wm_cval *v, char **out, size_t *len)
{
    const char *s;

    if (wm_cval_type(v) == WM_CVAL_TABLE || wm_cval_type(v) == WM_CVAL_ARRAY) {
        /* a complex key: its flow JSON form is the only sensible text */
        if (wm_cval_to_json(v, false, out, len) != 0) {
            return yerror(b, wm_cval_line(v), wm_cval_col(v), "out of memory");
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
    if (*out == NULL) {
        return yerror(b, wm_cval_line(v), wm_cval_col(v), "out of memory");
    }
    return 0;
}

/* Add the keys of merge source src (a table) that t lacks. */
static int merge_from(struct ybuild *b, struct wm_cval *t, const struct wm_cval *src,
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
            return yerror(b, b->line, b->col, "out of memory");
        }
    }
    return 0;
}

static int apply_merge(struct ybuild *b, struct yframe *f, int depth)
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

/* Hand a finished value to the container below. Takes v and anchor. */
static int deliver(struct ybuild *b, struct wm_cval *v, char *anchor, bool merge_key)
{
    struct yframe *f;
    int r;

    if (anchor != NULL && anchor_add(b, anchor, v) != 0) {
        wm_cval_free(v);
        return -1;
    }
    if (b->depth == 0) {
        b->root = v;
        return 0;
    }
    f = &b->stack[b->depth - 1];
    if (wm_cval_type(f->v) == WM_CVAL_ARRAY) {
        if (wm_cval_array_push(f->v, v) != 0) {
            return yerror(b, b->line, b->col, "out of memory");
        }
        return 0;
    }
    if (!f->have_key) {
        if (key_text(b, v, &f->key, &f->keylen) != 0) {
            wm_cval_free(v);
            return -1;
        }
        f->have_key = true;
        f->key_merge = merge_key;
        f->key_line = wm_cval_line(v);
        f->key_col = wm_cval_col(v);
        if (anchor != NULL) {
            return park(b, v);
        }
        wm_cval_free(v);
        return 0;
    }
    f->have_key = false;
    if (f->key_merge) {
        if (!is_merge_source(v) || f->merge != NULL) {
            r = yerror(b, f->key_line, f->key_col, f->merge != NULL ?
                       "duplicate merge key '<<'" :
                       "merge key '<<' needs a mapping or a sequence of mappings");
            wm_cval_free(v);
        } else {
            f->merge = v;
            r = 0;
        }
    } else {
        r = wm_cval_table_add(f->v, f->key, f->keylen, f->key_line, f->key_col, v);
        if (r == WM_CVAL_EXISTS) {
            size_t idx = 0;

            wm_cval_table_find(f->v, f->key, f->keylen, &idx);
            r = yerror(b, f->key_line, f->key_col, "duplicate key '%.*s' (first defined at "
                       "line %d)", (int)(f->keylen > 128 ? 128 : f->keylen), f->key,
                       wm_cval_key_line(f->v, idx));
        } else if (r != 0) {
            r = yerror(b, b->line, b->col, "out of memory");
        }
    }
    free(f->key);
    f->key = NULL;
    return r;
}

/* ---- events ---- */

/* Copy of the text of an anchor token (NULL token -> *out NULL). */
static int anchor_name(struct ybuild *b, struct fy_token *tok, char **out)
{
    const char *a;

    *out = NULL;
    if (tok == NULL) {
        return 0;
    }
    a = fy_token_get_text0(tok);
    *out = dup_n(a != NULL ? a : "", a != NULL ? strlen(a) : 0);
    if (*out == NULL) {
        return yerror(b, b->line, b->col, "out of memory");
    }
    return 0;
}

static int on_scalar(struct ybuild *b, struct fy_event *e)
{
    struct fy_token *tok = e->scalar.value;
    const char *tag = e->scalar.tag != NULL ? fy_token_get_text0(e->scalar.tag) : NULL;
    bool plain = tok == NULL || fy_token_scalar_style(tok) == FYSS_PLAIN;
    struct wm_cval *v;
    char *anchor;
    const char *raw = NULL;
    size_t len = 0;
    char why[160];
    bool merge;
    char *s;

    if (tok != NULL) {
        raw = fy_token_get_text(tok, &len);
    }
    if (raw == NULL) {
        raw = "";
        len = 0;
    }
    s = dup_n(raw, len);
    if (s == NULL) {
        return yerror(b, b->line, b->col, "out of memory");
    }
    merge = plain && tag == NULL && strcmp(s, "<<") == 0;
    if (yaml_scalar_value(s, len, plain, tag, b->line, b->col, &v, why, sizeof(why)) != 0) {
        free(s);
        return yerror(b, b->line, b->col, "%s", why[0] != '\0' ? why : "out of memory");
    }
    free(s);
    if (anchor_name(b, e->scalar.anchor, &anchor) != 0) {
        wm_cval_free(v);
        return -1;
    }
    return deliver(b, v, anchor, merge);
}

static int on_alias(struct ybuild *b, struct fy_event *e)
{
    const char *name = fy_token_get_text0(e->alias.anchor);
    const struct wm_cval *src;
    struct wm_cval *v;

    src = name != NULL ? anchor_find(b, name) : NULL;
    if (src == NULL) {
        return yerror(b, b->line, b->col, "alias '*%s' names no finished anchor",
                      name != NULL ? name : "");
    }
    v = budget_copy(b, src, b->depth, b->line, b->col);
    if (v == NULL) {
        return -1;
    }
    wm_cval_set_pos(v, b->line, b->col);
    return deliver(b, v, NULL, false);
}

static int on_start(struct ybuild *b, struct fy_event *e)
{
    struct fy_token *atok;
    struct yframe *f;
    struct wm_cval *v;

    if (b->depth >= WM_YAML_MAX_DEPTH) {
        return yerror(b, b->line, b->col, "nesting deeper than %d levels", WM_YAML_MAX_DEPTH);
    }
    if (e->type == FYET_MAPPING_START) {
        v = wm_cval_new_table(b->line, b->col);
        atok = e->mapping_start.anchor;
    } else {
        v = wm_cval_new_array(b->line, b->col);
        atok = e->sequence_start.anchor;
    }
    if (v == NULL) {
        return yerror(b, b->line, b->col, "out of memory");
    }
    f = &b->stack[b->depth];
    memset(f, 0, sizeof(*f));
    f->v = v;
    b->depth++;
    return anchor_name(b, atok, &f->anchor);
}

static int on_end(struct ybuild *b)
{
    struct yframe *f = &b->stack[b->depth - 1];
    struct wm_cval *v = f->v;
    char *anchor = f->anchor;

    if (f->merge != NULL && apply_merge(b, f, b->depth) != 0) {
        return -1;
    }
    /* frame ownership moves to the parent */
    f->v = NULL;
    f->anchor = NULL;
    b->depth--;
    return deliver(b, v, anchor, false);
}

static int on_event(struct ybuild *b, struct fy_event *e)
{
    const struct fy_mark *m = fy_event_start_mark(e);

    /* libfyaml marks are 0-based; some events (empty scalars) have none */
    if (m != NULL && m->line >= 0 && m->column >= 0) {
        b->line = m->line + 1;
        b->col = m->column + 1;
        /* libfyaml marks an alias at its name: point at the '*' instead */
        if (e->type == FYET_ALIAS && b->col > 1 && m->input_pos > 0 && m->input_pos <= b->len &&
            b->text[m->input_pos - 1] == '*') {
            b->col--;
        }
        map_pos(b, &b->line, &b->col);
    }
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++b->docs > 1) {
            return yerror(b, b->line, b->col, "expected one document");
        }
        return 0;
    case FYET_SCALAR:
        return on_scalar(b, e);
    case FYET_ALIAS:
        return on_alias(b, e);
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START:
        return on_start(b, e);
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        if (b->depth == 0) {
            return yerror(b, b->line, b->col, "unbalanced end of collection");
        }
        return on_end(b);
    default:
        return 0;
    }
}

static void diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

/* Copy libfyaml's first collected error into b->err. */
static void report_diag(struct ybuild *b, struct fy_diag *diag)
{
    struct fy_diag_error *de;
    void *it = NULL;
    int line;
    int col;

    while ((de = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (de->type >= FYET_ERROR) {
            /* diagnostic positions are already 1-based */
            line = de->line > 0 ? de->line : b->line;
            col = de->column > 0 ? de->column : b->col;
            b->syn_line = line;
            b->syn_col = col;
            map_pos(b, &line, &col);
            yerror(b, line, col, "%s", de->msg != NULL ? de->msg : "syntax error");
            return;
        }
    }
    yerror(b, b->line, b->col, "invalid YAML");
}

static void build_free(struct ybuild *b)
{
    size_t i;

    while (b->depth > 0) {
        b->depth--;
        wm_cval_free(b->stack[b->depth].v);
        wm_cval_free(b->stack[b->depth].merge);
        free(b->stack[b->depth].anchor);
        free(b->stack[b->depth].key);
    }
    for (i = 0; i < b->nanchors; i++) {
        free(b->anchors[i].name);
    }
    free(b->anchors);
    for (i = 0; i < b->ndetached; i++) {
        wm_cval_free(b->detached[i]);
    }
    free(b->detached);
    free(b);
}

/* Run the parser over the stream; 0 when it ended cleanly. */
static int run_parser(struct ybuild *b, struct fy_parser *fyp, struct fy_diag *diag)
{
    struct fy_event *e;
    bool ended = false;
    int r = 0;

    while (r == 0 && (e = fy_parser_parse(fyp)) != NULL) {
        ended = e->type == FYET_STREAM_END;
        r = on_event(b, e);
        fy_parser_event_free(fyp, e);
    }
    if (r == 0 && (!ended || fy_diag_got_error(diag))) {
        report_diag(b, diag);
        return -1;
    }
    return r;
}

/* The root value as a table: null means an empty document. */
static struct wm_cval *take_root(struct ybuild *b)
{
    struct wm_cval *root = b->root;

    b->root = NULL;
    if (root != NULL && wm_cval_type(root) == WM_CVAL_TABLE) {
        return root;
    }
    if (root != NULL && wm_cval_type(root) != WM_CVAL_NULL) {
        yerror(b, wm_cval_line(root), wm_cval_col(root),
               "the top level must be a mapping, not %s", wm_cval_type_name(wm_cval_type(root)));
        wm_cval_free(root);
        return NULL;
    }
    wm_cval_free(root);
    root = wm_cval_new_table(1, 1);
    if (root == NULL) {
        yerror(b, 1, 1, "out of memory");
    }
    return root;
}

/* One parse of text with the given rewrites. Returns the root or NULL; on a libfyaml error
 * *syn_line / *syn_col receive its unmapped position (else 0). */
static struct wm_cval *parse_once(const char *text, size_t len, const struct yfix *fix,
                                  size_t nfix, const char *filename, struct wm_err *err,
                                  int *syn_line, int *syn_col)
{
    struct fy_parse_cfg cfg;
    struct fy_diag_cfg dcfg;
    struct fy_diag *diag = NULL;
    struct fy_parser *fyp = NULL;
    struct wm_cval *root = NULL;
    struct ybuild *b;

    *syn_line = 0;
    *syn_col = 0;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        wm_err_set(err, filename, 0, 0, NULL, "out of memory");
        return NULL;
    }
    b->file = filename;
    b->err = err;
    b->line = 1;
    b->col = 1;
    b->fix = fix;
    b->nfix = nfix;
    b->text = text;
    b->len = len;

    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.colorize = false;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL) {
        yerror(b, 0, 0, "out of memory");
        goto out;
    }
    /* keep libfyaml quiet: errors are collected and reported through err */
    fy_diag_set_collect_errors(diag, true);
    memset(&cfg, 0, sizeof(cfg));
    cfg.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_AUTO | FYPCF_JSON_NONE;
    cfg.diag = diag;
    fyp = fy_parser_create(&cfg);
    if (fyp == NULL || fy_parser_set_string(fyp, len > 0 ? text : "", len) != 0) {
        yerror(b, 0, 0, "cannot start the YAML parser");
        goto out;
    }
    if (run_parser(b, fyp, diag) == 0) {
        root = take_root(b);
    }
    *syn_line = b->syn_line;
    *syn_col = b->syn_col;
out:
    if (fyp != NULL) {
        fy_parser_destroy(fyp);
    }
    if (diag != NULL) {
        fy_diag_destroy(diag);
    }
    wm_cval_free(b->root);
    build_free(b);
    return root;
}

/* Byte offset of a lone '-' directly followed by a flow indicator at (line, col) of s, or
 * SIZE_MAX. libyaml (and so the reference project) reads "[-, x]" as the string "-";
 * libfyaml follows YAML 1.2 strictly and refuses it. */
static size_t flow_dash_at(const char *s, size_t n, int line, int col)
{
    int l = 1;
    int c = 1;
    size_t i;

    for (i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) {
            continue; /* columns count characters */
        }
        if (l == line && c == col) {
            if (s[i] == '-' && i + 1 < n && s[i + 1] != '\0' && strchr(",[]{}", s[i + 1]) != NULL) {
                return i;
            }
            return SIZE_MAX;
        }
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'))) {
            l++;
            c = 1;
        } else if (s[i] != '\r') {
            c++;
        }
    }
    return SIZE_MAX;
}

/* Is cp a YAML 1.2 printable character (c-printable, section 5.1)? */
static bool yaml_printable(uint32_t cp)
{
    return cp == 0x09 || cp == 0x0A || cp == 0x0D || (cp >= 0x20 && cp <= 0x7E) || cp == 0x85 ||
           (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* YAML streams are printable Unicode. Check that before libfyaml sees the
 * text: besides giving a precise error, Debian's libfyaml 0.8 loops forever
 * on invalid UTF-8 inside a directive line ("%x\xE1\xE1"). Returns 0, or -1
 * with err set at the offending character. */
static int yaml_check_chars(const char *text, size_t len, const char *filename,
                            struct wm_err *err)
{
    const unsigned char *u = (const unsigned char *)text;
    int line = 1;
    int col = 1;
    size_t i = 0;

    while (i < len) {
        uint32_t cp = 0;
        size_t k = wm_utf8_decode(u + i, len - i, &cp);

        if (k == 0) {
            return wm_err_set(err, filename, line, col, NULL, "invalid UTF-8 byte 0x%02X", u[i]);
        }
        if (!yaml_printable(cp)) {
            return wm_err_set(err, filename, line, col, NULL,
                              "character U+%04X is not allowed in YAML (control character)",
                              (unsigned)cp);
        }
        if (cp == '\n' || (cp == '\r' && (i + 1 >= len || u[i + 1] != '\n'))) {
            line++;
            col = 1;
        } else if (cp != '\r') {
            col++;
        }
        i += k;
    }
    return 0;
}

bool wm_yaml_isolate = true;

static struct wm_cval *parse_here(const char *text, size_t len, const char *filename,
                                  struct wm_err *err);

/* Exit status of a probe child that got through the parser (any result). */
#define PROBE_DONE 97

/* Parse text in a child process; 0 if the child finished, -1 with err set if
 * libfyaml crashed or hung there. Without fork (EAGAIN...) the text is
 * parsed here unprobed: the common case of a valid file must keep working. */
static int probe_in_child(const char *text, size_t len, const char *filename,
                          struct wm_err *err)
{
    int st = 0;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    struct sigaction old;

    /* An inherited "ignore SIGCHLD" would reap the child before waitpid. */
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old);
    pid_t pid = fork();

    if (pid < 0) {
        sigaction(SIGCHLD, &old, NULL);
        wm_log(WM_LOG_WARN, 0, "%s: cannot fork to check the YAML first (%s): parsing it "
                               "directly", filename != NULL ? filename : "YAML",
               strerror(errno));
        return 0;
    }
    if (pid == 0) {
        sigset_t all;
        struct itimerval it = {.it_value = {WM_YAML_PROBE_MS / 1000,
                                            (WM_YAML_PROBE_MS % 1000) * 1000}};

        static const int fatal[] = {SIGALRM, SIGSEGV, SIGBUS, SIGILL, SIGFPE,  SIGABRT,
                                    SIGHUP,  SIGINT,  SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2};

        /* die of what goes wrong, whatever handlers the process had (the
         * event loop's handlers would tell the parent about our signals) */
        for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
            signal(fatal[i], SIG_DFL);
        }
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        /* no core file: it would hold a copy of the proxy's memory (keys) */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        setitimer(ITIMER_REAL, &it, NULL);
        wm_cval_free(parse_here(text, len, NULL, NULL));
        _exit(PROBE_DONE);
    }
    pid_t w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    int werr = errno;
    sigaction(SIGCHLD, &old, NULL);
    if (w < 0) {
        return wm_err_set(err, filename, 0, 0, NULL,
                          "cannot check the YAML in a child process (waitpid: %s): refused",
                          strerror(werr));
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == PROBE_DONE) {
        return 0;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
        return wm_err_set(err, filename, 0, 0, NULL,
                          "the YAML parser (libfyaml) did not finish within %d ms on this "
                          "file (a libfyaml defect): refused; check the file's syntax",
                          WM_YAML_PROBE_MS);
    }
    return wm_err_set(err, filename, 0, 0, NULL,
                      "the YAML parser (libfyaml) crashed on this file (%s %d, a libfyaml "
                      "defect): refused; check the file's syntax, e.g. '?' complex keys",
                      WIFSIGNALED(st) ? "signal" : "exit status",
                      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

struct wm_cval *wm_yaml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err)
{
    if (text == NULL) {
        text = "";
        len = 0;
    }
    if (yaml_check_chars(text, len, filename, err) != 0) {
        return NULL;
    }
    if (wm_yaml_isolate && probe_in_child(text, len, filename, err) != 0) {
        return NULL;
    }
    return parse_here(text, len, filename, err);
}

static struct wm_cval *parse_here(const char *text, size_t len, const char *filename,
                                  struct wm_err *err)
{
    struct wm_cval *root;
    struct yfix *fix = NULL;
    struct yfix *nf;
    const char *cur = text != NULL ? text : "";
    char *work = NULL;
    char *nw;
    size_t nfix = 0;
    size_t off;
    int syn_line;
    int syn_col;

    for (;;) {
        if (err != NULL) {
            wm_err_clear(err);
        }
        root = parse_once(cur, len, fix, nfix, filename, err, &syn_line, &syn_col);
        if (root != NULL || syn_line <= 0 || nfix >= YAML_FIX_MAX || len > SIZE_MAX - 2) {
            break;
        }
        off = flow_dash_at(cur, len, syn_line, syn_col);
        if (off == SIZE_MAX) {
            break;
        }
        /* quote the dash and parse again; on allocation failure keep the first error */
        nw = malloc(len + 2);
        nf = realloc(fix, (nfix + 1) * sizeof(*fix));
        if (nf != NULL) {
            fix = nf;
        }
        if (nw == NULL || nf == NULL) {
            free(nw);
            break;
        }
        memcpy(nw, cur, off);
        memcpy(nw + off, "\"-\"", 3);
        memcpy(nw + off + 3, cur + off + 1, len - off - 1);
        free(work);
        work = nw;
        cur = work;
        len += 2;
        fix[nfix].line = syn_line;
        fix[nfix].col = syn_col;
        nfix++;
    }
    free(work);
    free(fix);
    return root;
}
