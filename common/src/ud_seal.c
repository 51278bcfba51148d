/*  ud_seal.c — signed and encrypted model files (layout and contracts: ud_seal.h).
 *
 *  Order of checks on read, so that each failure is named and nothing untrusted is interpreted
 *  early: magic and version; the declared payload length against the limit and against the bytes
 *  present (nothing is allocated before that); the signature over the raw bytes; the AEAD tag
 *  while decrypting; only then does the .udm parser see the payload.
 */
#include "updraft/ud_seal.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#define F_ENCRYPTED 1u
#define F_SIGNED    2u
#define OFF_VERSION 8
#define OFF_FLAGS   9
#define OFF_LEN     16
#define OFF_ENC_ID  24
#define OFF_NONCE   32
#define OFF_SIGN_ID 56
#define ID_BYTES    8

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* The 8 id bytes of a key, from its hex id. */
static void key_id_bytes(const struct ud_key *k, uint8_t out[ID_BYTES])
{
    size_t n = 0;
    memset(out, 0, ID_BYTES);
    sodium_hex2bin(out, ID_BYTES, k->id, strlen(k->id), NULL, &n, NULL);
}

static int sodium_ready(struct ud_err *e)
{
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
    return 0;
}

int ud_seal_exit_status(int code)
{
    switch (code) {
    case 0:
        return 0;
    case UD_EUNSIGNED:
        return 3;
    case UD_EWRONGKEY:
        return 4;
    case UD_ETAMPERED:
        return 5;
    default:
        return 1;
    }
}

bool ud_seal_detect(const void *buf, size_t len)
{
    return buf && len >= 8 && memcmp(buf, UD_SEAL_MAGIC, 8) == 0;
}

int ud_seal_inspect(const void *buf, size_t len, struct ud_seal_info *info, struct ud_err *e)
{
    const uint8_t *p = buf;
    struct ud_seal_info in;
    memset(&in, 0, sizeof in);
    if (!ud_seal_detect(buf, len))
        return ud_err_set(e, UD_EFOREIGN, "not a sealed updraft model (no \"%s\" magic)",
                          UD_SEAL_MAGIC);
    if (len < UD_SEAL_HEADER_BYTES)
        return ud_err_set(e, UD_ETRUNCATED,
                          "sealed model: %zu bytes, shorter than its %d-byte "
                          "header",
                          len, UD_SEAL_HEADER_BYTES);
    if (p[OFF_VERSION] != 1)
        return ud_err_set(e, UD_EVERSION, "sealed model: format version %u (this build reads 1)",
                          p[OFF_VERSION]);
    unsigned flags = p[OFF_FLAGS];
    if (flags & ~(F_ENCRYPTED | F_SIGNED))
        return ud_err_set(e, UD_EFORMAT, "sealed model: unknown flags 0x%02x in the header", flags);
    if (!all_zero(p + 10, 6))
        return ud_err_set(e, UD_EFORMAT, "sealed model: reserved header bytes 10-15 are not zero");
    in.encrypted = flags & F_ENCRYPTED;
    in.is_signed = flags & F_SIGNED;
    in.payload_len = get_u64le(p + OFF_LEN);
    if (in.payload_len > UD_SEAL_MAX_PAYLOAD)
        return ud_err_set(e, UD_ELIMIT,
                          "sealed model: declares a %llu-byte payload, over the "
                          "limit of %llu",
                          (unsigned long long)in.payload_len,
                          (unsigned long long)UD_SEAL_MAX_PAYLOAD);
    if (in.encrypted && in.payload_len < UD_SEAL_TAG_BYTES)
        return ud_err_set(e, UD_EFORMAT,
                          "sealed model: an encrypted payload of %llu bytes cannot "
                          "hold its %d-byte tag",
                          (unsigned long long)in.payload_len, UD_SEAL_TAG_BYTES);
    if (!in.encrypted && !all_zero(p + OFF_ENC_ID, OFF_SIGN_ID - OFF_ENC_ID))
        return ud_err_set(e, UD_EFORMAT,
                          "sealed model: key id and nonce set in an unencrypted "
                          "file");
    if (!in.is_signed && !all_zero(p + OFF_SIGN_ID, ID_BYTES))
        return ud_err_set(e, UD_EFORMAT, "sealed model: signing key id set in an unsigned file");
    uint64_t want = UD_SEAL_HEADER_BYTES + in.payload_len + (in.is_signed ? UD_SEAL_SIG_BYTES : 0);
    if ((uint64_t)len < want)
        return ud_err_set(e, UD_ETRUNCATED,
                          "sealed model: %zu bytes, the header declares %llu "
                          "(the file was cut short)",
                          len, (unsigned long long)want);
    if ((uint64_t)len > want)
        return ud_err_set(e, UD_EFORMAT,
                          "sealed model: %zu bytes, the header declares %llu (%llu "
                          "unexpected trailing bytes)",
                          len, (unsigned long long)want, (unsigned long long)(len - want));
    if (in.encrypted)
        sodium_bin2hex(in.enc_key_id, sizeof in.enc_key_id, p + OFF_ENC_ID, ID_BYTES);
    if (in.is_signed)
        sodium_bin2hex(in.sign_key_id, sizeof in.sign_key_id, p + OFF_SIGN_ID, ID_BYTES);
    if (info)
        *info = in;
    return 0;
}

