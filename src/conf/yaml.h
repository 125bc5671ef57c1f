/*
 * conf/yaml.h - YAML reader (libfyaml) producing a wm_cval tree.
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
 * Positions are 1-based lines and columns counted in characters.
 */
#ifndef WM_CONF_YAML_H
#define WM_CONF_YAML_H

#include <stdbool.h>
#include <stddef.h>

struct wm_cval;
struct wm_err;

#define WM_YAML_MAX_DEPTH 128                /* nesting of mappings and sequences */
#define WM_YAML_MAX_ALIAS_NODES (1UL << 18) /* values created by alias / merge copies */

/* Parse text[0..len) as a single YAML document whose top level is a mapping (an empty
 * document or a null top level gives an empty table). filename is only used in errors
 * (may be NULL). libfyaml's diagnostics are captured, never printed.
 * Returns a new root table owned by the caller (free with wm_cval_free()), or NULL with
 * *err filled (file, line, col, message: libfyaml's for syntax errors, "expected one
 * document" for a multi-document stream, "duplicate key 'a' (first defined at line 3)").
 * err may be NULL. */
struct wm_cval *wm_yaml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err);

/* libfyaml (Debian's 0.8) crashes on some malformed input ("? d:\t?") and
 * loops forever on others, and a config is parsed inside a running proxy on
 * reload. So wm_yaml_parse() first parses the text in a forked child: if
 * the child dies or needs more than WM_YAML_PROBE_MS, the text is refused
 * with an error naming the file ("the YAML parser crashed ..."), and only a
 * text the child got through is parsed in this process. Costs one fork per
 * YAML load. false skips the probe (libfyaml then runs unguarded); the
 * config fuzzer keeps it on, libfyaml's own crashes being known. */
#define WM_YAML_PROBE_MS 5000
extern bool wm_yaml_isolate;

#endif
