/*  ud_net_curl.h — how updraft's HTTP clients (the agent, the `updraft` CLI) classify libcurl's
 *  result codes as TLS refusals. Header-only, so that libupdraft itself does not link libcurl;
 *  include it only where <curl/curl.h> is available.
 */
#ifndef UD_NET_CURL_H
#define UD_NET_CURL_H

#include <curl/curl.h>

#include "updraft/ud_net.h"

/* 1 with *why set when cc is a TLS verification failure (never worth retrying: the client
   says why and stops), else 0. */
static inline int ud_net_curl_tls_failure(CURLcode cc, enum ud_tls_failure *why)
{
    switch (cc) {
    case CURLE_PEER_FAILED_VERIFICATION:
        *why = UD_TLS_UNTRUSTED;
        return 1;
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        *why = UD_TLS_PIN;
        return 1;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
        *why = UD_TLS_CAFILE;
        return 1;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
        *why = UD_TLS_OTHER;
        return 1;
    default:
        return 0;
    }
}

#endif /* UD_NET_CURL_H */
