/*
 * net/tlsrec.h - the tunnel carrier's record layer after a TLS handshake.
 *
 * Both ends of a tunnel carrier are wmproxy. When both offer it in the
 * handshake (ALPN WM_TLSREC_ALPN), they leave OpenSSL's record layer once
 * the handshake is over and seal records themselves: AES-128-GCM from
 * libgcrypt (its VAES/VPCLMUL code runs ~1.8x OpenSSL 3.0's on current
 * x86), sealed straight from the sender's buffers into the socket's and
 * opened straight into the reader's (no copies in and out of OpenSSL).
 * The handshake still authenticates both ends (certificates, mTLS); the
 * keys come from its exporter (RFC 8446 7.5, RFC 5705), one per direction;
 * TLS 1.3 only.
 *
 * On the wire a record is shaped like a TLS 1.3 application-data record:
 *   0x17 0x03 0x03 | length (2 bytes, big endian) | ciphertext | tag (16)
 * length = plaintext + 16, plaintext 0..WM_TLSREC_MAX bytes; the 5-byte
 * header is the additional data; nonce = iv XOR the record's sequence
 * number (64 bits, big endian, right-aligned), counted per direction.
 * A record with no plaintext is the authenticated close (close_notify).
 * Keys change every 2^20 records in each direction (16 GiB of full
 * records; RFC 8446 5.5 allows 2^24.5 per AES-GCM key): both ends step
 * the secret at the same record, nothing is sent for it. docs/tunnel.md
 * "Record layer" has the derivation.
 *
 * Each direction is one struct wm_tlsrec, owned by whoever made it
 * (wm_tlsrec_free). One thread uses it at a time.
 */
#ifndef WM_NET_TLSREC_H
#define WM_NET_TLSREC_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct wm_tlsrec;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

#define WM_TLSREC_ALPN "wmtun-rec/1"
#define WM_TLSREC_MAX 16384     /* plaintext per record, at most */
#define WM_TLSREC_HEADER 5
#define WM_TLSREC_TAG 16
#define WM_TLSREC_OVERHEAD (WM_TLSREC_HEADER + WM_TLSREC_TAG)
#define WM_TLSREC_SECRET 32

enum wm_tlsrec_res {
    WM_TLSREC_DATA,  /* a record was opened: its plaintext is in dst */
    WM_TLSREC_CLOSE, /* the authenticated close */
    WM_TLSREC_MORE,  /* the next record is not complete yet */
    WM_TLSREC_ROOM,  /* it is, but its plaintext does not fit in cap */
    WM_TLSREC_BAD,   /* malformed or forged: the connection must end */
};

/* Offer (client) or accept (server, TLS 1.3 only) the record layer on
 * every connection of ctx; a server context also stops sending TLS 1.3
 * session tickets (only our records may follow the handshake). Nothing is
 * enabled with WMPROXY_OPENSSL_RECORDS=1 or when libgcrypt does not start
 * or cannot seal (FIPS mode; logged). 0, or -1 when the context refuses
 * the ALPN list. */
int wm_tlsrec_ctx_enable(SSL_CTX *ctx, bool server);

/* The two directions of a connection whose handshake just ended and which
 * selected WM_TLSREC_ALPN: tx seals what we send, rx opens what we get.
 * 0, or -1 with nothing allocated. */
int wm_tlsrec_from_ssl(SSL *ssl, struct wm_tlsrec **tx, struct wm_tlsrec **rx);

/* True when the handshake of ssl selected WM_TLSREC_ALPN. */
bool wm_tlsrec_selected(const SSL *ssl);

/* One direction from its first secret (WM_TLSREC_SECRET bytes; tests).
 * NULL on failure. */
struct wm_tlsrec *wm_tlsrec_new(const unsigned char *secret);
void wm_tlsrec_free(struct wm_tlsrec *r);

/* Seal the first n bytes of in (n <= WM_TLSREC_MAX; 0: the close record)
 * into dst, which has room for n + WM_TLSREC_OVERHEAD. in is not drained.
 * Returns the bytes written to dst, 0 on failure. */
size_t wm_tlsrec_seal(struct wm_tlsrec *r, struct evbuffer *in, size_t n, unsigned char *dst);

/* Open the record at the front of in into dst (cap bytes). DATA: *got
 * bytes of plaintext, the record drained from in; CLOSE: drained, *got 0;
 * MORE and ROOM: nothing drained (ROOM: *got is the plaintext's size);
 * BAD: *why says what was wrong; dst may hold garbage beyond what earlier
 * calls returned. */
enum wm_tlsrec_res wm_tlsrec_open(struct wm_tlsrec *r, struct evbuffer *in, unsigned char *dst,
                                  size_t cap, size_t *got, const char **why);

/* Records per key as a power of two (default 20); for tests, set before
 * any wm_tlsrec is made. */
void wm_tlsrec_set_epoch_bits(unsigned bits);

#endif
