/*
 * core/mem.c - see mem.h. A block is a 16-byte header and its payload;
 * the header says the block's class (or that malloc alone handles it) and
 * the size asked for. Cached blocks of a class are linked through their
 * headers, so the payload is never touched while cached.
 */
#include "core/mem.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Classes of payload size: powers of two from 128 B to 32 KiB and the
 * halfway sizes between them (a block wastes at most a third of its class).
 * libevent's chains are powers of two from 1 KiB up, nghttp2's and our
 * request records smaller and odd. glibc's tcache keeps 7 blocks per size:
 * a burst of a few hundred requests, each taking and giving back its
 * blocks, went past it into malloc's bins. Tiny blocks stay malloc's;
 * bigger ones are rare. */
static const uint32_t class_sizes[] = {
    128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
    4096, 6144, 8192, 12288, 16384, 24576, 32768,
};
#define MEM_CLASSES (sizeof(class_sizes) / sizeof(class_sizes[0]))
#define MEM_DIRECT 0xff             /* not a cached class: malloc's */
#define MEM_MAPPED 0xfe             /* wm_mem_malloc_lazy(): pages of its own */
#define MEM_CACHE_BYTES (4u << 20)  /* per thread, all classes */
#define MEM_CACHE_COUNT 1024        /* per class */
#define MEM_MAGIC 0x7a3c

struct hdr {
    struct hdr *next; /* while cached */
    uint32_t asked;   /* bytes asked for (saturated for big direct blocks) */
    uint8_t cls;      /* class, or MEM_DIRECT */
    uint8_t pad;
    uint16_t magic;
};

_Static_assert(sizeof(struct hdr) == 16, "the header keeps malloc's 16-byte alignment");

struct cache {
    struct hdr *head[MEM_CLASSES];
    uint16_t count[MEM_CLASSES]; /* up to MEM_CACHE_COUNT */
    size_t bytes;
    bool keyed;  /* the exit destructor is armed for this thread */
    bool closed; /* emptied for good: frees go to free() */
};

static __thread struct cache tc;
static _Atomic unsigned lazy_live; /* wm_mem_malloc_lazy()'s mappings */
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static size_t class_size(unsigned cls)
{
    return class_sizes[cls];
}

/* The class for n bytes, or MEM_DIRECT. Above 4 KiB a block must fill
 * three quarters of its class: libevent's chains fill theirs, but a
 * long-lived odd size (nghttp2's 16 KiB + 9 frame buffer) would keep a
 * quarter or more of its class unused for a connection's lifetime. */
static unsigned class_of(size_t n)
{
    if (n <= class_size(0) / 2 || n > class_size(MEM_CLASSES - 1)) {
        return MEM_DIRECT;
    }
    unsigned cls = 0;
    while (class_size(cls) < n) {
        cls++;
    }
    if (n > 4096 && n < class_size(cls) / 4 * 3) {
        return MEM_DIRECT;
    }
    return cls;
}

static void *payload(struct hdr *h)
{
    return h + 1;
}

static struct hdr *header(void *p)
{
    struct hdr *h = (struct hdr *)p - 1;

    if (h->magic != MEM_MAGIC) {
        abort(); /* not ours: a block from plain malloc reached this free */
    }
    return h;
}

static void thread_exit(void *arg)
{
    (void)arg;
    wm_mem_thread_done();
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, thread_exit) != 0) {
        abort();
    }
}

void *wm_mem_malloc(size_t n)
{
    unsigned cls = class_of(n);
    struct hdr *h;

    if (cls != MEM_DIRECT && tc.head[cls] != NULL) {
        h = tc.head[cls];
        tc.head[cls] = h->next;
        tc.count[cls]--;
        tc.bytes -= class_size(cls);
        h->next = NULL;
        h->asked = (uint32_t)n;
        UNPOISON(payload(h), n);
        return payload(h);
    }
    h = malloc(sizeof(*h) + (cls == MEM_DIRECT ? (n > 0 ? n : 1) : class_size(cls)));
    if (h == NULL) {
        return NULL;
    }
    h->next = NULL;
    h->asked = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    h->cls = (uint8_t)cls;
    h->pad = 0;
    h->magic = MEM_MAGIC;
    if (cls != MEM_DIRECT) {
        POISON((char *)payload(h) + n, class_size(cls) - n); /* past the asked size */
    }
    return payload(h);
}

