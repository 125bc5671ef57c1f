/* reverse/limit: limit_req zones. A key goes burst requests above the rate,
 * then is refused; and keys a client picks to share one hash chain (the
 * zone's hash was plain FNV-1a, so they were easy to find) cost no more
 * than any other keys: every lookup used to walk the whole zone. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/util.h"
#include "reverse/rev_int.h"

#define NKEYS 4096 /* limit= 512 KiB: 4096 keys, 4096 chains */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* a generation's settings of a zone: rate_micro and limit= */
static struct rv_zone_conf conf_of(uint64_t rate_micro, uint64_t bytes)
{
    return (struct rv_zone_conf){.rate_micro = rate_micro, .max_entries = rv_zone_entries(bytes)};
}

/* 1r/m, limit=1m (8192 keys) */
static const struct rv_zone_conf PER_MINUTE = {.rate_micro = 1000000 / 60, .max_entries = 8192};

static void test_burst_then_refused(void **state)
{
    (void)state;
    struct rv_zone *z = rv_zone_get("unit-burst", 1024 * 1024);

    assert_non_null(z);
    for (int i = 0; i < 3; i++) {
        assert_true(rv_zone_allow(z, &PER_MINUTE, "10.0.0.1", 8, 2));
    }
    assert_false(rv_zone_allow(z, &PER_MINUTE, "10.0.0.1", 8, 2));
    assert_true(rv_zone_allow(z, &PER_MINUTE, "10.0.0.2", 8, 2)); /* another key: its own bucket */
    rv_zone_put(z);
}

/* Workers hammer one key of a 1r/m zone (burst 0) at once: one request
 * passes, whatever the interleaving. The clock used to be read before the
 * zone's lock: a thread that read it, then waited for the lock behind one
 * that read a later millisecond, found the key's last time ahead of its
 * own now, and the unsigned difference drained the whole bucket (a few
 * extra requests a second of a flood went through). */
#define RACERS 4

struct racer {
    struct rv_zone *z;
    uint64_t until_ns;
    int passed;
};

static void *race(void *arg)
{
    struct racer *r = arg;

    for (long i = 0; i < 5000000 && now_ns() < r->until_ns; i++) {
        if (rv_zone_allow(r->z, &PER_MINUTE, "10.0.0.9", 8, 0)) {
            r->passed++;
        }
    }
    return NULL;
}

static void test_concurrent_workers_pass_one(void **state)
{
    struct racer r[RACERS];
    pthread_t t[RACERS];
    int passed = 0;

    (void)state;
    struct rv_zone *z = rv_zone_get("unit-race", 1024 * 1024);
    assert_non_null(z);
    for (int i = 0; i < RACERS; i++) {
        r[i] = (struct racer){.z = z, .until_ns = now_ns() + 1500000000u};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        passed += r[i].passed;
    }
    assert_int_equal(passed, 1);
    rv_zone_put(z);
}

/* Time rounds of one request per key (keys: NKEYS strings of 16 bytes). */
static uint64_t time_keys(struct rv_zone *z, char (*keys)[16])
{
    struct rv_zone_conf c = conf_of(1000000000, NKEYS * 128);
    uint64_t t0 = now_ns();

    for (int r = 0; r < 8; r++) {
        for (int i = 0; i < NKEYS; i++) {
            rv_zone_allow(z, &c, keys[i], strlen(keys[i]), 1000000);
        }
    }
    return now_ns() - t0;
}

static void test_chosen_keys_share_no_chain(void **state)
{
    (void)state;
    char(*bad)[16] = calloc(NKEYS, sizeof(*bad));
    char(*good)[16] = calloc(NKEYS, sizeof(*good));
    struct rv_zone *z = rv_zone_get("unit-flood", NKEYS * 128);
    int n = 0;

    assert_non_null(bad);
    assert_non_null(good);
    assert_non_null(z);
    /* keys whose FNV-1a falls in chain 0 of the 4096 */
    for (uint64_t i = 0; n < NKEYS; i++) {
        char k[16];
        int len = snprintf(k, sizeof(k), "/c%llx", (unsigned long long)i);
        if ((wm_fnv1a(WM_FNV_INIT, k, (size_t)len) & (NKEYS - 1)) == 0) {
            memcpy(bad[n++], k, (size_t)len + 1);
        }
    }
    for (int i = 0; i < NKEYS; i++) {
        snprintf(good[i], sizeof(good[i]), "/g%x", i);
    }
    uint64_t tg = time_keys(z, good);
    rv_zone_put(z);
    z = rv_zone_get("unit-flood", NKEYS * 128);
    uint64_t tb = time_keys(z, bad);
    /* one chain of 4096 keys: tens of times slower; spread: alike */
    assert_true(tb < 4 * tg + 2000000);
    rv_zone_put(z);
    free(bad);
    free(good);
}

/* A reload that raises limit= (rv_zone_get again, the counts kept) gives
 * the zone chains for its new size: it used to keep the first size's
 * 1024, and a zone of 64k keys walked 64 per lookup. */
static void test_reload_larger_limit_grows_chains(void **state)
{
    enum { BIG = 65536 };
    char(*keys)[16] = calloc(BIG, sizeof(*keys));
    uint64_t t[2];

    (void)state;
    assert_non_null(keys);
    for (int i = 0; i < BIG; i++) {
        snprintf(keys[i], sizeof(keys[i]), "10.%d.%d", i >> 8, i & 255);
    }
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: made at its size; pass 1: made small, then reloaded */
        struct rv_zone *z = rv_zone_get(pass ? "unit-grow" : "unit-made",
                                        pass ? 16 * 128 : BIG * 128);
        struct rv_zone *z2 = rv_zone_get(pass ? "unit-grow" : "unit-made", BIG * 128);
        struct rv_zone_conf c = conf_of(1000000 / 60, BIG * 128); /* the reloaded one's */
        assert_ptr_equal(z, z2);
        rv_zone_put(z2);
        assert_true(rv_zone_allow(z, &c, "k", 1, 0));
        for (int i = 0; i < BIG - 1; i++) { /* with "k": full */
            rv_zone_allow(z, &c, keys[i], strlen(keys[i]), 1000000);
        }
        assert_false(rv_zone_allow(z, &c, "k", 1, 0)); /* all kept: the count too */
        uint64_t t0 = now_ns();
        for (int r = 0; r < 4; r++) {
            for (int i = 0; i < BIG - 1; i++) {
                rv_zone_allow(z, &c, keys[i], strlen(keys[i]), 1000000);
            }
        }
        t[pass] = now_ns() - t0;
        rv_zone_put(z);
    }
    assert_true(t[1] < 3 * t[0] + 2000000);
    free(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_concurrent_workers_pass_one),
        cmocka_unit_test(test_chosen_keys_share_no_chain),
        cmocka_unit_test(test_reload_larger_limit_grows_chains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
