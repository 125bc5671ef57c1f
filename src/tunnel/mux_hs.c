/*
 * tunnel/mux_hs.c - the carrier handshake (docs/tunnel.md "Handshake"):
 * version, challenge-response authentication (the password never crosses
 * the wire), and the registration of the client's mappings.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "tunnel/mux_int.h"

#define LABEL_CLIENT "wmtun/1 client"
#define LABEL_SERVER "wmtun/1 server"

void wm_tun_mac(const char *pass, const char *label, const uint8_t *n1, const uint8_t *n2,
                const char *user, size_t ulen, uint8_t out[WM_TUN_MAC])
{
    uint8_t msg[64 + 2 * WM_TUN_NONCE + WM_TUN_STR_MAX];
    size_t ll = strlen(label);
    size_t n = 0;
    size_t outlen = 0;

    if (ulen > WM_TUN_STR_MAX) {
        ulen = WM_TUN_STR_MAX;
    }
    if (ll > 64) {
        ll = 64; /* labels are the two constants below */
    }
    memcpy(msg, label, ll);
    n += ll;
    memcpy(msg + n, n1, WM_TUN_NONCE);
    n += WM_TUN_NONCE;
    memcpy(msg + n, n2, WM_TUN_NONCE);
    n += WM_TUN_NONCE;
    memcpy(msg + n, user, ulen);
    n += ulen;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pass, strlen(pass), msg, n, out, WM_TUN_MAC,
                  &outlen) == NULL ||
        outlen != WM_TUN_MAC) {
        /* Never authenticate on a failed MAC: make it unguessable. */
        RAND_bytes(out, WM_TUN_MAC);
    }
}

void tun_hs_start_client(struct wm_tun *t)
{
    uint8_t buf[128];
    struct wm_tun_hello hello = {1, t->window, {t->peer_name, strlen(t->peer_name)}};
    size_t n = wm_tun_hello_encode(buf, sizeof(buf), &hello);

    evbuffer_add(bufferevent_get_output(t->bev), WM_TUN_PREFACE, WM_TUN_PREFACE_LEN);
    tun_send_frame(t, WM_TUN_HELLO, 0, 0, buf, n);
    tun_set_state(t, TUN_PREFACE);
}

/* ---- client side ---- */

static void client_challenge(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_challenge c;
    struct wm_tun_auth a;
    uint8_t buf[WM_TUN_MAX_PAYLOAD];
    bool creds = t->user != NULL && t->pass != NULL;

    if (wm_tun_challenge_decode(p, h->len, &c) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed CHALLENGE");
        return;
    }
    memcpy(t->nonce_s, c.nonce, WM_TUN_NONCE);
    t->peer_window = c.window;
    t->auth_required = c.auth_required != 0;
    if (t->auth_required && !creds) {
        tun_fail(t, WM_TUN_ERR_AUTH, "the server requires credentials (username/password)");
        return;
    }
    RAND_bytes(t->nonce_c, WM_TUN_NONCE);
    memset(&a, 0, sizeof(a));
    memcpy(a.nonce, t->nonce_c, WM_TUN_NONCE);
    a.user.p = creds ? t->user : "";
    a.user.n = creds ? strlen(t->user) : 0;
    if (creds) {
        wm_tun_mac(t->pass, LABEL_CLIENT, t->nonce_s, t->nonce_c, t->user, a.user.n, a.mac);
    }
    size_t n = wm_tun_auth_encode(buf, sizeof(buf), &a);
    tun_send_frame(t, WM_TUN_AUTH, 0, 0, buf, n);
    tun_set_state(t, TUN_AUTH);
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
        wm_tun_str_copy(reason, sizeof(reason), r.reason);
        tun_fail(t, WM_TUN_ERR_NONE, "the server refused us: %s", reason);
        return;
    }
    if (t->auth_required) {
        wm_tun_mac(t->pass, LABEL_SERVER, t->nonce_c, t->nonce_s, t->user, strlen(t->user), want);
        if (!wm_ct_equal(want, sizeof(want), r.mac, sizeof(r.mac))) {
            tun_fail(t, WM_TUN_ERR_AUTH, "the server could not prove it knows the password");
            return;
        }
    } else if (t->user != NULL) {
        wm_log(WM_LOG_WARN, t->id, "tunnel: the server does not check credentials");
    }
    uint8_t empty[2] = {0, 0};
    tun_send_frame(t, WM_TUN_REGISTER, 0, 0, t->reglen > 0 ? t->reg : empty,
                   t->reglen > 0 ? t->reglen : sizeof(empty));
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
    if (hello.version != 1) {
        tun_fail(t, WM_TUN_ERR_VERSION, "unsupported protocol version %u", hello.version);
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
    t->auth_required = t->user != NULL && t->pass != NULL;
    c.auth_required = t->auth_required ? 1 : 0;
    c.window = t->window;
    size_t n = wm_tun_challenge_encode(buf, sizeof(buf), &c);
    tun_send_frame(t, WM_TUN_CHALLENGE, 0, 0, buf, n);
    tun_set_state(t, TUN_AUTH);
}

static void auth_refuse(struct wm_tun *t, const char *why)
{
    struct wm_tun_auth_result r;
    uint8_t buf[512];

    memset(&r, 0, sizeof(r));
    r.reason.p = why;
    r.reason.n = strlen(why);
    size_t n = wm_tun_auth_result_encode(buf, sizeof(buf), &r);
    tun_send_frame(t, WM_TUN_AUTH_RESULT, 0, 0, buf, n);
    tun_fail(t, WM_TUN_ERR_AUTH, "%s", why);
}

static void server_auth(struct wm_tun *t, const struct wm_tun_hdr *h, const uint8_t *p)
{
    struct wm_tun_auth a;
    struct wm_tun_auth_result r;
    uint8_t want[WM_TUN_MAC];
    uint8_t buf[128];

    if (wm_tun_auth_decode(p, h->len, &a) < 0) {
        tun_fail(t, WM_TUN_ERR_PROTOCOL, "malformed AUTH");
        return;
    }
    memcpy(t->nonce_c, a.nonce, WM_TUN_NONCE);
    memset(&r, 0, sizeof(r));
    r.ok = 1;
    if (t->auth_required) {
        if (a.user.n == 0) {
            auth_refuse(t, "credentials required");
            return;
        }
        /* Compare user and MAC always, so timing tells nothing. */
        wm_tun_mac(t->pass, LABEL_CLIENT, t->nonce_s, t->nonce_c, a.user.p, a.user.n, want);
        bool u = wm_ct_equal(a.user.p, a.user.n, t->user, strlen(t->user));
        bool m = wm_ct_equal(want, sizeof(want), a.mac, sizeof(a.mac));
        if (!(u & m)) {
            auth_refuse(t, "wrong credentials");
            return;
        }
        wm_tun_mac(t->pass, LABEL_SERVER, t->nonce_c, t->nonce_s, t->user, strlen(t->user), r.mac);
    }
    r.reason.p = "";
    r.reason.n = 0;
    size_t n = wm_tun_auth_result_encode(buf, sizeof(buf), &r);
    tun_send_frame(t, WM_TUN_AUTH_RESULT, 0, 0, buf, n);
    tun_set_state(t, TUN_REGISTER);
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
    size_t len = wm_tun_register_result_encode(buf, WM_TUN_MAX_PAYLOAD, ok, reason, (size_t)n);
    if (t->state == TUN_REGISTER) { /* not closed by the callback */
        tun_send_frame(t, WM_TUN_REGISTER_RESULT, 0, 0, buf, len);
        tun_set_ready(t);
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
