/*
 * core/authfail.c - failed authentications per client IP, an IPv6 client
 * per /64 (see authfail.h).
 * A small open table: WM_AUTHFAIL_TABLE slots searched linearly under one
 * mutex (authentication is rare next to data); when full, the slot seen
 * longest ago is reused, one on hold only when all are.
 */
#include "core/authfail.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"

struct slot {
    unsigned char ip[16]; /* IPv4 as ::ffff:a.b.c.d */
    bool used;
    unsigned fails;       /* within the window that began at since_ms */
    uint64_t since_ms;
    uint64_t seen_ms;
    uint64_t hold_until_ms;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot table[WM_AUTHFAIL_TABLE];
static struct wm_authfail_stats stats;
static const struct wm_authfail_shared *shared;

/* The prefix of an IPv4 address as IPv6 (::ffff:a.b.c.d). */
static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The key of a peer: its IPv4 address, or its IPv6 /64. */
static bool ip_of(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(out, mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
        if (memcmp(out, mapped, 12) != 0) {
            /* One subscriber gets a /64 and picks its low 64 bits freely:
             * counted per address, its failures would never add up. */
            memset(out + 8, 0, 8);
        }
        return true;
    }
    return false;
}

/* "a.b.c.d", or "2001:db8::/64" for an IPv6 network (ip_of). */
static void ip_text(const unsigned char ip[16], char *out, size_t size)
{
    if (memcmp(ip, mapped, 12) == 0) {
        if (inet_ntop(AF_INET, ip + 12, out, (socklen_t)size) == NULL) {
            snprintf(out, size, "?");
        }
        return;
    }
    if (inet_ntop(AF_INET6, ip, out, (socklen_t)size) == NULL) {
        snprintf(out, size, "?");
        return;
    }
    size_t n = strlen(out);
    snprintf(out + n, size - n, "/64");
}

/* Is s a better slot to reuse than v (NULL: none yet)? A free slot first,
 * then the one seen longest ago among those not on hold; a hold is given up
 * (the one ending first) only when every slot holds one, so failures from
 * many other addresses cannot lift it. */
static bool better_victim(const struct slot *s, const struct slot *v, uint64_t now)
{
    if (v == NULL || !s->used) {
        return v == NULL || v->used;
    }
    if (!v->used) {
        return false;
    }
    bool sh = s->hold_until_ms > now;
    bool vh = v->hold_until_ms > now;
    if (sh != vh) {
        return vh;
    }
    return sh ? s->hold_until_ms < v->hold_until_ms : s->seen_ms < v->seen_ms;
}

/* The slot of ip; with create, a new (or a reused, see better_victim) one.
 * Under lock. */
static struct slot *find(const unsigned char ip[16], bool create, uint64_t now)
{
    struct slot *victim = NULL;

    for (size_t i = 0; i < WM_AUTHFAIL_TABLE; i++) {
        struct slot *s = &table[i];
        if (s->used && memcmp(s->ip, ip, 16) == 0) {
            return s;
        }
        if (better_victim(s, victim, now)) {
            victim = s;
        }
    }
    if (!create) {
        return NULL;
    }
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->ip, ip, 16);
    victim->used = true;
    return victim;
}

