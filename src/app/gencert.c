/*
 * app/gencert.c - `wmproxy gen-cert [--ca-dir DIR] [--days N]
 * server NAME... | client NAME` (see gencert.h).
 *
 * DIR/ca.crt + ca.key are made on first use and reused after; a server
 * certificate goes to DIR/server.crt + server.key with every NAME as a SAN,
 * a client certificate to DIR/client-NAME.crt + .key. Keys are 0600 and
 * DIR is made 0700.
 */
#include "app/gencert.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "net/certs.h"

#define GENCERT_PATH_MAX 4096

static const char usage[] =
    "usage: wmproxy gen-cert [--ca-dir DIR] [--days N] server NAME... | client NAME\n"
    "\n"
    "Makes a private CA (DIR/ca.crt, DIR/ca.key; made once, reused after) and\n"
    "  server NAME...   DIR/server.crt + server.key, every NAME (a DNS name or an\n"
    "                   IP address, [v6] too) in its subjectAltName, for `tc = true`\n"
    "  client NAME      DIR/client-NAME.crt + .key, for `ts = true` with\n"
    "                   `two_way_tls = true` on the server\n"
    "Keys are EC P-256, written 0600. Both ends trust DIR/ca.crt (`ca = ...`).\n"
    "\n"
    "  -d, --ca-dir DIR   where the CA and the certificates go (default: .)\n"
    "      --days N       validity of new certificates (default: 825; CA: 3650)\n"
    "  -h, --help         this text\n";

static void path_of(char *out, const char *dir, const char *name, const char *ext)
{
    snprintf(out, GENCERT_PATH_MAX, "%s/%s%s", dir, name, ext);
}

static int report(const struct wm_err *e)
{
    char buf[1024];

    fprintf(stderr, "wmproxy gen-cert: %s\n", wm_err_format(e, buf, sizeof(buf)));
    return 1;
}

/* The CA of dir: loaded, or made and saved when dir has none. */
static int load_or_make_ca(const char *dir, X509 **ca, EVP_PKEY **key, struct wm_err *err)
{
    char crt[GENCERT_PATH_MAX];
    char k[GENCERT_PATH_MAX];
    char fp[WM_CERT_FP_MAX];
    static const struct wm_cert_req req = {WM_CERT_CA, "wmproxy private CA", NULL, 0, 3650};

    path_of(crt, dir, "ca", ".crt");
    path_of(k, dir, "ca", ".key");
    if (access(crt, F_OK) == 0) {
        return wm_cert_load(crt, k, ca, key, err);
    }
    if (access(k, F_OK) == 0) { /* never write over a CA's key */
        return wm_err_set(err, k, 0, 0, NULL,
                          "there is no %s: put it back, or move the key away to make a new CA",
                          crt);
    }
    if (wm_cert_make(&req, NULL, NULL, ca, key, err) < 0 ||
        wm_cert_save(crt, k, *ca, *key, err) < 0) {
        return -1;
    }
    wm_cert_fingerprint(*ca, fp, sizeof(fp));
    printf("made CA %s (%s)\n", crt, fp);
    return 0;
}

static bool safe_file_name(const char *s)
{
    if (s[0] == '\0' || s[0] == '.' || strlen(s) > 64) {
        return false;
    }
    for (; *s; s++) {
        if (!(((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_')) {
            return false;
        }
    }
    return true;
}

#define GENCERT_CN_MAX 64 /* X.509's upper bound of a commonName */

/* Server names as given to a client: "[v6]" is the address v6; a name
 * that cannot be one (empty, with a space or a comma) is refused. Sets
 * *cn to the first name that fits a commonName. */
static bool server_names(char **names, size_t n, const char **cn)
{
    *cn = "wmproxy server";
    for (size_t i = n; i-- > 0;) {
        size_t len = strlen(names[i]);
        if (len > 2 && names[i][0] == '[' && names[i][len - 1] == ']') {
            names[i][len - 1] = '\0';
            names[i]++;
            len -= 2;
        }
        if (len == 0 || strpbrk(names[i], ", \t\r\n") != NULL) {
            fprintf(stderr, "wmproxy gen-cert: bad name \"%s\"\n", names[i]);
            return false;
        }
        if (len <= GENCERT_CN_MAX) {
            *cn = names[i];
        }
    }
    return true;
}

static int issue(const char *dir, const char *kind, char **names, size_t n, int days)
{
    struct wm_err err;
    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    char base[128];
    char crt[GENCERT_PATH_MAX];
    char kp[GENCERT_PATH_MAX];
    char fp[WM_CERT_FP_MAX];
    bool server = strcmp(kind, "server") == 0;
    struct wm_cert_req req = {server ? WM_CERT_SERVER : WM_CERT_CLIENT, names[0],
                              (const char *const *)names, server ? n : 0, days};
    int rc = 1;

    wm_err_clear(&err);
    if (server) {
        if (!server_names(names, n, &req.cn)) {
            return 2;
        }
        snprintf(base, sizeof(base), "server");
    } else if (safe_file_name(names[0])) {
        snprintf(base, sizeof(base), "client-%s", names[0]);
    } else {
        fprintf(stderr, "wmproxy gen-cert: client name \"%s\": use letters, digits, . - _\n",
                names[0]);
        return 2;
    }
    path_of(crt, dir, base, ".crt");
    path_of(kp, dir, base, ".key");
    if (load_or_make_ca(dir, &ca, &cakey, &err) < 0 ||
        wm_cert_make(&req, ca, cakey, &x, &k, &err) < 0 || wm_cert_save(crt, kp, x, k, &err) < 0) {
        report(&err);
        goto done;
    }
    wm_cert_fingerprint(x, fp, sizeof(fp));
    printf("made %s certificate %s, key %s (%s)\n", kind, crt, kp, fp);
    rc = 0;
done:
    X509_free(x);
    EVP_PKEY_free(k);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return rc;
}

int wm_gencert_main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"ca-dir", required_argument, NULL, 'd'},
        {"days", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = ".";
    uint64_t days = 825;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "+d:h", longs, NULL)) != -1) {
        if (c == 'd') {
            dir = optarg;
        } else if (c == 'D' && wm_parse_u64(optarg, strlen(optarg), 36500, &days) == 0 &&
                   days > 0) {
            continue;
        } else if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 2 || (strcmp(argv[0], "server") != 0 && strcmp(argv[0], "client") != 0) ||
        (strcmp(argv[0], "client") == 0 && argc != 2)) {
        fputs(usage, stderr);
        return 2;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "wmproxy gen-cert: cannot make %s: %s\n", dir, strerror(errno));
        return 1;
    }
    return issue(dir, argv[0], argv + 1, (size_t)argc - 1, (int)days);
}
