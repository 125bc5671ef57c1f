/*
 * reverse/rconf.c - compile a loaded [http] section (conf/config_http.h)
 * into the settings the workers read (reverse/rev_int.h): inheritance
 * http -> server -> location, upstream lookup, patterns, networks,
 * certificates and the listening addresses.
 */
#include <llhttp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config_http.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/limits.h"
#include "core/util.h"
#include "http/util.h"
#include "net/tls.h"
#include "files/files.h"
#include "reverse/rev.h"
#include "reverse/rconf_int.h"
#include "reverse/rev_int.h"

int rconf_fail(struct build *b, const char *key, const char *fmt, const char *a,
               const char *m)
{
    return wm_err_set(b->err, NULL, 0, 0, key, fmt, a, m);
}

/* ---- bookkeeping of what must be freed ---- */

int rconf_track(void ***arr, size_t *n, void *p)
{
    void **na = realloc(*arr, (*n + 1) * sizeof(*na));

    if (na == NULL) {
        return -1;
    }
    na[(*n)++] = p;
    *arr = na;
    return 0;
}

/* ---- inheritance: location, then server, then [http] ---- */

struct levels {
    const struct wm_conf_hcommon *v[3]; /* location (may be absent), server, http */
    const char *key[3];
    size_t n;
};

static uint64_t eff_u64(const struct levels *lv, size_t off)
{
    for (size_t i = 0; i < lv->n; i++) {
        uint64_t x;
        memcpy(&x, (const char *)lv->v[i] + off, sizeof(x));
        if (x != 0) {
            return x;
        }
    }
    return 0;
}

static const char *eff_str(const struct levels *lv, size_t off)
{
    for (size_t i = 0; i < lv->n; i++) {
        const char *s;
        memcpy(&s, (const char *)lv->v[i] + off, sizeof(s));
        if (s != NULL && s[0] != '\0') {
            return s;
        }
    }
    return NULL;
}

static int eff_tri(const struct levels *lv, size_t off, int dflt)
{
    for (size_t i = 0; i < lv->n; i++) {
        int x;
        memcpy(&x, (const char *)lv->v[i] + off, sizeof(x));
        if (x >= 0) {
            return x;
        }
    }
    return dflt;
}

/* k: "<level>.name" for the level that sets string field off (the key an
 * error about the inherited value names, so it points where it is written). */
static void eff_key(const struct levels *lv, size_t off, const char *name, char *k, size_t cap)
{
    size_t at = 0;

    for (size_t i = 0; i < lv->n; i++) {
        const char *s;
        memcpy(&s, (const char *)lv->v[i] + off, sizeof(s));
        if (s != NULL && s[0] != '\0') {
            at = i;
            break;
        }
    }
    wm_fmt(k, cap, "%s.%s", lv->key[at], name);
}

/* A specific key or its general one (proxy_read_timeout or proxy_timeout):
 * the nearest level that sets either decides, the specific one first. */
static uint64_t eff_u64_or(const struct levels *lv, size_t off, size_t off_general)
{
    for (size_t i = 0; i < lv->n; i++) {
        uint64_t x;
        uint64_t g;
        memcpy(&x, (const char *)lv->v[i] + off, sizeof(x));
        memcpy(&g, (const char *)lv->v[i] + off_general, sizeof(g));
        if (x != 0 || g != 0) {
            return x != 0 ? x : g;
        }
    }
    return 0;
}

#define EFF_U64(lv, f) eff_u64(lv, offsetof(struct wm_conf_hcommon, f))
#define EFF_U64_OR(lv, f, g)                                                              \
    eff_u64_or(lv, offsetof(struct wm_conf_hcommon, f), offsetof(struct wm_conf_hcommon, g))
#define EFF_KEY(lv, f, k) eff_key(lv, offsetof(struct wm_conf_hcommon, f), #f, k, sizeof(k))
#define EFF_STR(lv, f) eff_str(lv, offsetof(struct wm_conf_hcommon, f))
#define EFF_TRI(lv, f, d) eff_tri(lv, offsetof(struct wm_conf_hcommon, f), d)

static int ms_of(uint64_t v, int dflt)
{
    return v == 0 ? dflt : v > 86400000 ? 86400000 : (int)v;
}

/* ---- networks, words ---- */

/* Entries of lists like allow_ip (each entry may hold several, space
 * separated, as wmproxy writes them). */
