/*
 * reverse/rconf_limit.c - compiling limit_req: the zones of
 * [http.limit_req_zone] ("{client_ip} limit=10m rate=1000r/s", wmproxy's
 * form) and each location's `limit_req = "zone=NAME burst=N"`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/units.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/util.h"
#include "reverse/rconf_int.h"

#define DEFAULT_ZONE_BYTES (1024 * 1024)

/* One zone spec: words "key-template", "limit=SIZE", "rate=Nr/s". */
static int zone_parse(struct build *b, const char *spec, const char **keyt, uint64_t *bytes,
                      uint64_t *rate_micro, bool *shared, bool *err_allow, const char *key)
{
    struct wm_arena *a = b->r->arena;
    struct wm_err e;
    bool have_rate = false;

    *keyt = "{client_ip}";
    *bytes = DEFAULT_ZONE_BYTES;
    for (const char *p = spec; *p != '\0';) {
        char w[256];
        size_t n;
        p += strspn(p, " \t");
        n = strcspn(p, " \t");
        if (n == 0) {
            break;
        }
        wm_fmt(w, sizeof(w), "%.*s", (int)n, p);
        p += n;
        if (strncmp(w, "limit=", 6) == 0) {
            if (wm_parse_size(w + 6, bytes, &e) < 0) {
                return rconf_fail(b, key, "limit=: %s%s", e.msg, "");
            }
        } else if (strncmp(w, "rate=", 5) == 0) {
            struct wm_rate r;
            if (wm_parse_rate(w + 5, &r, &e) < 0 || !r.requests || r.per_ms == 0) {
                return rconf_fail(b, key, "rate=: expected requests like 1000r/s or 30r/m, "
                                          "got \"%s\"%s", w + 5, "");
            }
            /* requests per second x 10^6: 1r/m is 16,666 (x 10^3 it was
             * 16, which drained a request in 62.5 s, not 60) */
            unsigned __int128 micro = (unsigned __int128)r.amount * 1000000000u / r.per_ms;
            *rate_micro = micro > RV_RATE_MICRO_MAX ? RV_RATE_MICRO_MAX
                                                    : (micro == 0 ? 1 : (uint64_t)micro);
            have_rate = true;
        } else if (strcmp(w, "shared=true") == 0 || strcmp(w, "shared=false") == 0) {
            *shared = w[7] == 't'; /* cluster: counted in Redis */
        } else if (strcmp(w, "on_redis_error=allow") == 0 ||
                   strcmp(w, "on_redis_error=deny") == 0) {
            *err_allow = w[15] == 'a';
        } else if (strchr(w, '=') == NULL) {
            /* an unknown variable stays as written: every client would
             * share one key ("$binary_remote_addr" is nginx's spelling) */
            size_t vlen;
            const char *v = wm_hfwd_unknown_var(w, &vlen);
            if (v != NULL) {
                char bad[160];
                wm_fmt(bad, sizeof(bad), "%.*s", (int)vlen, v);
                return rconf_fail(b, key, "the key's variable \"%s\" is not known (a key may "
                                          "use {client_ip}, {host}, {url}, {path}, {method}, "
                                          "{scheme}; nginx's $binary_remote_addr is "
                                          "{client_ip})%s", bad, "");
            }
            *keyt = wm_arena_strdup(a, w);
        } else {
            return rconf_fail(b, key, "unknown word \"%s\" (expected KEY limit=SIZE "
                                      "rate=Nr/s [shared=true] [on_redis_error=allow|deny])%s", w, "");
        }
    }
    if (!have_rate) {
        return rconf_fail(b, key, "a zone needs rate=, like \"{client_ip} limit=10m "
                                  "rate=100r/s\"%s%s", "", "");
    }
    return 0;
}

int rconf_zones(struct build *b)
{
    const struct wm_conf_http *h = b->h;
    struct wm_rev *r = b->r;
    size_t n = h->nlimit_req_zone;

    r->zones = calloc(n ? n : 1, sizeof(*r->zones));
    r->zone_confs = wm_arena_alloc(r->arena, (n ? n : 1) * sizeof(*r->zone_confs));
    r->zone_names = wm_arena_alloc(r->arena, (n ? n : 1) * sizeof(*r->zone_names));
    r->zone_keys = wm_arena_alloc(r->arena, (n ? n : 1) * sizeof(*r->zone_keys));
    if (r->zones == NULL || r->zone_confs == NULL || r->zone_names == NULL ||
        r->zone_keys == NULL) {
        return rconf_fail(b, "http.limit_req_zone", "out of memory%s%s", "", "");
    }
    for (size_t i = 0; i < n; i++) {
        char key[WM_ERR_KEY_MAX];
        const char *keyt;
        uint64_t bytes;
        uint64_t rate = 0;
        bool shared = false;
        bool err_allow = true;
        wm_fmt(key, sizeof(key), "http.limit_req_zone.%s", h->limit_req_zone[i].key);
        if (zone_parse(b, h->limit_req_zone[i].value, &keyt, &bytes, &rate, &shared, &err_allow,
                       key) < 0) {
            return -1;
        }
        r->zones[i] = rv_zone_get(h->limit_req_zone[i].key, bytes);
        if (r->zones[i] == NULL) {
            return rconf_fail(b, key, "out of memory%s%s", "", "");
        }
        r->zone_confs[i] = (struct rv_zone_conf){.rate_micro = rate,
                                                 .max_entries = rv_zone_entries(bytes),
                                                 .shared = shared,
                                                 .on_error_allow = err_allow};
        r->zone_names[i] = wm_arena_strdup(r->arena, h->limit_req_zone[i].key);
        r->zone_keys[i] = keyt;
        r->nzones++;
    }
    return 0;
}

int rconf_limit_req(struct build *b, struct rv_location *l, const char *spec, int64_t status,
                    const char *key)
{
    char name[128] = "";
    unsigned long long burst = 0;

    for (const char *p = spec; *p != '\0';) {
        char w[160];
        size_t n;
        p += strspn(p, " \t");
        n = strcspn(p, " \t");
        if (n == 0) {
            break;
        }
        wm_fmt(w, sizeof(w), "%.*s", (int)n, p);
        p += n;
        if (strncmp(w, "zone=", 5) == 0) {
            wm_fmt(name, sizeof(name), "%s", w + 5);
        } else if (strncmp(w, "burst=", 6) == 0 || strncmp(w, "brust=", 6) == 0) {
            char *end;
            burst = strtoull(w + 6, &end, 10);
            if (w[6] == '\0' || *end != '\0' || burst > 1000000) {
                return rconf_fail(b, key, "burst=: expected a number, got \"%s\"%s", w + 6, "");
            }
        } else if (strcmp(w, "nodelay") != 0) {
            return rconf_fail(b, key, "unknown word \"%s\" (expected zone=NAME [burst=N] "
                                      "[nodelay])%s", w, "");
        }
    }
    for (size_t i = 0; i < b->r->nzones; i++) {
        if (strcmp(b->r->zone_names[i], name) == 0) {
            l->zone = b->r->zones[i];
            l->zone_conf = &b->r->zone_confs[i];
            l->zone_key = b->r->zone_keys[i];
            l->burst = burst;
            l->limit_status = status > 0 ? (int)status : 503;
            return 0;
        }
    }
    return rconf_fail(b, key, "zone \"%s\" is not defined in [http.limit_req_zone]%s", name, "");
}
