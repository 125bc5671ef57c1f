/*
 * app/obs.c - what the process shows of itself in GET /metrics: sets up
 * core/metrics.h with every module's collector, and keeps the reload
 * counters and the configuration's hash.
 */
#include "app/obs.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/expo.h"
#include "core/metrics.h"
#include "reverse/rev.h"
#include "tunnel/tunnel.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static wm_metric reloads_ok, reloads_failed;
static int last_ok = -1; /* -1: no reload yet */
static time_t last_time;
static char config_hash[17];

/* The first 16 hex digits of the SHA-256 of the file (or text). */
static void hash_config(const char *path, const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char buf[8192];
    size_t n;
    FILE *f = NULL;

    config_hash[0] = '\0';
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return;
    }
    if (text != NULL) {
        EVP_DigestUpdate(ctx, text, strlen(text));
    } else if (path != NULL && (f = fopen(path, "rbe")) != NULL) {
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
            EVP_DigestUpdate(ctx, buf, n);
        }
        fclose(f);
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 8) {
        for (int i = 0; i < 8; i++) {
            snprintf(config_hash + 2 * i, 3, "%02x", md[i]);
        }
    }
    EVP_MD_CTX_free(ctx);
}

static void collect_app(struct evbuffer *out, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    wm_metrics_family_head(out, "wmproxy_config_info", WM_MT_GAUGE,
                           "Always 1; the running configuration's hash (SHA-256, 16 digits)");
    evbuffer_add_printf(out, "wmproxy_config_info{sha256=\"%s\"} 1\n", config_hash);
    if (last_ok >= 0) {
        wm_metrics_family_head(out, "wmproxy_config_last_reload_successful", WM_MT_GAUGE,
                               "1 when the last reload was applied, 0 when it was refused");
        evbuffer_add_printf(out, "wmproxy_config_last_reload_successful %d\n", last_ok);
        wm_metrics_family_head(out, "wmproxy_config_last_reload_timestamp_seconds",
                               WM_MT_GAUGE, "When the last reload was attempted");
        evbuffer_add_printf(out, "wmproxy_config_last_reload_timestamp_seconds %lld\n",
                            (long long)last_time);
    }
    pthread_mutex_unlock(&lock);
}

int wm_app_obs_init(int workers, const char *path, const char *text)
{
    static const char help[] = "Configuration reloads, applied or refused";

    if (wm_metrics_init(workers) < 0) {
        return -1;
    }
    reloads_ok = wm_metrics_counter("wmproxy_config_reloads_total", help, "result=\"ok\"");
    reloads_failed = wm_metrics_counter("wmproxy_config_reloads_total", help,
                                        "result=\"refused\"");
    hash_config(path, text);
    if (wm_expo_register() < 0 || wm_metrics_add_collector(collect_app, NULL) < 0 ||
        wm_metrics_add_collector(wm_rev_metrics_collect, NULL) < 0 ||
        wm_metrics_add_collector(wm_tunnel_metrics_collect, NULL) < 0) {
        return -1;
    }
    return 0;
}

void wm_app_obs_reload(bool ok, const char *path, const char *text)
{
    wm_metrics_inc(ok ? reloads_ok : reloads_failed);
    pthread_mutex_lock(&lock);
    last_ok = ok;
    last_time = time(NULL);
    if (ok) {
        hash_config(path, text);
    }
    pthread_mutex_unlock(&lock);
}

void wm_app_obs_free(void)
{
    wm_metrics_shutdown();
}
