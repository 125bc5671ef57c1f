/*
 * tests/fuzz/fuzz_h2.c - libFuzzer target: one client connection to a
 * plain (h2c) port of the reverse proxy, the real service end to end:
 * accept, the HTTP/2 sniff or the HTTP/1 engine, the nghttp2 session and
 * its callbacks (h2/h2.c), the HTTP/2 -> HTTP/1.1 head translation
 * (h2_head.c), each stream's engine (http/fwd.h) with routing, limits and
 * header rules (reverse/), local answers (static_response, files) and a
 * proxied upstream the harness plays, over the keep-alive pool.
 *
 * Input: two bytes set the scene
 *   byte 0 bit 0     the harness sends the client preface first (else the
 *                    input starts the connection: HTTP/1, Upgrade: h2c, or
 *                    its own preface)
 *          bits 1-2  how the upstream answers each request: 0 Content-Length,
 *                    1 chunked, 2 the input's upstream bytes, 3 close-delimited
 *          bit 3     the client half-closes after its bytes
 *          bits 4-6  size of the pieces the client's bytes arrive in
 *          bit 7     the client reads nothing until its bytes are written
 *                    (the proxy's output backs up)
 *   byte 1 bit 0     a graceful reload (GOAWAY to every h2 connection)
 *                    half-way through the client's bytes
 *          bit 1     the upstream closes after each answer
 * then a 16-bit length L, L bytes from the client, and the rest is the
 * upstream's answer for kind 2.
 *
 * The upstream parses what it receives with the strict HTTP/1 parser: every
 * request the proxy sends must parse (one Host, unambiguous framing), which
 * is what an HTTP/2 request's translation must give. No packet leaves the
 * process (the upstream listens on 127.0.0.1 in this process); ASan/UBSan
 * and the leak checker judge the rest.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "conf/config.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "h2/h2.h"
#include "http/head.h"
#include "http/parser.h"
#include "reverse/rev.h"
#include "fuzz_feed.h"

#define MAX_UP 64

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24

/* The upstream's connections, as the harness reads them. */
struct up {
    int fd;
    bool body; /* the head of a request was read, its body is */
    bool raw;  /* after a 101: bytes are echoed, not parsed */
    struct wm_http_parser *p;
};

static struct event_base *base;
static struct evconnlistener *upl;
static struct wm_rev *rev;
static char root[64]; /* the file server's */

static struct up ups[MAX_UP];
static size_t nup;
static int kind;             /* upstream answer kind, see above */
static bool up_closes;
static const uint8_t *answer; /* kind 2 */
static size_t answer_len;
static bool client_reads = true;
static bool h2_only; /* the harness sent the preface: no HTTP/1 request */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the upstream ---- */

static void on_up(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    struct wm_http_parser *p = wm_http_parser_new(WM_HTTP_REQUEST, 1 << 20, 10000);
    if (nup >= MAX_UP || p == NULL) {
        wm_http_parser_free(p);
        close(fd);
        return;
    }
    ups[nup++] = (struct up){.fd = fd, .p = p};
}

static void up_write(struct up *u, const void *b, size_t n)
{
    if (n > 0 && write(u->fd, b, n) < 0) {
        /* a full socket or a closed proxy side: the rest is not needed */
    }
}

static void up_close(struct up *u)
{
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    wm_http_parser_free(u->p);
    u->p = NULL;
}

