/*
 * reverse/rconf_int.h - the state of one settings build, shared by
 * rconf.c (servers, locations, listeners) and rconf_up.c (upstreams).
 */
#ifndef WM_REVERSE_RCONF_INT_H
#define WM_REVERSE_RCONF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "conf/config_http.h"
#include "reverse/rev_int.h"

struct wm_err;

/* Timeouts when no level sets them (nginx's where it has one). */
#define RV_CONNECT_MS 10000
#define RV_READ_MS 60000
#define RV_HEAD_MS 60000
#define RV_KA_MS 75000
#define RV_SEND_MS 60000        /* nginx's send_timeout */
#define RV_UP_WRITE_MS 60000    /* nginx's proxy_send_timeout */
#define RV_KEEPALIVE 32
#define RV_KEEPALIVE_MS 60000
#define RV_WEIGHT 100
#define RV_FAIL_TIMEOUT_MS 30000
#define RV_FALL_TIMES 2
#define RV_NEXT_UP (WM_NEXT_ERROR | WM_NEXT_TIMEOUT) /* nginx's proxy_next_upstream */
#define RV_NEXT_TRIES 2         /* a failed request goes to one more server (nginx: any) */

/* The build in progress (errors: rconf_fail(), which fills err and
 * returns -1; its format takes two strings). */
struct build {
    struct wm_rev *r;
    struct wm_err *err;
    const struct wm_conf_http *h;
    const char *dir;
    /* upstreams compiled so far, by their config entry */
    const struct wm_conf_upstream **seen;
    struct rv_upstream **made;
    size_t nseen;
};

int rconf_fail(struct build *b, const char *key, const char *fmt, const char *a,
               const char *m);

/* Append p to the array *arr of *n pointers. 0 or -1 (OOM). */
int rconf_track(void ***arr, size_t *n, void *p);

/* Upstream `name` as seen from a location (levels: location, server,
 * [http]); compiled once per config entry. NULL when no level defines it
 * (b->err untouched) or on failure (b->err set). */
struct rv_upstream *rconf_upstream_find(struct build *b, const char *name,
                                        const struct wm_conf_hcommon *const *levels,
                                        const char *const *lkeys, size_t nlevels);
/* One server reached directly by a URL. NULL on failure (b->err set). */
struct rv_upstream *rconf_upstream_direct(struct build *b, const char *host, uint16_t port,
                                          const char *key);

/* rconf_limit.c: the [http.limit_req_zone] zones, then one location's
 * limit_req ("zone=NAME burst=N", wmproxy's "brust" too). 0 or -1. */
int rconf_zones(struct build *b);
int rconf_limit_req(struct build *b, struct rv_location *l, const char *spec, int64_t status,
                    const char *key);

/* rconf_log.c: access_log / error_log of a location, from the effective
 * keys (levels: location, server, [http]). 0 or -1. */
int rconf_logs(struct build *b, struct rv_location *l, const struct wm_conf_hcommon *const *lv,
               const char *const *lkeys, size_t n);

#endif
