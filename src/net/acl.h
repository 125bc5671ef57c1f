/*
 * net/acl.h - the forward proxy's destination and client rules (squid's
 * dstdomain/dst/port ACLs, dante's to:/from: rules), compiled once per
 * configuration (start, reload) into an immutable set that every worker
 * reads without locks. The dialer (net/dial.h) judges each resolved
 * address of a target; listeners judge each accepted client.
 *
 * A rule is one string:
 *
 *   HOST[:PORTS]          PORTS = N or N-M (1..65535); no PORTS: any port
 *   HOST = 10.0.0.0/8 | 192.168.1.7 | [2001:db8::/32] | [::1] | ::1 (bare
 *          IPv6 takes no port) | * (any host) | name.example (that name)
 *          | *.example (names under it) | .example (it and names under it)
 *
 * Names match the name the client asked for (case-insensitive, a trailing
 * dot ignored), never an IP literal; addresses match every address the
 * name resolves to, so a name that resolves (or rebinds) to a denied
 * address is denied. The unspecified address (0.0.0.0, ::), which a connect
 * takes for loopback, is denied by a deny rule naming 127.0.0.1 (::1) too.
 * Client rules are addresses only (no names, no port).
 *
 * Verdict for one resolved address of a target:
 *   1. a deny_targets rule matches: denied (deny always wins);
 *   2. an allow_targets rule matches: allowed, except that a guarded
 *      address (below) is allowed only by an address rule that lies inside
 *      its range ("127.0.0.1", "[::1]:8000-9000", never "0.0.0.0/0" or a
 *      name: a name may resolve anywhere);
 *   3. a guarded address: denied;
 *   4. allow_targets given: denied (it is a list of what is allowed);
 *   5. allowed.
 * Guarded, when the proxy listens beyond loopback: loopback (127.0.0.0/8,
 * ::1), link-local (169.254.0.0/16 with cloud metadata, fe80::/10), the
 * unspecified address (0.0.0.0, ::), multicast (224.0.0.0/4, ff00::/8) and
 * the broadcast address (255.255.255.255).
 * A client: denied when a deny_clients rule matches, or when allow_clients
 * is given and none of its rules matches.
 */
#ifndef WM_NET_ACL_H
#define WM_NET_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct wm_acl;

/* What a set is built from. The strings are copied. */
struct wm_acl_spec {
    const char *const *deny_targets;
    size_t ndeny_targets;
    const char *const *allow_targets;
    size_t nallow_targets;
    const char *const *deny_clients;
    size_t ndeny_clients;
    const char *const *allow_clients;
    size_t nallow_clients;
    bool guard_local; /* the proxy listens beyond loopback: guard local addresses */
};

/* Longest rule text kept (longer rules are refused). */
#define WM_ACL_RULE_MAX 300

/* Is s a valid rule (a target rule, or a client rule when client)? 0, or
 * -1 with a message in msg (cap bytes). */
int wm_acl_rule_check(const char *s, bool client, char *msg, size_t cap);

/* Build a set from spec. Returns it (refcount 1), or NULL with msg filled
 * (a bad rule: "deny_targets \"x\": ..."; "out of memory"). A spec with no
 * rule and no guard still gives a set (that allows everything). */
struct wm_acl *wm_acl_new(const struct wm_acl_spec *spec, char *msg, size_t cap);

/* References: any thread. unref(NULL) is a no-op. */
struct wm_acl *wm_acl_ref(struct wm_acl *a);
void wm_acl_unref(struct wm_acl *a);

/* Before resolving: is the name (NULL for an IP literal) with this port
 * denied outright by a deny_targets rule that needs no address (a name
 * or "*" rule)? Then *why names the rule. a may be NULL (allowed). */
bool wm_acl_name_denied(const struct wm_acl *a, const char *name, uint16_t port,
                        const char **why);

/* May the proxy connect to sa (its port included), reached through name
 * (NULL for an IP literal)? When not, *why says which rule or default
 * refused it (a string owned by a, or static). a may be NULL (allowed). */
bool wm_acl_target_ok(const struct wm_acl *a, const char *name, const struct sockaddr *sa,
                      const char **why);

/* May the client at sa use the proxy? Same conventions. */
bool wm_acl_client_ok(const struct wm_acl *a, const struct sockaddr *sa, const char **why);

/* Does the set judge anything (rules or guard)? */
bool wm_acl_active(const struct wm_acl *a);

#endif
