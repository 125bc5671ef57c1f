#include "conf/config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config_cluster.h"
#include "conf/config_int.h"
#include "conf/cval.h"
#include "conf/toml.h"
#include "conf/yaml.h"
#include "core/arena.h"
#include "core/fsutil.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/proxyflags.h"
#include "net/acl.h"
#include "net/addr.h"
#include "net/certs.h"

#define CONF_MAX_FILE (4 * 1024 * 1024)

/* ---- [[proxy.mappings]] ---- */

static const char *const mapping_modes[] = {"http", "https", "tcp", "proxy", "udp", NULL};

/* proxy_protocol: "v1", "v2", or off ("off", "", false); into an int. */
static int set_proxy_protocol(struct wm_cctx *ctx, const struct wm_cval *v, void *dst,
                              const char *path)
{
    int *out = dst;
    size_t n = 0;
    const char *s;

    if (wm_cval_type(v) == WM_CVAL_BOOL && !wm_cval_bool(v)) {
        *out = 0;
        return 0;
    }
    if (wm_cval_type(v) != WM_CVAL_STRING) {
        wm_cctx_error(ctx, v, path, "expected \"v1\", \"v2\" or false");
        return -1;
    }
    s = wm_cval_str(v, &n);
    if (n == 2 && (memcmp(s, "v1", 2) == 0 || memcmp(s, "v2", 2) == 0)) {
        *out = s[1] - '0';
    } else if (n == 0 || (n == 3 && memcmp(s, "off", 3) == 0)) {
        *out = 0;
    } else {
        wm_cctx_error(ctx, v, path, "expected \"v1\", \"v2\" or false");
        return -1;
    }
    return 0;
}

#define MOFF(f) offsetof(struct wm_conf_mapping, f)
static const struct wm_ckey mapping_keys[] = {
    {.name = "name", .kind = WM_CK_STR, .off = MOFF(name), .flags = WM_CKF_REQUIRED},
    {.name = "mode", .kind = WM_CK_ENUM, .off = MOFF(mode), .choices = mapping_modes,
     .flags = WM_CKF_REQUIRED},
    {.name = "local_addr", .kind = WM_CK_HOSTPORT, .off = MOFF(local_addr)},
    {.name = "domain", .kind = WM_CK_STR, .off = MOFF(domain)},
    {.name = "headers", .kind = WM_CK_HEADERS, .off = MOFF(headers), .off_count = MOFF(nheaders)},
    {.name = "remote_port", .kind = WM_CK_INT, .off = MOFF(remote_port), .min = 1, .max = 65535},
    {.name = "bind", .kind = WM_CK_LISTEN, .off = MOFF(bind), .alias = "bind_addr"},
    {.name = "group", .kind = WM_CK_STR, .off = MOFF(group)},
    {.name = "proxy_protocol", .kind = WM_CK_CUSTOM, .off = MOFF(proxy_protocol),
     .custom = set_proxy_protocol},
    {.name = NULL},
};

static void mapping_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                             const char *path)
{
    struct wm_conf_mapping *m = obj;

    static const struct {
        const char *key;
        size_t max;
    } lens[] = {{"name", WM_CONF_MAP_NAME_MAX},
                {"group", WM_CONF_MAP_NAME_MAX},
                {"domain", WM_CONF_DOMAIN_MAX}};

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const struct wm_cval *v = wm_cval_get(t, lens[i].key);
        size_t n = 0;
        if (v == NULL || wm_cval_type(v) != WM_CVAL_STRING) {
            continue;
        }
        wm_cval_str(v, &n);
        if (n > lens[i].max) {
            char kp[256];
            snprintf(kp, sizeof(kp), "%s.%s", path, lens[i].key);
            wm_cctx_error(ctx, v, kp, "%zu bytes long; at most %zu", n, lens[i].max);
        }
    }
    if (m->mode == NULL) {
        return;
    }
    if (strcmp(m->mode, "proxy") != 0 && m->local_addr == NULL) {
        wm_cctx_error(ctx, t, path, "mapping \"%s\" (mode %s) needs local_addr",
                      m->name ? m->name : "?", m->mode);
    }
    if (strcmp(m->mode, "udp") == 0 && m->remote_port == 0 && m->bind == NULL) {
        wm_cctx_error(ctx, t, path, "mapping \"%s\" (mode udp) needs remote_port or bind",
                      m->name ? m->name : "?");
    }
    if ((strcmp(m->mode, "http") == 0 || strcmp(m->mode, "https") == 0) &&
        (m->domain == NULL || m->domain[0] == '\0')) {
        wm_cctx_error(ctx, t, path, "mapping \"%s\" (mode %s) needs a domain",
                      m->name ? m->name : "?", m->mode);
    }
}

static const struct wm_cschema mapping_schema = {
    .name = "a [[proxy.mappings]] entry",
    .size = sizeof(struct wm_conf_mapping),
    .keys = mapping_keys,
    .validate = mapping_validate,
};

/* ---- [[proxy.clients]] ---- */

/* ports: "2000-3000, 3306", a number, or an array of both: kept as one
 * string in the allow_ports syntax. */
