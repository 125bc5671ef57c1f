/*
 * net/tlspin.c - see tlspin.h.
 */
#include "net/tlspin.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/fsutil.h"
#include "core/log.h"
#include "net/certs.h"

#define KH_MAX_FILE (1024 * 1024) /* a known_hosts file larger than this is refused */
#define KH_PATH_MAX 4096
#define KH_PEER_MAX 300

struct pin {
    enum wm_tls_pin_mode mode;
    bool chain_too;
    char peer[KH_PEER_MAX];
    char fp[WM_CERT_FP_MAX];     /* FIXED: the one accepted */
    char own_fp[WM_CERT_FP_MAX]; /* TOFU: our own certificate's, or "" */
    char memo[WM_CERT_FP_MAX];   /* TOFU: pinned while known_hosts could not be written */
    char path[KH_PATH_MAX];
};

/* ---- known_hosts ---- */

/* The text of known_hosts: 0, 1 when there is none (ENOENT), -1 with
 * why in err. */
static int kh_read(const char *path, char **text, size_t *len, char *err, size_t cap)
{
    if (wm_file_read(path, KH_MAX_FILE, text, len) == 0) {
        return 0;
    }
    if (errno == ENOENT) {
        return 1;
    }
    snprintf(err, cap, "%s: cannot read: %s", path,
             errno == EISDIR ? "is a directory"
             : errno == EINVAL ? "not a regular file"
                               : strerror(errno));
    return -1;
}

/* A NUL byte would end the parse early and hide the pins after it
 * (every connection trusted anew): such a file is refused. 0, or -1
 * with the line of the first NUL in err. */
static int kh_text_ok(const char *path, const char *text, size_t len, char *err, size_t cap)
{
    const char *nul = memchr(text, '\0', len);
    int lineno = 1;

    if (nul == NULL) {
        return 0;
    }
    for (const char *c = text; c < nul; c++) {
        lineno += *c == '\n';
    }
    snprintf(err, cap, "%s line %d: a NUL byte: not a text file (fix or delete it)", path,
             lineno);
    return -1;
}

/* Next non-comment line of text at *pos: its peer and fingerprint
 * fields (NUL-terminated in place; *fp NULL when the line has only one).
 * false at the end. */
static bool kh_next(char *text, size_t *pos, int *lineno, char **peer, char **fp)
{
    while (text[*pos] != '\0') {
        char *line = text + *pos;
        char *nl = strpbrk(line, "\r\n"); /* LF, CR LF, or CR alone */
        *pos = nl != NULL ? (size_t)(nl - text) + 1 : *pos + strlen(line);
        if (nl != NULL) {
            *pos += nl[0] == '\r' && nl[1] == '\n';
            *nl = '\0';
        }
        (*lineno)++;
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *save = NULL;
        *peer = strtok_r(line, " \t\r", &save);
        *fp = *peer != NULL ? strtok_r(NULL, " \t\r", &save) : NULL;
        if (*peer != NULL) {
            return true;
        }
    }
    return false;
}

/* Two "host:port" names of one peer: case ignored, and the trailing dot
 * of a fully qualified host ("example.com.:443"). */
static bool peer_eq(const char *a, const char *b)
{
    const char *pa = strrchr(a, ':');
    const char *pb = strrchr(b, ':');

    if (pa == NULL || pb == NULL) {
        return strcasecmp(a, b) == 0;
    }
    size_t la = (size_t)(pa - a);
    size_t lb = (size_t)(pb - b);
    la -= la > 1 && a[la - 1] == '.';
    lb -= lb > 1 && b[lb - 1] == '.';
    return la == lb && strncasecmp(a, b, la) == 0 && strcmp(pa, pb) == 0;
}

int wm_known_hosts_check(const char *path, const char *peer, const char *fp, int *line,
                         char *other_fp, char *err, size_t cap)
{
    char *text;
    size_t len;
    size_t pos = 0;
    int lineno = 0;
    int r = -2;
    int bad = 0;
    char *kpeer;
    char *kfp;

    *line = 0;
    other_fp[0] = '\0';
    switch (kh_read(path, &text, &len, err, cap)) {
    case 1:
        return -2;
    case -1:
        return -1;
    }
    if (kh_text_ok(path, text, len, err, cap) < 0) {
        free(text);
        return -1;
    }
    while (kh_next(text, &pos, &lineno, &kpeer, &kfp)) {
        char norm[WM_CERT_FP_MAX];
        if (!peer_eq(kpeer, peer)) {
            continue;
        }
        if (kfp == NULL || wm_cert_fp_parse(kfp, norm, sizeof(norm)) < 0) {
            if (bad == 0) { /* meant as a pin: never taken for "no line" */
                bad = lineno;
                snprintf(err, cap, "%s line %d: %s is not a SHA256 fingerprint (fix or delete "
                         "the line)", path, lineno, kfp != NULL ? kfp : "(nothing)");
            }
            continue;
        }
        if (strcmp(norm, fp) == 0) {
            *line = lineno;
            r = 1;
            break;
        }
        if (r == -2) {
            *line = lineno;
            memcpy(other_fp, norm, sizeof(norm));
            r = 0;
        }
    }
    free(text);
    return r == -2 && bad != 0 ? -1 : r; /* a valid pin of another: "changed" */
}

