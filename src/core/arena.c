#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 8192

struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    /* data follows, aligned */
};

struct wm_arena {
    struct chunk *head;
    size_t total;
};

#define CHUNK_HDR ((sizeof(struct chunk) + 15) & ~(size_t)15)

struct wm_arena *wm_arena_new(void)
{
    return calloc(1, sizeof(struct wm_arena));
}

void wm_arena_free(struct wm_arena *a)
{
    if (a == NULL) {
        return;
    }
    for (struct chunk *c = a->head; c != NULL;) {
        struct chunk *n = c->next;
        free(c);
        c = n;
    }
    free(a);
}

void *wm_arena_alloc(struct wm_arena *a, size_t n)
{
    struct chunk *c = a->head;

    n = (n + 15) & ~(size_t)15;
    if (n == 0) {
        n = 16;
    }
    if (c == NULL || c->size - c->used < n) {
        size_t sz = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(CHUNK_HDR + sz);
        if (c == NULL) {
            return NULL;
        }
        c->size = sz;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c + CHUNK_HDR + c->used;
    c->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

char *wm_arena_strndup(struct wm_arena *a, const char *s, size_t n)
{
    char *p = wm_arena_alloc(a, n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *wm_arena_strdup(struct wm_arena *a, const char *s)
{
    return wm_arena_strndup(a, s, strlen(s));
}

size_t wm_arena_used(const struct wm_arena *a)
{
    return a->total;
}
