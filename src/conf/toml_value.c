/*
 * conf/toml_value.c - TOML reader: values (numbers, datetimes, arrays, inline tables).
 */
#include "conf/cval.h"
#include "conf/toml.h"
#include "conf/toml_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NUM_SHOW_MAX 40 /* bytes of a bad number quoted in an error */

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int digit_val(int c, int base)
{
    int v;

    if (c >= '0' && c <= '9') {
        v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
    } else {
        return -1;
    }
    return v < base ? v : -1;
}

static struct wm_cval *oom(struct toml_parser *p, struct wm_cval *v)
{
    if (v == NULL) {
        toml_error(p, "out of memory");
    }
    return v;
}

/* ---- numbers ---- */

/* Scan digits of base from tok[*i]: '_' only between two digits. Returns the number of
 * digits read, or -1 on a misplaced underscore. */
static int scan_digits(const char *tok, size_t len, size_t *i, int base)
{
    int nd = 0;

    while (*i < len) {
        if (digit_val((unsigned char)tok[*i], base) >= 0) {
            nd++;
            (*i)++;
        } else if (tok[*i] == '_') {
            if (nd == 0 || *i + 1 >= len || digit_val((unsigned char)tok[*i + 1], base) < 0) {
                return -1;
            }
            (*i)++;
        } else {
            break;
        }
    }
    return nd;
}

/* Accumulate the digits of tok[from..to) (skipping '_') into *v, at most limit. */
static int accumulate(const char *tok, size_t from, size_t to, int base, uint64_t limit,
                      uint64_t *v)
{
    uint64_t acc = 0;
    int d;

    for (; from < to; from++) {
        d = digit_val((unsigned char)tok[from], base);
        if (d < 0) {
            continue;
        }
        if (acc > (limit - (uint64_t)d) / (uint64_t)base) {
            return -1;
        }
        acc = acc * (uint64_t)base + (uint64_t)d;
    }
    *v = acc;
    return 0;
}

static int bad_number(struct toml_parser *p, int line, int col, const char *tok, size_t len,
                      const char *why)
{
    return toml_error_at(p, line, col, "invalid number '%.*s'%s%s",
                         (int)(len > NUM_SHOW_MAX ? NUM_SHOW_MAX : len), tok,
                         why[0] != '\0' ? ": " : "", why);
}

static int make_float(struct toml_parser *p, const char *tok, size_t len, int line, int col,
                      struct wm_cval **out)
{
    double f;
    char *end;
    size_t i;

    p->buf.n = 0;
    for (i = 0; i < len; i++) {
        if (tok[i] != '_' && toml_buf_put(&p->buf, tok + i, 1) != 0) {
            return toml_error(p, "out of memory");
        }
    }
    errno = 0;
    f = strtod(p->buf.p, &end);
    if (end != p->buf.p + p->buf.n) {
        return bad_number(p, line, col, tok, len, "");
    }
    if (errno == ERANGE && isinf(f)) {
        return bad_number(p, line, col, tok, len, "out of range for a 64-bit float");
    }
    *out = oom(p, wm_cval_new_float(f, line, col));
    return *out != NULL ? 0 : -1;
}

/* After the integer digits of a decimal number, at tok[*i]: an optional
 * fraction and exponent (then *is_float). NULL, or what is wrong. */
static const char *float_tail(const char *tok, size_t len, size_t *i, bool *is_float)
{
    if (*i < len && tok[*i] == '.') {
        (*i)++;
        if (scan_digits(tok, len, i, 10) <= 0) {
            return "'.' must be followed by digits";
        }
        *is_float = true;
    }
    if (*i < len && (tok[*i] == 'e' || tok[*i] == 'E')) {
        (*i)++;
        if (*i < len && (tok[*i] == '+' || tok[*i] == '-')) {
            (*i)++;
        }
        if (scan_digits(tok, len, i, 10) <= 0) {
            return "bad exponent";
        }
        *is_float = true;
    }
    return NULL;
}

