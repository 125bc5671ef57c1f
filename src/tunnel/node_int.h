/*
 * tunnel/node_int.h - tunnel node internals shared by node.c (settings,
 * install), client.c (carrier to the parent), server.c (registry, public
 * listeners) and bridge.c (connection plumbing). Everything here lives on
 * worker 0 except struct wm_tunnel_settings, which is immutable.
 */
#ifndef WM_TUNNEL_NODE_INT_H
#define WM_TUNNEL_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "net/addr.h"
#include "tunnel/frame.h"
#include "tunnel/tunnel.h"

struct bufferevent;
struct event;
struct evbuffer;
struct wm_err;
struct wm_listen_stats;
struct wm_tun;
struct wm_tun_stream;
typedef struct ssl_ctx_st SSL_CTX;

#define TUN_NAME_MAX (WM_TUNNEL_NAME_MAX + 1)

/* A mapping as the client knows it (what to connect inside). */
struct tmap {
    char name[TUN_NAME_MAX];
    uint8_t mode;                /* enum wm_tun_mode */
    char host[WM_HOST_MAX];      /* local_addr */
    uint16_t port;
    uint8_t pp;                  /* PROXY protocol version to send it, 0: none */
};

struct wm_tunnel_settings {
    /* shared */
    char *user;                  /* credentials: carrier auth and proxy auth */
    char *pass;
    int connect_timeout_ms;
    int idle_timeout_ms;
    int head_timeout_ms; /* public HTTP: a request head must come in time */
    int ping_ms;
    int dead_ms;
    int open_ms;         /* a stream we open waits this long for the peer's answer */
    int max_streams;     /* streams open at once on one carrier */
    struct wm_service *proxy_svc; /* serves the proxy protocol on streams */
    bool proxy_auth;             /* ... and asks its clients for credentials */
    struct wm_service *public_svc; /* options (timeouts, no auth) of public HTTP */
    /* client part */
    bool client;
    char server_host[WM_HOST_MAX];
    uint16_t server_port;
    /* failover: every parent address of `server`, tried in turn (the first
     * is server_host:server_port) */
    char servers[WM_TUNNEL_SERVERS_MAX][WM_HOST_MAX];
    uint16_t server_ports[WM_TUNNEL_SERVERS_MAX];
    size_t nservers;
    bool sni_set;                /* `domain` names the SNI (else each server's host) */
    char sni[WM_HOST_MAX];
    SSL_CTX *client_ctx;         /* NULL: plain TCP carrier */
    uint8_t *reg;                /* encoded REGISTER payload */
    size_t reglen;
    struct tmap *maps;
    size_t nmaps;
    char entry[64];              /* local proxy entry address ("" if none) */
    char fingerprint[4096];      /* everything a carrier depends on but the mappings */
    /* server part */
    bool server;
    char center[64];
    SSL_CTX *server_ctx;         /* NULL: plain TCP center */
    SSL_CTX *map_ctx;            /* public HTTPS */
    char map_http[64];
    char map_https[64];
    char map_tcp[64];
    char map_proxy[64];
    char port_ip[WM_HOST_MAX];   /* IP for per-mapping public ports */
    uint8_t *allow_ports;        /* bitmap of ports clients may claim; NULL: any */
    struct wm_tunnel_client *clients; /* [[proxy.clients]] (owned), NULL: user/pass */
    size_t nclients;
    int max_unauth;              /* carriers not yet authenticated, all sources */
    int max_unauth_per_ip;       /* ... per source address */
};

/* The node (worker 0). */
struct tnode {
    struct wm_worker *w;
    struct wm_tunnel_settings *s; /* current */
    bool draining;
    struct tclient *client;
    struct tserver *server;
};

/* NULL when no tunnel is configured. Owned by worker 0, which alone
 * dereferences it; it stores it atomically because the main thread peeks
 * (wm_tnode_present()) before asking worker 0 for a status or metrics. */
extern struct tnode *wm_tnode;

/* Any thread: whether worker 0 has a node (a hint: it may be going). */
static inline bool wm_tnode_present(void)
{
    return __atomic_load_n(&wm_tnode, __ATOMIC_RELAXED) != NULL;
}

/* node_tls.c: the TLS contexts of a node, built at prepare (main thread):
 * towards the parent (ts: a CA, a pinned fingerprint, or trust on first
 * use), from children (tc: cert/key, or a key pair kept in the state
 * directory), public HTTPS. 0, or -1 with err (its key names the option). */
int tnode_client_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                     struct wm_err *err);
int tnode_server_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                     struct wm_err *err);
int tnode_map_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                  struct wm_err *err);

struct ssl_st;
/* Cluster, mutual TLS between nodes (wm_tunnel_set_node_tls): does the
 * center ask node carriers for the node certificate, and did carrier ssl
 * come in with a verified one? */
bool tnode_tls_nodes_need_cert(const struct wm_tunnel_settings *s);
bool tnode_tls_is_node(const struct ssl_st *ssl);

