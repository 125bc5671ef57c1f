/*
 * tunnel/mux_hs.c - the carrier handshake (docs/tunnel.md "Handshake"):
 * version, challenge-response authentication (the password never crosses
 * the wire; on TLS the MACs are bound to the session with an exporter
 * value, so a relayed handshake fails), and the registration of the
 * client's mappings.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "net/tlspump.h"
#include "tunnel/mux_int.h"

#define LABEL_CLIENT "wmtun/2 client"
#define LABEL_SERVER "wmtun/2 server"

void wm_tun_mac(const char *pass, const char *label, const uint8_t *n1, const uint8_t *n2,
                const uint8_t *binding, size_t blen, const char *user, size_t ulen,
                uint8_t out[WM_TUN_MAC])
{
    uint8_t msg[64 + 2 * WM_TUN_NONCE + WM_TUN_BINDING + WM_TUN_STR_MAX];
    size_t ll = strlen(label);
    size_t n = 0;
    size_t outlen = 0;

    if (ulen > WM_TUN_STR_MAX) {
        ulen = WM_TUN_STR_MAX;
    }
    if (ll > 64) {
        ll = 64; /* labels are the two constants below */
    }
    if (blen > WM_TUN_BINDING) {
        blen = WM_TUN_BINDING;
    }
    memcpy(msg, label, ll);
    n += ll;
    memcpy(msg + n, n1, WM_TUN_NONCE);
    n += WM_TUN_NONCE;
    memcpy(msg + n, n2, WM_TUN_NONCE);
    n += WM_TUN_NONCE;
    if (blen > 0) {
        memcpy(msg + n, binding, blen);
        n += blen;
    }
    if (ulen > 0) {
        memcpy(msg + n, user, ulen);
        n += ulen;
    }
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pass, strlen(pass), msg, n, out, WM_TUN_MAC,
                  &outlen) == NULL ||
        outlen != WM_TUN_MAC) {
        /* Never authenticate on a failed MAC: make it unguessable. */
        RAND_bytes(out, WM_TUN_MAC);
    }
    OPENSSL_cleanse(msg, sizeof(msg));
}

/* Channel binding: the TLS exporter value of our carrier (the relay of a
 * man in the middle has two TLS sessions, one per side, hence two values).
 * Returns its length (0: plain carrier), or -1 when TLS cannot give it. */
static int tun_binding(struct wm_tun *t, uint8_t out[WM_TUN_BINDING])
{
    SSL *ssl = wm_tls_pump_ssl(t->bev);

    if (ssl == NULL) {
        return 0;
    }
    if (SSL_export_keying_material(ssl, out, WM_TUN_BINDING, WM_TUN_EXPORTER_LABEL,
                                   strlen(WM_TUN_EXPORTER_LABEL), NULL, 0, 0) != 1) {
        return -1;
    }
    return WM_TUN_BINDING;
}

struct ssl_st *wm_tun_ssl(const struct wm_tun *t)
{
    return wm_tls_pump_ssl(t->bev);
}

bool wm_tun_peer_subject(const struct wm_tun *t, char *cn, size_t cap)
{
    SSL *ssl = wm_tls_pump_ssl(t->bev);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;

    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK || cap == 0) {
        return false;
    }
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, (int)cap);
    return n > 0 && (size_t)n < cap && strlen(cn) == (size_t)n; /* no NUL inside */
}

void tun_hs_start_client(struct wm_tun *t)
{
    uint8_t buf[128];
    struct wm_tun_hello hello = {WM_TUN_VERSION, t->window,
                                 {t->peer_name, strlen(t->peer_name)}};
    size_t n = wm_tun_hello_encode(buf, sizeof(buf), &hello);

    evbuffer_add(bufferevent_get_output(t->bev), WM_TUN_PREFACE, WM_TUN_PREFACE_LEN);
    tun_send_frame(t, WM_TUN_HELLO, 0, 0, buf, n);
    tun_set_state(t, TUN_PREFACE);
}

/* ---- client side ---- */

