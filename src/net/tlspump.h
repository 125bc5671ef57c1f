/*
 * net/tlspump.h - TLS on a socket with big reads and writes, presented as
 * one end of a bufferevent_pair (so every handler sees a plain stream).
 *
 * libevent's TLS bufferevent reads each record with two syscalls and
 * writes each iovec as its own SSL_write; this pump reads up to 256 KiB at
 * once, decrypts every record in memory (OpenSSL memory BIOs), and writes
 * the encrypted output of many records with one syscall. It roughly halves
 * the CPU of a TLS tunnel carrier.
 *
 * The returned bufferevent belongs to the caller; freeing it (or sending
 * EOF with wm_bev_shutdown_write) ends the connection: the pump sends
 * close_notify, closes the socket and frees itself. The caller's event
 * callback gets EOF when the peer closed, ERROR when TLS or the socket
 * failed (the reason is logged with the peer's address). Bytes written
 * before the handshake ends wait for it.
 *
 * When the context enabled it (wm_tlsrec_ctx_enable) and the peer agreed,
 * the pump leaves OpenSSL after the handshake and seals and opens the
 * tunnel's own records (net/tlsrec.h) between the same buffers.
 */
#ifndef WM_NET_TLSPUMP_H
#define WM_NET_TLSPUMP_H

#include <stdbool.h>

struct bufferevent;
struct event_base;
typedef struct ssl_ctx_st SSL_CTX;

/* Start TLS on connected socket fd (taken). server: accept side; host:
 * client side SNI and the name to verify ("" or NULL: none/IP).
 * peer: for log lines. Returns NULL on OOM (fd closed). */
struct bufferevent *wm_tls_pump_new(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                    const char *host, const char *peer);

enum wm_tls_pump_mode {
    WM_TLS_PUMP_NONE,    /* not a pump's user end */
    WM_TLS_PUMP_OPENSSL, /* OpenSSL's records (also while handshaking) */
    WM_TLS_PUMP_RECORDS, /* our own records (net/tlsrec.h) */
};

/* What carries user end `a` (from a's worker thread; O(1)). */
enum wm_tls_pump_mode wm_tls_pump_mode(const struct bufferevent *a);

/* Free every pump of the calling thread (its event loop has ended). */
void wm_tls_pump_free_all(void);

#endif
