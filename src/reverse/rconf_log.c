/*
 * reverse/rconf_log.c - compiling wmproxy's log keys: `log_names`
 * ({name = "path [level]"}), `log_format` ({name = pattern}, with "main"
 * predefined as wmproxy's), `access_log = "NAME [FORMAT] [level]"` and
 * `error_log = "NAME [level]"`. NAME is a log_names entry or, when none
 * has that name and it looks like one, a file path.
 */
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/log.h"
#include "core/util.h"
#include "reverse/rconf_int.h"

/* wmproxy's default access line format. */
static const char main_format[] =
    "{d(%Y-%m-%d %H:%M:%S)} {client_ip} {l} {url} path:{path} query:{query} host:{host} "
    "status: {status} {up_status} referer: {referer} user_agent: {user_agent} cookie: {cookie}";

static const char *kv_find(const struct wm_conf_kv *kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].key, key) == 0) {
            return kv[i].value;
        }
    }
    return NULL;
}

/* The i-th space separated word of s into w (""). */
static void word(const char *s, int i, char *w, size_t cap)
{
    w[0] = '\0';
    for (int k = 0; s != NULL && *s != '\0'; k++) {
        s += strspn(s, " \t");
        size_t n = strcspn(s, " \t");
        if (n == 0) {
            return;
        }
        if (k == i) {
            wm_fmt(w, cap, "%.*s", (int)n, s);
            return;
        }
        s += n;
    }
}

static bool level_ok(const char *w)
{
    enum wm_log_level lvl;

    return w[0] == '\0' || wm_log_parse_level(w, &lvl) == 0;
}

/* The file of log name `name`, opened (and tracked for freeing). */
static struct rv_logfile *file_of(struct build *b, const char *name,
                                  const struct wm_conf_hcommon *const *lv, size_t n,
                                  const char *key)
{
    char path[4096];
    char lvl[32];
    char msg[4200];
    const char *spec = NULL;
    struct rv_logfile *f;

    for (size_t i = 0; i < n && spec == NULL; i++) {
        spec = kv_find(lv[i]->log_names, lv[i]->nlog_names, name);
    }
    if (spec == NULL && strpbrk(name, "/.") == NULL) {
        rconf_fail(b, key, "\"%s\" is no entry of log_names (and does not look like a file "
                           "path)%s", name, "");
        return NULL;
    }
    word(spec != NULL ? spec : name, 0, path, sizeof(path));
    word(spec != NULL ? spec : "", 1, lvl, sizeof(lvl));
    if (!level_ok(lvl)) {
        rconf_fail(b, key, "log_names.%s: unknown level \"%s\"", name, lvl);
        return NULL;
    }
    f = rv_logfile_get(path, msg, sizeof(msg));
    if (f == NULL) {
        rconf_fail(b, key, "%s%s", msg, "");
        return NULL;
    }
    if (rconf_track((void ***)&b->r->files, &b->r->nfiles, f) < 0) {
        rv_logfile_put(f);
        rconf_fail(b, key, "out of memory%s%s", "", "");
        return NULL;
    }
    return f;
}

static struct rv_alog *alog_of(struct build *b, const char *spec, bool access,
                               const struct wm_conf_hcommon *const *lv, size_t n,
                               const char *key)
{
    char name[256];
    char fmt[128];
    char lvl[32];
    struct rv_alog *a = wm_arena_alloc(b->r->arena, sizeof(*a));

    word(spec, 0, name, sizeof(name));
    word(spec, access ? 1 : 1, access ? fmt : lvl, access ? sizeof(fmt) : sizeof(lvl));
    if (access) {
        word(spec, 2, lvl, sizeof(lvl));
    } else {
        fmt[0] = '\0';
    }
    if (a == NULL || name[0] == '\0') {
        rconf_fail(b, key, "expected \"NAME [FORMAT] [LEVEL]\"%s%s", "", "");
        return NULL;
    }
    /* "access main" or "access trace": a level in the format's place */
    if (access && fmt[0] != '\0' && lvl[0] == '\0' && level_ok(fmt)) {
        bool named = false;
        for (size_t i = 0; i < n && !named; i++) {
            named = kv_find(lv[i]->log_format, lv[i]->nlog_format, fmt) != NULL;
        }
        if (!named && strcmp(fmt, "main") != 0) {
            wm_fmt(lvl, sizeof(lvl), "%s", fmt);
            fmt[0] = '\0';
        }
    }
    if (!level_ok(lvl)) {
        rconf_fail(b, key, "unknown level \"%s\"%s", lvl, "");
        return NULL;
    }
    a->format = access ? NULL : "{d(%Y-%m-%d %H:%M:%S)} ERROR {client_ip} \"{method} {url}\" "
                                "host:{host} status:{status} up:{up_addr} up_status:{up_status}";
    for (size_t i = 0; access && i < n && a->format == NULL; i++) {
        a->format = kv_find(lv[i]->log_format, lv[i]->nlog_format, fmt[0] ? fmt : "main");
    }
    /* "json", as a format name or as a log_format value: JSON lines */
    a->json = access && ((a->format == NULL && strcmp(fmt, "json") == 0) ||
                         (a->format != NULL && strcmp(a->format, "json") == 0));
    if (a->json) {
        a->format = "";
    } else if (access && a->format != NULL) {
        a->format = wm_arena_strdup(b->r->arena, a->format); /* the config may go */
    }
    if (access && a->format == NULL) {
        if (fmt[0] != '\0' && strcmp(fmt, "main") != 0) {
            rconf_fail(b, key, "format \"%s\" is no entry of log_format%s", fmt, "");
            return NULL;
        }
        a->format = main_format;
    }
    a->file = file_of(b, name, lv, n, key);
    return a->file != NULL ? a : NULL;
}

int rconf_logs(struct build *b, struct rv_location *l, const struct wm_conf_hcommon *const *lv,
               const char *const *lkeys, size_t n)
{
    char key[WM_ERR_KEY_MAX];

    for (size_t i = 0; i < n; i++) {
        if (lv[i]->access_log != NULL && l->alog == NULL) {
            wm_fmt(key, sizeof(key), "%s.access_log", lkeys[i]);
            if ((l->alog = alog_of(b, lv[i]->access_log, true, lv, n, key)) == NULL) {
                return -1;
            }
        }
        if (lv[i]->error_log != NULL && l->elog == NULL) {
            wm_fmt(key, sizeof(key), "%s.error_log", lkeys[i]);
            if ((l->elog = alog_of(b, lv[i]->error_log, false, lv, n, key)) == NULL) {
                return -1;
            }
        }
    }
    return 0;
}
