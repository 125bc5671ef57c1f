#include "control/control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/authfail.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/service.h"
#include "core/util.h"
#include "core/version.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/listener.h"
#include "net/lset.h"
#include "control/dashboard.h"

#define CONTROL_BACKLOG 64 /* the control API sees a handful of clients */
#define CONTROL_ACCEPT_RETRY_MS 200

static struct evhttp *http;
static struct evconnlistener *accept_evl; /* http's, for the pause below */
static struct event *accept_retry;        /* re-enables accept_evl after a pause */
static char self_str[WM_ADDR_STR_MAX];
static struct wm_accept_pauses accept_pauses;
static struct wm_control_hooks hooks;
static char *token;
static uint64_t start_ms;


static void reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    char len[24];

    /* libevent writes none on an answer to HEAD or CONNECT */
    snprintf(len, sizeof(len), "%zu", body != NULL ? evbuffer_get_length(body) : (size_t)0);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Content-Length", len);
    evhttp_send_reply(req, code, reason, body);
}

static void reply_msg(struct evhttp_request *req, int code, const char *reason, bool ok,
                      const char *msg)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_printf(b, "{\"ok\":%s,\"message\":", ok ? "true" : "false");
    wm_json_string(b, msg);
    evbuffer_add(b, "}\n", 2);
    reply(req, code, reason, b);
    evbuffer_free(b);
}

/* The client's address, for the failed-authentication throttle. */
static const struct sockaddr *peer_of(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);

    return conn != NULL ? evhttp_connection_get_addr(conn) : NULL;
}

enum auth { AUTH_OK, AUTH_NEEDED, AUTH_ON_HOLD };

/* A wrong token counts as a failed authentication; after too many the
 * address is refused for a while (core/authfail.h). */
static enum auth authorized(struct evhttp_request *req)
{
    const char *v;
    bool ok;

    if (token == NULL) {
        return AUTH_OK;
    }
    v = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0) { /* scheme: any case */
        return AUTH_NEEDED;
    }
    if (wm_authfail_check(peer_of(req)) < 0) {
        return AUTH_ON_HOLD;
    }
    v += 7;
    ok = wm_ct_equal(v, strlen(v), token, strlen(token));
    wm_authfail_record(peer_of(req), ok);
    if (!ok) {
        wm_log(WM_LOG_WARN, 0, "control: wrong bearer token");
    }
    return ok ? AUTH_OK : AUTH_NEEDED;
}

static void status_listener(const struct wm_listen_stats *s, const char *kind, void *arg)
{
    struct evbuffer *b = arg;

    evbuffer_add_printf(b,
                        "%s{\"addr\":\"%s\",\"kind\":\"%s\",\"open\":%llu,\"accepted\":%llu,"
                        "\"bytes_in\":%llu,\"bytes_out\":%llu}",
                        evbuffer_get_length(b) > 0 ? "," : "", s->addr, kind,
                        __atomic_load_n(&s->open, __ATOMIC_RELAXED),
                        __atomic_load_n(&s->accepted, __ATOMIC_RELAXED),
                        __atomic_load_n(&s->bytes_in, __ATOMIC_RELAXED),
                        __atomic_load_n(&s->bytes_out, __ATOMIC_RELAXED));
}

struct recent_walk {
    struct evbuffer *b;
    int n;
};

static void status_recent(const char *line, void *arg)
{
    struct recent_walk *w = arg;

    if (w->n++ > 0) {
        evbuffer_add(w->b, ",", 1);
    }
    wm_json_string(w->b, line);
}

static void handle_status(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    struct evbuffer *ls = evbuffer_new();

    if (b == NULL || ls == NULL) {
        evhttp_send_error(req, 500, NULL);
        evbuffer_free(b);
        evbuffer_free(ls);
        return;
    }
    /* Connections first (acquire): once a connection is gone from the
     * count, its listener's counters below already show it closed. */
    size_t conns = wm_workers_conn_total();
    wm_lset_foreach_stats(status_listener, ls);
    evbuffer_add_printf(b,
                        "{\"version\":\"%s\",\"pid\":%d,\"uptime_s\":%llu,\"workers\":%d,"
                        "\"connections\":%zu,\"client_connections\":%zu,"
                        "\"max_connections\":%zu,\"listeners\":[",
                        WM_VERSION, (int)getpid(),
                        (unsigned long long)((wm_now_ms() - start_ms) / 1000),
                        wm_worker_count(), conns, wm_listen_open_total(),
                        wm_listener_max_connections());
    evbuffer_add_buffer(b, ls);
    evbuffer_add(b, "]", 1);
    if (hooks.status != NULL) {
        hooks.status(hooks.arg, b);
    }
    evbuffer_add(b, ",\"recent_errors\":[", 18);
    struct recent_walk rw = {.b = b, .n = 0};
    wm_log_recent(status_recent, &rw);
    evbuffer_add(b, "]}\n", 3);
    reply(req, 200, "OK", b);
    evbuffer_free(b);
    evbuffer_free(ls);
}

