/*
 * tests/unit/conf/test_config.c - the configuration schema: every broken
 * config is reported at the right line, column and key path; TOML and YAML
 * decode to the same structs; the value forms (durations, sizes, rates,
 * flags) mean what the documentation says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "conf/units.h"
#include "core/log.h"
#include "core/limits.h"
#include "proxy/proxy.h"

/* Load text under name (the extension picks TOML or YAML) from an exact-size
 * heap copy, so ASan sees any read past the end. */
static int load_n(const char *name, const char *text, size_t len, bool check_files,
                  struct wm_conf **out, struct wm_conf_diags *d)
{
    char *copy = malloc(len > 0 ? len : 1);
    int r;

    assert_non_null(copy);
    memcpy(copy, text, len);
    r = wm_conf_load_text(name, copy, len, check_files, out, d);
    free(copy);
    return r;
}

static int load(const char *name, const char *text, struct wm_conf **out,
                struct wm_conf_diags *d)
{
    return load_n(name, text, strlen(text), false, out, d);
}

/* Load text that must be valid; fails with every diagnostic otherwise. */
static struct wm_conf *load_ok(const char *name, const char *text)
{
    struct wm_conf *c = NULL;
    struct wm_conf_diags d;
    char line[1400];

    if (load(name, text, &c, &d) < 0) {
        for (size_t i = 0; i < d.n; i++) {
            print_error("%s\n", wm_conf_diag_format(&d, i, line, sizeof(line)));
        }
        wm_conf_diags_free(&d);
        fail_msg("%s: expected a valid configuration", name);
    }
    assert_int_equal(d.nerrors, 0);
    wm_conf_diags_free(&d);
    assert_non_null(c);
    return c;
}

/* ---- broken configurations: exactly where, which key, what ---- */

struct bad_case {
    const char *what;
    const char *name; /* file name: its extension selects the reader */
    const char *text;
    int line;
    int col;
    const char *key;  /* dotted key path; "" for syntax errors */
    const char *msg;  /* fragment of the message */
    size_t nerrors;   /* how many errors the file has */
};

#define N64 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"