static int cidrs_of(struct build *b, const char **list, size_t n, struct rv_cidr **out,
                    size_t *nout, const char *key)
{
    size_t cap = 0;

    for (size_t i = 0; i < n; i++) {
        for (const char *p = list[i]; *p != '\0';) {
            cap += strcspn(p, " \t,") > 0;
            p += strcspn(p, " \t,");
            p += strspn(p, " \t,");
        }
    }
    *out = wm_arena_alloc(b->r->arena, (cap ? cap : 1) * sizeof(**out));
    *nout = 0;
    if (*out == NULL) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = list[i];
        p += strspn(p, " \t,");
        while (*p != '\0') {
            char one[80];
            size_t len = strcspn(p, " \t,");
            snprintf(one, sizeof(one), "%.*s", (int)len, p);
            if (len >= sizeof(one) || rv_cidr_parse(one, &(*out)[*nout]) < 0) {
                return rconf_fail(b, key, "expected an IP or a network like 10.0.0.0/8, got \"%s\"%s",
                            one, "");
            }
            (*nout)++;
            p += len;
            p += strspn(p, " \t,");
        }
    }
    return 0;
}

/* Split s at spaces/commas into an arena array. */
static const char **words(struct wm_arena *a, const char *s, size_t *n)
{
    size_t cap = 0;
    const char **v;

    *n = 0;
    for (const char *p = s; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        if (*p != '\0') {
            cap++;
            p += strcspn(p, " \t,");
        }
    }
    v = wm_arena_alloc(a, (cap ? cap : 1) * sizeof(*v));
    for (const char *p = s; v != NULL && p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, " \t,");
        if (len > 0) {
            v[(*n)++] = wm_arena_strndup(a, p, len);
        }
        p += len;
    }
    return v;
}

/* ---- locations ---- */

static int rule_methods(struct build *b, struct rv_location *l, const char *s, const char *key)
{
    size_t n;
    const char **w = words(b->r->arena, s, &n);

    for (size_t i = 0; w != NULL && i < n; i++) {
        int m = rv_method_index(w[i], strlen(w[i]));
        if (m < 0 || m >= 64) {
            return rconf_fail(b, key, "unknown HTTP method \"%s\"%s", w[i], "");
        }
        l->methods |= 1ULL << m;
    }
    return 0;
}

static int rule_schemes(struct build *b, struct rv_location *l, const char *s, const char *key)
{
    size_t n;
    const char **w = words(b->r->arena, s, &n);

    for (size_t i = 0; w != NULL && i < n; i++) {
        if (strcasecmp(w[i], "http") == 0) {
            l->schemes |= 1;
        } else if (strcasecmp(w[i], "https") == 0) {
            l->schemes |= 2;
        } else {
            return rconf_fail(b, key, "expected http or https, got \"%s\"%s", w[i], "");
        }
    }
    return 0;
}

/* "@name": a pattern of match_names, looked up from the location up. */
static const char *named_pattern(const struct levels *lv, const char *name)
{
    for (size_t i = 0; i < lv->n; i++) {
        for (size_t k = 0; k < lv->v[i]->nmatch_names; k++) {
            if (strcmp(lv->v[i]->match_names[k].key, name) == 0) {
                return lv->v[i]->match_names[k].value;
            }
        }
    }
    return NULL;
}

static int rule_compile(struct build *b, struct rv_location *l, const struct wm_conf_rule *cr,
                        const struct levels *lv, const char *key)
{
    char k[WM_ERR_KEY_MAX];
    char msg[200];
    const char *path = cr->path;

    wm_fmt(k, sizeof(k), "%s.rule", key);
    if (path != NULL && path[0] == '@') {
        path = named_pattern(lv, path + 1);
    }
    if (cr->path != NULL && cr->path[0] == '@' && path == NULL) {
        l->path.kind = RV_PAT_NEVER; /* as wmproxy: it never matches */
        l->path.text = wm_arena_strdup(b->r->arena, cr->path);
    } else if (rv_pattern_compile(&l->path, path, b->r->arena, msg, sizeof(msg)) < 0) {
        return rconf_fail(b, k, "%s%s", msg, "");
    }
    if (l->path.re != NULL && rconf_track((void ***)&b->r->pats, &b->r->npats, &l->path) < 0) {
        rv_pattern_free(&l->path);
        return rconf_fail(b, k, "out of memory%s%s", "", "");
    }
    l->hosts = words(b->r->arena, cr->host, &l->nhosts);
    if ((cr->method != NULL && rule_methods(b, l, cr->method, k) < 0) ||
        (cr->scheme != NULL && rule_schemes(b, l, cr->scheme, k) < 0)) {
        return -1;
    }
    return cidrs_of(b, cr->client_ip, cr->nclient_ip, &l->client_ip, &l->nclient_ip, k);
}

