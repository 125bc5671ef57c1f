/*
 * tests/unit/net/test_lset.c - listener-set reconciliation (net/lset.h) on
 * two running workers: an address that stays keeps its sockets (the same
 * ones: no close and re-bind) and gets the new service; an address that
 * goes is closed; a bad set fails as a whole and changes nothing. The
 * sockets are observed from outside: the process's listening sockets in
 * /proc/self/fd, and connections to them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/service.h"
#include "core/worker.h"
#include "net/lset.h"

#define NWORKERS 2
#define MAX_SOCKS 16

/* A service that answers every connection with its tag, then closes it. */
struct tag_svc {
    struct wm_service base;
    char tag;
};

static void tag_accept(struct wm_service *svc, struct wm_worker *w, int fd,
                       const struct sockaddr *peer, socklen_t peerlen,
                       struct wm_listen_stats *stats)
{
    struct tag_svc *t = (struct tag_svc *)svc;

    (void)w;
    (void)peer;
    (void)peerlen;
    (void)stats;
    if (send(fd, &t->tag, 1, MSG_NOSIGNAL) != 1) {
        /* the test will notice */
    }
    close(fd);
}

static void tag_destroy(struct wm_service *svc)
{
    (void)svc; /* static */
}

static struct tag_svc svc1;
static struct tag_svc svc2;
static char addr_a[32];
static char addr_b[32];
static char addr_c[32];
static uint16_t port_a;
static uint16_t port_b;
static uint16_t port_c;

/* A free port on 127.0.0.1 (nobody listens there right now). */
static uint16_t free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int s = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s);
    return ntohs(sa.sin_port);
}

static int cmp_ino(const void *a, const void *b)
{
    ino_t x = *(const ino_t *)a;
    ino_t y = *(const ino_t *)b;

    return x < y ? -1 : (x > y);
}

/* The inodes of this process's listening TCP sockets on port, sorted;
 * returns how many. */
static size_t listening(uint16_t port, ino_t out[MAX_SOCKS])
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        int fd = (int)strtol(e->d_name, NULL, 10);
        struct stat st;
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int acc = 0;
        socklen_t al = sizeof(acc);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            continue;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sin_family != AF_INET ||
            ntohs(sa.sin_port) != port) {
            continue;
        }
        assert_true(n < MAX_SOCKS);
        out[n++] = st.st_ino;
    }
    closedir(d);
    qsort(out, n, sizeof(out[0]), cmp_ino);
    return n;
}

/* Connect to port: the serving service's tag, or 0 when refused. */
static char ask(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct pollfd p = {.fd = s, .events = POLLIN};
    char c = 0;

    assert_true(s >= 0);
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        assert_int_equal(errno, ECONNREFUSED);
        close(s);
        return 0;
    }
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_int_equal(recv(s, &c, 1, 0), 1);
    close(s);
    return c;
}

static int apply2(const char *a1, struct tag_svc *s1, const char *a2, struct tag_svc *s2,
                  struct wm_err *err)
{
    struct wm_lspec specs[2] = {{.addr = a1, .svc = &s1->base},
                                {.addr = a2, .svc = s2 != NULL ? &s2->base : NULL}};

    return wm_lset_apply(specs, a2 != NULL ? 2 : 1, err);
}

static int setup(void **state)
{
    (void)state;
    wm_service_init(&svc1.base, "test", tag_accept, tag_destroy);
    svc1.tag = '1';
    wm_service_init(&svc2.base, "test", tag_accept, tag_destroy);
    svc2.tag = '2';
    port_a = free_port();
    do {
        port_b = free_port();
    } while (port_b == port_a);
    do {
        port_c = free_port();
    } while (port_c == port_a || port_c == port_b);
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u", port_a);
    snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%u", port_b);
    snprintf(addr_c, sizeof(addr_c), "127.0.0.1:%u", port_c);
    assert_int_equal(wm_workers_init(NWORKERS), 0);
    assert_int_equal(wm_workers_start(), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    wm_workers_drain(0, wm_lset_close_worker, NULL);
    wm_workers_join();
    wm_lset_free();
    /* Every reference the listeners took was given back. */
    assert_int_equal(svc1.base.refs, 1);
    assert_int_equal(svc2.base.refs, 1);
    return 0;
}

/* A, then A+B (A keeps its very sockets, and serves with the new service),
 * then B only (A closes, B keeps its sockets). */
static void test_keep_add_remove(void **state)
{
    struct wm_err err;
    ino_t a1[MAX_SOCKS];
    ino_t a2[MAX_SOCKS];
    ino_t b1[MAX_SOCKS];
    ino_t b2[MAX_SOCKS];

    (void)state;
    assert_int_equal(apply2(addr_a, &svc1, NULL, NULL, &err), 0);
    assert_int_equal(listening(port_a, a1), NWORKERS); /* one socket per worker */
    assert_int_equal(listening(port_b, b1), 0);
    assert_int_equal(ask(port_a), '1');
    assert_int_equal(ask(port_b), 0);

    assert_int_equal(apply2(addr_a, &svc2, addr_b, &svc2, &err), 0);
    assert_int_equal(listening(port_a, a2), NWORKERS);
    assert_memory_equal(a1, a2, NWORKERS * sizeof(a1[0])); /* the same sockets */
    assert_int_equal(listening(port_b, b1), NWORKERS);
    assert_int_equal(ask(port_a), '2');
    assert_int_equal(ask(port_b), '2');

    assert_int_equal(apply2(addr_b, &svc1, NULL, NULL, &err), 0);
    assert_int_equal(listening(port_a, a2), 0);
    assert_int_equal(ask(port_a), 0);
    assert_int_equal(listening(port_b, b2), NWORKERS);
    assert_memory_equal(b1, b2, NWORKERS * sizeof(b1[0]));
    assert_int_equal(ask(port_b), '1');

    assert_int_equal(wm_lset_apply(NULL, 0, &err), 0); /* nothing */
    assert_int_equal(listening(port_b, b2), 0);
    assert_int_equal(ask(port_b), 0);
}

/* A set with a bad address, an address in use, or one address twice fails
 * as a whole, with a message, and leaves the running set as it was (same
 * sockets, same service). */
static void test_bad_set_changes_nothing(void **state)
{
    struct wm_err err;
    ino_t a1[MAX_SOCKS];
    ino_t a2[MAX_SOCKS];
    ino_t c[MAX_SOCKS];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port_c),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int busy = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    assert_int_equal(apply2(addr_a, &svc1, NULL, NULL, &err), 0);
    assert_int_equal(listening(port_a, a1), NWORKERS);

    wm_err_clear(&err);
    assert_int_equal(apply2(addr_a, &svc2, "nonsense", &svc2, &err), -1);
    assert_non_null(strstr(err.msg, "nonsense"));

    /* Taken by someone else (this socket, without SO_REUSEPORT). */
    assert_true(busy >= 0);
    assert_int_equal(bind(busy, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(busy, 1), 0);
    wm_err_clear(&err);
    assert_int_equal(apply2(addr_a, &svc2, addr_c, &svc2, &err), -1);
    assert_non_null(strstr(err.msg, addr_c));
    assert_int_equal(listening(port_c, c), 1); /* only the test's own */
    close(busy);

    wm_err_clear(&err);
    assert_int_equal(apply2(addr_b, &svc2, addr_b, &svc2, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(listening(port_b, c), 0);

    assert_int_equal(listening(port_a, a2), NWORKERS);
    assert_memory_equal(a1, a2, NWORKERS * sizeof(a1[0]));
    assert_int_equal(ask(port_a), '1');
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keep_add_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_set_changes_nothing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
