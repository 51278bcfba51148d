/*  coord_store.c — the content-addressed model store (coord_store.h).
 *
 *  STATE/models/sha256/ab/abcdef...: the two-digit fan-out keeps directories small. The bytes
 *  go through ud_write_file_atomic (temporary file, fsync, rename, fsync of the directory), so
 *  a stored object is whole or absent, never half-written.
 */
#include "coord_store.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "updraft/ud_udm.h"

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

/* mkdir that accepts an existing directory. */
static int store_mkdir(const char *path, struct ud_err *e)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return ud_err_set(e, UD_EIO, "%s: cannot create directory: %s", path, strerror(errno));
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
    snprintf(dir, sizeof dir, "%s/models", state_dir);
    if ((rc = store_mkdir(dir, e)))
        return rc;
    snprintf(dir, sizeof dir, "%s/models/sha256", state_dir);
    if ((rc = store_mkdir(dir, e)))
        return rc;
    snprintf(dir, sizeof dir, "%s/models/sha256/%.2s", state_dir, sha256_out);
    if ((rc = store_mkdir(dir, e)))
        return rc;

    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode) && (size_t)st.st_size == len)
            return 0;
        /* Same name, other size: a damaged object. Replace it with the right bytes. */
    }
    rc = ud_write_file_atomic(path, bytes, len, e);
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