/* Header rules of every level, outer first, then X-Forwarded-* unless a
 * rule sets them itself. */
static int location_rules(struct build *b, struct rv_location *l, const struct levels *lv)
{
    static const struct wm_hfwd_rule dflt[] = {
        {true, '=', "X-Forwarded-For", "{proxy_add_x_forwarded_for}"},
        {true, '=', "X-Real-IP", "{client_ip}"},
        {true, '=', "X-Forwarded-Proto", "{scheme}"},
    };
    size_t n = sizeof(dflt) / sizeof(dflt[0]);

    for (size_t i = 0; i < lv->n; i++) {
        n += lv->v[i]->nheaders;
    }
    l->rules = wm_arena_alloc(b->r->arena, n * sizeof(*l->rules));
    if (l->rules == NULL) {
        return rconf_fail(b, "", "out of memory%s%s", "", "");
    }
    for (size_t i = lv->n; i-- > 0;) {
        for (size_t k = 0; k < lv->v[i]->nheaders; k++) {
            const struct wm_conf_header *h = &lv->v[i]->headers[k];
            /* copies: the settings outlive the loaded config */
            l->rules[l->nrules++] = (struct wm_hfwd_rule){
                h->request, h->op, wm_arena_strdup(b->r->arena, h->name),
                h->value != NULL ? wm_arena_strdup(b->r->arena, h->value) : NULL};
        }
    }
    for (size_t d = 0; d < sizeof(dflt) / sizeof(dflt[0]); d++) {
        bool own = false;
        for (size_t k = 0; k < l->nrules; k++) {
            own |= l->rules[k].request && strcasecmp(l->rules[k].name, dflt[d].name) == 0;
        }
        if (!own) {
            l->rules[l->nrules++] = dflt[d];
        }
    }
    return 0;
}