static void handle_metrics(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    wm_metrics_render(b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* The page holds no data (it fetches /status and /metrics with the token
 * the user types), so it is served without the token. */
static void handle_dashboard(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_reference(b, wm_dashboard_html, wm_dashboard_html_len, NULL, NULL);
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                      "frame-ancestors 'none'");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* A read from a web page is allowed only from the dashboard itself: an
 * Origin, when sent, must be this address (http:// + Host). */
static bool origin_allowed(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *o = evhttp_find_header(in, "Origin");
    const char *h = evhttp_find_header(in, "Host");

    if (o == NULL) {
        return true;
    }
    return h != NULL && strncmp(o, "http://", 7) == 0 && strcmp(o + 7, h) == 0;
}

static void handle_now(struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (hooks.now != NULL) {
        hooks.now(hooks.arg, b);
    } else {
        evbuffer_add(b, "{}", 2);
    }
    evbuffer_add(b, "\n", 1);
    reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void handle_reload(struct evhttp_request *req)
{
    struct wm_err err;
    char msg[WM_ERR_MSG_MAX + WM_ERR_FILE_MAX + WM_ERR_KEY_MAX + 32];

    if (hooks.reload == NULL) {
        reply_msg(req, 409, "Conflict", false, "this instance was started without a config file");
        return;
    }
    wm_err_clear(&err);
    int r = hooks.reload(hooks.arg, &err);
    wm_err_format(&err, msg, sizeof(msg));
    if (r == 0) {
        reply_msg(req, 200, "OK", true, msg[0] ? msg : "reloaded");
    } else {
        reply_msg(req, 422, "Unprocessable Entity", false, msg);
    }
}

static void handle_stop(struct evhttp_request *req)
{
    reply_msg(req, 200, "OK", true, "stopping");
    if (hooks.stop != NULL) {
        hooks.stop(hooks.arg);
    }
}

/* Without a token, only a Host that is an IP literal or localhost: a page
 * that rebinds its own name to 127.0.0.1 sends its name as Host (DNS
 * rebinding), and must not read /status or post /stop. With a token the
 * page cannot authenticate anyway. */
static bool host_allowed(struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    char name[WM_HOST_MAX];
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t len;

    if (token != NULL) {
        return true;
    }
    if (h == NULL) {
        return true; /* HTTP/1.0 clients; browsers always send Host */
    }
    if (wm_addr_split_port(h, strlen(h), name, sizeof(name), &port, 80) < 0) {
        return false;
    }
    return strcasecmp(name, "localhost") == 0 || wm_addr_from_ip(name, 0, &ss, &len) == 0;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evhttp_uri *u = evhttp_uri_parse(uri);
    const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
    bool post = cmd == EVHTTP_REQ_POST;
    bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
    enum auth auth;

    (void)arg;
    if (cmd == EVHTTP_REQ_CONNECT) {
        reply_msg(req, 405, "Method Not Allowed", false, "this is the control API, not a proxy");
    } else if (path == NULL) {
        reply_msg(req, 400, "Bad Request", false, "bad request target");
    } else if (!host_allowed(req)) {
        wm_log(WM_LOG_WARN, 0, "control: %s with Host \"%.64s\" refused (DNS rebinding?)", path,
               evhttp_find_header(evhttp_request_get_input_headers(req), "Host"));
        reply_msg(req, 403, "Forbidden", false,
                  "Host must be an IP address or localhost (or set control_token)");
    } else if (strcmp(path, "/") == 0 || strcmp(path, "/dashboard") == 0) {
        if (!get) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply_msg(req, 405, "Method Not Allowed", false, "use GET");
        } else {
            handle_dashboard(req);
        }
    } else if (get && !origin_allowed(req)) {
        wm_log(WM_LOG_WARN, 0, "control: %s from another origin (%.80s) refused", path,
               evhttp_find_header(evhttp_request_get_input_headers(req), "Origin"));
        reply_msg(req, 403, "Forbidden", false, "requests from other web pages are refused");
    } else if ((auth = authorized(req)) == AUTH_ON_HOLD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "60");
        reply_msg(req, 429, "Too Many Requests", false,
                  "too many failed authentications from this address; try again later");
    } else if (auth != AUTH_OK) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"wmproxy\"");
        reply_msg(req, 401, "Unauthorized", false, "a valid bearer token is required");
    } else if (strcmp(path, "/status") == 0 || strcmp(path, "/now") == 0) {
        if (!get) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply_msg(req, 405, "Method Not Allowed", false, "use GET");
        } else if (path[1] == 's') {
            handle_status(req);
        } else {
            handle_now(req);
        }
    } else if (strcmp(path, "/metrics") == 0) {
        if (!get) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply_msg(req, 405, "Method Not Allowed", false, "use GET");
        } else {
            handle_metrics(req);
        }
    } else if (strcmp(path, "/reload") == 0 || strcmp(path, "/stop") == 0) {
        if (!post) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            reply_msg(req, 405, "Method Not Allowed", false,
                      "state-changing endpoints take POST only");
        } else if (evhttp_find_header(evhttp_request_get_input_headers(req), "Origin") != NULL) {
            /* A browser page posting to localhost (a plain form needs no
             * preflight): the CLI and scripts send no Origin. */
            wm_log(WM_LOG_WARN, 0, "control: %s from a web page (Origin: %s) refused", path,
                   evhttp_find_header(evhttp_request_get_input_headers(req), "Origin"));
            reply_msg(req, 403, "Forbidden", false,
                      "requests from web pages (with an Origin header) are refused");
        } else if (path[1] == 'r') {
            wm_log(WM_LOG_INFO, 0, "control: reload requested");
            handle_reload(req);
        } else {
            wm_log(WM_LOG_INFO, 0, "control: stop requested");
            handle_stop(req);
        }
    } else {
        reply_msg(req, 404, "Not Found", false, "unknown endpoint");
    }
    if (u != NULL) {
        evhttp_uri_free(u); /* libevent 2.1's does not take NULL */
    }
}

