/*
 * conf/yaml_int.h - private to the YAML reader (yaml.c, yaml_build.c, yaml_scalar.c).
 *
 * yaml.c drives libyaml's event parser and turns each event into one call of the tree
 * builder below, with the position of the node's content (1-based line and column in
 * characters). The builder owns every value until yaml_build_root() hands the root over.
 */
#ifndef WM_CONF_YAML_INT_H
#define WM_CONF_YAML_INT_H

#include <stdbool.h>
#include <stddef.h>

struct wm_cval;
struct wm_err;
struct yaml_build;

/* Build the value of scalar s[0..len) (NUL-terminated; may hold NUL when quoted) at
 * (line, col): a string when quoted (plain false) or tagged !!str / !, else resolved with
 * the YAML 1.2 core schema and checked against a !!null/!!bool/!!int/!!float tag.
 * tag is the resolved tag text or NULL. The source text is attached to the value.
 * Returns 0 with a new value in *out, or -1 with a message in why[0..whylen) (empty when
 * out of memory). */
int yaml_scalar_value(const char *s, size_t len, bool plain, const char *tag, int line, int col,
                      struct wm_cval **out, char *why, size_t whylen);

/* ---- tree builder (yaml_build.c) ----
 *
 * Every call returns 0, or -1 with the builder's err filled (file, line, col, message);
 * after -1 the only valid calls are yaml_build_free() and yaml_build_fail(). anchor
 * arguments are copied (NULL: no anchor). */

/* New builder reporting errors into err (may be NULL) under filename (may be NULL).
 * NULL when out of memory (err is then filled). Free with yaml_build_free(). */
struct yaml_build *yaml_build_new(const char *filename, struct wm_err *err);

/* Free b and every value it still holds. NULL is a no-op. */
void yaml_build_free(struct yaml_build *b);

/* Fill the builder's err at (line, col) with a printf-style message; returns -1. */
int yaml_build_fail(struct yaml_build *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A scalar (see yaml_scalar_value for s, len, plain and tag). */
int yaml_build_scalar(struct yaml_build *b, int line, int col, const char *s, size_t len,
                      bool plain, const char *tag, const char *anchor);

/* An alias "*name": a copy of the value anchored as name, within the alias budget
 * (WM_YAML_MAX_ALIAS_NODES values in all) and the depth limit. */
int yaml_build_alias(struct yaml_build *b, int line, int col, const char *name);

/* Start a mapping (map true) or a sequence; refused past WM_YAML_MAX_DEPTH levels. */
int yaml_build_start(struct yaml_build *b, int line, int col, bool map, const char *anchor);

/* End the innermost mapping or sequence (applies its merge key "<<"). */
int yaml_build_end(struct yaml_build *b, int line, int col);

/* The document's top level as a table, owned by the caller (free with wm_cval_free()):
 * no value or null gives an empty table; anything but a mapping is an error (NULL). */
struct wm_cval *yaml_build_root(struct yaml_build *b);

#endif
