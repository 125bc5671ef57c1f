/*
 * conf/units.h - strict parsing of the value forms configs use.
 *
 *   duration: "30s", "5m", "1h", "2d", "250ms", or a bare number of seconds
 *   size:     "512", "4k", "10m", "1g" (binary multiples, case-insensitive,
 *             optional trailing "b": "10mb")
 *   rate:     "<size>/s" for bandwidth ("4m/s"), "<n>r/s" or "<n>r/m" for
 *             requests ("1000r/s")
 * Each returns 0, or -1 with err->msg filled ("expected a duration like
 * 30s"); file, line and key are left for the caller, who knows them.
 */
#ifndef WM_CONF_UNITS_H
#define WM_CONF_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wm_err;

struct wm_rate {
    uint64_t amount; /* bytes or requests per `per_ms` */
    uint32_t per_ms;
    bool requests;   /* "r/s": requests, else bytes */
};

int wm_parse_duration_ms(const char *s, uint64_t *ms, struct wm_err *err);
int wm_parse_size(const char *s, uint64_t *bytes, struct wm_err *err);
int wm_parse_rate(const char *s, struct wm_rate *r, struct wm_err *err);

/* A port list like frp's allowPorts: "2000-3000, 3001, 4000-50000" (ports
 * 1..65535, ranges low-high). With bits != NULL (8192 bytes, zeroed by the
 * caller) sets bit p for every port listed. 0, or -1 with a message.
 * (Still msg/cap: tunnel/node.c calls it; it takes struct wm_err when the
 * tunnel gets its own options struct.) */
#define WM_PORT_BITS_BYTES 8192
int wm_parse_port_list(const char *s, uint8_t *bits, char *msg, size_t cap);

/* Levenshtein distance of a and b, capped at limit+1 (for "did you mean"). */
size_t wm_edit_distance(const char *a, const char *b, size_t limit);

#endif
