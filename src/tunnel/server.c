/*
 * tunnel/server.c - the server part of a tunnel node: accepts carriers,
 * keeps the registry of the mappings clients announce, opens per-mapping
 * public ports, and routes public connections to the owning client.
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/service.h"
#include "core/util.h"
#include "core/worker.h"
#include "net/listener.h"
#include "net/tls.h"
#include "net/tlspump.h"
#include "proxy/proxy.h"
#include "tunnel/authz.h"
#include "tunnel/mux.h"
#include "tunnel/node_int.h"
#include "tunnel/server_int.h"


/* ---- registry ---- */

static void lower(char *s)
{
    for (; *s != '\0'; s++) {
        *s = (char)tolower((unsigned char)*s);
    }
}

/* A public address as the kernel sees it ("127.0.0.1:2222" for
 * "127.0.0.1:02222" or "localhost:2222"): one port, one routing key, so a
 * client cannot claim a port another holds by spelling it differently (a
 * UDP port, opened with SO_REUSEPORT, would be shared: the kernel would
 * split its datagrams between the two). What does not parse stays as it
 * came and is refused when its port is opened. */
static void canon_addr(char *a, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char c[WM_ADDR_STR_MAX];

    if (wm_addr_parse_listen(a, &ss, &len) == 0) {
        wm_addr_format((struct sockaddr *)&ss, c, sizeof(c));
        snprintf(a, cap, "%s", c);
    }
}

/* The routing key of a mapping: domain (http/https), public address or
 * default slot (tcp), default slot (proxy). */
static void map_key(struct tserver *sv, const struct wm_tun_mapping *m, char *key, size_t cap)
{
    const struct wm_tunnel_settings *s = sv->n->s;

    switch (m->mode) {
    case WM_TUN_MODE_HTTP:
    case WM_TUN_MODE_HTTPS:
        wm_tun_str_copy(key, cap, m->domain);
        lower(key);
        return;
    case WM_TUN_MODE_UDP:
        if (m->bind.n > 0 || m->remote_port != 0) {
            char a[WM_ADDR_STR_MAX];
            if (m->bind.n > 0) {
                wm_tun_str_copy(a, sizeof(a), m->bind);
            } else {
                snprintf(a, sizeof(a), strchr(s->port_ip, ':') ? "[%s]:%u" : "%s:%u",
                         s->port_ip, m->remote_port);
            }
            canon_addr(a, sizeof(a));
            snprintf(key, cap, "udp:%s", a);
        } else {
            snprintf(key, cap, "@udp"); /* refused: a udp mapping names its port */
        }
        return;
    case WM_TUN_MODE_TCP:
        if (m->bind.n > 0) {
            wm_tun_str_copy(key, cap, m->bind);
        } else if (m->remote_port != 0) {
            snprintf(key, cap, strchr(s->port_ip, ':') ? "[%s]:%u" : "%s:%u", s->port_ip,
                     m->remote_port);
        } else {
            snprintf(key, cap, "@tcp");
            return;
        }
        canon_addr(key, cap);
        return;
    default:
        snprintf(key, cap, "@proxy");
        return;
    }
}

static bool own_port(const struct rmap *r)
{
    return (r->mode == WM_TUN_MODE_TCP || r->mode == WM_TUN_MODE_UDP) && r->key[0] != '@';
}

/* May a client claim the port of key ("ip:port", "[v6]:port")? */
static bool port_allowed(const struct tserver *sv, const char *key)
{
    const uint8_t *bits = sv->n->s->allow_ports;
    const char *colon = strrchr(key, ':');
    unsigned long port;
    char *end;

    if (bits == NULL) {
        return true;
    }
    if (colon == NULL) {
        return false;
    }
    port = strtoul(colon + 1, &end, 10);
    return *end == '\0' && port > 0 && port <= 65535 && (bits[port / 8] & (1u << (port % 8)));
}

static struct rmap **route_bucket(struct tserver *sv, uint8_t mode, const char *key);

/* Another client's active mapping that holds the same key (a domain is one
 * key for http and https), found in the routing index. */
static struct rmap *key_holder(struct tserver *sv, uint8_t mode, const char *key,
                               const struct tcarrier *except)
{
    bool web = mode == WM_TUN_MODE_HTTP || mode == WM_TUN_MODE_HTTPS;
    uint8_t first = web ? WM_TUN_MODE_HTTP : mode;
    uint8_t last = web ? WM_TUN_MODE_HTTPS : mode;

    for (uint8_t m = first; m <= last; m++) {
        for (struct rmap *r = *route_bucket(sv, m, key); r != NULL; r = r->rnext) {
            if (r->mode == m && r->owner != except && strcmp(r->key, key) == 0) {
                return r;
            }
        }
    }
    return NULL;
}

