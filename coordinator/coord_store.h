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

#include <stddef.h>

#include "updraft/ud_error.h"

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

#endif