int wm_known_hosts_add(const char *path, const char *peer, const char *fp, int *line,
                       char *other_fp, char *err, size_t cap)
{
    char dir[KH_PATH_MAX];
    char real[PATH_MAX];
    char *old = NULL;
    size_t len = 0;
    int lock;
    int r = -1;

    if (realpath(path, real) != NULL) {
        path = real; /* a symlink: its target is replaced, not the link */
    }
    if (wm_dirname(path, dir, sizeof(dir)) < 0 || wm_mkdir_p(dir, 0700) < 0) {
        snprintf(err, cap, "cannot make the directory of %s: %s", path, strerror(errno));
        return -1;
    }
    if ((lock = wm_dir_lock(dir)) < 0) {
        snprintf(err, cap, "cannot lock %s: %s", dir, strerror(errno));
        return -1;
    }
    /* another process may have pinned peer since our check */
    switch (wm_known_hosts_check(path, peer, fp, line, other_fp, err, cap)) {
    case 1:
        r = 0;
        goto unlock;
    case 0:
        r = -2;
        goto unlock;
    case -1:
        goto unlock;
    }
    if (kh_read(path, &old, &len, err, cap) < 0) {
        goto unlock;
    }
    if (old != NULL && kh_text_ok(path, old, len, err, cap) < 0) {
        goto unlock;
    }
    size_t add = strlen(peer) + strlen(fp) + 3;
    char *buf = malloc(len + add + 1);
    if (buf == NULL) {
        snprintf(err, cap, "out of memory");
        goto unlock;
    }
    size_t n = len;
    if (len > 0) {
        memcpy(buf, old, len);
        if (old[len - 1] != '\n') {
            buf[n++] = '\n';
        }
    }
    n += (size_t)snprintf(buf + n, add + 1, "%s %s\n", peer, fp);
    r = wm_file_replace(path, buf, n, 0600);
    if (r < 0) {
        snprintf(err, cap, "cannot write %s: %s", path, strerror(errno));
    }
    free(buf);
unlock:
    free(old);
    wm_dir_unlock(lock);
    return r;
}

/* ---- the check in the handshake ---- */

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;
static int pin_idx = -1;

static void pin_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void pin_index(void)
{
    pin_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, pin_free_cb);
}

