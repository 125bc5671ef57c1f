/*
 * conf/yaml_scalar.c - YAML reader: scalar resolution (YAML 1.2 core schema and tags).
 */
#include "conf/cval.h"
#include "conf/yaml_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* What a scalar's tag demands. */
enum ywant {
    YW_ANY, /* no tag or an unknown one: resolve by content */
    YW_STR,
    YW_NULL,
    YW_BOOL,
    YW_INT,
    YW_FLOAT,
};

static enum ywant tag_want(const char *tag)
{
    static const char *const names[] = {"str", "null", "bool", "int", "float"};
    static const enum ywant wants[] = {YW_STR, YW_NULL, YW_BOOL, YW_INT, YW_FLOAT};
    size_t plen = strlen(YAML_TAG_PREFIX);
    size_t i;

    if (tag == NULL) {
        return YW_ANY;
    }
    if (strcmp(tag, "!") == 0) {
        return YW_STR; /* the non-specific tag: not resolved by content */
    }
    if (strncmp(tag, YAML_TAG_PREFIX, plen) != 0) {
        return YW_ANY;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(tag + plen, names[i]) == 0) {
            return wants[i];
        }
    }
    return YW_ANY;
}

static bool all_in(const char *s, size_t len, const char *set)
{
    size_t i;

    if (len == 0) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || strchr(set, s[i]) == NULL) {
            return false;
        }
    }
    return true;
}

static bool is_one_of(const char *s, const char *const *words)
{
    for (; *words != NULL; words++) {
        if (strcmp(s, *words) == 0) {
            return true;
        }
    }
    return false;
}

/* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool is_core_float(const char *s)
{
    size_t nd = 0;

    if (*s == '+' || *s == '-') {
        s++;
    }
    while (*s >= '0' && *s <= '9') {
        s++;
        nd++;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            s++;
            nd++;
        }
    }
    if (nd == 0) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') {
            s++;
        }
        if (!(*s >= '0' && *s <= '9')) {
            return false;
        }
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    }
    return *s == '\0';
}

/* Core schema resolution of plain text s (length len, no NUL inside when plain). */
static int resolve_plain(const char *s, size_t len, int line, int col, struct wm_cval **out,
                         char *why, size_t whylen)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
    const char *digits = s + ((s[0] == '+' || s[0] == '-') ? 1 : 0);
    unsigned long long u;
    long long ll;

    if (strlen(s) != len) {
        *out = wm_cval_new_string(s, len, line, col);
    } else if (is_one_of(s, nulls)) {
        *out = wm_cval_new_null(line, col);
    } else if (is_one_of(s, trues) || is_one_of(s, falses)) {
        *out = wm_cval_new_bool(is_one_of(s, trues), line, col);
    } else if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o') &&
               all_in(s + 2, len - 2, s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567")) {
        errno = 0;
        u = strtoull(s + 2, NULL, s[1] == 'x' ? 16 : 8);
        if (errno == ERANGE || u > (unsigned long long)INT64_MAX) {
            snprintf(why, whylen, "integer %.64s is out of range for int64", s);
            return -1;
        }
        *out = wm_cval_new_int((int64_t)u, line, col);
    } else if (all_in(digits, len - (size_t)(digits - s), "0123456789")) {
        errno = 0;
        ll = strtoll(s, NULL, 10);
        if (errno == ERANGE) {
            snprintf(why, whylen, "integer %.64s is out of range for int64", s);
            return -1;
        }
        *out = wm_cval_new_int((int64_t)ll, line, col);
    } else if (is_one_of(digits, infs)) {
        *out = wm_cval_new_float(s[0] == '-' ? -INFINITY : INFINITY, line, col);
    } else if (is_one_of(s, nans)) {
        *out = wm_cval_new_float(NAN, line, col);
    } else if (is_core_float(s)) {
        /* range errors give +-inf or 0, as YAML has no range limit for floats */
        *out = wm_cval_new_float(strtod(s, NULL), line, col);
    } else {
        *out = wm_cval_new_string(s, len, line, col);
    }
    return *out != NULL ? 0 : -1;
}

int yaml_scalar_value(const char *s, size_t len, bool plain, const char *tag, int line, int col,
                      struct wm_cval **out, char *why, size_t whylen)
{
    enum ywant want = tag_want(tag);
    enum wm_cval_type t;
    struct wm_cval *v = NULL;
    struct wm_cval *f;
    bool ok;

    why[0] = '\0';
    *out = NULL;
    if (want == YW_STR || (want == YW_ANY && !plain)) {
        v = wm_cval_new_string(s, len, line, col);
    } else {
        if (resolve_plain(s, len, line, col, &v, why, whylen) != 0) {
            return -1;
        }
        t = wm_cval_type(v);
        ok = want == YW_ANY || (want == YW_NULL && t == WM_CVAL_NULL) ||
             (want == YW_BOOL && t == WM_CVAL_BOOL) || (want == YW_INT && t == WM_CVAL_INT) ||
             (want == YW_FLOAT && (t == WM_CVAL_FLOAT || t == WM_CVAL_INT));
        if (!ok) {
            wm_cval_free(v);
            snprintf(why, whylen, "'%.64s' does not match its tag %.64s", s, tag);
            return -1;
        }
        if (want == YW_FLOAT && t == WM_CVAL_INT) {
            f = wm_cval_new_float((double)wm_cval_int(v), line, col);
            wm_cval_free(v);
            v = f;
        }
    }
    if (v == NULL || wm_cval_set_text(v, s, len) != 0) {
        wm_cval_free(v);
        return -1;
    }
    *out = v;
    return 0;
}
