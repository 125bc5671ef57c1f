/*
 * app/status.c - `wmproxy status`: a running instance's GET /status as a
 * summary for terminals (the JSON is read with the YAML reader, JSON being
 * YAML's flow subset).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "conf/config.h"
#include "conf/cval.h"
#include "conf/yaml.h"
#include "control/client.h"
#include "core/err.h"

#define STATUS_BODY_MAX (1u << 20)

static const char *str(const struct wm_cval *t, const char *key)
{
    const struct wm_cval *v = t != NULL ? wm_cval_get(t, key) : NULL;

    if (v == NULL || wm_cval_type(v) == WM_CVAL_NULL) {
        return "-";
    }
    return wm_cval_type(v) == WM_CVAL_STRING ? wm_cval_str(v, NULL) : wm_cval_text(v);
}

static long long num(const struct wm_cval *t, const char *key)
{
    const struct wm_cval *v = t != NULL ? wm_cval_get(t, key) : NULL;

    return v != NULL && wm_cval_type(v) == WM_CVAL_INT ? (long long)wm_cval_int(v) : 0;
}

static const char *human(unsigned long long n, char *buf, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, unit[u]);
    return buf;
}

static void print_head(const struct wm_cval *st, const char *target)
{
    long long up = num(st, "uptime_s");
    const struct wm_cval *r = wm_cval_get(st, "reload");

    printf("wmproxy %s at %s: pid %lld, up %lldd %02lldh %02lldm, %lld worker(s), %lld "
           "connection(s) open",
           str(st, "version"), target, num(st, "pid"), up / 86400, up % 86400 / 3600,
           up % 3600 / 60, num(st, "workers"), num(st, "connections"));
    if (num(st, "max_connections") > 0) {
        printf(" (%lld of clients, max_connections %lld)", num(st, "client_connections"),
               num(st, "max_connections"));
    }
    printf("\n");
    printf("config: %s\n", str(st, "config"));
    if (r != NULL && strcmp(str(r, "last_ok"), "-") != 0) {
        time_t t = (time_t)num(r, "last_time");
        char when[64];
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", localtime(&t));
        if (n >= 5 && n + 1 < sizeof(when)) { /* +0100 -> +01:00, as the log lines */
            memmove(when + n - 1, when + n - 2, 3);
            when[n - 2] = ':';
        }
        printf("last reload: %s at %s: %s (%lld applied, %lld refused)\n",
               strcmp(str(r, "last_ok"), "true") == 0 ? "applied" : "REFUSED", when,
               str(r, "last_message"), num(r, "ok"), num(r, "failed"));
    }
}

static void print_listeners(const struct wm_cval *st)
{
    const struct wm_cval *ls = wm_cval_get(st, "listeners");
    char a[32], b[32];

    printf("\n%-28s %-10s %8s %10s %11s %11s\n", "LISTENER", "KIND", "OPEN", "ACCEPTED",
           "IN", "OUT");
    for (size_t i = 0; ls != NULL && i < wm_cval_count(ls); i++) {
        const struct wm_cval *l = wm_cval_at(ls, i);
        printf("%-28s %-10s %8lld %10lld %11s %11s\n", str(l, "addr"), str(l, "kind"),
               num(l, "open"), num(l, "accepted"),
               human((unsigned long long)num(l, "bytes_in"), a, sizeof(a)),
               human((unsigned long long)num(l, "bytes_out"), b, sizeof(b)));
    }
}

static void print_tunnel(const struct wm_cval *st)
{
    const struct wm_cval *t = wm_cval_get(st, "tunnel");
    const struct wm_cval *p = t != NULL ? wm_cval_get(t, "parent") : NULL;
    const struct wm_cval *cl = t != NULL ? wm_cval_get(t, "clients") : NULL;

    if (t == NULL) {
        return;
    }
    printf("\ntunnel:\n");
    if (p != NULL) {
        printf("  parent %s: %s%s%s, %lld stream(s)\n", str(p, "addr"),
               strcmp(str(p, "connected"), "true") == 0 ? "connected" : "NOT CONNECTED",
               strcmp(str(p, "transport"), "") != 0 ? " over " : "", str(p, "transport"),
               num(p, "streams"));
    }
    if (cl != NULL) {
        printf("  %zu client(s) attached\n", wm_cval_count(cl));
    }
    for (size_t i = 0; cl != NULL && i < wm_cval_count(cl); i++) {
        const struct wm_cval *c = wm_cval_at(cl, i);
        const struct wm_cval *ms = wm_cval_get(c, "mappings");
        printf("  %s from %s (%s), %lld stream(s)\n", str(c, "name"), str(c, "addr"),
               str(c, "transport"), num(c, "streams"));
        for (size_t j = 0; ms != NULL && j < wm_cval_count(ms); j++) {
            const struct wm_cval *m = wm_cval_at(ms, j);
            printf("    %s -> %s\n", str(m, "name"), str(m, "route"));
        }
    }
}

static void print_errors(const struct wm_cval *st)
{
    const struct wm_cval *e = wm_cval_get(st, "recent_errors");

    if (e == NULL || wm_cval_count(e) == 0) {
        return;
    }
    printf("\nrecent warnings and errors:\n");
    for (size_t i = 0; i < wm_cval_count(e); i++) {
        printf("  %s\n", wm_cval_str(wm_cval_at(e, i), NULL));
    }
}

int wm_app_status(const char *config, const char *url, const char *token)
{
    char target[256];
    char tok[512] = "";
    char why[256];
    int status = 0;
    struct wm_err err;
    char *body = malloc(STATUS_BODY_MAX);

    if (body == NULL) {
        return 1;
    }
    snprintf(target, sizeof(target), "%s", url != NULL ? url : WM_APP_DEFAULT_CONTROL);
    if (config != NULL && url == NULL &&
        wm_conf_peek_control(config, target, sizeof(target), tok, sizeof(tok), why,
                             sizeof(why)) < 0) {
        fprintf(stderr, "wmproxy: %s: %s\n", config, why);
        free(body);
        return 1;
    }
    if (token != NULL) {
        snprintf(tok, sizeof(tok), "%s", token);
    }
    if (wm_control_call(target, "GET", "/status", tok, 10000, &status, body, STATUS_BODY_MAX) <
        0) {
        fprintf(stderr, "wmproxy: status: %s\n", body);
        free(body);
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "wmproxy: status: HTTP %d: %.2000s\n", status, body);
        free(body);
        return 1;
    }
    wm_err_clear(&err);
    struct wm_cval *st = wm_yaml_parse(body, strlen(body), "/status", &err);
    if (st == NULL) {
        fprintf(stderr, "wmproxy: status: unreadable answer: %s\n", err.msg);
        free(body);
        return 1;
    }
    print_head(st, target);
    print_listeners(st);
    print_tunnel(st);
    print_errors(st);
    wm_cval_free(st);
    free(body);
    return 0;
}