static int decode_ports(struct wm_cctx *ctx, const struct wm_cval *v, void *dst, const char *path)
{
    size_t n = wm_cval_type(v) == WM_CVAL_ARRAY ? wm_cval_count(v) : 1;
    char *out = wm_arena_alloc(ctx->arena, n * 24 + 1);
    size_t len = 0;

    if (out == NULL) {
        return -1;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct wm_cval *e = wm_cval_type(v) == WM_CVAL_ARRAY ? wm_cval_at(v, i) : v;
        size_t sl = 0;
        const char *str = NULL;
        char num[24];
        if (wm_cval_type(e) == WM_CVAL_INT) {
            snprintf(num, sizeof(num), "%lld", (long long)wm_cval_int(e));
            str = num;
            sl = strlen(num);
        } else if (wm_cval_type(e) == WM_CVAL_STRING && n == 1) {
            str = wm_cval_str(e, &sl);
        } else if (wm_cval_type(e) == WM_CVAL_STRING && wm_cval_str(e, &sl) != NULL && sl < 20) {
            str = wm_cval_str(e, &sl);
        }
        if (str == NULL || memchr(str, '\0', sl) != NULL) {
            wm_cctx_error(ctx, e, path, "expected a port, a range (\"2000-3000\") or a list "
                                        "of them");
            return -1;
        }
        if (n == 1) {
            *(const char **)dst = wm_arena_strdup(ctx->arena, str);
            return 0;
        }
        len += (size_t)snprintf(out + len, n * 24 + 1 - len, "%s%.*s", i ? "," : "", (int)sl, str);
    }
    *(const char **)dst = out;
    return 0;
}

#define TOFF(f) offsetof(struct wm_conf_tclient, f)
static const struct wm_ckey tclient_keys[] = {
    {.name = "name", .kind = WM_CK_STR, .off = TOFF(name), .flags = WM_CKF_REQUIRED},
    {.name = "password", .kind = WM_CK_STR, .off = TOFF(password), .flags = WM_CKF_SECRET},
    {.name = "subject", .kind = WM_CK_STR, .off = TOFF(subject)},
    {.name = "domains", .kind = WM_CK_STRLIST, .off = TOFF(domains), .off_count = TOFF(ndomains)},
    {.name = "ports", .kind = WM_CK_CUSTOM, .off = TOFF(ports), .custom = decode_ports},
    {.name = "groups", .kind = WM_CK_STRLIST, .off = TOFF(groups), .off_count = TOFF(ngroups)},
    {.name = NULL},
};

static void tclient_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                             const char *path)
{
    struct wm_conf_tclient *c = obj;
    char kp[256];
    char msg[256];

    if (c->password == NULL && c->subject == NULL) {
        wm_cctx_error(ctx, t, path, "client \"%s\" needs a password or a subject (the CN of "
                                    "its certificate)", c->name ? c->name : "?");
    }
    if (c->name != NULL && strlen(c->name) >= WM_PROXY_CRED_MAX) {
        snprintf(kp, sizeof(kp), "%s.name", path);
        wm_cctx_error(ctx, wm_cval_get(t, "name"), kp, "longer than %d bytes",
                      WM_PROXY_CRED_MAX - 1);
    }
    if (c->password != NULL && strlen(c->password) >= WM_PROXY_CRED_MAX) {
        snprintf(kp, sizeof(kp), "%s.password", path);
        wm_cctx_error(ctx, wm_cval_get(t, "password"), kp, "longer than %d bytes",
                      WM_PROXY_CRED_MAX - 1);
    }
    if (c->ports != NULL && wm_parse_port_list(c->ports, NULL, msg, sizeof(msg)) < 0) {
        snprintf(kp, sizeof(kp), "%s.ports", path);
        wm_cctx_error(ctx, wm_cval_get(t, "ports"), kp, "%s", msg);
    }
}

static const struct wm_cschema tclient_schema = {
    .name = "a [[proxy.clients]] entry",
    .size = sizeof(struct wm_conf_tclient),
    .keys = tclient_keys,
    .validate = tclient_validate,
};

/* ---- [proxy] ---- */

static const char *const proxy_modes[] = {"client", "server", "", NULL};

