#include "http/util.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "net/addr.h"

int wm_http_parse_authority(const char *s, size_t n, char *host, size_t cap, uint16_t *port,
                            uint16_t default_port)
{
    return wm_addr_split_port(s, n, host, cap, port, default_port);
}

bool wm_http_absolute_split(const char *url, size_t n, bool *https, const char **auth,
                            size_t *alen, const char **path, size_t *plen)
{
    size_t off;
    size_t e;

    if (n >= 7 && wm_strieq(url, 7, "http://")) {
        off = 7;
        *https = false;
    } else if (n >= 8 && wm_strieq(url, 8, "https://")) {
        off = 8;
        *https = true;
    } else {
        return false;
    }
    for (e = off; e < n && url[e] != '/' && url[e] != '?' && url[e] != '#'; e++) {
    }
    *auth = url + off;
    *alen = e - off;
    if (e == n || url[e] == '#') {
        *path = "/";
        *plen = 1;
    } else {
        const char *frag = memchr(url + e, '#', n - e);
        *path = url + e;
        *plen = frag != NULL ? (size_t)(frag - *path) : n - e;
    }
    return true;
}

int wm_http_parse_absolute(const char *url, size_t n, char *host, size_t cap, uint16_t *port,
                           bool *https, const char **path, size_t *pathlen)
{
    const char *auth;
    size_t alen;

    if (!wm_http_absolute_split(url, n, https, &auth, &alen, path, pathlen) ||
        memchr(auth, '@', alen) != NULL) { /* userinfo has no place in a proxied request */
        return -1;
    }
    return wm_http_parse_authority(auth, alen, host, cap, port, *https ? 443 : 80);
}

bool wm_http_host_valid(const char *h, size_t n)
{
    size_t i = 0;

    if (n > 0 && h[0] == '[') {
        for (i = 1; i < n && h[i] != ']'; i++) {
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.') {
                return false;
            }
        }
        if (i == n || i == 1) {
            return false;
        }
        i++;
    } else {
        for (; i < n && h[i] != ':'; i++) {
            unsigned char c = (unsigned char)h[i];
            if (c <= 0x20 || c == 0x7f || strchr("@/\\?#<>\"`{}|^[]", c) != NULL) {
                return false;
            }
        }
    }
    if (i == n) {
        return true;
    }
    if (h[i] != ':' || n - i - 1 > 5) {
        return false;
    }
    for (i++; i < n; i++) {
        if (!isdigit((unsigned char)h[i])) {
            return false;
        }
    }
    return true;
}

const char *wm_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void wm_http_date_fmt(int64_t t, char *out, size_t cap)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *wm_http_date_line(void)
{
    static __thread int64_t sec = -1;
    static __thread char line[64];
    int64_t now = (int64_t)time(NULL);

    if (now != sec) {
        char d[40];
        wm_http_date_fmt(now, d, sizeof(d));
        snprintf(line, sizeof(line), "Date: %s\r\n", d);
        sec = now;
    }
    return line;
}

int wm_http_write_error(struct evbuffer *out, int status, bool close, const char *extra,
                        const char *detail)
{
    char body[512];
    int blen = snprintf(body, sizeof(body), "%d %s%s%s\n", status, wm_http_reason(status),
                        detail != NULL ? ": " : "", detail != NULL ? detail : "");

    if (blen < 0) {
        return -1;
    }
    if ((size_t)blen >= sizeof(body)) {
        blen = (int)sizeof(body) - 1;
    }
    return evbuffer_add_printf(out,
                               "HTTP/1.1 %d %s\r\n"
                               "Server: wmproxy\r\n"
                               "%s"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: %d\r\n"
                               "%s%s\r\n"
                               "%.*s",
                               status, wm_http_reason(status), wm_http_date_line(), blen,
                               close ? "Connection: close\r\n" : "", extra != NULL ? extra : "",
                               blen, body) < 0
               ? -1
               : 0;
}
