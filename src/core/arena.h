/*
 * core/arena.h - a bump allocator for objects that live and die together
 * (a loaded configuration). Everything is freed at once by wm_arena_free().
 */
#ifndef WM_CORE_ARENA_H
#define WM_CORE_ARENA_H

#include <stddef.h>

struct wm_arena;

struct wm_arena *wm_arena_new(void);
/* Free every allocation of the arena and the arena. NULL is a no-op. */
void wm_arena_free(struct wm_arena *a);

/* Zeroed, 16-byte aligned memory; NULL on OOM. */
void *wm_arena_alloc(struct wm_arena *a, size_t n);
/* Copy of s[0..n) plus a NUL. */
char *wm_arena_strndup(struct wm_arena *a, const char *s, size_t n);
char *wm_arena_strdup(struct wm_arena *a, const char *s);
/* Bytes handed out so far (for status and tests). */
size_t wm_arena_used(const struct wm_arena *a);

#endif
