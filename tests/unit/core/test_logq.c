/*
 * tests/unit/core/test_logq.c - the log queue (core/logq.h): lines reach
 * their descriptor in order, closes come after the lines queued before
 * them, and a writer stuck on a pipe nobody reads stops neither a close
 * nor the stop itself. The stuck case leaves the queue abandoned for the
 * rest of the process, so it runs last.
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
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "core/logq.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Everything readable from fd until EOF (at most cap - 1 bytes). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;

    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) {
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void test_lines_in_order_then_close(void **state)
{
    int p[2];
    char got[4096];
    char want[4096];
    size_t w = 0;

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(wm_logq_start(1), 0);
    for (int i = 0; i < 100; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %d\n", i);
        wm_logq_write(p[1], line, (size_t)n);
        memcpy(want + w, line, (size_t)n);
        w += (size_t)n;
    }
    want[w] = '\0';
    wm_logq_close(p[1]); /* after its lines: the reader then sees EOF */
    wm_logq_stop();
    assert_int_equal(read_all(p[0], got, sizeof(got)), w);
    assert_string_equal(got, want);
    close(p[0]);
}

/* A pipe whose reader never reads: the writer blocks in its write. A close
 * must still be taken at once, and the stop must end within its wait. */
static void test_stuck_writer_neither_close_nor_stop_hangs(void **state)
{
    int p[2];
    int spare[2];
    char line[200];
    double t0;

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(spare), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    assert_int_equal(wm_logq_start(1), 0);
    /* far more than the pipe and the queue take: the writer is stuck and
     * the queue full */
    for (int i = 0; i < 4 * (int)(WM_LOGQ_BYTES / sizeof(line)); i++) {
        wm_logq_write(p[1], line, sizeof(line));
    }
    assert_true(wm_logq_dropped() > 0);
    t0 = now_s();
    wm_logq_close(spare[1]); /* the close reserve takes it */
    assert_true(now_s() - t0 < 1.0);
    t0 = now_s();
    wm_logq_stop();
    assert_true(now_s() - t0 < 8.0);
    /* lines after an abandoned stop queue (or drop); none blocks */
    t0 = now_s();
    wm_logq_write(p[1], line, sizeof(line));
    assert_true(now_s() - t0 < 1.0);
    close(p[0]); /* the writer's write fails now (EPIPE, SIGPIPE blocked there) */
    close(spare[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_in_order_then_close),
        cmocka_unit_test(test_stuck_writer_neither_close_nor_stop_hangs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