/* The bytes a mapped block of n bytes spans, header included. */
static size_t mapped_len(size_t n)
{
    size_t pg = 4096;

    return (sizeof(struct hdr) + n + pg - 1) / pg * pg;
}

void *wm_mem_malloc_lazy(size_t n)
{
    struct hdr *h;

    if (n < WM_MEM_LAZY_MIN || n > UINT32_MAX - 4096) {
        return wm_mem_malloc(n);
    }
    if (atomic_fetch_add(&lazy_live, 1) >= WM_MEM_LAZY_MAX) {
        atomic_fetch_sub(&lazy_live, 1);
        return wm_mem_malloc(n);
    }
    h = mmap(NULL, mapped_len(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h == MAP_FAILED) {
        atomic_fetch_sub(&lazy_live, 1);
        return wm_mem_malloc(n);
    }
    h->next = NULL;
    h->asked = (uint32_t)n;
    h->cls = MEM_MAPPED;
    h->pad = 0;
    h->magic = MEM_MAGIC;
    POISON((char *)payload(h) + n, mapped_len(n) - sizeof(*h) - n); /* past the asked size */
    return payload(h);
}

void *wm_mem_calloc(size_t nmemb, size_t size)
{
    void *p;

    if (size != 0 && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    p = wm_mem_malloc(nmemb * size);
    if (p != NULL) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

void wm_mem_free(void *p)
{
    struct hdr *h;
    unsigned cls;

    if (p == NULL) {
        return;
    }
    h = header(p);
    cls = h->cls;
    if (cls == MEM_MAPPED) {
        size_t len = mapped_len(h->asked);
        UNPOISON(h, len); /* a later mapping may reuse the addresses */
        h->magic = 0;
        munmap(h, len);
        atomic_fetch_sub(&lazy_live, 1);
        return;
    }
    if (cls == MEM_DIRECT || tc.closed || tc.count[cls] >= MEM_CACHE_COUNT ||
        tc.bytes + class_size(cls) > MEM_CACHE_BYTES) {
        UNPOISON(payload(h), cls == MEM_DIRECT ? 0 : class_size(cls));
        h->magic = 0;
        free(h);
        return;
    }
    if (!tc.keyed) {
        pthread_once(&key_once, make_key);
        if (pthread_setspecific(exit_key, &tc) != 0) {
            h->magic = 0;
            free(h);
            return;
        }
        tc.keyed = true;
    }
    POISON(payload(h), class_size(cls));
    h->next = tc.head[cls];
    tc.head[cls] = h;
    tc.count[cls]++;
    tc.bytes += class_size(cls);
}

void *wm_mem_realloc(void *p, size_t n)
{
    struct hdr *h;
    void *q;

    if (p == NULL) {
        return wm_mem_malloc(n);
    }
    h = header(p);
    if (h->cls == MEM_DIRECT && class_of(n) == MEM_DIRECT) {
        struct hdr *nh = realloc(h, sizeof(*h) + (n > 0 ? n : 1));
        if (nh == NULL) {
            return NULL;
        }
        nh->asked = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        return payload(nh);
    }
    if (h->cls < MEM_CLASSES && n <= class_size(h->cls) && class_of(n) == h->cls) {
        UNPOISON(p, n);
        POISON((char *)p + n, class_size(h->cls) - n);
        h->asked = (uint32_t)n;
        return p;
    }
    q = wm_mem_malloc(n); /* a mapped block moves to malloc's too */
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, h->asked < n ? h->asked : n);
    wm_mem_free(p);
    return q;
}

void wm_mem_thread_done(void)
{
    for (unsigned cls = 0; cls < MEM_CLASSES; cls++) {
        while (tc.head[cls] != NULL) {
            struct hdr *h = tc.head[cls];
            tc.head[cls] = h->next;
            UNPOISON(payload(h), class_size(cls));
            h->magic = 0;
            free(h);
        }
        tc.count[cls] = 0;
    }
    tc.bytes = 0;
    tc.closed = true;
}

size_t wm_mem_cached_bytes(void)
{
    return tc.bytes;
}

unsigned wm_mem_lazy_live(void)
{
    return atomic_load(&lazy_live);
}

static void process_exit(void)
{
    wm_mem_thread_done();
}

void wm_mem_install(void)
{
    static bool done;

    if (done) {
        return;
    }
    done = true;
    event_set_mem_functions(wm_mem_malloc, wm_mem_realloc, wm_mem_free);
    atexit(process_exit);
}
