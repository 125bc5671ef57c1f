/*
 * tunnel/center.c - the server's gate for carriers (docs/tunnel.md
 * "Handshake"): who a carrier is ([[proxy.clients]] or the single
 * username/password), failed logins (core/authfail.h), the caps on carriers
 * that have not authenticated, and the center's counters.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/authfail.h"
#include "core/log.h"
#include "core/util.h"
#include "tunnel/authz.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"

/* Pending carriers at which a return to none gives memory back (malloc_trim). */
#define WM_TUNNEL_TRIM_AFTER 64

/* The carrier is no longer waiting to authenticate. After a burst of
 * them, give their memory back: a TLS handshake in progress holds ~45 KiB
 * of OpenSSL buffers, freed between long-lived blocks of worker 0's malloc
 * arena, which returns to the system only its top otherwise. */
void tcenter_unpend(struct tcarrier *c)
{
    struct tserver *sv = c->sv;

    if (!c->pending) {
        return;
    }
    c->pending = false;
    sv->npending--;
#ifdef __GLIBC__
    if (sv->npending == 0 && sv->pending_peak >= WM_TUNNEL_TRIM_AFTER) {
        sv->pending_peak = 0;
        malloc_trim(0);
    }
#endif
}

static const struct sockaddr *carrier_addr(const struct tcarrier *c)
{
    return c->alen > 0 ? (const struct sockaddr *)&c->addr : NULL;
}

/* [[proxy.clients]]: the entry AUTH names (or, without a name, the one
 * its verified certificate names); a subject must match the certificate. */
static int identify_in_table(struct tcarrier *c, const struct wm_tunnel_settings *s,
                             const struct wm_tun_str *user, const char **pass, const char **why)
{
    const struct wm_tunnel_client *e;
    char cn[256] = "";
    bool have_cn = wm_tun_peer_subject(c->t, cn, sizeof(cn));

    if (user->n > 0) {
        e = wm_tunnel_client_find(s->clients, s->nclients, user->p, user->n);
    } else {
        e = have_cn ? wm_tunnel_client_by_subject(s->clients, s->nclients, cn) : NULL;
    }
    if (e == NULL) {
        /* unknown name: fails like a wrong password */
        *why = user->n > 0 ? "wrong credentials" : "credentials required";
        return 0;
    }
    if (e->subject != NULL && (!have_cn || strcmp(cn, e->subject) != 0)) {
        *why = "the client certificate does not name this client";
        return 0;
    }
    if (e->password != NULL && user->n == 0) {
        *why = "credentials required";
        return 0;
    }
    *pass = e->password;
    snprintf(c->user, sizeof(c->user), "%s", e->name);
    return 0;
}

/* cluster: is the carrier another server node? true when it is (*pass:
 * the node_password to prove, NULL when its verified node certificate is
 * enough) or is refused as one (*why), false when it is not a node. */
static bool identify_node(struct tcarrier *c, const struct wm_tunnel_settings *s,
                          const struct wm_tun_str *user, const char **pass, const char **why)
{
    bool named = user->n > 5 && memcmp(user->p, "node:", 5) == 0;
    bool certified = tnode_tls_is_node(wm_tun_ssl(c->t)); /* mutual TLS with node_ca */

    if (certified) {
        /* only nodes come in with the nodes' certificate */
        *pass = wm_tunnel_cluster->node_password("node:", 6); /* the same for every node */
        if ((user->n > 0 && !named) || (*pass != NULL && user->n == 0)) {
            *pass = NULL;
            *why = user->n > 0 && !named ? "the cluster's node certificate is for node carriers"
                                         : "credentials required";
            return true;
        }
        c->node = true;
        if (named) {
            wm_tun_str_copy(c->name, sizeof(c->name), *user);
        } else {
            snprintf(c->name, sizeof(c->name), "%.*s", (int)sizeof(c->name) - 1,
                     strncmp(wm_tun_peer_name(c->t), "node:", 5) == 0 ? wm_tun_peer_name(c->t)
                                                                    : "node:?");
        }
        return true;
    }
    if (!named) {
        return false;
    }
    if (tnode_tls_nodes_need_cert(s)) {
        *why = "a node carrier must present the cluster's node certificate (node_ca)";
        return true;
    }
    if ((*pass = wm_tunnel_cluster->node_password(user->p, user->n)) == NULL) {
        return false;
    }
    c->node = true; /* cluster: another server node, proving node_password */
    wm_tun_str_copy(c->name, sizeof(c->name), *user);
    return true;
}

/* A carrier that presents no credentials, on a server whose only
 * credentials are username/password (no [[proxy.clients]]): wmproxy's
 * quick start, where those guard the proxy, not the carrier. It is
 * admitted for two-level proxy streams only, when each of them meets this
 * node's proxy and its auth (so not on a middle node, which passes streams
 * on unparsed); it registers nothing (server.c). */
static bool anon_allowed(const struct tcarrier *c, const struct wm_tunnel_settings *s)
{
    return s->proxy_auth && c->sv->n->client == NULL;
}

