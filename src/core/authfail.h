/*
 * core/authfail.h - failed authentications per client IP, process-wide:
 * what fail2ban does for ssh, built in. Every front that checks credentials
 * (forward proxy, tunnel carrier, control token) asks before it answers:
 *
 *     int ms = wm_authfail_check(peer);   // -1: refused for a while
 *     ...check credentials...
 *     ms = wm_authfail_record(peer, ok);  // delay the failure answer by ms
 *
 * Limits are in core/limits.h (WM_AUTHFAIL_*). Thread-safe (one mutex; only
 * taken on authentication, never on the data path). A peer that is not
 * IPv4/IPv6 (a tunnel stream) is never tracked.
 */
#ifndef WM_CORE_AUTHFAIL_H
#define WM_CORE_AUTHFAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct wm_authfail_stats {
    uint64_t failures; /* failed authentications seen */
    uint64_t bans;     /* addresses put on hold */
    uint64_t refused;  /* attempts refused while on hold */
};

/* Before checking credentials: 0 to go ahead, or -1 when peer is on hold
 * (answer as a failed authentication at once, and log nothing more: the
 * hold was logged when it began). */
int wm_authfail_check(const struct sockaddr *peer);

/* After checking: a success forgets the address; a failure counts and
 * returns how long (ms) to wait before answering it (0 for the first
 * few). Starting a hold is logged (WARN, once). */
int wm_authfail_record(const struct sockaddr *peer, bool ok);

void wm_authfail_get_stats(struct wm_authfail_stats *out);

/* Forget everything (tests). */
void wm_authfail_reset(void);

#endif
