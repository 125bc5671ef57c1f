/*
 * tests/unit/net/test_tlspin.c - fingerprints as users type them
 * (net/certs.h) and the known_hosts file of trust on first use
 * (net/tlspin.h).
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

#include "core/fsutil.h"
#include "net/certs.h"
#include "net/tlspin.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FP_A "SHA256:" HEX64
#define FP_B "SHA256:" "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static void test_fp_parse(void **state)
{
    static const struct {
        const char *in;
        int r;
    } cases[] = {
        {FP_A, 0},
        {"sha256:" HEX64, 0},
        {HEX64, 0},
        {"SHA256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF", 0},
        {"sha256 Fingerprint=01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:"
         "CD:EF:01:23:45:67:89:AB:CD:EF", 0},
        {"", -1},
        {"SHA256:", -1},
        {"SHA256:" HEX64 "00", -1},                  /* too long */
        {"SHA256:0123456789abcdef", -1},             /* too short */
        {"SHA256:g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", -1},
        {"SHA256::" HEX64, -1},                      /* a leading colon */
        {"SHA256:01::23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", -1},
        {"SHA256:" HEX64 ":", -1},                   /* a trailing colon */
        {"MD5:" HEX64, -1},
    };
    char out[WM_CERT_FP_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = wm_cert_fp_parse(cases[i].in, out, sizeof(out));
        if (r != cases[i].r) {
            fail_msg("case %zu \"%s\": %d", i, cases[i].in, r);
        }
        if (r == 0) {
            assert_string_equal(out, FP_A);
        }
    }
    assert_int_equal(wm_cert_fp_parse(FP_A, out, WM_CERT_FP_MAX - 1), -1); /* no room */
}

static char dir[64];

