/*
 * control/expo.h - the collectors every GET /metrics has (core/metrics.h):
 * process_* (CPU, memory, descriptors, start time), wmproxy_build_info,
 * per-listener connection and byte counters, authentication failures.
 */
#ifndef WM_CONTROL_EXPO_H
#define WM_CONTROL_EXPO_H

/* Register them (once, at start, after wm_metrics_init). 0 or -1 (OOM). */
int wm_expo_register(void);

#endif
