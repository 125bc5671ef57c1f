/*
 * core/fsutil.h - small file-system helpers for state this process keeps
 * on disk (keys, known_hosts): directories made with a mode, files
 * replaced atomically, a lock shared by the processes using a directory.
 *
 * Blocking calls: for start, reload, and rare events (a first pin).
 * Errors: -1 with errno set, except where a message is asked for.
 */
#ifndef WM_CORE_FSUTIL_H
#define WM_CORE_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Make dir and its missing parents; each new one gets mode. 0 (also when
 * it exists), -1 with errno. */
int wm_mkdir_p(const char *dir, mode_t mode);

/* Copy the directory part of path (everything before the last '/', "."
 * when none) into out. 0, or -1 when it does not fit. */
int wm_dirname(const char *path, char *out, size_t cap);

/* Take an exclusive lock (flock) on directory dir, waiting for other
 * processes. Returns a descriptor for wm_dir_unlock(), or -1 with errno. */
int wm_dir_lock(const char *dir);
void wm_dir_unlock(int fd);

/* Replace path with data: written to a new file of mode (never readable
 * by others when mode says so, not even for a moment), synced, then
 * renamed over path. 0, or -1 with errno. */
int wm_file_replace(const char *path, const void *data, size_t len, mode_t mode);

/* Is path (symlinks followed) a regular file? What a library reads whole
 * by name (certificates, keys, trust anchors) must be one: a FIFO blocks
 * its reader until some writer comes (on the main loop: a reload, the
 * control API and the stop signals with it), a device may never end.
 * 0, or -1 with why ("is a directory", "not a regular file", or the
 * stat(2) error) in why[cap]. */
int wm_file_check_regular(const char *path, char *why, size_t cap);

/* Open path for appending (created with mode, close-on-exec) without
 * waiting: a FIFO that no process reads fails with ENXIO instead of
 * blocking the opener (the main loop at a reload or SIGUSR1) until a
 * reader comes. The descriptor returned blocks as usual. -1 with errno. */
int wm_open_append(const char *path, mode_t mode);

/* Read the whole file path (at most max bytes) into a new NUL-terminated
 * buffer (the caller frees it; *len without the NUL). Only a regular
 * file, never waiting for a FIFO's writer. -1 with errno (ENOENT: no
 * file; EFBIG: larger than max; EISDIR: a directory; EINVAL: another
 * kind of file). */
int wm_file_read(const char *path, size_t max, char **data, size_t *len);

#endif
