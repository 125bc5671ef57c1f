#include "core/cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <string.h>

#include "core/log.h"
#include "core/proxyflags.h"
#include "core/util.h"

#define MAX_ROWS 64
#define LONG_VAL 256 /* getopt value of a long-only row: LONG_VAL + its index */

static void *at(void *obj, size_t off)
{
    return (char *)obj + off;
}

static bool takes_arg(const struct wm_cli_opt *r)
{
    return r->type != WM_CLI_TRUE && r->type != WM_CLI_COUNT && r->type != WM_CLI_HELP;
}

static int complain(const struct wm_cli_opt *r, const char *arg)
{
    fprintf(stderr, "wmproxy: %s, got \"%s\"\n", r->bad, arg);
    return WM_CLI_ERROR;
}

/* ---- one setter per type: 0, or WM_CLI_ERROR after a message ---- */

static void store_uint(void *dst, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        *(uint64_t *)dst = v;
    } else {
        *(int *)dst = (int)v;
    }
}

static int set_uint(const struct wm_cli_opt *r, const char *arg, void *dst)
{
    uint64_t v;

    if (wm_parse_u64(arg, strlen(arg), (uint64_t)r->max, &v) < 0 || v < (uint64_t)r->min) {
        return complain(r, arg);
    }
    store_uint(dst, r->size, r->type == WM_CLI_SECS ? v * 1000 : v);
    return 0;
}

static int set_level(const struct wm_cli_opt *r, const char *arg, void *dst)
{
    enum wm_log_level lvl;

    if (wm_log_parse_level(arg, &lvl) < 0) {
        return complain(r, arg);
    }
    *(int *)dst = (int)lvl;
    return 0;
}

static int set_flags(const struct wm_cli_opt *r, const char *arg, void *dst)
{
    return wm_proxy_parse_flags(arg, dst) < 0 ? complain(r, arg) : 0;
}

static int set_enum(const struct wm_cli_opt *r, const char *arg, void *dst)
{
    for (const char *const *c = r->choices; *c != NULL; c++) {
        if (strcmp(*c, arg) == 0) {
            *(const char **)dst = arg;
            return 0;
        }
    }
    fprintf(stderr, "wmproxy: %s, got \"%s\"\n", r->bad, arg); /* bad names the choices */
    return WM_CLI_ERROR;
}

static int set_list(const struct wm_cli_opt *r, const char *arg, struct wm_cli_list *l)
{
    if (l->n >= WM_CLI_LIST_MAX) {
        fprintf(stderr, "wmproxy: --%s: at most %d times\n", r->name, WM_CLI_LIST_MAX);
        return WM_CLI_ERROR;
    }
    l->v[l->n++] = arg;
    return 0;
}

static int set_value(const struct wm_cli_opt *r, const char *arg, void *obj)
{
    void *dst = at(obj, r->off);
    int rc = 0;

    switch (r->type) {
    case WM_CLI_STR:
        *(const char **)dst = arg;
        break;
    case WM_CLI_BUF: /* an address or a path: empty would silently mean none */
        if (arg[0] == '\0') {
            fprintf(stderr, "wmproxy: --%s: needs a value, got \"\"\n", r->name);
            return WM_CLI_ERROR;
        }
        snprintf(dst, r->size, "%s", arg);
        break;
    case WM_CLI_TRUE:
        *(bool *)dst = true;
        break;
    case WM_CLI_COUNT:
        (*(int *)dst)++;
        break;
    case WM_CLI_UINT:
    case WM_CLI_SECS:
        rc = set_uint(r, arg, dst);
        break;
    case WM_CLI_LEVEL:
        rc = set_level(r, arg, dst);
        break;
    case WM_CLI_FLAGS:
        rc = set_flags(r, arg, dst);
        break;
    case WM_CLI_ENUM:
        rc = set_enum(r, arg, dst);
        break;
    case WM_CLI_LIST:
        rc = set_list(r, arg, dst);
        break;
    default:
        break;
    }
    if (rc == 0 && r->off_set != 0) {
        *(bool *)at(obj, r->off_set) = true;
    }
    return rc;
}

/* ---- the tables as getopt_long sees them ---- */

/* Flatten cmd's tables (sections left out) into rows. Returns the count. */
static size_t collect(const struct wm_cli_cmd *cmd, const struct wm_cli_opt **rows)
{
    size_t n = 0;

    for (const struct wm_cli_opt *const *t = cmd->tables; *t != NULL; t++) {
        for (const struct wm_cli_opt *r = *t; r->type != WM_CLI_END && n < MAX_ROWS; r++) {
            if (r->type != WM_CLI_SECTION) {
                rows[n++] = r;
            }
        }
    }
    return n;
}

