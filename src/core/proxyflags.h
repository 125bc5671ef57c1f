/*
 * core/proxyflags.h - the forward proxy's protocol set (wmproxy's `flag`):
 * which of HTTP, CONNECT and SOCKS one port serves. Shared by the config
 * reader, the command line and the proxy service, so it lives below them.
 */
#ifndef WM_CORE_PROXYFLAGS_H
#define WM_CORE_PROXYFLAGS_H

/* Protocol bits, wmproxy's numbering ("flag = 7" means all three). */
enum {
    WM_PROXY_FLAG_HTTP = 1,
    WM_PROXY_FLAG_HTTPS = 2,  /* CONNECT */
    WM_PROXY_FLAG_SOCKS5 = 4, /* SOCKS5, and SOCKS4/4a when no auth is set */
    WM_PROXY_FLAG_ALL = 7,
};

/* Parse wmproxy's flag syntax: "http https socks5" (any order, spaces,
 * commas or '|') or a number 1..7 into *flags. Returns 0, or -1 (and
 * *flags untouched) when s names no protocol or an unknown one. */
int wm_proxy_parse_flags(const char *s, unsigned *flags);

#endif
