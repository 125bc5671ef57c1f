/*
 * proxy/socks_udp.c - SOCKS5 UDP ASSOCIATE (RFC 1928 section 7).
 *
 * One association = the TCP control connection + a UDP socket facing the
 * client (bound to the IP the client reached us on) + lazily created
 * outbound sockets (one per address family). Rules:
 *  - only datagrams from the client's IP (and its port, once known or when
 *    given in the request) are accepted on the client socket;
 *  - fragmented datagrams (FRAG != 0) are dropped;
 *  - replies are accepted only from destinations the client has sent to
 *    recently (restricted cone), and are wrapped in the SOCKS UDP header;
 *  - the association ends with its TCP connection, or after the idle timeout.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/bev.h"
#include "core/log.h"
#include "core/util.h"
#include "net/acl.h"
#include "net/addr.h"
#include "proxy/pconn.h"
#include "proxy/socks_proto.h"

#define UDP_RECENT_DESTS 32
#define UDP_MAX_DNS_JOBS 16
#define UDP_BATCH 32
#define UDP_HDR_MAX 262

struct dns_job;

struct udp_assoc {
    struct wm_pconn *c;
    int cfd;
    struct event *cev;
    int ofd[2]; /* [0] v4, [1] v6 */
    struct event *oev[2];
    struct sockaddr_storage client;
    socklen_t clen;
    bool client_known;
    uint16_t want_port;
    struct sockaddr_storage dests[UDP_RECENT_DESTS];
    int ndest;
    int dest_next;
    struct event *idle_ev;
    uint64_t last_ms;
    struct dns_job *jobs;
    int njobs;
    uint64_t dgrams_in;
    uint64_t dgrams_out;
    uint64_t dgrams_refused; /* by the destination rules */
    uint64_t dgrams_toobig;  /* replies too large for one datagram to the client */
};

struct dns_job {
    struct dns_job *next;
    struct udp_assoc *ua; /* NULL once the association is gone */
    struct evdns_getaddrinfo_request *req;
    bool starting;
    bool done_early;
    uint16_t port;
    char name[WM_HOST_MAX]; /* for the destination rules */
    size_t len;
    uint8_t data[]; /* payload to send once resolved */
};

static __thread uint8_t udp_buf[UDP_HDR_MAX + WM_UDP_MAX_DATAGRAM];

static void job_unlink(struct udp_assoc *ua, struct dns_job *j)
{
    for (struct dns_job **pp = &ua->jobs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            ua->njobs--;
            return;
        }
    }
}

static void assoc_free(struct wm_conn *conn)
{
    struct wm_pconn *c = wm_pconn_of(conn);
    struct udp_assoc *ua = c->conn.proto_data;

    if (ua == NULL) {
        return;
    }
    wm_log(WM_LOG_DEBUG, c->conn.id, "udp association closed: %llu datagram(s) in, %llu out",
           (unsigned long long)ua->dgrams_in, (unsigned long long)ua->dgrams_out);
    while (ua->jobs != NULL) {
        struct dns_job *j = ua->jobs;
        ua->jobs = j->next;
        j->ua = NULL; /* the resolver callback frees it */
        if (j->req != NULL) {
            evdns_getaddrinfo_cancel(j->req);
        }
    }
    if (ua->cev != NULL) {
        event_free(ua->cev);
    }
    if (ua->cfd >= 0) {
        close(ua->cfd);
    }
    for (int i = 0; i < 2; i++) {
        if (ua->oev[i] != NULL) {
            event_free(ua->oev[i]);
        }
        if (ua->ofd[i] >= 0) {
            close(ua->ofd[i]);
        }
    }
    if (ua->idle_ev != NULL) {
        event_free(ua->idle_ev);
    }
    free(ua);
    c->conn.proto_data = NULL;
}

static bool dest_known(struct udp_assoc *ua, const struct sockaddr *sa)
{
    for (int i = 0; i < ua->ndest; i++) {
        if (wm_addr_equal((const struct sockaddr *)&ua->dests[i], sa)) {
            return true;
        }
    }
    return false;
}

static void dest_remember(struct udp_assoc *ua, const struct sockaddr *sa, socklen_t len)
{
    if (dest_known(ua, sa)) {
        return;
    }
    memcpy(&ua->dests[ua->dest_next], sa, len);
    ua->dest_next = (ua->dest_next + 1) % UDP_RECENT_DESTS;
    if (ua->ndest < UDP_RECENT_DESTS) {
        ua->ndest++;
    }
}