#define TUNNEL_KEY(n, k, f) {.name = n, .kind = k, .off = POFF(f)}
/* A file or directory: relative to the config file's directory. */
#define TUNNEL_PATH(n, f) {.name = n, .kind = WM_CK_STR, .off = POFF(f), .flags = WM_CKF_PATH}
#define POFF(f) offsetof(struct wm_conf_proxy, f)
static const struct wm_ckey proxy_keys[] = {
    {.name = "bind_addr", .kind = WM_CK_LISTEN, .off = POFF(bind), .alias = "bind"},
    {.name = "flag", .kind = WM_CK_FLAGS, .off = POFF(flags)},
    {.name = "username", .kind = WM_CK_STR, .off = POFF(username)},
    {.name = "password", .kind = WM_CK_STR, .off = POFF(password), .flags = WM_CKF_SECRET},
    {.name = "connect_timeout", .kind = WM_CK_DURATION, .off = POFF(connect_timeout_ms),
     .min = 1, .max = 3600000},
    {.name = "idle_timeout", .kind = WM_CK_DURATION, .off = POFF(idle_timeout_ms), .min = 1,
     .max = 7 * 86400000LL},
    {.name = "handshake_timeout", .kind = WM_CK_DURATION, .off = POFF(handshake_timeout_ms),
     .min = 1, .max = 3600000},
    {.name = "mode", .kind = WM_CK_ENUM, .off = POFF(mode), .choices = proxy_modes},
    {.name = "heartbeat_interval", .kind = WM_CK_DURATION, .off = POFF(heartbeat_ms), .min = 100,
     .max = 3600000},
    {.name = "heartbeat_timeout", .kind = WM_CK_DURATION, .off = POFF(heartbeat_timeout_ms),
     .min = 300, .max = 3600000},
    {.name = "server", .kind = WM_CK_CUSTOM, .off = POFF(server), /* cluster: failover list */
     .custom = wm_conf_decode_servers},
    {.name = "udp_bind", .kind = WM_CK_STR, .off = POFF(udp_bind), .flags = WM_CKF_INACTIVE,
     .feature = "UDP ASSOCIATE binds to the address the client reached"},
    TUNNEL_KEY("center_addr", WM_CK_LISTEN, center_addr),
    TUNNEL_KEY("map_http_bind", WM_CK_LISTEN, map_http_bind),
    TUNNEL_KEY("map_https_bind", WM_CK_LISTEN, map_https_bind),
    TUNNEL_KEY("map_tcp_bind", WM_CK_LISTEN, map_tcp_bind),
    TUNNEL_KEY("map_proxy_bind", WM_CK_LISTEN, map_proxy_bind),
    TUNNEL_PATH("map_cert", map_cert),
    TUNNEL_PATH("map_key", map_key),
    TUNNEL_KEY("allow_ports", WM_CK_STR, allow_ports),
    {.name = "center", .kind = WM_CK_BOOL, .off = POFF(center), .flags = WM_CKF_INACTIVE,
     .feature = "wmproxy 0.2 switch; the roles follow server/center_addr/mode"},
    TUNNEL_KEY("ts", WM_CK_BOOL, ts),
    TUNNEL_KEY("tc", WM_CK_BOOL, tc),
    TUNNEL_KEY("two_way_tls", WM_CK_BOOL, two_way_tls),
    {.name = "openssl_records", .kind = WM_CK_BOOL, .off = WM_CK_NOSTORE,
     .flags = WM_CKF_IGNORED, .feature = "carrier records are always OpenSSL's TLS records"},
    TUNNEL_KEY("domain", WM_CK_STR, domain),
    TUNNEL_PATH("cert", cert),
    TUNNEL_PATH("key", key),
    TUNNEL_PATH("ca", ca),
    {.name = "mappings", .kind = WM_CK_TABLE_ARRAY, .off = POFF(mappings),
     .off_count = POFF(nmappings), .sub = &mapping_schema},
    /* destination and client rules (net/acl.h) */
    {.name = "deny_targets", .kind = WM_CK_STRLIST, .off = POFF(deny_targets),
     .off_count = POFF(ndeny_targets)},
    {.name = "allow_targets", .kind = WM_CK_STRLIST, .off = POFF(allow_targets),
     .off_count = POFF(nallow_targets)},
    {.name = "deny_clients", .kind = WM_CK_STRLIST, .off = POFF(deny_clients),
     .off_count = POFF(ndeny_clients)},
    {.name = "allow_clients", .kind = WM_CK_STRLIST, .off = POFF(allow_clients),
     .off_count = POFF(nallow_clients)},
    {.name = "clients", .kind = WM_CK_TABLE_ARRAY, .off = POFF(clients),
     .off_count = POFF(nclients), .sub = &tclient_schema},
    {.name = "max_unauth_carriers", .kind = WM_CK_INT, .off = POFF(max_unauth_carriers), .min = 1,
     .max = 1000000},
    {.name = "max_unauth_carriers_per_ip", .kind = WM_CK_INT,
     .off = POFF(max_unauth_carriers_per_ip), .min = 1, .max = 1000000},
    {.name = "max_streams", .kind = WM_CK_INT, .off = POFF(max_streams), .min = 1, .max = 65536},
    /* carrier trust without a CA */
    TUNNEL_PATH("state_dir", state_dir),
    TUNNEL_PATH("known_hosts", known_hosts),
    TUNNEL_KEY("server_fingerprint", WM_CK_STR, server_fingerprint),
    {.name = NULL},
};

void wm_conf_proxy_defaults(struct wm_conf_proxy *p)
{
    memset(p, 0, sizeof(*p));
    p->bind = WM_CONF_DEFAULT_BIND;
    p->flags = WM_PROXY_FLAG_ALL;
    p->connect_timeout_ms = WM_CONNECT_TIMEOUT_MS;
    p->idle_timeout_ms = WM_IDLE_TIMEOUT_MS;
    p->handshake_timeout_ms = WM_HANDSHAKE_TIMEOUT_MS;
    p->heartbeat_ms = WM_HEARTBEAT_MS;
    p->heartbeat_timeout_ms = WM_HEARTBEAT_TIMEOUT_MS;
    p->max_unauth_carriers = WM_TUNNEL_UNAUTH_MAX_DEFAULT;
    p->max_unauth_carriers_per_ip = WM_TUNNEL_UNAUTH_PER_IP_DEFAULT;
    p->max_streams = WM_TUNNEL_MAX_STREAMS_DEFAULT;
}

static void proxy_defaults(void *obj)
{
    wm_conf_proxy_defaults(obj);
}