/* Should a client go on with this server? NULL if so, else why not. */
static const char *client_trusts(struct wm_tun *t, uint8_t flags, bool creds, int blen)
{
    SSL *ssl = wm_tls_pump_ssl(t->bev);
    bool has_cert = ssl != NULL && SSL_get_certificate(ssl) != NULL;

    if (creds && !(flags & WM_TUN_CH_AUTH)) {
        /* It would get our mappings without knowing the password. */
        return "the server does not ask for credentials: not registering with it (a fake "
               "server, or one configured without username/password)";
    }
    if ((blen > 0) != ((flags & WM_TUN_CH_TLS) != 0)) {
        return blen > 0 ? "our end of the carrier is TLS but the server's is not: a "
                          "TLS-terminating relay in between? refusing"
                        : "the server's end of the carrier is TLS but ours is not: refusing";
    }
    if ((flags & WM_TUN_CH_AUTH) && !creds && !has_cert) {
        /* Nothing of ours to protect: we send an empty AUTH; a server whose
         * credentials guard its proxy admits us for the two-level proxy
         * (its users authenticate there), any other refuses us. */
        wm_log(WM_LOG_INFO, t->id, "tunnel: the server asks for credentials and we have none: "
                                   "asking to attach for the two-level proxy only (mappings "
                                   "need username/password)");
    }
    return NULL;
}

static void client_challenge(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_challenge c;
    struct wm_tun_auth a;
    uint8_t buf[WM_TUN_MAX_PAYLOAD];
    uint8_t binding[WM_TUN_BINDING];
    bool creds = t->user != NULL && t->pass != NULL;
    const char *why;
    int blen;

    if (wm_tun_challenge_decode(p, h->len, &c) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed CHALLENGE");
        return;
    }
    if ((blen = tun_binding(t, binding)) < 0) {
        tun_fail(t, WM_TUN_ERR_AUTH, "cannot bind the authentication to the TLS session");
        return;
    }
    memcpy(t->nonce_s, c.nonce, WM_TUN_NONCE);
    t->peer_window = c.window;
    t->auth_required = (c.flags & WM_TUN_CH_AUTH) != 0;
    if ((why = client_trusts(t, c.flags, creds, blen)) != NULL) {
        tun_fail(t, WM_TUN_ERR_AUTH, "%s", why);
        return;
    }
    RAND_bytes(t->nonce_c, WM_TUN_NONCE);
    memset(&a, 0, sizeof(a));
    memcpy(a.nonce, t->nonce_c, WM_TUN_NONCE);
    a.user.p = creds ? t->user : "";
    a.user.n = creds ? strlen(t->user) : 0;
    if (creds) {
        wm_tun_mac(t->pass, LABEL_CLIENT, t->nonce_s, t->nonce_c, binding, (size_t)blen, t->user,
                   a.user.n, a.mac);
    }
    size_t n = wm_tun_auth_encode(buf, sizeof(buf), &a);
    tun_send_frame(t, WM_TUN_AUTH, 0, 0, buf, n);
    tun_set_state(t, TUN_AUTH);
}

static void send_register(struct wm_tun *t)
{
    uint8_t empty[2] = {0, 0};

    tun_send_frame(t, WM_TUN_REGISTER, 0, 0, t->reglen > 0 ? t->reg : empty,
                   t->reglen > 0 ? t->reglen : sizeof(empty));
}

static void client_auth_result(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_auth_result r;
    uint8_t want[WM_TUN_MAC];
    char reason[256];

    if (wm_tun_auth_result_decode(p, h->len, &r) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed AUTH_RESULT");
        return;
    }
    if (!r.ok) {
        t->refused = true;
        wm_tun_str_copy(reason, sizeof(reason), r.reason);
        tun_fail(t, WM_TUN_ERR_NONE, "the server refused us: %s", reason);
        return;
    }
    if (t->auth_required && t->user != NULL && t->pass != NULL) {
        uint8_t binding[WM_TUN_BINDING];
        int blen = tun_binding(t, binding);
        wm_tun_mac(t->pass, LABEL_SERVER, t->nonce_c, t->nonce_s, binding,
                   blen > 0 ? (size_t)blen : 0, t->user, strlen(t->user), want);
        if (blen < 0 || !wm_ct_equal(want, sizeof(want), r.mac, sizeof(r.mac))) {
            tun_fail(t, WM_TUN_ERR_AUTH, "the server could not prove it knows the password");
            return;
        }
    }
    send_register(t);
    tun_set_state(t, TUN_REGISTER);
}