static int refuse(X509_STORE_CTX *xs)
{
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static int accept_cert(X509_STORE_CTX *xs)
{
    ERR_clear_error(); /* what a failed X509_verify_cert() left */
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

static int check_fixed(struct pin *p, X509_STORE_CTX *xs, const char *fp)
{
    if (p->chain_too && X509_verify_cert(xs) != 1) {
        return 0; /* the store context holds the reason */
    }
    if (strcmp(fp, p->fp) == 0) {
        return accept_cert(xs);
    }
    wm_log(WM_LOG_ERROR, 0,
           "tls %s: refused: the server's certificate is %s, not the server_fingerprint %s "
           "of the configuration", p->peer, fp, p->fp);
    return refuse(xs);
}

static int refuse_changed(struct pin *p, X509_STORE_CTX *xs, const char *fp, int line,
                          const char *other)
{
    wm_log(WM_LOG_ERROR, 0,
           "tls %s: refused: THE SERVER'S CERTIFICATE CHANGED: it is now %s, but %s line "
           "%d pins %s. Someone may be intercepting the connection. If the server's "
           "certificate was replaced on purpose, delete line %d of %s (the next connection "
           "pins the new one), or set server_fingerprint = \"%s\" in [proxy]",
           p->peer, fp, p->path, line, other, line, p->path, fp);
    return refuse(xs);
}

/* No line for the peer yet: pin fp. */
static int pin_first(struct pin *p, X509_STORE_CTX *xs, const char *fp)
{
    char err[512] = "no known_hosts file (set known_hosts, or HOME)";
    char other[WM_CERT_FP_MAX];
    int line = 0;
    int r = p->path[0] == '\0'
                ? -1
                : wm_known_hosts_add(p->path, p->peer, fp, &line, other, err, sizeof(err));

    if (r == -2) {
        return refuse_changed(p, xs, fp, line, other); /* pinned meanwhile by another */
    }
    if (r < 0) {
        wm_log(WM_LOG_WARN, 0,
               "tls %s: trusting the server's certificate %s on first use, but %s: it is "
               "pinned in memory only (until a restart or reload)", p->peer, fp, err);
        memcpy(p->memo, fp, sizeof(p->memo));
        return accept_cert(xs);
    }
    wm_log(WM_LOG_WARN, 0,
           "tls %s: trusting the server's certificate on first use: pinned %s in %s (check it "
           "against the fingerprint the server logs at start; set ca or server_fingerprint to "
           "verify instead)", p->peer, fp, p->path);
    return accept_cert(xs);
}

static int check_tofu(struct pin *p, X509_STORE_CTX *xs, const char *fp)
{
    char err[512];
    char other[WM_CERT_FP_MAX];
    int line;

    if (X509_verify_cert(xs) == 1) {
        return 1; /* a CA the context trusts, with the right name */
    }
    if ((p->own_fp[0] != '\0' && strcmp(fp, p->own_fp) == 0) ||
        (p->memo[0] != '\0' && strcmp(fp, p->memo) == 0)) {
        return accept_cert(xs);
    }
    switch (wm_known_hosts_check(p->path, p->peer, fp, &line, other, err, sizeof(err))) {
    case 1:
        return accept_cert(xs);
    case -2:
        if (p->memo[0] == '\0') {
            return pin_first(p, xs, fp);
        }
        snprintf(other, sizeof(other), "%s", p->memo);
        wm_log(WM_LOG_ERROR, 0,
               "tls %s: refused: the server's certificate is now %s, but %s was trusted on "
               "first use (pinned in memory: %s could not be written). If the server's "
               "certificate was replaced on purpose, restart, or set server_fingerprint = "
               "\"%s\" in [proxy]", p->peer, fp, other, p->path, fp);
        return refuse(xs);
    case 0:
        return refuse_changed(p, xs, fp, line, other);
    default:
        wm_log(WM_LOG_ERROR, 0, "tls %s: refused: cannot check the pinned certificate: %s",
               p->peer, err);
        return refuse(xs);
    }
}

/* Replaces OpenSSL's chain check (SSL_CTX_set_cert_verify_callback). */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
    struct pin *p = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    char fp[WM_CERT_FP_MAX];

    if (leaf == NULL) {
        return refuse(xs);
    }
    wm_cert_fingerprint(leaf, fp, sizeof(fp));
    if (fp[0] == '\0') {
        return refuse(xs);
    }
    return p->mode == WM_TLS_PIN_FIXED ? check_fixed(p, xs, fp) : check_tofu(p, xs, fp);
}

/* The fingerprint of the first certificate of a PEM file; also trusted
 * as an anchor by the context (a server certificate it signed verifies). */
static int own_cert(SSL_CTX *ctx, const char *path, char *fp, char *err, size_t cap)
{
    char why[64];
    FILE *f;
    X509 *x;

    if (wm_file_check_regular(path, why, sizeof(why)) < 0) {
        snprintf(err, cap, "%s: %s", path, why);
        return -1;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        ERR_clear_error();
        snprintf(err, cap, "%s: not a PEM certificate", path);
        return -1;
    }
    wm_cert_fingerprint(x, fp, WM_CERT_FP_MAX);
    (void)X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
    ERR_clear_error();
    X509_free(x);
    return 0;
}

int wm_tls_pin_attach(SSL_CTX *ctx, const struct wm_tls_pin_opts *o, char *err, size_t cap)
{
    struct pin *p = calloc(1, sizeof(*p));

    pthread_once(&pin_once, pin_index);
    if (p == NULL || pin_idx < 0) {
        free(p);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    p->mode = o->mode;
    p->chain_too = o->chain_too;
    snprintf(p->peer, sizeof(p->peer), "%s", o->peer);
    if (o->mode == WM_TLS_PIN_FIXED &&
        (o->fingerprint == NULL || wm_cert_fp_parse(o->fingerprint, p->fp, sizeof(p->fp)) < 0)) {
        free(p);
        snprintf(err, cap, "server_fingerprint: expected \"SHA256:\" and 64 hex digits");
        return -1;
    }
    if (o->mode == WM_TLS_PIN_TOFU) {
        if (o->known_hosts == NULL ||
            snprintf(p->path, sizeof(p->path), "%s", o->known_hosts) >= (int)sizeof(p->path)) {
            free(p);
            snprintf(err, cap, "known_hosts: no usable path");
            return -1;
        }
        if (o->own_cert != NULL && own_cert(ctx, o->own_cert, p->own_fp, err, cap) < 0) {
            free(p);
            return -1;
        }
    }
    if (SSL_CTX_set_ex_data(ctx, pin_idx, p) != 1) {
        free(p);
        snprintf(err, cap, "out of memory");
        return -1;
    }
    SSL_CTX_set_cert_verify_callback(ctx, pin_verify, p);
    return 0;
}