static void outbound_read_cb(evutil_socket_t fd, short what, void *arg);

static int outbound_fd(struct udp_assoc *ua, int family)
{
    int i = family == AF_INET6 ? 1 : 0;

    if (ua->ofd[i] >= 0) {
        return ua->ofd[i];
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    ua->oev[i] = event_new(wm_worker_base(ua->c->conn.w), fd, EV_READ | EV_PERSIST,
                           outbound_read_cb, ua);
    if (ua->oev[i] == NULL) {
        close(fd);
        return -1;
    }
    event_add(ua->oev[i], NULL);
    ua->ofd[i] = fd;
    return fd;
}

/* A datagram the destination rules refuse is dropped; the first of an
 * association is logged. name: NULL for an IP literal. */
static bool udp_refused(struct udp_assoc *ua, const char *name, const struct sockaddr *sa,
                        uint16_t port)
{
    const struct wm_acl *acl = ua->c->opts->acl;
    const char *why = NULL;
    char as[WM_ADDR_STR_MAX] = "-";
    char target[WM_HOST_MAX + 8];

    if (sa != NULL ? wm_acl_target_ok(acl, name, sa, &why)
                   : !wm_acl_name_denied(acl, name, port, &why)) {
        return false;
    }
    if (ua->dgrams_refused++ == 0) {
        if (sa != NULL) {
            wm_addr_format(sa, as, sizeof(as)); /* with its port */
        }
        if (name != NULL) {
            wm_addr_join(name, port, target, sizeof(target));
        } else {
            snprintf(target, sizeof(target), "%s", as);
        }
        wm_log(WM_LOG_WARN, ua->c->conn.id,
               "acl: refused udp client=%s target=%s addr=%s rule=%s (further refusals of "
               "this association are not logged)",
               ua->c->conn.peer_str, target, as, why);
    }
    return true;
}

static void send_to_target(struct udp_assoc *ua, const char *name, struct sockaddr *sa,
                           socklen_t len, const uint8_t *data, size_t n)
{
    int fd;

    if (udp_refused(ua, name, sa, wm_addr_port(sa))) {
        return;
    }
    fd = outbound_fd(ua, sa->sa_family);
    if (fd < 0) {
        return;
    }
    dest_remember(ua, sa, len);
    if (sendto(fd, data, n, 0, sa, len) >= 0) {
        ua->c->conn.bytes_in += n;
        ua->dgrams_in++;
    }
}

static void job_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct dns_job *j = arg;
    struct udp_assoc *ua = j->ua;

    j->req = NULL;
    if (ua != NULL && result == 0 && res != NULL) {
        struct sockaddr_storage ss;
        socklen_t len = (socklen_t)res->ai_addrlen;
        if (len <= sizeof(ss)) {
            memcpy(&ss, res->ai_addr, len);
            if (ss.ss_family == AF_INET) {
                ((struct sockaddr_in *)&ss)->sin_port = htons(j->port);
            } else {
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons(j->port);
            }
            send_to_target(ua, j->name, (struct sockaddr *)&ss, len, j->data, j->len);
        }
    }
    if (res != NULL) {
        evutil_freeaddrinfo(res);
    }
    if (j->starting) {
        j->done_early = true; /* the starter frees it */
        return;
    }
    if (ua != NULL) {
        job_unlink(ua, j);
    }
    free(j);
}

static void resolve_and_send(struct udp_assoc *ua, const struct wm_socks_addr *a,
                             const uint8_t *data, size_t n)
{
    struct evutil_addrinfo hints;
    struct dns_job *j;

    if (ua->njobs >= UDP_MAX_DNS_JOBS) {
        return; /* drop: a datagram may be lost, memory may not grow */
    }
    if (!wm_addr_name_resolvable(a->host) || udp_refused(ua, a->host, NULL, a->port)) {
        return; /* no lookup for a name the rules refuse outright */
    }
    j = malloc(sizeof(*j) + n);
    if (j == NULL) {
        return;
    }
    memset(j, 0, sizeof(*j));
    j->ua = ua;
    j->port = a->port;
    snprintf(j->name, sizeof(j->name), "%s", a->host);
    j->len = n;
    memcpy(j->data, data, n);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    j->starting = true;
    j->req = evdns_getaddrinfo(wm_worker_dns(ua->c->conn.w), a->host, NULL, &hints, job_dns_cb, j);
    j->starting = false;
    if (j->done_early) {
        free(j);
        return;
    }
    j->next = ua->jobs;
    ua->jobs = j;
    ua->njobs++;
}