/* The AEAD's associated data: the header with the signing fields cleared, so that signing an
   encrypted file later does not invalidate its tag. */
static void header_ad(const uint8_t *hdr, uint8_t ad[UD_SEAL_HEADER_BYTES])
{
    memcpy(ad, hdr, UD_SEAL_HEADER_BYTES);
    ad[OFF_FLAGS] &= (uint8_t)~F_SIGNED;
    memset(ad + OFF_SIGN_ID, 0, ID_BYTES);
}

int ud_seal_encrypt(const void *udm, size_t len, const struct ud_key *model_key, char **out,
                    size_t *out_len, struct ud_err *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    *out = NULL;
    *out_len = 0;
    if (!model_key || model_key->type != UD_KEY_MODEL)
        return ud_err_set(e, UD_EINVAL, "encrypting needs a model-key");
    if (ud_seal_detect(udm, len))
        return ud_err_set(e, UD_EINVAL,
                          "the model is already sealed (signed or encrypted); "
                          "encrypt the plain .udm");
    if ((uint64_t)len + UD_SEAL_TAG_BYTES > UD_SEAL_MAX_PAYLOAD)
        return ud_err_set(e, UD_ELIMIT, "a %zu-byte model is over the sealed-file limit", len);
    size_t n = UD_SEAL_HEADER_BYTES + len + UD_SEAL_TAG_BYTES;
    uint8_t *f = calloc(1, n);
    if (!f)
        return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes to encrypt the model", n);
    memcpy(f, UD_SEAL_MAGIC, 8);
    f[OFF_VERSION] = 1;
    f[OFF_FLAGS] = F_ENCRYPTED;
    put_u64le(f + OFF_LEN, (uint64_t)len + UD_SEAL_TAG_BYTES);
    key_id_bytes(model_key, f + OFF_ENC_ID);
    randombytes_buf(f + OFF_NONCE, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    uint8_t ad[UD_SEAL_HEADER_BYTES];
    header_ad(f, ad);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(f + UD_SEAL_HEADER_BYTES, &clen, udm, len, ad,
                                               sizeof ad, NULL, f + OFF_NONCE, model_key->sec);
    *out = (char *)f;
    *out_len = n;
    return 0;
}

int ud_seal_sign(const void *buf, size_t len, const struct ud_key *sk, char **out, size_t *out_len,
                 struct ud_err *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    *out = NULL;
    *out_len = 0;
    if (!sk || sk->type != UD_KEY_SIGN_SECRET)
        return ud_err_set(e, UD_EINVAL, "signing needs a sign-secret key");
    struct ud_seal_info in;
    size_t body; /* header + payload */
    const uint8_t *payload;
    uint8_t hdr[UD_SEAL_HEADER_BYTES];
    if (ud_seal_detect(buf, len)) {
        if ((rc = ud_seal_inspect(buf, len, &in, e)) != 0)
            return rc;
        memcpy(hdr, buf, sizeof hdr);
        payload = (const uint8_t *)buf + UD_SEAL_HEADER_BYTES;
    } else {
        if ((uint64_t)len > UD_SEAL_MAX_PAYLOAD)
            return ud_err_set(e, UD_ELIMIT, "a %zu-byte model is over the sealed-file limit", len);
        memset(hdr, 0, sizeof hdr);
        memcpy(hdr, UD_SEAL_MAGIC, 8);
        hdr[OFF_VERSION] = 1;
        put_u64le(hdr + OFF_LEN, (uint64_t)len);
        in.payload_len = len;
        payload = buf;
    }
    hdr[OFF_FLAGS] |= F_SIGNED;
    key_id_bytes(sk, hdr + OFF_SIGN_ID);
    body = UD_SEAL_HEADER_BYTES + (size_t)in.payload_len;
    uint8_t *f = malloc(body + UD_SEAL_SIG_BYTES);
    if (!f)
        return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes to sign the model",
                          body + UD_SEAL_SIG_BYTES);
    memcpy(f, hdr, sizeof hdr);
    memcpy(f + UD_SEAL_HEADER_BYTES, payload, (size_t)in.payload_len);
    crypto_sign_detached(f + body, NULL, f, body, sk->sec);
    *out = (char *)f;
    *out_len = body + UD_SEAL_SIG_BYTES;
    return 0;
}