static void up_answer(struct up *u, bool upgrade)
{
    static const char *const fixed[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        "Keep-Alive: timeout=5\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        NULL,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    };

    if (kind == 2) {
        up_write(u, answer, answer_len);
    } else if (upgrade) {
        static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 "Upgrade: websocket\r\n\r\n\x81\x02hi";
        up_write(u, sw, sizeof(sw) - 1);
    } else {
        up_write(u, fixed[kind], strlen(fixed[kind]));
    }
    u->raw = upgrade;
    if (!upgrade && (kind == 3 || up_closes)) {
        shutdown(u->fd, SHUT_WR);
    }
}

static void up_check(struct up *u, enum wm_http_res r)
{
    if (r == WM_HTTP_ERR_SYNTAX || r == WM_HTTP_ERR_TOO_LARGE || r == WM_HTTP_ERR_FRAMING) {
        fprintf(stderr, "the upstream got a bad request: %s\n", wm_http_parser_error(u->p));
        abort();
    }
}

/* Everything the proxy sent must be well-framed HTTP/1.1 requests. */
static void up_feed(struct up *u, const char *b, size_t n)
{
    while (n > 0 && !u->raw) {
        size_t used = 0;
        enum wm_http_res r;
        if (!u->body) {
            r = wm_http_parser_feed_head(u->p, b, n, &used);
            up_check(u, r);
            b += used;
            n -= used;
            if (r != WM_HTTP_HEAD_DONE) {
                break;
            }
            struct wm_http_head *h = wm_http_parser_head(u->p);
            if (wm_http_head_major(h) != 1 || (h2_only && wm_http_head_minor(h) != 1)) {
                abort(); /* HTTP/1.1 for HTTP/2 streams (HTTP/1.0 clients stay 1.0) */
            }
            if (wm_http_parser_upgrade(u->p)) {
                up_answer(u, true);
                break;
            }
            u->body = true;
        }
        r = wm_http_parser_feed_body(u->p, b, n, &used);
        up_check(u, r);
        b += used;
        n -= used;
        if (r != WM_HTTP_MSG_DONE) {
            break;
        }
        up_answer(u, false);
        wm_http_parser_next(u->p);
        u->body = false;
    }
    if (u->raw) {
        up_write(u, b, n); /* the WebSocket echoes */
    }
}

static void up_read(void)
{
    char buf[16384];

    for (size_t i = 0; i < nup; i++) {
        ssize_t n;
        while (ups[i].fd >= 0 && (n = read(ups[i].fd, buf, sizeof(buf))) > 0) {
            up_feed(&ups[i], buf, (size_t)n);
        }
    }
}

static void up_close_all(void)
{
    for (size_t i = 0; i < nup; i++) {
        up_close(&ups[i]);
    }
    nup = 0;
}

/* ---- the proxy ---- */

/* The file server's root: one directory per user, made again (atomically,
 * file by file) at each start and left in place, so no run leaves another
 * behind, whatever way it ends. */
static int make_root(void)
{
    char path[160], tmp[176];
    static const char *const files[][2] = {
        {"a.txt", "hello world\n"},
        {"index.html", "<p>index</p>\n"},
        {"sub/b.css", "p { color: red; }\np { color: blue; }\np { margin: 0; }\n"},
    };

    snprintf(root, sizeof(root), "/tmp/wm-fuzz-h2-%u", (unsigned)getuid());
    snprintf(path, sizeof(path), "%s/sub", root);
    if ((mkdir(root, 0700) != 0 && errno != EEXIST) ||
        (mkdir(path, 0700) != 0 && errno != EEXIST)) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, files[i][0]);
        snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (f == NULL) {
            return -1;
        }
        fputs(files[i][1], f);
        if (fclose(f) != 0 || rename(tmp, path) != 0) {
            return -1;
        }
    }
    return 0;
}

/* One plain address with two servers: a.test (the first, h2c on) with a
 * location of each kind, b.test with http2 = false. */
static struct wm_rev *make_rev(int port)
{
    char text[4096];
    struct wm_conf *c = NULL;
    struct wm_conf_diags d = {0};
    struct wm_err err;
    struct wm_rev *r = NULL;

