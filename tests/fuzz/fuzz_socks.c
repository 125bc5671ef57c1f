/*
 * tests/fuzz/fuzz_socks.c - libFuzzer target: every SOCKS4/4a/5 parser of
 * proxy/socks_proto.h on arbitrary bytes (greeting, RFC 1929 user/password,
 * request, UDP header). Parsed hosts must be NUL-terminated within bounds
 * and reported lengths inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/socks_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addr(const struct wm_socks_addr *a)
{
    if (memchr(a->host, 0, sizeof(a->host)) == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool none = false, up = false;
    char user[256], pass[256];
    size_t ulen = 0, plen = 0;
    uint8_t cmd = 0;
    struct wm_socks_addr a;
    int r;

    (void)wm_socks5_parse_greeting(data, size, &none, &up);
    r = wm_socks5_parse_userpass(data, size, user, &ulen, pass, &plen);
    if (r > 0 && (ulen > 255 || plen > 255 || (size_t)r > size)) {
        abort();
    }
    memset(&a, 0, sizeof(a));
    r = wm_socks5_parse_request(data, size, &cmd, &a);
    if (r > 0) {
        if ((size_t)r > size) {
            abort();
        }
        check_addr(&a);
    }
    memset(&a, 0, sizeof(a));
    r = wm_socks5_parse_udp(data, size, &a);
    if (r > 0) {
        if ((size_t)r > size) {
            abort();
        }
        check_addr(&a);
    }
    memset(&a, 0, sizeof(a));
    r = wm_socks4_parse_request(data, size, &cmd, &a, user);
    if (r > 0) {
        if ((size_t)r > size || memchr(user, 0, sizeof(user)) == NULL) {
            abort();
        }
        check_addr(&a);
    }
    return 0;
}