int wm_authfail_check(const struct sockaddr *peer)
{
    unsigned char ip[16];
    int r = 0;

    if (!ip_of(peer, ip)) {
        return 0;
    }
    pthread_mutex_lock(&lock);
    struct slot *s = find(ip, false, wm_now_ms());
    if (s != NULL && s->hold_until_ms > wm_now_ms()) {
        stats.refused++;
        r = -1;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int wm_authfail_record(const struct sockaddr *peer, bool ok)
{
    unsigned char ip[16];
    uint64_t now = wm_now_ms();
    int delay = 0;
    bool hold = false;

    if (!ip_of(peer, ip)) {
        return 0;
    }
    pthread_mutex_lock(&lock);
    struct slot *s = find(ip, !ok, now);
    bool forgive = false;
    if (ok) {
        if (s != NULL && s->hold_until_ms <= now) {
            s->used = false;
            forgive = s->fails > 0;
        }
    } else {
        stats.failures++;
        if (now - s->since_ms > WM_AUTHFAIL_WINDOW_MS) {
            s->since_ms = now;
            s->fails = 0;
        }
        s->seen_ms = now;
        s->fails++;
        if (s->fails >= WM_AUTHFAIL_BAN_AFTER && s->hold_until_ms <= now) {
            s->hold_until_ms = now + WM_AUTHFAIL_BAN_MS;
            stats.bans++;
            hold = true;
        }
        if (s->fails > WM_AUTHFAIL_FREE) {
            delay = (int)(s->fails - WM_AUTHFAIL_FREE) * WM_AUTHFAIL_STEP_MS;
            delay = delay > WM_AUTHFAIL_MAX_DELAY_MS ? WM_AUTHFAIL_MAX_DELAY_MS : delay;
        }
    }
    pthread_mutex_unlock(&lock);
    if (hold) {
        char as[INET6_ADDRSTRLEN + 4];
        ip_text(ip, as, sizeof(as));
        wm_log(WM_LOG_WARN, 0, "auth: %d failed authentications from %s within %d s: "
               "refused for %d s", WM_AUTHFAIL_BAN_AFTER, as, WM_AUTHFAIL_WINDOW_MS / 1000,
               WM_AUTHFAIL_BAN_MS / 1000);
    }
    const struct wm_authfail_shared *h = __atomic_load_n(&shared, __ATOMIC_ACQUIRE);
    if (h != NULL && !ok) {
        h->failed(ip, hold);
    } else if (h != NULL && forgive) {
        h->forgive(ip);
    }
    return delay;
}

void wm_authfail_set_shared(const struct wm_authfail_shared *h)
{
    __atomic_store_n(&shared, h, __ATOMIC_RELEASE);
}

void wm_authfail_learn(const unsigned char ip[16], unsigned count, int hold_ms)
{
    uint64_t now = wm_now_ms();
    bool began = false;

    if (hold_ms > WM_AUTHFAIL_BAN_MS) {
        hold_ms = WM_AUTHFAIL_BAN_MS; /* what Redis says is not trusted beyond our own hold */
    }
    pthread_mutex_lock(&lock);
    struct slot *s = find(ip, count > 0 || hold_ms > 0, now);
    if (s != NULL) {
        if (s->fails == 0 || now - s->since_ms > WM_AUTHFAIL_WINDOW_MS) {
            s->since_ms = now;
            s->fails = 0;
        }
        s->seen_ms = now;
        s->fails = count > s->fails ? count : s->fails;
        if (hold_ms > 0 && s->hold_until_ms < now + (uint64_t)hold_ms) {
            began = s->hold_until_ms <= now;
            s->hold_until_ms = now + (uint64_t)hold_ms;
            stats.shared_holds += began;
        }
    }
    pthread_mutex_unlock(&lock);
    if (began) {
        char as[INET6_ADDRSTRLEN + 4];
        ip_text(ip, as, sizeof(as));
        wm_log(WM_LOG_WARN, 0, "auth: %s is on hold across the cluster (%d failed "
               "authentications on the nodes within %d s): refused for %d s", as,
               WM_AUTHFAIL_BAN_AFTER, WM_AUTHFAIL_WINDOW_MS / 1000, (hold_ms + 999) / 1000);
    }
}

void wm_authfail_get_stats(struct wm_authfail_stats *out)
{
    pthread_mutex_lock(&lock);
    *out = stats;
    pthread_mutex_unlock(&lock);
}

void wm_authfail_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(table, 0, sizeof(table));
    memset(&stats, 0, sizeof(stats));
    pthread_mutex_unlock(&lock);
}