static void client_register_result(struct wm_tun *t, const struct wm_tun_hdr *h,
                                   const uint8_t *p)
{
    uint8_t ok[WM_TUN_MAX_MAPPINGS];
    struct wm_tun_str reason[WM_TUN_MAX_MAPPINGS];
    int n = wm_tun_register_result_decode(p, h->len, ok, reason, WM_TUN_MAX_MAPPINGS);

    if (n < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed REGISTER_RESULT");
        return;
    }
    if (t->cbs.register_result != NULL) {
        t->cbs.register_result(t, ok, reason, (size_t)n, t->arg);
    }
    if (t->state == TUN_REGISTER) { /* not closed by the callback */
        tun_set_ready(t);
    }
    if (t->state == TUN_READY && t->reg_again) {
        t->reg_again = false;
        send_register(t);
    }
}

/* ---- server side ---- */

static void server_hello(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_hello hello;
    struct wm_tun_challenge c;
    uint8_t buf[128];

    if (wm_tun_hello_decode(p, h->len, &hello) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed HELLO");
        return;
    }
    if (hello.version != WM_TUN_VERSION) {
        tun_fail(t, WM_TUN_ERR_VERSION,
                 "unsupported protocol version %u (this server speaks %u: upgrade the %s)",
                 hello.version, WM_TUN_VERSION, hello.version < WM_TUN_VERSION ? "client" : "server");
        return;
    }
    t->peer_window = hello.window;
    wm_tun_str_copy(t->peer_name, sizeof(t->peer_name), hello.name);
    for (char *q = t->peer_name; *q != '\0'; q++) {
        if ((unsigned char)*q <= ' ' || *q == '"' || (unsigned char)*q >= 0x7f) {
            *q = '?';
        }
    }
    RAND_bytes(t->nonce_s, WM_TUN_NONCE);
    memcpy(c.nonce, t->nonce_s, WM_TUN_NONCE);
    t->auth_required = t->auth_required || (t->user != NULL && t->pass != NULL);
    c.flags = (t->auth_required ? WM_TUN_CH_AUTH : 0) |
              (wm_tls_pump_ssl(t->bev) != NULL ? WM_TUN_CH_TLS : 0);
    c.window = t->window;
    size_t n = wm_tun_challenge_encode(buf, sizeof(buf), &c);
    tun_send_frame(t, WM_TUN_CHALLENGE, 0, 0, buf, n);
    tun_set_state(t, TUN_AUTH);
}

void tun_hs_refuse_now(struct wm_tun *t)
{
    struct wm_tun_auth_result r;
    uint8_t buf[512];

    t->refusing = false;
    memset(&r, 0, sizeof(r));
    r.reason.p = t->refuse_why;
    r.reason.n = strlen(t->refuse_why);
    size_t n = wm_tun_auth_result_encode(buf, sizeof(buf), &r);
    tun_send_frame(t, WM_TUN_AUTH_RESULT, 0, 0, buf, n);
    tun_fail(t, WM_TUN_ERR_AUTH, "%s", t->refuse_why);
}

/* A refused AUTH: told to the owner, answered now or after the delay it
 * asks for (nothing more is read meanwhile). */
static void auth_refuse(struct wm_tun *t, const char *why)
{
    int delay = t->cbs.authenticated != NULL ? t->cbs.authenticated(t, false, why, t->arg) : 0;

    snprintf(t->refuse_why, sizeof(t->refuse_why), "%s", why);
    if (delay <= 0 || tun_closed(t)) {
        tun_hs_refuse_now(t);
        return;
    }
    t->refusing = true;
    bufferevent_disable(t->bev, EV_READ);
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(t->hs_timer, &tv);
}

/* Which password AUTH from user must prove: the owner's answer, or the
 * configured credentials. 0 with *pass (NULL: none), or -1 with *why. */
