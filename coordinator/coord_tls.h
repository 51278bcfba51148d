/*  coord_tls.h — the coordinator's HTTPS certificate and key: read from PEM files and checked
 *  before libmicrohttpd (GnuTLS) is handed them, so that a bad file is a startup error that
 *  says which file and what is wrong, not libmicrohttpd's silent refusal to start.
 *
 *  Thread-safety: plain functions; the credentials are read once, on the main thread.
 */
#ifndef COORD_TLS_H
#define COORD_TLS_H

#include "updraft/ud_error.h"

/* A certificate (chain) and its private key, as PEM text (NUL-terminated). */
struct coord_tls_creds {
    char *cert_pem;
    char *key_pem;
    char subject[256]; /* the first certificate's subject DN, for the log */
    double not_after;  /* its expiry, unix seconds (0: unknown) */
};

/* Reads cert_path and key_path and checks that the first holds PEM certificates, the second
 * an unencrypted PEM private key, and that the key belongs to the first certificate. Also
 * fails when libmicrohttpd was built without TLS. Returns 0 with *c filled (free with
 * coord_tls_creds_deinit), or UD_ENOTFOUND / UD_EIO (missing or unreadable: names the file),
 * UD_EFORMAT ("not a PEM certificate", "not a PEM private key", with GnuTLS's words),
 * UD_EAUTH (the key does not match the certificate), UD_EUNSUPPORTED (no TLS in
 * libmicrohttpd). */
int coord_tls_creds_load(const char *cert_path, const char *key_path, struct coord_tls_creds *c,
                         struct ud_err *e);
/* Wipes the key and frees both texts. Accepts a zeroed struct. */
void coord_tls_creds_deinit(struct coord_tls_creds *c);

#endif
