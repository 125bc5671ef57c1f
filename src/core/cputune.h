/*
 * core/cputune.h - process-wide tuning for the CPU we run on, applied once
 * at startup by the long-running commands.
 *
 * glibc's memcpy uses `rep movsb` for copies from a few KiB up. On AMD Zen
 * 3/4 that instruction runs at ~2 GB/s instead of ~50 GB/s when the
 * destination lies a little after the source modulo 4 KiB (glibc bug
 * 30994): the 16 KiB plaintext copy inside SSL_read hit it most of the
 * time and took a quarter of a TLS tunnel node's CPU. glibc reads its
 * tunables only at startup, so on such CPUs the process re-executes itself
 * once with glibc.cpu.x86_rep_movsb_threshold raised (vector copies
 * instead); WMPROXY_CPUTUNE_EXEC, set across that exec only, keeps it to
 * once. Nothing happens when GLIBC_TUNABLES already names that tunable,
 * when WMPROXY_NO_CPUTUNE is set, in secure mode (capabilities, setuid),
 * when started through the dynamic loader or under valgrind, or on other
 * CPUs and C libraries.
 */
#ifndef WM_CORE_CPUTUNE_H
#define WM_CORE_CPUTUNE_H

/* Re-execute our own binary (the path /proc/self/exe names) with argv
 * when the tuning applies and is not in place yet; returns when it does
 * not apply or exec failed (the environment is then as before). */
void wm_cputune_reexec(char **argv);

/* What wm_cputune_reexec() found, for the startup log: a static string,
 * or NULL when nothing applies. */
const char *wm_cputune_state(void);

#endif
