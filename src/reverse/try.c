/*
 * reverse/try.c - try_paths (wmproxy's, like nginx's try_files):
 * "cand1 cand2 ... =404". A candidate is a path with variables
 * ("{path}/") or, quoted, a triple "regex subject replacement": the
 * subject (variables expanded) is matched and the replacement, with $1..$9
 * of the match, is the path. The path reruns location matching; the first
 * candidate that lands on a file_server location holding that file or
 * directory wins, or on a location of another kind (as nginx's last URI).
 * Else the answer is the =CODE (default 404).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <event2/buffer.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "reverse/rev_int.h"

/* Next token of s (wmproxy's header syntax: spaces split, '...' and
 * "..." quote). NULL at the end. */
static const char *next_token(const char **s, char *buf, size_t cap)
{
    const char *p = *s;
    size_t o = 0;

    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p == '\0') {
        return NULL;
    }
    if (*p == '\'' || *p == '"') {
        char q = *p++;
        while (*p != '\0' && *p != q) {
            if (o + 1 < cap) {
                buf[o++] = *p;
            }
            p++;
        }
        p += *p == q;
    } else {
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            if (o + 1 < cap) {
                buf[o++] = *p;
            }
            p++;
        }
    }
    buf[o] = '\0';
    *s = p;
    return buf;
}

static int add_try(struct rv_location *l, const char *tok, struct wm_arena *a,
                   struct rv_pattern **re_out, char *msg, size_t cap)
{
    struct rv_try *t = &l->tries[l->ntries];
    char parts[3][512];
    const char *p = tok;
    size_t n = 0;

    memset(t, 0, sizeof(*t));
    while (n < 3 && next_token(&p, parts[n], sizeof(parts[n])) != NULL) {
        n++;
    }
    if (n == 3) {
        int ec;
        PCRE2_SIZE off;
        struct rv_pattern *re = wm_arena_alloc(a, sizeof(*re));
        if (re == NULL) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        memset(re, 0, sizeof(*re));
        re->kind = RV_PAT_REGEX;
        re->text = wm_arena_strdup(a, parts[0]);
        re->re = pcre2_compile((PCRE2_SPTR)parts[0], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &off,
                               NULL);
        if (re->re == NULL) {
            snprintf(msg, cap, "\"%s\" is not a valid regular expression", parts[0]);
            return -1;
        }
        t->re = re;
        t->fmt = wm_arena_strdup(a, parts[1]);
        t->repl = wm_arena_strdup(a, parts[2]);
        *re_out = re;
    } else if (n == 1) {
        t->fmt = wm_arena_strdup(a, tok);
    } else {
        snprintf(msg, cap, "\"%s\": a candidate is a path or \"regex subject replacement\"",
                 tok);
        return -1;
    }
    l->ntries++;
    return 0;
}

int rv_try_compile(struct rv_location *l, const char *spec, struct wm_arena *a,
                   struct rv_pattern ***res, size_t *nres, char *msg, size_t cap)
{
    char tok[1600];
    const char *p = spec;
    size_t count = 0;

    for (const char *s = spec; next_token(&s, tok, sizeof(tok)) != NULL;) {
        count++;
    }
    l->tries = wm_arena_alloc(a, (count ? count : 1) * sizeof(*l->tries));
    l->try_status = 404;
    if (l->tries == NULL) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    while (next_token(&p, tok, sizeof(tok)) != NULL) {
        struct rv_pattern *re = NULL;
        if (tok[0] == '=') {
            char *end;
            long code = strtol(tok + 1, &end, 10);
            if (*end != '\0' || code < 200 || code > 599) {
                snprintf(msg, cap, "\"%s\": expected =CODE (200..599) at the end", tok);
                return -1;
            }
            l->try_status = (int)code;
            continue;
        }
        if (add_try(l, tok, a, &re, msg, cap) < 0) {
            return -1;
        }
        if (re != NULL) {
            struct rv_pattern **nv = realloc(*res, (*nres + 1) * sizeof(*nv));
            if (nv == NULL) {
                rv_pattern_free(re);
                snprintf(msg, cap, "out of memory");
                return -1;
            }
            nv[(*nres)++] = re;
            *res = nv;
        }
    }
    return 0;
}

/* The replacement with $0..$9 of the match. */
static void substitute(const char *repl, const char *subj, PCRE2_SIZE *ov, int groups,
                       struct evbuffer *out)
{
    for (const char *p = repl; *p != '\0'; p++) {
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            int g = p[1] - '0';
            if (g < groups && ov[2 * g] != PCRE2_UNSET) {
                evbuffer_add(out, subj + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            }
            p++;
            continue;
        }
        evbuffer_add(out, p, 1);
    }
}

int rv_try_candidate(const struct rv_try *t, struct wm_hfwd *f, struct evbuffer *out)
{
    struct evbuffer *subj;
    pcre2_match_data *md;
    const char *s;
    size_t n;
    int r;

    if (t->re == NULL) {
        wm_hfwd_expand(f, t->fmt, out);
        return 0;
    }
    subj = evbuffer_new();
    md = pcre2_match_data_create(10, NULL);
    if (subj == NULL || md == NULL) {
        r = -1;
        goto done;
    }
    wm_hfwd_expand(f, t->fmt, subj);
    evbuffer_add(subj, "", 1);
    s = (const char *)evbuffer_pullup(subj, -1);
    n = evbuffer_get_length(subj) - 1;
    r = pcre2_match(t->re->re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    if (r > 0) {
        substitute(t->repl, s, pcre2_get_ovector_pointer(md), r, out);
        r = 0;
    } else {
        r = -1;
    }
done:
    if (md != NULL) {
        pcre2_match_data_free(md);
    }
    if (subj != NULL) {
        evbuffer_free(subj);
    }
    return r;
}
