/*
 * core/cputune.c - see cputune.h.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cputune.h"

#if defined(__x86_64__) && defined(__GLIBC__)
#include <cpuid.h>
#include <gnu/libc-version.h>
#include <sys/auxv.h>

#define TUNABLE "glibc.cpu.x86_rep_movsb_threshold"
#define TUNABLE_SET TUNABLE "=2147483647"
#define MARK "WMPROXY_CPUTUNE_EXEC" /* set across our own exec only */

/* AMD (or Hygon, the same cores) with ERMS: glibc then prefers rep movsb. */
static bool amd_with_erms(void)
{
    unsigned a, b, c, d;
    char vendor[13];

    if (__get_cpuid(0, &a, &b, &c, &d) == 0 || a < 7) {
        return false;
    }
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = '\0';
    if (strcmp(vendor, "AuthenticAMD") != 0 && strcmp(vendor, "HygonGenuine") != 0) {
        return false;
    }
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 9)) != 0; /* ERMS */
}

/* The tunable exists from glibc 2.32 on. */
static bool glibc_has_tunable(void)
{
    int major = 0, minor = 0;

    return sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) == 2 &&
           (major > 2 || (major == 2 && minor >= 32));
}

/* Cases where a re-exec would not run the same program the same way:
 * secure mode (file capabilities, setuid: glibc drops the tunable, so the
 * guard would never see it), started through the dynamic loader
 * (/proc/self/exe names ld.so; AT_BASE is 0 then), under valgrind (the
 * new image would run outside it). */
static bool reexec_unsafe(void)
{
    const char *pre = getenv("LD_PRELOAD");

    return getauxval(AT_SECURE) != 0 || getauxval(AT_BASE) == 0 ||
           (pre != NULL && strstr(pre, "vgpreload") != NULL);
}

void wm_cputune_reexec(char **argv)
{
    const char *old = getenv("GLIBC_TUNABLES");
    char *val;
    size_t n;

    if (getenv(MARK) != NULL) {
        unsetenv(MARK); /* we are the re-executed image: never twice */
        return;
    }
    if (getenv("WMPROXY_NO_CPUTUNE") != NULL || (old != NULL && strstr(old, TUNABLE) != NULL) ||
        !amd_with_erms() || !glibc_has_tunable() || reexec_unsafe()) {
        return;
    }
    n = (old != NULL ? strlen(old) + 1 : 0) + sizeof(TUNABLE_SET);
    if ((val = malloc(n)) == NULL) {
        return;
    }
    snprintf(val, n, "%s%s%s", old != NULL ? old : "", old != NULL && old[0] != '\0' ? ":" : "",
             TUNABLE_SET);
    /* Exec the binary by its path, not as /proc/self/exe: the process
     * name (ps, pgrep, killall, systemd) comes from the file name. A
     * binary deleted or replaced since it started reads "... (deleted)"
     * and the exec fails: then it runs untuned. */
    char self[PATH_MAX];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sn <= 0 || (size_t)sn >= sizeof(self) - 1) {
        free(val);
        return;
    }
    self[sn] = '\0';
    char *saved = old != NULL ? strdup(old) : NULL;
    if ((old == NULL || saved != NULL) && setenv(MARK, "1", 1) == 0 &&
        setenv("GLIBC_TUNABLES", val, 1) == 0) {
        execv(self, argv);
        /* exec refused: go on untuned, environment as it was */
    }
    unsetenv(MARK);
    if (saved != NULL) {
        setenv("GLIBC_TUNABLES", saved, 1);
    } else if (old == NULL) {
        unsetenv("GLIBC_TUNABLES");
    }
    free(saved);
    free(val);
}

const char *wm_cputune_state(void)
{
    const char *cur = getenv("GLIBC_TUNABLES");

    if (!amd_with_erms()) {
        return NULL;
    }
    if (cur != NULL && strstr(cur, TUNABLE_SET) != NULL) {
        return "AMD CPU with ERMS: glibc's rep movsb copies are off (glibc bug 30994)";
    }
    return "AMD CPU with ERMS: rep movsb tuning not applied (GLIBC_TUNABLES or "
           "WMPROXY_NO_CPUTUNE set, secure mode, loader or valgrind start, old glibc, or "
           "no /proc/self/exe)";
}

#else

void wm_cputune_reexec(char **argv)
{
    (void)argv;
}

const char *wm_cputune_state(void)
{
    return NULL;
}

#endif
