/*  ud_update_msg.h — the update message: one device's contribution to a federated round (its
 *  model delta, ud_delta.h, with the round, base version, idempotency key and metrics).
 *
 *  The message (docs/agent.md, "The update message") is one msgpack map with string keys:
 *  "v" (1), "round", "base_version", "key", "samples", "loss", "accuracy" and "delta" (bin of
 *  n float32 little-endian). Decoding trusts nothing: every declared length is bounded by the
 *  bytes present and the delta by the caller's max_floats before anything is allocated.
 *
 *  Thread-safety: the functions keep no state.
 */
#ifndef UD_UPDATE_MSG_H
#define UD_UPDATE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_UPDATE_MSG_VERSION 1
#define UD_UPDATE_KEY_MAX     128 /* bytes of an idempotency key */

/* One device's contribution to a round. Plain data; `delta` is borrowed (encode) or points
 * at the decoder's fresh copy (decode). */
struct ud_update_msg {
    int64_t round;                   /* >= 0 */
    int64_t base_version;            /* the model version the delta is against, >= 0 */
    char key[UD_UPDATE_KEY_MAX + 1]; /* idempotency key: 1..128 printable ASCII (0x20..0x7e) */
    int64_t samples;                 /* training samples behind the update, > 0 */
    double loss, accuracy;           /* the final epoch's; finite */
    const float *delta;              /* n floats */
    size_t n;
};

/* Encodes msg into a fresh buffer (*buf, caller frees with free()), exactly sized. Checks what
 * the decoder checks (key, samples, finite loss/accuracy, non-negative round and version) and
 * refuses with UD_EINVAL naming the field. UD_ENOMEM when out of memory. */
int ud_update_msg_encode(const struct ud_update_msg *msg, char **buf, size_t *len,
                         struct ud_err *e);

/* Decodes buf[0..len) into *out. The delta is always copied (and converted from little-endian)
 * into a fresh, aligned array handed to the caller in *delta (free with free()); out->delta
 * points at it and out->n is its length. delta NULL: every field is checked, out->n is set, but
 * nothing is copied (out->delta stays NULL), e.g. to look at round and key before allocating. A bin
 * of more than max_floats floats is UD_ELIMIT, checked before allocating; every declared length and
 * count is bounded by the bytes present before msgpack-c unpacks. Unknown keys are ignored. Errors,
 * all naming the key: UD_EVERSION ("v" not 1), UD_EFORMAT (not a map, missing key, wrong type,
 * repeated key, bad key string, samples <= 0, a bin whose length is not a multiple of 4, non-finite
 * loss or accuracy, truncated or trailing bytes), UD_ELIMIT, UD_ENOMEM. On error *out is zeroed and
 * *delta (if given) is NULL. Never reads outside buf[0..len). */
int ud_update_msg_decode(const void *buf, size_t len, size_t max_floats, struct ud_update_msg *out,
                         float **delta, struct ud_err *e);

/* True when key is 1..UD_UPDATE_KEY_MAX printable ASCII characters (0x20..0x7e). */
int ud_update_key_valid(const char *key, size_t len);

#ifdef __cplusplus
}
#endif
#endif
