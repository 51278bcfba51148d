/*  ud_keys.h — updraft's key files: model-signing keys (Ed25519), model-encryption keys
 *  (XChaCha20-Poly1305) and ZeroMQ CURVE keys (Curve25519), generated with libsodium.
 *
 *  A key file is text: optional '#' comment lines, then one line
 *
 *      updraft-key 1 <type> <hex>
 *
 *  where <type> is one of the names below and <hex> is the key material in lowercase hex
 *  (a secret file also carries its public half, so the public key can always be derived). A
 *  secret key file is written with mode 0600 and refused when it is readable by group or others.
 *  Every key has an id: 16 hex digits that name it in messages and logs without revealing it
 *  (BLAKE2b of the public key; for a model-encryption key, a keyed BLAKE2b of the key itself).
 *  docs/security.md says what each key protects.
 */
#ifndef UD_KEYS_H
#define UD_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ud_key_type {
    UD_KEY_SIGN_SECRET,  /* "sign-secret": Ed25519 secret key; signs model versions */
    UD_KEY_SIGN_PUBLIC,  /* "sign-public": Ed25519 public key; verifies them */
    UD_KEY_MODEL,        /* "model-key": 32-byte XChaCha20-Poly1305 key; encrypts .udm files */
    UD_KEY_CURVE_SECRET, /* "curve-secret": Curve25519 keypair for ZeroMQ CURVE */
    UD_KEY_CURVE_PUBLIC, /* "curve-public": a peer's Curve25519 public key */
};

#define UD_KEY_PUBLIC_BYTES 32
#define UD_KEY_SECRET_BYTES 64 /* Ed25519's libsodium secret key; the others use 32 */
#define UD_KEY_ID_LEN       16 /* hex digits */

/* A key in memory. Plain data; wipe it with ud_key_wipe when done with a secret. */
struct ud_key {
    enum ud_key_type type;
    uint8_t pub[UD_KEY_PUBLIC_BYTES]; /* unused for UD_KEY_MODEL */
    uint8_t sec[UD_KEY_SECRET_BYTES]; /* signing: 64 bytes; model and curve: the first 32 */
    char id[UD_KEY_ID_LEN + 1];       /* NUL-terminated hex */
};

/* Returns the type's file name ("sign-secret", ...) or NULL for a value outside the enum. */
const char *ud_key_type_name(enum ud_key_type t);
/* Parses a type name; returns 0 or UD_EINVAL (with the accepted names in the message). */
int ud_key_type_parse(const char *name, enum ud_key_type *t, struct ud_err *e);

/* Generates a fresh secret key of type t (SIGN_SECRET, MODEL or CURVE_SECRET) into *k.
   Returns 0, UD_EINVAL for a public type, or UD_EINTERNAL if libsodium cannot start. */
int ud_key_generate(enum ud_key_type t, struct ud_key *k, struct ud_err *e);

/* The public half of a secret key: SIGN_SECRET -> SIGN_PUBLIC, CURVE_SECRET -> CURVE_PUBLIC.
   Returns 0 or UD_EINVAL (a model key has no public half). */
int ud_key_public(const struct ud_key *secret, struct ud_key *pub, struct ud_err *e);

/* Writes k to path (atomically; mode 0600 for a secret). Refuses to replace an existing file
   unless overwrite. Returns 0, UD_ECONFLICT (exists) or UD_EIO. */
int ud_key_write(const char *path, const struct ud_key *k, bool overwrite, struct ud_err *e);

/* Reads a key file and checks it holds a key of type want. A secret file also satisfies a
   request for its public type (the public half is returned). Returns 0, UD_EIO, UD_EFORMAT
   (names the file and line), UD_EAUTH (a secret file readable by group/others), or
   UD_EINVAL (another type: "key.pub is a sign-public key, not a model-key"). */
int ud_key_read(const char *path, enum ud_key_type want, struct ud_key *k, struct ud_err *e);

/* Parses a key from its file text (what ud_key_read does after reading, without the
   permission check); what names the source in messages. */
int ud_key_parse(const char *text, size_t len, const char *what, enum ud_key_type want,
                 struct ud_key *k, struct ud_err *e);

/* Walks a key file's text: from *pos, finds the next line that is neither blank nor a '#'
   comment, sets *line and *line_len to it (leading and trailing blanks dropped), advances *pos past
   it and counts lines in *lineno (start both at 0). Returns 1 for a line, 0 at the end. Used
   for files that list several keys (the coordinator's --curve-clients). */
int ud_key_next_line(const char *text, size_t len, size_t *pos, int *lineno, const char **line,
                     size_t *line_len);

/* Zeroes k (sodium_memzero). Accepts NULL. */
void ud_key_wipe(struct ud_key *k);

#ifdef __cplusplus
}
#endif

#endif /* UD_KEYS_H */
