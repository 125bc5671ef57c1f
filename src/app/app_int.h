/*
 * app/app_int.h - internal to src/app.
 */
#ifndef WM_APP_APP_INT_H
#define WM_APP_APP_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "net/lset.h"

struct wm_app_opts;
struct wm_conf;
struct wm_conf_proxy;
struct wm_err;
struct wm_tunnel_settings;
struct wm_cluster_settings;

/* The listeners and services a configuration asks for. specs[i].svc is a
 * reference owned by this struct. */
struct wm_app_services {
    struct wm_lspec *specs;
    size_t n;
    char (*addrs)[64]; /* storage for specs[i].addr */
    struct wm_tunnel_settings *tunnel; /* to install after the listeners (owned) */
    struct wm_cluster_settings *cluster; /* [cluster], installed after the tunnel (owned) */
};

/* Build out (zeroed first) from a loaded file or from the command line.
 * Returns 0, or -1 with err filled and out empty. */
int wm_app_services_from_conf(const struct wm_conf *c, struct wm_app_services *out,
                              struct wm_err *err);
int wm_app_services_from_flags(const struct wm_app_opts *o, struct wm_app_services *out,
                               struct wm_err *err);
void wm_app_services_free(struct wm_app_services *s);

/* Does [proxy] p ask for a tunnel role? */
bool wm_app_tunnel_wanted(const struct wm_conf_proxy *p);
/* Build and drop the tunnel's settings of p (`wmproxy check`: what only
 * building checks, as certificates and mapping sizes). 0, or -1 with err
 * (its key in the [proxy] section). */
int wm_app_tunnel_check(const struct wm_conf_proxy *p, struct wm_err *err);
/* `check` of [cluster]: what only building checks (the node certificates). */
int wm_app_cluster_check(const struct wm_conf *c, struct wm_err *err);
/* Build and drop the reverse proxy's settings of c (`wmproxy check`). */
int wm_app_http_check(const struct wm_conf *c, struct wm_err *err);

/* Serve in this process; report readiness on notify (-1: stderr only). */
int wm_app_serve(struct wm_app_opts *o, int notify);

/* Write this process's id to path (created 0644 or truncated). 0, or -1
 * with errno (EINVAL: path is there and not a regular file, a FIFO say,
 * which would have blocked the start). */
int wm_app_write_pidfile(const char *path);

/* Tell the parent waiting on fd (or stderr when fd < 0) how the start went;
 * closes fd. */
void wm_app_report(int fd, bool ok, const char *msg);

#endif
