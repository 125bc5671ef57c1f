/*
 * core/limits.h - every default bound and timeout, in one place.
 * Config and CLI may override the ones marked (conf).
 */
#ifndef WM_CORE_LIMITS_H
#define WM_CORE_LIMITS_H

/* Timeouts, milliseconds. */
#define WM_CONNECT_TIMEOUT_MS    10000  /* dial a target (conf) */
#define WM_IDLE_TIMEOUT_MS       300000 /* no byte either way (conf) */
#define WM_HANDSHAKE_TIMEOUT_MS  10000  /* client sends nothing useful (conf) */
#define WM_SHUTDOWN_GRACE_MS     10000  /* SIGTERM: let open connections finish */
#define WM_HEARTBEAT_MS          15000  /* tunnel carrier ping (conf) */
#define WM_HEARTBEAT_TIMEOUT_MS  45000  /* tunnel carrier silent that long is dead (conf) */

/* Relay: stop reading a side while the peer's output holds more than this. */
#define WM_RELAY_HIGH_WATER      (256 * 1024)
#define WM_RELAY_MAX_READ        (64 * 1024)  /* one read() at most */

/* HTTP/1 proxy. */
#define WM_HTTP_MAX_HEAD         (16 * 1024) /* request/response head, like nginx's 4x4k */
#define WM_HTTP_MAX_HEADERS      100
#define WM_HTTP_BODY_HIGH_WATER  (256 * 1024)
#define WM_HTTP_CLIENT_READ_MAX  (64 * 1024)  /* client input buffered ahead (pipelining) */
#define WM_HTTP_CHUNK_EXT_MAX    4096  /* chunk extensions on one chunk-size line */
#define WM_HTTP_MAX_INTERIM      16    /* 1xx heads before a final one (Go's client: 5) */
#define WM_HTTP_QUIET_MS         100  /* a keep-alive client silent that long gives its
                                       * idle upstream back to the shared pool (if any) */
#define WM_HTTP_PARK_MS          10   /* the same for a client on a plain socket, which
                                       * is then parked (fwd_park.c): a burst of new
                                       * clients is not all held at full size at once */
#define WM_HTTP_HELD_SCAN        32   /* idle upstreams of other clients looked at
                                       * before dialling (fwd_up.c take_held) */
#define WM_HTTP_STREAM_LOW       (256 * 1024) /* local bodies queued ahead (files) */
#define WM_HTTP_WORK_CACHE       1024 /* spare request states kept per worker (~1.6 KiB
                                       * each): HTTP/2 connections' bursts of hundreds
                                       * of streams at once reuse them, not malloc */

/* SOCKS. */
#define WM_SOCKS_MAX_HANDSHAKE   1024       /* greeting + auth + request */
#define WM_SOCKS_EARLY_MAX       (64 * 1024) /* client bytes read ahead while dialing */
#define WM_UDP_MAX_DATAGRAM      65535

/* Failed authentications per client address (proxy, tunnel, control):
 * the first few are answered at once, then each answer waits a little
 * longer, and past a count within the window the address is refused
 * outright for a while (core/authfail.h). */
#define WM_AUTHFAIL_FREE         3      /* failures answered without delay */
#define WM_AUTHFAIL_STEP_MS      500    /* added delay per further failure */
#define WM_AUTHFAIL_MAX_DELAY_MS 3000
#define WM_AUTHFAIL_BAN_AFTER    10     /* failures within the window */
#define WM_AUTHFAIL_WINDOW_MS    60000
#define WM_AUTHFAIL_BAN_MS       60000
#define WM_AUTHFAIL_TABLE        1024   /* addresses tracked; the stalest not on hold is dropped */

/* Tunnel carriers accepted but not authenticated yet (conf:
 * max_unauth_carriers, max_unauth_carriers_per_ip): beyond, new carrier
 * connections are closed at accept. */
#define WM_TUNNEL_UNAUTH_MAX_DEFAULT    256
#define WM_TUNNEL_UNAUTH_PER_IP_DEFAULT 16
/* Streams open at once on one carrier (conf: max_streams; at most
 * WM_TUN_MAX_STREAMS, 65,536): what a carrier can make a node hold is
 * bounded by this many 256 KiB windows plus their 32 MiB growth budget. */
#define WM_TUNNEL_MAX_STREAMS_DEFAULT   16384
/* Series of wmproxy_tunnel_mapping_bytes_total (two per client and mapping
 * name, kept for the process's life): clients choose both names. */
#define WM_TUNNEL_MAPPING_SERIES_MAX    4096

/* Forward proxy credentials (config, command line, HTTP Basic, SOCKS5). */
#define WM_PROXY_CRED_MAX        256 /* user or password, with its NUL */

/* Listener backlog. */
#define WM_LISTEN_BACKLOG        4096

#endif