int tcenter_identify(struct wm_tun *t, const struct wm_tun_str *user, const char **pass,
                       const char **why, void *arg)
{
    struct tcarrier *c = arg;
    const struct wm_tunnel_settings *s = c->sv->n->s;

    (void)t;
    *pass = NULL;
    if (wm_authfail_check(carrier_addr(c)) < 0) {
        c->held = true;
        *why = "too many failed authentications from this address; try again later";
        return -1;
    }
    if (wm_tunnel_cluster != NULL && identify_node(c, s, user, pass, why)) {
        return 0; /* a node carrier, or one refused as such */
    }
    if (s->nclients > 0) {
        return identify_in_table(c, s, user, pass, why);
    }
    if (s->user == NULL || s->pass == NULL) {
        return 0; /* an open server */
    }
    if (user->n == 0) {
        if (anon_allowed(c, s)) {
            c->anon = true; /* *pass NULL: nothing to prove */
            return 0;
        }
        *why = "credentials required";
        return 0;
    }
    *pass = s->pass;
    if (!wm_ct_equal(user->p, user->n, s->user, strlen(s->user))) {
        *why = "wrong credentials";
    }
    return 0;
}

int tcenter_authenticated(struct wm_tun *t, bool ok, const char *why, void *arg)
{
    struct tcarrier *c = arg;
    struct tserver *sv = c->sv;

    if (ok && c->anon) {
        /* It proved nothing: it stays under the caps on unauthenticated
         * carriers for its whole life, and does not clear the address's
         * failed logins (that would reset the throttle for free). */
        sv->st.anonymous++;
        return 0;
    }
    tcenter_unpend(c);
    if (ok) {
        sv->st.auth_ok++;
        if (c->user[0] != '\0') {
            snprintf(c->name, sizeof(c->name), "%.*s", (int)sizeof(c->name) - 1, c->user);
        }
        wm_authfail_record(carrier_addr(c), true);
        return 0;
    }
    sv->st.auth_failed++;
    if (c->held) {
        sv->st.refused_hold++;
        return 0; /* the hold was logged when it began */
    }
    wm_log(WM_LOG_WARN, wm_tun_id(t), "tunnel: client %s (%s) failed to authenticate: %s",
           c->peer, wm_tun_peer_name(t), why);
    return wm_authfail_record(carrier_addr(c), false);
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family) {
        return false;
    }
    if (b->sa_family == AF_INET) {
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    }
    if (b->sa_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    }
    return false;
}

/* Why a new carrier from peer is refused before anything is read, or NULL:
 * its address is on hold, or too many carriers wait to authenticate. */
const char *tcenter_refusal(struct tserver *sv, const struct sockaddr *peer)
{
    const struct wm_tunnel_settings *s = sv->n->s;
    size_t same = 0;

    if (peer != NULL && wm_authfail_check(peer) < 0) {
        sv->st.refused_hold++;
        return "";
    }
    if (sv->npending >= (size_t)s->max_unauth) {
        sv->st.refused_cap++;
        return "carriers waiting to authenticate: global limit (max_unauth_carriers)";
    }
    for (struct tcarrier *c = sv->carriers; peer != NULL && c != NULL; c = c->next) {
        same += c->pending && same_ip(&c->addr, peer);
    }
    if (same >= (size_t)s->max_unauth_per_ip) {
        sv->st.refused_cap++;
        return "carriers waiting to authenticate from this address: limit "
               "(max_unauth_carriers_per_ip)";
    }
    return NULL;
}

/* One line per second at most for refusals at accept (a flood must not
 * flood the log too). */
void tcenter_log_refusal(struct tserver *sv, const char *peer, const char *why)
{
    uint64_t now = wm_now_coarse_ms();

    if (why[0] == '\0') {
        return; /* on hold: logged when the hold began */
    }
    if (sv->cap_log_ms != 0 && now - sv->cap_log_ms < 1000) {
        sv->cap_quiet++;
        return;
    }
    wm_log(WM_LOG_WARN, 0, "tunnel: carrier from %s refused: %s (%zu waiting; %llu more "
                           "refused since the last such line)", peer, why, sv->npending,
           (unsigned long long)sv->cap_quiet);
    sv->cap_log_ms = now;
    sv->cap_quiet = 0;
}

void tserver_status_json(struct tserver *sv, struct evbuffer *out)
{
    struct tcenter_stats st = sv->st;
    size_t active = 0;

    for (struct tcarrier *c = sv->carriers; c != NULL; c = c->next) {
        struct wm_tun_counters k;
        wm_tun_get_counters(c->t, &k);
        st.streams += k.streams;
        st.bytes_in += k.bytes_in;
        st.bytes_out += k.bytes_out;
        active += c->ready;
    }
    evbuffer_add_printf(out,
                        ",\"center\":{\"accepted\":%llu,\"active\":%zu,\"unauthenticated\":%zu,"
                        "\"auth_ok\":%llu,\"auth_failed\":%llu,\"refused_cap\":%llu,"
                        "\"refused_hold\":%llu,\"anonymous\":%llu,\"streams\":%llu,"
                        "\"bytes_in\":%llu,\"bytes_out\":%llu}",
                        (unsigned long long)st.accepted, active, sv->npending,
                        (unsigned long long)st.auth_ok, (unsigned long long)st.auth_failed,
                        (unsigned long long)st.refused_cap, (unsigned long long)st.refused_hold,
                        (unsigned long long)st.anonymous, (unsigned long long)st.streams, (unsigned long long)st.bytes_in,
                        (unsigned long long)st.bytes_out);
}

