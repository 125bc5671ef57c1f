/*
 * tools/toml-decoder.c - toml-test decoder: TOML on stdin, tagged JSON on stdout.
 *
 * Usage: toml-decoder [file]   (reads stdin when no file is given)
 * Exit status: 0 and the JSON document on stdout for valid input; 1 and
 * "file:line:col: message" on stderr for invalid input; 2 on I/O errors.
 */
#include "conf/cval.h"
#include "conf/toml.h"
#include "core/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECODER_INPUT_MAX ((size_t)256 << 20) /* refuse inputs above 256 MiB */

/* Read all of f into a new buffer; NULL on error or when larger than the limit. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536;
    size_t n = 0;
    size_t got;
    char *buf = malloc(cap);
    char *nb;

    if (buf == NULL) {
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= DECODER_INPUT_MAX) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    const char *name = "<stdin>";
    struct wm_cval *root;
    struct wm_err err;
    char msg[WM_ERR_FILE_MAX + WM_ERR_KEY_MAX + WM_ERR_MSG_MAX + 32];
    FILE *in = stdin;
    char *json;
    char *text;
    size_t jlen;
    size_t len = 0;

    if (argc > 2) {
        fprintf(stderr, "usage: %s [file.toml]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        name = argv[1];
        in = fopen(name, "rb");
        if (in == NULL) {
            fprintf(stderr, "%s: %s\n", name, strerror(errno));
            return 2;
        }
    }
    text = read_all(in, &len);
    if (in != stdin) {
        fclose(in);
    }
    if (text == NULL) {
        fprintf(stderr, "%s: read failed: %s\n", name, strerror(errno));
        return 2;
    }
    root = wm_toml_parse(text, len, name, &err);
    free(text);
    if (root == NULL) {
        fprintf(stderr, "%s\n", wm_err_format(&err, msg, sizeof(msg)));
        return 1;
    }
    if (wm_cval_to_json(root, true, &json, &jlen) != 0) {
        wm_cval_free(root);
        fprintf(stderr, "%s: out of memory\n", name);
        return 2;
    }
    wm_cval_free(root);
    fwrite(json, 1, jlen, stdout);
    fputc('\n', stdout);
    free(json);
    return fflush(stdout) == 0 ? 0 : 2;
}
