/*  coord_tls.c — PEM certificate and key checks for HTTPS (coord_tls.h).
 *
 *  libmicrohttpd hands the PEM text to GnuTLS when the daemon starts and only says that it
 *  failed. GnuTLS is asked the same questions here first, one at a time, so each failure has
 *  its own message: the certificate file, then the key file, then whether they belong together.
 */
#include "coord_tls.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_file.h"

#define PEM_MAX (1u << 20) /* a certificate chain or key file */

static int read_pem(const char *opt, const char *path, char **out, struct ud_err *e)
{
    size_t len = 0;
    int rc = ud_file_read(path, PEM_MAX, out, &len, e);
    if (rc)
        return ud_err_prefix(e, "%s", opt);
    if (strlen(*out) != len) {
        free(*out);
        *out = NULL;
        return ud_err_set(e, UD_EFORMAT, "%s %s: not PEM text (it holds NUL bytes: DER?)", opt,
                          path);
    }
    return 0;
}

int coord_tls_creds_load(const char *cert_path, const char *key_path, struct coord_tls_creds *c,
                         struct ud_err *e)
{
    memset(c, 0, sizeof *c);
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return ud_err_set(e, UD_EUNSUPPORTED,
                          "--tls-cert: this libmicrohttpd was built without TLS support (GnuTLS); "
                          "install one with it (Debian's libmicrohttpd12 has it)");
    int rc = read_pem("--tls-cert", cert_path, &c->cert_pem, e);
    if (rc == 0)
        rc = read_pem("--tls-key", key_path, &c->key_pem, e);
    if (rc)
        goto out_fail;

    gnutls_datum_t cd = {(unsigned char *)c->cert_pem, (unsigned)strlen(c->cert_pem)};
    gnutls_datum_t kd = {(unsigned char *)c->key_pem, (unsigned)strlen(c->key_pem)};
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrt = 0;
    int g = gnutls_x509_crt_list_import2(&crts, &ncrt, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (g < 0 || ncrt == 0) {
        rc = ud_err_set(e, UD_EFORMAT, "--tls-cert %s: not a PEM certificate (%s)", cert_path,
                        g < 0 ? gnutls_strerror(g) : "no certificate in it");
        goto out_fail;
    }
    size_t sl = sizeof c->subject;
    if (gnutls_x509_crt_get_dn(crts[0], c->subject, &sl) < 0)
        snprintf(c->subject, sizeof c->subject, "?");
    time_t exp = gnutls_x509_crt_get_expiration_time(crts[0]);
    c->not_after = exp == (time_t)-1 ? 0 : (double)exp;
    for (unsigned i = 0; i < ncrt; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);

    gnutls_x509_privkey_t key;
    if ((g = gnutls_x509_privkey_init(&key)) < 0) {
        rc = ud_err_set(e, UD_ENOMEM, "GnuTLS: %s", gnutls_strerror(g));
        goto out_fail;
    }
    g = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
    gnutls_x509_privkey_deinit(key);
    if (g < 0) {
        rc = ud_err_set(e, UD_EFORMAT, "--tls-key %s: not an unencrypted PEM private key (%s)%s",
                        key_path, gnutls_strerror(g),
                        strstr(c->key_pem, "ENCRYPTED") ? ": decrypt it first (openssl pkey)" : "");
        goto out_fail;
    }

    gnutls_certificate_credentials_t cred;
    if ((g = gnutls_certificate_allocate_credentials(&cred)) < 0) {
        rc = ud_err_set(e, UD_ENOMEM, "GnuTLS: %s", gnutls_strerror(g));
        goto out_fail;
    }
    g = gnutls_certificate_set_x509_key_mem2(cred, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(cred);
    if (g == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        rc = ud_err_set(e, UD_EAUTH,
                        "--tls-key %s does not match the certificate in --tls-cert %s (%s)",
                        key_path, cert_path, c->subject);
        goto out_fail;
    }
    if (g < 0) {
        rc = ud_err_set(e, UD_EFORMAT, "--tls-cert %s with --tls-key %s: %s", cert_path, key_path,
                        gnutls_strerror(g));
        goto out_fail;
    }
    return 0;

out_fail:
    coord_tls_creds_deinit(c);
    return rc;
}

void coord_tls_creds_deinit(struct coord_tls_creds *c)
{
    if (!c)
        return;
    if (c->key_pem) {
        sodium_memzero(c->key_pem, strlen(c->key_pem));
        free(c->key_pem);
    }
    free(c->cert_pem);
    memset(c, 0, sizeof *c);
}