/* Is src the association's client? The first datagram from the client's
 * address (and its announced port, when it gave one) fixes the port; only a
 * well-formed one (may_adopt) does, so a stray or malformed datagram from
 * another program on that host (or behind the same NAT) cannot take the
 * association before the client's own first datagram. */
static bool client_allowed(struct udp_assoc *ua, const struct sockaddr *src, socklen_t slen,
                           bool may_adopt)
{
    const struct wm_pconn *c = ua->c;

    if (!wm_addr_same_ip(src, (const struct sockaddr *)&c->conn.peer)) {
        return false;
    }
    if (ua->client_known) {
        return wm_addr_port(src) == wm_addr_port((struct sockaddr *)&ua->client);
    }
    if (!may_adopt || (ua->want_port != 0 && wm_addr_port(src) != ua->want_port)) {
        return false;
    }
    memcpy(&ua->client, src, slen);
    ua->clen = slen;
    ua->client_known = true;
    return true;
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct udp_assoc *ua = arg;

    (void)what;
    for (int k = 0; k < UDP_BATCH; k++) {
        struct sockaddr_storage src;
        socklen_t slen = sizeof(src);
        ssize_t n = recvfrom(fd, udp_buf, WM_UDP_MAX_DATAGRAM, 0, (struct sockaddr *)&src, &slen);
        struct wm_socks_addr a;
        int h;

        if (n < 0) {
            return;
        }
        h = wm_socks5_parse_udp(udp_buf, (size_t)n, &a);
        if (!client_allowed(ua, (struct sockaddr *)&src, slen, h >= 0)) {
            continue;
        }
        ua->last_ms = wm_now_ms();
        if (h < 0) {
            continue; /* fragment or malformed: dropped per RFC 1928 section 7 */
        }
        struct sockaddr_storage dst;
        socklen_t dlen;
        if (wm_addr_from_ip(a.host, a.port, &dst, &dlen) == 0) {
            send_to_target(ua, NULL, (struct sockaddr *)&dst, dlen, udp_buf + h,
                           (size_t)n - (size_t)h);
        } else {
            resolve_and_send(ua, &a, udp_buf + h, (size_t)n - (size_t)h);
        }
    }
}

/* A reply that the SOCKS header makes larger than one datagram to the
 * client can take is dropped; the first of an association is logged. */
static void reply_too_large(struct udp_assoc *ua, const struct sockaddr *src, size_t n)
{
    char from[WM_ADDR_STR_MAX];

    if (ua->dgrams_toobig++ != 0) {
        return;
    }
    wm_addr_format(src, from, sizeof(from));
    wm_log(WM_LOG_WARN, ua->c->conn.id,
           "udp associate client=%s: a reply of %zu bytes from %s does not fit one datagram "
           "with its SOCKS header: dropped (further ones of this association are not logged)",
           ua->c->conn.peer_str, n, from);
}

static void outbound_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct udp_assoc *ua = arg;
    const size_t cap = WM_UDP_MAX_DATAGRAM - 22;

    (void)what;
    for (int k = 0; k < UDP_BATCH; k++) {
        struct sockaddr_storage src;
        socklen_t slen = sizeof(src);
        size_t h;
        ssize_t n;

        /* Leave room in front for the SOCKS header; MSG_TRUNC: the real
         * length of a longer one, never a truncated reply relayed. */
        n = recvfrom(fd, udp_buf + UDP_HDR_MAX, cap, MSG_TRUNC, (struct sockaddr *)&src, &slen);
        if (n < 0) {
            return;
        }
        if (!ua->client_known || !dest_known(ua, (struct sockaddr *)&src)) {
            continue;
        }
        ua->last_ms = wm_now_ms();
        if ((size_t)n > cap) {
            reply_too_large(ua, (struct sockaddr *)&src, (size_t)n);
            continue;
        }
        uint8_t hdr[32];
        h = wm_socks5_build_udp_header(hdr, (struct sockaddr *)&src);
        memcpy(udp_buf + UDP_HDR_MAX - h, hdr, h);
        if (sendto(ua->cfd, udp_buf + UDP_HDR_MAX - h, (size_t)n + h, 0,
                   (struct sockaddr *)&ua->client, ua->clen) >= 0) {
            ua->c->conn.bytes_out += (uint64_t)n;
            ua->dgrams_out++;
        } else if (errno == EMSGSIZE) {
            reply_too_large(ua, (struct sockaddr *)&src, (size_t)n);
        }
    }
}