_Static_assert(WM_HOST_MAX > WM_TUNNEL_DOMAIN_MAX, "domains fit the routing keys");

struct rule_block *rule_block_ref(struct rule_block *b)
{
    if (b != NULL) {
        b->refs++;
    }
    return b;
}

void rule_block_unref(struct rule_block *b)
{
    if (b != NULL && --b->refs == 0) {
        free(b);
    }
}

/* Copy every mapping's header rules exactly (no length or count cut
 * beyond what the wire allows) into one block, pointing maps[i].rules into
 * it. Returns the block (one reference, the carrier's), or NULL. */
static struct rule_block *rules_copy(const struct wm_tun_mapping *m, size_t n, struct rmap *maps)
{
    size_t nrules = 0;
    size_t strbytes = 0;

    for (size_t i = 0; i < n; i++) {
        nrules += m[i].nrules;
        for (size_t k = 0; k < m[i].nrules; k++) {
            strbytes += m[i].rules[k].name.n + 1 + m[i].rules[k].value.n + 1;
        }
    }
    size_t head = sizeof(struct rule_block) + nrules * sizeof(struct wm_hfwd_rule);
    struct rule_block *b = malloc(head + strbytes + 1);
    if (b == NULL) {
        return NULL;
    }
    b->refs = 1;
    struct wm_hfwd_rule *rr = b->rules;
    char *str = (char *)b + head;
    for (size_t i = 0; i < n; i++) {
        maps[i].rules = rr;
        maps[i].nrules = m[i].nrules;
        for (size_t k = 0; k < m[i].nrules; k++, rr++) {
            const struct wm_tun_rule *w = &m[i].rules[k];
            rr->request = w->request != 0;
            rr->op = (char)w->op;
            memcpy(str, w->name.p, w->name.n);
            str[w->name.n] = '\0';
            rr->name = str;
            str += w->name.n + 1;
            memcpy(str, w->value.p, w->value.n);
            str[w->value.n] = '\0';
            rr->value = str;
            str += w->value.n + 1;
        }
    }
    return b;
}

/* Header rules as sent by a client (the decoder checked the operation): a
 * valid name, a value that cannot split a message. NULL if fine, else the
 * reason. */
static const char *rules_check(const struct wm_tun_mapping *m)
{
    for (size_t k = 0; k < m->nrules; k++) {
        const struct wm_tun_rule *w = &m->rules[k];
        if (!wm_field_name_ok(w->name.p, w->name.n)) {
            return "a header rule names an invalid header";
        }
        if (!wm_field_value_ok(w->value.p, w->value.n)) {
            return "a header rule value has a control character (CR, LF, NUL...)";
        }
    }
    return NULL;
}

/* The public port of a mapping's key: "ip:port", or the default slot's
 * listener (map_tcp_bind / map_proxy_bind); 0 if none. */
static unsigned key_port(const struct tserver *sv, const char *key)
{
    const struct wm_tunnel_settings *s = sv->n->s;
    const char *a = strcmp(key, "@tcp") == 0 ? s->map_tcp
                  : strcmp(key, "@proxy") == 0 ? s->map_proxy : key;
    const char *colon = strrchr(a, ':');
    char *end;
    unsigned long port = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;

    return colon != NULL && *end == '\0' && port <= 65535 ? (unsigned)port : 0;
}

/* What [[proxy.clients]] says carrier c may register: NULL if r is
 * allowed (or there is no table), else the reason (kept in r->refused). */
static const char *client_refusal(struct tserver *sv, struct tcarrier *c, struct rmap *r)
{
    const struct wm_tunnel_settings *s = sv->n->s;
    const struct wm_tunnel_client *e;

    if (s->nclients == 0) {
        return NULL;
    }
    e = wm_tunnel_client_find(s->clients, s->nclients, c->user, strlen(c->user));
    if (e == NULL) {
        wm_fmt(r->refused, sizeof(r->refused), "client %s is no longer in the server's clients",
               c->user);
        return r->refused;
    }
    if (r->mode == WM_TUN_MODE_HTTP || r->mode == WM_TUN_MODE_HTTPS) {
        if (!wm_tunnel_client_may_domain(e, r->key)) {
            wm_fmt(r->refused, sizeof(r->refused),
                   "client %s may not register domain %s (not in its domains)", e->name, r->key);
            return r->refused;
        }
    } else {
        unsigned port = key_port(sv, r->key);
        if (!wm_tunnel_client_may_port(e, port)) {
            wm_fmt(r->refused, sizeof(r->refused),
                   "client %s may not publish port %u (not in its ports)", e->name, port);
            return r->refused;
        }
    }
    if (r->group[0] != '\0' && !wm_tunnel_client_may_group(e, r->group)) {
        wm_fmt(r->refused, sizeof(r->refused), "client %s is not allowed in group %s", e->name,
               r->group);
        return r->refused;
    }
    return NULL;
}