static const struct bad_case bad_cases[] = {
    {"TOML syntax error", "t.toml", "[proxy\nbind_addr = \"127.0.0.1:1\"\n", 1, 7, "",
     "expected ']' to close the table header", 1},
    {"TOML missing value", "t.toml", "workers = \n", 1, 11, "", "expected a value", 1},
    {"YAML syntax error (indentation)", "t.yaml", "proxy:\n  flag: 7\n bind_addr: x\n", 3, 2, "",
     "invalid indentation", 1},
    {"YAML syntax error (tab)", "t.yaml", "proxy:\n\tflag: 7\n", 2, 1, "",
     "tab character may not be used as indentation", 1},
    {"unknown key with a hint", "t.toml", "[proxy]\nbind_adr = \"127.0.0.1:1\"\n", 2, 1,
     "proxy.bind_adr", "unknown key \"bind_adr\" in [proxy] (did you mean \"bind_addr\"?)", 1},
    {"unknown key, indented", "t.toml", "[proxy]\n  zzzzzz = 1\n", 2, 3, "proxy.zzzzzz",
     "unknown key \"zzzzzz\" in [proxy]", 1},
    {"unknown YAML section: at its key, not at its first child", "t.yaml",
     "proxi:\n  flag: 7\n", 1, 1, "proxi", "(did you mean \"proxy\"?)", 1},
    {"unknown TOML table header", "t.toml", "[proxi]\nflag = 7\n", 1, 2, "proxi",
     "(did you mean \"proxy\"?)", 1},
    {"unknown key deep in [http]", "t.toml",
     "[[http.server]]\nbind_addr = \"127.0.0.1:1\"\n[[http.server.location]]\nrule = \"/\"\n"
     "prox_pass = \"x\"\n",
     5, 1, "http.server[0].location[0].prox_pass", "(did you mean \"proxy_pass\"?)", 1},
    {"string for a bool", "t.toml", "disable_stdout = \"yes\"\n", 1, 18, "disable_stdout",
     "expected true or false, got \"yes\"", 1},
    {"YAML 1.2: yes is a string", "t.yaml", "disable_control: yes\n", 1, 18, "disable_control",
     "expected true or false, got \"yes\"", 1},
    {"table for a string, and no follow-on error", "t.toml",
     "[proxy]\nusername = {a = 1}\npassword = \"x\"\n", 2, 12, "proxy.username",
     "expected a string, got a table", 1},
    {"TOML integer for a string (TOML is typed)", "t.toml",
     "[proxy]\nusername = \"bob\"\npassword = 1234\n", 3, 12, "proxy.password",
     "expected a string, got an integer (a secret: value not shown)", 1},
    {"integer for a string", "t.toml", "control_token = 5\n", 1, 17, "control_token",
     "expected a string, got an integer (a secret: value not shown)", 1},
    {"token with a space at its end", "t.toml", "control_token = \"tok \"\n", 1, 17,
     "control_token", "no client could send it", 1},
    {"token with a newline", "t.yaml", "control_token: \"t\\nk\"\n", 1, 16, "control_token",
     "no client could send it", 1},
    {"scalar for a table", "t.toml", "proxy = 5\n", 1, 9, "proxy", "expected a table", 1},
    {"listen address without port", "t.toml", "[proxy]\nbind_addr = \"0.0.0.0\"\n", 2, 13,
     "proxy.bind_addr", "expected \"ip:port\", got \"0.0.0.0\"", 1},
    {"listen port 0", "t.toml", "[proxy]\nbind_addr = \"127.0.0.1:0\"\n", 2, 13,
     "proxy.bind_addr", "expected \"ip:port\", got \"127.0.0.1:0\"", 1},
    {"listen port too big", "t.yaml", "proxy:\n  bind_addr: 127.0.0.1:65536\n", 2, 14,
     "proxy.bind_addr", "got \"127.0.0.1:65536\"", 1},
    {"listen address as a number", "t.toml", "[proxy]\nbind_addr = 8090\n", 2, 13,
     "proxy.bind_addr", "expected \"ip:port\", got 8090", 1},
    {"host:port without port", "t.toml", "[proxy]\nserver = \"nohost\"\n", 2, 10, "proxy.server",
     "expected \"host:port\", got \"nohost\"", 1},
    {"bad duration", "t.toml", "[proxy]\nidle_timeout = \"5x\"\n", 2, 16, "proxy.idle_timeout",
     "expected a duration like \"30s\"", 1},
    {"negative duration", "t.toml", "[proxy]\nconnect_timeout = -5\n", 2, 19,
     "proxy.connect_timeout", "got -5", 1},
    {"float duration", "t.toml", "[proxy]\nidle_timeout = 1.5\n", 2, 16, "proxy.idle_timeout",
     "got 1.5", 1},
    {"zero duration", "t.toml", "[proxy]\nidle_timeout = 0\n", 2, 16, "proxy.idle_timeout",
     "out of range (1..604800000 ms)", 1},
    {"duration too long", "t.toml", "grace = \"2h\"\n", 1, 9, "grace",
     "out of range (0..3600000 ms)", 1},
    {"bad size", "t.toml", "[http]\nmax_read_buf = \"10q\"\n", 2, 16, "http.max_read_buf",
     "expected a size like \"512\", \"4k\", \"10m\", got \"10q\"", 1},
    {"bad rate", "t.toml", "[http]\nrate_limit = \"4m/h\"\n", 2, 14, "http.rate_limit",
     "expected a rate like \"4m/s\" or \"1000r/s\", got \"4m/h\"", 1},
    {"zero rate", "t.yaml", "http:\n  rate_limit: 0r/s\n", 2, 15, "http.rate_limit",
     "got \"0r/s\"", 1},
    {"bad flag word", "t.toml", "[proxy]\nflag = \"ftp\"\n", 2, 8, "proxy.flag",
     "expected \"http https socks5\" (any of them) or 1..7, got \"ftp\"", 1},
    {"flag 0", "t.toml", "[proxy]\nflag = 0\n", 2, 8, "proxy.flag", "or 1..7, got 0", 1},
    {"YAML flag 9", "t.yaml", "proxy:\n  flag: 9\n", 2, 9, "proxy.flag", "or 1..7, got 9", 1},
    {"bad log level", "t.toml", "default_level = \"loud\"\n", 1, 17, "default_level",
     "expected error, warn, info, debug, trace or off, got \"loud\"", 1},
    {"username without password", "t.toml", "[proxy]\nusername = \"a\"\n", 2, 12,
     "proxy.username", "username is set but password is not", 1},
    {"password without username", "t.yaml", "proxy:\n  password: x\n  username:\n", 2, 13,
     "proxy.password", "password is set but username is not", 1},
    {"username too long", "t.toml",
     "[proxy]\nusername = \""
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n"
     "password = \"p\"\n",
     2, 12, "proxy.username", "longer than 255 bytes", 1},
    {"TOML duplicate key", "t.toml", "[proxy]\nflag = 1\nflag = 2\n", 3, 1, "",
     "duplicate key 'proxy.flag' (first defined at line 2)", 1},
    {"YAML duplicate key", "t.yaml", "proxy:\n  flag: 1\n  flag: 2\n", 3, 3, "",
     "duplicate key 'flag' (first defined at line 2)", 1},
    {"both bind and bind_addr", "t.toml",
     "[proxy]\nbind = \"127.0.0.1:1\"\nbind_addr = \"127.0.0.1:2\"\n", 3, 1, "proxy.bind_addr",
     "\"bind_addr\" is given twice", 1},
    {"top-level bind_addr with [proxy]", "t.toml", "bind_addr = \"127.0.0.1:1\"\n[proxy]\n", 1,
     13, "bind_addr", "cannot be combined with [proxy]", 1},
    {"workers = 0", "t.toml", "workers = 0\n", 1, 11, "workers",
     "expected an integer from 1 to 256, got 0", 1},
    {"workers = 257", "t.yaml", "workers: 257\n", 1, 10, "workers",
     "expected an integer from 1 to 256, got 257", 1},
    {"bad enum: mapping mode", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"ftp\"\nlocal_addr = \"127.0.0.1:1\"\n", 3, 8,
     "proxy.mappings[0].mode",
     "expected one of \"http\", \"https\", \"tcp\", \"proxy\", \"udp\", got \"ftp\"", 1},
    {"bad enum: proxy mode", "t.yaml", "proxy:\n  mode: both\n", 2, 9, "proxy.mode",
     "expected one of \"client\", \"server\", \"\", got \"both\"", 1},
    {"mapping without a name", "t.toml",
     "[[proxy.mappings]]\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n", 1, 1,
     "proxy.mappings[0].name", "missing required key \"name\" in a [[proxy.mappings]] entry", 1},
    {"tcp mapping without local_addr", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\n",
     1, 1, "proxy.mappings[0]", "mapping \"a\" (mode tcp) needs local_addr", 1},
    {"mapping name used twice", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n"
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n",
     5, 1, "proxy.mappings[1].name", "mapping name \"a\" is used twice", 1},
    {"mapping name over 63 bytes (the tunnel would cut it)", "t.toml",
     "[[proxy.mappings]]\nname = \"" N64 "\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n",
     2, 8, "proxy.mappings[0].name", "64 bytes long; at most 63", 1},
    {"group over 63 bytes, domain over 253", "t.yaml",
     "proxy:\n  mappings:\n    - name: a\n      mode: http\n      local_addr: 127.0.0.1:1\n"
     "      group: " N64 "\n      domain: " N64 N64 N64 N64 "\n",
     6, 14, "proxy.mappings[0].group", "64 bytes long; at most 63", 2},
    {"header rule: CR LF in the value (would split messages)", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n"
     "headers = [\"+ x-a 'v\\r\\nX-Evil: 1'\"]\n",
     5, 12, "proxy.mappings[0].headers[0]", "the value has a control character", 1},
    {"header rule: a name that is not a token", "t.yaml",
     "http:\n  headers:\n    - [+, \"x(a)\", v]\n", 3, 7, "http.headers[0]",
     "invalid header name", 1},
    {"header rule: longer than 1023 bytes", "t.toml",
     "[http]\nheaders = [\"+ x-a " N64 N64 N64 N64 N64 N64 N64 N64 N64 N64 N64 N64 N64 N64 N64
     N64 "\"]\n", 2, 12, "http.headers[0]", "header rule longer than 1023 bytes", 1},
    {"header rule: too many words", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n"
     "headers = [\"+ a b c\"]\n",
     5, 12, "proxy.mappings[0].headers[0]",
     "header rule \"+ a b c\": expected a name and a value", 1},
    {"header rule: no name", "t.toml",
     "[[proxy.mappings]]\nname = \"a\"\nmode = \"tcp\"\nlocal_addr = \"127.0.0.1:1\"\n"
     "headers = [\"+ last-modified 'x y\"]\n",
     5, 12, "proxy.mappings[0].headers[0]", "unterminated quote", 1},
    {"header rule: '-' with a value (YAML list form)", "t.yaml",
     "http:\n  headers:\n    - [+, x-a, v]\n    - [-, etag, v]\n", 4, 7, "http.headers[1]",
     "'-' takes a name only", 1},
    {"stream up_name naming no upstream", "t.toml",
     "[[stream.upstream]]\nname = \"u\"\nserver = [{addr = \"127.0.0.1:1\"}]\n"
     "[[stream.server]]\nbind_addr = \"127.0.0.1:2\"\nup_name = \"nope\"\n",
     6, 11, "stream.server[0].up_name",
     "upstream \"nope\" is not defined in [[stream.upstream]]", 1},
    {"limit_req with an unknown zone", "t.toml",
     "[http]\nlimit_req_zone = {z1 = \"{client_ip} limit=10m rate=1r/s\"}\n"
     "limit_req = \"zone=z2 burst=1\"\n",
     3, 13, "http.limit_req", "zone \"z2\" is not defined in [http.limit_req_zone]", 1},
    {"proxy_url to an unknown upstream", "t.toml",
     "[[http.upstream]]\nname = \"up\"\nserver = [{addr = \"127.0.0.1:1\"}]\n"
     "[[http.server]]\nbind_addr = \"127.0.0.1:1\"\nproxy_url = \"http://nope\"\n",
     6, 13, "http.server[0].proxy_url", "upstream \"nope\" is not defined", 1},
    {"http server without bind_addr", "t.toml", "[[http.server]]\nup_name = \"x\"\n", 1, 1,
     "http.server[0].bind_addr", "needs bind_addr or bind_ssl", 1},
    {"cert without key", "t.toml", "[proxy]\ncert = \"a.pem\"\n", 2, 8, "proxy.cert",
     "cert and key go together", 1},
    {"key without cert in [[http.server]]", "t.toml",
     "[[http.server]]\nbind_addr = \"127.0.0.1:1\"\nkey = \"k.pem\"\n", 3, 7, "http.server[0].key",
     "cert and key go together", 1},
    {"several errors, all listed", "t.toml",
     "[proxy]\nbind_addr = \"0.0.0.0\"\nflag = \"ftp\"\nusername = \"u\"\n", 2, 13,
     "proxy.bind_addr", "expected \"ip:port\"", 3},
};

