/*
 * tests/unit/core/test_mem.c - core/mem.h: the per-thread cache of
 * libevent's blocks: reuse by class, bounds, realloc, emptying, and that
 * AddressSanitizer still sees cached and unasked bytes as off limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mem.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISONED(p) (__asan_address_is_poisoned(p) != 0)
#else
#define POISONED(p) true
#endif

static void test_reuse_by_class(void **state)
{
    (void)state;
    wm_mem_thread_done();
    char *a = wm_mem_malloc(2048);
    assert_non_null(a);
    memset(a, 'x', 2048);
    wm_mem_free(a);
    assert_int_equal(wm_mem_cached_bytes(), 0); /* closed by thread_done above */
}

static void *fresh_thread(void *arg)
{
    size_t *out = arg;
    char *a = wm_mem_malloc(2048);
    char *b;

    memset(a, 'x', 2048);
    wm_mem_free(a);
    out[0] = wm_mem_cached_bytes();
    b = wm_mem_malloc(2000); /* same class (2 KiB): the cached block comes back */
    out[1] = a == b;
    memset(b, 'y', 2000);
    out[2] = POISONED(b + 2000); /* past the asked size */
    wm_mem_free(b);
    out[3] = POISONED(b); /* cached: nobody may touch it */
    /* tiny and huge blocks are malloc's alone */
    char *s = wm_mem_malloc(40);
    char *h = wm_mem_malloc(1 << 20);
    memset(s, 1, 40);
    memset(h, 1, 1 << 20);
    size_t before = wm_mem_cached_bytes();
    wm_mem_free(s);
    wm_mem_free(h);
    char *odd = wm_mem_malloc(16384 + 9); /* would waste a third of 24 KiB */
    memset(odd, 1, 16384 + 9);
    wm_mem_free(odd);
    out[4] = wm_mem_cached_bytes() == before;
    /* a small class (nghttp2's records, ours): cached too, 300 at once */

    char *small[300];
    bool zeroed = true;
    for (int i = 0; i < 300; i++) {
        small[i] = wm_mem_calloc(1, 200);
        zeroed &= small[i][0] == 0 && small[i][199] == 0;
        memset(small[i], 'k', 200); /* dirty for the next calloc of the block */
    }
    size_t mid = wm_mem_cached_bytes();
    for (int i = 0; i < 300; i++) {
        wm_mem_free(small[i]);
    }
    out[6] = zeroed && wm_mem_cached_bytes() >= mid + 300 * 256;
    char *again = wm_mem_calloc(1, 200); /* a cached, dirtied block: zeroed */
    out[7] = again[0] == 0 && again[199] == 0 && POISONED(again + 200);
    wm_mem_free(again);
    /* bounded: many frees keep at most 4 MiB */
    char *many[400];
    for (int i = 0; i < 400; i++) {
        many[i] = wm_mem_malloc(16384);
    }
    for (int i = 0; i < 400; i++) {
        wm_mem_free(many[i]);
    }
    out[5] = wm_mem_cached_bytes() <= (4u << 20) && wm_mem_cached_bytes() >= (3u << 20);
    /* the exit destructor empties the rest (the leak check would say) */
    return NULL;
}

/* Each case runs on a thread of its own: a fresh cache, emptied at its exit. */
static void on_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_thread_cache(void **state)
{
    size_t out[9] = {0};

    (void)state;
    on_thread(fresh_thread, out);
    assert_int_equal(out[0], 2048);
    assert_true(out[1]);
    assert_true(out[2]);
    assert_true(out[3]);
    assert_true(out[4]);
    assert_true(out[5]);
    assert_true(out[6]);
    assert_true(out[7]);
}

static void *realloc_thread(void *arg)
{
    int *ok = arg;
    char *p = wm_mem_realloc(NULL, 700);
    char *q;

    for (int i = 0; i < 700; i++) {
        p[i] = (char)i;
    }
    q = wm_mem_realloc(p, 760); /* same class (768): in place */
    *ok = q == p;
    p = wm_mem_realloc(q, 5000); /* another class: moved, content kept */
    for (int i = 0; i < 700; i++) {
        *ok &= p[i] == (char)i;
    }
    p = wm_mem_realloc(p, 100000); /* to malloc's */
    for (int i = 0; i < 700; i++) {
        *ok &= p[i] == (char)i;
    }
    p = wm_mem_realloc(p, 200000);
    for (int i = 0; i < 700; i++) {
        *ok &= p[i] == (char)i;
    }
    p = wm_mem_realloc(p, 3000); /* back to a class */
    for (int i = 0; i < 700; i++) {
        *ok &= p[i] == (char)i;
    }
    wm_mem_free(p);
    wm_mem_thread_done();
    *ok &= wm_mem_cached_bytes() == 0;
    return NULL;
}

