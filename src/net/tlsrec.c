#include "net/tlsrec.h"

#include "core/log.h"

#include <event2/buffer.h>
#include <gcrypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5705 4: unregistered labels begin with "EXPERIMENTAL" */
#define EXPORT_LABEL "EXPERIMENTAL-wmproxy-tunnel-records"
#define KEY_LEN 16
#define IV_LEN 12
#define PEEK_VECS 8
#define TYPE_APPDATA 0x17

struct wm_tlsrec {
    gcry_cipher_hd_t h;
    unsigned char secret[WM_TLSREC_SECRET]; /* of the current key */
    unsigned char iv[IV_LEN];
    uint64_t seq; /* records sealed or opened under the current key */
};

static unsigned epoch_bits = 20;
static pthread_once_t gcry_once = PTHREAD_ONCE_INIT;
static bool gcry_ok;

static void gcry_setup(void)
{
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
        gcry_ok = true; /* somebody in this process did it */
        return;
    }
    if (gcry_check_version(GCRYPT_VERSION) == NULL) {
        return;
    }
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    gcry_ok = true;
}

void wm_tlsrec_set_epoch_bits(unsigned bits)
{
    epoch_bits = bits < 1 ? 1 : bits > 40 ? 40 : bits;
}

/* HKDF-Expand (RFC 5869) of one SHA-256 block: HMAC(secret, label|0x01). */
static int expand(const unsigned char *secret, const char *label, unsigned char *out)
{
    unsigned char msg[32];
    size_t n = strlen(label);
    size_t outl = 0;

    memcpy(msg, label, n);
    msg[n++] = 1;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, WM_TLSREC_SECRET, msg, n, out, 32,
                  &outl) == NULL || outl != 32) {
        return -1;
    }
    return 0;
}

/* Key and iv of the current secret; the sequence starts again. */
static int set_key(struct wm_tlsrec *r)
{
    unsigned char km[32];
    gcry_error_t e;

    if (expand(r->secret, "wmtun key", km) < 0) {
        return -1;
    }
    e = gcry_cipher_setkey(r->h, km, KEY_LEN);
    memcpy(r->iv, km + KEY_LEN, IV_LEN);
    OPENSSL_cleanse(km, sizeof(km));
    r->seq = 0;
    return e == 0 ? 0 : -1;
}

/* The next secret, at the same record on both ends. */
static int step_key(struct wm_tlsrec *r)
{
    unsigned char next[32];

    if (expand(r->secret, "wmtun next", next) < 0) {
        return -1;
    }
    memcpy(r->secret, next, sizeof(next));
    OPENSSL_cleanse(next, sizeof(next));
    return set_key(r);
}

/* Nonce and additional data of the next record. */
static int start_record(struct wm_tlsrec *r, const unsigned char *hdr)
{
    unsigned char nonce[IV_LEN];

    if (r->seq >> epoch_bits != 0 && step_key(r) < 0) {
        return -1;
    }
    memcpy(nonce, r->iv, IV_LEN);
    for (int i = 0; i < 8; i++) {
        nonce[IV_LEN - 1 - i] ^= (unsigned char)(r->seq >> (8 * i));
    }
    if (gcry_cipher_setiv(r->h, nonce, IV_LEN) != 0 ||
        gcry_cipher_authenticate(r->h, hdr, WM_TLSREC_HEADER) != 0) {
        return -1;
    }
    return 0;
}

struct wm_tlsrec *wm_tlsrec_new(const unsigned char *secret)
{
    struct wm_tlsrec *r;

    pthread_once(&gcry_once, gcry_setup);
    if (!gcry_ok || (r = calloc(1, sizeof(*r))) == NULL) {
        return NULL;
    }
    if (gcry_cipher_open(&r->h, GCRY_CIPHER_AES128, GCRY_CIPHER_MODE_GCM, 0) != 0) {
        free(r);
        return NULL;
    }
    memcpy(r->secret, secret, WM_TLSREC_SECRET);
    if (set_key(r) < 0) {
        wm_tlsrec_free(r);
        return NULL;
    }
    return r;
}