static const struct wm_cdiag *first_error(const struct wm_conf_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (!d->v[i].warning) {
            return &d->v[i];
        }
    }
    return NULL;
}

static void test_bad_cases(void **state)
{
    char line[1400];
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct wm_conf *c = (struct wm_conf *)1;
        struct wm_conf_diags d;
        size_t want_n = bc->nerrors;
        int r = load(bc->name, bc->text, &c, &d);
        const struct wm_cdiag *e = first_error(&d);

        if (r != -1 || c != NULL || e == NULL || e->e.line != bc->line || e->e.col != bc->col ||
            strcmp(e->e.key, bc->key) != 0 || strstr(e->e.msg, bc->msg) == NULL ||
            strcmp(e->e.file, bc->name) != 0 || d.nerrors != want_n) {
            print_error("case \"%s\": want %s:%d:%d: %s: ...%s... (%zu error(s)); got r=%d, "
                        "%zu error(s):\n",
                        bc->what, bc->name, bc->line, bc->col, bc->key, bc->msg, want_n, r,
                        d.nerrors);
            for (size_t j = 0; j < d.n; j++) {
                print_error("    %s\n", wm_conf_diag_format(&d, j, line, sizeof(line)));
            }
            failed++;
        }
        wm_conf_diags_free(&d);
    }
    assert_int_equal(failed, 0);
}

