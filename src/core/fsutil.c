/*
 * core/fsutil.c - see fsutil.h.
 */
#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_PATH_MAX 4096

int wm_mkdir_p(const char *dir, mode_t mode)
{
    char p[FS_PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(p)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') {
            continue;
        }
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            return -1;
        }
        p[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int wm_dirname(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);

    if (slash == path) {
        n = 1; /* "/file": the root */
    }
    if (slash == NULL) {
        return snprintf(out, cap, ".") < (int)cap ? 0 : -1;
    }
    if (n >= cap) {
        return -1;
    }
    memcpy(out, path, n);
    out[n] = '\0';
    return 0;
}

int wm_dir_lock(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

void wm_dir_unlock(int fd)
{
    if (fd >= 0) {
        close(fd); /* releases the flock */
    }
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int wm_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[FS_PATH_MAX];
    int fd;
    int e;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return -1;
    }
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

int wm_file_check_regular(const char *path, char *why, size_t cap)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        snprintf(why, cap, "%s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s", S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        return -1;
    }
    return 0;
}

int wm_open_append(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, mode);
    int fl;

    if (fd < 0) {
        return -1;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int wm_file_read(const char *path, size_t max, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: no wait for a writer */
    struct stat st = {0};
    char *buf;
    size_t n = 0;

    *data = NULL;
    *len = 0;
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        int e = errno;
        if (st.st_mode != 0 && !S_ISREG(st.st_mode)) {
            e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        } else if ((size_t)st.st_size > max) {
            e = EFBIG;
        }
        close(fd);
        errno = e;
        return -1;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break; /* shrank meanwhile: what was there */
        }
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