static int server_identify(struct wm_tun *t, const struct wm_tun_str *user, const char **pass,
                           const char **why)
{
    *pass = NULL;
    if (t->cbs.identify != NULL) {
        return t->cbs.identify(t, user, pass, why, t->arg);
    }
    if (!t->auth_required) {
        return 0;
    }
    if (user->n == 0) {
        *why = "credentials required";
        return -1;
    }
    /* A wrong user name fails like a wrong password (same MAC work). */
    *pass = t->pass;
    *why = wm_ct_equal(user->p, user->n, t->user, strlen(t->user)) ? NULL : "wrong credentials";
    return 0;
}

static void server_auth(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_auth a;
    struct wm_tun_auth_result r;
    uint8_t want[WM_TUN_MAC];
    uint8_t binding[WM_TUN_BINDING];
    uint8_t buf[128];
    const char *pass = NULL;
    const char *why = NULL;
    int blen;

    if (wm_tun_auth_decode(p, h->len, &a) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed AUTH");
        return;
    }
    if ((blen = tun_binding(t, binding)) < 0) {
        tun_fail(t, WM_TUN_ERR_AUTH, "cannot bind the authentication to the TLS session");
        return;
    }
    memcpy(t->nonce_c, a.nonce, WM_TUN_NONCE);
    memset(&r, 0, sizeof(r));
    r.ok = 1;
    int id = server_identify(t, &a.user, &pass, &why);
    /* The MAC is computed whatever the answer, so timing tells nothing. */
    wm_tun_mac(pass != NULL ? pass : "", LABEL_CLIENT, t->nonce_s, t->nonce_c, binding,
               (size_t)blen, a.user.p, a.user.n, want);
    bool m = wm_ct_equal(want, sizeof(want), a.mac, sizeof(a.mac));
    if (id < 0 || why != NULL || (pass != NULL && !m)) {
        auth_refuse(t, id < 0 || why != NULL ? (why != NULL ? why : "refused")
                                             : "wrong credentials");
        return;
    }
    if (pass != NULL) {
        wm_tun_mac(pass, LABEL_SERVER, t->nonce_c, t->nonce_s, binding, (size_t)blen, a.user.p,
                   a.user.n, r.mac);
    }
    if (t->cbs.authenticated != NULL) {
        t->cbs.authenticated(t, true, "", t->arg);
        if (tun_closed(t)) {
            return;
        }
    }
    r.reason.p = "";
    r.reason.n = 0;
    size_t n = wm_tun_auth_result_encode(buf, sizeof(buf), &r);
    tun_send_frame(t, WM_TUN_AUTH_RESULT, 0, 0, buf, n);
    tun_set_state(t, TUN_REGISTER);
}

/* REGISTER_RESULT for n mappings into buf (WM_TUN_MAX_PAYLOAD bytes). When
 * the reasons do not fit in one frame (many mappings refused with long
 * reasons: domains, client and mapping names), each is cut to an equal
 * share, ending in "...": the client still learns which mapping was
 * refused and mostly why. Returns the length, 0 on OOM. */
static size_t register_result(uint8_t *buf, const uint8_t *ok, const char **reason, size_t n)
{
    size_t len = wm_tun_register_result_encode(buf, WM_TUN_MAX_PAYLOAD, ok, reason, n);
    size_t share;
    char *cut;

    if (len > 0 || n == 0) {
        return len;
    }
    share = (WM_TUN_MAX_PAYLOAD - 2) / n - 3; /* n <= WM_TUN_MAX_MAPPINGS: >= 60 */
    if ((cut = malloc(n * (share + 1))) == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char *c = cut + i * (share + 1);
        size_t rl = strlen(reason[i]);
        if (rl > share) {
            memcpy(c, reason[i], share - 3);
            memcpy(c + share - 3, "...", 4);
        } else {
            memcpy(c, reason[i], rl + 1);
        }
        reason[i] = c;
    }
    len = wm_tun_register_result_encode(buf, WM_TUN_MAX_PAYLOAD, ok, reason, n);
    free(cut);
    return len;
}