/* nginx -t style: one pass lists every error, in file order, each with its
 * own position, and warnings stay warnings. */
static void test_every_error_in_file_order(void **state)
{
    static const char text[] = "workers = 0\n"                   /* 1 */
                               "[proxy]\n"                       /* 2 */
                               "bind_addr = \"0.0.0.0\"\n"       /* 3 */
                               "flag = \"ftp\"\n"                /* 4 */
                               "username = \"u\"\n"              /* 5 */
                               "idle_timeout = \"1y\"\n"         /* 6 */
                               "center = true\n"                 /* 7: warning only */
                               "\n"                              /* 8 */
                               "[stream]\n"                      /* 9 (active: no warning) */
                               "aa = 1\n";                       /* 10 */
    static const struct {
        bool warning;
        int line;
        int col;
        const char *key;
    } want[] = {
        {false, 1, 11, "workers"},       {false, 3, 13, "proxy.bind_addr"},
        {false, 4, 8, "proxy.flag"},     {false, 5, 12, "proxy.username"},
        {false, 6, 16, "proxy.idle_timeout"}, {true, 7, 10, "proxy.center"},
        {false, 10, 1, "stream.aa"},
    };
    struct wm_conf *c;
    struct wm_conf_diags d;
    char line[1400];

    (void)state;
    assert_int_equal(load("multi.toml", text, &c, &d), -1);
    assert_null(c);
    assert_int_equal(d.n, sizeof(want) / sizeof(want[0]));
    assert_int_equal(d.nerrors, 6);
    for (size_t i = 0; i < d.n; i++) {
        assert_int_equal(d.v[i].warning, want[i].warning);
        assert_int_equal(d.v[i].e.line, want[i].line);
        assert_int_equal(d.v[i].e.col, want[i].col);
        assert_string_equal(d.v[i].e.key, want[i].key);
    }
    /* The printed form: "file:line:col: key.path: message". */
    assert_string_equal(wm_conf_diag_format(&d, 1, line, sizeof(line)),
                        "multi.toml:3:13: proxy.bind_addr: expected \"ip:port\", got \"0.0.0.0\"");
    wm_conf_diag_format(&d, 5, line, sizeof(line));
    assert_ptr_equal(strstr(line, "warning: multi.toml:7:10: proxy.center: accepted, not yet"),
                     line);
    /* The API answer: errors only, one per line. */
    struct wm_err e;
    wm_err_clear(&e);
    wm_conf_diags_errors(&d, &e);
    const char *all = e.msg;
    size_t lines = 1;
    for (const char *p = all; *p != '\0'; p++) {
        lines += *p == '\n';
    }
    assert_int_equal(lines, 6);
    assert_null(strstr(all, "warning"));
    assert_non_null(strstr(all, "multi.toml:10:1: stream.aa: unknown key \"aa\" in [stream]"));
    wm_conf_diags_free(&d);
}

/* check_files: cert/key files must exist (the pair check needs real files). */
static void test_missing_cert_file(void **state)
{
    static const char text[] = "[[http.server]]\nbind_addr = \"127.0.0.1:1\"\n"
                               "cert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n";
    struct wm_conf *c;
    struct wm_conf_diags d;
    const struct wm_cdiag *e;

    (void)state;
    assert_int_equal(load_n("f.toml", text, strlen(text), true, &c, &d), -1);
    e = first_error(&d);
    assert_non_null(e);
    assert_int_equal(e->e.line, 3);
    assert_int_equal(e->e.col, 8);
    assert_string_equal(e->e.key, "http.server[0].cert");
    assert_non_null(strstr(e->e.msg, "certificate file \"/nonexistent/c.pem\": No such file"));
    assert_int_equal(d.nerrors, 1);
    wm_conf_diags_free(&d);
    /* Without check_files the same text is fine. */
    assert_int_equal(load_n("f.toml", text, strlen(text), false, &c, &d), 0);
    wm_conf_diags_free(&d);
    wm_conf_free(c);
}

/* ---- valid configurations ---- */

/* A clean file has no diagnostic at all (regression: sorting the empty
 * diagnostic list passed NULL to qsort, which UBSan aborts on). */
static void test_clean_file_has_no_diagnostics(void **state)
{
    static const char *const texts[][2] = {
        {"e.toml", ""},
        {"e.yaml", ""},
        {"p.toml", "[proxy]\nbind_addr = \"127.0.0.1:8090\"\n"},
        {"p.yaml", "proxy:\n  bind_addr: 127.0.0.1:8090\n"},
    };
    struct wm_conf *c;
    struct wm_conf_diags d;

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        assert_int_equal(load(texts[i][0], texts[i][1], &c, &d), 0);
        assert_int_equal(d.n, 0);
        assert_null(d.v);
        wm_conf_diags_free(&d);
        wm_conf_free(c);
    }
}

static const char same_toml[] =
    "control = \"127.0.0.1:9001\"\n"
    "disable_stdout = true\n"
    "disable_control = false\n"
    "pidfile = \"/tmp/x.pid\"\n"
    "default_level = \"debug\"\n"
    "control_token = \"tok\"\n"
    "log_file = \"/tmp/x.log\"\n"
    "workers = 3\n"
    "grace = \"2500ms\"\n"
    "[proxy]\n"
    "bind_addr = \"[::1]:8090\"\n"
    "flag = \"http socks5\"\n"
    "username = \"alice\"\n"
    "password = \"1234\"\n"
    "connect_timeout = 5\n"
    "idle_timeout = \"2m\"\n"
    "handshake_timeout = \"1500ms\"\n"
    "mode = \"client\"\n"
    "server = \"example.com:8091\"\n"
    "ts = true\n"
    "two_way_tls = true\n"
    "[[proxy.mappings]]\n"
    "name = \"web\"\n"
    "mode = \"http\"\n"
    "local_addr = \"127.0.0.1:8080\"\n"
    "domain = \"localhost\"\n"
    "headers = [\"proxy x-forward-for {client_ip}\", \"+ last-modified 'from proxy'\", "
    "\"- etag\"]\n"
    "[[proxy.mappings]]\n"
    "name = \"tcp\"\n"
    "mode = \"tcp\"\n"
    "local_addr = \"127.0.0.1:8081\"\n"
    "remote_port = 9000\n";

