/*
 * conf/locate.c - where a dotted key path ("http.server[0].location[1].rule")
 * is written in a loaded file, so errors found after decoding (the reverse
 * proxy compiling [http]) point at file:line:col like the schema's own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "conf/cval.h"
#include "core/err.h"

/* The value under one path segment ("name", "name[2]", "name[2][0]") of t,
 * or NULL. */
static const struct wm_cval *step(const struct wm_cval *t, const char *seg, size_t n)
{
    size_t nlen = strcspn(seg, "[");
    const struct wm_cval *v;

    if (nlen > n) {
        nlen = n;
    }
    v = wm_cval_get_n(t, seg, nlen);
    for (size_t i = nlen; v != NULL && i < n && seg[i] == '[';) {
        char *end;
        unsigned long idx = strtoul(seg + i + 1, &end, 10);
        if (end == seg + i + 1 || *end != ']') {
            return NULL;
        }
        v = wm_cval_at(v, idx);
        i = (size_t)(end - seg) + 1;
    }
    return v;
}

void wm_conf_locate(const struct wm_conf *c, struct wm_err *e)
{
    const struct wm_cval *at = NULL;
    const struct wm_cval *t;
    const char *p = e->key;

    if (c == NULL || c->tree == NULL || c->file == NULL || e->file[0] != '\0' || p[0] == '\0') {
        return;
    }
    t = c->tree;
    while (*p != '\0') {
        size_t n = strcspn(p, ".");
        const struct wm_cval *v = step(t, p, n);
        if (v == NULL) {
            break; /* an alias or a derived key: the deepest written one */
        }
        at = t = v;
        p += n + (p[n] == '.');
    }
    if (at != NULL && wm_cval_line(at) > 0) {
        snprintf(e->file, sizeof(e->file), "%s", c->file);
        e->line = wm_cval_line(at);
        e->col = wm_cval_col(at);
    }
}
