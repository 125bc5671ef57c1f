/*
 * conf/yaml_int.h - private to the YAML reader (yaml.c, yaml_scalar.c).
 */
#ifndef WM_CONF_YAML_INT_H
#define WM_CONF_YAML_INT_H

#include <stdbool.h>
#include <stddef.h>

struct wm_cval;

/* Build the value of scalar s[0..len) (NUL-terminated; may hold NUL when quoted) at
 * (line, col): a string when quoted (plain false) or tagged !!str / !, else resolved with
 * the YAML 1.2 core schema and checked against a !!null/!!bool/!!int/!!float tag.
 * tag is the resolved tag text or NULL. The source text is attached to the value.
 * Returns 0 with a new value in *out, or -1 with a message in why[0..whylen) (empty when
 * out of memory). */
int yaml_scalar_value(const char *s, size_t len, bool plain, const char *tag, int line, int col,
                      struct wm_cval **out, char *why, size_t whylen);

#endif
