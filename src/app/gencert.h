/*
 * app/gencert.h - `wmproxy gen-cert`: a private CA and the server and
 * client certificates a mutual-TLS tunnel needs (net/certs.h).
 */
#ifndef WM_APP_GENCERT_H
#define WM_APP_GENCERT_H

/* argv[0] is "gen-cert". Returns the process exit code. */
int wm_gencert_main(int argc, char **argv);

#endif
