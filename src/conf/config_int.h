/*
 * conf/config_int.h - pieces of the config loader shared between its files
 * (internal to src/conf).
 */
#ifndef WM_CONF_CONFIG_INT_H
#define WM_CONF_CONFIG_INT_H

#include "conf/schema.h"

struct wm_cval;

/* [http] (config_http.c) and [stream] (config_stream.c). */
extern const struct wm_cschema wm_conf_http_schema;
extern const struct wm_cschema wm_conf_upstream_schema; /* [[http.upstream]], [[stream.upstream]] */
extern const struct wm_cschema wm_conf_stream_schema;
extern const struct wm_cschema wm_conf_reverse_schema; /* wmproxy 0.1 [reverse] */

/* Checks across sections: names that must refer to something defined. */
void wm_conf_cross_check(struct wm_cctx *ctx, const struct wm_cval *root);

typedef void (*wm_conf_pair_fn)(struct wm_cctx *ctx, const struct wm_cval *t, const char *path,
                                const char *ckey, const char *kkey, const char *cert,
                                const char *key);

/* Open and match the cert/key pairs of [[http.server]] entries. */
void wm_conf_http_check_files(struct wm_cctx *ctx, const struct wm_cval *root,
                              wm_conf_pair_fn check_pair);

#endif