static const char same_yaml[] = "control: 127.0.0.1:9001\n"
                                "disable_stdout: true\n"
                                "disable_control: false\n"
                                "pidfile: /tmp/x.pid\n"
                                "default_level: debug\n"
                                "control_token: tok\n"
                                "log_file: /tmp/x.log\n"
                                "workers: 3\n"
                                "grace: 2500ms\n"
                                "proxy:\n"
                                "  bind_addr: \"[::1]:8090\"\n"
                                "  flag: http socks5\n"
                                "  username: alice\n"
                                "  password: 1234\n"
                                "  connect_timeout: 5\n"
                                "  idle_timeout: 2m\n"
                                "  handshake_timeout: 1500ms\n"
                                "  mode: client\n"
                                "  server: example.com:8091\n"
                                "  ts: true\n"
                                "  two_way_tls: true\n"
                                "  mappings:\n"
                                "    - name: web\n"
                                "      mode: http\n"
                                "      local_addr: 127.0.0.1:8080\n"
                                "      domain: localhost\n"
                                "      headers:\n"
                                "        - [proxy, x-forward-for, \"{client_ip}\"]\n"
                                "        - [+, last-modified, from proxy]\n"
                                "        - [-, etag]\n"
                                "    - name: tcp\n"
                                "      mode: tcp\n"
                                "      local_addr: 127.0.0.1:8081\n"
                                "      remote_port: 9000\n";

static void assert_str_same(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        assert_ptr_equal(a, b);
        return;
    }
    assert_string_equal(a, b);
}

static void test_toml_and_yaml_decode_alike(void **state)
{
    struct wm_conf *t = load_ok("same.toml", same_toml);
    struct wm_conf *y = load_ok("same.yaml", same_yaml);

    (void)state;
    /* Spot values first (both must be right, not just equal). */
    assert_string_equal(t->control, "127.0.0.1:9001");
    assert_true(t->disable_stdout);
    assert_false(t->disable_control);
    assert_int_equal(t->default_level, WM_LOG_DEBUG);
    assert_int_equal(t->workers, 3);
    assert_int_equal(t->grace_ms, 2500);
    assert_non_null(t->proxy);
    assert_string_equal(t->proxy->bind, "[::1]:8090");
    assert_int_equal(t->proxy->flags, WM_PROXY_FLAG_HTTP | WM_PROXY_FLAG_SOCKS5);
    assert_string_equal(t->proxy->password, "1234");
    assert_int_equal(t->proxy->connect_timeout_ms, 5000);
    assert_int_equal(t->proxy->idle_timeout_ms, 120000);
    assert_int_equal(t->proxy->handshake_timeout_ms, 1500);
    assert_int_equal(t->proxy->nmappings, 2);
    assert_int_equal(t->proxy->mappings[0].nheaders, 3);
    assert_int_equal(t->proxy->mappings[1].remote_port, 9000);

    assert_str_same(t->control, y->control);
    assert_int_equal(t->disable_stdout, y->disable_stdout);
    assert_int_equal(t->disable_control, y->disable_control);
    assert_str_same(t->pidfile, y->pidfile);
    assert_int_equal(t->default_level, y->default_level);
    assert_str_same(t->control_token, y->control_token);
    assert_str_same(t->log_file, y->log_file);
    assert_int_equal(t->workers, y->workers);
    assert_int_equal(t->grace_ms, y->grace_ms);
    assert_str_same(t->legacy_bind, y->legacy_bind);
    assert_int_equal(t->has_http, y->has_http);
    assert_int_equal(t->has_stream, y->has_stream);

    const struct wm_conf_proxy *a = t->proxy;
    const struct wm_conf_proxy *b = y->proxy;
    assert_non_null(b);
    assert_str_same(a->bind, b->bind);
    assert_int_equal(a->flags, b->flags);
    assert_str_same(a->mode, b->mode);
    assert_str_same(a->server, b->server);
    assert_str_same(a->username, b->username);
    assert_str_same(a->password, b->password);
    assert_int_equal(a->ts, b->ts);
    assert_int_equal(a->tc, b->tc);
    assert_int_equal(a->two_way_tls, b->two_way_tls);
    assert_int_equal(a->center, b->center);
    assert_str_same(a->cert, b->cert);
    assert_str_same(a->key, b->key);
    assert_int_equal(a->connect_timeout_ms, b->connect_timeout_ms);
    assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
    assert_int_equal(a->handshake_timeout_ms, b->handshake_timeout_ms);
    assert_int_equal(a->nmappings, b->nmappings);
    for (size_t i = 0; i < a->nmappings; i++) {
        const struct wm_conf_mapping *ma = &a->mappings[i];
        const struct wm_conf_mapping *mb = &b->mappings[i];
        assert_str_same(ma->name, mb->name);
        assert_str_same(ma->mode, mb->mode);
        assert_str_same(ma->local_addr, mb->local_addr);
        assert_str_same(ma->domain, mb->domain);
        assert_int_equal(ma->remote_port, mb->remote_port);
        assert_int_equal(ma->nheaders, mb->nheaders);
        for (size_t j = 0; j < ma->nheaders; j++) {
            assert_int_equal(ma->headers[j].request, mb->headers[j].request);
            assert_int_equal(ma->headers[j].op, mb->headers[j].op);
            assert_str_same(ma->headers[j].name, mb->headers[j].name);
            assert_str_same(ma->headers[j].value, mb->headers[j].value);
        }
    }
    /* The header rules mean what wmproxy says. */
    const struct wm_conf_header *h = a->mappings[0].headers;
    assert_true(h[0].request);
    assert_int_equal(h[0].op, '=');
    assert_string_equal(h[0].name, "x-forward-for");
    assert_string_equal(h[0].value, "{client_ip}");
    assert_false(h[1].request);
    assert_int_equal(h[1].op, '+');
    assert_string_equal(h[1].value, "from proxy");
    assert_int_equal(h[2].op, '-');
    assert_null(h[2].value);
    wm_conf_free(t);
    wm_conf_free(y);
}

