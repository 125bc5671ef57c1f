/*
 * core/err.h - a caller-owned error record filled by parsers and config code.
 *
 * Parsers never print: they fill a struct wm_err and return failure; the
 * caller decides how to report it. Text is truncated to fit, never overflows.
 */
#ifndef WM_CORE_ERR_H
#define WM_CORE_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define WM_ERR_FILE_MAX 256
#define WM_ERR_KEY_MAX  256
#define WM_ERR_MSG_MAX  2048 /* room for a list of config errors (wm_err_add_line) */

struct wm_err {
    char file[WM_ERR_FILE_MAX]; /* "" when not from a file */
    int line;                   /* 1-based; 0 when unknown */
    int col;                    /* 1-based; 0 when unknown */
    char key[WM_ERR_KEY_MAX];   /* dotted key path, "" when none */
    char msg[WM_ERR_MSG_MAX];   /* what was expected / what went wrong */
};

/* Reset every field to empty. */
void wm_err_clear(struct wm_err *e);

/* Fill e (any argument may be NULL/0 except fmt). Returns -1 so callers can
 * `return wm_err_set(...)`. */
int wm_err_set(struct wm_err *e, const char *file, int line, int col, const char *key,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Append one more line to e->msg ("\n" before it unless msg is empty), for
 * errors that belong together: a refused reload lists every config error.
 * Control characters of the line are escaped as in wm_err_set, so each
 * line stays one line; what does not fit is cut. Returns -1. */
int wm_err_add_line(struct wm_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Format as "file:line:col: key: msg" (parts that are empty are left out)
 * into buf of size n; returns buf. */
const char *wm_err_format(const struct wm_err *e, char *buf, size_t n);

#endif
