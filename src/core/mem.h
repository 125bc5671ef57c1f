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

/* A block for a long-lived buffer that is mostly left unwritten (nghttp2's
 * 16 KiB frame buffer, one per HTTP/2 connection, of which the frames of
 * an idle connection used the first page): from WM_MEM_LAZY_MIN bytes up
 * it is a mapping of its own, whose pages take memory only once written
 * (malloc's would hand back pages written before); smaller ones, and all
 * past WM_MEM_LAZY_MAX live mappings in the process (the kernel's limit on
 * mappings is 65,530 by default), are wm_mem_malloc()'s. Given back as
 * the others: wm_mem_free() unmaps it, wm_mem_realloc() moves it to
 * wm_mem_malloc()'s. Not for blocks made and freed per request: each
 * costs two system calls. The leak check sees no mapping (what leaks one,
 * an HTTP/2 session, leaks malloc's blocks with it); under
 * AddressSanitizer the bytes past the asked size are off limits, as for
 * the others. */
#define WM_MEM_LAZY_MIN 16384
#define WM_MEM_LAZY_MAX 16384
void *wm_mem_malloc_lazy(size_t n);

/* Empty this thread's cache; its later frees go straight to free().
 * Called by itself at thread exit and process exit. */
void wm_mem_thread_done(void);

/* Bytes this thread's cache holds now (tests). */
size_t wm_mem_cached_bytes(void);
/* wm_mem_malloc_lazy()'s mappings live in the process now (tests). */
unsigned wm_mem_lazy_live(void);

#endif
