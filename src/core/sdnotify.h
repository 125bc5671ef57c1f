/*
 * core/sdnotify.h - the systemd notification protocol (sd_notify(3)),
 * without libsystemd: one datagram of "KEY=VALUE" lines to the unix socket
 * named by $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 *
 * wmproxy sends READY=1 once its listeners are open, RELOADING=1 with
 * MONOTONIC_USEC before a reload and READY=1 after it (done or refused),
 * STOPPING=1 when a graceful stop begins, each with a STATUS= line.
 * Without $NOTIFY_SOCKET every call does nothing.
 */
#ifndef WM_CORE_SDNOTIFY_H
#define WM_CORE_SDNOTIFY_H

/* Send one message (the lines, formatted). Returns 1 sent, 0 when there is
 * no $NOTIFY_SOCKET, -1 on error (errno set; never fatal for the caller). */
int wm_sd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=. */
unsigned long long wm_sd_monotonic_usec(void);

#endif