static void test_defaults(void **state)
{
    struct wm_conf *c = load_ok("d.toml", "[proxy]\n");

    (void)state;
    assert_string_equal(c->control, "127.0.0.1:8837");
    assert_int_equal(c->default_level, -2);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->grace_ms, WM_SHUTDOWN_GRACE_MS);
    assert_null(c->control_token);
    assert_string_equal(c->proxy->bind, "127.0.0.1:8090");
    assert_int_equal(c->proxy->flags, WM_PROXY_FLAG_ALL);
    assert_int_equal(c->proxy->connect_timeout_ms, WM_CONNECT_TIMEOUT_MS);
    assert_int_equal(c->proxy->idle_timeout_ms, WM_IDLE_TIMEOUT_MS);
    assert_int_equal(c->proxy->handshake_timeout_ms, WM_HANDSHAKE_TIMEOUT_MS);
    assert_null(c->proxy->username);
    wm_conf_free(c);
    /* No [proxy]: nothing to serve, and that is valid. */
    c = load_ok("n.yaml", "workers: 2\n");
    assert_null(c->proxy);
    wm_conf_free(c);
    /* YAML `key:` without a value is the same as leaving it out. */
    c = load_ok("n.yaml", "proxy:\n  username:\n  password: ~\n  bind_addr:\n");
    assert_null(c->proxy->username);
    assert_string_equal(c->proxy->bind, "127.0.0.1:8090");
    wm_conf_free(c);
}

/* wmproxy 0.1 layout: a top-level bind_addr runs the forward proxy there. */
static void test_legacy_bind(void **state)
{
    struct wm_conf *c = load_ok("l.yaml", "bind_addr: 127.0.0.1:7000\n");

    (void)state;
    assert_non_null(c->proxy);
    assert_string_equal(c->proxy->bind, "127.0.0.1:7000");
    assert_int_equal(c->proxy->flags, WM_PROXY_FLAG_ALL);
    wm_conf_free(c);
}

/* openssl_records (our previous release: keep OpenSSL's records on the
 * carrier) still loads, with one warning that it is ignored; a wrong type
 * is still an error. */
static void test_openssl_records_ignored(void **state)
{
    static const char *const files[][2] = {
        {"o.toml", "[proxy]\nopenssl_records = true\n"},
        {"o.yaml", "proxy:\n  openssl_records: false\n"},
    };
    struct wm_conf *c = NULL;
    struct wm_conf_diags d;
    char line[1400];

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        assert_int_equal(load(files[i][0], files[i][1], &c, &d), 0);
        assert_non_null(c);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.nerrors, 0);
        assert_true(d.v[0].warning);
        assert_int_equal(d.v[0].e.line, 2);
        assert_string_equal(d.v[0].e.key, "proxy.openssl_records");
        wm_conf_diag_format(&d, 0, line, sizeof(line));
        assert_non_null(strstr(line, "ignored (carrier records are always OpenSSL's"));
        wm_conf_diags_free(&d);
        wm_conf_free(c);
    }
    assert_int_equal(load("o.toml", "[proxy]\nopenssl_records = 1\n", &c, &d), -1);
    assert_null(c);
    assert_int_equal(d.nerrors, 1);
    wm_conf_diags_free(&d);
}

/* YAML plain scalars where a string is expected keep their source text. */
static void test_yaml_plain_scalars_as_strings(void **state)
{
    struct wm_conf *c = load_ok("s.yaml", "proxy:\n  username: 0x10\n  password: 1234\n");

    (void)state;
    assert_string_equal(c->proxy->username, "0x10");
    assert_string_equal(c->proxy->password, "1234");
    wm_conf_free(c);
    c = load_ok("s.yaml", "proxy:\n  username: true\n  password: 1.50\n");
    assert_string_equal(c->proxy->username, "true");
    assert_string_equal(c->proxy->password, "1.50");
    wm_conf_free(c);
}

