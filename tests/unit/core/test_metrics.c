/* core/metrics and core/logq: series are interned by name and labels,
 * shards of several threads sum, histograms bucket by the fixed bounds,
 * label values are escaped, the cache returns the same ids, the text
 * follows the exposition format; the log queue keeps order and closes in
 * order. */
#include <event2/buffer.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/logq.h"
#include "core/metrics.h"

static int setup(void **state)
{
    (void)state;
    return wm_metrics_init(2);
}

static int teardown(void **state)
{
    (void)state;
    wm_metrics_shutdown();
    return 0;
}

static char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    wm_metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static void *worker(void *arg)
{
    wm_metric m = *(wm_metric *)arg;
    static int next;
    wm_metrics_bind_thread(__atomic_fetch_add(&next, 1, __ATOMIC_RELAXED) % 2);
    for (int i = 0; i < 100000; i++) {
        wm_metrics_inc(m);
    }
    return NULL;
}

static void test_interning_and_sum(void **state)
{
    (void)state;
    wm_metric a = wm_metrics_counter("t_total", "help", "k=\"a\"");
    wm_metric b = wm_metrics_counter("t_total", "other help", "k=\"b\"");
    assert_int_not_equal(a, 0);
    assert_int_not_equal(a, b);
    assert_int_equal(wm_metrics_counter("t_total", "", "k=\"a\""), a);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        pthread_create(&t[i], NULL, worker, &a);
    }
    wm_metrics_add(a, 5); /* this thread: the shared shard */
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(wm_metrics_value(a), 200005);
    assert_int_equal(wm_metrics_value(b), 0);
    char *s = render();
    assert_non_null(strstr(s, "# HELP t_total help\n# TYPE t_total counter\n"));
    assert_non_null(strstr(s, "t_total{k=\"a\"} 200005\n"));
    assert_non_null(strstr(s, "t_total{k=\"b\"} 0\n"));
    free(s);
}

static void test_histogram(void **state)
{
    (void)state;
    wm_metric h = wm_metrics_histogram("d_seconds", "dur", "");
    wm_metrics_observe_ms(h, 3);    /* <= 5ms */
    wm_metrics_observe_ms(h, 5);    /* <= 5ms */
    wm_metrics_observe_ms(h, 700);  /* <= 1s */
    wm_metrics_observe_ms(h, 99999); /* +Inf only */
    char *s = render();
    assert_non_null(strstr(s, "# TYPE d_seconds histogram\n"));
    assert_non_null(strstr(s, "d_seconds_bucket{le=\"0.005\"} 2\n"));
    assert_non_null(strstr(s, "d_seconds_bucket{le=\"0.5\"} 2\n"));
    assert_non_null(strstr(s, "d_seconds_bucket{le=\"1\"} 3\n"));
    assert_non_null(strstr(s, "d_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(s, "d_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(s, "d_seconds_sum 100.707\n"));
    assert_non_null(strstr(s, "d_seconds_count 4\n"));
    free(s);
}

static void test_label_escape(void **state)
{
    char out[32];
    (void)state;
    assert_string_equal(wm_metrics_label(out, sizeof(out), "a\"b\\c\nd\x01", 9),
                        "a\\\"b\\\\c\\nd?");
    /* truncated, never split an escape past the end */
    assert_true(strlen(wm_metrics_label(out, 6, "\"\"\"\"", 4)) <= 5);
    /* a cut never splits a UTF-8 character, and bytes that are not UTF-8
     * become '?' (Prometheus refuses a scrape with either) */
    const char *ee = "zone-\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
    char cut[20];
    wm_metrics_label(cut, sizeof(cut), ee, strlen(ee));
    assert_true(strlen(cut) < sizeof(cut));
    assert_int_equal(strspn(cut, "zone-\xc3\xa9"), strchr(cut, '~') - cut);
    assert_int_equal((strchr(cut, '~') - cut - 5) % 2, 0); /* whole characters */
    assert_string_equal(wm_metrics_label(out, sizeof(out), "a\xff\xc3" "b", 4), "a??b");
    /* two long values that differ only past the cut stay apart */
    char a[20], b[20];
    wm_metrics_label(a, sizeof(a), "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"x", 17);
    wm_metrics_label(b, sizeof(b), "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"y", 17);
    assert_string_not_equal(a, b);
    assert_true(strlen(a) < sizeof(a));
    /* short values are whole, with no hash */
    assert_string_equal(wm_metrics_label(out, sizeof(out), "z\xc3\xa9", 3), "z\xc3\xa9");
}

static void make(const char *key, wm_metric *ids)
{
    char l[64];
    snprintf(l, sizeof(l), "p=\"%s\"", key);
    ids[0] = wm_metrics_counter("c_total", "c", l);
}

static void test_cache(void **state)
{
    static struct wm_mcache cache;
    (void)state;
    const wm_metric *x = wm_mcache_get(&cache, "http", make);
    const wm_metric *y = wm_mcache_get(&cache, "socks5", make);
    assert_ptr_equal(wm_mcache_get(&cache, "http", make), x);
    assert_int_not_equal(x[0], y[0]);
    assert_int_equal(wm_mcache_get(&cache, "a-key-longer-than-23-bytes!", make)[0], 0);
}

static void test_logq_order_and_close(void **state)
{
    char path[] = "/tmp/wm-logq-XXXXXX";
    int fd = mkstemp(path);
    char buf[64];
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(wm_logq_start(1), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof(buf), "line %d\n", i);
        wm_logq_write(fd, buf, strlen(buf));
    }
    int fd2 = dup(fd);
    wm_logq_close(fd2); /* closed after its (no) lines, fd stays */
    wm_logq_stop();
    FILE *f = fopen(path, "r");
    for (int i = 0; i < 1000; i++) {
        char want[64];
        snprintf(want, sizeof(want), "line %d\n", i);
        assert_non_null(fgets(buf, sizeof(buf), f));
        assert_string_equal(buf, want);
    }
    assert_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_int_equal(fcntl(fd2, F_GETFD), -1); /* closed */
    assert_int_equal(wm_logq_dropped(), 0);
    close(fd);
    unlink(path);
}

static void *drain_pipe(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

/* A writer stuck on a full pipe (a stalled disk or log reader): producers
 * never wait; what does not fit is dropped and counted. */
static void test_logq_never_blocks(void **state)
{
    int p[2];
    char line[200];
    pthread_t t;
    (void)state;
    assert_int_equal(pipe(p), 0);
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    assert_int_equal(wm_logq_start(1), 0);
    uint64_t d0 = wm_logq_dropped();
    for (int i = 0; i < 20000; i++) { /* 4 MB: far more than the pipe and queue hold */
        wm_logq_write(p[1], line, sizeof(line));
    }
    assert_true(wm_logq_dropped() - d0 > 1000);
    pthread_create(&t, NULL, drain_pipe, &p[0]);
    wm_logq_stop(); /* the reader drains: the writer finishes */
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_interning_and_sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test(test_logq_order_and_close),
        cmocka_unit_test(test_logq_never_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
