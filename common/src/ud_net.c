/*  ud_net.c — loopback addresses and URL hosts (ud_net.h).
 *
 *  Literal addresses are read with inet_pton, so "127.000.000.001"-style spellings that
 *  inet_pton refuses are not loopback here either: a warning too many is the safe side.
 */
#include "updraft/ud_net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

bool ud_net_host_is_loopback(const char *host)
{
    if (!host || !*host)
        return false;
    char buf[128];
    size_t n = strlen(host);
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') { /* "[::1]" */
        host++;
        n -= 2;
    }
    if (n >= sizeof buf)
        return false;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (n > 1 && buf[n - 1] == '.') /* "localhost." */
        buf[n - 1] = '\0';
    if (strcasecmp(buf, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

int ud_net_url_host(const char *url, char *out, size_t n)
{
    const char *p = url ? strstr(url, "://") : NULL;
    if (!p || n == 0)
        return -1;
    p += 3;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    const char *h = p, *he;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return -1;
        h = p + 1;
        he = close;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        he = colon ? colon : end;
    }
    size_t len = (size_t)(he - h);
    if (len == 0 || len >= n)
        return -1;
    memcpy(out, h, len);
    out[len] = '\0';
    return 0;
}

bool ud_net_url_is_plain_remote(const char *url)
{
    char host[256];
    if (!url || strncasecmp(url, "http://", 7) != 0)
        return false;
    if (ud_net_url_host(url, host, sizeof host) != 0)
        return true; /* not even a readable host: nothing says it stays on this machine */
    return !ud_net_host_is_loopback(host);
}

void ud_net_tls_message(char *out, size_t n, enum ud_tls_failure why, const char *base_url,
                        const char *cafile, const char *pin, const char *reason)
{
    char ca[1200];
    if (cafile)
        snprintf(ca, sizeof ca, "CA file %s", cafile);
    else
        snprintf(ca, sizeof ca, "the system's CA store (pass --cacert FILE for a private CA)");
    reason = reason && *reason ? reason : "no detail";
    switch (why) {
    case UD_TLS_UNTRUSTED:
        snprintf(out, n, "TLS: %s: server certificate not trusted by %s (%s)", base_url, ca,
                 reason);
        break;
    case UD_TLS_PIN:
        snprintf(out, n, "TLS: %s: server public key does not match the pin %s (%s)", base_url,
                 pin ? pin : "?", reason);
        break;
    case UD_TLS_CAFILE:
        snprintf(out, n, "TLS: %s: cannot use %s (%s)", base_url, ca, reason);
        break;
    default:
        snprintf(out, n, "TLS: %s: certificate problem with %s (%s)", base_url, ca, reason);
        break;
    }
}