/* client.c */
struct tclient *tclient_new(struct tnode *n, struct wm_tunnel_settings *s);
void tclient_free(struct tclient *c);
void tclient_drain(struct tclient *c);
/* Same carrier, new settings object (equal fingerprint). When the mappings
 * changed (remap), they are registered again over the live carrier and the
 * streams of removed mappings end; the others go on. */
void tclient_rebind(struct tclient *c, struct wm_tunnel_settings *s, bool remap);
/* The ready carrier to the parent, or NULL. */
struct wm_tun *tclient_carrier(struct tclient *c);
/* Connection attempts so far (reconnects included). */
uint64_t tclient_attempts(const struct tclient *c);

/* server.c */
struct tserver *tserver_new(struct tnode *n);
void tserver_free(struct tserver *sv);
void tserver_drain(struct tserver *sv);
/* New settings were installed (reload): withdraw published ports that
 * allow_ports no longer lists. */
void tserver_reconfigured(struct tserver *sv);
/* A carrier connection on the center port (takes fd; stats as the
 * listener's, referenced while the carrier lives). */
void tserver_accept_carrier(struct tserver *sv, int fd, const struct sockaddr *peer,
                            socklen_t plen, struct wm_listen_stats *stats);
/* Append `,"center":{...}` (carrier counters) to the status JSON. */
void tserver_status_json(struct tserver *sv, struct evbuffer *out);
void tserver_accept_public(struct tserver *sv, enum wm_tunnel_listen kind, int fd,
                           const struct sockaddr *peer, socklen_t plen,
                           struct wm_listen_stats *stats);

/* refuse.c: answer a client of a proxy port that the tunnel cannot serve
 * it, in its own protocol (HTTP 502 with why in the body, SOCKS5 reply 1,
 * SOCKS4 reply 91), then close. Takes fd (a socket whose client has not
 * been read from). peer and why are copied; proto must be a static string.
 * log: write an access line at the end (else the caller logged). */
void tnode_refuse_proxy(int fd, const char *peer, const char *proto, const char *why,
                        struct wm_listen_stats *stats, bool log);

/* bridge.c: the OPEN peer field (tunnel/frame.h) for a connection accepted
 * on fd from peer (may be NULL): the visitor, and the address it reached. */
const char *tnode_peer_field(int fd, const struct sockaddr *peer, char *out, size_t cap);

/* bridge.c: one client connection joined to a target (a tunnel stream or
 * a dialed socket), with access logging and graceful-stop registration.
 * Each constructor takes what it is given (also on failure, NULL return).
 * proto must be a static string. */
struct bridge;
/* A bufferevent (a stream's outer end), relayed to the stream it opens. */
struct bridge *bridge_new(struct bufferevent *a, const char *peer, const char *proto,
                          struct wm_listen_stats *stats, int idle_ms);
/* A connected socket, attached to the stream it opens (no relay). */
struct bridge *bridge_new_fd(int fd, const char *peer, const char *proto,
                             struct wm_listen_stats *stats, int idle_ms);
/* An incoming stream still pending: bridge_dial() then accepts it attached
 * to the dialed socket, or refuses it with the dial's failure (the bridge
 * ends by itself if the stream goes away meanwhile). */
struct bridge *bridge_new_stream(struct wm_tun_stream *s, const char *peer, const char *proto,
                                 int idle_ms);
/* Middle node: a child's PROXY stream s, still pending, to be passed on to
 * the parent with bridge_open_stream(); s is accepted once the parent's
 * stream is open, and refused with the parent's answer (code, reason)
 * otherwise, so the child's entry answers its client (502, SOCKS rep 1). */
struct bridge *bridge_new_child(struct wm_tun_stream *s, const char *peer, const char *proto,
                                int idle_ms);
/* A bridge_new_fd() socket whose client speaks a proxy protocol: when the
 * stream cannot be opened it is answered so (tnode_refuse_proxy), not
 * just closed. */
void bridge_answer_failures(struct bridge *b);
/* Also add the bridge's bytes to these counters (core/metrics.h) at its end. */
void bridge_count_to(struct bridge *b, uint32_t m_in, uint32_t m_out);
/* Connect through tunnel t (bridge_new / bridge_new_fd); on failure the
 * bridge ends. */
void bridge_open_stream(struct bridge *b, struct wm_tun *t, const struct wm_tun_open *o,
                        const char *target);
/* Before bridge_dial(): write a PROXY protocol header of version (1, 2)
 * from src to dst (either NULL: unknown) to the dialed socket first.
 * Returns 0, or -1 on OOM (then the bridge has ended). */
int bridge_set_proxy_protocol(struct bridge *b, int version, const struct sockaddr *src,
                              const struct sockaddr *dst);
/* Connect by dialing host:port (bridge_new_stream). */
void bridge_dial(struct bridge *b, const char *host, uint16_t port, int timeout_ms);

/* udp_map.c: accept incoming stream s of a UDP mapping: its records go to
 * host:port as datagrams and the answers come back (refused when no
 * socket can be made). peer names the visitor in the access line. */
struct wm_tun_stream;
void tudp_client_accept(struct wm_worker *w, struct wm_tun_stream *s, const char *host,
                        uint16_t port, const char *peer);
/* Give up now. */
void bridge_abort(struct bridge *b, const char *why);

#endif
