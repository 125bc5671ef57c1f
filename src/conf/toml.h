/*
 * conf/toml.h - strict TOML 1.0.0 reader producing a wm_cval tree.
 *
 * The whole specification is enforced: UTF-8 validity, control characters, every string
 * and escape form, integer and float syntax with range checks, the four datetime types,
 * inline-table immutability and the table / array-of-tables redefinition rules. The first
 * error stops the parse.
 *
 * Positions in the tree and in errors are 1-based lines and columns counted in characters
 * (a leading UTF-8 byte-order mark is skipped and not counted).
 */
#ifndef WM_CONF_TOML_H
#define WM_CONF_TOML_H

#include <stddef.h>

struct wm_cval;
struct wm_err;

/* Maximum nesting of tables, arrays and inline tables (key segments count as levels). */
#define WM_TOML_MAX_DEPTH 128

/* Parse text[0..len) (need not be NUL-terminated; NUL bytes are rejected as control
 * characters). filename is only copied into errors (may be NULL).
 * Returns a new root table owned by the caller (free with wm_cval_free()), or NULL with
 * *err filled: file, line, col and a message such as "expected '=' after key" or
 * "duplicate key 'a' (first defined at line 3)". err may be NULL. Out of memory is
 * reported as an error at the current position. */
struct wm_cval *wm_toml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err);

#endif