static bool given(const struct wm_cval *t, const char *key)
{
    const struct wm_cval *v = wm_cval_get(t, key);

    return v != NULL && wm_cval_type(v) != WM_CVAL_NULL;
}

/* Keys a and b go together. Judged on what the file says, not on the decoded
 * values: a value already reported as malformed must not also count as
 * missing. what: the message, or NULL for "a is set but b is not". */
static void need_pair(struct wm_cctx *ctx, const struct wm_cval *t, const char *path,
                      const char *a, const char *b, const char *what)
{
    char kp[128];
    const char *have = given(t, a) ? a : b;
    const char *miss = given(t, a) ? b : a;

    if (given(t, a) == given(t, b)) {
        return;
    }
    snprintf(kp, sizeof(kp), "%s.%s", path, have);
    if (what != NULL) {
        wm_cctx_error(ctx, wm_cval_get(t, have), kp, "%s", what);
    } else {
        wm_cctx_error(ctx, wm_cval_get(t, have), kp, "%s is set but %s is not", have, miss);
    }
}

/* Each rule of the list key (net/acl.h syntax), reported at its item. */
static void check_rules(struct wm_cctx *ctx, const struct wm_cval *t, const char *path,
                        const char *key, const char *const *v, size_t n, bool client)
{
    const struct wm_cval *list = wm_cval_get(t, key);
    char kp[160];
    char msg[200];

    for (size_t i = 0; i < n; i++) {
        if (wm_acl_rule_check(v[i], client, msg, sizeof(msg)) == 0) {
            continue;
        }
        bool arr = list != NULL && wm_cval_type(list) == WM_CVAL_ARRAY;
        snprintf(kp, sizeof(kp), arr ? "%s.%s[%zu]" : "%s.%s", path, key, i);
        wm_cctx_error(ctx, arr ? wm_cval_at(list, i) : list, kp, "\"%s\": %s", v[i], msg);
    }
}

/* The rules of [proxy] and whether it names its bind_addr. */
static void acl_validate(struct wm_cctx *ctx, struct wm_conf_proxy *p, const struct wm_cval *t,
                         const char *path)
{
    p->bind_set = given(t, "bind_addr") || given(t, "bind");
    check_rules(ctx, t, path, "deny_targets", p->deny_targets, p->ndeny_targets, false);
    check_rules(ctx, t, path, "allow_targets", p->allow_targets, p->nallow_targets, false);
    check_rules(ctx, t, path, "deny_clients", p->deny_clients, p->ndeny_clients, true);
    check_rules(ctx, t, path, "allow_clients", p->allow_clients, p->nallow_clients, true);
}

/* Carrier trust without a CA: a fingerprint that parses. */
static void trust_validate(struct wm_cctx *ctx, const struct wm_conf_proxy *p,
                           const struct wm_cval *t, const char *path)
{
    char kp[128];
    char fp[WM_CERT_FP_MAX];

    if (p->server_fingerprint != NULL &&
        wm_cert_fp_parse(p->server_fingerprint, fp, sizeof(fp)) < 0) {
        snprintf(kp, sizeof(kp), "%s.server_fingerprint", path);
        wm_cctx_error(ctx, wm_cval_get(t, "server_fingerprint"), kp,
                      "expected \"SHA256:\" and 64 hex digits (the server logs its own)");
    }
}

int wm_conf_proxy_user_check(const char *user, char *msg, size_t cap)
{
    if (strchr(user, ':') != NULL) {
        snprintf(msg, cap, "contains ':', where HTTP Basic ends the user name (RFC 7617): "
                           "no HTTP client could log in");
        return -1;
    }
    return wm_conf_proxy_pass_check(user, msg, cap);
}

int wm_conf_proxy_pass_check(const char *pass, char *msg, size_t cap)
{
    if (strlen(pass) >= WM_PROXY_CRED_MAX) {
        snprintf(msg, cap, "longer than %d bytes (SOCKS5 carries no more)",
                 WM_PROXY_CRED_MAX - 1);
        return -1;
    }
    return 0;
}