static void control_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    (void)arg;
    /* The control connection carries nothing after the request. */
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void control_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    wm_conn_finish(arg, "control-closed");
}

static void arm_idle(struct udp_assoc *ua, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ua->idle_ev, &tv);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct udp_assoc *ua = arg;
    uint64_t idle = (uint64_t)ua->c->opts->idle_timeout_ms;
    uint64_t since = wm_now_ms() - ua->last_ms;

    (void)fd;
    (void)what;
    if (since < idle) {
        arm_idle(ua, idle - since);
        return;
    }
    wm_conn_finish(&ua->c->conn, "idle-timeout");
}

/* why: a literal (the access line's end reason too); detail: NULL, or
 * more for the log line. */
static void udp_fail(struct wm_pconn *c, uint8_t rep, const char *why, const char *detail)
{
    uint8_t out[32];
    size_t n = wm_socks5_build_reply(out, rep, NULL);

    wm_log(WM_LOG_WARN, c->conn.id, "udp associate client=%s: %s%s%s", c->conn.peer_str, why,
           detail != NULL ? ": " : "", detail != NULL ? detail : "");
    c->conn.code = rep;
    wm_bev_send_bytes(c->conn.bev, out, n);
    wm_conn_close_after_flush(&c->conn, why);
}

void wm_socks5_udp_start(struct wm_pconn *c, const struct wm_socks_addr *hint)
{
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    struct udp_assoc *ua;
    evutil_socket_t tcp_fd = bufferevent_getfd(c->conn.bev);
    uint8_t out[32];

    if (tcp_fd < 0 || getsockname(tcp_fd, (struct sockaddr *)&local, &llen) < 0) {
        udp_fail(c, WM_SOCKS5_REP_CMD_UNSUPPORTED, "not a socket", NULL);
        return;
    }
    ua = calloc(1, sizeof(*ua));
    if (ua == NULL) {
        udp_fail(c, WM_SOCKS5_REP_FAILURE, "out of memory", NULL);
        return;
    }
    ua->c = c;
    ua->cfd = ua->ofd[0] = ua->ofd[1] = -1;
    ua->last_ms = wm_now_ms();
    c->conn.proto_data = ua;
    c->conn.proto_free = assoc_free;
    /* The client's UDP port, when it told us (an all-zero address means "any"). */
    ua->want_port = hint->port;
    if (local.ss_family == AF_INET) {
        ((struct sockaddr_in *)&local)->sin_port = 0;
    } else {
        ((struct sockaddr_in6 *)&local)->sin6_port = 0;
    }
    ua->cfd = socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ua->cfd < 0 || bind(ua->cfd, (struct sockaddr *)&local, llen) < 0 ||
        getsockname(ua->cfd, (struct sockaddr *)&local, &llen) < 0) {
        udp_fail(c, WM_SOCKS5_REP_FAILURE, "udp socket", strerror(errno));
        return;
    }
    ua->cev = event_new(wm_worker_base(c->conn.w), ua->cfd, EV_READ | EV_PERSIST, client_read_cb, ua);
    ua->idle_ev = evtimer_new(wm_worker_base(c->conn.w), idle_cb, ua);
    if (ua->cev == NULL || ua->idle_ev == NULL) {
        udp_fail(c, WM_SOCKS5_REP_FAILURE, "out of memory", NULL);
        return;
    }
    event_add(ua->cev, NULL);
    if (c->opts->idle_timeout_ms > 0) {
        arm_idle(ua, (uint64_t)c->opts->idle_timeout_ms);
    }
    wm_conn_clear_timer(&c->conn);
    c->conn.code = WM_SOCKS5_REP_OK;
    char relay[WM_ADDR_STR_MAX];
    wm_addr_format((struct sockaddr *)&local, relay, sizeof(relay));
    wm_conn_set_target(&c->conn, relay);
    wm_bev_send_bytes(c->conn.bev, out, wm_socks5_build_reply(out, WM_SOCKS5_REP_OK,
                                                         (struct sockaddr *)&local));
    bufferevent_setcb(c->conn.bev, control_read_cb, NULL, control_event_cb, c);
    bufferevent_enable(c->conn.bev, EV_READ);
    wm_log(WM_LOG_DEBUG, c->conn.id, "udp associate client=%s relay=%s", c->conn.peer_str, relay);
}