/* No control character (the route tables, /status and the cluster's
 * Redis records separate fields with tabs and lines with newlines). */
static bool printable(const struct wm_tun_str *v)
{
    for (size_t i = 0; i < v->n; i++) {
        unsigned char ch = (unsigned char)v->p[i];
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Can r take its key (domain or public port) now? NULL, its port taken
 * (or shared within its group); else why not. Held by another client:
 * r waits for it (promote_waiting). */
static const char *key_refusal(struct tserver *sv, struct tcarrier *c, struct rmap *r)
{
    const char *bad;
    struct rmap *h = key_holder(sv, r->mode, r->key, c);

    if (h != NULL && (h->group[0] == '\0' || strcmp(h->group, r->group) != 0)) {
        r->waiting = true;
        wm_fmt(r->refused, sizeof(r->refused),
               "%s %s is already registered by client %s (mapping \"%s\")",
               own_port(r) ? "port" : "domain", r->key, h->owner->name, h->name);
        return r->refused;
    }
    if (own_port(r) && !port_allowed(sv, r->key)) {
        wm_fmt(r->refused, sizeof(r->refused), "port of %s is not in the server's allow_ports",
               r->key);
        return r->refused;
    }
    if (wm_tunnel_cluster != NULL && (bad = tcluster_check(c, r)) != NULL) { /* cluster */
        return bad;
    }
    if (own_port(r) && tserver_port_acquire(sv, r->key, r->refused, sizeof(r->refused)) < 0) {
        return r->refused;
    }
    return NULL;
}

/* r passed its checks: it serves from now on. */
static void activate(struct tcarrier *c, struct rmap *r)
{
    tserver_route_set(c->sv, r, true);
    tmetrics_mapping(c, r->name, &r->m_in, &r->m_out);
    if (wm_tunnel_cluster != NULL) { /* cluster */
        tcluster_claimed(c, r, true);
    }
}

/* Why mapping r (announced as m by carrier c) cannot be accepted, or NULL
 * when it can: it then holds its public port, if it has one. A formatted
 * reason is kept in r->refused. */
static const char *map_refusal(struct tserver *sv, struct tcarrier *c, struct rmap *r,
                               const struct wm_tun_mapping *m)
{
    const char *bad;

    if (m->name.n > WM_TUNNEL_NAME_MAX || m->group.n > WM_TUNNEL_NAME_MAX ||
        m->domain.n > WM_TUNNEL_DOMAIN_MAX) {
        /* a cut name would route to the wrong place */
        return "name or group longer than 63 bytes, or domain longer than 253";
    }
    if (!printable(&m->name) || !printable(&m->group)) {
        return "name or group with a control character (tab, newline...)";
    }
    if ((bad = rules_check(m)) != NULL) {
        return bad; /* CR/LF in a rule would split the responses of this port */
    }
    if ((r->mode == WM_TUN_MODE_HTTP || r->mode == WM_TUN_MODE_HTTPS) && r->key[0] == '\0') {
        return "http/https mappings need a domain";
    }
    if (r->mode == WM_TUN_MODE_UDP && r->key[0] == '@') {
        return "udp mappings need remote_port (or bind)";
    }
    if (c->anon) {
        return "this client presented no credentials: it may use the two-level proxy only "
               "(registering mappings needs the server's username/password)";
    }
    if ((bad = client_refusal(sv, c, r)) != NULL) {
        return bad;
    }
    return key_refusal(sv, c, r);
}

/* Mapping gone (its carrier closed, or its client withdrew it) held a
 * key that mappings of other clients were refused for: the first of them
 * that passes the checks again takes it (a client that reconnected after a
 * silent cut, refused while the server still held its stale carrier, would
 * otherwise stay without it while its carrier lives). Its client learned
 * of the refusal; it serves the streams that now come (its config has the
 * mapping). */
static void promote_waiting(struct tserver *sv, const struct rmap *gone)
{
    for (struct tcarrier *c = sv->carriers; c != NULL; c = c->next) {
        for (size_t i = 0; i < c->nmaps; i++) {
            struct rmap *r = &c->maps[i];
            bool web = r->mode == WM_TUN_MODE_HTTP || r->mode == WM_TUN_MODE_HTTPS;
            bool gweb = gone->mode == WM_TUN_MODE_HTTP || gone->mode == WM_TUN_MODE_HTTPS;
            if (!r->waiting || r->active || c == gone->owner || web != gweb ||
                (!web && r->mode != gone->mode) || strcmp(r->key, gone->key) != 0) {
                continue;
            }
            r->waiting = false; /* set again if another client still holds the key */
            if (key_refusal(sv, c, r) != NULL) {
                continue;
            }
            activate(c, r);
            wm_log(WM_LOG_INFO, wm_tun_id(c->t), "tunnel: client %s: mapping \"%s\" (%s) active "
                   "now, client %s that held it is gone", c->name, r->name, r->key,
                   gone->owner->name);
        }
    }
}

/* A mapping of the carrier's previous registration that the new one
 * announces again unchanged (name, mode, key): it stays active as it is,
 * holding its public port; NULL if none. */
static struct rmap *carried_over(struct rmap *old, size_t nold, const struct rmap *r)
{
    for (size_t j = 0; j < nold; j++) {
        if (old[j].active && old[j].mode == r->mode && strcmp(old[j].name, r->name) == 0 &&
            strcmp(old[j].key, r->key) == 0) {
            return &old[j];
        }
    }
    return NULL;
}

/* Streams of a carrier that may go on: those of its active mappings. */
static bool keep_stream(uint32_t tag, void *arg)
{
    const struct tcarrier *c = arg;

    for (size_t i = 0; i < c->nmaps; i++) {
        if (c->maps[i].active && wm_tun_tag(c->maps[i].name, strlen(c->maps[i].name)) == tag) {
            return true;
        }
    }
    return false;
}

/* Accept or refuse mapping i of a (re-)registration. */
static void register_one(struct tcarrier *c, struct rmap *r, const struct wm_tun_mapping *m,
                         struct rmap *old, size_t nold, uint8_t *ok, const char **reason)
{
    struct tserver *sv = c->sv;
    struct rmap *prev;

    r->owner = c;
    r->mode = m->mode;
    wm_tun_str_copy(r->name, sizeof(r->name), m->name);
    wm_tun_str_copy(r->group, sizeof(r->group), m->group);
    map_key(sv, m, r->key, sizeof(r->key));
    if ((prev = carried_over(old, nold, r)) != NULL && strcmp(prev->group, r->group) == 0) {
        tserver_route_set(sv, prev, false); /* its port (if any) passes to r */
        tserver_route_set(sv, r, true);
        tmetrics_mapping(c, r->name, &r->m_in, &r->m_out);
        *reason = "";
        return;
    }
    *reason = map_refusal(sv, c, r, m);
    if (*reason != NULL) {
        *ok = 0;
        wm_log(WM_LOG_WARN, wm_tun_id(c->t), "tunnel: client %s: mapping \"%s%s\" refused: %s",
               c->name, r->name, m->name.n > WM_TUNNEL_NAME_MAX ? "..." : "", *reason);
        return;
    }
    *reason = "";
    activate(c, r);
    wm_log(WM_LOG_INFO, wm_tun_id(c->t), "tunnel: client %s registered mapping \"%s\" (%s)%s%s",
           c->name, r->name, r->key, r->group[0] ? " group " : "", r->group);
}

/* REGISTER: the first one after the handshake, or a later one from a
 * client that reloaded (its previous mappings are replaced: unchanged ones
 * go on untouched, removed ones give their ports back and their streams
 * end, new ones are checked as at attach). */
static void on_registered(struct wm_tun *t, const struct wm_tun_mapping *m, size_t n,
                          uint8_t *ok, const char **reason, void *arg)
{
    struct tcarrier *c = arg;
    struct tserver *sv = c->sv;
    struct rmap *old = c->maps;
    size_t nold = c->nmaps;
    struct rule_block *old_rules = c->rules;
    bool again = c->registered;

    c->maps = calloc(n ? n : 1, sizeof(*c->maps));
    c->rules = c->maps != NULL ? rules_copy(m, n, c->maps) : NULL;
    if (c->maps == NULL || c->rules == NULL) {
        free(c->maps);
        c->maps = old; /* a re-registration keeps what it had */
        c->rules = old_rules;
        for (size_t i = 0; i < n; i++) {
            ok[i] = 0;
            reason[i] = "server out of memory";
        }
        return;
    }
    c->nmaps = n;
    c->registered = true;
    for (size_t i = 0; i < n; i++) {
        register_one(c, &c->maps[i], &m[i], old, nold, &ok[i], &reason[i]);
    }
    for (size_t j = 0; j < nold; j++) {
        if (old[j].active && wm_tunnel_cluster != NULL) { /* cluster */
            tcluster_claimed(c, &old[j], false);
        }
        if (old[j].lost && !old[j].active && own_port(&old[j])) {
            tserver_port_release(sv, old[j].key); /* cluster: withdrawn, port kept till now */
        }
        if (old[j].active) {
            if (own_port(&old[j])) {
                tserver_port_release(sv, old[j].key);
            }
            wm_log(WM_LOG_INFO, wm_tun_id(t), "tunnel: client %s withdrew mapping \"%s\" (%s)",
                   c->name, old[j].name, old[j].key);
            tserver_route_set(sv, &old[j], false);
            promote_waiting(sv, &old[j]);
        }
    }
    free(old);
    rule_block_unref(old_rules);
    if (again) {
        size_t ended = wm_tun_reset_streams(t, keep_stream, c, "mapping removed");
        wm_log(WM_LOG_INFO, wm_tun_id(t),
               "tunnel: client %s re-registered %zu mapping(s) over the live carrier; "
               "%zu stream(s) of removed mappings ended", c->name, n, ended);
    }
}

static void on_ready(struct wm_tun *t, void *arg)
{
    struct tcarrier *c = arg;

    c->ready = true;
    wm_log(WM_LOG_INFO, wm_tun_id(t), "tunnel: client %s (%s) attached (%s)%s", c->name, c->peer,
           wm_tun_transport(t),
           c->anon ? " without credentials: two-level proxy only, its users authenticate "
                     "to the proxy" : "");
}

/* A client opened a stream: the two-level proxy. */
static void on_open(struct wm_tun *t, struct wm_tun_stream *s, const struct wm_tun_open *o,
                    void *arg)
{
    struct tcarrier *c = arg;
    struct tserver *sv = c->sv;
    char field[WM_TUN_PEER_MAX];
    char peer[WM_ADDR_STR_MAX] = "-";
    struct wm_tun_peer pe;
    struct wm_tun *parent;

    (void)t;
    if (c->node) { /* cluster: another node carries a visitor to our client */
        tcluster_node_open(sv, c, s, o);
        return;
    }
    if (o->kind != WM_TUN_OPEN_PROXY) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "mapping streams go from server to client");
        return;
    }
    if (sv->n->draining) {
        wm_tun_stream_refuse(s, WM_TUN_OPEN_NOT_ALLOWED, "shutting down");
        return;
    }
    /* The visitor, as the client saw it: our access lines name it. A
     * client that proved nothing could claim any address (and so dodge
     * the per-address throttle of failed proxy logins): its own counts. */
    wm_tun_peer_parse(o->peer, &pe);
    if (c->anon) {
        memset(&pe, 0, sizeof(pe));
        if (c->alen > 0 && c->alen <= sizeof(pe.src)) {
            memcpy(&pe.src, &c->addr, c->alen);
            pe.srclen = c->alen;
        }
    }
    if (pe.srclen > 0) {
        wm_addr_format((struct sockaddr *)&pe.src, peer, sizeof(peer));
    }
    if (sv->n->client != NULL) {
        /* Middle node: pass the stream on to our own parent, unparsed. */
        parent = tclient_carrier(sv->n->client);
        if (parent == NULL) {
            wm_tun_stream_refuse(s, WM_TUN_OPEN_UNREACHABLE, "parent tunnel is down");
            return;
        }
        /* Accepted only once the parent's stream is open: a refusal up
         * there reaches the child's entry, which answers its client. */
        struct bridge *b = bridge_new_child(s, peer, "tunnel-relay", sv->n->s->idle_timeout_ms);
        if (b != NULL) {
            wm_tun_str_copy(field, sizeof(field), o->peer); /* passed on as it came */
            struct wm_tun_open po = {WM_TUN_OPEN_PROXY, {"", 0}, {field, strlen(field)}};
            bridge_open_stream(b, parent, &po, "parent");
        }
        return;
    }
    struct bufferevent *outer = wm_tun_stream_accept(s);
    if (outer != NULL) {
        wm_proxy_serve_origin(sv->n->s->proxy_svc, sv->n->w, outer,
                              pe.srclen > 0 ? (struct sockaddr *)&pe.src : NULL, NULL, 0);
    }
}

