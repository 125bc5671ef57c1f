#include "core/metrics.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

#define NBUCKETS 12 /* the last is +Inf */
#define HIST_SLOTS (NBUCKETS + 2) /* buckets, sum (ms), count */
#define DUMMY_SLOTS 16            /* slot 0.. : where series past the bound count */

static const uint64_t bucket_ms[NBUCKETS - 1] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static const char *const bucket_le[NBUCKETS] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                                "0.5", "1", "2.5", "5", "10", "+Inf"};

struct series {
    struct series *next;
    wm_metric slot;
    char *labels;
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum wm_metric_type type;
    struct series *first;
    struct series **tail;
    size_t nseries;
    bool cap_warned;               /* its own bound (wm_metrics_counter_max) was met */
};

struct collector {
    struct collector *next;
    wm_metrics_collector fn;
    void *arg;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t **shards;  /* nshards arrays of WM_METRICS_SLOTS; the last is shared */
static int nshards;
static uint32_t next_slot = DUMMY_SLOTS;
static bool full_warned;
static struct family *families;
static struct family **fam_tail = &families;
static struct collector *collectors;
static struct collector **col_tail = &collectors;
static __thread uint64_t *my_shard;

int wm_metrics_init(int nthreads)
{
    shards = calloc((size_t)nthreads + 1, sizeof(*shards));
    if (shards == NULL) {
        return -1;
    }
    nshards = nthreads + 1;
    for (int i = 0; i < nshards; i++) {
        /* large: mmap'd, pages become resident only when a slot is used */
        shards[i] = calloc(WM_METRICS_SLOTS, sizeof(uint64_t));
        if (shards[i] == NULL) {
            wm_metrics_shutdown();
            return -1;
        }
    }
    return 0;
}

void wm_metrics_shutdown(void)
{
    for (int i = 0; i < nshards; i++) {
        free(shards[i]);
    }
    free(shards);
    shards = NULL;
    nshards = 0;
    while (families != NULL) {
        struct family *f = families;
        families = f->next;
        while (f->first != NULL) {
            struct series *s = f->first;
            f->first = s->next;
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    fam_tail = &families;
    while (collectors != NULL) {
        struct collector *c = collectors;
        collectors = c->next;
        free(c);
    }
    col_tail = &collectors;
    next_slot = DUMMY_SLOTS;
    full_warned = false;
}

void wm_metrics_bind_thread(int index)
{
    my_shard = (shards != NULL && index >= 0 && index < nshards - 1) ? shards[index] : NULL;
}

static struct family *family_get(const char *name, const char *help, enum wm_metric_type type)
{
    struct family *f;

    for (f = families; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->name = strdup(name)) == NULL || (f->help = strdup(help)) == NULL) {
        if (f != NULL) {
            free(f->name);
        }
        free(f);
        return NULL;
    }
    f->type = type;
    f->tail = &f->first;
    *fam_tail = f;
    fam_tail = &f->next;
    return f;
}

static wm_metric series_get(const char *name, const char *help, const char *labels,
                            enum wm_metric_type type, size_t max)
{
    uint32_t need = type == WM_MT_HISTOGRAM ? HIST_SLOTS : 1;
    struct family *f;
    struct series *s;
    wm_metric id = 0;

    pthread_mutex_lock(&lock);
    f = family_get(name, help, type);
    for (s = f != NULL ? f->first : NULL; s != NULL && id == 0; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            id = s->slot;
        }
    }
    if (f != NULL && id == 0 && max > 0 && f->nseries >= max) {
        if (!f->cap_warned) {
            f->cap_warned = true;
            wm_log(WM_LOG_WARN, 0, "metrics: %s is at its bound of %zu series; {%s} and "
                   "further new ones are not shown", name, max, labels);
        }
    } else if (f != NULL && id == 0 && next_slot + need <= WM_METRICS_SLOTS) {
        s = calloc(1, sizeof(*s));
        if (s != NULL && (s->labels = strdup(labels)) != NULL) {
            s->slot = id = next_slot;
            next_slot += need;
            *f->tail = s;
            f->tail = &s->next;
            f->nseries++;
        } else {
            free(s);
        }
    } else if (id == 0 && !full_warned) {
        full_warned = true;
        wm_log(WM_LOG_WARN, 0, "metrics: no room for %s{%s}; further series are not shown",
               name, labels);
    }
    pthread_mutex_unlock(&lock);
    return id;
}

wm_metric wm_metrics_counter(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, labels, WM_MT_COUNTER, 0);
}

wm_metric wm_metrics_counter_max(const char *name, const char *help, const char *labels,
                                 size_t max)
{
    return series_get(name, help, labels, WM_MT_COUNTER, max);
}

wm_metric wm_metrics_histogram(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, labels, WM_MT_HISTOGRAM, 0);
}

static inline void slot_add(uint32_t slot, uint64_t n)
{
    uint64_t *p = my_shard;

    if (p != NULL) { /* this thread's own shard: a plain add the scraper may read */
        __atomic_store_n(&p[slot], __atomic_load_n(&p[slot], __ATOMIC_RELAXED) + n,
                         __ATOMIC_RELAXED);
    } else if (shards != NULL) {
        __atomic_fetch_add(&shards[nshards - 1][slot], n, __ATOMIC_RELAXED);
    }
}

void wm_metrics_add(wm_metric m, uint64_t n)
{
    slot_add(m, n);
}

void wm_metrics_observe_ms(wm_metric m, uint64_t ms)
{
    int b = 0;

    while (b < NBUCKETS - 1 && ms > bucket_ms[b]) {
        b++;
    }
    slot_add(m + (uint32_t)b, 1);
    slot_add(m + NBUCKETS, ms);
    slot_add(m + NBUCKETS + 1, 1);
}

