/*
 * core/json.h - writing JSON text (the control API's answers, /status).
 */
#ifndef WM_CORE_JSON_H
#define WM_CORE_JSON_H

struct evbuffer;

/* Append s as a JSON string literal, quotes included. Always valid JSON in
 * UTF-8, whatever s holds (peer-supplied names, file paths): quotes and
 * backslashes escaped, control characters as \n, \r, \t or \u00XX, valid
 * UTF-8 sequences kept, every byte that is not part of one written as
 * U+FFFD. */
void wm_json_string(struct evbuffer *out, const char *s);

#endif
