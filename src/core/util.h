/*
 * core/util.h - small helpers without state: constant-time compare, base64,
 * strict number parsing, case-insensitive token search.
 */
#ifndef WM_CORE_UTIL_H
#define WM_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes in socket fd's send queue that its peer has not acknowledged
 * (SIOCOUTQ), or -1 (fd < 0, not a socket). A peer that reads slowly
 * drains this queue long before the kernel wakes a writer again (a third of
 * a buffer megabytes large): progress watchdogs look at it. */
int wm_sock_sendq(int fd);

/* Compare two byte strings in time that depends only on the lengths, not on
 * where they differ. Returns true when equal. */
bool wm_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Decode standard base64 (with or without padding) from in[0..n) into out
 * (capacity cap). Returns the decoded length, or -1 on bad input/overflow. */
long wm_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* Encode n bytes into out (capacity cap, NUL-terminated). Returns length or -1. */
long wm_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap);

/* Parse an unsigned decimal integer in s[0..n) into *out, all bytes digits,
 * value <= max. Returns 0 or -1. */
int wm_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out);

/* Case-insensitive equality of two byte ranges of length n. */
bool wm_memieq(const char *a, const char *b, size_t n);
/* The same when lower[0..n) is known to have no capital letter (ASCII):
 * only s is folded. */
bool wm_memieq_lower(const char *s, const char *lower, size_t n);

/* FNV-1a over p[0..n), continuing from h (WM_FNV_INIT to start): the
 * project's one hash for tables keyed by bytes. Not for adversarial keys
 * where collisions would matter beyond a longer chain. */
#define WM_FNV_INIT 1469598103934665603ULL
static inline uint64_t wm_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ULL;
    }
    return h;
}

/* splitmix64's finalizer: every bit of the result depends on every bit of
 * h. */
static inline uint64_t wm_mix64(uint64_t h)
{
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* A keyed hash for tables whose keys a peer chooses (a client's address,
 * Host, URL): FNV-1a from a secret seed, mixed, so the low bits (the chain)
 * cannot be aimed at without the seed. */
static inline uint64_t wm_hash_seeded(uint64_t seed, const void *p, size_t n)
{
    return wm_mix64(wm_fnv1a(WM_FNV_INIT ^ seed, p, n));
}

/* Case-insensitive equality of s[0..n) and the NUL-terminated lit. Inline:
 * with a literal the length test is a constant, and most names that differ
 * differ in length (header lookups, variables). */
static inline bool wm_strieq(const char *s, size_t n, const char *lit)
{
    return __builtin_strlen(lit) == n && wm_memieq(s, lit, n);
}

/* Decode the UTF-8 sequence at s[0..n): on success store the code point in
 * *cp and return its length (1-4). Returns 0 for an invalid, overlong,
 * surrogate, > U+10FFFF or truncated sequence. */
size_t wm_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Copy in[0..n) to out (capacity cap, NUL-terminated) with control
 * characters escaped, so text from peers or files stays one printable
 * line: C0 and DEL as \xHH, C1 (U+0080..U+009F in UTF-8, CSI and friends
 * in terminals) as \xC2\xHH. fold_newlines: CR and LF become spaces (log
 * lines); else CR, LF and TAB are written \r, \n, \t (error messages). An
 * escape that does not fit is left out whole. Returns the length written. */
size_t wm_escape_ctl(char *out, size_t cap, const char *in, size_t n, bool fold_newlines);

/* RFC 9110 5.1/5.5: is s[0..n) a field name (a non-empty token), a field
 * value (no control character but HTAB: no CR, LF or NUL to split a
 * message)? For header rules from configs and tunnel clients. */
bool wm_field_name_ok(const char *s, size_t n);
bool wm_field_value_ok(const char *s, size_t n);

/* Does the comma-separated list s[0..n) contain token (case-insensitive)? */
bool wm_list_has_token(const char *s, size_t n, const char *token);
/* Iterate a comma-separated header list: the next element (trimmed, maybe
 * empty) from *pos on; false at the end. Start with *pos = 0. */
bool wm_list_next(const char *s, size_t n, size_t *pos, const char **tok, size_t *tlen);

/* Trim spaces and tabs from both ends of [*s, *s+*n). */
void wm_trim(const char **s, size_t *n);

/* snprintf for messages where truncation is acceptable (logs, errors). */
void wm_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Make the array *arr (elements of esz bytes, capacity *cap elements) hold
 * at least need elements, doubling from min_cap. Returns 0, or -1 on
 * overflow or out of memory (then *arr and *cap are untouched). The one
 * grow helper: call it with a void * copy of the typed pointer. */
int wm_grow(void **arr, size_t *cap, size_t need, size_t esz, size_t min_cap);

/* Monotonic clock in milliseconds. */
uint64_t wm_now_ms(void);

/* The same at tick resolution (a few ms), cheaper: for idle bookkeeping
 * done per read. */
uint64_t wm_now_coarse_ms(void);

/* A fast non-cryptographic random number (load balancing, jitter): one
 * generator per thread, seeded from the kernel. Never for secrets. */
uint64_t wm_random_u64(void);

#endif