static void carrier_free(struct tcarrier *c)
{
    struct tserver *sv = c->sv;
    struct wm_tun_counters k;

    if (c->id != 0) {
        struct tcarrier **pp = &sv->by_id[c->id % TSERVER_ID_BUCKETS];
        while (*pp != NULL && *pp != c) {
            pp = &(*pp)->idnext;
        }
        if (*pp == c) {
            *pp = c->idnext;
        }
    }
    tcenter_unpend(c);
    if (c->t != NULL) {
        wm_tun_get_counters(c->t, &k);
        sv->st.streams += k.streams;
        sv->st.bytes_in += k.bytes_in;
        sv->st.bytes_out += k.bytes_out;
        wm_listen_stats_conn_close(c->stats, k.bytes_in, k.bytes_out);
    } else {
        wm_listen_stats_conn_close(c->stats, 0, 0);
    }
    wm_listen_stats_unref(c->stats);
    for (size_t i = 0; i < c->nmaps; i++) {
        bool active = c->maps[i].active;
        if (c->maps[i].active && wm_tunnel_cluster != NULL) { /* cluster */
            tcluster_claimed(c, &c->maps[i], false);
        }
        if ((c->maps[i].active || c->maps[i].lost) && own_port(&c->maps[i])) {
            tserver_port_release(sv, c->maps[i].key);
        }
        tserver_route_set(sv, &c->maps[i], false);
        if (active && !sv->n->draining) {
            promote_waiting(sv, &c->maps[i]);
        }
    }
    free(c->maps);
    rule_block_unref(c->rules);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        sv->carriers = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c);
}

