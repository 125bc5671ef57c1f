/*
 * tests/fuzz/fuzz_revpath.c - libFuzzer target: the reverse proxy's path
 * normalisation and location patterns on arbitrary request-targets. A
 * normalised path starts with '/', holds no NUL, no "//" and no "." or
 * ".." segment, and fits the output; every pattern kind matches it
 * without reading outside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "reverse/rev_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || memchr(p, '\0', n) != NULL || strstr(p, "//") != NULL ||
        strstr(p, "/./") != NULL || strstr(p, "/../") != NULL ||
        (n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const pats[] = {"/", "=/a", "/a/*/b*", "*.php", "^/x[0-9]+/", NULL};
    char out[512];
    size_t n;
    struct wm_arena *a;

    if (rv_path_normalize((const char *)data, size, out, sizeof(out), &n) < 0) {
        return 0;
    }
    if (n >= sizeof(out) || strlen(out) != n) {
        abort();
    }
    check(out, n);
    a = wm_arena_new();
    for (size_t i = 0; pats[i] != NULL && a != NULL; i++) {
        struct rv_pattern p;
        char msg[64];
        if (rv_pattern_compile(&p, pats[i], a, msg, sizeof(msg)) == 0) {
            (void)rv_pattern_match(&p, out, n);
            rv_pattern_free(&p);
        }
    }
    wm_arena_free(a);
    return 0;
}
