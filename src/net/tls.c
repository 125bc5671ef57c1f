#include "net/tls.h"

#include "core/fsutil.h"
#include "net/certs.h"
#include "net/tlspump.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *last_error(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0) {
        snprintf(buf, cap, "unknown TLS error");
    } else {
        ERR_error_string_n(e, buf, cap);
    }
    ERR_clear_error();
    return buf;
}

static SSL_CTX *ctx_common(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No SSL_MODE_ENABLE_PARTIAL_WRITE: libevent's TLS bufferevent counts
     * every SSL_write as all-or-nothing; partial writes corrupt the stream. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* No renegotiation, no compression; tickets keep reconnects cheap. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* TLS 1.3: AES-128-GCM first, the cheapest with AES-NI; all three are
     * the protocol's standard suites. */
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
    if (server) {
        static const unsigned char sid_ctx[] = "wmproxy";
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
        /* Sessions (tickets, the session cache) resume within the context
         * that made them only; OpenSSL refuses every resumption with an
         * internal error when client certificates are asked for and no
         * session id context is set. */
        if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* Only a regular file goes to OpenSSL by name (core/fsutil.h: a FIFO
 * would block the reload or start that reads it). 0, or -1 with err
 * ("what path: why"). */
static int regular(const char *what, const char *path, char *err, size_t cap)
{
    char why[64];

    if (wm_file_check_regular(path, why, sizeof(why)) < 0) {
        snprintf(err, cap, "%s %s: %s", what, path, why);
        return -1;
    }
    return 0;
}

static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t cap)
{
    char e[200];
    bool encrypted = false;

    if (regular("certificate", cert, err, cap) < 0 || regular("key", key, err, cap) < 0) {
        return -1;
    }
    SSL_CTX_set_default_passwd_cb(ctx, wm_cert_no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &encrypted);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, cap, "certificate %s: %s", cert, last_error(e, sizeof(e)));
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL); /* &encrypted dies here */
    if (ok != 1 && encrypted) {
        ERR_clear_error();
        snprintf(err, cap, "key %s: " WM_CERT_ENCRYPTED_HINT, key);
        return -1;
    }
    /* OpenSSL 3 already compares the key with the certificate here */
    unsigned long le = ERR_peek_last_error();
    if (ok == 1 ? SSL_CTX_check_private_key(ctx) != 1
                : ERR_GET_LIB(le) == ERR_LIB_X509 &&
                      ERR_GET_REASON(le) == X509_R_KEY_VALUES_MISMATCH) {
        snprintf(err, cap, "key %s does not match certificate %s " WM_CERT_ORDER_HINT, key, cert);
        ERR_clear_error();
        return -1;
    }
    if (ok != 1) {
        snprintf(err, cap, "key %s: %s", key, last_error(e, sizeof(e)));
        return -1;
    }
    return 0;
}

SSL_CTX *wm_tls_server_ctx(const struct wm_tls_opts *o, char *err, size_t cap)
{
    SSL_CTX *ctx;
    char e[200];

    if (o->cert == NULL || o->key == NULL) {
        snprintf(err, cap, "TLS needs a certificate and a key (cert/key)");
        return NULL;
    }
    ctx = ctx_common(true);
    if (ctx == NULL) {
        snprintf(err, cap, "cannot create a TLS context: %s", last_error(e, sizeof(e)));
        return NULL;
    }
    if (load_pair(ctx, o->cert, o->key, err, cap) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (o->verify_peer) {
        const char *anchors = o->ca != NULL ? o->ca : o->cert;
        if (regular("trust anchors", anchors, err, cap) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_load_verify_locations(ctx, anchors, NULL) != 1) {
            snprintf(err, cap, "trust anchors %s: %s", anchors, last_error(e, sizeof(e)));
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(anchors);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        ERR_clear_error();
    }
    return ctx;
}

SSL_CTX *wm_tls_server_ctx_mem(X509 *cert, EVP_PKEY *key, const struct wm_tls_opts *o, char *err,
                               size_t cap)
{
    SSL_CTX *ctx = ctx_common(true);
    char e[200];

    if (ctx == NULL || SSL_CTX_use_certificate(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, cap, "cannot use the certificate: %s", last_error(e, sizeof(e)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (!o->verify_peer) {
        return ctx;
    }
    if (o->ca != NULL) {
        if (regular("trust anchors", o->ca, err, cap) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
            snprintf(err, cap, "trust anchors %s: %s", o->ca, last_error(e, sizeof(e)));
            SSL_CTX_free(ctx);
            return NULL;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
    } else if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert) != 1 ||
               SSL_CTX_add_client_CA(ctx, cert) != 1) {
        snprintf(err, cap, "cannot trust the certificate: %s", last_error(e, sizeof(e)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

SSL_CTX *wm_tls_server_ctx_selfsigned(const char *cn, char *err, size_t cap)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    SSL_CTX *ctx = NULL;
    char e[200];

    if (pkey == NULL || x == NULL) {
        snprintf(err, cap, "cannot generate a key: %s", last_error(e, sizeof(e)));
        goto done;
    }
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (X509_sign(x, pkey, EVP_sha256()) == 0) {
        snprintf(err, cap, "cannot sign a certificate: %s", last_error(e, sizeof(e)));
        goto done;
    }
    ctx = ctx_common(true);
    if (ctx == NULL || SSL_CTX_use_certificate(ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        snprintf(err, cap, "cannot use the generated certificate: %s", last_error(e, sizeof(e)));
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
done:
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ctx;
}

SSL_CTX *wm_tls_client_ctx(const struct wm_tls_opts *o, char *err, size_t cap)
{
    SSL_CTX *ctx = ctx_common(false);
    char e[200];

    if (ctx == NULL) {
        snprintf(err, cap, "cannot create a TLS context: %s", last_error(e, sizeof(e)));
        return NULL;
    }
    if (o->ca != NULL) {
        if (regular("trust anchors", o->ca, err, cap) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
            snprintf(err, cap, "trust anchors %s: %s", o->ca, last_error(e, sizeof(e)));
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_default_verify_paths(ctx);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->cert != NULL && o->key != NULL && load_pair(ctx, o->cert, o->key, err, cap) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct bufferevent *wm_tls_wrap(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                const char *host, const char *peer)
{
    return wm_tls_pump_new(base, ctx, fd, server, host, peer);
}
