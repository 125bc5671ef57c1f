/*
 * tunnel/node_tls.c - the TLS contexts of a tunnel node (node_int.h).
 *
 * Trust without a CA (README "Security"): a server node given tc and no
 * cert/key makes a key pair once and keeps it in its state directory, so
 * its certificate stays the same across restarts; a client node given ts
 * and no ca trusts that certificate on first use (net/tlspin.h), or only
 * the one of server_fingerprint.
 */
#include <errno.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "h2/h2.h"
#include "net/certs.h"
#include "net/tls.h"
#include "net/tlspin.h"
#include "tunnel/node_int.h"

#define STATE_CERT "tunnel.crt" /* in the state directory: the certificate (0644) */
#define STATE_KEY "tunnel.key"  /* and its key (0600) */
#define STATE_DAYS 3650         /* clients pin the certificate, not its dates */
#define NT_PATH_MAX 4096

/* ---- where things are kept ---- */

/* A non-empty absolute value of environment variable name (XDG ignores
 * relative ones), its first ':'-separated entry, into out. */
static bool env_dir(const char *name, char *out, size_t cap)
{
    const char *v = getenv(name);

    if (v == NULL || v[0] != '/') {
        return false;
    }
    size_t n = strcspn(v, ":");
    return snprintf(out, cap, "%.*s", (int)n, v) < (int)cap;
}

/* opt (an empty one is unset), or a file under systemd's StateDirectory=,
 * or home_rel under $xdg, or under $HOME/home_default. false: nowhere. */
static bool place_of(const char *opt, const char *file, const char *xdg, const char *home_default,
                     char *out, size_t cap)
{
    char base[NT_PATH_MAX];

    if (opt != NULL && opt[0] != '\0') { /* "" is unset, as wmproxy's configs write it */
        return snprintf(out, cap, "%s", opt) < (int)cap;
    }
    if (env_dir("STATE_DIRECTORY", base, sizeof(base))) {
        return snprintf(out, cap, "%s%s%s", base, file[0] ? "/" : "", file) < (int)cap;
    }
    if (env_dir(xdg, base, sizeof(base))) {
        return snprintf(out, cap, "%s/wmproxy%s%s", base, file[0] ? "/" : "", file) < (int)cap;
    }
    if (env_dir("HOME", base, sizeof(base))) {
        return snprintf(out, cap, "%s/%s/wmproxy%s%s", base, home_default, file[0] ? "/" : "",
                        file) < (int)cap;
    }
    return false;
}

/* state_dir, else $STATE_DIRECTORY, $XDG_STATE_HOME/wmproxy,
 * ~/.local/state/wmproxy. */
static bool state_dir_of(const struct wm_tunnel_opts *p, char *out, size_t cap)
{
    return place_of(p->state_dir, "", "XDG_STATE_HOME", ".local/state", out, cap);
}

/* known_hosts, else $STATE_DIRECTORY/known_hosts,
 * $XDG_CONFIG_HOME/wmproxy/known_hosts, ~/.config/wmproxy/known_hosts. */
static bool known_hosts_of(const struct wm_tunnel_opts *p, char *out, size_t cap)
{
    return place_of(p->known_hosts, "known_hosts", "XDG_CONFIG_HOME", ".config", out, cap);
}

/* ---- the server's own key pair ---- */

static int make_pair(X509 **x, EVP_PKEY **k, struct wm_err *err)
{
    static const char *const sans[] = {"wmproxy"};
    const struct wm_cert_req req = {WM_CERT_SERVER, "wmproxy tunnel", sans, 1, STATE_DAYS};

    if (wm_cert_make(&req, NULL, NULL, x, k, err) < 0) {
        snprintf(err->key, sizeof(err->key), "tc");
        return -1;
    }
    return 0;
}

static bool absent(const char *path)
{
    return access(path, F_OK) < 0 && (errno == ENOENT || errno == ENOTDIR);
}