void wm_control_set_token(const char *t)
{
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    token = (t != NULL && t[0] != '\0') ? strdup(t) : NULL;
}

static struct sockaddr_storage self_addr; /* where we listen, while we do */

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    evconnlistener_enable(accept_evl);
}

/* Out of descriptors or memory: pause, as the proxy listeners do, instead of
 * libevent's default (a warning and a retry at once, a busy loop while the
 * process has no descriptor left). */
static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct timeval tv = {0, CONTROL_ACCEPT_RETRY_MS * 1000};

    (void)arg;
    wm_accept_pause_note(&accept_pauses, "control: ", self_str, strerror(errno),
                         CONTROL_ACCEPT_RETRY_MS);
    evconnlistener_disable(evl);
    evtimer_add(accept_retry, &tv);
}

/* The control port is exclusive: no SO_REUSEPORT (unlike the proxy
 * listeners), so a second instance with the same control address fails to
 * start instead of silently sharing the port and half of the requests. */
static int control_socket(const struct sockaddr_storage *ss, socklen_t len, const char *addr,
                          struct wm_err *err)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return wm_err_set(err, NULL, 0, 0, "control", "socket for %s: %s", addr, strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, CONTROL_BACKLOG) < 0) {
        wm_err_set(err, NULL, 0, 0, "control", "bind %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int wm_control_start(struct event_base *base, const char *addr, const char *tok,
                     const struct wm_control_hooks *h, struct wm_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct evhttp_bound_socket *bound;
    int fd;

    if (wm_addr_parse_listen(addr, &ss, &len) < 0) {
        return wm_err_set(err, NULL, 0, 0, "control", "expected \"ip:port\", got \"%s\"", addr);
    }
    fd = control_socket(&ss, len, addr, err);
    if (fd < 0) {
        return -1;
    }
    http = evhttp_new(base);
    accept_retry = evtimer_new(base, accept_retry_cb, NULL);
    if (http == NULL || accept_retry == NULL ||
        (bound = evhttp_accept_socket_with_handle(http, fd)) == NULL) {
        close(fd);
        if (http != NULL) {
            evhttp_free(http);
            http = NULL;
        }
        if (accept_retry != NULL) {
            event_free(accept_retry);
            accept_retry = NULL;
        }
        return wm_err_set(err, NULL, 0, 0, "control", "cannot serve on %s", addr);
    }
    accept_evl = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(accept_evl, accept_error_cb);
    snprintf(self_str, sizeof(self_str), "%s", addr);
    evhttp_set_timeout(http, 10);
    evhttp_set_max_headers_size(http, 16384);
    evhttp_set_max_body_size(http, 65536);
    /* every method libevent knows reaches dispatch(): a JSON 404/405, not
     * libevent's HTML 501 (which also left the connection open) */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
                                         EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, dispatch, NULL);
    memcpy(&self_addr, &ss, sizeof(ss));
    wm_lset_self_add((const struct sockaddr *)&ss, len); /* no proxy may dial it */
    hooks = *h;
    wm_control_set_token(tok);
    start_ms = wm_now_ms();
    return 0;
}

void wm_control_stop(void)
{
    if (http != NULL) {
        evhttp_free(http); /* frees accept_evl */
        http = NULL;
        accept_evl = NULL;
        event_free(accept_retry);
        accept_retry = NULL;
        wm_lset_self_remove((const struct sockaddr *)&self_addr);
    }
    wm_control_set_token(NULL);
}
