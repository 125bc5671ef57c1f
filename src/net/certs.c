/*
 * net/certs.c - certificates we make and pin (see certs.h).
 */
#include "net/certs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "net/addr.h"

static int ossl_fail(struct wm_err *err, const char *what)
{
    char e[200] = "";

    ERR_error_string_n(ERR_get_error(), e, sizeof(e));
    ERR_clear_error();
    return wm_err_set(err, NULL, 0, 0, NULL, "%s: %s", what, e[0] ? e : "failed");
}

/* One X509v3 extension from its config-style text. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return -1;
    }
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* "DNS:a,IP:127.0.0.1,..." from the request's names. */
static int san_text(const struct wm_cert_req *req, char *out, size_t cap, struct wm_err *err)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < req->nsans; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        const char *s = req->sans[i];
        bool ip = wm_addr_from_ip(s, 0, &ss, &len) == 0;
        if (s[0] == '\0' || strpbrk(s, ", \t\r\n") != NULL) {
            return wm_err_set(err, NULL, 0, 0, NULL, "bad name \"%s\"", s);
        }
        int w = snprintf(out + n, cap - n, "%s%s:%s", n ? "," : "", ip ? "IP" : "DNS", s);
        if (w < 0 || (size_t)w >= cap - n) {
            return wm_err_set(err, NULL, 0, 0, NULL, "too many names");
        }
        n += (size_t)w;
    }
    return 0;
}

static int set_extensions(X509 *x, X509 *issuer, const struct wm_cert_req *req,
                          struct wm_err *err)
{
    char sans[2048];
    int r = 0;

    r |= add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer != x) {
        r |= add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    }
    switch (req->kind) {
    case WM_CERT_CA:
        r |= add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        r |= add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
        break;
    case WM_CERT_SERVER:
    case WM_CERT_CLIENT:
        r |= add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        r |= add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
        r |= add_ext(x, issuer, NID_ext_key_usage,
                     req->kind == WM_CERT_SERVER ? "serverAuth" : "clientAuth");
        break;
    }
    if (r != 0) {
        return ossl_fail(err, "certificate extensions");
    }
    if (req->nsans > 0) {
        if (san_text(req, sans, sizeof(sans), err) < 0) {
            return -1;
        }
        if (add_ext(x, issuer, NID_subject_alt_name, sans) < 0) {
            return ossl_fail(err, "subjectAltName");
        }
    }
    return 0;
}

int wm_cert_make(const struct wm_cert_req *req, X509 *issuer, EVP_PKEY *issuer_key, X509 **cert,
                 EVP_PKEY **key, struct wm_err *err)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;

    *cert = NULL;
    *key = NULL;
    if (k == NULL || x == NULL || RAND_bytes(serial, sizeof(serial)) != 1) {
        ossl_fail(err, "cannot generate a key");
        goto fail;
    }
    serial[0] &= 0x7f; /* a positive serial number, 127 random bits */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_set_version(x, 2) != 1 || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)req->days * 86400) == NULL ||
        X509_set_pubkey(x, k) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)req->cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)) != 1) {
        ossl_fail(err, "cannot build the certificate");
        goto fail;
    }
    if (set_extensions(x, issuer != NULL ? issuer : x, req, err) < 0) {
        goto fail;
    }
    if (X509_sign(x, issuer_key != NULL ? issuer_key : k, EVP_sha256()) == 0) {
        ossl_fail(err, "cannot sign the certificate");
        goto fail;
    }
    BN_free(bn);
    *cert = x;
    *key = k;
    return 0;
fail:
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    return -1;
}

#define CERT_TMP_MAX 4096

/* path + ".tmp" into tmp (CERT_TMP_MAX bytes). -1: too long. */
static int tmp_path(const char *path, char *tmp)
{
    return snprintf(tmp, CERT_TMP_MAX, "%s.tmp", path) >= CERT_TMP_MAX ? -1 : 0;
}

/* Remove path + ".tmp" if it is there. */
static void drop_tmp(const char *path)
{
    char tmp[CERT_TMP_MAX];

    if (tmp_path(path, tmp) == 0) {
        unlink(tmp);
    }
}

/* Write cert or key as PEM to a new file path + ".tmp" opened with mode
 * (nothing is replaced yet: save_commit renames it over path). */
