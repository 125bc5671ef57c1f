/*
 * control/client.h - a blocking HTTP/1.1 client for the control API, used
 * by `wmproxy reload` and `wmproxy stop` (never inside the event loops).
 */
#ifndef WM_CONTROL_CLIENT_H
#define WM_CONTROL_CLIENT_H

#include <stddef.h>

/* Send `method path` to target ("http://host:port", "host:port" or
 * "[v6]:port"), with a bearer token when token is non-NULL/non-empty.
 * On success returns 0 with *status and the body (NUL-terminated) in
 * body; -1 with a reason in body otherwise, also when the body does not
 * fit in cap - 1 bytes.
 * Every step is bounded by timeout_ms. */
int wm_control_call(const char *target, const char *method, const char *path, const char *token,
                    int timeout_ms, int *status, char *body, size_t cap);

#endif