static int parse_number(struct toml_parser *p, struct wm_cval **out)
{
    const char *tok = p->s + p->pos;
    int line = p->line;
    int col = p->col;
    bool neg = false;
    bool is_float = false;
    size_t len;
    size_t i = 0;
    size_t start;
    uint64_t v;
    int base = 10;
    const char *why;
    int nd;
    int c;

    while ((c = toml_peek(p)) >= 0 && (is_digit(c) || (c >= 'a' && c <= 'z') ||
                                       (c >= 'A' && c <= 'Z') || c == '_' || c == '+' ||
                                       c == '-' || c == '.')) {
        toml_advance(p, 1);
    }
    len = (size_t)(p->s + p->pos - tok);
    if (len > 0 && (tok[0] == '+' || tok[0] == '-')) {
        neg = tok[0] == '-';
        i = 1;
    }
    if (len - i == 3 && (memcmp(tok + i, "inf", 3) == 0 || memcmp(tok + i, "nan", 3) == 0)) {
        double f = tok[i] == 'i' ? INFINITY : NAN;

        *out = oom(p, wm_cval_new_float(neg ? -f : f, line, col));
        return *out != NULL ? 0 : -1;
    }
    if (len - i >= 2 && tok[i] == '0' && (tok[i + 1] == 'x' || tok[i + 1] == 'o' ||
                                          tok[i + 1] == 'b')) {
        if (i > 0) {
            return bad_number(p, line, col, tok, len, "a prefixed integer cannot have a sign");
        }
        base = tok[1] == 'x' ? 16 : tok[1] == 'o' ? 8 : 2;
        i = 2;
    }
    start = i;
    nd = scan_digits(tok, len, &i, base);
    if (nd < 0) {
        return bad_number(p, line, col, tok, len, "'_' must sit between digits");
    }
    if (nd == 0) {
        return bad_number(p, line, col, tok, len, "");
    }
    if (base == 10 && tok[start] == '0' && nd > 1) {
        return bad_number(p, line, col, tok, len, "leading zeros are not allowed");
    }
    if (base == 10 && (why = float_tail(tok, len, &i, &is_float)) != NULL) {
        return bad_number(p, line, col, tok, len, why);
    }
    if (i != len) {
        return bad_number(p, line, col, tok, len, "");
    }
    if (is_float) {
        return make_float(p, tok, len, line, col, out);
    }
    if (accumulate(tok, start, len, base, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX,
                   &v) != 0) {
        return bad_number(p, line, col, tok, len, "out of range for a 64-bit integer");
    }
    /* negate in unsigned arithmetic so that INT64_MIN does not overflow */
    *out = oom(p, wm_cval_new_int(neg ? (int64_t)(0 - v) : (int64_t)v, line, col));
    return *out != NULL ? 0 : -1;
}

/* ---- datetimes ---- */