void wm_tlsrec_free(struct wm_tlsrec *r)
{
    if (r == NULL) {
        return;
    }
    gcry_cipher_close(r->h);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

bool wm_tlsrec_selected(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;

    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == sizeof(WM_TLSREC_ALPN) - 1 && memcmp(p, WM_TLSREC_ALPN, n) == 0;
}

int wm_tlsrec_from_ssl(SSL *ssl, struct wm_tlsrec **tx, struct wm_tlsrec **rx)
{
    unsigned char km[2 * WM_TLSREC_SECRET]; /* client to server, then back */
    const unsigned char *c2s = km;
    const unsigned char *s2c = km + WM_TLSREC_SECRET;
    bool server = SSL_is_server(ssl) == 1;

    *tx = NULL;
    *rx = NULL;
    if (SSL_export_keying_material(ssl, km, sizeof(km), EXPORT_LABEL, strlen(EXPORT_LABEL), NULL,
                                   0, 0) != 1) {
        return -1;
    }
    *tx = wm_tlsrec_new(server ? s2c : c2s);
    *rx = wm_tlsrec_new(server ? c2s : s2c);
    OPENSSL_cleanse(km, sizeof(km));
    if (*tx == NULL || *rx == NULL) {
        wm_tlsrec_free(*tx);
        wm_tlsrec_free(*rx);
        *tx = NULL;
        *rx = NULL;
        return -1;
    }
    return 0;
}

/* Up to PEEK_VECS pieces covering n bytes of in from offset at; joins
 * them when there are more. Returns the count, -1 on failure. */
static int pieces(struct evbuffer *in, size_t at, size_t n, struct evbuffer_iovec *v)
{
    struct evbuffer_ptr pos;
    int nv;

    if (evbuffer_ptr_set(in, &pos, at, EVBUFFER_PTR_SET) < 0) {
        return -1;
    }
    nv = evbuffer_peek(in, (ev_ssize_t)n, &pos, v, PEEK_VECS);
    if (nv > PEEK_VECS) {
        unsigned char *all = evbuffer_pullup(in, (ev_ssize_t)(at + n));
        if (all == NULL) {
            return -1;
        }
        v[0].iov_base = all + at;
        v[0].iov_len = n;
        nv = 1;
    }
    return nv;
}

size_t wm_tlsrec_seal(struct wm_tlsrec *r, struct evbuffer *in, size_t n, unsigned char *dst)
{
    struct evbuffer_iovec v[PEEK_VECS];
    size_t len = n + WM_TLSREC_TAG;
    size_t off = WM_TLSREC_HEADER;
    int nv = 0;

    if (n > WM_TLSREC_MAX || n > evbuffer_get_length(in)) {
        return 0;
    }
    dst[0] = TYPE_APPDATA;
    dst[1] = 3;
    dst[2] = 3;
    dst[3] = (unsigned char)(len >> 8);
    dst[4] = (unsigned char)len;
    if (start_record(r, dst) < 0 || (n > 0 && (nv = pieces(in, 0, n, v)) < 0)) {
        return 0;
    }
    for (int i = 0; i < nv && off < WM_TLSREC_HEADER + n; i++) {
        size_t k = WM_TLSREC_HEADER + n - off;
        k = v[i].iov_len < k ? v[i].iov_len : k;
        if (gcry_cipher_encrypt(r->h, dst + off, k, v[i].iov_base, k) != 0) {
            return 0;
        }
        off += k;
    }
    if (gcry_cipher_gettag(r->h, dst + off, WM_TLSREC_TAG) != 0) {
        return 0;
    }
    r->seq++;
    return off + WM_TLSREC_TAG;
}

enum wm_tlsrec_res wm_tlsrec_open(struct wm_tlsrec *r, struct evbuffer *in, unsigned char *dst,
                                  size_t cap, size_t *got, const char **why)
{
    unsigned char hdr[WM_TLSREC_HEADER];
    unsigned char tag[WM_TLSREC_TAG];
    struct evbuffer_iovec v[PEEK_VECS];
    struct evbuffer_ptr pos;
    size_t have = evbuffer_get_length(in);
    size_t len;
    size_t n;
    size_t off = 0;
    int nv = 0;

    *got = 0;
    *why = NULL;
    evbuffer_copyout(in, hdr, have < sizeof(hdr) ? have : sizeof(hdr));
    if ((have > 0 && hdr[0] != TYPE_APPDATA) || (have > 1 && hdr[1] != 3) ||
        (have > 2 && hdr[2] != 3)) {
        *why = "not a tunnel record";
        return WM_TLSREC_BAD;
    }
    if (have < sizeof(hdr)) {
        return WM_TLSREC_MORE;
    }
    len = (size_t)hdr[3] << 8 | hdr[4];
    if (len < WM_TLSREC_TAG || len > WM_TLSREC_MAX + WM_TLSREC_TAG) {
        *why = "record length out of range";
        return WM_TLSREC_BAD;
    }
    if (have < WM_TLSREC_HEADER + len) {
        return WM_TLSREC_MORE;
    }
    n = len - WM_TLSREC_TAG;
    if (n > cap) {
        *got = n;
        return WM_TLSREC_ROOM;
    }
    if (start_record(r, hdr) < 0 || (n > 0 && (nv = pieces(in, WM_TLSREC_HEADER, n, v)) < 0)) {
        *why = "cipher failure";
        return WM_TLSREC_BAD;
    }
    for (int i = 0; i < nv && off < n; i++) {
        size_t k = n - off < v[i].iov_len ? n - off : v[i].iov_len;
        if (gcry_cipher_decrypt(r->h, dst + off, k, v[i].iov_base, k) != 0) {
            *why = "cipher failure";
            return WM_TLSREC_BAD;
        }
        off += k;
    }
    evbuffer_ptr_set(in, &pos, WM_TLSREC_HEADER + n, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(in, &pos, tag, sizeof(tag));
    if (gcry_cipher_checktag(r->h, tag, sizeof(tag)) != 0) {
        *why = "record authentication failed";
        return WM_TLSREC_BAD;
    }
    r->seq++;
    evbuffer_drain(in, WM_TLSREC_HEADER + len);
    *got = n;
    return n == 0 ? WM_TLSREC_CLOSE : WM_TLSREC_DATA;
}

/* Whether sealing works here: libgcrypt in FIPS mode refuses GCM
 * encryption under an IV set with gcry_cipher_setiv, and says so only at
 * the first seal, when it is too late to fall back. */
static bool self_test(void)
{
    static const unsigned char s[WM_TLSREC_SECRET];
    unsigned char rec[1 + WM_TLSREC_OVERHEAD];
    struct wm_tlsrec *r = wm_tlsrec_new(s);
    struct evbuffer *in = evbuffer_new();
    bool ok = r != NULL && in != NULL && evbuffer_add(in, "x", 1) == 0 &&
              wm_tlsrec_seal(r, in, 1, rec) == sizeof(rec);

    wm_tlsrec_free(r);
    if (in != NULL) {
        evbuffer_free(in);
    }
    return ok;
}

static int select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                     const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x0b" WM_TLSREC_ALPN;
    unsigned char *sel = NULL;

    (void)arg;
    /* TLS 1.3 only: its exporter is bound to the whole handshake; the
     * server decides, so both ends agree. */
    if (SSL_version(ssl) < TLS1_3_VERSION) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK; /* an older peer: OpenSSL's records */
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int wm_tlsrec_ctx_enable(SSL_CTX *ctx, bool server)
{
    static const unsigned char ours[] = "\x0b" WM_TLSREC_ALPN;
    const char *off = getenv("WMPROXY_OPENSSL_RECORDS");

    if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0) {
        return 0; /* asked for OpenSSL's record layer */
    }
    pthread_once(&gcry_once, gcry_setup);
    if (!gcry_ok) {
        wm_log(WM_LOG_WARN, 0, "tls: libgcrypt did not start: tunnel carriers use OpenSSL's "
                               "record layer");
        return 0;
    }
    if (!self_test()) {
        /* neither offered nor accepted: both ends keep OpenSSL's records */
        wm_log(WM_LOG_INFO, 0, "tls: libgcrypt cannot seal AES-GCM records here (FIPS mode?): "
                               "tunnel carriers use OpenSSL's record layer");
        return 0;
    }
    if (server) {
        /* No session tickets: after the handshake only our records may
         * follow, and a TLS 1.3 server sends tickets after it. */
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_alpn_select_cb(ctx, select_cb, NULL);
        return 0;
    }
    return SSL_CTX_set_alpn_protos(ctx, ours, sizeof(ours) - 1) == 0 ? 0 : -1;
}
