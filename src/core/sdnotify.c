/*
 * core/sdnotify.c - sd_notify(3) as a datagram to $NOTIFY_SOCKET.
 */
#include "core/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Where the socket is: 0 and sun filled, or -1 (none or unusable). */
static int notify_addr(struct sockaddr_un *sun, socklen_t *len)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n;

    if (path == NULL || (path[0] != '/' && path[0] != '@')) {
        return -1; /* systemd also knows vsock: not for us */
    }
    n = strlen(path);
    if (n < 2 || n >= sizeof(sun->sun_path)) {
        return -1;
    }
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        sun->sun_path[0] = '\0'; /* abstract namespace: no trailing NUL counted */
    }
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    return 0;
}

int wm_sd_notify(const char *fmt, ...)
{
    struct sockaddr_un sun;
    socklen_t len;
    char msg[512];
    va_list ap;
    int fd;
    int n;

    if (notify_addr(&sun, &len) < 0) {
        return 0;
    }
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(msg)) {
        errno = EMSGSIZE;
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == n ? 1 : -1;
}

unsigned long long wm_sd_monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}