/* 1: loaded, 0: neither file exists, -1: there but unusable (err). */
static int load_pair(const char *crt, const char *key, X509 **x, EVP_PKEY **k,
                     struct wm_err *err)
{
    if (absent(crt) && absent(key)) {
        return 0;
    }
    if (wm_cert_load(crt, key, x, k, err) < 0) {
        char why[512];
        snprintf(why, sizeof(why), "%.500s", err->msg);
        return wm_err_set(err, crt, 0, 0, "state_dir",
                          "%s; to make a new pair, move %s and %s away (clients that pinned "
                          "the old certificate will refuse the new one)", why, crt, key);
    }
    struct stat st;
    if (stat(key, &st) == 0 && (st.st_mode & 077) != 0) {
        wm_log(WM_LOG_WARN, 0, "proxy.state_dir: %s is readable by others (mode %o): chmod 600 "
                               "it", key, (unsigned)(st.st_mode & 0777));
    }
    return 1;
}

/* Make the pair and save it in dir (under its lock: another process may
 * just have made one). Unwritable: a pair for this run only (warned). */
static int create_pair(const char *dir, const char *crt, const char *key, X509 **x, EVP_PKEY **k,
                       struct wm_err *err)
{
    struct wm_err e;
    int lock;
    int r;

    if (wm_mkdir_p(dir, 0700) < 0) {
        wm_log(WM_LOG_WARN, 0, "proxy.state_dir: cannot make %s (%s): the tunnel's key pair "
                               "lasts until the process ends", dir, strerror(errno));
        return make_pair(x, k, err);
    }
    lock = wm_dir_lock(dir);
    r = load_pair(crt, key, x, k, err);
    if (r == 0) {
        r = make_pair(x, k, err);
        if (r == 0 && wm_cert_save(crt, key, *x, *k, &e) < 0) {
            wm_log(WM_LOG_WARN, 0, "proxy.state_dir: cannot keep the tunnel's key pair in %s "
                                   "(%s): it lasts until the process ends", dir, e.msg);
        }
    }
    wm_dir_unlock(lock);
    return r < 0 ? -1 : 0;
}

/* The key pair of a node without cert/key: the one kept in its state
 * directory, made there the first time. where: the certificate file, or
 * "" when it is not kept. */
static int state_pair(const struct wm_tunnel_opts *p, X509 **x, EVP_PKEY **k, char *where,
                      size_t cap, struct wm_err *err)
{
    char dir[NT_PATH_MAX];
    char key[NT_PATH_MAX];

    where[0] = '\0';
    if (!state_dir_of(p, dir, sizeof(dir))) {
        wm_log(WM_LOG_WARN, 0, "proxy.state_dir: not set and no HOME: the tunnel's key pair "
                               "lasts until the process ends");
        return make_pair(x, k, err);
    }
    if (snprintf(where, cap, "%s/" STATE_CERT, dir) >= (int)cap ||
        snprintf(key, sizeof(key), "%s/" STATE_KEY, dir) >= (int)sizeof(key)) {
        return wm_err_set(err, NULL, 0, 0, "state_dir", "path too long");
    }
    int r = load_pair(where, key, x, k, err);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    if (p->dry_run) {
        return make_pair(x, k, err); /* `check`: nothing on disk */
    }
    if (create_pair(dir, where, key, x, k, err) < 0) {
        return -1;
    }
    if (access(where, F_OK) < 0) {
        where[0] = '\0';
    }
    return 0;
}

/* ---- contexts ---- */

/* "host:port", "[v6]:port": how known_hosts names the parent. */
static void peer_key(const struct wm_tunnel_settings *s, char *out, size_t cap)
{
    bool v6 = strchr(s->server_host, ':') != NULL;

    snprintf(out, cap, "%s%s%s:%u", v6 ? "[" : "", s->server_host, v6 ? "]" : "",
             s->server_port);
}

/* Without ca: a fixed fingerprint, or trust on first use. */
static int client_pin(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                      struct wm_err *err)
{
    char peer[WM_HOST_MAX + 16];
    char kh[NT_PATH_MAX] = "";
    char msg[512];
    struct wm_tls_pin_opts po = {.peer = peer};

    peer_key(s, peer, sizeof(peer));
    if (p->server_fingerprint != NULL) {
        po.mode = WM_TLS_PIN_FIXED;
        po.fingerprint = p->server_fingerprint;
        po.chain_too = p->ca != NULL;
    } else {
        po.mode = WM_TLS_PIN_TOFU;
        if (!known_hosts_of(p, kh, sizeof(kh))) {
            wm_log(WM_LOG_WARN, 0, "proxy.known_hosts: not set and no HOME: a certificate "
                                   "trusted on first use is pinned until the process ends");
        }
        po.known_hosts = kh;
        po.own_cert = p->cert;
    }
    if (wm_tls_pin_attach(s->client_ctx, &po, msg, sizeof(msg)) < 0) {
        return wm_err_set(err, NULL, 0, 0,
                          po.mode == WM_TLS_PIN_FIXED ? "server_fingerprint" : "known_hosts",
                          "%s", msg);
    }
    if (po.mode == WM_TLS_PIN_TOFU && !p->dry_run) {
        wm_log(WM_LOG_INFO, 0, "tunnel: no ca: %s's certificate is trusted on first use "
                               "(pinned in %s)%s", peer, kh[0] ? kh : "memory",
               p->cert != NULL ? ", or when it is our own cert" : "");
    }
    return 0;
}

