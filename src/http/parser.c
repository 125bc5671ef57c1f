#include "http/parser.h"

#include <llhttp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/util.h"
#include "http/head.h"

struct wm_http_parser {
    llhttp_t ll; /* first: callbacks cast llhttp_t* back to the parser */
    enum wm_http_kind kind;
    struct wm_http_head *head;
    bool too_large;
    bool bad_te;
    bool head_done;
    bool msg_done;
    bool no_body;
    bool paused;
    bool has_te;
    bool has_cl;
    bool has_host;
    bool given;     /* the head came whole from wm_http_parser_give_head() */
    char last;      /* the last byte of the previous feed ('\0': none) */
    const char *feed; /* the bytes of the body feed being parsed */
    uint64_t body_bytes; /* decoded body bytes of this message (chunk framing off) */
    size_t head_limit;   /* bytes of a head, and of a trailer section (names, values) */
    size_t trailer_bytes;
    size_t ext_bytes;    /* chunk extensions on the current chunk-size line */
    int given_method; /* llhttp_method of a given head */
    wm_http_body_cb body_cb;
    void *body_arg;
    const char *err;
    int err_status; /* HTTP status answering the error; 0: 400 (431 when too large) */
};

static struct wm_http_parser *P(llhttp_t *ll)
{
    return (struct wm_http_parser *)ll;
}

static int add(llhttp_t *ll, enum wm_http_part part, const char *at, size_t n)
{
    struct wm_http_parser *p = P(ll);

    if (p->head_done) {
        /* trailer fields: they travel with the raw body bytes, bounded as
         * a head (an endless section would hold the upstream reading) */
        p->trailer_bytes += n;
        if (p->trailer_bytes > p->head_limit) {
            p->err = "trailer section too large";
            return HPE_USER;
        }
        return 0;
    }
    if (wm_http_head_append(p->head, part, at, n) < 0) {
        p->too_large = true;
        return HPE_USER;
    }
    return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    return add(ll, WM_HTTP_PART_METHOD, at, n);
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    return add(ll, WM_HTTP_PART_URL, at, n);
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
    return add(ll, WM_HTTP_PART_STATUS, at, n);
}

static int on_field(llhttp_t *ll, const char *at, size_t n)
{
    return add(ll, WM_HTTP_PART_NAME, at, n);
}

static int on_value(llhttp_t *ll, const char *at, size_t n)
{
    struct wm_http_parser *p = P(ll);

    if (p->head_done && n > 0 && (at > p->feed ? at[-1] : p->last) == '\n') {
        /* A trailer value piece starting a line: an obs-fold, which llhttp
         * joins. Refused as in the head (bad_line()): the trailer goes on
         * raw, and its folded lines can carry any text. */
        p->err = "obs-fold in the trailer (a line starting with a space or tab)";
        return HPE_USER;
    }
    return add(ll, WM_HTTP_PART_VALUE, at, n);
}

static int on_field_complete(llhttp_t *ll)
{
    struct wm_http_parser *p = P(ll);

    if (p->head_done) {
        return 0;
    }
    if (wm_http_head_end_part(p->head, WM_HTTP_PART_NAME) < 0) {
        p->too_large = true;
        return HPE_USER;
    }
    return 0;
}

static int on_value_complete(llhttp_t *ll)
{
    struct wm_http_parser *p = P(ll);
    struct wm_http_field f;
    size_t n;

    if (p->head_done) {
        return 0;
    }
    if (wm_http_head_end_part(p->head, WM_HTTP_PART_VALUE) < 0) {
        p->too_large = true;
        return HPE_USER;
    }
    n = wm_http_head_nfields(p->head);
    wm_http_head_field(p->head, n - 1, &f);
    if (f.nlen == 0) {
        p->err = "empty header field name";
        return HPE_USER;
    }
    if (f.id == WM_HDR_TRANSFER_ENCODING) {
        p->has_te = true;
    } else if (f.id == WM_HDR_CONTENT_LENGTH) {
        p->has_cl = true;
    } else if (p->kind == WM_HTTP_REQUEST && f.id == WM_HDR_HOST) {
        if (p->has_host) {
            /* RFC 9112 3.2: 400; hops could route on different ones */
            p->err = "more than one Host header";
            return HPE_USER;
        }
        p->has_host = true;
    }
    return 0;
}

/* Call fn for each comma-separated token of every field named name (OWS
 * trimmed, empty elements skipped); stops at the first non-zero return. */
