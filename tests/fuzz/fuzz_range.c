/*
 * tests/fuzz/fuzz_range.c - libFuzzer target: the file server's parsers on
 * arbitrary bytes. The first byte picks a file size; the rest is a Range
 * value (also an Accept-Encoding value, an If-Match list, an HTTP date and
 * a request path). Every range returned lies inside the file and is
 * ordered; a cleaned path never holds "..", a NUL, a backslash or "//".
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "files/files.h"
#include "files/files_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *v, size_t n)
{
    char out[256];
    bool dir;

    if (wm_files_path_clean(v, n, "/p", out, sizeof(out), &dir) < 0) {
        return;
    }
    size_t len = strlen(out);
    if (len >= sizeof(out) || strchr(out, '\\') != NULL || strstr(out, "//") != NULL ||
        out[0] == '/') {
        abort();
    }
    for (const char *s = out; *s != '\0';) {
        size_t k = strcspn(s, "/");
        if ((k == 2 && s[0] == '.' && s[1] == '.') || (k == 1 && s[0] == '.')) {
            abort(); /* a "." or ".." segment survived */
        }
        s += k + (s[k] == '/');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = {0, 1, 2, 10, 1000, 1ULL << 30, UINT64_MAX / 2};
    struct wm_files_range r[WM_FILES_MAX_RANGES];
    uint64_t fsize;
    const char *v;
    size_t n;
    int k;

    if (size == 0) {
        return 0;
    }
    fsize = sizes[data[0] % (sizeof(sizes) / sizeof(sizes[0]))];
    v = (const char *)data + 1;
    n = size - 1;
    k = wm_files_range_parse(v, n, fsize, r, WM_FILES_MAX_RANGES);
    if (k > WM_FILES_MAX_RANGES || k < WM_FILES_RANGE_UNSATISFIABLE) {
        abort();
    }
    for (int i = 0; i < k; i++) {
        if (r[i].first > r[i].last || r[i].last >= fsize) {
            abort();
        }
    }
    k = wm_files_accept_q(v, n, "gzip");
    if (k < 0 || k > 1000) {
        abort();
    }
    (void)files_etag_match(v, n, "\"1-2-3\"", data[0] & 1);
    (void)wm_files_http_date(v, n);
    check_path(v, n);
    return 0;
}