static void server_register(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_mapping *m = calloc(WM_TUN_MAX_MAPPINGS, sizeof(*m));
    uint8_t ok[WM_TUN_MAX_MAPPINGS];
    const char *reason[WM_TUN_MAX_MAPPINGS];
    uint8_t *buf = malloc(WM_TUN_MAX_PAYLOAD);
    int n;

    if (m == NULL || buf == NULL) {
        free(m);
        free(buf);
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "out of memory");
        return;
    }
    n = wm_tun_register_decode(p, h->len, m, WM_TUN_MAX_MAPPINGS);
    if (n < 0) {
        free(m);
        free(buf);
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed REGISTER");
        return;
    }
    for (int i = 0; i < n; i++) {
        ok[i] = 1;
        reason[i] = "";
    }
    if (t->cbs.registered != NULL) {
        t->cbs.registered(t, m, (size_t)n, ok, reason, t->arg);
    }
    size_t len = register_result(buf, ok, reason, (size_t)n);
    if (len == 0) {
        free(m);
        free(buf);
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "out of memory");
        return;
    }
    if (t->state == TUN_REGISTER || t->state == TUN_READY) { /* not closed by the callback */
        tun_send_frame(t, WM_TUN_REGISTER_RESULT, 0, 0, buf, len);
        if (t->state == TUN_REGISTER) {
            tun_set_ready(t);
        }
    }
    free(m);
    free(buf);
}

/* The frame each end awaits in each handshake state, and its handler. */
static const struct hs_step {
    enum wm_tun_role role;
    enum tun_state state;
    uint8_t type;
    void (*handle)(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p);
} hs_steps[] = {
    {WM_TUN_ROLE_CLIENT, TUN_PREFACE, WM_TUN_CHALLENGE, client_challenge},
    {WM_TUN_ROLE_CLIENT, TUN_AUTH, WM_TUN_AUTH_RESULT, client_auth_result},
    {WM_TUN_ROLE_CLIENT, TUN_REGISTER, WM_TUN_REGISTER_RESULT, client_register_result},
    {WM_TUN_ROLE_SERVER, TUN_HELLO, WM_TUN_HELLO, server_hello},
    {WM_TUN_ROLE_SERVER, TUN_AUTH, WM_TUN_AUTH, server_auth},
    {WM_TUN_ROLE_SERVER, TUN_REGISTER, WM_TUN_REGISTER, server_register},
};

void tun_hs_frame(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    for (size_t i = 0; i < sizeof(hs_steps) / sizeof(hs_steps[0]); i++) {
        const struct hs_step *st = &hs_steps[i];
        if (st->role == t->role && st->state == t->state && st->type == h->type) {
            st->handle(t, h, p);
            return;
        }
    }
    tun_fail(t, WM_TUN_ERR_PROTOCOL, "unexpected %s frame during the handshake",
             wm_tun_type_name(h->type));
}

void tun_hs_reregister_frame(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    if (t->role == WM_TUN_ROLE_SERVER && h->type == WM_TUN_REGISTER) {
        server_register(t, h, p);
    } else if (t->role == WM_TUN_ROLE_CLIENT && h->type == WM_TUN_REGISTER_RESULT) {
        client_register_result(t, h, p);
    } else {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "%s frame after the handshake",
                 wm_tun_type_name(h->type));
    }
}

int wm_tun_reregister(struct wm_tun *t, const uint8_t *reg, size_t reglen)
{
    uint8_t *copy = NULL;

    if (reglen > 0 && (copy = malloc(reglen)) == NULL) {
        return -1;
    }
    if (reglen > 0) {
        memcpy(copy, reg, reglen);
    }
    free(t->reg);
    t->reg = copy;
    t->reglen = reglen;
    if (t->role != WM_TUN_ROLE_CLIENT || tun_closed(t)) {
        return 0;
    }
    if (t->state == TUN_REGISTER) {
        t->reg_again = true; /* sent when the answer to the first one is in */
    } else if (t->state == TUN_READY) {
        tun_enter(t);
        send_register(t);
        tun_leave(t);
    }
    return 0;
}