    snprintf(text, sizeof(text),
             "[http]\n"
             "[http.limit_req_zone]\n"
             "one = \"{client_ip} limit=1m rate=20r/s\"\n"
             "[[http.upstream]]\n"
             "name = \"pool\"\n"
             "keepalive = 4\n"
             "server = [{ addr = \"127.0.0.1:%d\" }]\n"
             "[[http.server]]\n"
             "bind_addr = \"127.0.0.1:1\"\n"
             "up_name = \"a.test\"\n"
             "client_max_body_size = \"8k\"\n"
             "[[http.server.location]]\n"
             "rule = \"/static\"\n"
             "static_response = \"static {method} {host}\"\n"
             "[[http.server.location]]\n"
             "rule = \"/ws\"\n"
             "is_ws = true\n"
             "proxy_url = \"ws://127.0.0.1:%d\"\n"
             "[[http.server.location]]\n"
             "rule = \"/files\"\n"
             "file_server = { root = \"%s\", prefix = \"/files\", browse = true }\n"
             "[[http.server.location]]\n"
             "rule = \"/limited\"\n"
             "limit_req = \"zone=one burst=2\"\n"
             "proxy_url = \"http://pool\"\n"
             "[[http.server.location]]\n"
             "rule = \"/rules\"\n"
             "proxy_url = \"http://pool\"\n"
             "headers = [\"+ X-Resp yes\", \"- x-up\", \"proxy X-Via 1\"]\n"
             "[[http.server.location]]\n"
             "rule = \"/\"\n"
             "proxy_url = \"http://pool\"\n"
             "[[http.server]]\n"
             "bind_addr = \"127.0.0.1:1\"\n"
             "up_name = \"b.test\"\n"
             "http2 = false\n"
             "static_response = \"b\"\n",
             port, port, root);
    if (wm_conf_load_text("fuzz_h2.toml", text, strlen(text), false, &c, &d) != 0) {
        char line[512];
        for (size_t i = 0; i < d.n; i++) {
            fprintf(stderr, "%s\n", wm_conf_diag_format(&d, i, line, sizeof(line)));
        }
        abort();
    }
    wm_conf_diags_free(&d);
    if (wm_rev_prepare(c->http, NULL, &r, &err) != 0 || wm_rev_nlisten(r) != 1) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    wm_conf_free(c);
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);

    (void)argc;
    (void)argv;
    base = fuzz_start();
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    upl = evconnlistener_new_bind(base, on_up, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                  64, (struct sockaddr *)&a, sizeof(a));
    if (upl == NULL || getsockname(evconnlistener_get_fd(upl), (struct sockaddr *)&a, &len) != 0 ||
        make_root() != 0) {
        abort();
    }
    rev = make_rev(ntohs(a.sin_port));
    return 0;
}

static void spin(int fd, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (client_reads) {
            fuzz_drain(fd);
        }
        up_read();
    }
}

/* fuzz_feed's guard: a client that reads nothing while the proxy waits for
 * it to read before reading more would block for ever; it reads after a while. */
static unsigned feed_rounds;

static bool feed_stop(void)
{
    if (++feed_rounds > 20000) {
        client_reads = true;
    }
    return false;
}

static void reload(struct wm_worker *w, void *arg)
{
    (void)arg;
    wm_h2_goaway_worker(w, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t pieces[] = {5, 9, 64, 512, 1400, 4096, 16384, 65536};
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct wm_worker *w = wm_worker_get(0);
    int sv[2];

    if (size < 4) {
        return 0;
    }
    uint8_t c0 = data[0], c1 = data[1];
    size_t clen = (size_t)data[2] << 8 | data[3];
    const uint8_t *cdata = data + 4;
    if (clen > size - 4) {
        clen = size - 4;
    }
    answer = cdata + clen;
    answer_len = size - 4 - clen;
    kind = (c0 >> 1) & 3;
    h2_only = (c0 & 1) != 0;
    up_closes = (c1 & 2) != 0;
    client_reads = (c0 & 0x80) == 0;
    size_t piece = pieces[(c0 >> 4) & 7];
    feed_rounds = 0;

    struct wm_service *svc = wm_rev_service_new(rev, 0);
    if (svc == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        wm_service_unref(svc);
        return 0;
    }
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    svc->accept(svc, w, sv[0], (struct sockaddr *)&peer, sizeof(peer), NULL);
    if (c0 & 1) {
        fuzz_feed(sv[1], (const uint8_t *)preface, PREFACE_LEN, PREFACE_LEN, spin, NULL);
    }
    size_t half = c1 & 1 ? clen / 2 : clen;
    fuzz_feed(sv[1], cdata, half, piece, spin, feed_stop);
    if (c1 & 1) {
        reload(w, NULL);
        fuzz_feed(sv[1], cdata + half, clen - half, piece, spin, feed_stop);
    }
    if (c0 & 8) {
        shutdown(sv[1], SHUT_WR);
    }
    client_reads = true;
    spin(sv[1], 6);
    /* the client and the upstream go away; the proxy must follow */
    close(sv[1]);
    spin(-1, 4);
    up_close_all();
    spin(-1, 4);
    up_close_all(); /* dialled during the last spin */
    wm_service_unref(svc);
    wm_rev_worker_exit(); /* the keep-alive pool and the file cache, as a worker leaving */
    return 0;
}