static void test_flags(void **state)
{
    static const struct {
        const char *name;
        const char *text;
        unsigned flags;
    } cases[] = {
        {"f.toml", "[proxy]\nflag = 7\n", WM_PROXY_FLAG_ALL},
        {"f.toml", "[proxy]\nflag = 1\n", WM_PROXY_FLAG_HTTP},
        {"f.toml", "[proxy]\nflag = \"6\"\n", WM_PROXY_FLAG_HTTPS | WM_PROXY_FLAG_SOCKS5},
        {"f.toml", "[proxy]\nflag = \"http socks5\"\n", WM_PROXY_FLAG_HTTP | WM_PROXY_FLAG_SOCKS5},
        {"f.toml", "[proxy]\nflag = \"https\"\n", WM_PROXY_FLAG_HTTPS},
        {"f.yaml", "proxy:\n  flag: 7\n", WM_PROXY_FLAG_ALL},
        {"f.yaml", "proxy:\n  flag: http https socks5\n", WM_PROXY_FLAG_ALL},
        {"f.yaml", "proxy:\n  flag: socks5\n", WM_PROXY_FLAG_SOCKS5},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wm_conf *c = load_ok(cases[i].name, cases[i].text);
        if (c->proxy->flags != cases[i].flags) {
            fail_msg("%s: flags %u, want %u", cases[i].text, c->proxy->flags, cases[i].flags);
        }
        wm_conf_free(c);
    }
}

/* The value forms, straight and through the config. */
static void test_units(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms; /* UINT64_MAX: invalid */
    } durations[] = {
        {"0", 0},          {"30", 30000},     {"30s", 30000},      {"250ms", 250},
        {"5m", 300000},    {"5min", 300000},  {"1h", 3600000},     {"2d", 172800000},
        {"", UINT64_MAX},  {"s", UINT64_MAX}, {"5x", UINT64_MAX},  {"-1s", UINT64_MAX},
        {"1.5s", UINT64_MAX}, {"5 s", UINT64_MAX}, {"5S", UINT64_MAX},
        {"99999999999999999999s", UINT64_MAX},
    };
    static const struct {
        const char *s;
        uint64_t bytes;
    } sizes[] = {
        {"0", 0},
        {"512", 512},
        {"4k", 4096},
        {"4K", 4096},
        {"10m", 10485760},
        {"10mb", 10485760},
        {"10MB", 10485760},
        {"1g", 1073741824},
        {"7b", 7},
        {"", UINT64_MAX},
        {"k", UINT64_MAX},
        {"10q", UINT64_MAX},
        {"10kbb", UINT64_MAX},
        {"-1", UINT64_MAX},
        {"1.5m", UINT64_MAX},
    };
    static const struct {
        const char *s;
        int ok;
        uint64_t amount;
        uint32_t per_ms;
        bool requests;
    } rates[] = {
        {"4m/s", 1, 4194304, 1000, false},   {"512/s", 1, 512, 1000, false},
        {"1000r/s", 1, 1000, 1000, true},    {"60r/m", 1, 60, 60000, true},
        {"1k/m", 1, 1024, 60000, false},     {"4m", 0, 0, 0, false},
        {"4m/h", 0, 0, 0, false},            {"0r/s", 0, 0, 0, false},
        {"0/s", 0, 0, 0, false},             {"r/s", 0, 0, 0, false},
        {"/s", 0, 0, 0, false},              {"1.5r/s", 0, 0, 0, false},
    };
    struct wm_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        uint64_t ms = 12345;
        int r = wm_parse_duration_ms(durations[i].s, &ms, &err);
        if (durations[i].ms == UINT64_MAX) {
            if (r != -1 || strstr(err.msg, "expected a duration") == NULL) {
                fail_msg("duration \"%s\" accepted", durations[i].s);
            }
        } else if (r != 0 || ms != durations[i].ms) {
            fail_msg("duration \"%s\": r=%d ms=%llu", durations[i].s, r, (unsigned long long)ms);
        }
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t b = 12345;
        int r = wm_parse_size(sizes[i].s, &b, &err);
        if (sizes[i].bytes == UINT64_MAX) {
            if (r != -1 || strstr(err.msg, "expected a size") == NULL) {
                fail_msg("size \"%s\" accepted", sizes[i].s);
            }
        } else if (r != 0 || b != sizes[i].bytes) {
            fail_msg("size \"%s\": r=%d b=%llu", sizes[i].s, r, (unsigned long long)b);
        }
    }
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        struct wm_rate rt;
        memset(&rt, 0, sizeof(rt));
        int r = wm_parse_rate(rates[i].s, &rt, &err);
        if (!rates[i].ok) {
            if (r != -1 || strstr(err.msg, "expected a rate") == NULL) {
                fail_msg("rate \"%s\" accepted", rates[i].s);
            }
        } else if (r != 0 || rt.amount != rates[i].amount || rt.per_ms != rates[i].per_ms ||
                   rt.requests != rates[i].requests) {
            fail_msg("rate \"%s\": r=%d amount=%llu per=%u req=%d", rates[i].s, r,
                     (unsigned long long)rt.amount, rt.per_ms, rt.requests);
        }
    }
    /* Through the config: a number is seconds, a string carries its unit. */
    struct wm_conf *c = load_ok("u.toml", "grace = 0\n[proxy]\nconnect_timeout = 3\n"
                                          "idle_timeout = \"250ms\"\nhandshake_timeout = \"1m\"\n");
    assert_int_equal(c->grace_ms, 0);
    assert_int_equal(c->proxy->connect_timeout_ms, 3000);
    assert_int_equal(c->proxy->idle_timeout_ms, 250);
    assert_int_equal(c->proxy->handshake_timeout_ms, 60000);
    wm_conf_free(c);
    c = load_ok("u.yaml", "http:\n  max_read_buf: 10m\n  rate_limit: 4m/s\n"
                          "  limit_req_zone: {z: \"{client_ip} limit=10m rate=1000r/s\"}\n"
                          "  limit_req: zone=z burst=5\n");
    assert_true(c->has_http);
    wm_conf_free(c);
}