static void on_closed(struct wm_tun *t, const char *why, void *arg)
{
    struct tcarrier *c = arg;

    if (c->ready) {
        wm_log(WM_LOG_INFO, wm_tun_id(t), "tunnel: client %s (%s) detached: %s", c->name,
               c->peer, why);
    } else {
        wm_log(WM_LOG_WARN, wm_tun_id(t), "tunnel: client %s refused: %s", c->peer, why);
    }
    carrier_free(c);
}

static const struct wm_tun_cbs server_cbs = {
    .identify = tcenter_identify,
    .authenticated = tcenter_authenticated,
    .ready = on_ready,
    .registered = on_registered,
    .open = on_open,
    .closed = on_closed,
};

void tserver_accept_carrier(struct tserver *sv, int fd, const struct sockaddr *peer,
                            socklen_t plen, struct wm_listen_stats *stats)
{
    const struct wm_tunnel_settings *s = sv->n->s;
    struct bufferevent *bev;
    struct tcarrier *c;
    struct wm_tun_conf tc;
    const char *refused;

    if (sv->n->draining) {
        close(fd);
        return;
    }
    char ps[WM_ADDR_STR_MAX] = "-";
    if (peer != NULL) {
        wm_addr_format(peer, ps, sizeof(ps));
    }
    if ((refused = tcenter_refusal(sv, peer)) != NULL) {
        tcenter_log_refusal(sv, ps, refused);
        close(fd);
        return;
    }
    if (s->server_ctx != NULL) {
        bev = wm_tls_wrap(wm_worker_base(sv->n->w), s->server_ctx, fd, true, NULL, ps);
    } else {
        bev = bufferevent_socket_new(wm_worker_base(sv->n->w), fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            close(fd);
        }
    }
    c = calloc(1, sizeof(*c));
    if (bev == NULL || c == NULL) {
        if (bev != NULL) {
            bufferevent_free(bev);
        }
        free(c);
        return;
    }
    c->sv = sv;
    if (peer != NULL && plen <= sizeof(c->addr)) {
        memcpy(&c->addr, peer, plen);
        c->alen = plen;
    }
    snprintf(c->peer, sizeof(c->peer), "%s", ps);
    snprintf(c->name, sizeof(c->name), "%s", c->peer);
    c->stats = wm_listen_stats_ref(stats);
    wm_listen_stats_conn_open(stats);
    sv->st.accepted++;
    c->pending = true;
    if (++sv->npending > sv->pending_peak) {
        sv->pending_peak = sv->npending;
    }
    c->next = sv->carriers;
    if (sv->carriers != NULL) {
        sv->carriers->prev = c;
    }
    sv->carriers = c;
    memset(&tc, 0, sizeof(tc));
    tc.role = WM_TUN_ROLE_SERVER;
    tc.user = s->user;
    tc.pass = s->pass;
    tc.require_auth = s->nclients > 0 || wm_tunnel_cluster != NULL; /* cluster: node carriers */
    tc.ping_ms = s->ping_ms;
    tc.max_streams = (uint32_t)s->max_streams;
    tc.dead_ms = s->dead_ms;
    tc.open_ms = s->open_ms;
    uint64_t id = wm_log_next_id();
    wm_tls_pump_set_id(bev, id); /* its handshake lines share the carrier's c= */
    c->id = id; /* in the table first: carrier_free() takes it out, whenever it comes */
    c->idnext = sv->by_id[id % TSERVER_ID_BUCKETS];
    sv->by_id[id % TSERVER_ID_BUCKETS] = c;
    c->t = wm_tun_new(sv->n->w, bev, &tc, &server_cbs, c, id);
    if (c->t == NULL) {
        carrier_free(c);
    }
}

