/*
 * core/mem.h - libevent's and nghttp2's memory, and the reverse proxy's
 * request records, through a small per-thread cache.
 *
 * Every request fills and empties a few evbuffers (the upstream's answer,
 * the head sent upstream, the HTTP/2 body on its way to the client), and
 * libevent frees an emptied chain at once and allocates the next: 1 to
 * 16 KiB blocks, beyond glibc's per-thread cache, so each went through
 * malloc's bins; nghttp2's stream records and header copies and our
 * request records are smaller, but come and go by the hundred at once,
 * past the 7 blocks per size glibc keeps per thread. Freed blocks of 65 B
 * to 32 KiB now wait in a cache of the thread that freed them
 * (powers of two and the sizes halfway between, bounded: 4 MiB and 1024
 * blocks per class) for the
 * next allocation of their class; smaller and larger ones go to malloc as
 * before. HAProxy and nginx keep such pools of their own.
 *
 * Under AddressSanitizer a cached block is poisoned whole and only the
 * requested bytes are unpoisoned when it is handed out again, so a use
 * after free or an overflow is still reported; the caches are emptied at
 * thread exit and process exit, so the leak check sees what it did before.
 */
#ifndef WM_CORE_MEM_H
#define WM_CORE_MEM_H

#include <stddef.h>

/* Route libevent's allocations through the cache. First thing in main(),
 * before any libevent call (a block from malloc must never reach the
 * cache's free). Idempotent. */
void wm_mem_install(void);

/* The allocator itself (libevent is given it; nghttp2 sessions and the
 * reverse proxy's request records use it directly). What one returns is
 * given back with wm_mem_free() or wm_mem_realloc() only, never free(). */
void *wm_mem_malloc(size_t n);
void *wm_mem_calloc(size_t nmemb, size_t size);
void *wm_mem_realloc(void *p, size_t n);
void wm_mem_free(void *p);

/* Empty this thread's cache; its later frees go straight to free().
 * Called by itself at thread exit and process exit. */
void wm_mem_thread_done(void);

/* Bytes this thread's cache holds now (tests). */
size_t wm_mem_cached_bytes(void);

#endif