/* A case that says ok (non-zero int) in its argument, on its own thread. */
static void assert_thread_ok(void *(*fn)(void *))
{
    int ok = 0;

    on_thread(fn, &ok);
    assert_true(ok);
}

static void test_mem_realloc(void **state)
{
    (void)state;
    assert_thread_ok(realloc_thread);
}

/* Pages of [p, p + n) resident now (mincore), or -1. */
static long resident_pages(const char *p, size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    size_t len = (size_t)((uintptr_t)p + n - lo);
    unsigned char vec[64];
    long in = 0;

    if (len / (size_t)pg + 1 > sizeof(vec) || mincore((void *)lo, len, vec) != 0) {
        return -1;
    }
    for (size_t i = 0; i < (len + (size_t)pg - 1) / (size_t)pg; i++) {
        in += vec[i] & 1;
    }
    return in;
}

/* A lazy block: its unwritten pages take no memory, it moves to malloc's on realloc, content kept; a small
 * one is an ordinary cached block. */
static void *lazy_thread(void *arg)
{
    int *ok = arg;
    size_t n = WM_MEM_LAZY_MIN + 9; /* nghttp2's frame buffer */
    char *p = wm_mem_malloc_lazy(n);

    *ok = p != NULL;
    if (!*ok) {
        return NULL;
    }
    memset(p, 'a', 100);
    p[n - 1] = 'z';
    long in = resident_pages(p, n);
    *ok &= in >= 1 && in <= 3; /* the first and the last page: not the three between */
    *ok &= POISONED(p + n);    /* past the asked size */
    char *q = wm_mem_realloc(p, n + 5000);
    *ok &= q != NULL && q[0] == 'a' && q[99] == 'a' && q[n - 1] == 'z';
    wm_mem_free(q);
    size_t before = wm_mem_cached_bytes();
    char *s = wm_mem_malloc_lazy(2000);
    memset(s, 1, 2000);
    wm_mem_free(s);
    *ok &= wm_mem_cached_bytes() == before + 2048; /* the small one went to its class */
    char *t = wm_mem_malloc_lazy(WM_MEM_LAZY_MIN);
    *ok &= t != NULL;
    wm_mem_free(t);
    *ok &= wm_mem_cached_bytes() == before + 2048; /* a big one is unmapped, never cached */
    return NULL;
}

static void test_mem_lazy(void **state)
{
    (void)state;
    assert_thread_ok(lazy_thread);
}

/* Past WM_MEM_LAZY_MAX live mappings, lazy blocks are malloc's; each kind
 * is given back by wm_mem_free() all the same. */
static void *lazy_bound_thread(void *arg)
{
    int *ok = arg;
    enum { N = WM_MEM_LAZY_MAX + 8 };
    char **b = calloc(N, sizeof(*b));

    *ok = b != NULL && wm_mem_lazy_live() == 0;
    for (size_t i = 0; *ok && i < N; i++) {
        b[i] = wm_mem_malloc_lazy(WM_MEM_LAZY_MIN + 9);
        if (b[i] == NULL) {
            *ok = 0;
            break;
        }
        b[i][0] = (char)i; /* one page each */
        *ok &= wm_mem_lazy_live() == (i < WM_MEM_LAZY_MAX ? i + 1 : WM_MEM_LAZY_MAX);
    }
    for (size_t i = 0; b != NULL && i < N; i++) {
        *ok &= b[i] == NULL || b[i][0] == (char)i;
        wm_mem_free(b[i]);
    }
    *ok &= wm_mem_lazy_live() == 0;
    free(b);
    return NULL;
}

static void test_mem_lazy_bound(void **state)
{
    (void)state;
    assert_thread_ok(lazy_bound_thread);
}

/* libevent itself, through the cache: chains filled and emptied. */
static void *evbuffer_thread(void *arg)
{
    int *ok = arg;
    struct evbuffer *b = evbuffer_new();
    char chunk[3000];

    memset(chunk, 'z', sizeof(chunk));
    *ok = b != NULL;
    for (int i = 0; i < 1000 && *ok; i++) {
        evbuffer_add(b, chunk, sizeof(chunk));
        evbuffer_add(b, chunk, 100);
        *ok &= evbuffer_get_length(b) == sizeof(chunk) + 100;
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    evbuffer_free(b);
    return NULL;
}

static void test_libevent(void **state)
{
    (void)state;
    assert_thread_ok(evbuffer_thread);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_cache),
        cmocka_unit_test(test_mem_realloc),
        cmocka_unit_test(test_mem_lazy),
        cmocka_unit_test(test_mem_lazy_bound),
        cmocka_unit_test(test_libevent),
        cmocka_unit_test(test_reuse_by_class),
    };
    wm_mem_install();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
