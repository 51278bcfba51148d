/*  coord_store.h — the content-addressed model store: STATE/models/sha256/<2 hex>/<64 hex>.
 *
 *  A model file is stored under the SHA-256 of its bytes, so the same bytes are stored once and
 *  a file's name proves its content. Writes go to a temporary file in the same directory, are
 *  fsynced, renamed into place and the directory fsynced: after coord_store_put returns, the
 *  file survives a crash. Registry rows (coord_db.h, table models) point at these hashes.
 *
 *  Thread-safety: functions touch only the file system and their arguments; concurrent puts of
 *  the same bytes are safe (the rename is atomic and the content is the same).
 */
#ifndef COORD_STORE_H
#define COORD_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "updraft/ud_error.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_model.h"

/* Writes the path of the object with hex digest sha256 (64 lowercase hex digits) to buf.
 * Returns 0, or UD_EINVAL when sha256 is not 64 lowercase hex digits (never build a path from
 * a client's string without this check) or buf is too small. */
int coord_store_path(const char *state_dir, const char *sha256, char *buf, size_t n,
                     struct ud_err *e);
/* Stores bytes; writes their hex SHA-256 (65 bytes with the NUL) to sha256_out. Returns 0 or
 * UD_EIO (e names the file). Storing bytes already there only checks the existing file's size. */
int coord_store_put(const char *state_dir, const void *bytes, size_t len, char sha256_out[65],
                    struct ud_err *e);
/* 1 if the object exists, else 0. */
int coord_store_has(const char *state_dir, const char *sha256);

/* The keys every registered model version is sealed with (docs/security.md): signed with sign,
 * always; encrypted with model first, when has_model. Loaded once at start, then read-only. */
struct coord_model_keys {
    struct ud_key sign;  /* UD_KEY_SIGN_SECRET */
    struct ud_key model; /* UD_KEY_MODEL, when has_model */
    bool has_model;
    char sign_path[4096]; /* where the signing key came from (for the log) */
};

/* Loads the signing key from sign_path, or, when sign_path is NULL, from STATE/signing.key,
 * generating it (and STATE/signing.pub beside it) on first start; and the model key from
 * model_path when it is not NULL. Returns 0 or an error naming the file. */
int coord_model_keys_load(const char *state_dir, const char *sign_path, const char *model_path,
                          struct coord_model_keys *k, struct ud_err *e);

/* Seals a model file's bytes with k and stores them: udm may be a plain .udm or a sealed file
 * (its signature is replaced; an encrypted one must be under k's model key, and is opened and
 * re-encrypted). Writes the stored object's SHA-256 to sha256_out and its size (what the
 * registry records and serves) to *stored_len. Returns 0, UD_EWRONGKEY
 * (encrypted under another key, or encrypted while the coordinator holds no model key),
 * UD_ETAMPERED, UD_EFORMAT, or UD_EIO. A NULL k stores the bytes as given (unit tests). */
int coord_store_put_model(const char *state_dir, const struct coord_model_keys *k, const void *udm,
                          size_t len, char sha256_out[65], size_t *stored_len, struct ud_err *e);

/* The SHA-256 of the plain .udm inside a stored object (what a worker's upload hashed to), so
 * that a re-sent upload is recognised although the stored bytes are sealed. */
int coord_store_plain_sha256(const char *state_dir, const struct coord_model_keys *k,
                             const char *sha256, char plain_out[65], struct ud_err *e);

/* Reads and decodes a stored model version (decrypting with k's model key when it is
 * encrypted; the plaintext stays in memory). Returns the model (the caller's) or NULL. */
ud_model_t *coord_store_read_model(const char *state_dir, const struct coord_model_keys *k,
                                   const char *sha256, struct ud_err *e);

#endif
