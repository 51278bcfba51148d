/*  ud_net.h — small facts about network addresses that several programs need alike.
 *
 *  Whether an address is loopback decides whether plain HTTP is worth a warning: the
 *  coordinator serving plain HTTP on anything but loopback, and the agent or the `updraft`
 *  CLI sending tokens to an http:// URL whose host is not loopback, say so at start. Pure
 *  functions on strings: no DNS lookups, no sockets, no global state.
 */
#ifndef UD_NET_H
#define UD_NET_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* true when host names this machine's loopback interface: "localhost" (any case, with or
 * without a trailing '.'), an IPv4 address in 127.0.0.0/8, "::1" (any spelling, with or
 * without brackets), or an IPv4-mapped "::ffff:127.x.y.z". Anything else, including the
 * wildcards "0.0.0.0", "*" and "::", an empty string and NULL, is false: a wildcard listens
 * on every interface. Names are not resolved. */
bool ud_net_host_is_loopback(const char *host);

/* Copies the host of url ("scheme://[user@]host[:port][/path]"; an IPv6 host in brackets is
 * copied without them) into out (n bytes, NUL-terminated). Returns 0, or -1 when url has no
 * "://" or the host is empty or does not fit. */
int ud_net_url_host(const char *url, char *out, size_t n);

/* true when url is plain http:// (any case) to a host that is not loopback: what the clients
 * warn about, since the bearer token then crosses a network in the clear. */
bool ud_net_url_is_plain_remote(const char *url);

/* Why a TLS connection was refused, as the clients (agent, CLI) classify libcurl's codes. */
enum ud_tls_failure {
    UD_TLS_UNTRUSTED, /* the server's certificate did not verify (CA, name, dates) */
    UD_TLS_PIN,       /* its public key is not the pinned one */
    UD_TLS_CAFILE,    /* the CA file cannot be used */
    UD_TLS_OTHER,     /* another certificate problem */
};

/* The one wording of a refused TLS connection, into out (n bytes):
 *   "TLS: https://host:8470: server certificate not trusted by CA file ca.pem (<reason>)"
 * base_url: the server; cafile: the CA file in use (NULL: the system store); pin: the pin in
 * use (NULL: none); reason: the TLS library's words. */
void ud_net_tls_message(char *out, size_t n, enum ud_tls_failure why, const char *base_url,
                        const char *cafile, const char *pin, const char *reason);

#ifdef __cplusplus
}
#endif

#endif /* UD_NET_H */
