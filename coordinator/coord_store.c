/*  coord_store.c — the content-addressed model store (coord_store.h).
 *
 *  STATE/models/sha256/ab/abcdef...: the two-digit fan-out keeps directories small. The bytes
 *  go through ud_file_write_atomic (temporary file, fsync, rename, fsync of the directory), so
 *  a stored object is whole or absent, never half-written.
 */
#include "coord_store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "updraft/ud_seal.h"
#include "updraft/ud_file.h"

static int store_hex_ok(const char *s)
{
    if (!s)
        return 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (i >= 64 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return i == 64;
}

int coord_store_path(const char *state_dir, const char *sha256, char *buf, size_t n,
                     struct ud_err *e)
{
    if (!state_dir || !buf || !store_hex_ok(sha256))
        return ud_err_set(e, UD_EINVAL, "model store: '%.80s' is not a SHA-256 hex digest",
                          sha256 ? sha256 : "(null)");
    int w = snprintf(buf, n, "%s/models/sha256/%.2s/%s", state_dir, sha256, sha256);
    if (w < 0 || (size_t)w >= n)
        return ud_err_set(e, UD_EINVAL, "model store: path under '%s' is too long", state_dir);
    return 0;
}

int coord_store_put(const char *state_dir, const void *bytes, size_t len, char sha256_out[65],
                    struct ud_err *e)
{
    if (!state_dir || (!bytes && len) || !sha256_out)
        return ud_err_set(e, UD_EINVAL, "coord_store_put: missing argument");
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EIO, "model store: libsodium failed to initialise");
    unsigned char sha[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(sha, bytes, (unsigned long long)len);
    sodium_bin2hex(sha256_out, 65, sha, sizeof sha);

    char path[4096], dir[4096];
    int rc = coord_store_path(state_dir, sha256_out, path, sizeof path, e);
    if (rc)
        return rc;
    snprintf(dir, sizeof dir, "%s/models/sha256/%.2s", state_dir, sha256_out);
    if ((rc = ud_file_mkdirs(dir, NULL, e)))
        return rc;

    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode) && (size_t)st.st_size == len)
            return 0;
        /* Same name, other size: a damaged object. Replace it with the right bytes. */
    }
    rc = ud_file_write_atomic(path, bytes, len, e);
    if (rc)
        ud_err_prefix(e, "model store");
    return rc;
}

int coord_store_has(const char *state_dir, const char *sha256)
{
    char path[4096];
    if (coord_store_path(state_dir, sha256, path, sizeof path, NULL))
        return 0;
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int coord_model_keys_load(const char *state_dir, const char *sign_path, const char *model_path,
                          struct coord_model_keys *k, struct ud_err *e)
{
    memset(k, 0, sizeof *k);
    int rc;
    if (sign_path) {
        snprintf(k->sign_path, sizeof k->sign_path, "%s", sign_path);
        if ((rc = ud_key_read(sign_path, UD_KEY_SIGN_SECRET, &k->sign, e)) != 0) {
            ud_err_prefix(e, "--signing-key");
            return rc;
        }
    } else {
        snprintf(k->sign_path, sizeof k->sign_path, "%s/signing.key", state_dir);
        rc = ud_key_read(k->sign_path, UD_KEY_SIGN_SECRET, &k->sign, e);
        if (rc == UD_ENOTFOUND) {
            /* First start: make the key pair. The public half is what devices are given. */
            struct ud_key pub;
            char pub_path[sizeof k->sign_path + 8];
            snprintf(pub_path, sizeof pub_path, "%s/signing.pub", state_dir);
            if ((rc = ud_key_generate(UD_KEY_SIGN_SECRET, &k->sign, e)) != 0 ||
                (rc = ud_key_write(k->sign_path, &k->sign, false, e)) != 0 ||
                (rc = ud_key_public(&k->sign, &pub, e)) != 0 ||
                (rc = ud_key_write(pub_path, &pub, true, e)) != 0)
                return rc;
        } else if (rc) {
            return rc;
        }
    }
    if (model_path) {
        if ((rc = ud_key_read(model_path, UD_KEY_MODEL, &k->model, e)) != 0) {
            ud_err_prefix(e, "--model-key");
            return rc;
        }
        k->has_model = true;
    }
    return 0;
}

int coord_store_put_model(const char *state_dir, const struct coord_model_keys *k, const void *udm,
                          size_t len, char sha256_out[65], size_t *stored_len, struct ud_err *e)
{
    *stored_len = len;
    if (!k)
        return coord_store_put(state_dir, udm, len, sha256_out, e);
    struct ud_seal_keys open_keys = {NULL, k->has_model ? &k->model : NULL};
    char *plain = NULL, *enc = NULL, *signed_ = NULL;
    size_t plain_n = 0, enc_n = 0, signed_n = 0;
    struct ud_seal_info info;
    int rc = ud_seal_open(udm, len, &open_keys, &plain, &plain_n, &info, e);
    if (rc)
        return rc;
    const char *to_sign = plain;
    size_t to_sign_n = plain_n;
    if (k->has_model) {
        if ((rc = ud_seal_encrypt(plain, plain_n, &k->model, &enc, &enc_n, e)) != 0)
            goto out;
        to_sign = enc;
        to_sign_n = enc_n;
    }
    if ((rc = ud_seal_sign(to_sign, to_sign_n, &k->sign, &signed_, &signed_n, e)) != 0)
        goto out;
    rc = coord_store_put(state_dir, signed_, signed_n, sha256_out, e);
    *stored_len = signed_n;
out:
    if (plain) {
        sodium_memzero(plain, plain_n);
        free(plain);
    }
    free(enc);
    free(signed_);
    return rc;
}

ud_model_t *coord_store_read_model(const char *state_dir, const struct coord_model_keys *k,
                                   const char *sha256, struct ud_err *e)
{
    char path[4096 + 128];
    if (coord_store_path(state_dir, sha256, path, sizeof path, e) != 0)
        return NULL;
    struct ud_seal_keys keys = {NULL, k && k->has_model ? &k->model : NULL};
    return ud_seal_read_model(path, &keys, NULL, e);
}

int coord_store_plain_sha256(const char *state_dir, const struct coord_model_keys *k,
                             const char *sha256, char plain_out[65], struct ud_err *e)
{
    char path[4096 + 128], *buf = NULL, *plain = NULL;
    size_t len = 0, plain_n = 0;
    int rc = coord_store_path(state_dir, sha256, path, sizeof path, e);
    if (rc == 0)
        rc = ud_file_read(path,
                          (size_t)UD_SEAL_MAX_PAYLOAD + UD_SEAL_HEADER_BYTES + UD_SEAL_SIG_BYTES,
                          &buf, &len, e);
    struct ud_seal_keys keys = {NULL, k && k->has_model ? &k->model : NULL};
    if (rc == 0)
        rc = ud_seal_open(buf, len, &keys, &plain, &plain_n, NULL, e);
    if (rc == 0) {
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *)plain, plain_n);
        sodium_bin2hex(plain_out, 65, h, sizeof h);
        sodium_memzero(plain, plain_n);
    }
    free(plain);
    free(buf);
    return rc;
}