/* getopt's value for row i. An alias (same type and destination as an
 * earlier row) gets its value, so getopt takes the two for one option and
 * does not call an abbreviation of both ambiguous. */
static int row_val(const struct wm_cli_opt **rows, size_t i)
{
    if (rows[i]->letter != 0) {
        return rows[i]->letter;
    }
    for (size_t k = 0; k < i; k++) {
        if (rows[k]->type == rows[i]->type && rows[k]->off == rows[i]->off &&
            rows[i]->type != WM_CLI_HELP) {
            return row_val(rows, k);
        }
    }
    return LONG_VAL + (int)i;
}

static const struct wm_cli_opt *row_of(const struct wm_cli_opt **rows, size_t n, int val)
{
    if (val >= LONG_VAL && (size_t)(val - LONG_VAL) < n) {
        return rows[val - LONG_VAL];
    }
    for (size_t i = 0; i < n; i++) {
        if (rows[i]->letter == val) {
            return rows[i];
        }
    }
    return NULL;
}

int wm_cli_parse(const struct wm_cli_cmd *cmd, int argc, char **argv, void *obj, int *next)
{
    const struct wm_cli_opt *rows[MAX_ROWS];
    struct option longopts[MAX_ROWS + 1];
    char shorts[2 * MAX_ROWS + 1];
    size_t n = collect(cmd, rows);
    size_t nl = 0;
    size_t ns = 0;
    int val;

    for (size_t i = 0; i < n; i++) {
        if (rows[i]->name != NULL) {
            longopts[nl++] = (struct option){rows[i]->name,
                                             takes_arg(rows[i]) ? required_argument : no_argument,
                                             NULL, row_val(rows, i)};
        }
        if (rows[i]->letter != 0) {
            shorts[ns++] = rows[i]->letter;
            if (takes_arg(rows[i])) {
                shorts[ns++] = ':';
            }
        }
    }
    longopts[nl] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';
    optind = 1;
    while ((val = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        const struct wm_cli_opt *r = row_of(rows, n, val);
        if (r == NULL) { /* getopt said what was wrong */
            if (cmd->brief != NULL) {
                fputs(cmd->brief, stderr);
            } else {
                wm_cli_usage(cmd, stderr);
            }
            return WM_CLI_ERROR;
        }
        if (r->type == WM_CLI_HELP) {
            wm_cli_usage(cmd, stdout);
            return WM_CLI_SHOWN;
        }
        if (set_value(r, optarg, obj) < 0) {
            return WM_CLI_ERROR;
        }
    }
    *next = optind;
    return WM_CLI_OK;
}

/* ---- help ---- */

static void usage_row(const struct wm_cli_opt *r, int col, FILE *f)
{
    char left[256];
    const char *help = r->help;
    const char *last;
    int len;

    if (r->usage != NULL) {
        snprintf(left, sizeof(left), "      %s", r->usage);
    } else if (r->letter != 0 && r->name != NULL) {
        snprintf(left, sizeof(left), "  -%c, --%s%s%s", r->letter, r->name, r->arg ? " " : "",
                 r->arg ? r->arg : "");
    } else if (r->letter != 0) {
        snprintf(left, sizeof(left), "  -%c", r->letter);
    } else {
        snprintf(left, sizeof(left), "      --%s%s%s", r->name, r->arg ? " " : "",
                 r->arg ? r->arg : "");
    }
    last = strrchr(left, '\n');
    len = (int)strlen(last != NULL ? last + 1 : left);
    if (help[0] == '\n') {
        fprintf(f, "%s\n%*s%s\n", left, col, "", help + 1);
    } else {
        fprintf(f, "%s%*s%s\n", left, len < col ? col - len : 2, "", help);
    }
}

void wm_cli_usage(const struct wm_cli_cmd *cmd, FILE *f)
{
    fputs(cmd->head, f);
    for (const struct wm_cli_opt *const *t = cmd->tables; *t != NULL; t++) {
        for (const struct wm_cli_opt *r = *t; r->type != WM_CLI_END; r++) {
            if (r->type == WM_CLI_SECTION) {
                fputs(r->help, f);
            } else if (r->help != NULL) {
                usage_row(r, cmd->col, f);
            }
        }
    }
}
