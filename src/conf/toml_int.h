/*
 * conf/toml_int.h - private to the TOML reader (toml.c, toml_lex.c, toml_value.c).
 *
 * The parser is a single recursive-descent pass over the input after a validation pass
 * (UTF-8, control characters, bare CR) so that later stages can copy bytes freely.
 */
#ifndef WM_CONF_TOML_INT_H
#define WM_CONF_TOML_INT_H

#include <stdbool.h>
#include <stddef.h>

struct wm_cval;
struct wm_err;

#define TOML_NAME_MAX 256 /* bytes of a key path kept for error messages */

/* Bookkeeping bits stored with wm_cval_set_flags() on tables and arrays. */
enum toml_flag {
    TOML_F_IMPLICIT = 1 << 0, /* table created as a parent by a [header] */
    TOML_F_EXPLICIT = 1 << 1, /* table defined by its own [header] or [[header]] */
    TOML_F_DOTTED = 1 << 2,   /* table created by a dotted key in a key/value pair */
    TOML_F_FROZEN = 1 << 3,   /* inline table: closed for any later addition */
    TOML_F_AOT = 1 << 4,      /* array created by [[header]] (others are static) */
};

/* Growable byte buffer for decoded strings. */
struct toml_buf {
    char *p;
    size_t n;
    size_t cap;
};

/* One segment of a dotted key. */
struct toml_keypart {
    char *s; /* decoded, NUL-terminated, may contain NUL */
    size_t len;
    int line;
    int col;
};

struct toml_key {
    struct toml_keypart *parts;
    size_t n;
    size_t cap;
};

struct toml_parser {
    const char *s;
    size_t n;
    size_t pos;
    int line; /* of s[pos] */
    int col;  /* of s[pos], in characters */
    const char *file;
    struct wm_err *err;
    struct wm_cval *root;
    struct wm_cval *cur; /* table receiving key/value pairs */
    int cur_depth;       /* nesting level of cur below root */
    struct toml_buf buf; /* scratch for string decoding */
    char cur_name[TOML_NAME_MAX]; /* printable key of the last header, "" for the root */
};

/* ---- toml_lex.c ---- */

/* Fill p->err at (line, col); returns -1. */
int toml_error_at(struct toml_parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same at the current position. */
int toml_error(struct toml_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "'x'", "U+0001" or "end of input" for the character at the current position. */
const char *toml_describe(const struct toml_parser *p, char *buf, size_t n);

/* Byte at pos + off, or -1 past the end. */
int toml_peek_at(const struct toml_parser *p, size_t off);
static inline int toml_peek(const struct toml_parser *p)
{
    return toml_peek_at(p, 0);
}
void toml_advance(struct toml_parser *p, size_t nbytes);
bool toml_at_newline(const struct toml_parser *p);
void toml_skip_ws(struct toml_parser *p);
void toml_skip_comment(struct toml_parser *p);
/* Skip blanks, comments and newlines (inside arrays). */
void toml_skip_ws_nl(struct toml_parser *p);

/* Check the whole input: UTF-8, no control characters but tab/LF/CRLF. Skips a BOM. */
int toml_validate(struct toml_parser *p);

/* Parse a string at the current quote into p->buf; multi-line forms only if allow_ml. */
int toml_parse_string(struct toml_parser *p, bool allow_ml);

/* Parse a (dotted) key into k (which must be empty). */
int toml_parse_key(struct toml_parser *p, struct toml_key *k);
void toml_key_clear(struct toml_key *k);
/* Printable form of key parts [0, upto] joined by dots. */
const char *toml_key_display(const struct toml_key *k, size_t upto, char *buf, size_t n);

int toml_buf_put(struct toml_buf *b, const char *s, size_t len);

/* ---- toml_value.c ---- */

/* Parse a value at the current position; depth is the nesting level it will live at. */
int toml_parse_value(struct toml_parser *p, int depth, struct wm_cval **out);

/* ---- toml.c ---- */

/* Insert key = val under table t, creating dotted-key tables. Takes val in all cases.
 * prefix is the printable path of t for messages ("" or NULL if unknown). */
int toml_insert(struct toml_parser *p, struct wm_cval *t, const char *prefix,
                const struct toml_key *k, struct wm_cval *val);

#endif
