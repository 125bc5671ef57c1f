/*
 * net/certs.h - certificates this program makes and pins: a private CA,
 * server and client certificates for `wmproxy gen-cert` (EC P-256,
 * SHA-256, SANs and key usages set for TLS), and SHA-256 fingerprints for
 * trust on first use.
 *
 * Ownership: *cert and *key returned by wm_cert_make()/wm_cert_load() are
 * the caller's (X509_free, EVP_PKEY_free).
 */
#ifndef WM_NET_CERTS_H
#define WM_NET_CERTS_H

#include <stdbool.h>
#include <stddef.h>

struct wm_err;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

enum wm_cert_kind {
    WM_CERT_CA,     /* CA:TRUE, keyCertSign + cRLSign */
    WM_CERT_SERVER, /* serverAuth, digitalSignature; SANs required */
    WM_CERT_CLIENT, /* clientAuth, digitalSignature */
};

struct wm_cert_req {
    enum wm_cert_kind kind;
    const char *cn;
    const char *const *sans; /* DNS names or IP literals (v4, v6) */
    size_t nsans;
    int days;
};

/* A new key and a certificate for req, signed by issuer/issuer_key, or
 * self-signed when issuer is NULL. 0, or -1 with err. */
int wm_cert_make(const struct wm_cert_req *req, X509 *issuer, EVP_PKEY *issuer_key, X509 **cert,
                 EVP_PKEY **key, struct wm_err *err);

/* Write cert (0644) and key (0600, never readable by others, even for a
 * moment) as PEM, replacing what is there: both are written to new files
 * first, then renamed over the old ones, so a failed write replaces
 * neither. 0, or -1 with err. */
int wm_cert_save(const char *cert_path, const char *key_path, X509 *cert, EVP_PKEY *key,
                 struct wm_err *err);

/* Read a PEM certificate and its key. 0, or -1 with err. */
int wm_cert_load(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key,
                 struct wm_err *err);

/* OpenSSL's passphrase callback (pem_password_cb) for the keys a start or
 * a reload loads: it gives none and sets *(bool *)u (u may be NULL), so an
 * encrypted key fails at once with a message saying so; OpenSSL's default
 * would prompt on the terminal and block the start or the reload. */
int wm_cert_no_passphrase(char *buf, int size, int rwflag, void *u);
#define WM_CERT_ENCRYPTED_HINT \
    "encrypted keys are not supported (decrypt it: openssl pkey -in KEY -out NEWKEY)"
#define WM_CERT_ORDER_HINT \
    "(the certificate file holds the server's own certificate first, then its chain)"

/* "SHA256:" and 64 lower-case hex digits of the DER certificate (cap >= 72). */
#define WM_CERT_FP_MAX 72
void wm_cert_fingerprint(X509 *cert, char *out, size_t cap);

/* A fingerprint as a user types it ("SHA256:" optional, any case, bytes
 * optionally split by ':', as `openssl x509 -fingerprint -sha256` prints
 * them) into the form above (cap >= WM_CERT_FP_MAX). 0, or -1 when it is
 * not 32 bytes of hex. */
int wm_cert_fp_parse(const char *in, char *out, size_t cap);

#endif