struct tcarrier *tserver_carrier_by_id(struct tserver *sv, uint64_t id)
{
    struct tcarrier *c = sv->by_id[id % TSERVER_ID_BUCKETS];

    while (c != NULL && c->id != id) {
        c = c->idnext;
    }
    return c;
}

/* ---- routing ---- */

static struct rmap **route_bucket(struct tserver *sv, uint8_t mode, const char *key)
{
    uint64_t h = wm_hash_seeded(sv->route_seed ^ mode, key, strlen(key));

    return &sv->routes[h % TSERVER_ROUTE_BUCKETS];
}

void tserver_route_set(struct tserver *sv, struct rmap *r, bool active)
{
    struct rmap **pp;

    if (r->active == active) {
        return;
    }
    r->active = active;
    pp = route_bucket(sv, r->mode, r->key);
    if (active) {
        r->rnext = *pp;
        *pp = r;
        return;
    }
    while (*pp != NULL && *pp != r) {
        pp = &(*pp)->rnext;
    }
    if (*pp == r) {
        *pp = r->rnext;
    }
    r->rnext = NULL;
}

struct rmap *tserver_pick(struct tserver *sv, uint8_t mode, const char *key)
{
    struct rmap *cand[64];
    size_t n = 0;

    for (struct rmap *r = *route_bucket(sv, mode, key); r != NULL && n < 64; r = r->rnext) {
        if (r->mode == mode && strcmp(r->key, key) == 0 && r->owner->ready &&
            wm_tun_is_ready(r->owner->t)) {
            cand[n++] = r;
        }
    }
    if (n == 0) {
        return NULL;
    }
    return cand[sv->rr++ % n];
}

