/*
 * control/dashboard.h - the dashboard page served at GET / of the control
 * address: src/control/dashboard.html, built into the binary as is (one
 * self-contained page, CSS and JavaScript inline, nothing fetched from
 * elsewhere). It polls /status and /metrics.
 */
#ifndef WM_CONTROL_DASHBOARD_H
#define WM_CONTROL_DASHBOARD_H

#include <stddef.h>

extern const char wm_dashboard_html[];
#define wm_dashboard_html_len (wm_dashboard_size())
size_t wm_dashboard_size(void);

#endif
