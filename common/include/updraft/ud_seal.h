/*  ud_seal.h — sealed model files: a .udm signed with Ed25519 and/or encrypted with
 *  XChaCha20-Poly1305 (libsodium), and how a reader opens one.
 *
 *  A sealed file is a fixed 64-byte header, the payload and, when signed, a 64-byte signature
 *  (docs/model-format.md, section 6, is the normative layout):
 *
 *      0  magic "UDSEAL01"            24  model-key id (8 bytes; zero unless encrypted)
 *      8  version 1 (u8)              32  nonce (24 bytes; zero unless encrypted)
 *      9  flags: 1 encrypted, 2 signed 56  signing key id (8 bytes; zero unless signed)
 *     10  zero (6 bytes)              64  payload: the .udm, or its ciphertext + 16-byte tag
 *     16  payload length (u64 LE)     64+n  signature over bytes [0, 64+n) when signed
 *
 *  Encrypt, then sign: the signature covers the header and the ciphertext, so a reader checks
 *  the signature on bytes it has not interpreted, then decrypts, then parses the model. The
 *  header (without the signing fields) is the AEAD's associated data, so a header edit is
 *  caught by the tag even in an unsigned encrypted file. Key ids come from ud_keys.h; they let a
 *  reader tell "another key" (UD_EWRONGKEY) from "the bytes were changed" (UD_ETAMPERED).
 */
#ifndef UD_SEAL_H
#define UD_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_SEAL_MAGIC        "UDSEAL01"
#define UD_SEAL_HEADER_BYTES 64
#define UD_SEAL_SIG_BYTES    64
#define UD_SEAL_TAG_BYTES    16
/* The largest payload a sealed file may declare: a .udm at its limit plus the tag. */
#define UD_SEAL_MAX_PAYLOAD (((uint64_t)2 << 30) + UD_SEAL_TAG_BYTES)

/* What a sealed file's header says. */
struct ud_seal_info {
    bool encrypted;
    bool is_signed;
    char enc_key_id[UD_KEY_ID_LEN + 1];  /* "" unless encrypted */
    char sign_key_id[UD_KEY_ID_LEN + 1]; /* "" unless signed */
    uint64_t payload_len;                /* bytes after the header, before the signature */
};

/* The keys a reader holds. verify: when set, the file must be signed by exactly this key
   (UD_KEY_SIGN_PUBLIC); NULL accepts a file without checking any signature. decrypt: the
   model key (UD_KEY_MODEL) for an encrypted file; NULL refuses encrypted files. */
struct ud_seal_keys {
    const struct ud_key *verify;
    const struct ud_key *decrypt;
};

/* The exit status programs give a refused model, the same everywhere (updraft keys verify,
   updraft decrypt, updraft-agent update): 0 for 0, 3 UD_EUNSIGNED, 4 UD_EWRONGKEY,
   5 UD_ETAMPERED, 1 for any other error. */
int ud_seal_exit_status(int code);

/* True when buf begins with the sealed-file magic. */
bool ud_seal_detect(const void *buf, size_t len);

/* Parses and checks the header and the lengths (the file must be exactly header + payload +
   signature); reads nothing else. Returns 0, UD_EFOREIGN (no magic), UD_EVERSION,
   UD_ETRUNCATED or UD_EFORMAT (names the field). */
int ud_seal_inspect(const void *buf, size_t len, struct ud_seal_info *info, struct ud_err *e);

/* Wraps plain .udm bytes into an encrypted, unsigned sealed file (fresh random nonce).
   *out is the caller's to free. Returns 0, UD_EINVAL (not a model key, or already sealed),
   UD_ELIMIT or UD_ENOMEM. */
int ud_seal_encrypt(const void *udm, size_t len, const struct ud_key *model_key, char **out,
                    size_t *out_len, struct ud_err *e);

/* Signs buf with sk (UD_KEY_SIGN_SECRET): plain .udm bytes are wrapped into a sealed file
   first; a sealed file is (re-)signed, replacing any signature. *out is the caller's to free. */
int ud_seal_sign(const void *buf, size_t len, const struct ud_key *sk, char **out, size_t *out_len,
                 struct ud_err *e);

/* Checks the signature of a sealed file against pk without decrypting. Returns 0,
   UD_EUNSIGNED (not sealed, or sealed without a signature), UD_EWRONGKEY (signed by another
   key: both ids in the message), UD_ETAMPERED (the key matches but the signature does not:
   the file changed after signing), or an inspect error. */
int ud_seal_verify(const void *buf, size_t len, const struct ud_key *pk, struct ud_seal_info *info,
                   struct ud_err *e);

/* Opens a model file's bytes in memory: a plain .udm is returned as is (UD_EUNSIGNED instead
   when keys->verify is set); a sealed file is verified (when keys->verify), then decrypted
   (when encrypted) into a fresh buffer. *payload is the .udm bytes, the caller's to free
   (sodium_memzero it first if it was encrypted). info may be NULL. Errors as ud_seal_verify,
   plus UD_EWRONGKEY (encrypted with another key, or no key given), UD_ETAMPERED (the
   authentication tag fails) and UD_ENOMEM. Nothing is written anywhere. */
int ud_seal_open(const void *buf, size_t len, const struct ud_seal_keys *keys, char **payload,
                 size_t *payload_len, struct ud_seal_info *info, struct ud_err *e);

/* ud_seal_open, then ud_udm_decode: reads a model file (plain or sealed) from path. The
   plaintext lives only in memory. Returns the model (the caller's) or NULL with e set. */
ud_model_t *ud_seal_read_model(const char *path, const struct ud_seal_keys *keys,
                               struct ud_seal_info *info, struct ud_err *e);

/* The same from bytes already in memory. */
ud_model_t *ud_seal_decode_model(const void *buf, size_t len, const struct ud_seal_keys *keys,
                                 struct ud_seal_info *info, struct ud_err *e);

#ifdef __cplusplus
}
#endif

#endif /* UD_SEAL_H */