/* Domain routing: exact match first, then the longest "*.suffix". */
struct rmap *tserver_pick_host(struct tserver *sv, const char *host, size_t hlen)
{
    char h[WM_HOST_MAX];
    char w[WM_HOST_MAX + 2];
    struct rmap *r;

    if (hlen == 0 || hlen >= sizeof(h)) {
        return NULL;
    }
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    /* drop the port (not inside [v6]) */
    char *colon = strrchr(h, ':');
    if (colon != NULL && strchr(h, ']') == NULL) {
        *colon = '\0';
    } else if (colon != NULL && colon > strchr(h, ']')) {
        *colon = '\0';
    }
    lower(h);
    for (uint8_t m = WM_TUN_MODE_HTTP; m <= WM_TUN_MODE_HTTPS; m++) {
        if ((r = tserver_pick(sv, m, h)) != NULL) {
            return r;
        }
    }
    for (const char *dot = strchr(h, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
        snprintf(w, sizeof(w), "*%s", dot);
        for (uint8_t m = WM_TUN_MODE_HTTP; m <= WM_TUN_MODE_HTTPS; m++) {
            if ((r = tserver_pick(sv, m, w)) != NULL) {
                return r;
            }
        }
    }
    return NULL;
}

void tserver_route_tcp(struct tserver *sv, const char *key, int fd, const struct sockaddr *peer,
                       socklen_t plen, struct wm_listen_stats *stats)
{
    char ps[WM_ADDR_STR_MAX] = "-";
    char field[WM_TUN_PEER_MAX];
    bool proxy = strcmp(key, "@proxy") == 0;
    struct rmap *r = tserver_pick(sv, proxy ? WM_TUN_MODE_PROXY : WM_TUN_MODE_TCP, key);

    (void)plen;
    if (peer != NULL) {
        wm_addr_format(peer, ps, sizeof(ps));
    }
    if (r == NULL && wm_tunnel_cluster != NULL) { /* cluster: a client of another node */
        tnode_peer_field(fd, peer, field, sizeof(field));
        if (tcluster_route_tcp(sv, key, fd, ps, field, stats, proxy)) {
            return;
        }
    }
    if (r == NULL && proxy) {
        tnode_refuse_proxy(fd, ps, "tunnel-proxy", "no tunnel client serves this proxy port",
                           stats, true);
        return;
    }
    if (r == NULL) {
        wm_log(WM_LOG_INFO, 0, "access proto=tunnel-tcp client=%s target=%s code=%d end=%s",
               ps, key, WM_TUN_OPEN_NO_MAPPING, "no-client");
        close(fd);
        return;
    }
    tnode_peer_field(fd, peer, field, sizeof(field));
    struct bridge *b = bridge_new_fd(fd, ps, proxy ? "tunnel-proxy" : "tunnel-tcp", stats,
                                     sv->n->s->idle_timeout_ms);
    if (b == NULL) {
        return;
    }
    if (proxy) {
        bridge_answer_failures(b);
    }
    bridge_count_to(b, r->m_in, r->m_out);
    char target[160];
    snprintf(target, sizeof(target), "%s/%s", r->owner->name, r->name);
    struct wm_tun_open o = {WM_TUN_OPEN_MAPPING, {r->name, strlen(r->name)},
                            {field, strlen(field)}};
    bridge_open_stream(b, r->owner->t, &o, target);
}

void tserver_accept_public(struct tserver *sv, enum wm_tunnel_listen kind, int fd,
                           const struct sockaddr *peer, socklen_t plen,
                           struct wm_listen_stats *stats)
{
    switch (kind) {
    case WM_TUNNEL_LISTEN_MAP_TCP:
        tserver_route_tcp(sv, "@tcp", fd, peer, plen, stats);
        return;
    case WM_TUNNEL_LISTEN_MAP_PROXY:
        tserver_route_tcp(sv, "@proxy", fd, peer, plen, stats);
        return;
    case WM_TUNNEL_LISTEN_MAP_HTTP:
    case WM_TUNNEL_LISTEN_MAP_HTTPS:
        tserver_http_accept(sv, kind == WM_TUNNEL_LISTEN_MAP_HTTPS, fd, peer, plen, stats);
        return;
    default:
        close(fd);
        return;
    }
}

/* ---- life cycle ---- */

struct tserver *tserver_new(struct tnode *n)
{
    struct tserver *sv = calloc(1, sizeof(*sv));

