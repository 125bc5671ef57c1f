/*
 * tests/fuzz/fuzz_conf.c - libFuzzer target: the whole config pipeline
 * (TOML or YAML reader, schema, validation) on arbitrary text, without
 * touching cert/key files. Byte 0 picks the format. Every diagnostic must
 * format into one line naming the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wm_conf *c = NULL;
    struct wm_conf_diags d = {0};
    char line[512];

    if (size < 1) {
        return 0;
    }
    const char *name = (data[0] & 1) ? "fuzz.yaml" : "fuzz.toml";
    int r = wm_conf_load_text(name, (const char *)data + 1, size - 1, false, &c, &d);

    if ((r == 0) != (c != NULL) || (r != 0 && d.nerrors == 0)) {
        abort(); /* a failure always says why */
    }
    for (size_t i = 0; i < d.n; i++) {
        const char *s = wm_conf_diag_format(&d, i, line, sizeof(line));
        if (strstr(s, "fuzz.") == NULL || strchr(s, '\n') != NULL) {
            abort();
        }
    }
    wm_conf_diags_free(&d);
    wm_conf_free(c);
    return 0;
}
