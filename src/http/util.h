/*
 * http/util.h - request-target parsing and canned responses.
 */
#ifndef WM_HTTP_UTIL_H
#define WM_HTTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* "host[:port]" or "[v6][:port]" (s[0..n)) -> host (no brackets, into buf of
 * size cap) and port (default_port when absent; 0 default means required).
 * Returns 0 or -1. */
int wm_http_parse_authority(const char *s, size_t n, char *host, size_t cap, uint16_t *port,
                            uint16_t default_port);

/* Absolute-form target "http[s]://authority[/path][?query][#fragment]"
 * split in place: auth/alen the authority, path/plen the origin-form
 * ("/" when none, "?q" as it is, the fragment cut), https. false for any
 * other form. */
bool wm_http_absolute_split(const char *url, size_t n, bool *https, const char **auth,
                            size_t *alen, const char **path, size_t *plen);

/* Absolute-form target "http://authority/path?query" (RFC 9112 3.2.2).
 * Fills host/port (default 80 for http, 443 for https), *https, and the
 * origin-form (path + query, "/" when empty) as a pointer into url; for
 * "http://h?q" the path is "?q" and the caller puts "/" in front.
 * Userinfo is refused. Returns 0 or -1. */
int wm_http_parse_absolute(const char *url, size_t n, char *host, size_t cap, uint16_t *port,
                           bool *https, const char **path, size_t *pathlen);

/* Is h[0..n) a Host a server can take (RFC 9110 7.2: uri-host [":" port])?
 * A bracketed IPv6 literal, or a name of anything but controls, space and
 * the delimiters @ / \ ? # < > " ` { } | ^ [ ] (bytes over 127 pass, as nginx lets
 * them), then an optional ":" and at most 5 digits. */
bool wm_http_host_valid(const char *h, size_t n);

/* Reason phrase for a status code ("Bad Gateway"); "Unknown" if unlisted. */
const char *wm_http_reason(int status);
/* t (seconds since the epoch) as an HTTP date, "Sun, 06 Nov 1994 08:49:37
 * GMT" (RFC 9110 5.6.7), into out (>= 30 bytes). */
void wm_http_date_fmt(int64_t t, char *out, size_t cap);
/* "Date: <now>\r\n", formatted once a second per thread (borrowed until
 * the thread's next call in another second). */
const char *wm_http_date_line(void);

/* Append a complete error response: status line, Content-Type text/plain,
 * Content-Length, Connection: close (when close), extra header lines
 * (each ending in CRLF, may be NULL), and a one-line body "<status> <reason>:
 * <detail>\n". Returns 0 or -1. */
int wm_http_write_error(struct evbuffer *out, int status, bool close, const char *extra,
                        const char *detail);

#endif
