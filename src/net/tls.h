/*
 * net/tls.h - OpenSSL contexts and TLS bufferevents.
 *
 * Contexts are built once (start, reload) from PEM files and shared,
 * refcounted by OpenSSL (SSL_CTX_up_ref / SSL_CTX_free).
 */
#ifndef WM_NET_TLS_H
#define WM_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

struct wm_tls_opts {
    const char *cert;   /* PEM chain: our certificate (server; client for mTLS) */
    const char *key;    /* PEM private key */
    const char *ca;     /* PEM trust anchors for the peer; NULL: see below */
    bool verify_peer;   /* server: require a client certificate (mTLS);
                         * client: verify the server (always on for clients) */
};

/* Server context: cert/key required. With verify_peer, client certificates
 * must chain to `ca`, or when ca is NULL to the certificates of `cert`
 * (wmproxy's rule). Returns NULL with a message in err. */
SSL_CTX *wm_tls_server_ctx(const struct wm_tls_opts *o, char *err, size_t cap);

/* Server context from a certificate and key in memory (borrowed: the
 * context takes its own references); o->cert/o->key are ignored. With
 * o->verify_peer, client certificates must chain to o->ca, or when it is
 * NULL be this very certificate (or be signed by it). NULL with err. */
SSL_CTX *wm_tls_server_ctx_mem(X509 *cert, EVP_PKEY *key, const struct wm_tls_opts *o, char *err,
                               size_t cap);

/* Server context with a self-signed certificate made now (EC P-256, CN
 * cn, valid one year). For setups that name no certificate: clients can
 * only trust it by pinning. NULL with err on failure. */
SSL_CTX *wm_tls_server_ctx_selfsigned(const char *cn, char *err, size_t cap);

/* Client context: verifies the server against `ca`, or the system trust
 * store when ca is NULL; presents cert/key when given (mTLS). */
SSL_CTX *wm_tls_client_ctx(const struct wm_tls_opts *o, char *err, size_t cap);

/* Wrap a connected socket (net/tlspump.h). host: SNI and the name the
 * server certificate must carry (client side; NULL on servers); peer: for
 * log lines. Takes fd; NULL on failure (fd closed). */
struct bufferevent *wm_tls_wrap(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                const char *host, const char *peer);

#endif
