#include "proxy/socks_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

int wm_socks5_parse_greeting(const uint8_t *p, size_t n, bool *offers_none,
                             bool *offers_userpass)
{
    size_t need;

    if (n < 2) {
        return WM_SOCKS_MORE;
    }
    if (p[0] != 5 || p[1] == 0) {
        return WM_SOCKS_EPROTO;
    }
    need = 2 + (size_t)p[1];
    if (n < need) {
        return WM_SOCKS_MORE;
    }
    *offers_none = false;
    *offers_userpass = false;
    for (size_t i = 2; i < need; i++) {
        if (p[i] == WM_SOCKS5_METHOD_NONE) {
            *offers_none = true;
        } else if (p[i] == WM_SOCKS5_METHOD_USERPASS) {
            *offers_userpass = true;
        }
    }
    return (int)need;
}

int wm_socks5_parse_userpass(const uint8_t *p, size_t n, char user[256], size_t *ulen,
                             char pass[256], size_t *plen)
{
    size_t ul;
    size_t pl;

    if (n < 2) {
        return WM_SOCKS_MORE;
    }
    if (p[0] != 1) {
        return WM_SOCKS_EPROTO;
    }
    ul = p[1];
    if (n < 2 + ul + 1) {
        return WM_SOCKS_MORE;
    }
    pl = p[2 + ul];
    if (n < 3 + ul + pl) {
        return WM_SOCKS_MORE;
    }
    memcpy(user, p + 2, ul);
    user[ul] = '\0';
    memcpy(pass, p + 3 + ul, pl);
    pass[pl] = '\0';
    *ulen = ul;
    *plen = pl;
    return (int)(3 + ul + pl);
}

/* Parse ATYP ADDR PORT at p; returns bytes used, MORE, or an error. */
static int parse_addr(const uint8_t *p, size_t n, struct wm_socks_addr *a)
{
    size_t alen;
    size_t off = 1;

    if (n < 1) {
        return WM_SOCKS_MORE;
    }
    a->atyp = p[0];
    switch (p[0]) {
    case WM_SOCKS5_ATYP_IPV4:
        alen = 4;
        break;
    case WM_SOCKS5_ATYP_IPV6:
        alen = 16;
        break;
    case WM_SOCKS5_ATYP_DOMAIN:
        if (n < 2) {
            return WM_SOCKS_MORE;
        }
        alen = p[1];
        off = 2;
        if (alen == 0) {
            return WM_SOCKS_EPROTO;
        }
        break;
    default:
        return WM_SOCKS_EATYP;
    }
    if (n < off + alen + 2) {
        return WM_SOCKS_MORE;
    }
    if (p[0] == WM_SOCKS5_ATYP_IPV4) {
        inet_ntop(AF_INET, p + off, a->host, sizeof(a->host));
    } else if (p[0] == WM_SOCKS5_ATYP_IPV6) {
        inet_ntop(AF_INET6, p + off, a->host, sizeof(a->host));
    } else {
        for (size_t i = 0; i < alen; i++) {
            uint8_t c = p[off + i];
            if (c <= ' ' || c == 0x7f) {
                return WM_SOCKS_EPROTO; /* no NUL/controls/space in names */
            }
        }
        memcpy(a->host, p + off, alen);
        a->host[alen] = '\0';
    }
    a->port = (uint16_t)((p[off + alen] << 8) | p[off + alen + 1]);
    return (int)(off + alen + 2);
}

int wm_socks5_parse_request(const uint8_t *p, size_t n, uint8_t *cmd, struct wm_socks_addr *a)
{
    int r;

    if (n < 4) {
        return WM_SOCKS_MORE;
    }
    if (p[0] != 5 || p[2] != 0) {
        return WM_SOCKS_EPROTO;
    }
    *cmd = p[1];
    r = parse_addr(p + 3, n - 3, a);
    if (r <= 0) {
        return r;
    }
    return r + 3;
}

static size_t put_addr(uint8_t *out, const struct sockaddr *sa)
{
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        out[0] = WM_SOCKS5_ATYP_IPV6;
        memcpy(out + 1, &s6->sin6_addr, 16);
        memcpy(out + 17, &s6->sin6_port, 2);
        return 19;
    }
    out[0] = WM_SOCKS5_ATYP_IPV4;
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(out + 1, &s4->sin_addr, 4);
        memcpy(out + 5, &s4->sin_port, 2);
    } else {
        memset(out + 1, 0, 6);
    }
    return 7;
}

size_t wm_socks5_build_reply(uint8_t *out, uint8_t rep, const struct sockaddr *bound)
{
    out[0] = 5;
    out[1] = rep;
    out[2] = 0;
    return 3 + put_addr(out + 3, bound);
}

int wm_socks5_parse_udp(const uint8_t *p, size_t n, struct wm_socks_addr *a)
{
    int r;

    if (n < 4) {
        return WM_SOCKS_EPROTO;
    }
    if (p[0] != 0 || p[1] != 0) {
        return WM_SOCKS_EPROTO;
    }
    if (p[2] != 0) {
        return WM_SOCKS_EFRAG;
    }
    r = parse_addr(p + 3, n - 3, a);
    if (r == WM_SOCKS_MORE) {
        return WM_SOCKS_EPROTO; /* a datagram is whole or broken */
    }
    if (r < 0) {
        return r;
    }
    return r + 3;
}

size_t wm_socks5_build_udp_header(uint8_t *out, const struct sockaddr *src)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = 0;
    return 3 + put_addr(out + 3, src);
}

int wm_socks4_parse_request(const uint8_t *p, size_t n, uint8_t *cmd, struct wm_socks_addr *a,
                            char user[256])
{
    const uint8_t *nul;
    size_t ulen;
    size_t off;

    if (n < 9) {
        return WM_SOCKS_MORE;
    }
    if (p[0] != 4) {
        return WM_SOCKS_EPROTO;
    }
    *cmd = p[1];
    a->port = (uint16_t)((p[2] << 8) | p[3]);
    nul = memchr(p + 8, 0, n - 8);
    if (nul == NULL) {
        return n - 8 > 255 ? WM_SOCKS_EPROTO : WM_SOCKS_MORE;
    }
    ulen = (size_t)(nul - (p + 8));
    if (ulen > 255) {
        return WM_SOCKS_EPROTO;
    }
    memcpy(user, p + 8, ulen);
    user[ulen] = '\0';
    off = 8 + ulen + 1;
    /* 4a: DSTIP 0.0.0.x with x != 0 means a host name follows. */
    if (p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] != 0) {
        const uint8_t *hn = memchr(p + off, 0, n - off);
        if (hn == NULL) {
            return n - off > 255 ? WM_SOCKS_EPROTO : WM_SOCKS_MORE;
        }
        size_t hlen = (size_t)(hn - (p + off));
        if (hlen == 0 || hlen > 255) {
            return WM_SOCKS_EPROTO;
        }
        for (size_t i = 0; i < hlen; i++) {
            if (p[off + i] <= ' ' || p[off + i] == 0x7f) {
                return WM_SOCKS_EPROTO;
            }
        }
        memcpy(a->host, p + off, hlen);
        a->host[hlen] = '\0';
        a->atyp = WM_SOCKS5_ATYP_DOMAIN;
        return (int)(off + hlen + 1);
    }
    inet_ntop(AF_INET, p + 4, a->host, sizeof(a->host));
    a->atyp = WM_SOCKS5_ATYP_IPV4;
    return (int)off;
}

size_t wm_socks4_build_reply(uint8_t *out, uint8_t cd)
{
    memset(out, 0, 8);
    out[1] = cd;
    return 8;
}
