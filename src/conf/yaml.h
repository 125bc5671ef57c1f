/*
 * conf/yaml.h - YAML reader (libyaml's event parser) producing a wm_cval tree.
 *
 * Mapping -> TABLE (duplicate keys are an error; non-string keys become their text),
 * sequence -> ARRAY. Quoted, literal and folded scalars -> STRING. Plain scalars follow
 * the YAML 1.2 core schema:
 *   null, Null, NULL, ~, empty        -> NULL
 *   true/True/TRUE, false/False/FALSE -> BOOL
 *   [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+ -> INT (an int64 overflow is an error)
 *   [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?, [-+]?.inf, .nan (any case
 *   variant of the spec) -> FLOAT
 *   anything else -> STRING.
 * The tags !!str and ! force a string; !!null, !!bool, !!int and !!float require the
 * matching form. Every scalar keeps its text (wm_cval_text), so "7" can be read as a string.
 * Anchors and aliases are expanded (copies; at most WM_YAML_MAX_ALIAS_NODES values in all),
 * merge keys "<<" (a mapping or a sequence of mappings) add the keys the mapping lacks.
 *
 * Positions are 1-based lines and columns counted in characters; a node's position is that
 * of its content (after any anchor or tag).
 *
 * The parse is one pass in the calling thread (no child process, no re-parse), safe to
 * run in a multi-threaded process on reload; it keeps no state between calls.
 */
#ifndef WM_CONF_YAML_H
#define WM_CONF_YAML_H

#include <stddef.h>

struct wm_cval;
struct wm_err;

#define WM_YAML_MAX_DEPTH 128                /* nesting of mappings and sequences */
#define WM_YAML_MAX_ALIAS_NODES (1UL << 18) /* values created by alias / merge copies */
#define WM_YAML_MAX_BYTES (4UL << 20)       /* a longer text is refused unparsed */
#define WM_YAML_MAX_COMPLEX_KEY 1024        /* a complex key's text ("? [a, b]"), at most */

/* Parse text[0..len) as a single YAML document whose top level is a mapping (an empty
 * document or a null top level gives an empty table). filename is only used in errors
 * (may be NULL). Nothing is printed.
 * Returns a new root table owned by the caller (free with wm_cval_free()), or NULL with
 * *err filled (file, line, col, message: libyaml's for syntax errors, with the context
 * it was parsing, "expected one document" for a multi-document stream, "duplicate key 'a'
 * (first defined at line 3)", "aliases expand to more than ... values" for an alias bomb).
 * err may be NULL. text is only read, and may be freed when the call returns. */
struct wm_cval *wm_yaml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err);

#endif