static int write_pem_tmp(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key,
                         struct wm_err *err)
{
    char tmp[CERT_TMP_MAX];
    int fd;
    FILE *f;
    int ok;

    if (tmp_path(path, tmp) < 0) {
        return wm_err_set(err, path, 0, 0, NULL, "path too long");
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return wm_err_set(err, path, 0, 0, NULL, "cannot write %s: %s", tmp, strerror(e));
    }
    ok = cert != NULL ? PEM_write_X509(f, cert)
                      : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0 || ok != 1) {
        unlink(tmp);
        return wm_err_set(err, path, 0, 0, NULL, "cannot write the PEM file %s", tmp);
    }
    return 0;
}

/* Rename path + ".tmp" over path. */
static int save_commit(const char *path, struct wm_err *err)
{
    char tmp[CERT_TMP_MAX];

    if (tmp_path(path, tmp) < 0 || rename(tmp, path) < 0) {
        return wm_err_set(err, path, 0, 0, NULL, "cannot replace: %s", strerror(errno));
    }
    return 0;
}

int wm_cert_save(const char *cert_path, const char *key_path, X509 *cert, EVP_PKEY *key,
                 struct wm_err *err)
{
    /* Both new files are written before either replaces the old one: a
     * failed write (disk full, permissions) leaves the old pair whole, not
     * a new key beside the old certificate. What failed leaves no .tmp. */
    if (write_pem_tmp(key_path, 0600, NULL, key, err) < 0 ||
        write_pem_tmp(cert_path, 0644, cert, NULL, err) < 0 || save_commit(key_path, err) < 0 ||
        save_commit(cert_path, err) < 0) {
        drop_tmp(key_path);
        drop_tmp(cert_path);
        return -1;
    }
    return 0;
}

int wm_cert_load(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key,
                 struct wm_err *err)
{
    char why[64];
    FILE *f;

    *cert = NULL;
    *key = NULL;
    if (wm_file_check_regular(cert_path, why, sizeof(why)) < 0) {
        return wm_err_set(err, cert_path, 0, 0, NULL, "cannot read: %s", why);
    }
    if (wm_file_check_regular(key_path, why, sizeof(why)) < 0) {
        return wm_err_set(err, key_path, 0, 0, NULL, "cannot read: %s", why);
    }
    f = fopen(cert_path, "r");
    if (f == NULL) {
        return wm_err_set(err, cert_path, 0, 0, NULL, "cannot read: %s", strerror(errno));
    }
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(key_path, "r");
    if (f == NULL) {
        X509_free(*cert);
        *cert = NULL;
        return wm_err_set(err, key_path, 0, 0, NULL, "cannot read: %s", strerror(errno));
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*cert == NULL || *key == NULL || X509_check_private_key(*cert, *key) != 1) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
        ERR_clear_error();
        return wm_err_set(err, cert_path, 0, 0, NULL,
                          "not a PEM certificate matching the key in %s", key_path);
    }
    return 0;
}

int wm_cert_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (u != NULL) {
        *(bool *)u = true;
    }
    return -1;
}

void wm_cert_fingerprint(X509 *cert, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    size_t k;

    if (cap < WM_CERT_FP_MAX || X509_digest(cert, EVP_sha256(), md, &n) != 1) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return;
    }
    memcpy(out, "SHA256:", 7);
    k = 7;
    for (unsigned int i = 0; i < n; i++) {
        out[k++] = hex[md[i] >> 4];
        out[k++] = hex[md[i] & 15];
    }
    out[k] = '\0';
}

int wm_cert_fp_parse(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 7;

    if (cap < WM_CERT_FP_MAX) {
        return -1;
    }
    if (strncasecmp(in, "SHA256:", 7) == 0) {
        in += 7;
    } else if (strncasecmp(in, "SHA256 Fingerprint=", 19) == 0) {
        in += 19;
    }
    memcpy(out, "SHA256:", 7);
    for (; *in != '\0'; in++) {
        if (*in == ':' && k > 7 && in[1] != '\0' && in[1] != ':') {
            continue;
        }
        const char *d = strchr(hex, tolower((unsigned char)*in));
        if (d == NULL || *d == '\0' || k >= 7 + 64) {
            return -1;
        }
        out[k++] = *d;
    }
    out[k] = '\0';
    return k == 7 + 64 ? 0 : -1;
}
