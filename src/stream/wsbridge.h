/*
 * stream/wsbridge.h - the pump between a WebSocket and a byte stream:
 * binary messages (any fragmentation) become bytes, bytes become binary
 * frames; pings are answered, the close handshake runs both ways, a
 * protocol error gets its close code (stream/ws.h). Back-pressure: while
 * one side's output holds more than WM_RELAY_HIGH_WATER bytes the other
 * is not read.
 */
#ifndef WM_STREAM_WSBRIDGE_H
#define WM_STREAM_WSBRIDGE_H

#include <stdbool.h>
#include <stdint.h>

struct bufferevent;
struct wm_conn;

/* Pump between c's client and up (taken). client_is_ws: the client
 * speaks WebSocket (ws2tcp: we are the server, its frames are masked);
 * else up does (tcp2ws: we are the client and mask ours). The pump owns
 * both bufferevents from now (c->bev becomes NULL) and finishes c at the
 * end, its counters filled. */
void st_ws_start(struct wm_conn *c, struct bufferevent *up, bool client_is_ws, uint64_t max_message,
                 int idle_ms);

/* Free a pump (the connection's proto_free calls it). NULL: no-op. */
void st_ws_free(void *pump);

#endif
