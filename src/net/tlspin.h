/*
 * net/tlspin.h - a TLS client that trusts its server by certificate rather
 * than by a CA: a fixed SHA-256 fingerprint, or trust on first use (TOFU)
 * with a known_hosts file, the SSH model.
 *
 * wm_tls_pin_attach() replaces the certificate check of a client context
 * (wm_tls_client_ctx). It runs inside the handshake, when the server's
 * certificate arrives: a refused certificate fails the handshake, so not
 * one application byte (credentials, registrations) is ever sent to it.
 * The server's certificate is accepted when
 *   - WM_TLS_PIN_FIXED: its fingerprint is `fingerprint` (with chain_too,
 *     it must also verify against the context's anchors and name);
 *   - WM_TLS_PIN_TOFU: it verifies against the context's anchors and name,
 *     or it is own_cert, or a known_hosts line for `peer` pins it, or
 *     known_hosts has no line for `peer` yet: then it is pinned there (a
 *     warning names the fingerprint). A different certificate is refused
 *     with an error that says which line to delete, or what
 *     server_fingerprint to set, to accept it.
 *
 * known_hosts: one "host:port SHA256:<64 hex>" per line; '#' starts a
 * comment. Several lines for one peer: any of them matches. It is read at
 * each handshake (an edit takes effect at the next connection) and
 * written by temp file + rename, under a lock on its directory. When it
 * cannot be written, the pin is kept in memory for the context's life.
 *
 * Threads: attach on one thread (start, reload); the check then runs on
 * the thread of each connection, one at a time per context (the tunnel's
 * carrier lives on worker 0). The pin state belongs to the context and is
 * freed with it.
 */
#ifndef WM_NET_TLSPIN_H
#define WM_NET_TLSPIN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

enum wm_tls_pin_mode {
    WM_TLS_PIN_FIXED, /* only the certificate of `fingerprint` */
    WM_TLS_PIN_TOFU,  /* known_hosts, pinned at first use */
};

struct wm_tls_pin_opts {
    enum wm_tls_pin_mode mode;
    const char *peer;        /* "host:port" ("[v6]:port"): the known_hosts key, log lines */
    const char *fingerprint; /* FIXED: "SHA256:..." as wm_cert_fp_parse() makes it */
    bool chain_too;          /* FIXED: the normal check must pass as well (a ca is set) */
    const char *known_hosts; /* TOFU: the file */
    const char *own_cert;    /* TOFU: PEM of our own certificate, trusted as the server's
                              * too (both ends share one pair, wmproxy's layout); NULL */
};

/* Install on client context ctx (every string is copied). 0, or -1 with a
 * message in err. */
int wm_tls_pin_attach(SSL_CTX *ctx, const struct wm_tls_pin_opts *o, char *err, size_t cap);

/* The known_hosts line for peer (case and a host's trailing dot ignored)
 * that pins fp: 1 (found: *line is its number), 0 when peer has lines but
 * none with fp (*line: the first of them; other_fp: its fingerprint), -2
 * when peer has no line (or there is no file), -1 when the file cannot be
 * read, or when peer's only lines have no valid fingerprint (err).
 * other_fp: cap >= WM_CERT_FP_MAX. */
int wm_known_hosts_check(const char *path, const char *peer, const char *fp, int *line,
                         char *other_fp, char *err, size_t cap);

/* Add "peer fp" to path (its directory made 0700 when missing), as one
 * atomic replace, under the lock of the directory. 0 (also when a line
 * pins fp already), -2 when a line for peer pins another certificate
 * (another process pinned it since the check: *line, other_fp as for
 * wm_known_hosts_check), or -1 with err. */
int wm_known_hosts_add(const char *path, const char *peer, const char *fp, int *line,
                       char *other_fp, char *err, size_t cap);

#endif
