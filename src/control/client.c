#include "control/client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "net/addr.h"

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = {fd, ev, 0};
    int r;

    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : -1;
}

static int dial(const char *host, uint16_t port, int ms, char *err, size_t cap)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char ps[8];
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL) {
        snprintf(err, cap, "cannot resolve %s", host);
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, ms) == 0)) {
            int e = 0;
            socklen_t el = sizeof(e);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
            if (e == 0) {
                break;
            }
            errno = e;
        }
        snprintf(err, cap, "cannot connect to %s:%u: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Write req[0..n) within ms per step. 0, or -1 with a reason in err. */
static int send_all(int fd, const char *req, int n, int ms, char *err, size_t cap)
{
    for (int off = 0; off < n;) {
        if (wait_fd(fd, POLLOUT, ms) < 0) {
            snprintf(err, cap, "timeout sending the request");
            return -1;
        }
        ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, cap, "send: %s", strerror(errno));
            return -1;
        }
        off += w > 0 ? (int)w : 0;
    }
    return 0;
}

#define CLIENT_HEAD_MAX 16384 /* room for the answer's status line and headers */

/* Read the answer until the peer closes: its status and body (at most
 * cap - 1 bytes; a longer one is an error, never a truncated document).
 * 0, or -1 with a reason in body. */
static int read_answer(int fd, int ms, int *status, char *body, size_t cap)
{
    size_t rlen = 0;
    size_t rcap = cap + CLIENT_HEAD_MAX;
    char *resp = malloc(rcap + 1);
    uint64_t code = 0;

    if (resp == NULL) {
        snprintf(body, cap, "out of memory");
        return -1;
    }
    for (;;) {
        if (wait_fd(fd, POLLIN, ms) < 0) {
            free(resp);
            snprintf(body, cap, "timeout waiting for the answer");
            return -1;
        }
        ssize_t r = recv(fd, resp + rlen, rcap - rlen, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (r <= 0 || (rlen += (size_t)r) >= rcap) {
            break;
        }
    }
    resp[rlen] = '\0';
    const char *b = strstr(resp, "\r\n\r\n");
    if (rlen < 12 || strncmp(resp, "HTTP/1.", 7) != 0) {
        snprintf(body, cap, "no HTTP answer from the control API");
    } else if (wm_parse_u64(resp + 9, 3, 999, &code) < 0) {
        snprintf(body, cap, "malformed status line from the control API");
    } else if (rlen >= rcap || (b != NULL && strlen(b + 4) >= cap)) {
        snprintf(body, cap, "the answer of the control API is larger than %zu bytes", cap - 1);
    } else {
        *status = (int)code;
        snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
        free(resp);
        return 0;
    }
    free(resp);
    return -1;
}

int wm_control_call(const char *target, const char *method, const char *path, const char *token,
                    int timeout_ms, int *status, char *body, size_t cap)
{
    char host[WM_HOST_MAX];
    uint16_t port;
    char req[1024];
    int fd;
    int n;
    int r;

    if (strncmp(target, "http://", 7) == 0) {
        target += 7;
    }
    size_t tl = strcspn(target, "/");
    if (wm_addr_split(target, tl, host, sizeof(host), &port) < 0) {
        snprintf(body, cap, "bad control address \"%s\" (expected host:port)", target);
        return -1;
    }
    bool bearer = token != NULL && token[0] != '\0';
    char authority[WM_HOST_MAX + 16];
    wm_addr_join(host, port, authority, sizeof(authority)); /* [v6]:port */
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n"
                 "%s%s%s\r\n",
                 method, path, authority, bearer ? "Authorization: Bearer " : "",
                 bearer ? token : "", bearer ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(body, cap, "request too long");
        return -1;
    }
    fd = dial(host, port, timeout_ms, body, cap);
    if (fd < 0) {
        return -1;
    }
    r = send_all(fd, req, n, timeout_ms, body, cap) < 0
            ? -1
            : read_answer(fd, timeout_ms, status, body, cap);
    close(fd);
    return r;
}