int ud_seal_verify(const void *buf, size_t len, const struct ud_key *pk, struct ud_seal_info *info,
                   struct ud_err *e)
{
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    if (!pk || (pk->type != UD_KEY_SIGN_PUBLIC && pk->type != UD_KEY_SIGN_SECRET))
        return ud_err_set(e, UD_EINVAL, "verifying needs a sign-public key");
    if (!ud_seal_detect(buf, len))
        return ud_err_set(e, UD_EUNSIGNED,
                          "the model is not signed (a plain .udm file); a "
                          "signature by key %s is required",
                          pk->id);
    struct ud_seal_info in;
    if ((rc = ud_seal_inspect(buf, len, &in, e)) != 0)
        return rc;
    if (info)
        *info = in;
    if (!in.is_signed)
        return ud_err_set(e, UD_EUNSIGNED,
                          "the model is %s but not signed; a signature by key %s "
                          "is required",
                          in.encrypted ? "encrypted" : "sealed", pk->id);
    if (strcmp(in.sign_key_id, pk->id) != 0)
        return ud_err_set(e, UD_EWRONGKEY,
                          "the model is signed by key %s, not by the trusted key "
                          "%s",
                          in.sign_key_id, pk->id);
    size_t body = UD_SEAL_HEADER_BYTES + (size_t)in.payload_len;
    const uint8_t *p = buf;
    if (crypto_sign_verify_detached(p + body, p, body, pk->pub) != 0)
        return ud_err_set(e, UD_ETAMPERED,
                          "the signature by key %s does not verify: the model was "
                          "altered after it was signed",
                          pk->id);
    return 0;
}

int ud_seal_open(const void *buf, size_t len, const struct ud_seal_keys *keys, char **payload,
                 size_t *payload_len, struct ud_seal_info *info, struct ud_err *e)
{
    static const struct ud_seal_keys none = {NULL, NULL};
    if (!keys)
        keys = &none;
    *payload = NULL;
    *payload_len = 0;
    if (info)
        memset(info, 0, sizeof *info);
    int rc = sodium_ready(e);
    if (rc)
        return rc;
    if (!ud_seal_detect(buf, len)) {
        if (keys->verify)
            return ud_seal_verify(buf, len, keys->verify, info, e);
        char *copy = malloc(len ? len : 1);
        if (!copy)
            return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes", len);
        memcpy(copy, buf, len);
        *payload = copy;
        *payload_len = len;
        return 0;
    }
    struct ud_seal_info in;
    if ((rc = keys->verify ? ud_seal_verify(buf, len, keys->verify, &in, e)
                           : ud_seal_inspect(buf, len, &in, e)) != 0)
        return rc;
    if (info)
        *info = in;
    const uint8_t *p = buf;
    const uint8_t *body = p + UD_SEAL_HEADER_BYTES;
    size_t n = (size_t)in.payload_len;
    if (!in.encrypted) {
        char *copy = malloc(n ? n : 1);
        if (!copy)
            return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes", n);
        memcpy(copy, body, n);
        *payload = copy;
        *payload_len = n;
        return 0;
    }
    if (!keys->decrypt)
        return ud_err_set(e, UD_EWRONGKEY,
                          "the model is encrypted (model key %s) and no model key "
                          "was given",
                          in.enc_key_id);
    if (keys->decrypt->type != UD_KEY_MODEL)
        return ud_err_set(e, UD_EINVAL, "decrypting needs a model-key");
    if (strcmp(in.enc_key_id, keys->decrypt->id) != 0)
        return ud_err_set(e, UD_EWRONGKEY,
                          "the model is encrypted with model key %s, not with the "
                          "given key %s",
                          in.enc_key_id, keys->decrypt->id);
    size_t plain_n = n - UD_SEAL_TAG_BYTES;
    char *plain = malloc(plain_n ? plain_n : 1);
    if (!plain)
        return ud_err_set(e, UD_ENOMEM, "cannot allocate %zu bytes to decrypt the model", plain_n);
    uint8_t ad[UD_SEAL_HEADER_BYTES];
    header_ad(p, ad);
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)plain, &got, NULL, body, n, ad,
                                                   sizeof ad, p + OFF_NONCE,
                                                   keys->decrypt->sec) != 0) {
        free(plain);
        return ud_err_set(e, UD_ETAMPERED,
                          "the encrypted model does not authenticate under model "
                          "key %s: it was altered after it was encrypted",
                          in.enc_key_id);
    }
    *payload = plain;
    *payload_len = (size_t)got;
    return 0;
}

ud_model_t *ud_seal_decode_model(const void *buf, size_t len, const struct ud_seal_keys *keys,
                                 struct ud_seal_info *info, struct ud_err *e)
{
    char *plain = NULL;
    size_t n = 0;
    struct ud_seal_info in;
    if (ud_seal_open(buf, len, keys, &plain, &n, &in, e) != 0)
        return NULL;
    if (info)
        *info = in;
    ud_model_t *m = ud_udm_decode(plain, n, e);
    if (in.encrypted)
        sodium_memzero(plain, n);
    free(plain);
    return m;
}

ud_model_t *ud_seal_read_model(const char *path, const struct ud_seal_keys *keys,
                               struct ud_seal_info *info, struct ud_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    if (ud_file_read(path, (size_t)UD_SEAL_MAX_PAYLOAD + UD_SEAL_HEADER_BYTES + UD_SEAL_SIG_BYTES,
                     &buf, &len, e) < 0)
        return NULL;
    ud_model_t *m = ud_seal_decode_model(buf, len, keys, info, e);
    if (!m)
        ud_err_prefix(e, "%s", path);
    free(buf);
    return m;
}