/* Every prefix of a valid file either loads or fails with a positioned
 * error; nothing reads past the end (ASan) or crashes. */
static void test_truncated(void **state)
{
    static const char *const texts[][2] = {{"t.toml", same_toml}, {"t.yaml", same_yaml}};

    (void)state;
    for (size_t k = 0; k < 2; k++) {
        size_t n = strlen(texts[k][1]);
        for (size_t len = 0; len <= n; len++) {
            struct wm_conf *c;
            struct wm_conf_diags d;
            int r = load_n(texts[k][0], texts[k][1], len, false, &c, &d);
            if (r < 0) {
                const struct wm_cdiag *e = first_error(&d);
                assert_non_null(e);
                if (e->e.line < 1) {
                    fail_msg("%s prefix %zu: error without a line: %s", texts[k][0], len,
                             e->e.msg);
                }
                assert_null(c);
            } else {
                assert_non_null(c);
                assert_int_equal(d.nerrors, 0);
            }
            wm_conf_diags_free(&d);
            wm_conf_free(c);
        }
    }
}

/* `wmproxy reload -c FILE` reads control and control_token even from a
 * file that does not validate (or does not parse). */
static void test_peek_control(void **state)
{
    char why[256];
    static const struct {
        const char *sfx;
        const char *text;
        const char *addr;
        const char *token;
    } cases[] = {
        {".toml", "control = \"127.0.0.1:9\"\ncontrol_token = \"t\"\nworkers = 0\n",
         "127.0.0.1:9", "t"},
        {".yaml", "control: 127.0.0.1:10\nproxy:\n  nonsense: 1\n", "127.0.0.1:10", "keep"},
        /* Syntax errors further down: the lines before them still count. */
        {".toml", "control = \"127.0.0.1:11\"\n[proxy\n", "127.0.0.1:11", "keep"},
        {".toml", "control_token = \"t2\"\ncontrol = \"127.0.0.1:12\"\n[proxy]\nflag = \n",
         "127.0.0.1:12", "t2"},
        {".yaml", "control: 127.0.0.1:13\ncontrol_token: t3\nproxy:\n  flag: [7\n  x: 1\n",
         "127.0.0.1:13", "t3"},
        {".toml", "control = \"127.0.0.1:14\n", "keep", "keep"},
        {".toml", "control = 5\n", "keep", "keep"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[64];
        char addr[64] = "keep";
        char token[64] = "keep";
        snprintf(path, sizeof(path), "/tmp/wm-test-peek-%d%s", (int)getpid(), cases[i].sfx);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(cases[i].text, f);
        fclose(f);
        assert_int_equal(wm_conf_peek_control(path, addr, sizeof(addr), token, sizeof(token),
                                              why, sizeof(why)),
                         0);
        unlink(path);
        assert_string_equal(addr, cases[i].addr);
        assert_string_equal(token, cases[i].token);
    }
    char addr[64] = "keep";
    char token[64] = "keep";
    assert_int_equal(wm_conf_peek_control("/nonexistent/x.toml", addr, sizeof(addr), token,
                                          sizeof(token), why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "No such file"));
    /* A FIFO would block the reader until a writer came: refused at once. */
    char fifo[64];
    snprintf(fifo, sizeof(fifo), "/tmp/wm-test-peek-fifo-%d.toml", (int)getpid());
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(wm_conf_peek_control(fifo, addr, sizeof(addr), token, sizeof(token), why,
                                          sizeof(why)),
                     -1);
    unlink(fifo);
    assert_string_equal(why, "cannot read: not a regular file");
}

/* allow_ports lists: frp's form, strict. */
static void test_port_list(void **state)
{
    static const char *const bad[] = {"", " ", "0", "65536", "3000-2000", "a", "1,", ",1",
                                      "1-", "1 2", "-5", "1-2-3", "80;443", "99999999999"};
    static uint8_t bits[WM_PORT_BITS_BYTES];
    char msg[256];

    (void)state;
    memset(bits, 0, sizeof(bits));
    assert_int_equal(wm_parse_port_list(" 2000-3000, 3001,4000-50000 ", bits, msg, sizeof(msg)), 0);
    for (unsigned p = 1; p <= 65535; p++) {
        bool want = (p >= 2000 && p <= 3001) || (p >= 4000 && p <= 50000);
        if (((bits[p / 8] >> (p % 8)) & 1) != want) {
            fail_msg("port %u: bit %d", p, !want);
        }
    }
    assert_int_equal(bits[0] & 1, 0); /* port 0 never */
    memset(bits, 0, sizeof(bits));
    assert_int_equal(wm_parse_port_list("1-65535", bits, msg, sizeof(msg)), 0);
    assert_int_equal(bits[65535 / 8] >> (65535 % 8) & 1, 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg[0] = '\0';
        if (wm_parse_port_list(bad[i], NULL, msg, sizeof(msg)) != -1) {
            fail_msg("\"%s\" accepted", bad[i]);
        }
        if (bad[i][0] != '\0' && bad[i][0] != ' ' && msg[0] == '\0') {
            fail_msg("\"%s\": no message", bad[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_list),
        cmocka_unit_test(test_bad_cases),
        cmocka_unit_test(test_every_error_in_file_order),
        cmocka_unit_test(test_missing_cert_file),
        cmocka_unit_test(test_clean_file_has_no_diagnostics),
        cmocka_unit_test(test_toml_and_yaml_decode_alike),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_legacy_bind),
        cmocka_unit_test(test_openssl_records_ignored),
        cmocka_unit_test(test_yaml_plain_scalars_as_strings),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_peek_control),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
