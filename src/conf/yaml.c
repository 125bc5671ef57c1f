/*
 * conf/yaml.c - YAML reader: libyaml's event parser -> tree builder (yaml_build.c).
 *
 * libyaml (behind PyYAML, Ruby's Psych and, through its Rust port, serde_yaml) reads a lone
 * '-' in a flow collection as the string "-", as wmproxy's samples use it ("[-, etag]"), so
 * the input needs no rewrite. The parse runs in this process in one pass:
 *   1. a pre-scan refuses invalid UTF-8 and non-printable characters with their position;
 *   2. libyaml's events feed the builder, which types scalars, expands aliases under a
 *      budget and refuses duplicate keys;
 *   3. a libyaml error becomes a message at its problem mark, worded for the few common
 *      mistakes (tab indentation, unclosed quotes, bad indentation).
 * Nothing is printed: every error goes to the caller's struct wm_err.
 */
#include "conf/yaml.h"

#include "conf/cval.h"
#include "conf/yaml_int.h"
#include "core/err.h"
#include "core/util.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define YAML_CORE_TAG "tag:yaml.org,2002:" /* the core schema's tags ("!!int") */

/* One parse: the text, the builder and what the event loop tracks. */
struct yreader {
    const char *text;
    size_t len;
    const char *file;
    struct wm_err *err;
    struct yaml_build *b;
    int docs;
};