static void proxy_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                           const char *path)
{
    struct wm_conf_proxy *p = obj;
    char kp[128];
    char msg[256];

    acl_validate(ctx, p, t, path);

    need_pair(ctx, t, path, "username", "password", NULL);
    if (p->username != NULL && wm_conf_proxy_user_check(p->username, msg, sizeof(msg)) < 0) {
        snprintf(kp, sizeof(kp), "%s.username", path);
        wm_cctx_error(ctx, wm_cval_get(t, "username"), kp, "%s", msg);
    }
    if (p->password != NULL && wm_conf_proxy_pass_check(p->password, msg, sizeof(msg)) < 0) {
        snprintf(kp, sizeof(kp), "%s.password", path);
        wm_cctx_error(ctx, wm_cval_get(t, "password"), kp, "%s", msg);
    }
    if (p->allow_ports != NULL) {
        if (wm_parse_port_list(p->allow_ports, NULL, msg, sizeof(msg)) < 0) {
            snprintf(kp, sizeof(kp), "%s.allow_ports", path);
            wm_cctx_error(ctx, wm_cval_get(t, "allow_ports"), kp, "%s", msg);
        }
    }
    need_pair(ctx, t, path, "cert", "key", "cert and key go together");
    need_pair(ctx, t, path, "map_cert", "map_key", "map_cert and map_key go together");
    if (p->heartbeat_timeout_ms < 2 * p->heartbeat_ms) {
        snprintf(kp, sizeof(kp), "%s.heartbeat_timeout", path);
        wm_cctx_error(ctx, wm_cval_get(t, "heartbeat_timeout"), kp,
                      "must be at least twice heartbeat_interval (%llu ms)",
                      (unsigned long long)p->heartbeat_ms);
    }
    for (size_t i = 0; i < p->nclients; i++) {
        for (size_t j = 0; j < i; j++) {
            if (p->clients[i].name != NULL && p->clients[j].name != NULL &&
                strcmp(p->clients[i].name, p->clients[j].name) == 0) {
                const struct wm_cval *arr = wm_cval_get(t, "clients");
                snprintf(kp, sizeof(kp), "%s.clients[%zu].name", path, i);
                wm_cctx_error(ctx, arr ? wm_cval_at(arr, i) : t, kp,
                              "client name \"%s\" is used twice", p->clients[i].name);
            }
        }
        if (p->clients[i].subject != NULL && !(p->tc && p->two_way_tls)) {
            const struct wm_cval *arr = wm_cval_get(t, "clients");
            snprintf(kp, sizeof(kp), "%s.clients[%zu].subject", path, i);
            wm_cctx_error(ctx, arr ? wm_cval_at(arr, i) : t, kp,
                          "a certificate subject needs tc = true and two_way_tls = true");
        }
    }
    trust_validate(ctx, p, t, path);
    for (size_t i = 0; i < p->nmappings; i++) {
        for (size_t j = 0; j < i; j++) {
            if (p->mappings[i].name != NULL && p->mappings[j].name != NULL &&
                strcmp(p->mappings[i].name, p->mappings[j].name) == 0) {
                const struct wm_cval *arr = wm_cval_get(t, "mappings");
                snprintf(kp, sizeof(kp), "%s.mappings[%zu].name", path, i);
                wm_cctx_error(ctx, arr ? wm_cval_at(arr, i) : t, kp,
                              "mapping name \"%s\" is used twice", p->mappings[i].name);
            }
        }
    }
}

static const struct wm_cschema proxy_schema = {
    .name = "[proxy]",
    .size = sizeof(struct wm_conf_proxy),
    .keys = proxy_keys,
    .defaults = proxy_defaults,
    .validate = proxy_validate,
};

/* ---- top level ---- */

#define COFF(f) offsetof(struct wm_conf, f)
static const struct wm_ckey top_keys[] = {
    {.name = "control", .kind = WM_CK_LISTEN, .off = COFF(control)},
    {.name = "disable_stdout", .kind = WM_CK_BOOL, .off = COFF(disable_stdout)},
    {.name = "disable_control", .kind = WM_CK_BOOL, .off = COFF(disable_control)},
    {.name = "pidfile", .kind = WM_CK_STR, .off = COFF(pidfile), .flags = WM_CKF_PATH},
    {.name = "default_level", .kind = WM_CK_LEVEL, .off = COFF(default_level)},
    {.name = "control_token", .kind = WM_CK_STR, .off = COFF(control_token),
     .flags = WM_CKF_SECRET},
    {.name = "log_file", .kind = WM_CK_STR, .off = COFF(log_file), .flags = WM_CKF_PATH},
    {.name = "workers", .kind = WM_CK_INT, .off = COFF(workers), .min = 1, .max = 256},
    {.name = "max_connections", .kind = WM_CK_INT, .off = COFF(max_connections), .min = 0,
     .max = 100000000},
    {.name = "grace", .kind = WM_CK_DURATION, .off = COFF(grace_ms), .min = 0,
     .max = 3600000},
    {.name = "proxy", .kind = WM_CK_TABLE, .off = COFF(proxy), .sub = &proxy_schema},
    {.name = "http", .kind = WM_CK_TABLE, .off = COFF(http), .sub = &wm_conf_http_schema},
    {.name = "stream", .kind = WM_CK_TABLE, .off = COFF(stream), .sub = &wm_conf_stream_schema},
    /* cluster: tunnel servers sharing state through Redis */
    {.name = "cluster", .kind = WM_CK_TABLE, .off = COFF(cluster), .sub = &wm_conf_cluster_schema},
    /* wmproxy 0.1 layout: the proxy's bind_addr at the top, and [reverse]. */
    {.name = "bind_addr", .kind = WM_CK_LISTEN, .off = COFF(legacy_bind), .alias = "bind"},
    {.name = "reverse", .kind = WM_CK_TABLE, .off = WM_CK_NOSTORE, .sub = &wm_conf_reverse_schema,
     .flags = WM_CKF_INACTIVE, .feature = "file server (wmproxy 0.1 [reverse] layout)"},
    {.name = NULL},
};

/* A token a client can send: an Authorization header value loses spaces
 * at its ends and cannot hold control characters. */