static int each_token(struct wm_http_head *h, enum wm_hdr name,
                      int (*fn)(const char *t, size_t n, void *arg), void *arg)
{
    struct wm_http_field f;

    for (size_t i = 0; i < wm_http_head_nfields(h); i++) {
        wm_http_head_field(h, i, &f);
        if (f.id != name) {
            continue;
        }
        for (size_t k = 0; k < f.vlen;) {
            size_t e = k;
            while (e < f.vlen && f.value[e] != ',') {
                e++;
            }
            const char *t = f.value + k;
            size_t tn = e - k;
            wm_trim(&t, &tn);
            int r = tn > 0 ? fn(t, tn, arg) : 0;
            if (r != 0) {
                return r;
            }
            k = e + 1;
        }
    }
    return 0;
}

struct te_scan {
    size_t codings;
    bool last_chunked;
};

static int te_token(const char *t, size_t n, void *arg)
{
    struct te_scan *sc = arg;

    sc->codings++;
    sc->last_chunked = wm_strieq(t, n, "chunked");
    return 0;
}

/* A Connection option may not name what frames the message: a hop that
 * honours it drops the header and reads the body differently (request
 * smuggling; for a response, the client reads its body, and the next
 * answer, wrongly). */
static int framing_token(const char *t, size_t n, void *arg)
{
    (void)arg;
    return wm_strieq(t, n, "content-length") || wm_strieq(t, n, "transfer-encoding");
}

/* Nor, in a request, what routes it. */
static int connection_token(const char *t, size_t n, void *arg)
{
    return framing_token(t, n, arg) || wm_strieq(t, n, "host");
}

/* Unframeable: the message's length cannot be trusted (answered 400, or
 * 502 for a response). */
static int framing_error(struct wm_http_parser *p, const char *why)
{
    p->bad_te = true;
    p->err = why;
    return HPE_USER;
}

static int request_error(struct wm_http_parser *p, int status, const char *why)
{
    p->err = why;
    p->err_status = status;
    return HPE_USER;
}

/* What we refuse to forward in a request head, whatever llhttp accepted. */
static int check_request(struct wm_http_parser *p, const llhttp_t *ll)
{
    if (ll->http_major == 0) {
        return request_error(p, 400, "request line without an HTTP version");
    }
    if (ll->http_major != 1) {
        return request_error(p, 505, "HTTP version not supported");
    }
    if (each_token(p->head, WM_HDR_CONNECTION, connection_token, NULL) != 0) {
        return request_error(p, 400, "Connection names a framing or routing header");
    }
    if (p->has_te) {
        struct te_scan sc = {0, false};
        each_token(p->head, WM_HDR_TRANSFER_ENCODING, te_token, &sc);
        if (!sc.last_chunked || ll->http_minor == 0) {
            /* RFC 9112 6.1: unframeable, and HTTP/1.0 has no chunked coding. */
            p->bad_te = true;
            p->err = ll->http_minor == 0 ? "Transfer-Encoding in an HTTP/1.0 request"
                                         : "Transfer-Encoding does not end in chunked";
            return HPE_USER;
        }
        if (sc.codings != 1) {
            /* RFC 9112 6.1: a coding we do not forward is not understood. */
            return request_error(p, 501, "transfer coding other than chunked");
        }
    }
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct wm_http_parser *p = P(ll);

    wm_http_head_set_version(p->head, ll->http_major, ll->http_minor);
    if (p->kind == WM_HTTP_RESPONSE) {
        wm_http_head_set_status(p->head, ll->status_code);
    }
    if (p->has_te && p->has_cl) {
        p->bad_te = true;
        return HPE_USER;
    }
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > INT64_MAX) {
        return framing_error(p, "Content-Length over 2^63-1"); /* a signed length wraps */
    }
    if (p->kind == WM_HTTP_REQUEST && check_request(p, ll) != 0) {
        return HPE_USER;
    }
    if (p->kind == WM_HTTP_RESPONSE && ll->status_code < 100) {
        /* RFC 9110 15: neither interim nor final, nothing to pass on */
        p->err = "status code below 100";
        return HPE_USER;
    }
    if (p->kind == WM_HTTP_RESPONSE &&
        each_token(p->head, WM_HDR_CONNECTION, framing_token, NULL) != 0) {
        /* the field would go as hop-by-hop while its framing is kept */
        return framing_error(p, "Connection names Content-Length or Transfer-Encoding");
    }
    p->head_done = true;
    if (p->kind == WM_HTTP_RESPONSE &&
        ((ll->status_code >= 100 && ll->status_code < 200) || ll->status_code == 204 ||
         ll->status_code == 304)) {
        return 1; /* RFC 9112 6.3 rule 1: these never have a body */
    }
    if (p->no_body) {
        return 1; /* e.g. the response to HEAD: message ends with its head */
    }
    return HPE_PAUSED;
}