static bool digits_at(const char *s, size_t avail, size_t at, size_t n)
{
    size_t i;

    if (at + n > avail) {
        return false;
    }
    for (i = at; i < at + n; i++) {
        if (!is_digit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

static int num_at(const char *s, size_t at, size_t n)
{
    int v = 0;
    size_t i;

    for (i = at; i < at + n; i++) {
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        return 29;
    }
    return days[m - 1];
}

/* "HH:MM" at s[at] within range: 0 ok, -1 bad. */
static int hour_min(const char *s, size_t avail, size_t at)
{
    if (!digits_at(s, avail, at, 2) || at + 2 >= avail || s[at + 2] != ':' ||
        !digits_at(s, avail, at + 3, 2)) {
        return -1;
    }
    if (num_at(s, at, 2) > 23 || num_at(s, at + 3, 2) > 59) {
        return -1;
    }
    return 0;
}

/* Time "HH:MM:SS[.frac]" at s[*i]; advances *i. */
static int parse_time(struct toml_parser *p, const char *s, size_t avail, size_t *i)
{
    size_t at = *i;

    if (hour_min(s, avail, at) != 0 || at + 5 >= avail || s[at + 5] != ':' ||
        !digits_at(s, avail, at + 6, 2) || num_at(s, at + 6, 2) > 60) {
        return toml_error(p, "invalid time: expected HH:MM:SS with HH 00-23, MM and SS 00-59");
    }
    at += 8;
    if (at < avail && s[at] == '.') {
        at++;
        if (!digits_at(s, avail, at, 1)) {
            return toml_error(p, "invalid time: '.' must be followed by digits");
        }
        while (at < avail && is_digit((unsigned char)s[at])) {
            at++;
        }
    }
    *i = at;
    return 0;
}

static int parse_datetime(struct toml_parser *p, struct wm_cval **out)
{
    const char *s = p->s + p->pos;
    size_t avail = p->n - p->pos;
    enum wm_cval_type t = WM_CVAL_TIME_LOCAL;
    size_t sep = 0;
    size_t i = 0;
    char tail;
    int line = p->line;
    int col = p->col;
    int y;
    int m;

    if (digits_at(s, avail, 0, 4) && avail > 4 && s[4] == '-') {
        if (!digits_at(s, avail, 5, 2) || avail <= 7 || s[7] != '-' ||
            !digits_at(s, avail, 8, 2)) {
            return toml_error(p, "invalid date: expected YYYY-MM-DD");
        }
        y = num_at(s, 0, 4);
        m = num_at(s, 5, 2);
        if (m < 1 || m > 12 || num_at(s, 8, 2) < 1 || num_at(s, 8, 2) > days_in_month(y, m)) {
            return toml_error(p, "invalid date: no such day %.10s", s);
        }
        i = 10;
        t = WM_CVAL_DATE_LOCAL;
        if (i < avail && (s[i] == 'T' || s[i] == 't' ||
                          (s[i] == ' ' && digits_at(s, avail, i + 1, 2) && i + 3 < avail &&
                           s[i + 3] == ':'))) {
            sep = i++;
            t = WM_CVAL_DATETIME_LOCAL;
        }
    }
    if (t != WM_CVAL_DATE_LOCAL) {
        if (parse_time(p, s, avail, &i) != 0) {
            return -1;
        }
    }
    if (t == WM_CVAL_DATETIME_LOCAL && i < avail) {
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
            t = WM_CVAL_DATETIME;
        } else if (s[i] == '+' || s[i] == '-') {
            if (hour_min(s, avail, i + 1) != 0) {
                return toml_error(p, "invalid time offset: expected +HH:MM or -HH:MM");
            }
            i += 6;
            t = WM_CVAL_DATETIME;
        }
    }
    tail = i < avail ? s[i] : ' ';
    if (is_digit((unsigned char)tail) || (tail >= 'a' && tail <= 'z') ||
        (tail >= 'A' && tail <= 'Z') || (tail != '\0' && strchr("_.:+-", tail) != NULL)) {
        return toml_error(p, "invalid date or time '%.*s'", (int)(i + 1), s);
    }
    /* canonical form: 'T' separator and upper-case 'Z' */
    p->buf.n = 0;
    if (toml_buf_put(&p->buf, s, i) != 0) {
        return toml_error(p, "out of memory");
    }
    if (sep != 0) {
        p->buf.p[sep] = 'T';
    }
    if (p->buf.p[i - 1] == 'z') {
        p->buf.p[i - 1] = 'Z';
    }
    toml_advance(p, i);
    *out = oom(p, wm_cval_new_datetime(t, p->buf.p, i, line, col));
    return *out != NULL ? 0 : -1;
}

/* ---- containers ---- */

static int check_depth(struct toml_parser *p, int depth)
{
    if (depth > WM_TOML_MAX_DEPTH) {
        return toml_error(p, "nesting deeper than %d levels", WM_TOML_MAX_DEPTH);
    }
    return 0;
}

static int parse_array(struct toml_parser *p, int depth, struct wm_cval **out)
{
    struct wm_cval *arr;
    struct wm_cval *item;
    char d[16];

    if (check_depth(p, depth) != 0) {
        return -1;
    }
    arr = oom(p, wm_cval_new_array(p->line, p->col));
    if (arr == NULL) {
        return -1;
    }
    toml_advance(p, 1);
    for (;;) {
        toml_skip_ws_nl(p);
        if (toml_peek(p) == ']') {
            break;
        }
        if (toml_parse_value(p, depth + 1, &item) != 0) {
            goto fail;
        }
        if (wm_cval_array_push(arr, item) != 0) {
            toml_error(p, "out of memory");
            goto fail;
        }
        toml_skip_ws_nl(p);
        if (toml_peek(p) == ',') {
            toml_advance(p, 1);
            continue;
        }
        if (toml_peek(p) != ']') {
            toml_error(p, "expected ',' or ']' in array, found %s",
                       toml_describe(p, d, sizeof(d)));
            goto fail;
        }
        break;
    }
    toml_advance(p, 1);
    *out = arr;
    return 0;
fail:
    wm_cval_free(arr);
    return -1;
}

static int parse_inline_table(struct toml_parser *p, int depth, struct wm_cval **out)
{
    struct toml_key k = {NULL, 0, 0};
    struct wm_cval *t;
    struct wm_cval *val;
    char d[16];

    if (check_depth(p, depth) != 0) {
        return -1;
    }
    t = oom(p, wm_cval_new_table(p->line, p->col));
    if (t == NULL) {
        return -1;
    }
    toml_advance(p, 1);
    toml_skip_ws(p);
    if (toml_peek(p) == '}') {
        goto done;
    }
    for (;;) {
        toml_skip_ws(p);
        if (toml_at_newline(p)) {
            toml_error(p, "inline tables must stay on one line");
            goto fail;
        }
        if (toml_parse_key(p, &k) != 0) {
            goto fail;
        }
        if (toml_peek(p) != '=') {
            toml_error(p, "expected '=' after key, found %s", toml_describe(p, d, sizeof(d)));
            goto fail;
        }
        toml_advance(p, 1);
        toml_skip_ws(p);
        if (check_depth(p, depth + (int)k.n) != 0 ||
            toml_parse_value(p, depth + (int)k.n, &val) != 0 ||
            toml_insert(p, t, NULL, &k, val) != 0) {
            goto fail;
        }
        toml_key_clear(&k);
        toml_skip_ws(p);
        if (toml_peek(p) == '}') {
            break;
        }
        if (toml_peek(p) != ',') {
            if (toml_at_newline(p)) {
                toml_error(p, "inline tables must stay on one line");
            } else {
                toml_error(p, "expected ',' or '}' in inline table, found %s",
                           toml_describe(p, d, sizeof(d)));
            }
            goto fail;
        }
        toml_advance(p, 1);
        toml_skip_ws(p);
        if (toml_peek(p) == '}') {
            toml_error(p, "trailing comma not allowed in an inline table");
            goto fail;
        }
    }
done:
    toml_advance(p, 1);
    wm_cval_set_flags(t, wm_cval_flags(t) | TOML_F_FROZEN);
    *out = t;
    return 0;
fail:
    toml_key_clear(&k);
    wm_cval_free(t);
    return -1;
}

/* ---- dispatch ---- */

static int parse_word(struct toml_parser *p, const char *word, bool b, struct wm_cval **out)
{
    size_t n = strlen(word);

    if (p->n - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        return toml_error(p, "invalid value: expected %s", word);
    }
    *out = oom(p, wm_cval_new_bool(b, p->line, p->col));
    toml_advance(p, n);
    return *out != NULL ? 0 : -1;
}

int toml_parse_value(struct toml_parser *p, int depth, struct wm_cval **out)
{
    int c = toml_peek(p);
    int line = p->line;
    int col = p->col;
    char d[16];

    *out = NULL;
    switch (c) {
    case '"':
    case '\'':
        if (toml_parse_string(p, true) != 0) {
            return -1;
        }
        *out = oom(p, wm_cval_new_string(p->buf.p, p->buf.n, line, col));
        return *out != NULL ? 0 : -1;
    case 't':
        return parse_word(p, "true", true, out);
    case 'f':
        return parse_word(p, "false", false, out);
    case '[':
        return parse_array(p, depth, out);
    case '{':
        return parse_inline_table(p, depth, out);
    case 'i':
    case 'n':
    case '+':
    case '-':
        return parse_number(p, out);
    default:
        break;
    }
    if (!is_digit(c)) {
        return toml_error(p, "expected a value, found %s", toml_describe(p, d, sizeof(d)));
    }
    if ((digits_at(p->s + p->pos, p->n - p->pos, 0, 4) && toml_peek_at(p, 4) == '-') ||
        (digits_at(p->s + p->pos, p->n - p->pos, 0, 2) && toml_peek_at(p, 2) == ':')) {
        return parse_datetime(p, out);
    }
    return parse_number(p, out);
}