    if (sv != NULL) {
        sv->n = n;
        sv->route_seed = wm_random_u64();
        tserver_ports_owner(sv);
    }
    return sv;
}

/* Why an accepted mapping no longer fits the reloaded settings, or NULL. */
static const char *still_allowed(struct tserver *sv, struct tcarrier *c, struct rmap *r)
{
    if (own_port(r) && !port_allowed(sv, r->key)) {
        wm_fmt(r->refused, sizeof(r->refused), "port of %s is no longer in allow_ports",
               r->key);
        return r->refused;
    }
    return client_refusal(sv, c, r);
}

void tserver_reconfigured(struct tserver *sv)
{
    for (struct tcarrier *c = sv->carriers, *next; c != NULL; c = next) {
        size_t withdrawn = 0;
        const char *why;
        next = c->next;
        for (size_t i = 0; i < c->nmaps; i++) {
            struct rmap *r = &c->maps[i];
            if (!r->active || (why = still_allowed(sv, c, r)) == NULL) {
                continue;
            }
            if (wm_tunnel_cluster != NULL) { /* cluster */
                tcluster_claimed(c, r, false);
            }
            tserver_route_set(sv, r, false);
            withdrawn++;
            if (own_port(r)) {
                tserver_port_release(sv, r->key);
            }
            wm_log(WM_LOG_WARN, wm_tun_id(c->t), "tunnel: client %s: mapping \"%s\" withdrawn: %s",
                   c->name, r->name, why);
        }
        if (withdrawn > 0 && c->t != NULL) {
            /* only the withdrawn mappings' streams end; the carrier and the
             * other mappings go on */
            wm_tun_reset_streams(c->t, keep_stream, c, "mapping withdrawn by the server");
        }
    }
}

void tserver_drain(struct tserver *sv)
{
    for (struct tcarrier *c = sv->carriers, *next; c != NULL; c = next) {
        next = c->next;
        if (wm_tun_nstreams(c->t) == 0) {
            wm_tun_close(c->t, WM_TUN_ERR_SHUTDOWN, "server shutting down");
        }
    }
}

void tserver_free(struct tserver *sv)
{
    if (sv == NULL) {
        return;
    }
    for (struct tcarrier *c = sv->carriers; c != NULL; c = c->next) {
        for (size_t i = 0; i < c->nmaps; i++) {
            tserver_route_set(sv, &c->maps[i], false); /* no route to a record about to go */
        }
    }
    while (sv->carriers != NULL) {
        struct tcarrier *c = sv->carriers;
        c->nmaps = 0; /* ports are released below */
        wm_tun_destroy(c->t);
        c->t = NULL;
        carrier_free(c);
    }
    tserver_ports_free(sv);
    free(sv);
}