/* A chunk-size line is complete: its size (content_length) and the length
 * of its extensions are bounded; hops that read sizes as signed, or keep
 * extensions, would otherwise frame the body differently. */
static int on_chunk_header(llhttp_t *ll)
{
    struct wm_http_parser *p = P(ll);

    p->ext_bytes = 0;
    if (ll->content_length > INT64_MAX) {
        return framing_error(p, "chunk size over 2^63-1");
    }
    return 0;
}

static int on_chunk_ext(llhttp_t *ll, const char *at, size_t n)
{
    struct wm_http_parser *p = P(ll);

    (void)at;
    p->ext_bytes += n;
    return p->ext_bytes > WM_HTTP_CHUNK_EXT_MAX ? framing_error(p, "chunk extensions too long")
                                                : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct wm_http_parser *p = P(ll);

    p->body_bytes += n;
    if (p->body_cb != NULL) {
        p->body_cb(p->body_arg, at, n);
    }
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct wm_http_parser *p = P(ll);

    p->msg_done = true;
    return HPE_PAUSED;
}

/* Filled once, by the first parser any thread makes; read by all of them
 * (llhttp keeps the pointer). */
static llhttp_settings_t settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void fill_settings(void)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_method = on_method;
    s.on_url = on_url;
    s.on_status = on_status;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_header_field_complete = on_field_complete;
    s.on_header_value_complete = on_value_complete;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_chunk_header = on_chunk_header;
    s.on_chunk_extension_name = on_chunk_ext;
    s.on_chunk_extension_value = on_chunk_ext;
    s.on_message_complete = on_message_complete;
    settings = s;
}

static void init_settings(void)
{
    pthread_once(&settings_once, fill_settings);
}

