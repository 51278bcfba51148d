/*  ud_udm_impl.h — test-only entry points of ud_udm.c (not installed, not for programs).
 *
 *  The unit tests craft files a correct writer never produces: a future format version, or a
 *  hand-made body with a valid checksum but wrong contents. These wrap the private envelope code
 *  so the tests do not have to re-implement the checksum.
 */
#ifndef UD_UDM_IMPL_H
#define UD_UDM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_udm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Like ud_udm_encode, but stamps `version` in the envelope (the body stays version 1's).
 * Returns 0 or the encoder's error; *buf is the caller's to free(). */
int ud__udm_encode_version(const ud_model_t *m, uint64_t version, char **buf, size_t *len,
                           struct ud_err *e);
/* Wraps an arbitrary body (bytes, not checked) in an envelope of `version` with a correct
 * SHA-256. Returns 0, UD_ELIMIT or UD_ENOMEM; *buf is the caller's to free(). */
int ud__udm_wrap(const void *body, size_t body_len, uint64_t version, char **buf, size_t *len,
                 struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
