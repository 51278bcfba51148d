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

#ifdef __cplusplus
}
#endif

#endif /* UD_NET_H */
