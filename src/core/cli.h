/*
 * core/cli.h - command-line flags as a table, nginx's directive-table style:
 * one row per flag (long name, short letter, argument type, where the value
 * goes, help text), one setter per type. The same rows drive getopt_long
 * and the --help text, so the two cannot drift apart.
 *
 * Values are written into a caller's struct at each row's offset; strings
 * of WM_CLI_STR point into argv.
 */
#ifndef WM_CORE_CLI_H
#define WM_CORE_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum wm_cli_type {
    WM_CLI_END = 0,  /* ends a table */
    WM_CLI_SECTION,  /* no flag: a heading in the help (help is printed as is) */
    WM_CLI_HELP,     /* print the help on stdout */
    WM_CLI_STR,      /* const char * = the argument */
    WM_CLI_BUF,      /* char[size] = a copy of the argument */
    WM_CLI_TRUE,     /* bool = true; takes no argument */
    WM_CLI_COUNT,    /* int += 1 per use (-vvv); takes no argument */
    WM_CLI_UINT,     /* unsigned integer in [min, max] into an int (size 4) or uint64_t (8) */
    WM_CLI_SECS,     /* seconds in [min, max], stored as milliseconds (int or uint64_t) */
    WM_CLI_LEVEL,    /* int: a log level name (core/log.h) */
    WM_CLI_FLAGS,    /* unsigned: the proxy's protocol set (core/proxyflags.h) */
    WM_CLI_ENUM,     /* const char * = the argument, one of choices */
    WM_CLI_LIST,     /* struct wm_cli_list: each use appends the argument (repeatable) */
};

/* The destination of a WM_CLI_LIST row: arguments in order (into argv). */
#define WM_CLI_LIST_MAX 64
struct wm_cli_list {
    const char *v[WM_CLI_LIST_MAX];
    size_t n;
};

struct wm_cli_opt {
    enum wm_cli_type type;
    const char *name; /* long name without "--"; NULL for a short-only flag */
    char letter;      /* short flag, 0 for none */
    size_t off;       /* destination in the caller's struct */
    size_t off_set;   /* a bool also set true ("given on the command line"); 0: none
                       * (offset 0 of a caller's struct is never such a bool) */
    size_t size;      /* BUF: capacity; UINT, SECS: sizeof the destination */
    int64_t min;      /* UINT, SECS bounds */
    int64_t max;
    const char *const *choices; /* ENUM: NULL-terminated */
    const char *bad;  /* the complaint for a bad value: "--workers: expected 1..256" */
    const char *arg;  /* the argument's name in the help ("ADDR") */
    /* Help text; NULL leaves the row out of the help (an alias, or a flag
     * another row's line describes). A leading '\n' starts it on a line of
     * its own. */
    const char *help;
    const char *usage; /* replaces the generated "--name ARG" column (odd lines) */
};

/* A subcommand: its tables (NULL-terminated list, in help order). */
struct wm_cli_cmd {
    const struct wm_cli_opt *const *tables;
    const char *head;  /* printed before the flags: usage line, description */
    const char *brief; /* printed on stderr after an unknown flag; NULL: the whole help */
    int col;           /* where help texts start */
};

enum {
    WM_CLI_OK = 0,
    WM_CLI_SHOWN = 1, /* --help was printed: exit 0 */
    WM_CLI_ERROR = -1, /* a message (and maybe the usage) went to stderr: exit 2 */
};

/* Parse argv[0..argc) (argv[0] is the subcommand) into obj. Returns
 * WM_CLI_OK with *next the index of the first operand, WM_CLI_SHOWN or
 * WM_CLI_ERROR. */
int wm_cli_parse(const struct wm_cli_cmd *cmd, int argc, char **argv, void *obj, int *next);

/* Print cmd's help (head, then one line per listed row) to f. */
void wm_cli_usage(const struct wm_cli_cmd *cmd, FILE *f);

#endif