struct wm_http_parser *wm_http_parser_new(enum wm_http_kind kind, size_t head_limit,
                                          size_t max_fields)
{
    struct wm_http_parser *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    init_settings();
    p->kind = kind;
    p->head_limit = head_limit;
    p->head = wm_http_head_new(head_limit, max_fields);
    if (p->head == NULL) {
        free(p);
        return NULL;
    }
    llhttp_init(&p->ll, kind == WM_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    return p;
}

void wm_http_parser_free(struct wm_http_parser *p)
{
    if (p == NULL) {
        return;
    }
    wm_http_head_free(p->head);
    free(p);
}

struct wm_http_head *wm_http_parser_head(struct wm_http_parser *p)
{
    return p->head;
}

static enum wm_http_res classify_error(struct wm_http_parser *p, llhttp_errno_t e)
{
    if (p->too_large) {
        p->err = "head too large";
        return WM_HTTP_ERR_TOO_LARGE;
    }
    if (p->bad_te) {
        if (p->err == NULL) {
            p->err = "conflicting Content-Length / Transfer-Encoding";
        }
        return WM_HTTP_ERR_FRAMING;
    }
    if (p->err_status != 0) {
        return WM_HTTP_ERR_SYNTAX; /* check_request() said why */
    }
    if (e == HPE_UNEXPECTED_CONTENT_LENGTH || e == HPE_INVALID_TRANSFER_ENCODING ||
        e == HPE_INVALID_CONTENT_LENGTH) {
        p->err = llhttp_get_error_reason(&p->ll);
        return WM_HTTP_ERR_FRAMING;
    }
    if ((e == HPE_USER || e == HPE_CB_HEADERS_COMPLETE || e == HPE_CB_HEADER_VALUE_COMPLETE) &&
        p->err != NULL) {
        /* a callback said why (llhttp reports on_headers_complete's and
         * on_header_value_complete's refusals under their own codes) */
        return WM_HTTP_ERR_SYNTAX;
    }
    p->err = llhttp_get_error_reason(&p->ll);
    if (p->err == NULL) {
        p->err = llhttp_errno_name(e);
    }
    return WM_HTTP_ERR_SYNTAX;
}

static size_t used_until_pause(struct wm_http_parser *p, const char *data, size_t n)
{
    const char *pos = llhttp_get_error_pos(&p->ll);

    if (pos == NULL || pos < data || pos > data + n) {
        return n;
    }
    return (size_t)(pos - data);
}

/* RFC 9112 5.2: a line of the head starting with SP or HTAB (obs-fold:
 * it continues the previous field's value, which llhttp joins). We refuse
 * it rather than rewrite it: in requests (400: a request-smuggling shape,
 * hops disagree on it) and in responses (502). RFC 9112 2.2: so is a line
 * ending in a bare LF, which llhttp takes after the start line and as the
 * empty line. Scans the head bytes llhttp took, data[0..n); true (with
 * *used 0 and the error set) when one is folded or ends in a bare LF. */
static bool bad_line(struct wm_http_parser *p, const char *data, size_t n, size_t *used)
{
    const char *s = data;
    const char *end = data + n;

    if (n == 0) {
        return false;
    }
    if (p->last == '\n' && (data[0] == ' ' || data[0] == '\t')) {
        goto fold;
    }
    while ((s = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        if ((s > data ? s[-1] : p->last) != '\r') {
            p->err = "bare LF (a header line not ending in CRLF)";
            goto refuse;
        }
        if (++s < end && (*s == ' ' || *s == '\t')) {
            goto fold;
        }
    }
    p->last = data[n - 1];
    return false;
fold:
    p->err = "obs-fold (a header line starting with a space or tab)";
refuse:
    *used = 0;
    p->head_done = false;
    p->last = '\0';
    return true;
}

enum wm_http_res wm_http_parser_feed_head(struct wm_http_parser *p, const char *data, size_t n,
                                          size_t *used)
{
    if (data == NULL) {
        data = ""; /* an empty buffer's NULL: llhttp computes data + n */
    }
    llhttp_errno_t e = llhttp_execute(&p->ll, data, n);

    *used = n;
    if (e == HPE_OK) {
        return bad_line(p, data, n, used) ? WM_HTTP_ERR_SYNTAX : WM_HTTP_MORE;
    }
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && p->head_done) {
        *used = used_until_pause(p, data, n);
        if (bad_line(p, data, *used, used)) {
            return WM_HTTP_ERR_SYNTAX;
        }
        if (e == HPE_PAUSED_UPGRADE || p->msg_done) {
            /* Should not happen: we pause at headers first. */
            return WM_HTTP_HEAD_DONE;
        }
        llhttp_resume(&p->ll);
        return WM_HTTP_HEAD_DONE;
    }
    *used = 0;
    return classify_error(p, e);
}

enum wm_http_res wm_http_parser_feed_body(struct wm_http_parser *p, const char *data, size_t n,
                                          size_t *used)
{
    llhttp_errno_t e;

    if (p->msg_done) {
        *used = 0;
        return WM_HTTP_MSG_DONE;
    }
    if (data == NULL) {
        data = ""; /* as in wm_http_parser_feed_head */
    }
    p->feed = data;
    e = llhttp_execute(&p->ll, data, n);
    if (n > 0) {
        p->last = data[n - 1];
    }
    *used = n;
    if (e == HPE_OK) {
        return WM_HTTP_MORE;
    }
    if (e == HPE_PAUSED && p->msg_done) {
        *used = used_until_pause(p, data, n);
        return WM_HTTP_MSG_DONE;
    }
    if (e == HPE_PAUSED_UPGRADE) {
        /* Upgrade/CONNECT: the message ends at its head. */
        p->msg_done = true;
        *used = used_until_pause(p, data, n);
        return WM_HTTP_MSG_DONE;
    }
    *used = 0;
    return classify_error(p, e);
}

enum wm_http_res wm_http_parser_feed_eof(struct wm_http_parser *p)
{
    llhttp_errno_t e;

    if (p->msg_done) {
        return WM_HTTP_MSG_DONE;
    }
    e = llhttp_finish(&p->ll);
    if ((e == HPE_OK || e == HPE_PAUSED) && p->msg_done) {
        return WM_HTTP_MSG_DONE;
    }
    p->err = "connection closed before the message was complete";
    return WM_HTTP_ERR_SYNTAX;
}

void wm_http_parser_reset(struct wm_http_parser *p)
{
    llhttp_init(&p->ll, p->kind == WM_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    wm_http_head_reset(p->head);
    p->head_done = p->msg_done = false;
    p->has_te = p->has_cl = p->has_host = false;
    p->too_large = p->bad_te = false;
    p->no_body = false;
    p->given = false;
    p->last = '\0';
    p->body_bytes = 0;
    p->trailer_bytes = 0;
    p->ext_bytes = 0;
    p->err = NULL;
    p->err_status = 0;
}

void wm_http_parser_next(struct wm_http_parser *p)
{
    llhttp_errno_t e = llhttp_get_errno(&p->ll);

    if (e == HPE_PAUSED) {
        llhttp_resume(&p->ll);
    } else if (e == HPE_PAUSED_UPGRADE) {
        llhttp_resume_after_upgrade(&p->ll);
    }
    if (p->given || p->kind == WM_HTTP_RESPONSE) {
        /* Storage kept: a response parser lives while its upstream does
         * (each answer needs it); a given head goes back to its HTTP/2
         * stream's connection at the next wm_http_parser_give_head(). */
        wm_http_head_clear(p->head);
    } else {
        wm_http_head_reset(p->head); /* a client waiting between requests holds none */
    }
    p->head_done = p->msg_done = false;
    p->has_te = p->has_cl = p->has_host = false;
    p->too_large = p->bad_te = false;
    p->given = false;
    p->last = '\0';
    p->body_bytes = 0;
    p->trailer_bytes = 0;
    p->ext_bytes = 0;
    p->err = NULL;
    p->err_status = 0;
}

/* llhttp's number for a method name, -1 when it has none. */
static int method_number(const char *m, size_t n)
{
#define WM_METHOD_CASE(num, name, string)                                                  \
    if (n == sizeof(#string) - 1 && memcmp(m, #string, n) == 0) {                          \
        return num;                                                                         \
    }
    HTTP_METHOD_MAP(WM_METHOD_CASE)
#undef WM_METHOD_CASE
    return -1;
}

int wm_http_parser_give_head(struct wm_http_parser *p, struct wm_http_head **h)
{
    const char *m;
    size_t n;
    int num;
    struct wm_http_head *mine = p->head;

    if (p->kind != WM_HTTP_REQUEST || p->head_done || wm_http_head_size(mine) != 0) {
        return -1; /* only between requests */
    }
    m = wm_http_head_method(*h, &n);
    if ((num = method_number(m, n)) < 0 || num == HTTP_CONNECT) {
        return -1;
    }
    p->head = *h;
    *h = mine; /* the caller gets our empty head back */
    p->given = true;
    p->given_method = num;
    p->head_done = p->msg_done = true; /* no body: the message ends with its head */
    return 0;
}

bool wm_http_parser_keep_alive(struct wm_http_parser *p)
{
    return p->given || llhttp_should_keep_alive(&p->ll) != 0;
}

bool wm_http_parser_upgrade(struct wm_http_parser *p)
{
    return !p->given && p->ll.upgrade != 0;
}

bool wm_http_parser_chunked(struct wm_http_parser *p)
{
    return !p->given && (p->ll.flags & F_CHUNKED) != 0;
}

bool wm_http_parser_needs_eof(struct wm_http_parser *p)
{
    return !p->given && llhttp_message_needs_eof(&p->ll) != 0;
}

bool wm_http_parser_has_body(struct wm_http_parser *p)
{
    if (p->given || p->msg_done) {
        return false; /* no body bytes, or all of them read */
    }
    if (p->ll.flags & F_CHUNKED) {
        return true;
    }
    return (p->ll.flags & F_CONTENT_LENGTH) && p->ll.content_length > 0;
}

int wm_http_parser_method(struct wm_http_parser *p)
{
    return p->given ? p->given_method : p->ll.method;
}

uint64_t wm_http_parser_body_bytes(const struct wm_http_parser *p)
{
    return p->body_bytes;
}

void wm_http_parser_expect_no_body(struct wm_http_parser *p, bool on)
{
    p->no_body = on;
}

void wm_http_parser_set_body_cb(struct wm_http_parser *p, wm_http_body_cb cb, void *arg)
{
    p->body_cb = cb;
    p->body_arg = arg;
}

const char *wm_http_parser_error(struct wm_http_parser *p)
{
    return p->err != NULL ? p->err : "malformed message";
}

int wm_http_parser_error_status(struct wm_http_parser *p)
{
    if (p->err_status != 0) {
        return p->err_status;
    }
    return p->too_large ? 431 : 400;
}
