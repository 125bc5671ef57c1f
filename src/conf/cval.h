/*
 * conf/cval.h - the configuration value tree produced by the TOML and YAML readers.
 *
 * A tree is a root TABLE owning every value below it. Values are opaque and
 * immutable for consumers; the builder section at the end is for readers.
 *
 * Positions: line and column are 1-based. Columns count characters (Unicode
 * code points of the UTF-8 input; a tab is one character), not bytes. A
 * value built without a position reports 0.
 *
 * Accessors take a non-NULL value (only wm_cval_get*, wm_cval_free accept NULL).
 *
 * Ownership: wm_cval_free() on the root frees every value, key and string of
 * the tree. Every pointer returned by an accessor (child values, keys,
 * strings, text) stays valid until the root is freed and must not be freed
 * by the caller.
 */
#ifndef WM_CONF_CVAL_H
#define WM_CONF_CVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wm_cval_type {
    WM_CVAL_TABLE,          /* keys in document order, unique */
    WM_CVAL_ARRAY,          /* values in document order */
    WM_CVAL_STRING,         /* bytes + length; may hold NUL */
    WM_CVAL_INT,            /* int64_t */
    WM_CVAL_FLOAT,          /* double, may be inf or nan */
    WM_CVAL_BOOL,
    WM_CVAL_DATETIME,       /* offset date-time, RFC 3339 */
    WM_CVAL_DATETIME_LOCAL, /* date-time without offset */
    WM_CVAL_DATE_LOCAL,     /* date only */
    WM_CVAL_TIME_LOCAL,     /* time of day only */
    WM_CVAL_NULL,           /* YAML null; TOML never produces it */
    WM_CVAL_TYPE_COUNT
};

struct wm_cval;

/* ---- reading a tree ---- */

/* Type of v. */
enum wm_cval_type wm_cval_type(const struct wm_cval *v);

/* Name of t as used by toml-test: "table", "array", "string", "integer", "float", "bool",
 * "datetime", "datetime-local", "date-local", "time-local", "null"; "?" when out of range. */
const char *wm_cval_type_name(enum wm_cval_type t);

/* 1-based line and column (in characters) where v starts in its source; 0 when unknown.
 * For a table defined by a TOML header this is the header's opening bracket. */
int wm_cval_line(const struct wm_cval *v);
int wm_cval_col(const struct wm_cval *v);

/* Number of entries of a table or array; 0 for any other type. */
size_t wm_cval_count(const struct wm_cval *v);

/* Entry i (0-based, in document order) of a table or array; NULL if out of range or v is a
 * scalar. */
const struct wm_cval *wm_cval_at(const struct wm_cval *v, size_t i);

/* Key of entry i of table t, NUL-terminated. A key may itself contain NUL (TOML "\u0000"):
 * wm_cval_key_len() gives the full length. NULL / 0 if t is not a table or i out of range. */
const char *wm_cval_key_at(const struct wm_cval *t, size_t i);
size_t wm_cval_key_len(const struct wm_cval *t, size_t i);

/* Where the key of entry i was first written (1-based, characters); 0 if unknown. */
int wm_cval_key_line(const struct wm_cval *t, size_t i);
int wm_cval_key_col(const struct wm_cval *t, size_t i);

/* Value stored under key in table t; NULL if absent or t is not a table. The _n form takes
 * a key of explicit length (may contain NUL). */
const struct wm_cval *wm_cval_get(const struct wm_cval *t, const char *key);
const struct wm_cval *wm_cval_get_n(const struct wm_cval *t, const char *key, size_t keylen);

/* String bytes (NUL-terminated; *len, if len is not NULL, receives the length, which counts
 * embedded NULs). NULL if v is not a string. */
const char *wm_cval_str(const struct wm_cval *v, size_t *len);

/* Scalar values; 0 / 0.0 / false when v has another type. */
int64_t wm_cval_int(const struct wm_cval *v);
double wm_cval_float(const struct wm_cval *v);
bool wm_cval_bool(const struct wm_cval *v);

/* Text form of a scalar:
 *   strings:   the string itself (same as wm_cval_str);
 *   datetimes: canonical RFC 3339 text ("1979-05-27T07:32:00.5-07:00": 'T' and 'Z'
 *              upper-case, fraction digits as written);
 *   others:    the source text when the reader kept it (YAML keeps it for every scalar,
 *              e.g. "0x1F", "~", "yes"), else NULL (TOML numbers and booleans).
 * NULL for tables and arrays. */
