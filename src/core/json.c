#include "core/json.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0: no overlong forms,
 * no surrogates, nothing above U+10FFFF (RFC 3629). p is NUL-terminated. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    uint32_t c;

    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
        c = p[0] & 0x1F;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        c = p[0] & 0x0F;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0; /* also stops at the NUL */
        }
        c = (c << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    return n;
}

void wm_json_string(struct evbuffer *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    evbuffer_add(out, "\"", 1);
    while (*p != '\0') {
        /* the longest run that needs no escaping goes in one call */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        if (p > run) {
            evbuffer_add(out, run, (size_t)(p - run));
            continue;
        }
        size_t n;
        switch (*p) {
        case '"':
            evbuffer_add(out, "\\\"", 2);
            p++;
            break;
        case '\\':
            evbuffer_add(out, "\\\\", 2);
            p++;
            break;
        case '\n':
            evbuffer_add(out, "\\n", 2);
            p++;
            break;
        case '\r':
            evbuffer_add(out, "\\r", 2);
            p++;
            break;
        case '\t':
            evbuffer_add(out, "\\t", 2);
            p++;
            break;
        default:
            if (*p < 0x20) {
                evbuffer_add_printf(out, "\\u%04x", *p);
                p++;
            } else if ((n = utf8_len(p)) > 0) {
                evbuffer_add(out, p, n);
                p += n;
            } else {
                evbuffer_add(out, "\\ufffd", 6);
                p++;
            }
        }
    }
    evbuffer_add(out, "\"", 1);
}
