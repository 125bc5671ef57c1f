/*
 * net/addr.h - "host:port" strings and socket addresses.
 */
#ifndef WM_NET_ADDR_H
#define WM_NET_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WM_HOST_MAX 256 /* a DNS name is at most 253 bytes */
#define WM_DNS_NAME_MAX 253 /* RFC 1035 2.3.4, without the root's dot */
#define WM_DNS_LABEL_MAX 63
#define WM_ADDR_STR_MAX 64 /* "[ffff:...:ffff]:65535" */

/* Split "host:port" or "[v6]:port" (s[0..n)) into host (brackets removed,
 * NUL-terminated in hostbuf of size cap) and port (1..65535). The host is
 * printable ASCII without space, '/', '@', '?', '#', '\\' or brackets.
 * Returns 0, or -1 when the form is wrong or the host does not fit. */
int wm_addr_split(const char *s, size_t n, char *hostbuf, size_t cap, uint16_t *port);

/* The other way: "host:port", "[v6]:port", or host alone when port is 0,
 * into out (truncated to cap, cap >= 1). */
void wm_addr_join(const char *host, uint16_t port, char *out, size_t cap);

/* The same where the port may be left out ("host", "[v6]"): then
 * *port = default_port (0: the port is required). The one host:port
 * parser; HTTP authorities use it too. */
int wm_addr_split_port(const char *s, size_t n, char *hostbuf, size_t cap, uint16_t *port,
                       uint16_t default_port);

/* Fill ss/len from an IP literal host (v4 or v6, no brackets) and port.
 * Returns 0, or -1 when host is not an IP literal. */
int wm_addr_from_ip(const char *host, uint16_t port, struct sockaddr_storage *ss,
                    socklen_t *len);

/* May name (not an IP literal) go to the resolver? Not with a '%': that is
 * an IPv6 zone ("fe80::1%eth0"), which no DNS name has, and libevent 2.1
 * parses it with mismatched allocators (a crash under ours). Nor a name
 * over WM_DNS_NAME_MAX bytes (one more with a trailing dot) or with a label
 * over WM_DNS_LABEL_MAX: no query can carry it. Such targets are refused
 * as names that do not resolve. */
bool wm_addr_name_resolvable(const char *name);

/* Parse a listen address "ip:port", "[ip]:port" or "localhost:port" into ss.
 * Names other than localhost are refused (listeners never wait on DNS). */
int wm_addr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Format sa as "1.2.3.4:80" or "[::1]:80" into buf (>= WM_ADDR_STR_MAX). */
const char *wm_addr_format(const struct sockaddr *sa, char *buf, size_t cap);

/* A hash of the first len bytes of a socket address (FNV-1a from a secret
 * seed of the process, mixed), for tables keyed by peer address: a sender
 * that picks its port or address cannot aim at one chain. The bytes must be
 * as recvfrom() filled them. */
uint64_t wm_addr_hash(const struct sockaddr_storage *ss, socklen_t len);

/* Format only the IP of sa into buf. */
const char *wm_addr_format_ip(const struct sockaddr *sa, char *buf, size_t cap);

/* Port of sa in host order (0 for unknown families). */
uint16_t wm_addr_port(const struct sockaddr *sa);

/* Same IP (an IPv4-mapped IPv6 address equals its IPv4 form) and port? */
int wm_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* Same family and IP (ports ignored)? IPv4-mapped v6 equals its v4. */
int wm_addr_same_ip(const struct sockaddr *a, const struct sockaddr *b);

/* What kind of IP address sa holds (IPv4-mapped IPv6 counts as IPv4). */
enum {
    WM_ADDR_OTHER = 0,
    WM_ADDR_UNSPECIFIED, /* 0.0.0.0, :: (a connect there reaches this host) */
    WM_ADDR_LOOPBACK,    /* 127.0.0.0/8, ::1 */
    WM_ADDR_LINK_LOCAL,  /* 169.254.0.0/16 (cloud metadata), fe80::/10 */
};
int wm_addr_ip_class(const struct sockaddr *sa);

/* Expand an address list as wmproxy writes listeners: "ip:port" entries
 * separated by spaces or commas, each maybe a port range
 * ("127.0.0.1:8869-:8871" or "...:8869-8871"); ":port" alone means every
 * IPv4 interface (0.0.0.0). With out != NULL, up to max addresses are
 * written there in canonical form ("1.2.3.4:80", "[::1]:80"); with
 * out == NULL the list is only checked (at most WM_ADDR_LIST_MAX). *count
 * gets the number. 0, or -1 with err->msg. */
#define WM_ADDR_LIST_MAX 1024
struct wm_err;
int wm_addr_list_expand(const char *s, char (*out)[WM_ADDR_STR_MAX], size_t *count, size_t max,
                        struct wm_err *err);
/* Is the listen address s (wm_addr_parse_listen form) on loopback only?
 * False for a wildcard, any other address, or a malformed s. */
bool wm_addr_listen_is_loopback(const char *s);

#endif