/* proxy_url: "http(s)://NAME-or-host[:port][/path]" ("ws"/"wss" too). */
static int proxy_target(struct build *b, struct rv_location *l, const char *url,
                        const struct levels *lv, const char *key)
{
    char fixed[2048];
    char host[WM_HOST_MAX];
    uint16_t port;
    bool https;
    const char *path;
    size_t plen;

    if (strncasecmp(url, "ws://", 5) == 0 || strncasecmp(url, "wss://", 6) == 0) {
        snprintf(fixed, sizeof(fixed), "http%s", url + 2);
        url = fixed;
    }
    if (wm_http_parse_absolute(url, strlen(url), host, sizeof(host), &port, &https, &path,
                               &plen) < 0) {
        return rconf_fail(b, key, "expected a URL like http://upstream-name or "
                            "https://host:port/path, got \"%s\"%s", url, "");
    }
    l->up_tls = https;
    /* a URI part (even "/") replaces the location's prefix, as in nginx */
    l->up_path = strchr(strstr(url, "://") + 3, '/') != NULL
                     ? wm_arena_strndup(b->r->arena, path, plen)
                     : "";
    l->up = rconf_upstream_find(b, host, lv->v, lv->key, lv->n);
    if (l->up == NULL && b->err->msg[0] != '\0') {
        return -1;
    }
    /* The TLS name: proxy_ssl_name, else the URL's host, else (a named
     * upstream) each server's own host, NULL here (rev.c proxy_route). */
    const char *name = EFF_STR(lv, proxy_ssl_name);
    if (name != NULL || l->up == NULL) {
        l->sni = wm_arena_strdup(b->r->arena, name != NULL ? name : host);
    }
    if (l->up == NULL) {
        l->up = rconf_upstream_direct(b, host, port, key);
    }
    if (l->up == NULL) {
        return b->err->msg[0] ? -1 : rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    return 0;
}

static int upstream_tls(struct build *b, struct rv_location *l, const struct levels *lv,
                        const char *key)
{
    struct wm_tls_opts o = {.ca = EFF_STR(lv, proxy_ssl_trusted_certificate),
                            .cert = EFF_STR(lv, proxy_ssl_certificate),
                            .key = EFF_STR(lv, proxy_ssl_certificate_key)};
    char msg[256];

    if ((o.cert == NULL) != (o.key == NULL)) {
        return rconf_fail(b, key, "proxy_ssl_certificate and proxy_ssl_certificate_key go "
                            "together%s%s", "", "");
    }
    static atomic_uint_fast64_t tls_seq; /* configurations are built on one thread, but
                                          * the check of a reload may run beside a load */
    l->tls = wm_tls_client_ctx(&o, msg, sizeof(msg));
    if (l->tls == NULL) {
        return rconf_fail(b, key, "%s%s", msg, "");
    }
    l->tls_seq = atomic_fetch_add(&tls_seq, 1) + 1;
    if (rconf_track((void ***)&b->r->ctxs, &b->r->nctxs, l->tls) < 0) {
        SSL_CTX_free(l->tls);
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    if (EFF_TRI(lv, proxy_ssl_verify, 1) == 0) {
        SSL_CTX_set_verify(l->tls, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

/* file_server: its settings (files/files.h), with what the location
 * adds (prefix, root, rate_limit, max_read_buf). */
static int location_files(struct build *b, struct rv_location *l, const struct wm_conf_files *c,
                          const struct levels *lv, const char *key)
{
    char prefix[1024] = "";
    char k[WM_ERR_KEY_MAX];
    struct wm_files_where w = {.loc_root = EFF_STR(lv, root), .conf_dir = b->dir,
                               .max_read_buf = EFF_U64(lv, max_read_buf)};
    struct wm_files *fs;

    if (l->path.kind == RV_PAT_PREFIX || l->path.kind == RV_PAT_GLOB) {
        const char *star = strchr(l->path.text, '*');
        size_t n = star != NULL ? (size_t)(star - l->path.text) : strlen(l->path.text);
        while (star != NULL && n > 0 && l->path.text[n - 1] != '/') {
            n--;
        }
        wm_fmt(prefix, sizeof(prefix), "%.*s", (int)n, l->path.text);
    }
    w.loc_prefix = prefix;
    for (size_t i = 0; i < lv->n && w.rate.amount == 0; i++) {
        w.rate = lv->v[i]->rate_limit;
        if (w.rate.amount > 0 && w.rate.requests) {
            /* named where it is written, not at the file_server using it */
            wm_fmt(k, sizeof(k), "%s.rate_limit", lv->key[i]);
            return rconf_fail(b, k, "expected bytes per time, like \"4m/s\" (requests are "
                                    "limit_req's)%s%s", "", "");
        }
    }
    wm_fmt(k, sizeof(k), "%s.file_server", key);
    fs = wm_files_new(c, &w, k, b->err);
    if (fs == NULL) {
        return -1;
    }
    if (rconf_track((void ***)&b->r->fservers, &b->r->nfservers, fs) < 0) {
        wm_files_free(fs);
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    l->handler = RV_H_FILES;
    l->files = fs;
    return 0;
}

static int location_handler(struct build *b, struct rv_location *l,
                            const struct wm_conf_files *files, const char *static_body,
                            const struct levels *lv, const char *key)
{
    char k[WM_ERR_KEY_MAX];
    const char *url = EFF_STR(lv, proxy_url);

    if (files != NULL) {
        /* response header rules apply to its answers too */
        return location_files(b, l, files, lv, key) < 0 ? -1 : location_rules(b, l, lv);
    }
    if (static_body != NULL) {
        l->handler = RV_H_STATIC;
        l->static_body = wm_arena_strdup(b->r->arena, static_body);
        return 0;
    }
    if (url == NULL) {
        return rconf_fail(b, key, "this location has nothing to do: give it proxy_url, "
                            "static_response or file_server%s%s", "", "");
    }
    l->handler = RV_H_PROXY;
    EFF_KEY(lv, proxy_url, k);
    if (proxy_target(b, l, url, lv, k) < 0 || (l->up_tls && upstream_tls(b, l, lv, k) < 0)) {
        return -1;
    }
    return location_rules(b, l, lv);
}

static int location_compile(struct build *b, struct rv_location *l,
                            const struct wm_conf_location *cl, const char *static_body,
                            const struct levels *lv, const char *key)
{
    char k[WM_ERR_KEY_MAX];

    l->is_ws = cl != NULL && cl->is_ws;
    l->set_host = EFF_TRI(lv, proxy_set_host, 0) == 1;
    l->connect_ms = ms_of(EFF_U64(lv, proxy_connect_timeout_ms), RV_CONNECT_MS);
    /* wmproxy's client_timeout / proxy_timeout: both directions of that side
     * where the read or write one is not set */
    l->read_ms = ms_of(EFF_U64_OR(lv, proxy_read_timeout_ms, proxy_timeout_ms), RV_READ_MS);
    l->up_write_ms = ms_of(EFF_U64_OR(lv, proxy_write_timeout_ms, proxy_timeout_ms),
                           RV_UP_WRITE_MS);
    l->body_ms = ms_of(EFF_U64_OR(lv, client_read_timeout_ms, client_timeout_ms), RV_HEAD_MS);
    l->send_ms = ms_of(EFF_U64_OR(lv, client_write_timeout_ms, client_timeout_ms), RV_SEND_MS);
    l->max_body = EFF_U64(lv, client_max_body_size);
    l->next_up = (unsigned)EFF_TRI(lv, proxy_next_upstream, RV_NEXT_UP);
    l->next_tries = (int)EFF_U64(lv, proxy_next_upstream_tries);
    l->next_tries = l->next_tries > 0 ? l->next_tries : RV_NEXT_TRIES;
    l->next_ms = EFF_U64(lv, proxy_next_upstream_timeout_ms);
    for (size_t i = 0; i < lv->n; i++) {
        if (l->nallow_ip == 0 && lv->v[i]->nallow_ip > 0) {
            wm_fmt(k, sizeof(k), "%s.allow_ip", lv->key[i]);
            if (cidrs_of(b, lv->v[i]->allow_ip, lv->v[i]->nallow_ip, &l->allow_ip,
                         &l->nallow_ip, k) < 0) {
                return -1;
            }
        }
        if (l->ndeny_ip == 0 && lv->v[i]->ndeny_ip > 0) {
            wm_fmt(k, sizeof(k), "%s.deny_ip", lv->key[i]);
            if (cidrs_of(b, lv->v[i]->deny_ip, lv->v[i]->ndeny_ip, &l->deny_ip, &l->ndeny_ip,
                         k) < 0) {
                return -1;
            }
        }
    }
    if (cl != NULL && rule_compile(b, l, &cl->rule, lv, key) < 0) {
        return -1;
    }
    if (rconf_logs(b, l, lv->v, lv->key, lv->n) < 0) {
        return -1;
    }
    if (EFF_STR(lv, limit_req) != NULL) {
        EFF_KEY(lv, limit_req, k);
        if (rconf_limit_req(b, l, EFF_STR(lv, limit_req),
                            (int64_t)EFF_U64(lv, limit_req_status), k) < 0) {
            return -1;
        }
    }
    if (location_handler(b, l, cl != NULL ? cl->file_server : NULL,
                         cl != NULL ? cl->static_response : static_body, lv, key) < 0) {
        return -1;
    }
    if (cl != NULL && cl->try_paths != NULL) {
        char msg[256];
        wm_fmt(k, sizeof(k), "%s.try_paths", key);
        if (rv_try_compile(l, cl->try_paths, b->r->arena, &b->r->pats, &b->r->npats, msg,
                           sizeof(msg)) < 0) {
            return rconf_fail(b, k, "%s%s", msg, "");
        }
    }
    return 0;
}

/* ---- servers and listeners ---- */

static int vhost_tls(struct build *b, struct rv_vhost *v, const struct wm_conf_hserver *cs,
                     const char *key)
{
    struct wm_tls_opts o = {.cert = cs->cert, .key = cs->key};
    char msg[768]; /* two paths and a hint */
    char k[WM_ERR_KEY_MAX];

    if (cs->cert == NULL) {
        return 0;
    }
    v->tls = wm_tls_server_ctx(&o, msg, sizeof(msg));
    if (v->tls == NULL) {
        wm_fmt(k, sizeof(k), "%s.cert", key);
        return rconf_fail(b, k, "%s%s", msg, "");
    }
    if (rconf_track((void ***)&b->r->ctxs, &b->r->nctxs, v->tls) < 0) {
        SSL_CTX_free(v->tls);
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    if (rv_tls_front_setup(v->tls, v) < 0) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    return 0;
}

static int vhost_compile(struct build *b, struct rv_vhost *v, const struct wm_conf_hserver *cs,
                         size_t idx)
{
    char key[WM_ERR_KEY_MAX];
    char names[2 * WM_HOST_MAX + 8];
    struct levels lv = {.v = {&cs->c, &b->h->c}, .key = {key, "http"}, .n = 2};
    size_t nl = cs->nlocations > 0 ? cs->nlocations : 1;

    wm_fmt(key, sizeof(key), "http.server[%zu]", idx);
    v->index = (int)idx;
    snprintf(names, sizeof(names), "%s %s", cs->up_name ? cs->up_name : "",
             cs->c.domain ? cs->c.domain : "");
    v->names = words(b->r->arena, names, &v->nnames);
    v->head_ms = ms_of(EFF_U64_OR(&lv, client_read_timeout_ms, client_timeout_ms), RV_HEAD_MS);
    v->ka_ms = ms_of(EFF_U64(&lv, client_ka_timeout_ms), RV_KA_MS);
    v->http2 = cs->http2 != 0;
    v->locs = wm_arena_alloc(b->r->arena, nl * sizeof(*v->locs));
    if (v->names == NULL || v->locs == NULL) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    if (vhost_tls(b, v, cs, key) < 0) {
        return -1;
    }
    if (cs->nlocations == 0) {
        /* no location: the server's own proxy_url (or static_response) serves all */
        v->nlocs = 1;
        return location_compile(b, &v->locs[0], NULL, cs->static_response, &lv, key);
    }
    for (size_t i = 0; i < cs->nlocations; i++) {
        char lkey[WM_ERR_KEY_MAX];
        struct levels ll = {.v = {&cs->locations[i].c, &cs->c, &b->h->c},
                            .key = {lkey, key, "http"}, .n = 3};
        wm_fmt(lkey, sizeof(lkey), "%s.location[%zu]", key, i);
        v->locs[i].index = (int)i;
        if (location_compile(b, &v->locs[i], &cs->locations[i], NULL, &ll, lkey) < 0) {
            return -1;
        }
        v->nlocs++;
    }
    return 0;
}

static struct rv_listen *listen_find(struct wm_rev *r, const char *addr)
{
    for (size_t i = 0; i < r->nlistens; i++) {
        if (strcmp(r->listens[i].addr, addr) == 0) {
            return &r->listens[i];
        }
    }
    return NULL;
}

static int listen_add(struct build *b, struct rv_vhost *v, const char *addr, bool tls,
                      const char *key)
{
    struct rv_listen *l = listen_find(b->r, addr);
    struct rv_vhost **nh;

    if (l == NULL) {
        struct rv_listen *nl = realloc(b->r->listens, (b->r->nlistens + 1) * sizeof(*nl));
        if (nl == NULL) {
            return rconf_fail(b, key, "out of memory%s%s", "", "");
        }
        b->r->listens = nl;
        l = &nl[b->r->nlistens++];
        memset(l, 0, sizeof(*l));
        snprintf(l->addr, sizeof(l->addr), "%s", addr);
        l->tls = tls;
    } else if (l->tls != tls) {
        return rconf_fail(b, key, "%s is both a plain (bind_addr) and a TLS (bind_ssl) address%s",
                    addr, "");
    }
    for (size_t i = 0; i < l->nhosts; i++) {
        if (l->hosts[i] == v) {
            return 0; /* listed twice by one server */
        }
    }
    nh = realloc(l->hosts, (l->nhosts + 1) * sizeof(*nh));
    if (nh == NULL) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    nh[l->nhosts++] = v;
    l->hosts = nh;
    return 0;
}

static int listens_of(struct build *b, struct rv_vhost *v, const char *list, bool tls,
                      const char *key)
{
    char(*addrs)[WM_ADDR_STR_MAX];
    size_t n = 0;
    struct wm_err e;

    if (list == NULL || list[0] == '\0') {
        return 0;
    }
    addrs = calloc(WM_ADDR_LIST_MAX, sizeof(*addrs));
    if (addrs == NULL) {
        return rconf_fail(b, key, "out of memory%s%s", "", "");
    }
    if (wm_addr_list_expand(list, addrs, &n, WM_ADDR_LIST_MAX, &e) < 0) {
        free(addrs);
        return rconf_fail(b, key, "%s%s", e.msg, "");
    }
    for (size_t i = 0; i < n; i++) {
        if (listen_add(b, v, addrs[i], tls, key) < 0) {
            free(addrs);
            return -1;
        }
    }
    free(addrs);
    return 0;
}

/* ---- the settings ---- */

static void rev_free(struct wm_rev *r)
{
    for (size_t i = 0; i < r->nups; i++) {
        for (size_t k = 0; k < r->ups[i]->nservers; k++) {
            rv_health_check_put(&r->ups[i]->servers[k]);
            rv_health_put(r->ups[i]->servers[k].h);
        }
    }
    for (size_t i = 0; i < r->nzones; i++) {
        rv_zone_put(r->zones[i]);
    }
    for (size_t i = 0; i < r->nfiles; i++) {
        rv_logfile_put(r->files[i]);
    }
    free(r->files);
    free(r->zones);
    for (size_t i = 0; i < r->nfservers; i++) {
        wm_files_free(r->fservers[i]);
    }
    free(r->fservers);
    for (size_t i = 0; i < r->npats; i++) {
        rv_pattern_free(r->pats[i]);
    }
    for (size_t i = 0; i < r->nctxs; i++) {
        SSL_CTX_free(r->ctxs[i]);
    }
    for (size_t i = 0; i < r->nlistens; i++) {
        free(r->listens[i].hosts);
    }
    free(r->listens);
    free(r->ups);
    free(r->pats);
    free(r->ctxs);
    wm_arena_free(r->arena);
    free(r);
}

struct wm_rev *wm_rev_ref(struct wm_rev *r)
{
    atomic_fetch_add(&r->refs, 1);
    return r;
}

void wm_rev_unref(struct wm_rev *r)
{
    if (r != NULL && atomic_fetch_sub(&r->refs, 1) == 1) {
        rev_free(r);
    }
}

static int compile_all(struct build *b)
{
    const struct wm_conf_http *h = b->h;

    if (rconf_zones(b) < 0) {
        return -1;
    }
    b->r->vhosts = wm_arena_alloc(b->r->arena, (h->nservers ? h->nservers : 1) *
                                                   sizeof(*b->r->vhosts));
    if (b->r->vhosts == NULL) {
        return rconf_fail(b, "http", "out of memory%s%s", "", "");
    }
    for (size_t i = 0; i < h->nservers; i++) {
        char key[WM_ERR_KEY_MAX];
        struct rv_vhost *v = &b->r->vhosts[i];
        if (vhost_compile(b, v, &h->servers[i], i) < 0) {
            return -1;
        }
        b->r->nvhosts++;
        wm_fmt(key, sizeof(key), "http.server[%zu].bind_addr", i);
        if (listens_of(b, v, h->servers[i].bind_addr, false, key) < 0) {
            return -1;
        }
        wm_fmt(key, sizeof(key), "http.server[%zu].bind_ssl", i);
        if (listens_of(b, v, h->servers[i].bind_ssl, true, key) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < b->r->nlistens; i++) {
        if (rv_listen_index(&b->r->listens[i], b->r->arena) < 0) {
            return rconf_fail(b, "http", "out of memory%s%s", "", "");
        }
    }
    return 0;
}

int wm_rev_prepare(const struct wm_conf_http *h, const char *conf_dir, struct wm_rev **out,
                   struct wm_err *err)
{
    struct build b = {.err = err, .h = h, .dir = conf_dir};
    int rc;

    *out = NULL;
    wm_err_clear(err);
    b.r = calloc(1, sizeof(*b.r));
    if (b.r == NULL || (b.r->arena = wm_arena_new()) == NULL) {
        free(b.r);
        return wm_err_set(err, NULL, 0, 0, "http", "out of memory");
    }
    atomic_init(&b.r->refs, 1);
    rc = compile_all(&b);
    free(b.seen);
    free(b.made);
    if (rc < 0) {
        rev_free(b.r);
        return -1;
    }
    *out = b.r;
    return 0;
}

size_t wm_rev_nlisten(const struct wm_rev *r)
{
    return r->nlistens;
}

const char *wm_rev_listen_addr(const struct wm_rev *r, size_t i, bool *tls)
{
    *tls = r->listens[i].tls;
    return r->listens[i].addr;
}
