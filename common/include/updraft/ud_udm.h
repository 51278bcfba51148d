/*  ud_udm.h — the .udm model file (version 1), specified in docs/model-format.md.
 *
 *  msgpack: magic and format version first, then metadata, input description, class labels,
 *  layers with updatable flags, update defaults with ranges, the parameter blob (f32 little-
 *  endian), training metrics, and a SHA-256 over everything before it. Written atomically
 *  (temporary file, fsync, rename, fsync of the directory). A truncated, corrupted, foreign or
 *  future-version file is refused with a message saying which.
 */
#ifndef UD_UDM_H
#define UD_UDM_H

#include <stddef.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_UDM_MAGIC     "UDM1"
#define UD_UDM_VERSION   1
#define UD_UDM_MAX_BYTES ((size_t)2 << 30) /* 2 GiB */

/* Content limits of format version 1 (docs/model-format.md); the encoder refuses a model over
 * them with UD_ELIMIT, so that every file written can be read back. */
#define UD_UDM_MAX_STRING  65536 /* bytes of a metadata value */
#define UD_UDM_MAX_NAME    1024  /* bytes of a class label, metadata key or metric name */
#define UD_UDM_MAX_ENTRIES 1024  /* additional metadata entries; metrics */

/* Encodes m into a fresh buffer (*buf, caller frees with free()). Deterministic: the same model
 * gives the same bytes. Returns 0, or UD_ELIMIT / UD_ENONFINITE / UD_ERANGE / UD_EINVAL naming
 * the field when m holds something the format cannot carry, or UD_ENOMEM. */
int ud_udm_encode(const ud_model_t *m, char **buf, size_t *len, struct ud_err *e);
/* Decodes a buffer into a new model; NULL with e set (UD_EFOREIGN, UD_EVERSION, UD_ETRUNCATED,
 * UD_ECHECKSUM, UD_EFORMAT, UD_ESHAPE; also UD_ENONFINITE for a NaN/infinite parameter and
 * UD_ENOMEM) on anything wrong. Never reads outside buf[0..len). */
ud_model_t *ud_udm_decode(const void *buf, size_t len, struct ud_err *e);

/* Writes m to path atomically. Returns 0 or UD_EIO with the path and errno text, or the
 * encoder's error (prefixed with the path); nothing is left behind on failure. */
int ud_udm_write(const ud_model_t *m, const char *path, struct ud_err *e);
/* Reads a model from path; errors are prefixed with the path. */
ud_model_t *ud_udm_read(const char *path, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
