#include "core/proxyflags.h"

#include <stdint.h>
#include <string.h>

#include "core/util.h"

int wm_proxy_parse_flags(const char *s, unsigned *flags)
{
    unsigned f = 0;
    uint64_t num;
    size_t n = strlen(s);

    if (wm_parse_u64(s, n, 7, &num) == 0) {
        if (num == 0) {
            return -1;
        }
        *flags = (unsigned)num;
        return 0;
    }
    while (*s != '\0') {
        size_t len;
        while (*s == ' ' || *s == ',' || *s == '|' || *s == '\t') {
            s++;
        }
        len = strcspn(s, " ,|\t");
        if (len == 0) {
            break;
        }
        if (wm_strieq(s, len, "http")) {
            f |= WM_PROXY_FLAG_HTTP;
        } else if (wm_strieq(s, len, "https")) {
            f |= WM_PROXY_FLAG_HTTPS;
        } else if (wm_strieq(s, len, "socks5") || wm_strieq(s, len, "socks")) {
            f |= WM_PROXY_FLAG_SOCKS5;
        } else {
            return -1;
        }
        s += len;
    }
    if (f == 0) {
        return -1;
    }
    *flags = f;
    return 0;
}