int tnode_client_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                     struct wm_err *err)
{
    struct wm_tls_opts to = {p->two_way_tls ? p->cert : NULL, p->two_way_tls ? p->key : NULL,
                             p->ca, true};
    char msg[512];

    if (p->two_way_tls && (p->cert == NULL || p->key == NULL)) {
        wm_log(WM_LOG_WARN, 0, "proxy.two_way_tls: no cert/key for this client: a "
                               "server that requires client certificates will refuse it");
    }
    s->client_ctx = wm_tls_client_ctx(&to, msg, sizeof(msg));
    if (s->client_ctx == NULL) {
        return wm_err_set(err, NULL, 0, 0, "ts", "%s", msg);
    }
    if (p->ca == NULL || p->server_fingerprint != NULL) {
        return client_pin(p, s, err);
    }
    return 0;
}

/* tc without cert/key: the state directory's pair. */
static SSL_CTX *server_ctx_kept(const struct wm_tunnel_opts *p, struct wm_err *err)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    char where[NT_PATH_MAX];
    char fp[WM_CERT_FP_MAX];
    char msg[512];
    struct wm_tls_opts to = {NULL, NULL, p->ca, p->two_way_tls};

    if (state_pair(p, &x, &k, where, sizeof(where), err) < 0) {
        return NULL;
    }
    SSL_CTX *ctx = wm_tls_server_ctx_mem(x, k, &to, msg, sizeof(msg));
    if (ctx == NULL) {
        wm_err_set(err, NULL, 0, 0, "tc", "%s", msg);
    } else if (!p->dry_run) {
        wm_cert_fingerprint(x, fp, sizeof(fp));
        wm_log(WM_LOG_WARN, 0, "proxy.tc: no cert/key: this node's certificate is %s (%s); "
                               "clients without ca trust it on first use: compare with the "
                               "fingerprint they log, or give them server_fingerprint", fp,
               where[0] ? where : "made for this run only");
        if (p->two_way_tls && p->ca == NULL) {
            wm_log(WM_LOG_WARN, 0, "proxy.two_way_tls: no ca and no cert: only clients that "
                                   "present this node's own certificate are accepted");
        }
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return ctx;
}

int tnode_server_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                     struct wm_err *err)
{
    char msg[512];

    if (p->cert == NULL || p->key == NULL) {
        s->server_ctx = server_ctx_kept(p, err);
        return s->server_ctx != NULL ? 0 : -1;
    }
    struct wm_tls_opts to = {p->cert, p->key, p->ca, p->two_way_tls};
    s->server_ctx = wm_tls_server_ctx(&to, msg, sizeof(msg));
    if (s->server_ctx == NULL) {
        return wm_err_set(err, NULL, 0, 0, "tc", "%s", msg);
    }
    return 0;
}

/* The public HTTPS port offers HTTP/2 first (h2/h2.h). */
static int map_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    return wm_h2_alpn_select(out, outlen, in, inlen, true);
}

int tnode_map_tls(const struct wm_tunnel_opts *p, struct wm_tunnel_settings *s,
                  struct wm_err *err)
{
    const char *c = p->map_cert != NULL ? p->map_cert : p->cert;
    const char *k = p->map_key != NULL ? p->map_key : p->key;
    struct wm_tls_opts to = {c, k, NULL, false};
    char msg[512];