static uint64_t slot_sum(uint32_t slot)
{
    uint64_t v = 0;

    for (int i = 0; i < nshards; i++) {
        v += __atomic_load_n(&shards[i][slot], __ATOMIC_RELAXED);
    }
    return v;
}

uint64_t wm_metrics_value(wm_metric m)
{
    return (shards != NULL && m != 0) ? slot_sum(m) : 0;
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static const wm_metric no_ids[WM_MCACHE_IDS];

static int mcache_find(const struct wm_mcache *c, int n, const char *key)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(c->keys[i], key) == 0) {
            return i;
        }
    }
    return -1;
}

const wm_metric *wm_mcache_get(struct wm_mcache *c, const char *key,
                               void (*make)(const char *key, wm_metric *ids))
{
    int n = __atomic_load_n(&c->n, __ATOMIC_ACQUIRE);
    int i = mcache_find(c, n, key);

    if (i >= 0) {
        return c->ids[i];
    }
    if (strlen(key) >= sizeof(c->keys[0])) {
        return no_ids;
    }
    pthread_mutex_lock(&cache_lock);
    n = __atomic_load_n(&c->n, __ATOMIC_ACQUIRE);
    i = mcache_find(c, n, key);
    if (i < 0 && n < WM_MCACHE_KEYS) {
        i = n;
        strcpy(c->keys[i], key);
        make(key, c->ids[i]);
        __atomic_store_n(&c->n, n + 1, __ATOMIC_RELEASE); /* published whole */
    }
    pthread_mutex_unlock(&cache_lock);
    return i >= 0 ? c->ids[i] : no_ids;
}

/* Escape v[0..n) into out, at most room bytes; *used: input bytes taken. */
static size_t label_escape(char *out, size_t room, const unsigned char *v, size_t n, size_t *used)
{
    size_t o = 0;
    size_t i = 0;

    while (i < n && v[i] != '\0') {
        uint32_t cp;
        size_t len = wm_utf8_decode(v + i, n - i, &cp);
        const char *rep = NULL;
        if (v[i] == '\\') {
            rep = "\\\\";
        } else if (v[i] == '"') {
            rep = "\\\"";
        } else if (v[i] == '\n') {
            rep = "\\n";
        } else if (len == 0 || v[i] < 0x20 || v[i] == 0x7f) {
            rep = "?"; /* a control or a byte that is not UTF-8 */
            len = 1;
        }
        size_t w = rep != NULL ? strlen(rep) : len;
        if (o + w > room) {
            break; /* never half an escape or half a character */
        }
        memcpy(out + o, rep != NULL ? rep : (const char *)v + i, w);
        o += w;
        i += len;
    }
    *used = i;
    return o;
}

char *wm_metrics_label(char *out, size_t cap, const char *v, size_t n)
{
    const unsigned char *u = (const unsigned char *)v;
    size_t used;
    size_t o;

    if (cap == 0) {
        return out;
    }
    o = label_escape(out, cap - 1, u, n, &used);
    if (used < n && v[used] != '\0' && cap > 12) {
        /* cut: a hash of the whole value keeps two long values apart */
        o = label_escape(out, cap - 1 - 9, u, n, &used);
        o += (size_t)snprintf(out + o, cap - o, "~%08x",
                              (unsigned)(wm_fnv1a(WM_FNV_INIT, v, strnlen(v, n)) & 0xffffffffu));
    }
    out[o] = '\0';
    return out;
}

int wm_metrics_add_collector(wm_metrics_collector fn, void *arg)
{
    struct collector *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return -1;
    }
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&lock);
    *col_tail = c;
    col_tail = &c->next;
    pthread_mutex_unlock(&lock);
    return 0;
}

void wm_metrics_family_head(struct evbuffer *out, const char *name, enum wm_metric_type type,
                            const char *help)
{
    static const char *const tname[] = {"counter", "gauge", "histogram"};

    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, tname[type]);
}

static void render_histogram(struct evbuffer *out, const char *name, const struct series *s)
{
    uint64_t cum = 0;
    const char *sep = s->labels[0] != '\0' ? "," : "";

    for (int b = 0; b < NBUCKETS; b++) {
        cum += slot_sum(s->slot + (uint32_t)b);
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, s->labels, sep,
                            bucket_le[b], (unsigned long long)cum);
    }
    uint64_t sum = slot_sum(s->slot + NBUCKETS);
    const char *o = s->labels[0] != '\0' ? "{" : "", *c = s->labels[0] != '\0' ? "}" : "";
    evbuffer_add_printf(out, "%s_sum%s%s%s %llu.%03u\n%s_count%s%s%s %llu\n", name, o, s->labels,
                        c, (unsigned long long)(sum / 1000), (unsigned)(sum % 1000), name, o,
                        s->labels, c, (unsigned long long)slot_sum(s->slot + NBUCKETS + 1));
}

void wm_metrics_render(struct evbuffer *out)
{
    pthread_mutex_lock(&lock);
    for (const struct family *f = families; f != NULL && shards != NULL; f = f->next) {
        wm_metrics_family_head(out, f->name, f->type, f->help);
        for (const struct series *s = f->first; s != NULL; s = s->next) {
            if (f->type == WM_MT_HISTOGRAM) {
                render_histogram(out, f->name, s);
            } else {
                bool l = s->labels[0] != '\0';
                evbuffer_add_printf(out, "%s%s%s%s %llu\n", f->name, l ? "{" : "", s->labels,
                                    l ? "}" : "", (unsigned long long)slot_sum(s->slot));
            }
        }
    }
    struct collector *c = collectors;
    pthread_mutex_unlock(&lock);
    for (; c != NULL; c = c->next) { /* appended only: the list stays valid */
        c->fn(out, c->arg);
    }
}
