#include "core/json.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"

void wm_json_string(struct evbuffer *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);

    evbuffer_add(out, "\"", 1);
    while (left > 0) {
        /* the longest run that needs no escaping goes in one call */
        size_t run = 0;
        while (run < left && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') {
            run++;
        }
        if (run > 0) {
            evbuffer_add(out, p, run);
            p += run;
            left -= run;
            continue;
        }
        uint32_t cp;
        size_t n = 1;
        const char *esc = *p == '"'    ? "\\\""
                          : *p == '\\' ? "\\\\"
                          : *p == '\n' ? "\\n"
                          : *p == '\r' ? "\\r"
                          : *p == '\t' ? "\\t"
                                       : NULL;
        if (esc != NULL) {
            evbuffer_add(out, esc, 2);
        } else if (*p < 0x20) {
            evbuffer_add_printf(out, "\\u%04x", *p);
        } else if ((n = wm_utf8_decode(p, left, &cp)) > 0) {
            evbuffer_add(out, p, n);
        } else {
            evbuffer_add(out, "\\ufffd", 6); /* not part of a UTF-8 sequence */
            n = 1;
        }
        p += n;
        left -= n;
    }
    evbuffer_add(out, "\"", 1);
}
