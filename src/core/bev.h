/*
 * core/bev.h - helpers that treat every bufferevent kind alike.
 */
#ifndef WM_CORE_BEV_H
#define WM_CORE_BEV_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct evbuffer;

/* Send end-of-stream on bev while keeping its read side open:
 * socket -> shutdown(SHUT_WR); TLS -> close_notify; pair -> EOF to partner.
 * Call once its output buffer is empty. */
void wm_bev_shutdown_write(struct bufferevent *bev);

/* Move the first n bytes of src to bev's output. When bev is a plain socket
 * whose output is empty, write them to the socket at once and queue only
 * what the kernel did not take: this saves the add/remove of the write event
 * (two epoll_ctl) for every small write. Whatever is queued turns writing
 * on (EV_WRITE), so a bufferevent need not keep EV_WRITE enabled while it
 * has nothing to send. Returns 0, or -1 when out of memory. */
int wm_bev_send(struct bufferevent *bev, struct evbuffer *src, size_t n);

/* libevent reads a socket 4 KiB at a time (EVBUFFER_MAX_READ); for bulk
 * data that is a syscall and a loop turn per 4 KiB. From a read callback,
 * pull up to max more bytes from a plain socket bufferevent's fd in large
 * reads. EOF and errors are left for the bufferevent to report. Returns
 * the bytes added. */
size_t wm_bev_read_more(struct bufferevent *bev, size_t max);

/*
 * Fast reading for a plain socket bufferevent: the bufferevent keeps
 * writing and reporting write errors, while reads are done here, up to 64
 * KiB per syscall and without libevent's FIONREAD before each read. The
 * given callbacks are called as the bufferevent would: readcb when bytes
 * arrived in its input, eventcb with BEV_EVENT_EOF|READING or
 * BEV_EVENT_ERROR|READING. Reading pauses by itself while the input holds
 * `limit` bytes or more (wm_fastread_set() resumes it).
 * Ownership: the caller frees it with wm_fastread_free() before freeing or
 * handing on the bufferevent; that restores normal reading when on.
 */
struct wm_fastread;
struct wm_fastread *wm_fastread_new(struct bufferevent *bev, size_t limit,
                                    void (*readcb)(struct bufferevent *, void *),
                                    void (*eventcb)(struct bufferevent *, short, void *), void *arg);
/* Turn reading on or off (on: also resumes after the input was drained). */
void wm_fastread_set(struct wm_fastread *fr, bool on);
void wm_fastread_free(struct wm_fastread *fr);

/* Free bev as the end of a connection. For one end of a pair (a tunnel
 * stream) the partner first gets EOF, so the other side learns it. */
void wm_bev_free(struct bufferevent *bev);

/* Same for bytes in memory (copied; data stays the caller's). */
int wm_bev_send_bytes(struct bufferevent *bev, const void *data, size_t n);

/* Is bev a plain socket bufferevent (no TLS, no filter, not a pair)? */
bool wm_bev_is_plain_socket(struct bufferevent *bev);

#endif