static int tmp_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wm-unit-kh-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int tmp_teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_known_hosts(void **state)
{
    char path[128];
    char link[128];
    char err[256];
    char other[WM_CERT_FP_MAX];
    char *text;
    size_t len;
    int line;
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/a/b/known_hosts", dir);
    /* no file: no line for anyone */
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_A, &line, other, err, sizeof(err)), -2);
    /* the first pin makes the directories (0700) and the file (0600) */
    assert_int_equal(wm_known_hosts_add(path, "h:1", FP_A, &line, other, err, sizeof(err)), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(err, sizeof(err), "%s/a/b", dir);
    assert_int_equal(stat(err, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_A, &line, other, err, sizeof(err)), 1);
    assert_int_equal(line, 1);
    /* another certificate: the line that pins the other, and its value */
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_B, &line, other, err, sizeof(err)), 0);
    assert_int_equal(line, 1);
    assert_string_equal(other, FP_A);
    assert_int_equal(wm_known_hosts_check(path, "h:2", FP_A, &line, other, err, sizeof(err)), -2);
    /* comments, blank lines, any spelling of a fingerprint; a file
     * without a final newline gets one before the new line */
    write_file(path, "# pins\n\n  h:1   " HEX64 "  # old\n[::1]:9 " FP_B "\nH:1 " FP_B);
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_B, &line, other, err, sizeof(err)), 1);
    assert_int_equal(line, 5); /* any line of the peer matches; names ignore case */
    assert_int_equal(wm_known_hosts_check(path, "[::1]:9", FP_A, &line, other, err,
                                          sizeof(err)), 0);
    assert_int_equal(line, 4);
    assert_string_equal(other, FP_B);
    assert_int_equal(wm_known_hosts_add(path, "x:3", FP_A, &line, other, err, sizeof(err)), 0);
    assert_int_equal(wm_file_read(path, 4096, &text, &len), 0);
    assert_non_null(strstr(text, "H:1 " FP_B "\nx:3 " FP_A "\n"));
    free(text);
    /* pinned by another process between our check and our add: the
     * same certificate is not written twice, another one is not added */
    assert_int_equal(wm_known_hosts_add(path, "x:3", FP_A, &line, other, err, sizeof(err)), 0);
    assert_int_equal(wm_known_hosts_add(path, "[::1]:9", FP_A, &line, other, err, sizeof(err)),
                     -2);
    assert_int_equal(line, 4);
    assert_string_equal(other, FP_B);
    assert_int_equal(wm_file_read(path, 4096, &text, &len), 0);
    assert_non_null(strstr(text, "H:1 " FP_B "\nx:3 " FP_A "\n"));
    assert_null(strstr(text, "[::1]:9 " FP_A));
    assert_null(strstr(strstr(text, "x:3") + 1, "x:3"));
    free(text);
    /* a line of the peer that pins nothing readable (a typo, a cut
     * paste): an error with its line, never "no line" (a first use) */
    write_file(path, "x:3 " FP_A "\nh:1 SHA256:0123456789abcdef\n");
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_A, &line, other, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 2: SHA256:0123456789abcdef"));
    write_file(path, "h:1 # no fingerprint\n");
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_A, &line, other, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 1"));
    assert_int_equal(wm_known_hosts_check(path, "x:3", FP_A, &line, other, err, sizeof(err)), -2);
    write_file(path, "h:1 " FP_B "\nh:1 bad\n");
    assert_int_equal(wm_known_hosts_check(path, "h:1", FP_B, &line, other, err, sizeof(err)), 1);
    /* lines ended by CR LF (counted once) or by CR alone (an old editor) */
    write_file(path, "a:1 " FP_A "\r\nb:2 " FP_A "\rc:3 " FP_B "\r");
    assert_int_equal(wm_known_hosts_check(path, "b:2", FP_B, &line, other, err, sizeof(err)), 0);
    assert_int_equal(line, 2);
    assert_int_equal(wm_known_hosts_check(path, "c:3", FP_A, &line, other, err, sizeof(err)), 0);
    assert_int_equal(line, 3);
    /* a name with its root's trailing dot is the same name */
    write_file(path, "Tunnel.Example.:7 " FP_A "\nother:7 " FP_B "\n");
    assert_int_equal(wm_known_hosts_check(path, "tunnel.example:7", FP_A, &line, other, err,
                                          sizeof(err)), 1);
    assert_int_equal(wm_known_hosts_check(path, "tunnel.example.:7", FP_B, &line, other, err,
                                          sizeof(err)), 0);
    assert_int_equal(wm_known_hosts_check(path, "other.:7", FP_B, &line, other, err,
                                          sizeof(err)), 1);
    assert_int_equal(wm_known_hosts_check(path, "tunnel.example:8", FP_A, &line, other, err,
                                          sizeof(err)), -2);
    write_file(path, "x:3 " FP_A "\n");
    /* a symlink (a known_hosts kept elsewhere) is written through, not
     * replaced by a file of its own */
    snprintf(link, sizeof(link), "%s/link", dir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(wm_known_hosts_add(link, "y:4", FP_B, &line, other, err, sizeof(err)), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(wm_file_read(path, 4096, &text, &len), 0);
    assert_string_equal(text, "x:3 " FP_A "\ny:4 " FP_B "\n");
    free(text);
    /* unreadable: an error, never "no line" */
    assert_int_equal(chmod(path, 0), 0);
    if (access(path, R_OK) != 0) { /* root reads anyway */
        assert_int_equal(wm_known_hosts_check(path, "x:3", FP_A, &line, other, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "cannot read"));
    }
}

static void test_dirname(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(wm_dirname("a/b/c", out, sizeof(out)), 0);
    assert_string_equal(out, "a/b");
    assert_int_equal(wm_dirname("c", out, sizeof(out)), 0);
    assert_string_equal(out, ".");
    assert_int_equal(wm_dirname("/c", out, sizeof(out)), 0);
    assert_string_equal(out, "/");
    assert_int_equal(wm_dirname("0123456789abcdefgh/c", out, sizeof(out)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp_parse),
        cmocka_unit_test_setup_teardown(test_known_hosts, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_dirname),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