/* Is cp a YAML 1.2 printable character (c-printable, section 5.1)? */
static bool yaml_printable(uint32_t cp)
{
    return cp == 0x09 || cp == 0x0A || cp == 0x0D || (cp >= 0x20 && cp <= 0x7E) || cp == 0x85 ||
           (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* YAML streams are printable Unicode. Checked before libyaml sees the text: its reader
 * reports such bytes by offset only. Returns 0, or -1 with err set at the offending
 * character. */
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

/* ---- positions ---- */

static bool is_cont_byte(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* Where a node's content starts. libyaml's start mark of a node with an anchor or a tag is
 * the first property; the value is reported where it is written, so skip "&a", "!t",
 * blanks, line breaks and comments up to the content (never past the event's end mark). */
static void content_pos(const struct yreader *r, const yaml_mark_t *start, const yaml_mark_t *end,
                        int *line, int *col)
{
    const char *s = r->text;
    size_t i = start->index;
    size_t stop = end->index < r->len ? end->index : r->len;

    *line = (int)start->line + 1;
    *col = (int)start->column + 1;
    while (i < stop) {
        if (s[i] == '&' || s[i] == '!') {
            while (i < stop && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
                *col += is_cont_byte(s[i]) ? 0 : 1;
                i++;
            }
        } else if (s[i] == ' ' || s[i] == '\t') {
            (*col)++;
            i++;
        } else if (s[i] == '\n' || s[i] == '\r') {
            i += s[i] == '\r' && i + 1 < stop && s[i + 1] == '\n' ? 2 : 1;
            (*line)++;
            *col = 1;
        } else if (s[i] == '#') {
            while (i < stop && s[i] != '\n' && s[i] != '\r') {
                i++;
            }
        } else {
            break;
        }
    }
}

/* 1-based line and column (in characters) of byte offset off. */
static void offset_pos(const struct yreader *r, size_t off, int *line, int *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off && i < r->len; i++) {
        if (r->text[i] == '\n' || (r->text[i] == '\r' && (i + 1 >= r->len ||
                                                         r->text[i + 1] != '\n'))) {
            (*line)++;
            *col = 1;
        } else if (r->text[i] != '\r' && !is_cont_byte(r->text[i])) {
            (*col)++;
        }
    }
}

/* Only blanks between the start of the line and byte offset off? */
static bool at_indent(const struct yreader *r, size_t off)
{
    while (off > 0 && off <= r->len && (r->text[off - 1] == ' ' || r->text[off - 1] == '\t')) {
        off--;
    }
    return off == 0 || r->text[off - 1] == '\n' || r->text[off - 1] == '\r';
}

/* ---- errors ---- */

/* Fill err from libyaml's error state. libyaml's problem texts are kept (they are precise),
 * with its context and where that started; three common mistakes get plainer words. */
static int syntax_error(struct yreader *r, const yaml_parser_t *p)
{
    const char *problem = p->problem != NULL ? p->problem : "invalid YAML";
    const char *ctx = p->context;
    size_t at = p->problem_mark.index;
    int line = (int)p->problem_mark.line + 1;
    int col = (int)p->problem_mark.column + 1;
    char q;

    if (p->error == YAML_MEMORY_ERROR) {
        return wm_err_set(r->err, r->file, 0, 0, NULL, "out of memory");
    }
    if (p->error == YAML_READER_ERROR) {
        /* the pre-scan catches what the reader refuses; only an offset is known here */
        offset_pos(r, p->problem_offset, &line, &col);
        return wm_err_set(r->err, r->file, line, col, NULL, "%s", problem);
    }
    if (at < r->len && r->text[at] == '\t' && at_indent(r, at)) {
        return wm_err_set(r->err, r->file, line, col, NULL,
                          "tab character may not be used as indentation");
    }
    if (strstr(problem, "tab character that violates indentation") != NULL) {
        return wm_err_set(r->err, r->file, line, col, NULL,
                          "tab character may not be used as indentation (%s started at line "
                          "%zu, column %zu)", ctx != NULL ? ctx : "", p->context_mark.line + 1,
                          p->context_mark.column + 1);
    }
    if (ctx != NULL && strcmp(ctx, "while scanning a quoted scalar") == 0 &&
        strcmp(problem, "found unexpected end of stream") == 0) {
        /* reported where the scalar's text starts, after its opening quote */
        q = p->context_mark.index < r->len ? r->text[p->context_mark.index] : '"';
        return wm_err_set(r->err, r->file, (int)p->context_mark.line + 1,
                          (int)p->context_mark.column + 2, NULL,
                          "%s-quoted scalar without closing quote",
                          q == '\'' ? "single" : "double");
    }
    if (ctx != NULL && strcmp(ctx, "while parsing a block mapping") == 0 &&
        strcmp(problem, "did not find expected key") == 0 && at_indent(r, at) &&
        p->problem_mark.column != p->context_mark.column) {
        return wm_err_set(r->err, r->file, line, col, NULL,
                          "invalid indentation: did not find expected key (the mapping "
                          "started at line %zu, column %zu)", p->context_mark.line + 1,
                          p->context_mark.column + 1);
    }
    if (ctx != NULL && p->context_mark.index != at) {
        return wm_err_set(r->err, r->file, line, col, NULL, "%s (%s started at line %zu, "
                          "column %zu)", problem, ctx, p->context_mark.line + 1,
                          p->context_mark.column + 1);
    }
    if (ctx != NULL) {
        return wm_err_set(r->err, r->file, line, col, NULL, "%s (%s)", problem, ctx);
    }
    return wm_err_set(r->err, r->file, line, col, NULL, "%s", problem);
}

/* ---- events ---- */

/* The tags a configuration may use: none, the non-specific "!", and the
 * core schema's for the node's kind. Any other (!!binary, !!timestamp, a
 * local !name) would be taken as if untagged: "password: !!binary c2Vj"
 * would set the base64 text as the password. NULL when tag is fine, else
 * what the node may take instead. */
static const char *tag_refused(const char *tag, yaml_event_type_t kind)
{
    static const char *const scalar[] = {"str", "null", "bool", "int", "float", NULL};
    static const char *const seq[] = {"seq", NULL};
    static const char *const map[] = {"map", NULL};
    const char *const *ok = kind == YAML_SCALAR_EVENT           ? scalar
                            : kind == YAML_SEQUENCE_START_EVENT ? seq
                                                                : map;
    size_t plen = strlen(YAML_CORE_TAG);

    if (tag == NULL || strcmp(tag, "!") == 0) {
        return NULL;
    }
    if (strncmp(tag, YAML_CORE_TAG, plen) == 0) {
        for (size_t i = 0; ok[i] != NULL; i++) {
            if (strcmp(tag + plen, ok[i]) == 0) {
                return NULL;
            }
        }
    }
    return kind == YAML_SCALAR_EVENT ? "a value takes !!str, !!int, !!float, !!bool or !!null"
                                     : "a list takes !!seq, a table !!map";
}

static int refuse_tag(struct yreader *r, int line, int col, const char *tag,
                      yaml_event_type_t kind)
{
    size_t plen = strlen(YAML_CORE_TAG);
    bool core = strncmp(tag, YAML_CORE_TAG, plen) == 0; /* shown as written: "!!binary" */

    return yaml_build_fail(r->b, line, col, "tag %s%.80s is not supported here (%s)",
                           core ? "!!" : "", core ? tag + plen : tag, tag_refused(tag, kind));
}

static int on_event(struct yreader *r, const yaml_event_t *e)
{
    const char *anchor = NULL;
    const char *tag = NULL;
    int line = (int)e->start_mark.line + 1;
    int col = (int)e->start_mark.column + 1;

    switch (e->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++r->docs > 1) {
            return yaml_build_fail(r->b, line, col, "expected one document");
        }
        return 0;
    case YAML_SCALAR_EVENT:
        anchor = (const char *)e->data.scalar.anchor;
        tag = (const char *)e->data.scalar.tag;
        if (anchor != NULL || tag != NULL) {
            content_pos(r, &e->start_mark, &e->end_mark, &line, &col);
        }
        if (tag_refused(tag, e->type) != NULL) {
            return refuse_tag(r, line, col, tag, e->type);
        }
        return yaml_build_scalar(r->b, line, col, (const char *)e->data.scalar.value,
                                 e->data.scalar.length,
                                 e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, tag, anchor);
    case YAML_ALIAS_EVENT:
        return yaml_build_alias(r->b, line, col, (const char *)e->data.alias.anchor);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (e->type == YAML_SEQUENCE_START_EVENT) {
            anchor = (const char *)e->data.sequence_start.anchor;
            tag = (const char *)e->data.sequence_start.tag;
        } else {
            anchor = (const char *)e->data.mapping_start.anchor;
            tag = (const char *)e->data.mapping_start.tag;
        }
        if (anchor != NULL || tag != NULL) {
            content_pos(r, &e->start_mark, &e->end_mark, &line, &col);
        }
        if (tag_refused(tag, e->type) != NULL) {
            return refuse_tag(r, line, col, tag, e->type);
        }
        return yaml_build_start(r->b, line, col, e->type == YAML_MAPPING_START_EVENT, anchor);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return yaml_build_end(r->b, line, col);
    default:
        return 0;
    }
}

/* Feed every event of the stream to the builder; 0 when the stream ended cleanly. */
static int run_parser(struct yreader *r)
{
    yaml_parser_t p;
    yaml_event_t e;
    bool done = false;
    int rc = 0;

    if (yaml_parser_initialize(&p) == 0) {
        return wm_err_set(r->err, r->file, 0, 0, NULL, "out of memory");
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)r->text, r->len);
    while (rc == 0 && !done) {
        if (yaml_parser_parse(&p, &e) == 0) {
            rc = syntax_error(r, &p);
            break;
        }
        done = e.type == YAML_STREAM_END_EVENT;
        rc = on_event(r, &e);
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&p);
    return rc;
}

struct wm_cval *wm_yaml_parse(const char *text, size_t len, const char *filename,
                              struct wm_err *err)
{
    struct yreader r = {.text = text, .len = len, .file = filename, .err = err};
    struct wm_cval *root = NULL;

    if (text == NULL) {
        r.text = "";
        r.len = 0;
    }
    if (err != NULL) {
        wm_err_clear(err);
    }
    if (r.len > WM_YAML_MAX_BYTES) {
        wm_err_set(err, filename, 0, 0, NULL, "larger than %lu bytes: refused",
                   (unsigned long)WM_YAML_MAX_BYTES);
        return NULL;
    }
    if (yaml_check_chars(r.text, r.len, filename, err) != 0) {
        return NULL;
    }
    r.b = yaml_build_new(filename, err);
    if (r.b == NULL) {
        return NULL;
    }
    if (run_parser(&r) == 0) {
        root = yaml_build_root(r.b);
    }
    yaml_build_free(r.b);
    return root;
}
