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
    uint64_t shared_holds; /* holds learned from the cluster (wm_authfail_learn) */
};

/* Sharing the counts with other nodes (the cluster installs it; NULL: this
 * node alone). Called after the table was updated, without its lock, on
 * whichever thread authenticated; must not block (post the work). ip is
 * IPv6, IPv4 as ::ffff:a.b.c.d. */
struct wm_authfail_shared {
    /* A failure from ip; held: it just put ip on hold here. */
    void (*failed)(const unsigned char ip[16], bool held);
    /* A success from ip, which had failures here: forget them. */
    void (*forgive)(const unsigned char ip[16]);
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

/* Install (or remove with NULL) the sharing hooks; any thread. */
void wm_authfail_set_shared(const struct wm_authfail_shared *h);

/* What the other nodes know about ip: `count` failures within the window
 * (the local count becomes at least that, so the delays grow as on one
 * node), and with hold_ms > 0 a hold for that long (logged when it begins
 * here). Any thread. */
void wm_authfail_learn(const unsigned char ip[16], unsigned count, int hold_ms);

/* Forget everything (tests). */
void wm_authfail_reset(void);

#endif