static bool token_sendable(const char *tok)
{
    size_t n = strlen(tok);

    if (n > 0 && (tok[0] == ' ' || tok[n - 1] == ' ')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)tok[i] < 0x20 || tok[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

/* A control API anyone can reach must ask for a token. */
static void control_validate(struct wm_cctx *ctx, const struct wm_conf *c,
                             const struct wm_cval *t)
{
    const struct wm_cval *v = wm_cval_get(t, "control");

    if (c->control_token != NULL && !token_sendable(c->control_token)) {
        wm_cctx_error(ctx, wm_cval_get(t, "control_token"), "control_token",
                      "no client could send it: a token has no spaces at its ends and no "
                      "control characters (an Authorization header cannot carry them)");
        return;
    }
    if (v == NULL || c->disable_control || c->control == NULL ||
        (c->control_token != NULL && c->control_token[0] != '\0') ||
        wm_addr_listen_is_loopback(c->control)) {
        return;
    }
    wm_cctx_error(ctx, v, "control",
                  "%s is reachable beyond loopback: set control_token (clients then send "
                  "\"Authorization: Bearer TOKEN\"), listen on 127.0.0.1, or set "
                  "disable_control = true",
                  c->control);
}

static void top_validate(struct wm_cctx *ctx, void *obj, const struct wm_cval *t,
                         const char *path)
{
    struct wm_conf *c = obj;

    (void)path;
    control_validate(ctx, c, t);
    wm_conf_cluster_check_roles(ctx, c, t); /* cluster */
    if (c->legacy_bind == NULL) {
        return;
    }
    if (c->proxy != NULL) {
        const struct wm_cval *v = wm_cval_get(t, "bind_addr");
        wm_cctx_error(ctx, v != NULL ? v : wm_cval_get(t, "bind"), "bind_addr",
                      "a top-level bind_addr (wmproxy 0.1 layout) cannot be combined with "
                      "[proxy]; put it in [proxy]");
        return;
    }
    /* The old layout ran the forward proxy on that address. */
    c->proxy = wm_arena_alloc(ctx->arena, sizeof(*c->proxy));
    if (c->proxy != NULL) {
        proxy_defaults(c->proxy);
        c->proxy->bind = c->legacy_bind;
        c->proxy->bind_set = true;
    }
}

static const struct wm_cschema top_schema = {
    .name = "the top level",
    .size = sizeof(struct wm_conf),
    .keys = top_keys,
    .validate = top_validate,
};

static int diag_cmp(const void *pa, const void *pb)
{
    const struct wm_cdiag *a = pa;
    const struct wm_cdiag *b = pb;

    if (a->e.line != b->e.line) {
        return a->e.line < b->e.line ? -1 : 1;
    }
    if (a->e.col != b->e.col) {
        return a->e.col < b->e.col ? -1 : 1;
    }
    return 0;
}

/* ---- files ---- */

static bool has_suffix(const char *s, const char *sfx)
{
    size_t n = strlen(s);
    size_t m = strlen(sfx);

    return n >= m && strcasecmp(s + n - m, sfx) == 0;
}

/* Read path whole (NUL-terminated, caller frees). Only a regular file: a
 * FIFO would block the reader until some writer came (a reload on the main
 * loop, the control API and the stop signals with it), a device may never
 * end. Opened without blocking so that the check itself cannot wait. */
static char *read_file(const char *path, size_t *len, char *msg, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *f;
    char *buf;
    size_t n = 0;

    if (fd < 0) {
        snprintf(msg, cap, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(msg, cap, "cannot read: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(msg, cap, "cannot read: %s",
                 S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        close(fd);
        return NULL;
    }
    f = fdopen(fd, "rb");
    if (f == NULL) {
        snprintf(msg, cap, "cannot open: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    buf = malloc(CONF_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, CONF_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(msg, cap, "read error: %s", strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    if (n > CONF_MAX_FILE) {
        snprintf(msg, cap, "larger than %d bytes", CONF_MAX_FILE);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Does the PEM pair load, and does the key belong to the certificate? */
static void check_pair(struct wm_cctx *ctx, const struct wm_cval *t, const char *path,
                       const char *ckey, const char *kkey, const char *cert, const char *key)
{
    char kp[160];
    SSL_CTX *sc;
    unsigned long e;
    char ebuf[200];
    char why[64];
    bool encrypted = false;

    if (cert == NULL || key == NULL) {
        return;
    }
    cert = wm_cctx_path(ctx, cert); /* [http] hands the file's text: relative */
    key = wm_cctx_path(ctx, key);
    if (cert == NULL || key == NULL) {
        return;
    }
    snprintf(kp, sizeof(kp), "%s%s%s", path, path[0] ? "." : "", ckey);
    if (wm_file_check_regular(cert, why, sizeof(why)) < 0) {
        wm_cctx_error(ctx, wm_cval_get(t, ckey), kp, "certificate file \"%s\": %s", cert, why);
        return;
    }
    snprintf(kp, sizeof(kp), "%s%s%s", path, path[0] ? "." : "", kkey);
    if (wm_file_check_regular(key, why, sizeof(why)) < 0) {
        wm_cctx_error(ctx, wm_cval_get(t, kkey), kp, "key file \"%s\": %s", key, why);
        return;
    }
    sc = SSL_CTX_new(TLS_method());
    if (sc == NULL) {
        return;
    }
    SSL_CTX_set_default_passwd_cb(sc, wm_cert_no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(sc, &encrypted);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1) {
        e = ERR_get_error();
        snprintf(kp, sizeof(kp), "%s%s%s", path, path[0] ? "." : "", ckey);
        wm_cctx_error(ctx, wm_cval_get(t, ckey), kp, "\"%s\" is not a usable PEM certificate: %s",
                      cert, ERR_error_string(e, ebuf));
    } else if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL 3 already compares the key with the certificate here. */
        e = ERR_get_error();
        if (encrypted) {
            wm_cctx_error(ctx, wm_cval_get(t, kkey), kp, "\"%s\": " WM_CERT_ENCRYPTED_HINT, key);
        } else if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
                   ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            wm_cctx_error(ctx, wm_cval_get(t, kkey), kp,
                          "key \"%s\" does not match certificate \"%s\" " WM_CERT_ORDER_HINT,
                          key, cert);
        } else {
            wm_cctx_error(ctx, wm_cval_get(t, kkey), kp, "\"%s\" is not a usable PEM key: %s",
                          key, ERR_error_string(e, ebuf));
        }
    } else if (SSL_CTX_check_private_key(sc) != 1) {
        wm_cctx_error(ctx, wm_cval_get(t, kkey), kp,
                      "key \"%s\" does not match certificate \"%s\" " WM_CERT_ORDER_HINT, key,
                      cert);
    }
    ERR_clear_error();
    SSL_CTX_free(sc);
}

/* The tunnel's ca, where its TLS reads it (ts; tc with two_way_tls): an
 * error here names the key's line, as for cert and key. */
static void check_anchors(struct wm_cctx *ctx, const struct wm_cval *t, const char *ca)
{
    X509_STORE *st;
    unsigned long e;
    char ebuf[200];
    char why[64];

    if (ca == NULL || (ca = wm_cctx_path(ctx, ca)) == NULL) {
        return;
    }
    if (wm_file_check_regular(ca, why, sizeof(why)) < 0) {
        wm_cctx_error(ctx, wm_cval_get(t, "ca"), "proxy.ca", "trust anchors file \"%s\": %s", ca,
                      why);
        return;
    }
    st = X509_STORE_new();
    if (st == NULL) {
        return;
    }
    ERR_clear_error();
    if (X509_STORE_load_file(st, ca) != 1) {
        e = ERR_get_error();
        wm_cctx_error(ctx, wm_cval_get(t, "ca"), "proxy.ca",
                      "\"%s\" holds no usable PEM certificate: %s", ca, ERR_error_string(e, ebuf));
    }
    ERR_clear_error();
    X509_STORE_free(st);
}

static void check_files(struct wm_cctx *ctx, struct wm_conf *c)
{
    const struct wm_cval *pt = wm_cval_get(c->tree, "proxy");

    if (c->proxy != NULL && pt != NULL) {
        check_pair(ctx, pt, "proxy", "cert", "key", c->proxy->cert, c->proxy->key);
        check_pair(ctx, pt, "proxy", "map_cert", "map_key", c->proxy->map_cert, c->proxy->map_key);
        if (c->proxy->ts || (c->proxy->tc && c->proxy->two_way_tls)) {
            check_anchors(ctx, pt, c->proxy->ca);
        }
    }
    wm_conf_http_check_files(ctx, c->tree, check_pair);
}

/* The absolute directory of config file name (arena), where its relative
 * paths resolve from, as nginx does for include; NULL when name is not a
 * file (a generated config: paths stay as given). */
static const char *config_dir(struct wm_arena *a, const char *name)
{
    const char *slash = strrchr(name, '/');
    char dir[4096];
    char *real;
    const char *r;

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == name) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - name), name);
    }
    if (access(name, F_OK) != 0 || (real = realpath(dir, NULL)) == NULL) {
        return NULL;
    }
    r = wm_arena_strdup(a, strcmp(real, "/") == 0 ? "" : real);
    free(real);
    return r;
}

int wm_conf_load_text(const char *name, const char *text, size_t len, bool check,
                      struct wm_conf **out, struct wm_conf_diags *diags)
{
    struct wm_err perr;
    struct wm_cctx ctx;
    struct wm_conf *c;
    struct wm_arena *a;
    struct wm_cval *tree;
    bool yaml = has_suffix(name, ".yaml") || has_suffix(name, ".yml");

    *out = NULL;
    memset(diags, 0, sizeof(*diags));
    wm_err_clear(&perr);
    tree = yaml ? wm_yaml_parse(text, len, name, &perr) : wm_toml_parse(text, len, name, &perr);
    a = wm_arena_new();
    if (a == NULL) {
        wm_cval_free(tree);
        return -1;
    }
    wm_cctx_init(&ctx, name, a);
    if (tree == NULL) {
        struct wm_cdiag *d = calloc(1, sizeof(*d));
        if (d != NULL) {
            d->e = perr;
            if (d->e.file[0] == '\0') {
                snprintf(d->e.file, sizeof(d->e.file), "%s", name);
            }
            diags->v = d;
            diags->n = diags->nerrors = 1;
        }
        wm_arena_free(a);
        return -1;
    }
    c = wm_arena_alloc(a, sizeof(*c));
    if (c == NULL) {
        wm_cval_free(tree);
        wm_arena_free(a);
        return -1;
    }
    c->arena = a;
    c->tree = tree;
    c->file = wm_arena_strdup(a, name);
    c->control = "127.0.0.1:8837";
    c->default_level = -2;
    c->grace_ms = WM_SHUTDOWN_GRACE_MS;
    ctx.file = c->file;
    ctx.base = config_dir(a, name);
    wm_schema_decode(&ctx, &top_schema, tree, c, "");
    c->has_http = wm_cval_get(tree, "http") != NULL;
    c->has_stream = wm_cval_get(tree, "stream") != NULL;
    if (ctx.nerrors == 0) {
        wm_conf_cross_check(&ctx, tree);
    }
    if (check && ctx.nerrors == 0) {
        check_files(&ctx, c);
    }
    /* File order reads best (the decoder finds nested errors first). A clean
     * file has no diagnostics and diags is NULL: qsort must not see it. */
    if (ctx.ndiags > 1) {
        qsort(ctx.diags, ctx.ndiags, sizeof(*ctx.diags), diag_cmp);
    }
    diags->v = ctx.diags;
    diags->n = ctx.ndiags;
    diags->nerrors = ctx.nerrors;
    if (ctx.nerrors > 0) {
        wm_conf_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int wm_conf_load(const char *path, bool check, struct wm_conf **out, struct wm_conf_diags *diags)
{
    char msg[256];
    size_t len;
    char *text = read_file(path, &len, msg, sizeof(msg));
    int r;

    if (text == NULL) {
        struct wm_cdiag *d = calloc(1, sizeof(*d));
        *out = NULL;
        memset(diags, 0, sizeof(*diags));
        if (d != NULL) {
            wm_err_set(&d->e, path, 0, 0, NULL, "%s", msg);
            diags->v = d;
            diags->n = diags->nerrors = 1;
        }
        return -1;
    }
    r = wm_conf_load_text(path, text, len, check, out, diags);
    free(text);
    return r;
}

/* Copy the top-level control and control_token of tree, when strings. */
static void peek_tree(const struct wm_cval *tree, char *addr, size_t acap, char *token,
                      size_t tcap)
{
    const struct wm_cval *v = wm_cval_get(tree, "control");

    if (v != NULL && wm_cval_type(v) == WM_CVAL_STRING) {
        snprintf(addr, acap, "%s", wm_cval_str(v, NULL));
    }
    v = wm_cval_get(tree, "control_token");
    if (v != NULL && wm_cval_type(v) == WM_CVAL_STRING) {
        snprintf(token, tcap, "%s", wm_cval_str(v, NULL));
    }
}

static struct wm_cval *parse_text(const char *text, size_t len, bool yaml, const char *path)
{
    struct wm_err err;

    return yaml ? wm_yaml_parse(text, len, path, &err) : wm_toml_parse(text, len, path, &err);
}

int wm_conf_peek_control(const char *path, char *addr, size_t acap, char *token, size_t tcap,
                         char *why, size_t wcap)
{
    size_t len;
    char *text = read_file(path, &len, why, wcap);
    struct wm_cval *tree;
    bool yaml = has_suffix(path, ".yaml") || has_suffix(path, ".yml");

    if (text == NULL) {
        return -1;
    }
    tree = parse_text(text, len, yaml, path);
    if (tree != NULL) {
        peek_tree(tree, addr, acap, token, tcap);
        wm_cval_free(tree);
        free(text);
        return 0;
    }
    /* A syntax error anywhere must not send `wmproxy reload -c` to the
     * default address: read each top-level "control..." line on its own
     * (unindented; in TOML, before the first table header). */
    for (size_t b = 0, e; b < len; b = e + 1) {
        const char *nl = memchr(text + b, '\n', len - b);
        e = nl != NULL ? (size_t)(nl - text) : len;
        if (!yaml && text[b] == '[') {
            break;
        }
        if (e - b > 7 && memcmp(text + b, "control", 7) == 0) {
            tree = parse_text(text + b, e - b, yaml, path);
            if (tree != NULL) {
                peek_tree(tree, addr, acap, token, tcap);
                wm_cval_free(tree);
            }
        }
    }
    free(text);
    return 0;
}

void wm_conf_free(struct wm_conf *c)
{
    if (c == NULL) {
        return;
    }
    wm_cval_free(c->tree);
    /* Passwords live in the arena: wipe before releasing. */
    if (c->proxy != NULL && c->proxy->password != NULL) {
        explicit_bzero((void *)c->proxy->password, strlen(c->proxy->password));
    }
    if (c->control_token != NULL) {
        explicit_bzero((void *)c->control_token, strlen(c->control_token));
    }
    wm_arena_free(c->arena);
}

void wm_conf_diags_free(struct wm_conf_diags *d)
{
    free(d->v);
    memset(d, 0, sizeof(*d));
}

const char *wm_conf_diag_format(const struct wm_conf_diags *d, size_t i, char *buf, size_t cap)
{
    char line[1200];

    wm_err_format(&d->v[i].e, line, sizeof(line));
    snprintf(buf, cap, "%s%s", d->v[i].warning ? "warning: " : "", line);
    return buf;
}

void wm_conf_diags_errors(const struct wm_conf_diags *d, struct wm_err *err)
{
    char line[1200];

    for (size_t i = 0; i < d->n; i++) {
        if (!d->v[i].warning) {
            wm_err_add_line(err, "%s", wm_err_format(&d->v[i].e, line, sizeof(line)));
        }
    }
}

void wm_conf_dump_keys(FILE *f)
{
    wm_schema_dump_keys(&top_schema, "", f);
}