    if (c == NULL || k == NULL) {
        X509 *x = NULL;
        EVP_PKEY *pk = NULL;
        char where[NT_PATH_MAX];
        if (state_pair(p, &x, &pk, where, sizeof(where), err) < 0) {
            return -1;
        }
        if (!p->dry_run) {
            wm_log(WM_LOG_WARN, 0, "proxy.map_https_bind: no map_cert/map_key given: public "
                                   "HTTPS uses this node's own self-signed certificate "
                                   "(browsers will warn)");
        }
        s->map_ctx = wm_tls_server_ctx_mem(x, pk, &to, msg, sizeof(msg));
        X509_free(x);
        EVP_PKEY_free(pk);
    } else {
        s->map_ctx = wm_tls_server_ctx(&to, msg, sizeof(msg));
    }
    if (s->map_ctx == NULL) {
        return wm_err_set(err, NULL, 0, 0, "map_cert", "%s", msg);
    }
    SSL_CTX_set_alpn_select_cb(s->map_ctx, map_alpn_cb, NULL); /* h2, http/1.1 */
    return 0;
}

/* ---- cluster: mutual TLS between nodes ---- */

/* On the center's context: the nodes' context (owned: freed with it, so a
 * handshake in progress across a reload still finds it). On the nodes'
 * context: a mark. The ALPN name nodes offer is the hello callback's
 * argument: never a shared buffer a reload rewrites while worker 0 reads. */
static int node_ctx_idx = -1;
static int node_mark_idx = -1;
static pthread_once_t node_idx_once = PTHREAD_ONCE_INIT;

static void node_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    SSL_CTX_free(ptr);
}

static void node_idx_init(void)
{
    node_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, node_ctx_free);
    node_mark_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Does the ALPN extension (p, n: its body) list alpn? */
static bool alpn_lists(const unsigned char *p, size_t n, const char *alpn)
{
    size_t want = strlen(alpn);

    if (n < 2 || (((size_t)p[0] << 8) | p[1]) != n - 2) {
        return false;
    }
    for (p += 2, n -= 2; n > 0;) {
        size_t l = p[0];
        if (l + 1 > n) {
            return false;
        }
        if (l == want && memcmp(p + 1, alpn, want) == 0) {
            return true;
        }
        p += l + 1;
        n -= l + 1;
    }
    return false;
}

/* The center's ClientHello: another node (it offers arg, the ALPN name)
 * gets the nodes' context: their certificate, and ours required against
 * their CA. */
static int node_hello_cb(SSL *ssl, int *al, void *arg)
{
    SSL_CTX *node = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), node_ctx_idx);
    const unsigned char *p;
    size_t n;

    (void)al;
    if (node != NULL &&
        SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &n) == 1 &&
        alpn_lists(p, n, arg)) {
        SSL_set_SSL_CTX(ssl, node);
        SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

int wm_tunnel_set_node_tls(struct wm_tunnel_settings *s, const char *alpn, const char *ca,
                           const char *cert, const char *key, struct wm_err *err)
{
    struct wm_tls_opts to = {cert, key, ca, true};
    char msg[512];

    if (s->server_ctx == NULL) {
        return wm_err_set(err, NULL, 0, 0, "cluster.node_ca",
                          "mutual TLS between nodes needs a TLS center ([proxy] tc = true)");
    }
    pthread_once(&node_idx_once, node_idx_init);
    if (node_ctx_idx < 0 || node_mark_idx < 0) {
        return wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
    }
    SSL_CTX *node = wm_tls_server_ctx(&to, msg, sizeof(msg));
    if (node == NULL) {
        return wm_err_set(err, NULL, 0, 0, "cluster.node_cert", "%s", msg);
    }
    SSL_CTX_set_ex_data(node, node_mark_idx, &node_mark_idx);
    if (SSL_CTX_set_ex_data(s->server_ctx, node_ctx_idx, node) != 1) {
        SSL_CTX_free(node);
        return wm_err_set(err, NULL, 0, 0, "cluster", "out of memory");
    }
    SSL_CTX_set_client_hello_cb(s->server_ctx, node_hello_cb, (void *)alpn);
    return 0;
}

bool tnode_tls_nodes_need_cert(const struct wm_tunnel_settings *s)
{
    return node_ctx_idx >= 0 && s->server_ctx != NULL &&
           SSL_CTX_get_ex_data(s->server_ctx, node_ctx_idx) != NULL;
}

bool tnode_tls_is_node(const struct ssl_st *ssl)
{
    return ssl != NULL && node_mark_idx >= 0 &&
           SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), node_mark_idx) != NULL &&
           SSL_get0_peer_certificate(ssl) != NULL && SSL_get_verify_result(ssl) == X509_V_OK;
}