const char *wm_cval_text(const struct wm_cval *v);

/* Free v and everything below it. NULL is a no-op. Only call on a root (or on a value not
 * yet added to a container). */
void wm_cval_free(struct wm_cval *root);

/* Serialise v as JSON into a new NUL-terminated buffer *out (length *outlen, may be NULL);
 * the caller frees *out with free().
 *   tagged:   the toml-test form: scalars become {"type": T, "value": "text"} with T from
 *             wm_cval_type_name(); null becomes JSON null;
 *   untagged: plain JSON: numbers, true/false, null, strings; datetimes become strings,
 *             non-finite floats the strings "nan", "inf", "-inf".
 * Strings are escaped (quote, backslash, control characters); valid UTF-8 passes through,
 * invalid bytes become U+FFFD. Returns 0, or -1 (out of memory, or nesting deeper than
 * WM_CVAL_JSON_MAX_DEPTH) with *out set to NULL. */
#define WM_CVAL_JSON_MAX_DEPTH 1024
int wm_cval_to_json(const struct wm_cval *v, bool tagged, char **out, size_t *outlen);
/* Same, with the values of the keys listed in secret (NULL-terminated) written
 * as "***" (passwords, tokens). */
int wm_cval_to_json_masked(const struct wm_cval *v, bool tagged, const char *const *secret,
                           char **out, size_t *outlen);

/* ---- building a tree (readers) ----
 *
 * Constructors return a new value owned by the caller (until added to a container), or
 * NULL when out of memory. Strings and keys are copied. */

struct wm_cval *wm_cval_new_table(int line, int col);
struct wm_cval *wm_cval_new_array(int line, int col);
struct wm_cval *wm_cval_new_string(const char *s, size_t len, int line, int col);
struct wm_cval *wm_cval_new_int(int64_t i, int line, int col);
struct wm_cval *wm_cval_new_float(double f, int line, int col);
struct wm_cval *wm_cval_new_bool(bool b, int line, int col);
struct wm_cval *wm_cval_new_null(int line, int col);

/* A datetime of type t (WM_CVAL_DATETIME .. WM_CVAL_TIME_LOCAL) whose canonical text is
 * text[0..len). NULL if t is not a datetime type or out of memory. */
struct wm_cval *wm_cval_new_datetime(enum wm_cval_type t, const char *text, size_t len,
                                     int line, int col);

/* Deep copy of v (positions, text, keys and reader flags included); NULL if out of memory.
 * The copy is owned by the caller. */
struct wm_cval *wm_cval_copy(const struct wm_cval *v);

/* Attach source text to a scalar (replacing any previous text; ignored for strings, whose
 * text is their value). Returns 0, -1 if out of memory or v is a table or array. */
int wm_cval_set_text(struct wm_cval *v, const char *text, size_t len);

/* Move the recorded start of v. */
void wm_cval_set_pos(struct wm_cval *v, int line, int col);

/* Reader bookkeeping bits: 0 on a new value, never interpreted by this module. */
unsigned int wm_cval_flags(const struct wm_cval *v);
void wm_cval_set_flags(struct wm_cval *v, unsigned int flags);

/* Append item to array arr. Always takes item: on failure (-1: out of memory, or arr is not
 * an array) item is freed. */
int wm_cval_array_push(struct wm_cval *arr, struct wm_cval *item);

/* Last item of array arr (mutable, still owned by arr); NULL if empty or not an array. */
struct wm_cval *wm_cval_array_last(struct wm_cval *arr);

/* Add key -> val to table t; (line, col) is where the key was written. Always takes val:
 * on failure it is freed. Returns 0, -1 if out of memory or t is not a table,
 * WM_CVAL_EXISTS if t already holds key. */
#define WM_CVAL_EXISTS (-2)
int wm_cval_table_add(struct wm_cval *t, const char *key, size_t keylen, int line, int col,
                      struct wm_cval *val);

/* Mutable lookup for readers: value under key in t (still owned by t) and, if idx is not
 * NULL, its entry index; NULL if absent or t is not a table. */
struct wm_cval *wm_cval_table_find(struct wm_cval *t, const char *key, size_t keylen,
                                   size_t *idx);

#endif
