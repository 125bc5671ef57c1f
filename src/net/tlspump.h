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
 * close_notify, closes the socket and frees itself (at once when the
 * handshake is not over). The caller's event callback gets EOF when the
 * peer closed (close_notify, or a TCP close without it), ERROR when TLS or the socket failed (the reason is
 * logged with the peer's address). Bytes written before the handshake ends
 * wait for it, as does an EOF.
 *
 * Kernel TLS is not used: OpenSSL turns it on only for an SSL on a socket
 * BIO, while the keys are installed during the handshake, and the memory
 * BIO is what lets the pump move many records per syscall.
 */
#ifndef WM_NET_TLSPUMP_H
#define WM_NET_TLSPUMP_H

#include <stdbool.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* Start TLS on connected socket fd (taken). server: accept side; host:
 * client side SNI and the name to verify ("" or NULL: none/IP).
 * peer: for log lines. Returns NULL on OOM, or when OpenSSL refuses host
 * as SNI or as the name to verify (logged: the name check is never
 * skipped); fd is closed then. */
struct bufferevent *wm_tls_pump_new(struct event_base *base, SSL_CTX *ctx, int fd, bool server,
                                    const char *host, const char *peer);

/* What carries user end `a`, for logs and /status: "TLS" (a static
 * string; also while handshaking), or NULL when `a` is not a pump's user
 * end. From a's worker thread; O(1). */
const char *wm_tls_pump_transport(const struct bufferevent *a);

/* The TLS session under user end `a` (for channel binding and the peer's
 * certificate: SSL_export_keying_material, SSL_get0_peer_certificate),
 * or NULL when `a` is not a pump's user end. Borrowed: valid while `a` is.
 * From a's worker thread. */
SSL *wm_tls_pump_ssl(const struct bufferevent *a);

/* The socket under user end `a` (to ask the kernel about it, never to
 * read or write it), or -1 when `a` is not a pump's user end. From a's
 * worker thread. */
int wm_tls_pump_fd(const struct bufferevent *a);

/* The pump under user end `a` logs with id from now on (the connection's
 * own, so that its TLS lines and its access line share c=); nothing when
 * `a` is not a pump's user end. From a's worker thread. */
void wm_tls_pump_set_id(struct bufferevent *a, uint64_t id);

/* Ask for BEV_EVENT_CONNECTED on user end `a`'s event callback once the
 * handshake is over (at once, deferred, when it is already): a server
 * that must not act for a client before its handshake ends (a stream
 * listener dialing its upstream). Without it no CONNECTED is delivered.
 * -1 when `a` is not a pump's user end. From a's worker thread. */
int wm_tls_pump_notify_ready(struct bufferevent *a);

/* Free every pump of the calling thread (its event loop has ended). */
void wm_tls_pump_free_all(void);

#endif
