/*
 * conf/schema.h - table-driven decoding of a value tree (TOML or YAML, see
 * conf/cval.h) into C structs, with type checks and precise diagnostics.
 *
 * A schema lists the keys a table may hold: name, kind, where the decoded
 * value goes (offset into the struct) and bounds. Decoding never stops at
 * the first problem: every error and warning is collected with its
 * file:line:column and dotted key path, so `wmproxy check` can list them
 * all. Unknown keys are errors with a "did you mean" hint.
 *
 * All memory of decoded values comes from the context's arena.
 */
#ifndef WM_CONF_SCHEMA_H
#define WM_CONF_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

struct wm_arena;
struct wm_cval;
struct wm_cschema;

enum wm_ck {
    WM_CK_STR,         /* const char * */
    WM_CK_BOOL,        /* bool */
    WM_CK_INT,         /* int64_t within [min, max] */
    WM_CK_DURATION,    /* uint64_t milliseconds: "30s", "5m", or seconds as a number */
    WM_CK_SIZE,        /* uint64_t bytes: "10m", or a number */
    WM_CK_RATE,        /* struct wm_rate: "4m/s", "1000r/s" */
    WM_CK_HOSTPORT,    /* const char *: "host:port" or "[v6]:port" (name or IP) */
    WM_CK_LISTEN,      /* const char *: "ip:port" to listen on */
    WM_CK_LEVEL,       /* int: log level name */
    WM_CK_FLAGS,       /* unsigned: proxy protocol flags, words or 1..7 */
    WM_CK_ENUM,        /* const char *: one of choices */
    WM_CK_STRLIST,     /* const char ** + size_t count: a string or an array of strings */
    WM_CK_HEADERS,     /* struct wm_conf_header * + size_t count: header rules */
    WM_CK_STRMAP,      /* struct wm_conf_kv * + size_t count: table of strings */
    WM_CK_TABLE,       /* pointer to a struct of `sub` (allocated) */
    WM_CK_TABLE_ARRAY, /* array of structs of `sub` + size_t count */
    WM_CK_CUSTOM,      /* decoded by `custom` */
};

enum {
    WM_CKF_INACTIVE = 1, /* accepted and checked, but the feature is not active yet */
    WM_CKF_REQUIRED = 2, /* must be present */
    WM_CKF_SECRET = 4,   /* never echoed back in messages */
    WM_CKF_IGNORED = 8,  /* a key of an earlier release: accepted, checked, ignored */
    WM_CKF_PATH = 16,    /* STR: a file or directory; relative to the config file's directory */
};

#define WM_CK_NOSTORE ((size_t)-1)

/* One diagnostic. */
struct wm_cdiag {
    bool warning;
    struct wm_err e;
};

/* Decoding context: where diagnostics and memory go. */
struct wm_cctx {
    const char *file;
    const char *base;  /* directory relative paths (WM_CKF_PATH) resolve from; NULL: as given */
    struct wm_arena *arena;
    struct wm_cdiag *diags; /* malloc'd array, see wm_cctx_deinit() */
    size_t ndiags;
    size_t capdiags;
    size_t nerrors;
};

typedef int (*wm_ck_custom_fn)(struct wm_cctx *ctx, const struct wm_cval *v, void *dst,
                               const char *path);

struct wm_ckey {
    const char *name;
    enum wm_ck kind;
    size_t off;       /* destination in the struct, or WM_CK_NOSTORE */
    size_t off_count; /* STRLIST/HEADERS/STRMAP/TABLE_ARRAY: where the count goes */
    const struct wm_cschema *sub;
    int64_t min;      /* INT bounds; DURATION: bounds in ms (max 0 = none) */
    int64_t max;
    const char *const *choices; /* ENUM: NULL-terminated */
    unsigned flags;
    const char *alias; /* a second accepted name ("bind" for "bind_addr") */
    wm_ck_custom_fn custom;
    const char *feature; /* INACTIVE: which feature; IGNORED: why (for the warning) */
};

struct wm_cschema {
    const char *name;
    size_t size;                 /* of the struct (TABLE, TABLE_ARRAY) */
    const struct wm_ckey *keys;  /* terminated by a NULL name */
    void (*defaults)(void *obj);
    /* Cross-key checks once all keys are read (t is the source table). */
    void (*validate)(struct wm_cctx *ctx, void *obj, const struct wm_cval *t, const char *path);
};

/* A header rule (wmproxy syntax): "[proxy] (+|-|) name [value]". */
struct wm_conf_header {
    bool request;     /* "proxy": applies to the request sent upstream */
    char op;          /* '+' add, '-' remove, '=' set */
    const char *name;
    const char *value; /* NULL for '-' */
};

struct wm_conf_kv {
    const char *key;
    const char *value;
};

void wm_cctx_init(struct wm_cctx *ctx, const char *file, struct wm_arena *arena);
void wm_cctx_deinit(struct wm_cctx *ctx);

/* Record an error/warning at v's position (v may be NULL). */
void wm_cctx_error(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void wm_cctx_warn(struct wm_cctx *ctx, const struct wm_cval *v, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Decode table t into obj (already allocated, defaults applied by the
 * caller or by this call when s->defaults is set). path is the dotted
 * prefix ("" at the top). Returns the number of errors added. */
size_t wm_schema_decode(struct wm_cctx *ctx, const struct wm_cschema *s, const struct wm_cval *t,
                        void *obj, const char *path);

/* Parse one header rule string (wmproxy form) into h; name and value are
 * copied into a. Returns 0, or -1 with err->msg filled. */
int wm_conf_parse_header(struct wm_arena *a, const char *s, struct wm_conf_header *h,
                         struct wm_err *err);

/* Print every key of s and its sub-tables, one a line: "path\tkind[\tflags]"
 * with dotted paths under prefix ("" at the top); an alias gets its own
 * line ("alias-of=NAME"). `wmproxy schema-keys`, for the man-page check. */
void wm_schema_dump_keys(const struct wm_cschema *s, const char *prefix, FILE *f);

/* path resolved from ctx->base when relative (arena copy), else path. */
const char *wm_cctx_path(struct wm_cctx *ctx, const char *path);

/* Is s a valid "host:port"? (name or IP, port 1..65535) */
bool wm_conf_is_hostport(const char *s);

#endif
