/*
 * conf/config_stream.h - the [stream] section (L4 forwarding, WebSocket
 * bridges) as C structs.
 *
 * Decoded by conf/config_stream.c into the config's arena (owned by the
 * struct wm_conf that holds them, freed with it). A zero duration or size
 * and a NULL string mean "not set": the stream module applies defaults
 * (stream/stream.h).
 */
#ifndef WM_CONF_CONFIG_STREAM_H
#define WM_CONF_CONFIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/units.h"

struct wm_conf_upstream;

/* [[stream.server]] */
struct wm_conf_sserver {
    const char *bind_addr;   /* address list as written ("a:1 b:2", ranges) */
    const char *bind_ssl;    /* TLS-terminating listeners (tcp, ws2tcp) */
    const char *cert;
    const char *key;
    const char *bind_mode;   /* "tcp" (default), "udp", "ws2tcp", "tcp2ws", "tcp2wss" */
    const char *up_name;     /* a [[stream.upstream]] name */
    const char *proxy_url;   /* "tcp://h:p", "ws://h:p/path", an upstream name as host */
    const char *domain;      /* Host / SNI towards the target (tcp2ws(s), proxy_ssl) */
    uint64_t connect_timeout_ms;
    uint64_t timeout_ms;        /* tcp: idle (no byte either way) */
    uint64_t client_timeout_ms; /* udp: a session's idle timeout */
    bool proxy_ssl;             /* originate TLS to the upstream */
    bool proxy_ssl_verify;      /* and verify its certificate (system store) */
    int proxy_protocol;         /* 0, 1 (v1, also `true`) or 2 */
    bool accept_proxy_protocol; /* a PROXY v1/v2 header starts each client connection */
    int64_t max_sessions;       /* udp: session table bound per worker and listener */
    uint64_t max_message;       /* WebSocket: largest message accepted */
    const char *access_log;     /* a file for this server's access lines */
    struct wm_rate rate_limit;  /* tcp: bytes per time, each direction of a connection */
};

/* [stream] */
struct wm_conf_stream {
    struct wm_conf_sserver *servers;
    size_t nservers;
    struct wm_conf_upstream *upstreams; /* conf/config_http.h */
    size_t nupstreams;
};

#endif
