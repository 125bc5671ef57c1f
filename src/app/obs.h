/*
 * app/obs.h - GET /metrics for the serving process: core/metrics.h set up
 * with every module's collector (process, listeners, authentication,
 * reverse proxy upstreams, tunnel), reload counters and the config hash.
 */
#ifndef WM_APP_OBS_H
#define WM_APP_OBS_H

#include <stdbool.h>

/* Before the workers start. path: the config file (text: its text when it
 * came from flags; both may be NULL). 0 or -1 (OOM). */
int wm_app_obs_init(int workers, const char *path, const char *text);
/* After each reload attempt. */
void wm_app_obs_reload(bool ok, const char *path, const char *text);
/* After the workers are joined. */
void wm_app_obs_free(void);

#endif
